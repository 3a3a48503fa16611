"""Exploration: Langevin MD with the current model, stopped at the first sign of trouble.

:func:`run_md` runs one trajectory with an ASE calculator (a :class:`~fpscf.FixedPointCalculator`
in production) and records every ``record_every``-th frame: energy (eV), largest atomic force
(eV/Å) and its atom, SCF steps, instantaneous temperature (K) and the ways the frame leaves the
model's training domain (:meth:`fpscf.domain.TrainingDomain.violations`, checked on every frame,
not once per calculator as the calculator's :class:`~fpscf.domain.OutOfDomainWarning` is). The
trajectory stops at the first of (:class:`StopCriteria`):

- ``non_finite``: the calculator raised :class:`~fpscf.domain.NonFiniteResultError`;
- ``scf_failure``: the SCF did not converge (:class:`~fpscf.scf.solver.SCFConvergenceError`);
- ``max_force``: a force above ``max_force`` eV/Å;
- ``scf_spike``: SCF steps above ``scf_spike_factor`` × the median of the previous frames (and
  at least ``scf_spike_min_steps``);
- ``temperature``: the temperature above ``max_temperature_factor`` × the thermostat's;
- ``min_distance``: two atoms closer than ``min_distance`` Å.

The failing geometry itself is kept as the last frame (status = the stop code), since it is the
structure the model got most wrong. :func:`explore` runs several trajectories and writes each with
:func:`fpscf.active_learning.trajectory.write_trajectory` (frames, per-frame CSV, summary JSON,
atomically); model outputs are stored under ``model_*`` keys so that frames are never mistaken for
reference labels.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from ase import Atoms, units

from fpscf.active_learning.trajectory import FrameRecord, Trajectory, read_trajectory, write_trajectory
from fpscf.domain import NonFiniteResultError, OutOfDomainWarning, TrainingDomain, shortest_distance
from fpscf.scf.solver import SCFConvergenceError

#: Stop codes of a trajectory (module docstring).
STOP_REASONS = ("non_finite", "scf_failure", "max_force", "scf_spike", "temperature", "min_distance")
#: Domain violations that are properties of the run rather than of a frame (not scored per frame).
STATIC_VIOLATIONS = ("boundary", "element", "total_charge")


@dataclass(frozen=True)
class MDSettings:
    """Langevin MD of an exploration or evaluation run.

    temperature_K: thermostat temperature, K. timestep_fs: fs. steps: MD steps per trajectory.
    friction_per_fs: Langevin friction, 1/fs. field: uniform applied field (3,), V/Å.
    trajectories: runs per phase (start structures are used in turn); None: one per structure.
    seed: seeds the velocities and the thermostat noise (with the phase and run index).
    record_every: keep every n-th frame (the last one before a stop is always kept).
    log_every: a progress line every n steps (0: none). scf_tolerance, max_scf_steps: calculator.
    """

    temperature_K: float = 300.0
    timestep_fs: float = 0.5
    steps: int = 200
    friction_per_fs: float = 0.01
    field: tuple[float, float, float] = (0.0, 0.0, 0.0)
    trajectories: int | None = None
    seed: int = 0
    record_every: int = 1
    log_every: int = 0
    scf_tolerance: float = 1e-6
    max_scf_steps: int = 200


@dataclass(frozen=True)
class StopCriteria:
    """Signs of trouble that end a trajectory (module docstring); forces eV/Å, distances Å."""

    max_force: float = 20.0
    scf_spike_factor: float = 4.0
    scf_spike_min_steps: int = 25
    max_temperature_factor: float = 3.0
    min_distance: float = 0.6


def run_md(
    atoms: Atoms,
    calculator: Any,
    md: MDSettings,
    stop: StopCriteria,
    *,
    seed: int,
    name: str = "traj_000",
    domain: TrainingDomain | None = None,
    log: Callable[[str], None] | None = None,
) -> Trajectory:
    """Langevin MD of a copy of ``atoms`` (Å; ``info["total_charge"]`` e) in ``md.field`` (V/Å)
    with ``calculator``, stopped at the first sign of trouble (module docstring). Velocities are
    drawn at ``md.temperature_K`` from ``seed``; centre-of-mass motion is removed."""
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md import velocitydistribution
    from ase.md.velocitydistribution import Stationary, ZeroRotation

    start = time.perf_counter()
    charge = _total_charge_of(atoms, calculator)
    atoms = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    atoms.info["total_charge"] = charge
    atoms.info["external_field"] = np.asarray(md.field, dtype=float)
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    if hasattr(velocitydistribution, "thermalize_momenta"):  # ASE >= 3.29
        velocitydistribution.thermalize_momenta(atoms, md.temperature_K, rng=rng)
    else:
        velocitydistribution.MaxwellBoltzmannDistribution(atoms, temperature_K=md.temperature_K, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)
    atoms.set_constraint(FixCom())
    dynamics = Langevin(atoms, timestep=md.timestep_fs * units.fs, temperature_K=md.temperature_K,
                        friction=md.friction_per_fs / units.fs, fixcm=False, rng=rng, logfile=None)
    run = Trajectory(name, [], [], md.steps, 0, md.timestep_fs, seed=seed)
    if domain is not None:  # what holds for the whole run (e.g. a periodic box for a model of clusters)
        static = [v.message for v in domain.violations(atoms, md.field, charge)
                  if v.kind.split(":")[0] in STATIC_VIOLATIONS]
        run.extra["static_domain_violations"] = static
    scf_history: list[int] = []
    last_step = -1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutOfDomainWarning)  # checked per frame below instead
            for _ in dynamics.irun(md.steps):
                step = last_step = dynamics.nsteps
                record = _observe(atoms, step, md, domain)
                reason, detail = _trouble(atoms, record, scf_history, md, stop)
                run.steps_run = step
                if reason is not None or step % md.record_every == 0:
                    record.status = reason or "ok"
                    _keep(run, atoms, record)
                if reason is not None:
                    run.stop_reason, run.stop_detail = reason, detail
                    break
                scf_history.append(record.scf_steps)
                if log is not None and md.log_every and step % md.log_every == 0:
                    log(f"{name} step {step}: E {record.energy_eV:.3f} eV, T {record.temperature_K:.0f} K, "
                        f"max |F| {record.max_force_eV_per_A:.2f} eV/Å, SCF {record.scf_steps}")
    except (NonFiniteResultError, SCFConvergenceError) as error:
        code = "non_finite" if isinstance(error, NonFiniteResultError) else "scf_failure"
        step = last_step + 1  # the step whose force evaluation failed
        run.steps_run = step
        record = FrameRecord(step, step * md.timestep_fs, temperature_K=float(atoms.get_temperature()), status=code)
        _keep(run, atoms, record, with_results=False)
        run.stop_reason, run.stop_detail = code, f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
    run.wall_s = time.perf_counter() - start
    return run


def _total_charge_of(atoms: Atoms, calculator: Any) -> float:
    return float(atoms.info.get("total_charge", getattr(calculator, "total_charge", None) or 0.0))


def _observe(atoms: Atoms, step: int, md: MDSettings, domain: TrainingDomain | None) -> FrameRecord:
    """Energy, forces, SCF steps, temperature and domain violations of the current frame."""
    energy = float(atoms.get_potential_energy())
    forces = atoms.get_forces(apply_constraint=False)
    magnitudes = np.linalg.norm(forces, axis=1)
    results = getattr(atoms.calc, "results", {})
    record = FrameRecord(step, step * md.timestep_fs, energy, float(magnitudes.max()), int(np.argmax(magnitudes)),
                         int(results.get("scf_steps", -1)), float(atoms.get_temperature()))
    if domain is not None:
        kinds = frame_violations(atoms, domain, results.get("charges"))
        record.domain_violations, record.domain_kinds = len(kinds), ";".join(kinds)
    return record


def frame_violations(atoms: Atoms, domain: TrainingDomain, charges: Any = None) -> list[str]:
    """Kinds of the per-frame domain violations of ``atoms`` (``distance:H-H``, ``charge:O``,
    ``field``), leaving out the static ones (:data:`STATIC_VIOLATIONS`)."""
    field = atoms.info.get("external_field")
    found = domain.violations(atoms, field, None)
    if charges is not None:
        found += domain.charge_violations(atoms.numbers, charges)
    return [v.kind for v in found if v.kind.split(":")[0] not in STATIC_VIOLATIONS]


def _trouble(atoms: Atoms, record: FrameRecord, scf_history: list[int], md: MDSettings,
             stop: StopCriteria) -> tuple[str | None, str]:
    """The first stop criterion the frame meets, with a one-line reason (None, "" if none)."""
    if not math.isfinite(record.energy_eV) or not math.isfinite(record.max_force_eV_per_A):
        return "non_finite", "non-finite energy or forces"
    if record.max_force_eV_per_A > stop.max_force:
        return "max_force", (f"max |F| {record.max_force_eV_per_A:.3g} eV/Å on atom {record.max_force_atom} "
                             f"> {stop.max_force:g} eV/Å")
    if scf_history and record.scf_steps >= 0:
        median = float(np.median(scf_history))
        if record.scf_steps >= stop.scf_spike_min_steps and record.scf_steps > stop.scf_spike_factor * median:
            return "scf_spike", (f"{record.scf_steps} SCF steps > {stop.scf_spike_factor:g} x the running median "
                                 f"({median:g})")
    if record.temperature_K > stop.max_temperature_factor * md.temperature_K:
        return "temperature", (f"temperature {record.temperature_K:.0f} K > {stop.max_temperature_factor:g} x "
                               f"{md.temperature_K:g} K")
    closest = shortest_distance(atoms, stop.min_distance)
    if closest is not None:
        return "min_distance", f"{closest[1]} distance {closest[0]:.3f} Å < {stop.min_distance:g} Å"
    return None, ""


def _keep(run: Trajectory, atoms: Atoms, record: FrameRecord, with_results: bool = True) -> None:
    """Append a copy of the frame, with the model's outputs under ``model_*`` keys."""
    frame = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc,
                  momenta=atoms.get_momenta())
    frame.info.update(total_charge=atoms.info["total_charge"], external_field=np.asarray(atoms.info["external_field"]),
                      al_trajectory=run.name, al_step=record.step, al_time_fs=record.time_fs,
                      al_status=record.status, temperature_K=record.temperature_K)
    results = getattr(atoms.calc, "results", {}) if with_results else {}
    if with_results:
        frame.info.update(model_energy=record.energy_eV, model_scf_steps=record.scf_steps)
        frame.arrays["model_forces"] = np.array(atoms.get_forces(apply_constraint=False))
        if "charges" in results:
            frame.arrays["model_charges"] = np.asarray(results["charges"], dtype=float).reshape(-1).copy()
    run.frames.append(frame)
    run.records.append(record)


