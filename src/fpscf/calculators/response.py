"""Response properties: exact derivatives of the converged SCF energy (docs/physics.md, Units and signs).

All of them are derivatives of the electric enthalpy ``E(R, η, ε)`` (positions R Å, homogeneous
strain η, applied field ε V/Å) taken by autograd through the implicit fixed-point layer, so they
are exact at any order (no finite differences, no truncated unroll):

- ``dipole`` D_a = −∂E/∂ε_a (B,3) e·Å
- ``polarizability`` α_ab = −∂²E/∂ε_a∂ε_b = ∂D_b/∂ε_a (B,3,3) e·Å²/V
- ``born_effective_charges`` Z*_{I,ab} = −∂²E/∂ε_a∂R_{I,b} = ∂F_{I,b}/∂ε_a = ∂D_a/∂R_{I,b} (N,3,3) e
- ``raman_tensors`` R_{I,c,ab} = ∂α_ab/∂R_{I,c} (N,3,3,3) e·Å/V
- ``hessian`` H_{Ib,Jc} = ∂²E/∂R_{I,b}∂R_{J,c} = −∂F_{I,b}/∂R_{J,c} (3N,3N) eV/Å², row and column
  index 3I + b (one backward pass of the forces per row; not symmetrised: H − Hᵀ is the solver error)
- ``magnetic_moment`` M = −(1/μ_B) ∂E/∂B (B,3) μ_B and ``magnetic_forces`` −∂E/∂m_i (N,3) or (N,)
  eV/μ_B, always formed for models with magnetic moments
- ``magnetic_susceptibility`` χ_ab = −∂²E/∂B_a∂B_b = μ_B ∂M_b/∂B_a (B,3,3) eV/T²
- ``magnetoelectric_tensor`` −∂²E/∂ε_a∂B_b = ∂D_a/∂B_b = μ_B ∂M_b/∂ε_a (B,3,3) e·Å/T
- ``virials`` W_I = −∂E_I/∂η (N,3,3) eV, the change of atom I's energy under a homogeneous
  deformation of the whole system (all atoms and the cell move, the SCF density responds). They sum
  to the global virial ``W = −∂E/∂η = −stress·Ω``. For a pair potential this is LAMMPS' and ASE's
  half-and-half split of each pair's virial; the long-range Hartree energy is split as
  ``E_I = ½ p_I·V_I`` (atom I's multipoles in the potential of the whole density) and the applied
  field energy as ``−ε·(q_I r_I + d_I)``, and their virials follow that split.

Each property costs extra backward passes (each through one GMRES solve per order of
differentiation), so only the requested ones are formed, all from one forward pass.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from fpscf.data.graph import AtomicGraph
from fpscf.units import BOHR_MAGNETON, VACUUM_PERMITTIVITY

RESPONSE_PROPERTIES = (
    "polarizability", "born_effective_charges", "raman_tensors", "virials", "hessian",
    "magnetic_susceptibility", "magnetoelectric_tensor",
)
FIELD_RESPONSE = ("polarizability", "born_effective_charges", "raman_tensors")
MAGNETIC_RESPONSE = ("magnetic_susceptibility", "magnetoelectric_tensor")


def evaluate_response(
    model: torch.nn.Module,
    graph: AtomicGraph,
    properties: Iterable[str],
    **model_kwargs: Any,
) -> dict[str, Any]:
    """Run the model once and form the requested response properties together.

    Always returns the model outputs with forces, dipole and (for every structure) the global
    virial; ``properties`` ⊂ :data:`RESPONSE_PROPERTIES` adds the named tensors. model_kwargs are
    passed to ``model(graph, ...)`` (SCF settings, charge mode, warm start).
    """
    wanted = set(properties)
    unknown = wanted - set(RESPONSE_PROPERTIES)
    if unknown:
        raise ValueError(f"unknown response properties {sorted(unknown)}; choose from {list(RESPONSE_PROPERTIES)}")
    field_order = 3 if "raman_tensors" in wanted else 2 if wanted & set(FIELD_RESPONSE) else 1
    per_atom_virials = "virials" in wanted
    magnetic = getattr(model, "magnetic", None) is not None
    magnetic_response = wanted & set(MAGNETIC_RESPONSE)
    if magnetic_response and not magnetic:
        raise ValueError(
            f"{sorted(magnetic_response)} need a model with magnetic moments (magnetic_moments: collinear or "
            "noncollinear); this one has none"
        )
    out = model(
        graph,
        compute_forces=True,
        compute_stress=True,
        compute_dipole=True,
        compute_magnetic_moment=magnetic,
        compute_magnetic_forces=magnetic,
        create_graph=field_order > 1 or per_atom_virials or "hessian" in wanted or bool(magnetic_response),
        **model_kwargs,
    )
    inputs = out["differentiable_inputs"]
    positions, field, strain = inputs["positions"], inputs["field"], inputs["strain"]
    if field_order > 1:
        born, alpha, raman = field_derivatives(out["dipole"], positions, field, with_raman=field_order > 2)
        out["born_effective_charges"] = born
        out["polarizability"] = alpha
        if raman is not None:
            out["raman_tensors"] = raman
    if magnetic_response:
        chi, magnetoelectric = magnetic_derivatives(
            out["magnetic_moment"], inputs["magnetic_field"], field if "magnetoelectric_tensor" in wanted else None
        )
        out["magnetic_susceptibility"] = chi
        if magnetoelectric is not None:
            out["magnetoelectric_tensor"] = magnetoelectric
    if per_atom_virials:
        out["virials"] = _per_atom_virials(out["node_energy"], strain)
    if "hessian" in wanted:
        out["hessian"] = _position_hessian(out["forces"], positions)
    return out


def _grad(output: torch.Tensor, inputs: list[torch.Tensor], create_graph: bool) -> list[torch.Tensor]:
    if not output.requires_grad:  # the output does not depend on anything (e.g. no magnetic moments)
        return [torch.zeros_like(x) for x in inputs]
    grads = torch.autograd.grad(output, inputs, retain_graph=True, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


def field_derivatives(
    dipole: torch.Tensor,
    positions: torch.Tensor,
    field: torch.Tensor,
    *,
    with_raman: bool = False,
    keep_graph: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Born charges (N,3,3), polarizability (B,3,3) and, on request, Raman tensors (N,3,3,3).

    Three backward passes of D_a give ``Z*_{I,ab} = ∂D_a/∂R_{I,b}`` and ``α_ba = ∂D_a/∂ε_b``. The
    Raman columns ``∂α_ba/∂R`` (b ≥ a; α is symmetric) are taken from one field direction's graph
    before the next is built, which bounds the memory of the third derivatives. ``keep_graph``
    keeps Z* and α differentiable (training on them); otherwise they are detached.
    """
    born_rows, alpha_cols = [], []
    raman = positions.new_zeros(positions.shape[0], 3, 3, 3) if with_raman else None
    for a in range(3):
        d_positions, d_field = _grad(dipole[:, a].sum(), [positions, field], create_graph=keep_graph or with_raman)
        if raman is not None:
            for b in range(a, 3):
                (column,) = _grad(d_field[:, b].sum(), [positions], create_graph=False)
                raman[:, :, b, a] = column
                raman[:, :, a, b] = column
        born_rows.append(d_positions if keep_graph else d_positions.detach())
        alpha_cols.append(d_field if keep_graph else d_field.detach())
        del d_positions, d_field
    return torch.stack(born_rows, dim=1), torch.stack(alpha_cols, dim=2), raman


