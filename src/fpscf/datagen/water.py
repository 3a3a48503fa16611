"""Reproducible water structures (monomers, clusters, OH⁻ and H₃O⁺) and cheap GFN2-xTB labels.

Structures are molecules/clusters in open boundaries (``pbc`` False, no cell), positions in Å with
the centre of mass at the origin (dipoles of charged structures are taken about that origin).
Each carries the inputs fpscf reads: ``info["total_charge"]`` (e, an int: −1, 0 or +1),
``info["external_field"]`` ((3,) V/Å) and a stable ``info["sample_id"]`` (its index), plus
descriptive keys ``composition`` (e.g. ``"water_3"``, ``"hydroxide_2water"``),
``temperature_K`` (sampling temperature) and ``trajectory`` (index of the MD run it came from).

GFN2-xTB comes from tblite (the ``data`` extra: ``pip install fpscf[data]``), imported lazily.
"""

from __future__ import annotations

import ctypes
import math
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from ase import Atoms

#: What to tell a user whose environment lacks pyscf or tblite.
DATA_EXTRA_HINT = "install the data extra: pip install fpscf[data]"

#: Sampling methods of :func:`sample_water_structures`.
SAMPLING_METHODS = ("xtb", "random")

# Rigid monomer geometries (Å, degrees): gas-phase water, hydroxide, pyramidal hydronium.
_WATER_OH, _WATER_ANGLE = 0.9572, 104.52
_HYDROXIDE_OH = 0.97
_HYDRONIUM_OH, _HYDRONIUM_ANGLE = 0.98, 112.0
_TOTAL_CHARGE = {"water": 0, "hydroxide": -1, "hydronium": +1}

# Cluster construction: oxygen–oxygen distances of a new neighbour (Å), minimum O–O distance and
# minimum distance between atoms of different molecules (Å), candidates compared for compactness.
_NEIGHBOUR_OO = (2.7, 3.1)
_MIN_OO = 2.6
_MIN_INTERMOLECULAR = 1.6
_CANDIDATES = 12
_MAX_PLACEMENT_TRIES = 2000
# Structures are rejected (and the trajectory redrawn) if two atoms come closer than this (Å).
_MIN_DISTANCE = 0.7

# xTB relaxation and Langevin MD (fs, 1/fs).
_RELAX_FMAX, _RELAX_STEPS = 0.25, 30  # eV/Å, optimiser steps ("relax briefly")
_TIMESTEP_FS = 0.5
_FRICTION_PER_FS = 0.02
_EQUILIBRATION_FS = 100.0
_SNAPSHOT_SPACING_FS = 30.0
_MAX_ATTEMPTS = 5

# Random-displacement sampling: thermal amplitude of a hydrogen at 300 K, Å (scaled by
# sqrt(T / 300 K) and sqrt(m_H / m)).
_RANDOM_AMPLITUDE_300K = 0.06

# Fractions are met block by block: within each block of this many items the count is exact (±1).
_BLOCK = 20

# Independent random streams (first word after the seed in every SeedSequence).
_STREAM_TRAJECTORY, _STREAM_CHARGED, _STREAM_FIELD, _STREAM_FIELD_VALUE = 0, 1, 2, 3


@dataclass(frozen=True)
class _Trajectory:
    """Composition and temperature of one sampling run, which yields several snapshots."""

    index: int
    ion: str | None  # "hydroxide", "hydronium" or None
    waters: int
    temperature: float

    @property
    def total_charge(self) -> int:
        return _TOTAL_CHARGE[self.ion] if self.ion else 0

    @property
    def composition(self) -> str:
        if self.ion is None:
            return f"water_{self.waters}"
        return self.ion if self.waters == 0 else f"{self.ion}_{self.waters}water"


