"""Selection: score MD frames by how unsure the model is, pick diverse ones, cut clusters there.

Each recorded frame of a trajectory gets a score, a weighted sum of non-negative terms
(:class:`SelectionSettings` weights, default 1 each):

- ``trouble``: 1 at the frame where the run stopped, falling linearly to 0 at
  ``trouble_window_steps`` before it (structures from just before the blow-up);
- ``scf``: SCF steps / the run's median − 1 (spikes), where above the median (not for the first
  frame, whose SCF starts without a previous density);
- ``force``: largest |F| / the run's median of it − 1 (force outliers), where above the median;
- ``domain``: the number of per-frame training-domain violations (close pairs, large charges);
- ``committee`` (optional): the largest force standard deviation across a committee of models
  (eV/Å) / ``committee_force_scale``; a member that fails on the frame counts as 10.

:func:`pick_frames` takes the best-scoring frames with score > 0, at most ``frames`` of them and at
least ``min_separation_steps`` apart within a trajectory. In each picked frame,
:func:`flag_atoms` names the atoms to learn about, in this order: the atom with the largest
committee force spread, the closest contact between molecules (relative to the shortest distance
of that element pair in training, or in Å for a model without a training domain; a bond only
where it is shorter than any in training), the atom with the largest force; :func:`select_structures` cuts up to ``clusters_per_frame``
clusters of whole molecules around them (:func:`~fpscf.active_learning.clusters.cluster_around`),
skipping a group whose atoms are all in an earlier cluster of the frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms

from fpscf.active_learning.clusters import cluster_around
from fpscf.active_learning.trajectory import Trajectory
from fpscf.domain import TrainingDomain, pair_key

#: Score of a committee member that fails (raises) on a frame, in units of ``committee_force_scale``.
COMMITTEE_FAILURE_TERM = 10.0
#: Pairs are searched up to this distance (Å) for the closest pair of a frame.
PAIR_SEARCH_CUTOFF = 4.0


@dataclass(frozen=True)
class SelectionSettings:
    """How many frames and clusters an iteration picks and how frames are scored (module docstring).

    frames: frames picked per iteration. min_separation_steps: MD steps between picked frames of
    one trajectory. trouble_window_steps: steps before a stop that count as "just before trouble".
    clusters_per_frame: clusters cut per picked frame. shell_radius: Å (O–O to the core molecules);
    min_molecules, max_molecules: cluster size. committee: model files whose force spread is
    scored (empty: no committee term); committee_stride: evaluate the committee on every n-th
    frame (the others take the value of the frame before). committee_force_scale: eV/Å.
    """

    frames: int = 8
    min_separation_steps: int = 10
    trouble_window_steps: int = 20
    clusters_per_frame: int = 2
    shell_radius: float = 3.2
    min_molecules: int = 3
    max_molecules: int = 6
    committee: tuple[str, ...] = ()
    committee_stride: int = 1
    committee_force_scale: float = 0.1
    weight_trouble: float = 1.0
    weight_scf: float = 1.0
    weight_force: float = 1.0
    weight_domain: float = 1.0
    weight_committee: float = 1.0


@dataclass
class FrameScore:
    """Score of frame ``index`` (step ``step``) of trajectory ``trajectory`` and its terms."""

    trajectory: str
    index: int
    step: int
    score: float
    terms: dict[str, float] = field(default_factory=dict)


def committee_force_std(frames: list[Atoms], models: list[Any], stride: int = 1) -> list[np.ndarray]:
    """Per frame, the standard deviation (eV/Å, (N,)) of the force vectors across ``models``:
    ``sqrt(mean_m |F_m − F̄|²)`` per atom. Frames are evaluated every ``stride`` (and the last
    one); the others take the previous value. A member that fails gives ``inf``."""
    from fpscf.calculators.fixed_point import FixedPointCalculator
    from fpscf.models import resolve_model

    if len(models) < 2:
        raise ValueError(f"a committee needs at least 2 models, got {len(models)}")
    calculators = [FixedPointCalculator(resolve_model(m)) for m in models]
    spreads: list[np.ndarray] = []
    for k, frame in enumerate(frames):
        if k % stride and k != len(frames) - 1 and spreads:
            spreads.append(spreads[-1])
            continue
        atoms = Atoms(frame.numbers, positions=frame.positions, cell=frame.cell, pbc=frame.pbc)
        atoms.info.update({key: frame.info[key] for key in ("total_charge", "external_field") if key in frame.info})
        try:
            forces = np.stack([calc.get_property("forces", atoms) for calc in calculators])
            spread = np.sqrt(((forces - forces.mean(axis=0)) ** 2).sum(axis=2).mean(axis=0))
        except Exception:  # a member that breaks down is the strongest disagreement there is
            spread = np.full(len(frame), math.inf)
        spreads.append(spread)
    return spreads


def score_frames(run: Trajectory, settings: SelectionSettings,
                 committee_std: list[np.ndarray] | None = None) -> list[FrameScore]:
    """Scores of the recorded frames of ``run`` (module docstring)."""
    records = run.records
    # the first frame's SCF starts cold (no previous density): left out of the SCF term
    scf = np.array([r.scf_steps for r in records if r.scf_steps > 0 and r.step > 0], dtype=float)
    forces = np.array([r.max_force_eV_per_A for r in records if math.isfinite(r.max_force_eV_per_A)])
    scf_median = float(np.median(scf)) if len(scf) else math.nan
    force_median = float(np.median(forces)) if len(forces) else math.nan
    scores = []
    for k, record in enumerate(records):
        terms = {"trouble": 0.0, "scf": 0.0, "force": 0.0, "domain": float(record.domain_violations)}
        if not run.stable:
            distance = run.steps_run - record.step
            terms["trouble"] = max(0.0, 1.0 - distance / max(settings.trouble_window_steps, 1))
        if record.scf_steps > 0 and record.step > 0 and scf_median > 0:
            terms["scf"] = max(0.0, record.scf_steps / scf_median - 1.0)
        if math.isfinite(record.max_force_eV_per_A) and force_median > 0:
            terms["force"] = max(0.0, record.max_force_eV_per_A / force_median - 1.0)
        if committee_std is not None:
            spread = float(np.max(committee_std[k]))
            terms["committee"] = (COMMITTEE_FAILURE_TERM if not math.isfinite(spread)
                                  else spread / settings.committee_force_scale)
        total = sum(getattr(settings, f"weight_{name}") * value for name, value in terms.items())
        scores.append(FrameScore(run.name, k, record.step, float(total), terms))
    return scores


def pick_frames(scores: list[FrameScore], count: int, min_separation_steps: int) -> list[FrameScore]:
    """The highest scores (> 0; ties: the later step), at most ``count``, no two of one trajectory
    closer than ``min_separation_steps`` MD steps."""
    picked: list[FrameScore] = []
    for candidate in sorted(scores, key=lambda s: (-s.score, -s.step, s.trajectory)):
        if len(picked) == count or candidate.score <= 0:
            break
        if all(p.trajectory != candidate.trajectory or abs(p.step - candidate.step) >= min_separation_steps
               for p in picked):
            picked.append(candidate)
    return picked


def closest_pair(frame: Atoms, domain: TrainingDomain | None = None) -> tuple[int, int, float] | None:
    """The closest contact of ``frame``: ``(i, j, measure)``, the pair of atoms of different molecules
    closest relative to the shortest distance of its element pair in training (``domain``; the
    measure is that ratio), or in Å without a domain. A pair within one molecule (a bond) counts
    only where it is shorter than any in training (ratio < 1)."""
    from ase.neighborlist import neighbor_list

    from fpscf.datagen.liquid import assign_molecules

    first, second, distance = neighbor_list("ijd", frame, PAIR_SEARCH_CUTOFF)
    keep = first < second
    first, second, distance = first[keep], second[keep], distance[keep]
    owner = {atom: m for m, (o, hs) in enumerate(assign_molecules(frame)) for atom in (o, *hs)}
    same = np.array([owner[i] == owner[j] for i, j in zip(first, second)], dtype=bool)
    measure = distance.copy()
    if domain is not None and len(distance):
        minima = np.array([domain.min_distances.get(pair_key(frame.numbers[i], frame.numbers[j])) or domain.distance_cutoff
                           for i, j in zip(first, second)])
        measure = distance / minima
        measure[same & (measure >= 1.0)] = np.inf
    else:
        measure[same] = np.inf
    if not len(measure) or not np.isfinite(measure).any():
        return None
    k = int(np.argmin(measure))
    return int(first[k]), int(second[k]), float(measure[k])


def flag_atoms(frame: Atoms, domain: TrainingDomain | None = None,
               committee_std: np.ndarray | None = None) -> list[tuple[str, list[int]]]:
    """Groups of atoms to learn about in ``frame``, most telling first (module docstring)."""
    groups: list[tuple[str, list[int]]] = []
    if committee_std is not None:
        groups.append(("committee", [int(np.argmax(np.nan_to_num(committee_std, posinf=np.finfo(float).max)))]))
    pair = closest_pair(frame, domain)
    if pair is not None:
        groups.append(("closest_pair", [pair[0], pair[1]]))
    if "model_forces" in frame.arrays:
        groups.append(("max_force", [int(np.argmax(np.linalg.norm(frame.arrays["model_forces"], axis=1)))]))
    return groups


def select_structures(
    runs: list[Trajectory],
    settings: SelectionSettings,
    *,
    iteration: int,
    domain: TrainingDomain | None = None,
    source: str = "",
) -> tuple[list[Atoms], list[dict[str, Any]]]:
    """Score every frame of ``runs``, pick frames and cut clusters around their flagged atoms.

    Returns the clusters (``info``: ``total_charge``, ``external_field``, ``composition``,
    ``source`` = ``"<source><trajectory>:step=<step>"``, ``al_iteration``, ``al_reason``;
    ``arrays``: ``al_parent_index`` and ``al_flagged`` (the flagged atoms)) and one record per
    picked frame (trajectory, step, score, terms, clusters) for ``selection.json``.
    """
    spreads: dict[str, list[np.ndarray]] = {}
    if settings.committee:
        for run in runs:
            spreads[run.name] = committee_force_std(run.frames, list(settings.committee), settings.committee_stride)
    scores = [s for run in runs for s in score_frames(run, settings, spreads.get(run.name))]
    by_name = {run.name: run for run in runs}
    clusters: list[Atoms] = []
    records: list[dict[str, Any]] = []
    for picked in pick_frames(scores, settings.frames, settings.min_separation_steps):
        frame = by_name[picked.trajectory].frames[picked.index]
        spread = spreads[picked.trajectory][picked.index] if picked.trajectory in spreads else None
        covered: set[int] = set()
        cut = []
        for reason, atoms in flag_atoms(frame, domain, spread):
            if len(cut) == settings.clusters_per_frame:
                break
            if covered.issuperset(atoms):
                continue
            cluster = cluster_around(frame, atoms, shell_radius=settings.shell_radius,
                                     min_molecules=settings.min_molecules, max_molecules=settings.max_molecules)
            covered.update(int(i) for i in cluster.arrays["al_parent_index"])
            cluster.info.update(source=f"{source}{picked.trajectory}:step={picked.step}", al_iteration=iteration,
                                al_reason=reason)
            cluster.arrays["al_flagged"] = np.isin(cluster.arrays["al_parent_index"], atoms)
            clusters.append(cluster)
            cut.append({"reason": reason, "atoms": [int(i) for i in atoms], "natoms": len(cluster),
                        "composition": cluster.info["composition"], "total_charge": cluster.info["total_charge"]})
        records.append({"trajectory": picked.trajectory, "step": picked.step, "score": round(picked.score, 4),
                        "terms": {k: round(v, 4) for k, v in picked.terms.items()}, "clusters": cut})
    return clusters, records


__all__ = ["SelectionSettings", "FrameScore", "closest_pair", "committee_force_std", "flag_atoms", "pick_frames",
           "score_frames", "select_structures"]
