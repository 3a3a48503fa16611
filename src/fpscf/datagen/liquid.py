"""Clusters cut from liquid water: periodic boxes equilibrated with GFN2-xTB, then shells around a molecule.

A periodic cubic box of water at a given mass density (optionally with one OH⁻ or one H₃O⁺ in place
of a water) runs seeded GFN2-xTB Langevin MD (tblite, periodic); from snapshots spaced in time,
clusters are cut: a central molecule (the ion in charged boxes, for the first cluster of each
snapshot) and every whole molecule whose oxygen lies within a shell radius of its oxygen (minimum
image), capped at a maximum number of molecules. Clusters are molecules in open boundaries
(``pbc`` False, no cell), positions in Å with the centre of mass at the origin, the central
molecule's atoms first, and carry the keys of :mod:`fpscf.datagen.water`: ``total_charge``
(int, e), ``external_field`` ((3,) V/Å), ``sample_id``, ``composition``, ``temperature_K`` and
``trajectory`` (index of the box the cluster came from).

Cost (measured, GFN2-xTB in tblite on one thread): a periodic step costs about 0.06 s per atom,
dominated by the lattice sums (D4 dispersion and Coulomb), not by the SCF: 4.9 s per step for
32 waters (96 atoms), 3.0 s for 24, 1.9 s for 16. The default box therefore holds 16 molecules
(7.82 Å at 1 g/cm³, half-width 3.9 Å, enough for first-shell clusters of up to 7 molecules).

Molecules are recognised in every snapshot by giving each H to its nearest O (minimum image), so
a proton that hopped in the MD is counted where it is: a cluster's charge is Σ (n_H − 2) over its
molecules.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.geometry import find_mic

from fpscf.datagen.water import (_TOTAL_CHARGE, _molecule, _random_field, _random_rotation,
                                 _single_threaded_openmp, _spread_flags, _tblite_calculator_class)

_LOG = logging.getLogger(__name__)

#: Sampling methods of :func:`sample_liquid_clusters` (``"random"``: no MD, for tests).
LIQUID_SAMPLING_METHODS = ("xtb", "random")

_AMU_PER_A3_IN_G_PER_CM3 = 1.66053906660  # g/cm³ of one amu per Å³
# Box construction: minimum O–O and other intermolecular distances (Å, minimum image).
_BOX_MIN_OO, _BOX_MIN_INTERMOLECULAR = 2.5, 1.5
_BOX_TRIES_PER_MOLECULE, _BOX_RESTARTS = 4000, 50
# xTB: short relaxation of the placed box (eV/Å, BFGS steps), then Langevin MD (fs, 1/fs).
_RELAX_FMAX, _RELAX_STEPS = 0.5, 20
_TIMESTEP_FS, _FRICTION_PER_FS = 0.5, 0.02
_MAX_ATTEMPTS = 3
_MIN_DISTANCE = 0.7  # Å (minimum image): closer atoms reject a snapshot (the box is redrawn)
_RANDOM_AMPLITUDE_300K = 0.06  # Å, Gaussian displacement of H at 300 K (water.py's "random")
_CENTRE_SEPARATION = 3.0  # Å, O–O between the centres of one snapshot where possible
# Independent random streams (offset from water.py's so that the sequences differ).
_STREAM_BOX, _STREAM_CHARGED, _STREAM_FIELD, _STREAM_FIELD_VALUE, _STREAM_CUT = 10, 11, 12, 13, 14
_SPECIES = {1: "hydroxide", 2: "water", 3: "hydronium"}


@dataclass(frozen=True)
class _Box:
    """One MD run: composition and temperature."""

    index: int
    ion: str | None
    molecules: int
    temperature: float

    @property
    def total_charge(self) -> int:
        return _TOTAL_CHARGE[self.ion] if self.ion else 0


def box_length(kinds: Sequence[str], density: float) -> float:
    """Edge (Å) of the cubic box holding molecules ``kinds`` at mass ``density`` (g/cm³)."""
    mass = sum(float(_molecule(kind).get_masses().sum()) for kind in kinds)
    return (mass * _AMU_PER_A3_IN_G_PER_CM3 / density) ** (1.0 / 3.0)


def water_box(
    n_molecules: int = 16,
    seed: int = 0,
    *,
    density: float = 1.0,
    ion: str | None = None,
    rng: np.random.Generator | None = None,
) -> Atoms:
    """A periodic cubic box of randomly placed, randomly oriented rigid molecules.

    The box holds ``n_molecules`` molecules: waters, or one ``ion`` (``"hydroxide"`` or
    ``"hydronium"``, listed first) and ``n_molecules − 1`` waters; its edge gives the mass
    ``density`` (g/cm³) exactly. Molecules are placed one by one (oxygen uniform in the box)
    with no two oxygens closer than 2.5 Å and no atoms of different molecules closer than 1.5 Å
    (minimum image); the box is redrawn if a molecule does not fit. Atoms are listed molecule by
    molecule, O first. ``info["total_charge"]`` is the ion's charge (e).

    ``seed`` seeds the placement unless a generator ``rng`` is given. Raises ValueError for an
    argument out of range and RuntimeError if the molecules do not fit (density far too high).
    """
    if not isinstance(n_molecules, (int, np.integer)) or n_molecules < 1:
        raise ValueError(f"n_molecules = {n_molecules!r}: expected an integer >= 1.")
    if not (density > 0 and math.isfinite(density)):
        raise ValueError(f"density = {density!r}: expected a density > 0 g/cm³.")
    if ion not in (None, "hydroxide", "hydronium"):
        raise ValueError(f"ion = {ion!r}: expected None, 'hydroxide' or 'hydronium'.")
    rng = np.random.default_rng(seed) if rng is None else rng
    kinds = ([ion] if ion else []) + ["water"] * (n_molecules - (ion is not None))
    length = box_length(kinds, density)
    cell = np.eye(3) * length
    for _ in range(_BOX_RESTARTS):
        positions = _place_box(kinds, cell, rng)
        if positions is not None:
            numbers = np.concatenate([_molecule(kind).numbers for kind in kinds])
            box = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=True)
            box.info["total_charge"] = _TOTAL_CHARGE[ion] if ion else 0
            return box
    raise RuntimeError(f"could not place {n_molecules} molecules at {density} g/cm³ without overlaps.")


def _place_box(kinds: list[str], cell: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """Random sequential placement; None if a molecule finds no room."""
    placed = np.zeros((0, 3))
    oxygens = np.zeros((0, 3))
    for kind in kinds:
        local = _molecule(kind).positions
        for _ in range(_BOX_TRIES_PER_MOLECULE):
            trial = local @ _random_rotation(rng).T + rng.random(3) @ cell
            if len(placed):
                oo = find_mic(oxygens - trial[0], cell, True)[1]
                if oo.min() < _BOX_MIN_OO:
                    continue
                pairs = find_mic((placed[:, None, :] - trial[None]).reshape(-1, 3), cell, True)[1]
                if pairs.min() < _BOX_MIN_INTERMOLECULAR:
                    continue
            placed = np.vstack([placed, trial])
            oxygens = np.vstack([oxygens, trial[:1]])
            break
        else:
            return None
    return placed


def assign_molecules(atoms: Atoms) -> list[tuple[int, list[int]]]:
    """Molecules of a water/ion structure: ``(O index, [H indices])``, every H to its nearest O.

    Distances are minimum-image where ``atoms`` is periodic. Only H and O are allowed.

    Raises:
        ValueError: an element other than H and O, or no oxygen.
    """
    numbers = atoms.numbers
    if not np.all(np.isin(numbers, (1, 8))) or not np.any(numbers == 8):
        raise ValueError("assign_molecules: expected a structure of H and O with at least one O.")
    oxygens, hydrogens = np.flatnonzero(numbers == 8), np.flatnonzero(numbers == 1)
    owners: dict[int, list[int]] = {int(o): [] for o in oxygens}
    if len(hydrogens):
        vectors = atoms.positions[oxygens][None, :, :] - atoms.positions[hydrogens][:, None, :]
        distances = _mic(vectors.reshape(-1, 3), atoms)[1].reshape(len(hydrogens), len(oxygens))
        for h, o in zip(hydrogens, np.argmin(distances, axis=1)):
            owners[int(oxygens[o])].append(int(h))
    return [(o, hs) for o, hs in owners.items()]


def _mic(vectors: np.ndarray, atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-image vectors and lengths (plain ones for open boundaries)."""
    if atoms.pbc.any():
        return find_mic(vectors, atoms.cell, atoms.pbc)
    return vectors, np.linalg.norm(vectors, axis=-1)