def sample_water_structures(
    n: int,
    seed: int,
    *,
    temperatures: Sequence[float] = (300, 600),
    max_molecules: int = 8,
    charged_fraction: float = 0.15,
    field_fraction: float = 0.3,
    max_field: float = 0.1,
    method: str = "xtb",
    snapshots_per_trajectory: int = 4,
) -> list[Atoms]:
    """Sample ``n`` water structures reproducibly: same arguments, same structures.

    Mix. Structures come in groups of ``snapshots_per_trajectory`` from one sampling run
    ("trajectory") of a fixed composition at one temperature, drawn uniformly from
    ``temperatures``. A trajectory holds ``k`` molecules, ``k = 1..max_molecules`` with probability
    ∝ 1/k (for 8: 37 % monomers, 18 % dimers, 12 % trimers, 9 %, 7 %, 6 %, 5 %, 5 % octamers).
    A fraction ``charged_fraction`` of the trajectories is charged: their first molecule is an ion,
    alternately OH⁻ (total charge −1) and H₃O⁺ (+1), alone (k = 1) or at the centre of k − 1 waters.
    The other trajectories are neutral water. Every structure is closed-shell (10 electrons per
    molecule). The charged fraction is met within each block of 20 trajectories (±1 trajectory).

    Clusters are built by placing randomly oriented rigid molecules one by one, each 2.7–3.1 Å
    (O–O) from a placed one, no two oxygens closer than 2.6 Å and no atoms of different molecules
    closer than 1.6 Å, keeping of 12 candidates the one nearest the cluster centre (compact).

    Sampling (``method``):

    * ``"xtb"``: GFN2-xTB (tblite) relaxation (at most 30 BFGS steps to 0.25 eV/Å), then seeded
      Langevin MD (0.5 fs steps, friction 0.02/fs, centre of mass fixed, velocities drawn at the
      temperature): 100 fs of equilibration, then one snapshot every 30 fs (190 fs for 4
      snapshots).
    * ``"random"``: no electronic structure: each snapshot is the rigid placed cluster with Gaussian
      displacements, 0.06 Å·sqrt(T/300 K)·sqrt(m_H/m) per Cartesian component. Cheap and crude;
      for tests and smoke runs.

    A fraction ``field_fraction`` of the structures (exact within each block of 20 structures, ±1)
    gets a uniform field ``info["external_field"]`` of random direction (uniform on the sphere) and
    magnitude uniform in (0, ``max_field``] V/Å; the others get [0, 0, 0].

    Reproducibility: every random number comes from ``numpy.random.default_rng`` seeded with
    ``seed`` and the index of the trajectory, block or structure, so the first m structures of a
    sample of n > m are the same as a sample of m (larger data sets extend smaller ones). xTB runs
    on one OpenMP thread (fastest for these sizes), so the structures do not depend on
    OMP_NUM_THREADS; the MD is chaotic, so another tblite build may change them.

    Args:
        n: number of structures (≥ 0).
        seed: non-negative integer seed.
        temperatures: sampling temperatures, K (> 0).
        max_molecules: largest cluster, molecules (≥ 1), the ion included.
        charged_fraction: fraction of charged trajectories, in [0, 1].
        field_fraction: fraction of structures with a non-zero applied field, in [0, 1].
        max_field: largest field magnitude, V/Å (≥ 0).
        method: ``"xtb"`` or ``"random"``.
        snapshots_per_trajectory: structures taken from one trajectory (≥ 1).

    Returns:
        ``n`` structures with ``info["sample_id"] = 0..n-1``; see the module docstring for the keys.

    Raises:
        ValueError: an argument out of range.
        ImportError: method ``"xtb"`` without tblite installed.
        RuntimeError: a trajectory failed (xTB error or atoms closer than 0.7 Å) five times in a
            row with fresh random numbers.
    """
    temperatures = tuple(float(t) for t in temperatures)
    _check_sampling_arguments(
        n, seed, temperatures, max_molecules, charged_fraction, field_fraction, max_field, method,
        snapshots_per_trajectory,
    )
    if method == "xtb":
        _tblite_calculator_class()  # fail early, with the install hint
    num_trajectories = math.ceil(n / snapshots_per_trajectory)
    plans = _plan_trajectories(num_trajectories, seed, temperatures, max_molecules, charged_fraction)
    has_field = _spread_flags(n, field_fraction, seed, _STREAM_FIELD)
    structures: list[Atoms] = []
    for plan in plans:
        count = min(snapshots_per_trajectory, n - len(structures))
        with _single_threaded_openmp():
            snapshots = _sample_trajectory(plan, count, seed, method)
        for atoms in snapshots:
            sample_id = len(structures)
            field = np.zeros(3)
            if has_field[sample_id]:
                field = _random_field(np.random.default_rng([seed, _STREAM_FIELD_VALUE, sample_id]),
                                      max_field)
            atoms.info.update(
                sample_id=sample_id,
                total_charge=plan.total_charge,
                external_field=field,
                composition=plan.composition,
                temperature_K=plan.temperature,
                trajectory=plan.index,
            )
            structures.append(atoms)
    return structures