def explore(
    structures: list[Atoms],
    model: Any,
    md: MDSettings,
    stop: StopCriteria,
    directory: str | Path,
    *,
    stream: int = 0,
    calculator_factory: Callable[[], Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Trajectory]:
    """Run ``md.trajectories`` (default: one per structure) MD runs from ``structures`` in turn and
    write each to ``directory`` (``traj_000`` ...). Resumable: a run whose JSON exists is read back,
    not rerun. Run k is seeded by ``(md.seed, stream, k)``. ``model`` (a model, file or shipped
    name) gives a fresh :class:`~fpscf.FixedPointCalculator` per run unless ``calculator_factory``
    is given; its training domain (if any) is checked on every frame."""
    from fpscf.models import resolve_model

    if not structures:
        raise ValueError("explore: no start structures given")
    count = md.trajectories if md.trajectories is not None else len(structures)
    loaded = None
    runs = []
    for k in range(count):
        name = f"traj_{k:03d}"
        if (Path(directory) / f"{name}.json").is_file():
            runs.append(read_trajectory(directory, name))
            continue
        if calculator_factory is None and loaded is None:
            loaded = resolve_model(model)
        if calculator_factory is not None:
            calculator = calculator_factory()
        else:
            from fpscf.calculators.fixed_point import FixedPointCalculator

            calculator = FixedPointCalculator(loaded, scf_tolerance=md.scf_tolerance, max_scf_steps=md.max_scf_steps)
        domain = getattr(getattr(calculator, "model", None), "training_domain", None)
        run = run_md(structures[k % len(structures)], calculator, md, stop,
                     seed=int(np.random.default_rng([md.seed, stream, k]).integers(2**31)),
                     name=name, domain=domain, log=log)
        run.start_index = k % len(structures)
        write_trajectory(run, directory)
        if log is not None:
            ending = ("stable" if run.stable else f"stopped at step {run.steps_run} ({run.time_to_failure_fs:g} fs): "
                      f"{run.stop_reason}, {run.stop_detail}")
            log(f"{name}: {run.steps_run}/{run.steps_requested} steps in {run.wall_s:.1f} s, {ending}")
        runs.append(run)
    return runs


__all__ = ["STOP_REASONS", "MDSettings", "StopCriteria", "explore", "frame_violations", "run_md"]