def _composition(species: list[int]) -> str:
    """water.py's naming from the H count of each molecule (ion first): water_5, hydronium_4water."""
    waters = sum(1 for s in species if s == 2)
    ions = [_SPECIES.get(s, f"OH{s}") for s in species if s != 2]
    return "_".join(ions) + (f"_{waters}water" if waters else "") if ions else f"water_{waters}"


def cut_cluster(box: Atoms, centre: int, *, shell_radius: float = 3.4, min_molecules: int = 4,
                max_molecules: int = 7) -> Atoms:
    """Cut a cluster of whole molecules around molecule ``centre`` from a periodic box.

    The molecules (:func:`assign_molecules`) whose O lies within ``shell_radius`` (Å, minimum
    image) of the central O are kept, the nearest first, at most ``max_molecules`` of them (the
    central one included); if fewer than ``min_molecules``, the nearest ones are added. Every
    molecule is made whole (each H at its minimum-image position next to its O) and put at its
    minimum-image position relative to the central O. The cluster lists the central molecule
    first (O, then its H), then the others by O–O distance; ``pbc`` False, no cell, centre of mass
    at the origin; ``info["total_charge"]`` = Σ (n_H − 2) e over the molecules and
    ``info["composition"]`` as in :mod:`fpscf.datagen.water`.

    ``centre`` indexes ``assign_molecules(box)`` (O order); ``shell_radius`` must be below half the
    narrowest width of the cell. Raises ValueError for bad arguments or a cluster that would reach
    beyond half the cell.
    """
    molecules = assign_molecules(box)
    if not 0 <= centre < len(molecules):
        raise ValueError(f"centre = {centre}: the box has {len(molecules)} molecules.")
    if not 1 <= min_molecules <= max_molecules:
        raise ValueError(f"molecule bounds {min_molecules}..{max_molecules}: expected 1 <= min <= max.")
    half_width = 0.5 * _narrowest_width(box)
    if not 0 < shell_radius < half_width:
        raise ValueError(f"shell_radius = {shell_radius} Å: expected 0 < radius < {half_width:.3f} Å "
                         "(half the narrowest width of the cell).")
    oxygens = np.array([o for o, _ in molecules])
    vectors, distances = _mic(box.positions[oxygens] - box.positions[oxygens[centre]], box)
    distances[centre] = -1.0  # first, whatever rounding does
    order = np.argsort(distances, kind="stable")
    inside = int(np.sum(distances <= shell_radius))
    count = min(max(inside, min_molecules), max_molecules, len(molecules))
    chosen = order[:count]
    if distances[chosen].max() >= half_width:
        raise ValueError(f"the {count} nearest molecules reach {distances[chosen].max():.2f} Å, beyond "
                         f"half the cell ({half_width:.2f} Å): the box is too small for this cluster.")
    numbers, positions, species = [], [], []
    for j in chosen:
        o, hydrogens = molecules[j]
        o_position = vectors[j] if j != centre else np.zeros(3)
        bonds = _mic(box.positions[hydrogens] - box.positions[o], box)[0].reshape(-1, 3)
        numbers += [8] + [1] * len(hydrogens)
        positions += [o_position] + list(o_position + bonds)
        species.append(len(hydrogens))
    cluster = Atoms(numbers=numbers, positions=np.array(positions), pbc=False)
    cluster.positions -= cluster.get_center_of_mass()
    cluster.info["total_charge"] = int(sum(s - 2 for s in species))
    cluster.info["composition"] = _composition(species)
    return cluster