def label_xtb(atoms: Atoms, *, ignore_field: bool = False, method: str = "GFN2-xTB") -> Atoms:
    """Label a structure with tblite (GFN2-xTB by default) at zero field; return a labelled copy.

    xTB labels are zero-field only: tblite's applied field is not reliable enough for labels
   , so it is never applied. The copy gets ``info["energy"]`` (eV),
    ``arrays["forces"]`` ((N, 3) eV/Å), ``info["dipole"]`` ((3,) e·Å, ``Σ q r`` plus atomic
    dipoles about the Cartesian origin, as tblite reports it), ``arrays["charges"]`` ((N,) e,
    tblite's Mulliken charges) and ``info["label_method"]``; the total charge is read from
    ``info["total_charge"]`` (0 if absent).

    Args:
        atoms: the structure (open boundaries or periodic).
        ignore_field: label a structure whose ``info["external_field"]`` is non-zero anyway; the
            copy then gets ``external_field = [0, 0, 0]`` so that inputs and labels agree.
        method: tblite method name.

    Raises:
        ValueError: a non-zero ``info["external_field"]`` without ``ignore_field``, or a total
            charge that is not an integer.
        ImportError: tblite is not installed.
        ase.calculators.calculator.CalculationFailed, InputError: tblite failed (SCF not
            converged, atoms on top of each other, unsupported element).
    """
    field = np.asarray(atoms.info.get("external_field", np.zeros(3)), dtype=float).reshape(-1)
    if np.any(field != 0) and not ignore_field:
        raise ValueError(
            f"label_xtb: structure has external_field {field.tolist()} V/Å, but xTB labels are "
            "zero-field only (tblite's field is not used for labels). Label it with DFT "
            "(fpscf.datagen.pyscf_labels), sample without fields (field_fraction=0), or pass "
            "ignore_field=True to label it at zero field (the field is then set to zero)."
        )
    charge = float(np.asarray(atoms.info.get("total_charge", 0)).reshape(()))
    if abs(charge - round(charge)) > 1e-8:
        raise ValueError(f"label_xtb: total_charge {charge} e is not an integer.")
    calculator_class = _tblite_calculator_class()
    labelled = atoms.copy()
    labelled.calc = None
    labelled.info["external_field"] = np.zeros(3)
    labelled.info["total_charge"] = int(round(charge))
    work = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    work.calc = calculator_class(method=method, charge=int(round(charge)), verbosity=0)
    with _single_threaded_openmp():
        labelled.info["energy"] = float(work.get_potential_energy())
    labelled.arrays["forces"] = np.array(work.get_forces(), dtype=float)
    labelled.info["dipole"] = np.array(work.get_dipole_moment(), dtype=float)
    labelled.arrays["charges"] = np.array(work.get_charges(), dtype=float)
    labelled.info["label_method"] = method
    return labelled


# --------------------------------------------------------------------------------------------
# Plans: compositions, temperatures, charged trajectories and fields
# --------------------------------------------------------------------------------------------