def magnetic_derivatives(
    magnetic_moment: torch.Tensor,
    magnetic_field: torch.Tensor,
    electric_field: torch.Tensor | None,
    *,
    keep_graph: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Susceptibility χ_ab = −∂²E/∂B_a∂B_b = μ_B ∂M_b/∂B_a (B,3,3) eV/T² and, with the electric
    field tensor, the magnetoelectric tensor −∂²E/∂ε_a∂B_b = μ_B ∂M_b/∂ε_a (B,3,3) e·Å/T, from
    three backward passes of M (μ_B; built with create_graph). ``keep_graph`` keeps them differentiable."""
    inputs = [magnetic_field] + ([electric_field] if electric_field is not None else [])
    chi_cols, me_cols = [], []
    for b in range(3):
        grads = _grad(magnetic_moment[:, b].sum(), inputs, create_graph=keep_graph)
        chi_cols.append(BOHR_MAGNETON * grads[0])
        if electric_field is not None:
            me_cols.append(BOHR_MAGNETON * grads[1])
    chi = torch.stack(chi_cols, dim=2)
    magnetoelectric = torch.stack(me_cols, dim=2) if me_cols else None
    if not keep_graph:
        chi = chi.detach()
        magnetoelectric = magnetoelectric.detach() if magnetoelectric is not None else None
    return chi, magnetoelectric


def _position_hessian(forces: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """H = −∂F/∂R (3N,3N) eV/Å² from 3N backward passes of the forces (built with create_graph),
    each through the implicit layer's adjoint solve. Row 3I + b is −∂F_{I,b}/∂R. Detached."""
    n_atoms = positions.shape[0]
    hessian = positions.new_zeros(3 * n_atoms, 3 * n_atoms)
    for index in range(n_atoms):
        for b in range(3):
            (row,) = _grad(forces[index, b], [positions], create_graph=False)
            hessian[3 * index + b] = -row.reshape(-1)
    return hessian


def _per_atom_virials(node_energy: torch.Tensor, strain: torch.Tensor) -> torch.Tensor:
    """W_I = −∂E_I/∂η (N,3,3) eV: six double-backward passes through a per-atom weight u."""
    weights = torch.zeros_like(node_energy, requires_grad=True)
    (weighted,) = _grad((weights * node_energy).sum(), [strain], create_graph=True)
    virials = node_energy.new_zeros(node_energy.shape[0], 3, 3)
    for a in range(3):
        for b in range(a, 3):
            (column,) = _grad(weighted[:, a, b].sum(), [weights], create_graph=False)
            virials[:, a, b] = -column
            virials[:, b, a] = -column
    return virials


def enforce_acoustic_sum_rule(born: torch.Tensor, batch: torch.Tensor, total_charge: torch.Tensor) -> torch.Tensor:
    """Born charges shifted by the same tensor on every atom of a structure so that
    ``Σ_I Z*_I = Q·1`` exactly (Q the total charge; zero for a neutral system). Without the
    correction the sum holds to the SCF and solver tolerance already."""
    n_graphs = total_charge.shape[0]
    counts = torch.zeros(n_graphs, dtype=born.dtype, device=born.device).index_add(0, batch, torch.ones_like(batch, dtype=born.dtype))
    total = born.new_zeros(n_graphs, 3, 3).index_add(0, batch, born)
    target = total_charge.to(born.dtype)[:, None, None] * torch.eye(3, dtype=born.dtype, device=born.device)
    return born - ((total - target) / counts[:, None, None])[batch]


def dielectric_tensor(alpha: torch.Tensor, volume: torch.Tensor) -> torch.Tensor:
    """ε∞ = 1 + α/(ε0 Ω) (B,3,3) for periodic cells; α (B,3,3) e·Å²/V, volume (B,) Å³."""
    eye = torch.eye(3, dtype=alpha.dtype, device=alpha.device)
    return eye + alpha / (VACUUM_PERMITTIVITY * volume[:, None, None])


def polarization_branch(dipole: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Polarization ``P = D/Ω`` e/Å² on the branch nearest zero, and the quantum (rows ``e a_j/Ω``).

    dipole (3,) e·Å, cell (3,3) Å (rows are lattice vectors). P is defined modulo the lattice
    ``Σ_j n_j e a_j/Ω``: the lattice point nearest to P (searched among the neighbours of the
    rounded fractional coordinates, exact for skewed cells) is removed.
    """
    volume = torch.abs(torch.linalg.det(cell))
    polarization = dipole / volume
    quantum = cell / volume
    fractional = torch.linalg.solve(quantum.T, polarization)
    base = torch.round(fractional)
    offsets = torch.cartesian_prod(*[torch.tensor([-1.0, 0.0, 1.0], dtype=cell.dtype, device=cell.device)] * 3)
    candidates = polarization[None, :] - (base[None, :] + offsets) @ quantum
    best = torch.argmin((candidates * candidates).sum(-1))
    return candidates[best], quantum
