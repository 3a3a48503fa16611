"""Training losses: weighted mean squared errors over labelled structures only.

A structure without a label is masked out of that loss (never compared with zeros). Each loss is
``Σ w_s |error|² / Σ m_s`` over the labelled elements (w_s the structure's weight from
``atoms.info["<property>_weight"]``, m_s its mask), so loss weights in the config are comparable
across batches. Errors, in the units the metrics report:

==============================  ===================================================  ==========
loss                            error per element                                    unit
==============================  ===================================================  ==========
energy_per_atom                 (E − E_ref)/N                                        eV/atom
forces                          F − F_ref, per Cartesian component                   eV/Å
stress                          σ − σ_ref, 9 components (periodic structures)        eV/Å³
atomic_multipoles               p − p_ref, coefficients present in both              e, e·Å, e·Å²
charges                         q − q_ref                                            e
total_charge_per_atom           (Σq − Q)/N (input Q; always available)               e/atom
dipole_per_atom                 (D − D_ref)/N, D = −∂E/∂ε                            e·Å/atom
fermi_level_per_atom            (μ − μ_ref)/N                                        V/atom
polarizability                  α − α_ref, 9 components                              e·Å²/V
born_effective_charges          Z* − Z*_ref, 9 components per atom                   e
esps                            potential at the nuclei − reference                  V
field_features                  field features − reference (model layout)            V, V/Å, V/Å²
fixedpoint_scf_stability        gain ‖∂G/∂p v‖/‖v‖ of the SCF map (target 0)          1
magmoms                         m − m_ref, (N,) collinear or (N, 3) non-collinear    μ_B
                                (not on constrained-moment structures)
magnetic_moment_per_atom        (M − M_ref)/N, M = −(1/μ_B) ∂E/∂B                    μ_B/atom
noncollinear_magnetic_forces    −∂E/∂m_i − reference, at the constrained moments     eV/μ_B
magnetic_susceptibility         (χ − χ_ref)/μ_B, χ = −∂²E/∂B∂B, 9 components        μ_B/T
hessian                         sampled rows of ∂²E/∂R∂R − reference (unbiased       eV/Å²
                                estimate of the mean over all rows; see
                                :mod:`fpscf.training.hessian`)
==============================  ===================================================  ==========

The magnetic losses need a model with magnetic moments (``magnetic_moments: collinear`` or
``noncollinear``; ``noncollinear_magnetic_forces`` needs ``noncollinear``). A structure with a
``noncollinear_magnetic_forces`` label is a constrained-moment calculation: the model holds its
moments at its ``magmoms`` label (:func:`fpscf.training.forward.predict`), so that label is an
input there and is left out of the ``magmoms`` loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from fpscf.data.graph import AtomicGraph
from fpscf.units import BOHR_MAGNETON

#: Label each loss compares with (None: needs no label).
LOSS_LABELS: dict[str, str | None] = {
    "energy_per_atom": "energy",
    "forces": "forces",
    "stress": "stress",
    "atomic_multipoles": "atomic_multipoles",
    "charges": "charges",
    "total_charge_per_atom": None,
    "dipole_per_atom": "dipole",
    "fermi_level_per_atom": "fermi_level",
    "polarizability": "polarizability",
    "born_effective_charges": "born_effective_charges",
    "esps": "esps",
    "field_features": "field_features",
    "fixedpoint_scf_stability": None,
    "magmoms": "magmoms",
    "magnetic_moment_per_atom": "magnetic_moment",
    "noncollinear_magnetic_forces": "noncollinear_magnetic_forces",
    "magnetic_susceptibility": "magnetic_susceptibility",
    "hessian": "hessian",
}
UNITS = {
    "energy_per_atom": "eV/atom", "forces": "eV/Å", "stress": "eV/Å³", "atomic_multipoles": "e·Åˡ",
    "charges": "e", "total_charge_per_atom": "e/atom", "dipole_per_atom": "e·Å/atom",
    "fermi_level_per_atom": "V/atom", "polarizability": "e·Å²/V", "born_effective_charges": "e",
    "esps": "V", "field_features": "V·Å⁻ˡ", "fixedpoint_scf_stability": "1", "magmoms": "μ_B",
    "magnetic_moment_per_atom": "μ_B/atom", "noncollinear_magnetic_forces": "eV/μ_B", "magnetic_susceptibility": "μ_B/T",
    "hessian": "eV/Å²",
}


@dataclass
class LossTerm:
    """One loss: its weighted value (scalar, differentiable) and the raw errors (for metrics).

    ``count``: the number of rows ``value`` is a mean over (default: the rows of ``errors``); with
    several training ranks each rank's value is rescaled by its share of the global count."""

    value: torch.Tensor
    errors: torch.Tensor
    count: int | None = None

    @property
    def rows(self) -> int:
        return int(self.errors.shape[0]) if self.count is None else int(self.count)