def _check_sampling_arguments(
    n, seed, temperatures, max_molecules, charged_fraction, field_fraction, max_field, method,
    snapshots_per_trajectory,
) -> None:
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n = {n!r}: expected a number of structures >= 0.")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed = {seed!r}: expected a non-negative integer.")
    if not temperatures or any(not (t > 0 and math.isfinite(t)) for t in temperatures):
        raise ValueError(f"temperatures = {temperatures!r}: expected one or more temperatures > 0 K.")
    if not isinstance(max_molecules, (int, np.integer)) or max_molecules < 1:
        raise ValueError(f"max_molecules = {max_molecules!r}: expected an integer >= 1.")
    for name, value in (("charged_fraction", charged_fraction), ("field_fraction", field_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} = {value!r}: expected a fraction in [0, 1].")
    if not (max_field >= 0 and math.isfinite(max_field)):
        raise ValueError(f"max_field = {max_field!r}: expected a field magnitude >= 0 V/Å.")
    if method not in SAMPLING_METHODS:
        raise ValueError(f"method = {method!r}: expected one of {SAMPLING_METHODS}.")
    if not isinstance(snapshots_per_trajectory, (int, np.integer)) or snapshots_per_trajectory < 1:
        raise ValueError(
            f"snapshots_per_trajectory = {snapshots_per_trajectory!r}: expected an integer >= 1."
        )


def _plan_trajectories(
    count: int, seed: int, temperatures: tuple[float, ...], max_molecules: int,
    charged_fraction: float,
) -> list[_Trajectory]:
    """Composition and temperature of each trajectory (each from its own seeded stream)."""
    charged = _spread_flags(count, charged_fraction, seed, _STREAM_CHARGED)
    first_ion = int(np.random.default_rng([seed, _STREAM_CHARGED]).integers(2))
    sizes = np.arange(1, max_molecules + 1)
    weights = 1.0 / sizes
    weights /= weights.sum()
    plans = []
    charged_so_far = 0
    for index in range(count):
        rng = np.random.default_rng([seed, _STREAM_TRAJECTORY, index])
        molecules = int(rng.choice(sizes, p=weights))
        temperature = float(temperatures[int(rng.integers(len(temperatures)))])
        ion = None
        if charged[index]:
            ion = ("hydroxide", "hydronium")[(first_ion + charged_so_far) % 2]
            charged_so_far += 1
        plans.append(_Trajectory(index, ion, molecules - (ion is not None), temperature))
    return plans


def _spread_flags(count: int, fraction: float, seed: int, stream: int) -> np.ndarray:
    """``count`` booleans, a ``fraction`` of them True, evenly in each block, in seeded order.

    Within a block of ``_BLOCK`` items the True count is ``fraction * _BLOCK`` rounded up or down
    (a seeded low-discrepancy sequence), placed at seeded random positions; flags of earlier
    items do not depend on ``count``.
    """
    offset = np.random.default_rng([seed, stream]).random()
    flags = np.zeros(count, dtype=bool)
    for start in range(0, count, _BLOCK):
        order = np.random.default_rng([seed, stream, start // _BLOCK]).permutation(_BLOCK)
        for position in range(min(_BLOCK, count - start)):
            j = start + int(order[position])
            flags[start + position] = (
                math.floor((j + 1) * fraction + offset) > math.floor(j * fraction + offset)
            )
    return flags


def _random_field(rng: np.random.Generator, max_field: float) -> np.ndarray:
    """Uniform direction on the sphere, magnitude uniform in (0, max_field] V/Å."""
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    return direction * max_field * (1.0 - rng.random())


# --------------------------------------------------------------------------------------------
# Molecules and clusters
# --------------------------------------------------------------------------------------------


def _molecule(kind: str) -> Atoms:
    """Rigid monomer with its oxygen at the origin."""
    if kind == "water":
        half = math.radians(_WATER_ANGLE) / 2
        x, y = _WATER_OH * math.sin(half), _WATER_OH * math.cos(half)
        return Atoms("OH2", positions=[[0, 0, 0], [x, y, 0], [-x, y, 0]])
    if kind == "hydroxide":
        return Atoms("OH", positions=[[0, 0, 0], [0, 0, _HYDROXIDE_OH]])
    if kind == "hydronium":
        # three O–H bonds at polar angle θ around z: cos(HOH) = 1 − 1.5 sin²θ
        sin_theta = math.sqrt((1 - math.cos(math.radians(_HYDRONIUM_ANGLE))) / 1.5)
        cos_theta = math.sqrt(1 - sin_theta**2)
        positions = [[0.0, 0.0, 0.0]]
        for k in range(3):
            phi = 2 * math.pi * k / 3
            positions.append([_HYDRONIUM_OH * sin_theta * math.cos(phi),
                              _HYDRONIUM_OH * sin_theta * math.sin(phi),
                              _HYDRONIUM_OH * cos_theta])
        return Atoms("OH3", positions=positions)
    raise ValueError(f"unknown molecule kind {kind!r}.")


def water_dimer() -> Atoms:
    """The hydrogen-bonded water dimer (Cs, trans-linear; the S22 benchmark geometry, O–O 2.91 Å),
    open boundaries, positions in Å: donor O, H, H(bonded), then acceptor O, H, H."""
    return Atoms(
        "OHHOHH",
        positions=[
            [-1.551007, -0.114520, 0.000000],
            [-1.934259, 0.762503, 0.000000],
            [-0.599677, 0.040712, 0.000000],
            [1.350625, 0.111469, 0.000000],
            [1.680398, -0.373741, -0.758561],
            [1.680398, -0.373741, 0.758561],
        ],
    )


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly random 3x3 rotation matrix (from a random unit quaternion)."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _place_cluster(kinds: list[str], rng: np.random.Generator) -> Atoms:
    """Randomly oriented rigid molecules placed one by one without overlaps, compactly.

    The first molecule sits at the origin (an ion is listed first, so it ends up inside). Each
    further molecule is put 2.7–3.1 Å (O–O) from a random placed oxygen in a random direction;
    of up to 12 admissible candidates the one whose oxygen is nearest the current centroid is kept.
    """
    cluster = Atoms()
    oxygens: list[np.ndarray] = []
    for kind in kinds:
        monomer = _molecule(kind)
        local = monomer.positions @ _random_rotation(rng).T
        if not oxygens:
            candidate_positions = [local]
        else:
            centroid = cluster.positions.mean(axis=0)
            candidate_positions = []
            for _ in range(_MAX_PLACEMENT_TRIES):
                anchor = oxygens[int(rng.integers(len(oxygens)))]
                direction = rng.standard_normal(3)
                direction /= np.linalg.norm(direction)
                centre = anchor + direction * rng.uniform(*_NEIGHBOUR_OO)
                trial = local @ _random_rotation(rng).T + centre
                if _admissible(trial, cluster.positions, oxygens):
                    candidate_positions.append(trial)
                    if len(candidate_positions) == _CANDIDATES:
                        break
            if not candidate_positions:
                raise RuntimeError(f"could not place a {kind} molecule in a cluster of "
                                   f"{len(oxygens)} molecules without overlaps.")
            candidate_positions.sort(key=lambda p: float(np.linalg.norm(p[0] - centroid)))
        positions = candidate_positions[0]
        oxygens.append(positions[0])
        cluster += Atoms(monomer.numbers, positions=positions)
    return cluster


def _admissible(trial: np.ndarray, placed: np.ndarray, oxygens: list[np.ndarray]) -> bool:
    """No O–O distance below 2.6 Å and no intermolecular distance below 1.6 Å."""
    oo = np.linalg.norm(np.asarray(oxygens) - trial[0], axis=1)
    if oo.min() < _MIN_OO:
        return False
    pairs = np.linalg.norm(placed[:, None, :] - trial[None, :, :], axis=-1)
    return bool(pairs.min() >= _MIN_INTERMOLECULAR)


def _min_distance(positions: np.ndarray) -> float:
    if len(positions) < 2:
        return math.inf
    distances = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
    return float(distances[np.triu_indices(len(positions), k=1)].min())


# --------------------------------------------------------------------------------------------
# Sampling runs
# --------------------------------------------------------------------------------------------


def _sample_trajectory(plan: _Trajectory, count: int, seed: int, method: str) -> list[Atoms]:
    """``count`` snapshots of one composition; redrawn (new random numbers) if a run fails."""
    kinds = ([plan.ion] if plan.ion else []) + ["water"] * plan.waters
    errors = []
    for attempt in range(_MAX_ATTEMPTS):
        rng = np.random.default_rng([seed, _STREAM_TRAJECTORY, plan.index, attempt + 1])
        try:
            cluster = _place_cluster(kinds, rng)
            if method == "xtb":
                snapshots = _xtb_snapshots(cluster, plan, count, rng)
            else:
                snapshots = _random_snapshots(cluster, plan.temperature, count, rng)
        except Exception as error:  # tblite raises several types; retried with fresh numbers
            errors.append(f"{type(error).__name__}: {error}")
            continue
        if all(_min_distance(s.positions) >= _MIN_DISTANCE for s in snapshots):
            for snapshot in snapshots:
                snapshot.positions -= snapshot.get_center_of_mass()
            return snapshots
        errors.append(f"atoms closer than {_MIN_DISTANCE} Å")
    raise RuntimeError(
        f"trajectory {plan.index} ({plan.composition}, {plan.temperature:g} K, seed {seed}) failed "
        f"{_MAX_ATTEMPTS} times: {'; '.join(errors)}"
    )


def _xtb_snapshots(
    cluster: Atoms, plan: _Trajectory, count: int, rng: np.random.Generator
) -> list[Atoms]:
    """Brief GFN2-xTB relaxation, then seeded Langevin MD; snapshots spaced in time."""
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md import velocitydistribution
    from ase.md.velocitydistribution import Stationary, ZeroRotation
    from ase.optimize import BFGS

    atoms = cluster.copy()
    atoms.calc = _tblite_calculator_class()(
        method="GFN2-xTB", charge=plan.total_charge, verbosity=0
    )
    BFGS(atoms, logfile=None).run(fmax=_RELAX_FMAX, steps=_RELAX_STEPS)
    if hasattr(velocitydistribution, "thermalize_momenta"):  # ASE >= 3.29
        velocitydistribution.thermalize_momenta(atoms, plan.temperature, rng=rng)
    else:
        velocitydistribution.MaxwellBoltzmannDistribution(
            atoms, temperature_K=plan.temperature, rng=rng
        )
    Stationary(atoms)
    if len(atoms) > 2:
        ZeroRotation(atoms)
    atoms.set_constraint(FixCom())
    dynamics = Langevin(
        atoms,
        timestep=_TIMESTEP_FS * units.fs,
        temperature_K=plan.temperature,
        friction=_FRICTION_PER_FS / units.fs,
        fixcm=False,
        rng=rng,
        logfile=None,
    )
    dynamics.run(round(_EQUILIBRATION_FS / _TIMESTEP_FS))
    snapshots = [Atoms(atoms.numbers, positions=atoms.positions)]
    while len(snapshots) < count:
        dynamics.run(round(_SNAPSHOT_SPACING_FS / _TIMESTEP_FS))
        snapshots.append(Atoms(atoms.numbers, positions=atoms.positions))
    return snapshots


def _random_snapshots(
    cluster: Atoms, temperature: float, count: int, rng: np.random.Generator
) -> list[Atoms]:
    """Rigid cluster plus Gaussian displacements scaled by sqrt(T) and 1/sqrt(mass)."""
    masses = cluster.get_masses()
    sigma = (_RANDOM_AMPLITUDE_300K * math.sqrt(temperature / 300.0)
             * np.sqrt(masses.min() / masses))[:, None]
    return [
        Atoms(cluster.numbers, positions=cluster.positions
              + sigma * rng.standard_normal(cluster.positions.shape))
        for _ in range(count)
    ]


@contextmanager
def _single_threaded_openmp() -> Iterator[None]:
    """Run the OpenMP runtimes loaded in this process (tblite's libgomp) on one thread, then restore.

    xTB on a few dozen atoms is fastest on one thread (several threads mostly wait, and on a
    busy machine much slower); one thread also makes the MD independent of OMP_NUM_THREADS.
    Linux only (reads /proc/self/maps); elsewhere nothing changes.
    """
    try:
        maps = open("/proc/self/maps").read()
    except OSError:
        maps = ""
    paths = {p for p in re.findall(r"(/\S+)$", maps, flags=re.MULTILINE)
             if re.match(r"lib(gomp|iomp5|omp)[-.]", os.path.basename(p))}
    restore = []
    for path in sorted(paths):
        try:
            library = ctypes.CDLL(path)
            previous = int(library.omp_get_max_threads())
            library.omp_set_num_threads(1)
        except (OSError, AttributeError):
            continue
        restore.append((library, previous))
    try:
        yield
    finally:
        for library, previous in restore:
            library.omp_set_num_threads(previous)


def _tblite_calculator_class():
    """``tblite.ase.TBLite``, or an ImportError that says how to install it."""
    try:
        from tblite.ase import TBLite
    except ImportError as error:
        raise ImportError(f"GFN2-xTB needs tblite, which is not installed ({error}); "
                          f"{DATA_EXTRA_HINT}") from error
    return TBLite


__all__ = ["DATA_EXTRA_HINT", "SAMPLING_METHODS", "label_xtb", "sample_water_structures"]
