"""One training forward pass: the model evaluated in a stage's fixed-point mode, with the outputs
its losses need (docs/physics.md, Training modes).

For a model with magnetic moments, structures with a ``noncollinear_magnetic_forces`` label are
constrained-moment calculations: the model holds their moments at their ``magmoms`` label
(``fix_moments``), so their energy, forces and magnetic forces are those of the constrained state
the labels were computed in. All other structures relax their moments self-consistently.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from fpscf.calculators.response import field_derivatives, magnetic_derivatives
from fpscf.data.graph import AtomicGraph
from fpscf.scf.magnetic import DEFAULT_START_MOMENT, spin_axis
from fpscf.scf.settings import SCFSettings
from fpscf.training.config import FixedPointOptions, SCFOptions

#: Model outputs each loss needs (beyond energy, multipoles and Fermi level, always present).
NEEDS_FORCES = frozenset({"forces", "born_effective_charges", "hessian"})
NEEDS_STRESS = frozenset({"stress"})
NEEDS_DIPOLE = frozenset({"dipole_per_atom", "polarizability", "born_effective_charges"})
NEEDS_FIELD_RESPONSE = frozenset({"polarizability", "born_effective_charges"})
NEEDS_MAGNETIC_MOMENT = frozenset({"magnetic_moment_per_atom", "magnetic_susceptibility"})
NEEDS_MAGNETIC_FORCES = frozenset({"noncollinear_magnetic_forces"})
NEEDS_MAGNETIC_RESPONSE = frozenset({"magnetic_susceptibility"})
STABILITY_POWER_STEPS = 4


def initial_state(graph: AtomicGraph, model: torch.nn.Module, scf: SCFOptions | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Starting density (N, K) and Fermi level (B,) of a stage: reference values, the model's
    local guess (None) or zero. ``direct`` (scf None) always starts from the reference."""
    density = "from_data" if scf is None else scf.initial_density
    fermi = "from_data" if scf is None else scf.initial_fermi_level
    p0 = None
    if density == "from_data":
        p0 = reference_multipoles(graph, model.num_coefficients)
    elif density == "zero":
        p0 = graph.positions.new_zeros(graph.num_atoms, model.num_coefficients)
    mu0 = graph.positions.new_zeros(graph.num_graphs)
    if fermi == "from_data" and "fermi_level" in graph.labels:
        mu0 = graph.labels["fermi_level"].to(graph.positions.dtype)
    return p0, mu0


def reference_multipoles(graph: AtomicGraph, num_coefficients: int) -> torch.Tensor:
    """Reference multipoles (N, K) padded or cut to the model's K coefficients."""
    if "atomic_multipoles" not in graph.labels:
        raise ValueError(
            "this stage starts from the reference density (mode 'direct' or initial_density: from_data) "
            "but the data have no 'atomic_multipoles' label; add them or use initial_density: local_guess"
        )
    reference = graph.labels["atomic_multipoles"].to(graph.positions.dtype)
    width = min(reference.shape[1], num_coefficients)
    out = reference.new_zeros(reference.shape[0], num_coefficients)
    out[:, :width] = reference[:, :width]
    return out


def predict(
    model: torch.nn.Module, graph: AtomicGraph, options: FixedPointOptions, losses: set[str], training: bool = True
) -> dict[str, Any]:
    """Model outputs for the given losses, differentiable w.r.t. the parameters when ``training``.

    Forces, stress and the dipole ``−∂E/∂ε`` come from one backward pass (kept in the graph for
    the parameter gradient); Born charges and polarizability from three more, the magnetic
    susceptibility ``−∂²E/∂B∂B`` (B,3,3) eV/T² from three more. A magnetic model holds the moments
    of constrained-moment structures at their ``magmoms`` label (see the module docstring).
    """
    scf = options.scf
    mode = options.mode
    p0, mu0 = initial_state(graph, model, scf)
    settings = SCFSettings(
        scf_tolerance=scf.scf_tolerance if scf else 1e-6,
        max_scf_steps=max(scf.num_scf_steps if scf else 1, 1),
        mixing="linear" if mode == "unroll_scf" else "anderson",
        mixing_parameter=scf.mixing_parameter if scf else 0.5,
    )
    constant_charge = scf.constant_charge if scf else False
    field_response = bool(losses & NEEDS_FIELD_RESPONSE)
    magnetic_response = bool(losses & NEEDS_MAGNETIC_RESPONSE)
    create_graph = training or field_response or magnetic_response or "hessian" in losses
    magnetic_options: dict[str, Any] = {}
    if model.config.magnetic_moments != "none":
        graph, fixed = constrain_moments(graph, collinear=model.config.magnetic_moments == "collinear")
        magnetic_options = {
            "compute_magnetic_moment": bool(losses & NEEDS_MAGNETIC_MOMENT),
            "compute_magnetic_forces": bool(losses & NEEDS_MAGNETIC_FORCES),
            "fix_moments": fixed,
        }
    with torch.enable_grad():
        out = model(
            graph,
            mode=mode,
            unroll_steps=scf.num_scf_steps if scf else 1,
            constant_charge=constant_charge,
            fermi_level=mu0 if not constant_charge else None,
            initial_multipoles=p0,
            initial_fermi_level=mu0,
            settings=settings,
            compute_forces=bool(losses & NEEDS_FORCES),
            compute_stress=bool(losses & NEEDS_STRESS) and bool(graph.pbc.all(dim=1).any()),
            compute_dipole=bool(losses & NEEDS_DIPOLE),
            create_graph=create_graph,
            **magnetic_options,
        )
        if field_response:
            inputs = out["differentiable_inputs"]
            born, alpha, _ = field_derivatives(out["dipole"], inputs["positions"], inputs["field"], keep_graph=training)
            out["born_effective_charges"] = born
            out["polarizability"] = alpha
        if magnetic_response and "magnetic_moment" in out:
            field = out["differentiable_inputs"]["magnetic_field"]
            out["magnetic_susceptibility"], _ = magnetic_derivatives(out["magnetic_moment"], field, None, keep_graph=training)
        if "fixedpoint_scf_stability" in losses:
            out["scf_stability"] = _contraction_estimate(out, graph)
    return out


