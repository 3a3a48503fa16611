"""Self-consistent magnetic moments in an applied magnetic field (DESIGN.md section 2, magnetic channel).

Each atom carries a moment m_i (μ_B): an axial vector (``1e``) for ``noncollinear`` models, or a
scalar s_i along the spin axis n̂ = B/|B| (ẑ without a field) for ``collinear`` ones. The magnetic
energy (eV) is a learned function of the moments with the form of a Landau–Heisenberg model:

    E_mag = Σ_i [α_i |m_i|² + β_i |m_i|⁴ − μ_B B·m_i]                 on-site (Landau) and Zeeman
          − ½ Σ_(ij) J_ij m_i·m_j                                       exchange
          + Σ_i κ_i (m_i·u_i)²                                          anisotropy      (non-collinear)
          + Σ_i c_i m_i·(F_i × u_i)                                     linear magnetoelectric
          − ½ Σ_(ij) λ_ij F_i·(e_ij × (m_i × m_j))                      spin-current magnetoelectric

α, β > 0, κ, c from the invariants of atom i; J_ij = Σ_k R_k(r_ij) w_k(h_i) w_k(h_j) and λ_ij from the
edge's radial basis (both symmetric, zero at the cutoff); u_i a polar vector (``1o``) read from the
geometry; e_ij the bond direction; F_i the local electric field (V/Å) of the converged density and
the applied field ε, so the moments feel ε and the electric response feels B. With polar e_ij, F_i
and u_i and axial m_i and B every term is invariant under rotations and inversion; the terms linear
in m (c_i, and the Zeeman term at B ≠ 0) are odd under time reversal (m, B) → (−m, −B), which is not
built in (training can add time-reversed copies, :mod:`fpscf.training.augmentation`).

The moments are self-consistent variables: m* is a stationary point of E_mag, found from the
starting moments by the mean-field map (each moment minimises its on-site energy in the effective
field h_i = −∂(E_mag − Landau_i)/∂m_i of the others) with Anderson mixing, and attached to the
autograd graph by the implicit function theorem through ``G(m) = m − P ∇_m E_mag`` (P > 0 a fixed
diagonal preconditioner): the same stationary points, so every derivative (M = −∂E/∂B, the
susceptibility, the magnetoelectric tensor, forces) is exact. Moments of structures with
``spin_on`` False are zero; constrained (fixed) moments stay at their given values.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from e3nn import o3

from fpscf.nn import MLP, IrrepsReadout
from fpscf.scf.implicit import implicit_fixed_point
from fpscf.scf.krylov import LinearSolveSettings
from fpscf.scf.settings import SCFSettings
from fpscf.scf.solver import SCFResult, solve_fixed_point
from fpscf.tensor_tree import split_differentiable
from fpscf.units import BOHR_MAGNETON

#: Size (μ_B) of default starting moments of magnetic structures without initial moments.
DEFAULT_START_MOMENT = 1.0
_LANDAU_NEWTON_STEPS = 60
_TINY = 1e-12


class MagneticTerms(NamedTuple):
    """Coefficients of E_mag for one batch (shapes: N atoms, E edges, C = 3 or 1 moment components)."""

    quadratic: torch.Tensor  # (N,) α, eV/μ_B²
    quartic: torch.Tensor  # (N,) β > 0, eV/μ_B⁴
    anisotropy: torch.Tensor  # (N,) κ, eV/μ_B²
    axis: torch.Tensor  # (N, 3) u, polar, dimensionless
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
        energy = energy + terms.anisotropy * (moments * terms.axis).sum(-1) ** 2
        energy = energy + terms.linear_me * (moments * torch.linalg.cross(terms.local_field, terms.axis)).sum(-1)
        twist = torch.linalg.cross(terms.bond, torch.linalg.cross(moments[sender], moments[receiver]))
        pair = pair - 0.5 * terms.spin_current * (terms.local_field[receiver] * twist).sum(-1)
    return energy.index_add(0, receiver, pair)


def _landau_size(field_size: torch.Tensor, quadratic: torch.Tensor, quartic: torch.Tensor) -> torch.Tensor:
    """Largest root s ≥ 0 of 4βs³ + 2αs = |h|: the size of the moment minimising αs² + βs⁴ − |h|s.
    Newton from above (the cubic is convex for s > 0, so the iterates decrease monotonically)."""
    s = (quadratic.clamp(max=0.0).neg() / (2 * quartic)).sqrt() + (field_size / (4 * quartic)).pow(1.0 / 3.0) + 1e-3
    for _ in range(_LANDAU_NEWTON_STEPS):
        value = 4 * quartic * s**3 + 2 * quadratic * s - field_size
        slope = (12 * quartic * s * s + 2 * quadratic).clamp_min(_TINY)
        s = (s - value / slope).clamp_min(0.0)
    return s


def mean_field_update(moments: torch.Tensor, terms: MagneticTerms, active: torch.Tensor) -> torch.Tensor:
    """One mean-field step (N, C) → (N, C): each active moment becomes the minimiser of its on-site
    energy in the effective field of the current moments; inactive moments are kept."""
    with torch.enable_grad():
        variable = moments.detach().requires_grad_(True)
        (gradient,) = torch.autograd.grad(magnetic_energy(variable, terms).sum(), variable)
    size2 = (moments * moments).sum(-1, keepdim=True)
    landau = 2 * terms.quadratic[:, None] * moments + 4 * terms.quartic[:, None] * size2 * moments
    field = landau - gradient  # −∂(E_mag − on-site Landau)/∂m_i
    field_size = torch.linalg.norm(field, dim=-1, keepdim=True)
    size = _landau_size(field_size.squeeze(-1), terms.quadratic, terms.quartic)[:, None]
    current = torch.linalg.norm(moments, dim=-1, keepdim=True)
    fallback = torch.where(current > _TINY, moments / current.clamp_min(_TINY), torch.ones_like(moments) / moments.shape[-1] ** 0.5)
    direction = torch.where(field_size > _TINY, field / field_size.clamp_min(_TINY), fallback)
    return torch.where(active[:, None], size * direction, moments)


def _preconditioner(moments: torch.Tensor, terms: MagneticTerms) -> torch.Tensor:
    """Inverse of a bound on each atom's curvature (N, 1) μ_B²/eV, detached (any positive value gives
    the same derivatives; this one keeps the implicit solve well conditioned)."""
    size2 = (moments * moments).sum(-1)
    bound = 2 * terms.quadratic.abs() + 12 * terms.quartic * size2 + 2 * terms.anisotropy.abs() * (terms.axis * terms.axis).sum(-1)
    bound = bound.index_add(0, terms.edge_index[1], terms.exchange.abs())
    return (1.0 / (bound + 1e-6)).detach()[:, None]


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
        self.axis = IrrepsReadout(node_irreps, o3.Irreps("1x1o")) if kind == "noncollinear" and has_vectors else None

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
        axis = self.axis(node_feats) if self.axis is not None else vectors.new_zeros(scalars.shape[0], 3)
        if self.kind == "noncollinear":
            zeeman = BOHR_MAGNETON * field[batch]
        else:
            zeeman = BOHR_MAGNETON * (field * spin_axis(field)).sum(-1)[batch][:, None]
        return MagneticTerms(
            quadratic, quartic, anisotropy, axis, linear_me, exchange, spin_current, bond, local_field, zeeman, edge_index
        )

    def starting_moments(self, initial: torch.Tensor | None, field: torch.Tensor, batch: torch.Tensor, n_atoms: int) -> torch.Tensor:
        """Start (N, C) μ_B: the given initial moments (N, 3), else 1 μ_B along B (ẑ without a field).
        A collinear model reads s along n̂ from the z column; x/y components are an error."""
        if initial is None:
            if self.kind == "collinear":
                return field.new_full((n_atoms, 1), DEFAULT_START_MOMENT)
            return DEFAULT_START_MOMENT * spin_axis(field)[batch]
        if self.kind == "collinear":
            if bool((initial[:, :2] != 0).any()):
                raise ValueError(
                    "this model has collinear moments (magnetic_moments: collinear) but got non-collinear initial "
                    "moments; give one number per atom (atoms.set_initial_magnetic_moments([...]) with shape (N,)) "
                    "or use a model built with magnetic_moments: noncollinear"
                )
            return initial[:, 2:3]
        return initial

    def solve(
        self, terms: MagneticTerms, start: torch.Tensor, active: torch.Tensor, settings: SCFSettings,
        linear_solve: LinearSolveSettings,
    ) -> tuple[torch.Tensor, SCFResult]:
        """Moments (N, C) μ_B: active atoms relaxed to a stationary point of E_mag from ``start``,
        the others kept at ``start``; differentiable (exactly, by the implicit function theorem)
        with respect to every tensor the terms were built from."""
        detached = MagneticTerms(*(t.detach() for t in terms))
        with torch.no_grad():
            start = start.detach()
            if bool(active.any()):
                result = solve_fixed_point(lambda m: mean_field_update(m, detached, active), start, settings)
            else:
                result = SCFResult(start, 0, True, [])
        solution = result.solution.detach()
        tensors, rebuild = split_differentiable(terms)
        if not bool(active.any()):
            return solution, result
        scale = _preconditioner(solution, detached) * active[:, None].to(solution.dtype)
        shape = solution.shape

        def stationarity_map(x: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
            moments = x.reshape(shape)
            energy = magnetic_energy(moments, rebuild(inputs)).sum()
            (gradient,) = torch.autograd.grad(energy, moments, create_graph=True)
            return (moments - scale * gradient).reshape(-1)

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
    "MagneticChannel", "MagneticTerms", "magnetic_energy", "magnetic_forces", "mean_field_update", "spin_axis",
]
