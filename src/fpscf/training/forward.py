"""One training forward pass: the model evaluated in a stage's fixed-point mode, with the outputs
its losses need (DESIGN.md section 4)."""

from __future__ import annotations

from typing import Any

import torch

from fpscf.calculators.response import field_derivatives
from fpscf.data.graph import AtomicGraph
from fpscf.scf.settings import SCFSettings
from fpscf.training.config import FixedPointOptions, SCFOptions

#: Model outputs each loss needs (beyond energy, multipoles and Fermi level, always present).
NEEDS_FORCES = frozenset({"forces", "born_effective_charges"})
NEEDS_STRESS = frozenset({"stress"})
NEEDS_DIPOLE = frozenset({"dipole_per_atom", "polarizability", "born_effective_charges"})
NEEDS_FIELD_RESPONSE = frozenset({"polarizability", "born_effective_charges"})
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
    the parameter gradient); Born charges and polarizability from three more.
    """
    scf = options.scf
    mode = options.mode
    p0, mu0 = initial_state(graph, model, scf)
    settings = SCFSettings(
        tolerance=scf.scf_tolerance if scf else 1e-6,
        max_steps=max(scf.num_scf_steps if scf else 1, 1),
        mixing="linear" if mode == "unroll_scf" else "anderson",
        mixing_parameter=scf.mixing_parameter if scf else 0.5,
    )
    constant_charge = scf.constant_charge if scf else False
    field_response = bool(losses & NEEDS_FIELD_RESPONSE)
    create_graph = training or field_response
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
        )
        if field_response:
            inputs = out["differentiable_inputs"]
            born, alpha, _ = field_derivatives(out["dipole"], inputs["positions"], inputs["field"], keep_graph=training)
            out["born_effective_charges"] = born
            out["polarizability"] = alpha
        if "fixedpoint_scf_stability" in losses:
            out["scf_stability"] = _contraction_estimate(out, graph)
    return out


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