def losses_with_data(names: set[str], graph: AtomicGraph) -> set[str]:
    """The losses of ``names`` that some structure of ``graph`` has a label for (losses without a
    label, such as the total charge, always), so a batch never pays for outputs it cannot use."""
    kept = set()
    for name in names:
        label = LOSS_LABELS[name]
        mask = graph.label_masks.get(label) if label is not None else None
        if label is None or (mask is not None and bool(mask.any())):
            kept.add(name)
    return kept


def compute_losses(predictions: dict[str, Any], graph: AtomicGraph, weights: dict[str, float]) -> tuple[torch.Tensor, dict[str, LossTerm]]:
    """Total loss Σ weight·loss and the terms of every loss with weight > 0 that has data here."""
    terms: dict[str, LossTerm] = {}
    active = losses_with_data({name for name, weight in weights.items() if weight > 0}, graph)
    for name in weights:
        if name not in active:
            continue
        term = _loss(name, predictions, graph)
        if term is not None:
            terms[name] = term
    total = sum((weights[name] * term.value for name, term in terms.items()), graph.positions.new_zeros(()))
    return total, terms


def _structure_mask(graph: AtomicGraph, label: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask (B,) bool and weight (B,) of one label."""
    mask = graph.label_masks.get(label)
    if mask is None:
        mask = torch.zeros(graph.num_graphs, dtype=torch.bool, device=graph.positions.device)
    weight = graph.weights.get(label)
    if weight is None:
        weight = torch.ones(graph.num_graphs, dtype=graph.positions.dtype, device=graph.positions.device)
    return mask, weight.to(graph.positions.dtype)


def _weighted(errors: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor) -> LossTerm | None:
    """errors (M, ...) with per-row mask/weight (M,) → mean weighted squared error over labelled rows."""
    if not bool(mask.any()):
        return None
    selected = errors[mask]
    squared = (selected * selected).reshape(selected.shape[0], -1)
    per_row = squared.mean(-1) * weight[mask]
    return LossTerm(per_row.mean(), selected.detach())


def _loss(name: str, out: dict[str, Any], graph: AtomicGraph) -> LossTerm | None:
    batch = graph.batch
    n_atoms = graph.num_atoms_per_graph.to(graph.positions.dtype)
    if name == "total_charge_per_atom":
        charge = out["charges"].new_zeros(graph.num_graphs).index_add(0, batch, out["charges"])
        errors = (charge - graph.total_charge.to(charge.dtype)) / n_atoms
        return _weighted(errors, torch.ones_like(errors, dtype=torch.bool), torch.ones_like(errors))
    if name == "fixedpoint_scf_stability":
        gain = out["scf_stability"]
        return _weighted(gain, torch.ones_like(gain, dtype=torch.bool), torch.ones_like(gain))
    if name == "hessian":
        from fpscf.training.hessian import hessian_term

        return hessian_term(out, graph)
    label = LOSS_LABELS[name]
    assert label is not None
    if label not in graph.labels:
        return None
    reference = graph.labels[label].to(graph.positions.dtype)
    mask, weight = _structure_mask(graph, label)
    if name == "energy_per_atom":
        return _weighted((out["energy"] - reference) / n_atoms, mask, weight)
    if name == "dipole_per_atom":
        return _weighted((out["dipole"] - reference) / n_atoms[:, None], mask, weight)
    if name == "fermi_level_per_atom":
        return _weighted((out["fermi_level"] - reference) / n_atoms, mask, weight)
    if name == "stress":
        if "stress" not in out:
            return None
        periodic = graph.pbc.all(dim=1)
        return _weighted(out["stress"] - reference, mask & periodic, weight)
    if name == "polarizability":
        return _weighted(out["polarizability"] - reference, mask, weight)
    if name == "magnetic_moment_per_atom":
        moment = _magnetic_output(out, "magnetic_moment", name)
        return _weighted((moment - reference) / n_atoms[:, None], mask, weight)
    if name == "magnetic_susceptibility":
        # in μ_B/T (∂M/∂B): eV/T² values are ~1e-6 and would need huge loss weights
        return _weighted((_magnetic_output(out, "magnetic_susceptibility", name) - reference) / BOHR_MAGNETON, mask, weight)
    # Per-atom labels: structure masks and weights broadcast to atoms.
    atom_mask, atom_weight = mask[batch], weight[batch]
    if name == "forces":
        return _weighted(out["forces"] - reference, atom_mask, atom_weight)
    if name == "charges":
        return _weighted(out["charges"] - reference, atom_mask, atom_weight)
    if name == "atomic_multipoles":
        width = min(reference.shape[1], out["multipoles"].shape[1])
        return _weighted(out["multipoles"][:, :width] - reference[:, :width], atom_mask, atom_weight)
    if name == "born_effective_charges":
        return _weighted(out["born_effective_charges"] - reference, atom_mask, atom_weight)
    if name == "esps":
        return _weighted(out["esps"] - reference, atom_mask, atom_weight)
    if name == "magmoms":
        moments = _magnetic_output(out, "magmoms", name)
        _check_moment_kind(moments, reference, "magmoms labels", name)
        constrained = constrained_moments_mask(graph)[batch]
        return _weighted(moments - reference, atom_mask & ~constrained, atom_weight)
    if name == "noncollinear_magnetic_forces":
        forces = _magnetic_output(out, "magnetic_forces", name)
        _check_moment_kind(forces, reference, "noncollinear_magnetic_forces labels", name)
        return _weighted(forces - reference, atom_mask, atom_weight)
    if name == "field_features":
        features = out["field_features"].reshape(graph.num_atoms, -1)
        if features.shape[1] != reference.shape[1]:
            raise ValueError(
                f"field_features labels have {reference.shape[1]} columns but the model makes "
                f"{features.shape[1]} (receiver widths × (field_feature_max_l+1)²); regenerate the labels for this model"
            )
        return _weighted(features - reference, atom_mask, atom_weight)
    raise ValueError(f"unknown loss {name!r}; choose from {list(LOSS_LABELS)}")


def constrained_moments_mask(graph: AtomicGraph) -> torch.Tensor:
    """(B,) bool: structures whose moments are constrained to their ``magmoms`` label, i.e. those
    with a ``noncollinear_magnetic_forces`` label (a constrained-moment calculation)."""
    mask = graph.label_masks.get("noncollinear_magnetic_forces")
    if mask is None:
        return torch.zeros(graph.num_graphs, dtype=torch.bool, device=graph.positions.device)
    return mask


def _magnetic_output(out: dict[str, Any], key: str, loss: str) -> torch.Tensor:
    """A magnetic model output, or an error naming the model option that makes it."""
    if key not in out:
        raise ValueError(
            f"loss {loss!r} needs the model output {key!r}, which is missing: a model with magnetic_moments: none "
            f"has no magnetic outputs (set the model option magnetic_moments: collinear|noncollinear), and a "
            f"magnetic model makes it when fpscf.training.forward.predict is given this loss"
        )
    return out[key]


def _check_moment_kind(prediction: torch.Tensor, reference: torch.Tensor, what: str, loss: str) -> None:
    """Collinear (N,) and non-collinear (N, 3) moments (or magnetic forces) cannot be compared."""
    if prediction.shape == reference.shape:
        return
    kind = {1: "collinear (N,)", 2: "non-collinear (N, 3)"}
    made = kind.get(prediction.ndim, f"shape {tuple(prediction.shape)}")
    given = kind.get(reference.ndim, f"shape {tuple(reference.shape)}")
    wanted = "noncollinear" if reference.ndim == 2 else "collinear"
    raise ValueError(
        f"loss {loss!r}: the {what} are {given} but the model's output is {made}; set the model option "
        f"magnetic_moments: {wanted} to match the data (or convert the labels)"
    )