def constrain_moments(graph: AtomicGraph, collinear: bool = False) -> tuple[AtomicGraph, torch.Tensor]:
    """The graph with the initial moments of its constrained-moment structures (those with a
    ``noncollinear_magnetic_forces`` label) set to their ``magmoms`` label, and the (B,) bool mask
    of those structures (the model's ``fix_moments``).

    A collinear label s (N,) (along the spin axis n̂ = B/|B|, ẑ without a field) becomes (0, 0, s)
    for a ``collinear`` model, which reads s from the z column, and the vector s n̂ otherwise. Other
    structures keep their initial moments; if the graph has none, they start where the model would
    (``DEFAULT_START_MOMENT`` along n̂, :mod:`fpscf.scf.magnetic`).

    Raises:
        ValueError: a structure has magnetic forces but no ``magmoms`` label to constrain to.
    """
    fixed = graph.label_masks.get("noncollinear_magnetic_forces")
    if fixed is None or not bool(fixed.any()):
        return graph, torch.zeros(graph.num_graphs, dtype=torch.bool, device=graph.positions.device)
    has_moments = graph.label_masks.get("magmoms", torch.zeros_like(fixed))
    if bool((fixed & ~has_moments).any()):
        missing = (fixed & ~has_moments).nonzero().reshape(-1).tolist()
        raise ValueError(
            f"structures {missing} of this batch have noncollinear_magnetic_forces (a constrained-moment "
            "calculation) but no magmoms label giving the constrained moments; add the magmoms (key_map.magmoms) "
            "or remove their magnetic forces"
        )
    moments = graph.labels["magmoms"].to(graph.positions.dtype)
    axis = graph.positions.new_tensor([0.0, 0.0, 1.0]).expand(graph.num_atoms, 3)
    if not collinear:
        axis = spin_axis(graph.magnetic_field)[graph.batch]
    if moments.ndim == 1:
        moments = moments[:, None] * axis
    initial = graph.initial_magmoms
    if initial is None:
        initial = DEFAULT_START_MOMENT * axis
    atom_fixed = fixed[graph.batch][:, None]
    return dataclasses.replace(graph, initial_magmoms=torch.where(atom_fixed, moments, initial)), fixed


def _contraction_estimate(out: dict[str, Any], graph: AtomicGraph) -> torch.Tensor:
    """Per-structure estimate (B,) of the largest gain ‖(∂G/∂p) v‖/‖v‖ of the SCF map at the
    output density (power iteration on Jacobian–vector products; the last product stays in the
    graph). Below 1 plain mixing converges; the stability loss pushes it down."""
    p = out["multipoles"].detach().requires_grad_(True)
    mu = out["fermi_level"].detach()
    batch = graph.batch
    image = out["scf_map"](p, mu)
    dummy = torch.zeros_like(image, requires_grad=True)
    (transposed,) = torch.autograd.grad(image, p, dummy, create_graph=True)
    generator = torch.Generator(device="cpu").manual_seed(0)
    v = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)

    def per_structure_norm(x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(graph.num_graphs).index_add(0, batch, (x * x).sum(-1)).sqrt()

    gain = p.new_zeros(graph.num_graphs)
    for step in range(STABILITY_POWER_STEPS):
        last = step == STABILITY_POWER_STEPS - 1
        v = v / per_structure_norm(v).clamp_min(1e-30)[batch][:, None]
        (jv,) = torch.autograd.grad(transposed, dummy, v, retain_graph=True, create_graph=last)
        gain = per_structure_norm(jv)
        v = jv.detach()
    return gain
