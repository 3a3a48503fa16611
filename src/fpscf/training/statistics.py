"""Model options estimated from the training set (``"average"`` in the config)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ase.data import chemical_symbols

from fpscf.data.graph import AtomicGraph, collate
from fpscf.electrostatics.multipoles import l_block
from fpscf.training.config import AVERAGE
from fpscf.training.forward import reference_multipoles
from fpscf.errors import FpscfError



class StatisticsError(FpscfError, ValueError):
    """A model option cannot be estimated from the training data."""


def resolve_model_options(options: dict[str, Any], atomic_numbers: list[int], graphs: list[AtomicGraph]) -> dict[str, Any]:
    """Copy of ``options`` with every ``"average"`` replaced by numbers from ``graphs``:
    ``atomic_energies`` (least squares of the energies on composition), ``avg_num_neighbors``,
    ``atom_density_scaling`` (per-element RMS of the reference charges) and ``field_feature_norms``
    (RMS per receiver width and l of the reference density's field features)."""
    resolved = dict(options)
    if resolved.get("atomic_energies") == AVERAGE:
        resolved["atomic_energies"] = atomic_energies(graphs, atomic_numbers)
    if resolved.get("avg_num_neighbors") == AVERAGE:
        resolved["avg_num_neighbors"] = float(np.mean([g.num_edges / max(g.num_atoms, 1) for g in graphs]))
    if resolved.get("atom_density_scaling") == AVERAGE:
        resolved["atom_density_scaling"] = density_scaling(graphs, atomic_numbers)
    if resolved.get("field_feature_norms") == AVERAGE:
        resolved["field_feature_norms"] = None  # placeholder: needs the model's electrostatics
    return resolved


def _with_multipoles(graphs: list[AtomicGraph], option: str) -> list[AtomicGraph]:
    chosen = [g for g in graphs if "atomic_multipoles" in g.label_masks and bool(g.label_masks["atomic_multipoles"].all())]
    if not chosen:
        raise StatisticsError(
            f"{option}: average is estimated from the reference atomic_multipoles, but none of the "
            f"{len(graphs)} training structures has them; give numbers instead of 'average' or add the labels"
        )
    return chosen


def level_atomic_energies(graphs: list[AtomicGraph], atomic_numbers: list[int], num_levels: int) -> list[dict[int, float]]:
    """E0 per element (eV) of each level of theory (:mod:`fpscf.nn.levels`): the least-squares fit
    of :func:`atomic_energies` over the structures of that ``level`` label (none: level 0)."""
    by_level: list[list[AtomicGraph]] = [[] for _ in range(num_levels)]
    for g in graphs:
        level = int(g.labels["level"].reshape(-1)[0]) if "level" in g.labels and bool(g.label_masks["level"].all()) else 0
        if not 0 <= level < num_levels:
            raise StatisticsError(f"a training structure has level {level} but the model has num_levels {num_levels}; "
                                  f"set model.num_levels to at least {level + 1}")
        by_level[level].append(g)
    fits = []
    for level, members in enumerate(by_level):
        try:
            fits.append(atomic_energies(members, atomic_numbers))
        except StatisticsError:
            raise StatisticsError(f"atomic_energies: average needs reference energies at every level; level {level} has "
                                  "no training structure with an energy (or lower model.num_levels)") from None
    return fits


def atomic_energies(graphs: list[AtomicGraph], atomic_numbers: list[int]) -> dict[int, float]:
    """E0 per element (eV) from a least-squares fit of the reference energies on composition."""
    rows, energies = [], []
    for g in graphs:
        if "energy" in g.labels and bool(g.label_masks["energy"].all()):
            counts = [int((g.atomic_numbers == z).sum()) for z in atomic_numbers]
            rows.append(counts)
            energies.append(float(g.labels["energy"].sum()))
    if not rows:
        raise StatisticsError("atomic_energies: average needs reference energies; no training structure has one")
    solution = np.linalg.lstsq(np.array(rows, float), np.array(energies), rcond=None)[0]
    return {int(z): float(e) for z, e in zip(atomic_numbers, solution)}


def density_scaling(graphs: list[AtomicGraph], atomic_numbers: list[int]) -> dict[int, float]:
    """Per-element RMS of the reference charges (e); the local charge head then predicts O(1)."""
    chosen = _with_multipoles(graphs, "atom_density_scaling")
    numbers = torch.cat([g.atomic_numbers for g in chosen])
    charges = torch.cat([g.labels["atomic_multipoles"][:, 0] for g in chosen])
    scaling = {}
    for z in atomic_numbers:
        selected = charges[numbers == z]
        if selected.numel() == 0:
            raise StatisticsError(
                f"atom_density_scaling: average has no reference charges for {chemical_symbols[z]}; "
                "give a number for it ({Z: s}) or add structures containing it"
            )
        scaling[int(z)] = max(float(torch.sqrt((selected * selected).mean())), 1e-3)
    return scaling


def field_feature_norms(model: torch.nn.Module, graphs: list[AtomicGraph], batch_size: int = 16) -> list[float]:
    """RMS (W·(L_f+1) numbers, width-major) of the field features of the reference densities."""
    chosen = _with_multipoles(graphs, "field_feature_norms")
    lf = model.config.field_feature_max_l
    sums = None
    count = 0
    with torch.no_grad():
        for start in range(0, len(chosen), batch_size):
            batch = collate(chosen[start : start + batch_size])
            reference = reference_multipoles(batch, model.num_coefficients)
            features = model.density_field_features(batch, reference)
            per_l = torch.stack([(l_block(features, l) ** 2).sum(-1) / (2 * l + 1) for l in range(lf + 1)], -1)
            sums = per_l.sum(0) if sums is None else sums + per_l.sum(0)
            count += features.shape[0]
    norms = torch.sqrt(sums / count).clamp_min(1e-6)
    return [float(v) for v in norms.reshape(-1)]
