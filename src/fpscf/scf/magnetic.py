"""Self-consistent magnetic moments in an applied magnetic field (docs/physics.md, The model).

Each atom carries a moment m_i (μ_B): an axial vector (``1e``) for ``noncollinear`` models, or a
scalar s_i along the spin axis n̂ = B/|B| (ẑ without a field) for ``collinear`` ones. The magnetic
energy (eV) is a learned function of the moments with the form of a Landau–Heisenberg model:

    E_mag = Σ_i [α_i |m_i|² + β_i |m_i|⁴ − μ_B B·m_i]                 on-site (Landau) and Zeeman
          − ½ Σ_(ij) J_ij m_i·m_j                                       exchange
          + Σ_i κ_i (m_i·u_i)²                                          anisotropy      (non-collinear)
          − Σ_i m_i·(u_i × w_i)                                         local axial bias
          + Σ_i c_i m_i·(F_i × u_i)                                     linear magnetoelectric
          − ½ Σ_(ij) λ_ij F_i·(e_ij × (m_i × m_j))                      spin-current magnetoelectric

α, β > 0, κ, c from the invariants of atom i; J_ij = Σ_k R_k(r_ij) w_k(h_i) w_k(h_j) and λ_ij from the
edge's radial basis (both symmetric, zero at the cutoff); u_i, w_i polar vectors (``1o``) read
from the geometry (so u_i × w_i is axial); e_ij the bond direction; F_i the local electric field (V/Å) of the converged density and
the applied field ε, so the moments feel ε and the electric response feels B. With polar e_ij, F_i,
u_i and w_i and axial m_i and B every term is invariant under rotations and inversion. The bias and
linear magnetoelectric terms are odd in m at B = 0, i.e. break time reversal (m, B) → (−m, −B),
which is not built in: like any flexible model this one can learn such terms, and training can add
time-reversed copies of the data to remove them (:mod:`fpscf.training.augmentation`).

The moments are self-consistent variables: m* is a minimum of E_mag reached from the starting
moments (L-BFGS with a line search, so frustrated exchange cannot make it oscillate or stop at a
saddle), and is attached to the autograd graph by the implicit function theorem through the
stationarity map ``G(m) = m − P ∇_m E_mag`` (P > 0 a fixed diagonal preconditioner; its fixed
points are the stationary points), so every derivative (M = −∂E/∂B, the susceptibility, the
magnetoelectric tensor, forces) is exact. Moments of structures with
``spin_on`` False are zero; constrained (fixed) moments stay at their given values.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import warnings
from typing import Any, NamedTuple

import torch
from e3nn import o3

from fpscf.nn import MLP, IrrepsReadout
from fpscf.scf.implicit import implicit_fixed_point
from fpscf.scf.krylov import LinearSolveSettings, gmres
from fpscf.scf.settings import SCFSettings
from fpscf.scf.solver import SCFConvergenceError, SCFResult, format_residual_history
from fpscf.tensor_tree import split_differentiable
from fpscf.units import BOHR_MAGNETON

#: Size (μ_B) of default starting moments of magnetic structures without initial moments.
DEFAULT_START_MOMENT = 1.0
#: Fewest iterations the moment loop is allowed, whatever the density's budget.
MIN_MOMENT_STEPS = 300
#: Residual (μ_B) below which the moment loop takes Newton steps instead of L-BFGS steps.
NEWTON_SWITCH = 1e-3
_TINY = 1e-12


class MagneticTerms(NamedTuple):
    """Coefficients of E_mag for one batch (shapes: N atoms, E edges, C = 3 or 1 moment components)."""

    quadratic: torch.Tensor  # (N,) α, eV/μ_B²
    quartic: torch.Tensor  # (N,) β > 0, eV/μ_B⁴
    anisotropy: torch.Tensor  # (N,) κ, eV/μ_B²
    axis: torch.Tensor  # (N, 3) u, polar, dimensionless
    bias: torch.Tensor  # (N, 3) u × w, axial, eV/μ_B
    linear_me: torch.Tensor  # (N,) c, eV/(μ_B·V/Å)
    exchange: torch.Tensor  # (E,) J, eV/μ_B²
    spin_current: torch.Tensor  # (E,) λ, eV/(μ_B²·V/Å)
    bond: torch.Tensor  # (E, 3) unit vector sender → receiver
    local_field: torch.Tensor  # (N, 3) F, V/Å
    zeeman: torch.Tensor  # (N, C) μ_B B (non-collinear) or μ_B B·n̂ (collinear), eV/μ_B
    edge_index: torch.Tensor  # (2, E) [sender, receiver]


def spin_axis(field: torch.Tensor) -> torch.Tensor:
    """Collinear spin axis n̂ = B/|B| per structure (B, 3), ẑ where B = 0 (differentiable for B ≠ 0)."""
    norm = torch.linalg.norm(field, dim=-1, keepdim=True)
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    z_axis = torch.zeros_like(field)
    z_axis[:, 2] = 1.0
    return torch.where(norm > 0, field / safe, z_axis)


def magnetic_energy(moments: torch.Tensor, terms: MagneticTerms) -> torch.Tensor:
    """Per-atom magnetic energy (N,) eV of moments (N, C) μ_B (C = 3 non-collinear, 1 collinear)."""
    size2 = (moments * moments).sum(-1)
    energy = terms.quadratic * size2 + terms.quartic * size2 * size2 - (terms.zeeman * moments).sum(-1)
    sender, receiver = terms.edge_index
    pair = -0.5 * terms.exchange * (moments[sender] * moments[receiver]).sum(-1)
    if moments.shape[-1] == 3:
        energy = energy + terms.anisotropy * (moments * terms.axis).sum(-1) ** 2 - (moments * terms.bias).sum(-1)
        energy = energy + terms.linear_me * (moments * torch.linalg.cross(terms.local_field, terms.axis)).sum(-1)
        twist = torch.linalg.cross(terms.bond, torch.linalg.cross(moments[sender], moments[receiver]))
        pair = pair - 0.5 * terms.spin_current * (terms.local_field[receiver] * twist).sum(-1)
    return energy.index_add(0, receiver, pair)


def _preconditioner(moments: torch.Tensor, terms: MagneticTerms) -> torch.Tensor:
    """Inverse of a bound on each atom's curvature (N, 1) μ_B²/eV, detached (any positive value gives
    the same derivatives; this one keeps the implicit solve well conditioned)."""
    size2 = (moments * moments).sum(-1)
    bound = 2 * terms.quadratic.abs() + 12 * terms.quartic * size2 + 2 * terms.anisotropy.abs() * (terms.axis * terms.axis).sum(-1)
    bound = bound.index_add(0, terms.edge_index[1], terms.exchange.abs())
    return (1.0 / (bound + 1e-6)).detach()[:, None]


def minimise_moments(terms: MagneticTerms, start: torch.Tensor, active: torch.Tensor, settings: SCFSettings) -> SCFResult:
    """Relax the active moments from ``start`` (N, C) to a minimum of E_mag by L-BFGS with a
    strong-Wolfe line search in preconditioned coordinates. Converged when the largest step the
    stationarity map would take, max |P ∇_m E_mag| (μ_B), is below ``settings.scf_tolerance``; the
    history of that residual is kept (and printed with ``settings.verbose``)."""
    scale = _preconditioner(start, terms)
    index = active.nonzero().reshape(-1)
    root = scale[index].sqrt()
    coordinates = (start[index] / root).clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [coordinates], lr=1.0, max_iter=1, max_eval=25, history_size=20, line_search_fn="strong_wolfe",
        tolerance_grad=0.0, tolerance_change=0.0,
    )

    def moments_of(y: torch.Tensor) -> torch.Tensor:
        return start.index_put((index,), y * root)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        energy = magnetic_energy(moments_of(coordinates), terms).sum()
        energy.backward()
        return energy

    history: list[float] = []
    with torch.enable_grad():
        for step in range(1, settings.max_scf_steps + 1):
            moments = moments_of(coordinates)
            (gradient,) = torch.autograd.grad(magnetic_energy(moments, terms).sum(), coordinates)
            residual = float((gradient * root).abs().max())  # = max |P ∇_m E| over active atoms
            history.append(residual)
            if settings.verbose:
                print(f"  moment step {step:4d}  max|P dE/dm| = {residual:.3e} μB", file=sys.stderr)
            if not math.isfinite(residual):
                break
            if residual < settings.scf_tolerance:
                return SCFResult(moments.detach(), step, True, history)
            if residual < NEWTON_SWITCH and _newton_step(coordinates, moments_of, terms, residual):
                continue
            optimizer.step(closure)
    message = (
        f"moment SCF did not converge after {len(history)} steps (tolerance {settings.scf_tolerance:.1e} μB). Residual "
        f"history (max |P ∂E/∂m|): [{format_residual_history(history)}]. Try other initial moments "
        "(atoms.set_initial_magnetic_moments), a small magnetic field to lift a degeneracy, or a larger max_scf_steps; "
        "pass on_scf_failure='warn' to continue anyway."
    )
    if settings.on_failure == "raise":
        raise SCFConvergenceError(message, history)
    warnings.warn(message, stacklevel=2)
    return SCFResult(moments_of(coordinates).detach(), len(history), False, history)


def _newton_step(coordinates: torch.Tensor, moments_of: Any, terms: MagneticTerms, residual: float) -> bool:
    """One Newton step (Hessian solved by GMRES on Hessian–vector products) in the preconditioned
    coordinates, halved until the energy decreases; near a minimum it converges quadratically
    where L-BFGS creeps along soft directions (nearly free moment rotations). False (nothing
    changed) if the Hessian solve fails or no step length lowers the energy."""
    with torch.enable_grad():
        y = coordinates.detach().requires_grad_(True)
        energy = magnetic_energy(moments_of(y), terms).sum()
        (gradient,) = torch.autograd.grad(energy, y, create_graph=True)

        def hessian_vector(v: torch.Tensor) -> torch.Tensor:
            (product,) = torch.autograd.grad(gradient, y, v, retain_graph=True)
            return product

        # inexact Newton: the linear tolerance follows the residual (superlinear convergence, few products)
        rtol = min(1e-2, max(1e-10, residual))
        step, history = gmres(hessian_vector, -gradient.detach(), LinearSolveSettings.for_dtype(y.dtype, rtol=rtol, on_failure="warn"))
    slope = float((gradient.detach() * step).sum())
    if not history or not history[-1] <= rtol * 1.01 or not slope < 0:  # not solved, or not a descent direction
        return False
    size = float(gradient.detach().abs().max())
    for _ in range(8):
        with torch.enable_grad():
            trial = (coordinates.detach() + step).requires_grad_(True)
            trial_energy = magnetic_energy(moments_of(trial), terms).sum()
            (trial_gradient,) = torch.autograd.grad(trial_energy, trial)
        # Armijo decrease, or (where energy changes are below rounding) a smaller gradient
        if float(trial_energy.detach()) <= float(energy.detach()) + 1e-4 * slope or float(trial_gradient.abs().max()) < 0.5 * size:
            with torch.no_grad():
                coordinates.copy_(trial.detach())
            return True
        step = 0.5 * step
    return False


class MagneticChannel(torch.nn.Module):
    """Learned coefficients of E_mag and the self-consistent moments (see the module docstring)."""

    def __init__(self, kind: str, num_scalars: int, node_irreps: o3.Irreps, num_radial: int, hidden: int = 32, rank: int = 4) -> None:
        super().__init__()
        if kind not in ("collinear", "noncollinear"):
            raise ValueError(f"MagneticChannel kind must be 'collinear' or 'noncollinear', got {kind!r}")
        self.kind = kind
        self.num_components = 3 if kind == "noncollinear" else 1
        self.onsite = MLP([num_scalars, hidden, 4])
        self.exchange_radial = MLP([num_radial, hidden, rank], bias=False)
        self.exchange_nodes = torch.nn.Linear(num_scalars, rank)
        self.spin_current_radial = MLP([num_radial, hidden, 1], bias=False)
        has_vectors = any(ir == o3.Irrep("1o") for _, ir in o3.Irreps(node_irreps))
        self.axis = IrrepsReadout(node_irreps, o3.Irreps("2x1o")) if kind == "noncollinear" and has_vectors else None

    def terms(
        self, scalars: torch.Tensor, node_feats: torch.Tensor, edge_radial: torch.Tensor, vectors: torch.Tensor,
        edge_index: torch.Tensor, local_field: torch.Tensor, field: torch.Tensor, batch: torch.Tensor,
    ) -> MagneticTerms:
        """Coefficients from node invariants (N, S), node irreps, edge radial basis (E, R), edge
        vectors (E, 3) Å, the local electric field (N, 3) V/Å and the magnetic field B (n_graphs, 3) T."""
        onsite = self.onsite(scalars)
        quadratic = 0.05 * onsite[:, 0]
        quartic = 0.01 * torch.nn.functional.softplus(onsite[:, 1]) + 1e-4
        anisotropy = 0.01 * onsite[:, 2]
        linear_me = 0.01 * onsite[:, 3]
        sender, receiver = edge_index
        weights = self.exchange_nodes(scalars)
        exchange = 0.01 * (self.exchange_radial(edge_radial) * weights[sender] * weights[receiver]).mean(-1)
        spin_current = 0.01 * self.spin_current_radial(edge_radial).squeeze(-1)
        bond = vectors / torch.linalg.norm(vectors, dim=-1, keepdim=True).clamp_min(_TINY)
        vectors_out = self.axis(node_feats) if self.axis is not None else vectors.new_zeros(scalars.shape[0], 6)
        axis, second = vectors_out[:, :3], vectors_out[:, 3:]
        bias = 0.01 * torch.linalg.cross(axis, second)
        if self.kind == "noncollinear":
            zeeman = BOHR_MAGNETON * field[batch]
        else:
            zeeman = BOHR_MAGNETON * (field * spin_axis(field)).sum(-1)[batch][:, None]
        return MagneticTerms(
            quadratic, quartic, anisotropy, axis, bias, linear_me, exchange, spin_current, bond, local_field, zeeman, edge_index
        )

    def starting_moments(self, initial: torch.Tensor | None, field: torch.Tensor, batch: torch.Tensor, n_atoms: int) -> torch.Tensor:
        """Start (N, C) μ_B: the given initial moments (N, 3), else (None, or NaN rows: structures
        batched without initial moments) 1 μ_B along B (ẑ without a field). A collinear model
        reads s along n̂ from the z column; x/y components are an error."""
        default = (
            field.new_full((n_atoms, 1), DEFAULT_START_MOMENT)
            if self.kind == "collinear"
            else DEFAULT_START_MOMENT * spin_axis(field)[batch]
        )
        if initial is None:
            return default
        missing = torch.isnan(initial).any(-1, keepdim=True)  # structures batched without initial moments
        initial = torch.where(missing, torch.zeros_like(initial), initial)
        if self.kind == "collinear":
            if bool((initial[:, :2] != 0).any()):
                raise ValueError(
                    "this model has collinear moments (magnetic_moments: collinear) but got non-collinear initial "
                    "moments; give one number per atom (atoms.set_initial_magnetic_moments([...]) with shape (N,)) "
                    "or use a model built with magnetic_moments: noncollinear"
                )
            return torch.where(missing, default, initial[:, 2:3])
        return torch.where(missing, default, initial)

    def solve(
        self, terms: MagneticTerms, start: torch.Tensor, active: torch.Tensor, settings: SCFSettings,
        linear_solve: LinearSolveSettings,
    ) -> tuple[torch.Tensor, SCFResult]:
        """Moments (N, C) μ_B: active atoms relaxed to a minimum of E_mag from ``start``,
        the others kept at ``start``; differentiable (exactly, by the implicit function theorem)
        with respect to every tensor the terms were built from."""
        detached = MagneticTerms(*(t.detach() for t in terms))
        # The moment loop has its own step budget (a stage may allow the density a single step).
        settings = dataclasses.replace(settings, max_scf_steps=max(settings.max_scf_steps, MIN_MOMENT_STEPS))
        if bool(active.any()):
            result = minimise_moments(detached, start.detach(), active, settings)
        else:
            result = SCFResult(start.detach(), 0, True, [])
        solution = result.solution.detach()
        tensors, rebuild = split_differentiable(terms)
        if not bool(active.any()):
            return solution, result
        scale = _preconditioner(solution, detached)
        shape = solution.shape
        held = solution.detach()

        def stationarity_map(x: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
            # active rows: m − P ∇E (fixed point = stationary point); held rows: their constant value
            moments = x.reshape(shape)
            energy = magnetic_energy(moments, rebuild(inputs)).sum()
            (gradient,) = torch.autograd.grad(energy, moments, create_graph=True)
            return torch.where(active[:, None], moments - scale * gradient, held).reshape(-1)

        def wrapped(x: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                return stationarity_map(x if x.requires_grad else x.detach().requires_grad_(True), *inputs)

        moments = implicit_fixed_point(wrapped, solution.reshape(-1), tensors, linear_solve)
        return moments.reshape(shape), result


def magnetic_forces(moments: torch.Tensor, terms: MagneticTerms, create_graph: bool) -> torch.Tensor:
    """−∂E_mag/∂m_i (N, C) eV/μ_B at the given moments (partial derivative, other moments fixed)."""
    with torch.enable_grad():
        variable = moments if moments.requires_grad else moments.detach().requires_grad_(True)
        alias = variable.view_as(variable)
        (gradient,) = torch.autograd.grad(magnetic_energy(alias, terms).sum(), alias, create_graph=create_graph, retain_graph=True)
    return -gradient


__all__: list[Any] = [
    "MagneticChannel", "MagneticTerms", "magnetic_energy", "magnetic_forces", "minimise_moments", "spin_axis",
]