def _narrowest_width(atoms: Atoms) -> float:
    """Smallest distance between opposite faces of the cell (Å)."""
    cell = atoms.cell.array
    volume = abs(np.linalg.det(cell))
    return float(min(volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3]))
                     for i in range(3)))


def sample_liquid_clusters(
    n: int,
    seed: int,
    *,
    box_molecules: int = 16,
    density: float = 1.0,
    temperatures: Sequence[float] = (300.0, 350.0, 400.0),
    charged_fraction: float = 0.4,
    shell_radius: tuple[float, float] = (3.0, 3.6),
    min_molecules: int = 4,
    max_molecules: int = 7,
    snapshots_per_box: int = 6,
    clusters_per_snapshot: int = 4,
    equilibration_fs: float = 100.0,
    snapshot_spacing_fs: float = 25.0,
    field_fraction: float = 0.3,
    max_field: float = 0.1,
    sampling_method: str = "xtb",
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[Atoms]:
    """Sample ``n`` clusters cut from liquid water boxes, reproducibly (same arguments, same clusters).

    Boxes ("trajectories") of ``box_molecules`` molecules at ``density`` g/cm³ are built by
    :func:`water_box`; box b is charged when ⌊(b+1)f + ½⌋ > ⌊bf + ½⌋ for ``f = charged_fraction``
    (evenly spread: boxes 1 and 3 of 0–4 for 0.4; the ions alternate OH⁻/H₃O⁺, the first one
    seeded), and its temperature is drawn from ``temperatures``. Each box gives
    ``snapshots_per_box`` snapshots and each snapshot ``clusters_per_snapshot`` clusters
    (:func:`cut_cluster`, shell radius uniform in ``shell_radius`` Å, ``min_molecules``..
    ``max_molecules`` molecules). In a charged box the first cluster of each snapshot is centred
    on the ion (the molecule with 1 or 3 H at that moment); the other centres are random
    molecules, at least 3 Å apart where possible.

    Sampling (``sampling_method``):

    * ``"xtb"``: periodic GFN2-xTB (tblite, one thread): at most 20 BFGS steps to 0.5 eV/Å, then
      Langevin MD (0.5 fs, friction 0.02/fs, velocities drawn at the temperature):
      ``equilibration_fs``, then one snapshot every ``snapshot_spacing_fs``. With the defaults a
      box costs about 470 xTB steps, 15 min at 1.9 s per step (16 molecules).
    * ``"random"``: the placed box with Gaussian displacements (0.06 Å·sqrt(T/300 K)·sqrt(m_H/m));
      no electronic structure, for tests and smoke runs.

    A fraction ``field_fraction`` of the clusters (exact within blocks of 20, ±1) gets a uniform
    field of random direction and magnitude uniform in (0, ``max_field``] V/Å, as in
    :func:`fpscf.datagen.water.sample_water_structures`. Every random number comes from a
    generator seeded with ``seed`` and the box, snapshot or cluster index, so the first m clusters
    of a sample of n > m are those of a sample of m. MD runs on one OpenMP thread, so the
    clusters do not depend on OMP_NUM_THREADS (another tblite build may change them: MD is chaotic).
    Progress lines (one per box, with the cost per MD step) go to the ``fpscf.datagen.liquid`` logger.
    With ``cache_dir``, each box's snapshots are kept there (``box_0003.xyz`` with its parameters in
    ``box_0003.json``) and reused when the parameters match, so an interrupted sampling loses at
    most one box of MD.

    Returns:
        ``n`` clusters, ``info["sample_id"] = 0..n-1`` (module docstring for the keys).

    Raises:
        ValueError: an argument out of range.
        ImportError: sampling method ``"xtb"`` without tblite.
        RuntimeError: a box failed three times (xTB error, atoms closer than 0.7 Å, or a molecule
            with no H or more than three) with fresh random numbers.
    """
    temperatures = tuple(float(t) for t in temperatures)
    low, high = (float(r) for r in shell_radius)
    _check_arguments(n, seed, box_molecules, density, temperatures, charged_fraction, low, high,
                     min_molecules, max_molecules, snapshots_per_box, clusters_per_snapshot,
                     equilibration_fs, snapshot_spacing_fs, field_fraction, max_field, sampling_method)
    if sampling_method == "xtb":
        _tblite_calculator_class()  # fail early, with the install hint
    per_box = snapshots_per_box * clusters_per_snapshot
    first_ion = int(np.random.default_rng([seed, _STREAM_CHARGED]).integers(2))
    has_field = _spread_flags(n, field_fraction, seed, _STREAM_FIELD)
    clusters: list[Atoms] = []
    charged_so_far = 0
    for index in range(math.ceil(n / per_box)):
        charged = math.floor((index + 1) * charged_fraction + 0.5) > math.floor(index * charged_fraction + 0.5)
        ion = ("hydroxide", "hydronium")[(first_ion + charged_so_far) % 2] if charged else None
        charged_so_far += charged
        temperature = temperatures[int(np.random.default_rng([seed, _STREAM_BOX, index]).integers(len(temperatures)))]
        plan = _Box(index, ion, box_molecules, temperature)
        wanted = min(per_box, n - len(clusters))
        snapshots = _box_snapshots(plan, math.ceil(wanted / clusters_per_snapshot), seed, density,
                                   equilibration_fs, snapshot_spacing_fs, sampling_method, cache_dir)
        for s, snapshot in enumerate(snapshots):
            rng = np.random.default_rng([seed, _STREAM_CUT, index, s])
            for centre in _centres(snapshot, clusters_per_snapshot, plan.ion is not None, rng):
                if len(clusters) - index * per_box == wanted:
                    break
                cluster = cut_cluster(snapshot, centre, shell_radius=float(rng.uniform(low, high)),
                                      min_molecules=min_molecules, max_molecules=max_molecules)
                sample_id = len(clusters)
                field = np.zeros(3)
                if has_field[sample_id]:
                    field = _random_field(np.random.default_rng([seed, _STREAM_FIELD_VALUE, sample_id]), max_field)
                cluster.info.update(sample_id=sample_id, external_field=field, temperature_K=plan.temperature,
                                    trajectory=plan.index)
                clusters.append(cluster)
    return clusters


def _check_arguments(n, seed, box_molecules, density, temperatures, charged_fraction, low, high,
                     min_molecules, max_molecules, snapshots_per_box, clusters_per_snapshot,
                     equilibration_fs, snapshot_spacing_fs, field_fraction, max_field, method) -> None:
    for name, value, least in (("n", n, 0), ("seed", seed, 0), ("box_molecules", box_molecules, 1),
                               ("min_molecules", min_molecules, 1), ("max_molecules", max_molecules, 1),
                               ("snapshots_per_box", snapshots_per_box, 1), ("clusters_per_snapshot", clusters_per_snapshot, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
            raise ValueError(f"{name} = {value!r}: expected an integer >= {least}.")
    problems = [
        (min_molecules > max_molecules or max_molecules > box_molecules,
         f"cluster sizes {min_molecules}..{max_molecules}: expected min <= max <= box_molecules ({box_molecules})"),
        (clusters_per_snapshot > box_molecules, f"clusters_per_snapshot = {clusters_per_snapshot} > box_molecules"),
        (not (density > 0 and math.isfinite(density)), f"density = {density!r}: expected > 0 g/cm³"),
        (not temperatures or any(not (t > 0 and math.isfinite(t)) for t in temperatures),
         f"temperatures = {temperatures!r}: expected temperatures > 0 K"),
        (not 0.0 <= charged_fraction <= 1.0, f"charged_fraction = {charged_fraction!r}: expected a fraction in [0, 1]"),
        (not 0.0 <= field_fraction <= 1.0, f"field_fraction = {field_fraction!r}: expected a fraction in [0, 1]"),
        (not 0 < low <= high, f"shell_radius = ({low}, {high}): expected 0 < low <= high (Å)"),
        (not (equilibration_fs >= 0 and snapshot_spacing_fs > 0),
         "equilibration_fs must be >= 0 and snapshot_spacing_fs > 0 (fs)"),
        (not (max_field >= 0 and math.isfinite(max_field)), f"max_field = {max_field!r}: expected >= 0 V/Å"),
        (method not in LIQUID_SAMPLING_METHODS,
         f"sampling_method = {method!r}: expected one of {LIQUID_SAMPLING_METHODS}"),
    ]
    for failed, message in problems:
        if failed:
            raise ValueError(message + ".")


def _centres(snapshot: Atoms, count: int, ion_first: bool, rng: np.random.Generator) -> list[int]:
    """Central molecules of one snapshot: the ion first (if asked and present), then random ones
    at least 3 Å (O–O) from the chosen ones where possible, then any."""
    molecules = assign_molecules(snapshot)
    oxygens = snapshot.positions[[o for o, _ in molecules]]
    chosen: list[int] = []
    if ion_first:
        ions = [j for j, (_, hs) in enumerate(molecules) if len(hs) != 2]
        chosen += ions[:1]
    order = [int(j) for j in rng.permutation(len(molecules)) if int(j) not in chosen]
    for j in order:
        if len(chosen) == count:
            break
        if not chosen or _mic(oxygens[chosen] - oxygens[j], snapshot)[1].min() >= _CENTRE_SEPARATION:
            chosen.append(j)
    chosen += [j for j in order if j not in chosen][: count - len(chosen)]
    return chosen


def _box_snapshots(plan: _Box, count: int, seed: int, density: float, equilibration_fs: float,
                   spacing_fs: float, method: str, cache_dir: str | os.PathLike[str] | None) -> list[Atoms]:
    """``count`` snapshots of one box (from ``cache_dir`` if there with the same parameters)."""
    if cache_dir is None:
        return _run_box(plan, count, seed, density, equilibration_fs, spacing_fs, method)
    import ase.io

    key = {"seed": seed, "box": plan.index, "ion": plan.ion, "molecules": plan.molecules, "density": density,
           "temperature_K": plan.temperature, "snapshots": count, "equilibration_fs": equilibration_fs,
           "snapshot_spacing_fs": spacing_fs, "method": method}
    stem = Path(cache_dir) / f"box_{plan.index:04d}"
    keyfile, xyz = stem.with_suffix(".json"), stem.with_suffix(".xyz")
    if keyfile.is_file() and xyz.is_file() and json.loads(keyfile.read_text()) == key:
        return list(ase.io.read(xyz, index=":", format="extxyz"))
    snapshots = _run_box(plan, count, seed, density, equilibration_fs, spacing_fs, method)
    stem.parent.mkdir(parents=True, exist_ok=True)
    keyfile.unlink(missing_ok=True)
    ase.io.write(xyz, snapshots, format="extxyz")
    keyfile.write_text(json.dumps(key, indent=1) + "\n")
    return snapshots


def _run_box(plan: _Box, count: int, seed: int, density: float, equilibration_fs: float,
             spacing_fs: float, method: str) -> list[Atoms]:
    """``count`` snapshots of one box; the box is redrawn (fresh numbers) if a run fails."""
    errors = []
    for attempt in range(_MAX_ATTEMPTS):
        rng = np.random.default_rng([seed, _STREAM_BOX, plan.index, attempt + 1])
        try:
            box = water_box(plan.molecules, density=density, ion=plan.ion, rng=rng)
            if method == "xtb":
                with _single_threaded_openmp():
                    snapshots = _xtb_snapshots(box, plan, count, rng, equilibration_fs, spacing_fs)
            else:
                snapshots = _random_snapshots(box, plan.temperature, count, rng)
        except Exception as error:  # tblite raises several types; retried with fresh numbers
            errors.append(f"{type(error).__name__}: {error}")
            continue
        problem = next((p for p in map(_snapshot_problem, snapshots) if p), None)
        if problem is None:
            return snapshots
        errors.append(problem)
    raise RuntimeError(f"liquid box {plan.index} ({plan.ion or 'water'}, {plan.temperature:g} K, seed {seed}) "
                       f"failed {_MAX_ATTEMPTS} times: {'; '.join(errors)}")


def _snapshot_problem(snapshot: Atoms) -> str | None:
    """Why a snapshot is unusable (atoms too close, a molecule with 0 or > 3 H), or None."""
    vectors = snapshot.positions[:, None, :] - snapshot.positions[None, :, :]
    distances = _mic(vectors.reshape(-1, 3), snapshot)[1].reshape(len(snapshot), len(snapshot))
    if distances[np.triu_indices(len(snapshot), k=1)].min() < _MIN_DISTANCE:
        return f"atoms closer than {_MIN_DISTANCE} Å"
    counts = sorted({len(hs) for _, hs in assign_molecules(snapshot)})
    if counts[0] < 1 or counts[-1] > 3:
        return f"a molecule with {counts[0] if counts[0] < 1 else counts[-1]} H"
    return None


def _xtb_snapshots(box: Atoms, plan: _Box, count: int, rng: np.random.Generator,
                   equilibration_fs: float, spacing_fs: float) -> list[Atoms]:
    """Brief periodic GFN2-xTB relaxation, then seeded Langevin MD; snapshots spaced in time."""
    from ase import units
    from ase.constraints import FixCom
    from ase.md import velocitydistribution
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary
    from ase.optimize import BFGS

    start = time.perf_counter()
    atoms = box.copy()
    atoms.calc = _tblite_calculator_class()(method="GFN2-xTB", charge=plan.total_charge, verbosity=0)
    optimizer = BFGS(atoms, logfile=None)
    optimizer.run(fmax=_RELAX_FMAX, steps=_RELAX_STEPS)
    if hasattr(velocitydistribution, "thermalize_momenta"):  # ASE >= 3.29
        velocitydistribution.thermalize_momenta(atoms, plan.temperature, rng=rng)
    else:
        velocitydistribution.MaxwellBoltzmannDistribution(atoms, temperature_K=plan.temperature, rng=rng)
    Stationary(atoms)
    atoms.set_constraint(FixCom())
    dynamics = Langevin(atoms, timestep=_TIMESTEP_FS * units.fs, temperature_K=plan.temperature,
                        friction=_FRICTION_PER_FS / units.fs, fixcm=False, rng=rng, logfile=None)
    steps = [round(equilibration_fs / _TIMESTEP_FS)] + [round(spacing_fs / _TIMESTEP_FS)] * (count - 1)
    snapshots = []
    for chunk in steps:
        dynamics.run(chunk)
        snapshots.append(Atoms(atoms.numbers, positions=atoms.get_positions(wrap=True), cell=atoms.cell, pbc=True))
    total = optimizer.nsteps + sum(steps)
    seconds = time.perf_counter() - start
    _LOG.info(f"liquid box {plan.index} ({plan.ion or 'water'} + waters, {len(atoms)} atoms, "
              f"{plan.temperature:g} K): {optimizer.nsteps} relaxation + {sum(steps)} MD steps in "
              f"{seconds:.0f} s ({seconds / max(total, 1):.2f} s per xTB step), {count} snapshots")
    return snapshots


def _random_snapshots(box: Atoms, temperature: float, count: int, rng: np.random.Generator) -> list[Atoms]:
    """The placed box plus Gaussian displacements scaled by sqrt(T) and 1/sqrt(mass)."""
    masses = box.get_masses()
    sigma = (_RANDOM_AMPLITUDE_300K * math.sqrt(temperature / 300.0) * np.sqrt(masses.min() / masses))[:, None]
    return [Atoms(box.numbers, positions=box.positions + sigma * rng.standard_normal(box.positions.shape),
                  cell=box.cell, pbc=True) for _ in range(count)]


__all__ = ["LIQUID_SAMPLING_METHODS", "assign_molecules", "box_length", "cut_cluster",
           "sample_liquid_clusters", "water_box"]
