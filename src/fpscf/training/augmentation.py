"""Time-reversal augmentation: the time-reversed copy of a magnetic structure (docs/physics.md, The model).

Time reversal T reverses every current, so every magnetic quantity changes sign while charges,
positions and electric fields do not. The energy E(R, ε, B, m) of a system without spontaneous
currents is even under T: ``E(R, ε, −B, −m) = E(R, ε, B, m)``. A quantity's parity follows from
the derivative of E that defines it:

- odd (flipped): the applied field B (T) and the moments — ``initial_magmoms`` and the labels
  ``magmoms`` m_i and ``magnetic_moment`` M = −(1/μ_B) ∂E/∂B (μ_B) — because a moment is a
  circulating current; the magnetic forces ``noncollinear_magnetic_forces`` −∂E/∂m_i (eV/μ_B),
  one odd variable in the denominator; the magnetoelectric tensor −∂²E/∂ε∂B (one B), were it a
  label;
- even (kept): the energy, forces −∂E/∂R, stress, dipole −∂E/∂ε, charges, multipoles, Fermi level,
  electrostatic potentials and field features, polarizability and Born charges (no B or m), and the
  magnetic susceptibility −∂²E/∂B∂B (two odd variables); ``level`` and ``spin_on`` describe the
  structure.

Collinear moments are scalars s along the spin axis n̂ = B/|B| (ẑ without a field, see
:mod:`fpscf.scf.magnetic`). T flips the moment s n̂ and, in a field, the axis with B, so s itself
is odd only where B = 0 and even in a field. This holds for collinear ``magmoms`` labels (N,), and
for ``initial_magmoms`` (N, 3) when a collinear model reads them (their z column is s).

The model does not build time-reversal symmetry in; training on each magnetic structure together
with its time-reversed copy makes the loss exactly symmetric under T (``time_reversal_augmentation``
in the training config). Appending the copy, rather than flipping each structure with probability
1/2, gives a symmetric loss at every step, not only on average, and needs no random numbers (a
resumed run sees the same batches). Loss weights are kept: with the losses' mean over labelled
rows, a batch trains as if the data set held both time partners.
"""

from __future__ import annotations

import dataclasses

import torch

from fpscf.data.graph import AtomicGraph
from fpscf.data.labels import LABEL_NAMES, PER_ATOM_LABELS

#: Labels that change sign under time reversal.
TIME_REVERSAL_ODD_LABELS: frozenset[str] = frozenset({"magmoms", "magnetic_moment", "noncollinear_magnetic_forces"})
#: Labels that time reversal leaves unchanged.
TIME_REVERSAL_EVEN_LABELS: frozenset[str] = frozenset(LABEL_NAMES) - TIME_REVERSAL_ODD_LABELS


def time_reversed(graph: AtomicGraph, collinear: bool = False) -> AtomicGraph:
    """The time-reversed graph (one structure or a batch): magnetic field, initial moments and the
    odd labels (:data:`TIME_REVERSAL_ODD_LABELS`) negated, collinear moments only where B = 0
    (module docstring); everything else shared with ``graph``. An involution:
    ``time_reversed(time_reversed(g))`` equals ``g``.

    Args:
        graph: the structures.
        collinear: ``initial_magmoms`` are for a collinear model (z column s along n̂); otherwise
            they are vectors.

    Raises:
        ValueError: the graph has a label of unknown time-reversal parity (classify it in
            :mod:`fpscf.training.augmentation`).
    """
    unknown = sorted(set(graph.labels) - TIME_REVERSAL_ODD_LABELS - TIME_REVERSAL_EVEN_LABELS)
    if unknown:
        raise ValueError(
            f"time_reversed: labels {unknown} have no known time-reversal parity; add them to "
            "TIME_REVERSAL_ODD_LABELS (odd powers of B or m) or TIME_REVERSAL_EVEN_LABELS in fpscf.training.augmentation"
        )
    # sign of a collinear moment s along n̂ = B/|B|: flipped only without a field, per atom
    no_field = (graph.magnetic_field == 0).all(dim=1)[graph.batch]
    collinear_sign = torch.where(no_field, -1.0, 1.0).to(graph.positions.dtype)
    labels = {}
    for name, value in graph.labels.items():
        if name == "magmoms" and value.ndim == 1:
            value = collinear_sign * value
        elif name in TIME_REVERSAL_ODD_LABELS:
            value = -value
        labels[name] = value
    initial = graph.initial_magmoms
    if initial is not None:
        initial = collinear_sign[:, None] * initial if collinear else -initial
    return dataclasses.replace(
        graph,
        magnetic_field=-graph.magnetic_field,
        initial_magmoms=initial,
        labels=labels,
        label_masks=dict(graph.label_masks),
        weights=dict(graph.weights),
    )


def changes_under_time_reversal(graph: AtomicGraph) -> torch.Tensor:
    """(B,) bool: structures that time reversal changes, i.e. with a nonzero magnetic field,
    initial moment or labelled odd quantity. The others (also ``spin_on`` structures whose field
    and moments are all zero) are their own time-reversed copies and need none."""
    batch = graph.batch
    changed = (graph.magnetic_field != 0).any(dim=1)
    initial = graph.initial_magmoms
    per_atom = [] if initial is None else [(initial != 0) & torch.isfinite(initial)]  # NaN rows: none given
    for name in TIME_REVERSAL_ODD_LABELS & set(graph.labels):
        nonzero = (graph.labels[name] != 0).reshape(graph.labels[name].shape[0], -1).any(dim=1)
        if name in PER_ATOM_LABELS:
            per_atom.append(nonzero[:, None] & graph.label_masks[name][batch][:, None])
        else:
            changed = changed | (nonzero & graph.label_masks[name])
    for nonzero in per_atom:
        count = torch.zeros(graph.num_graphs, dtype=torch.int64, device=batch.device)
        changed = changed | count.index_add(0, batch, nonzero.any(dim=1).to(torch.int64)).bool()
    return changed


def time_reversal_partners(graphs: list[AtomicGraph], collinear: bool = False) -> dict[int, AtomicGraph]:
    """Index → time-reversed copy (:func:`time_reversed`) of each structure of ``graphs`` that time
    reversal changes; with ``time_reversal_augmentation`` the trainer puts every copy in the batch
    of its partner."""
    return {
        k: time_reversed(g, collinear) for k, g in enumerate(graphs) if bool(changes_under_time_reversal(g).any())
    }


__all__ = [
    "TIME_REVERSAL_EVEN_LABELS",
    "TIME_REVERSAL_ODD_LABELS",
    "changes_under_time_reversal",
    "time_reversal_partners",
    "time_reversed",
]
