"""Liquid water MD in LAMMPS (pair_style fpscf), in restartable phases, for analyse.py.

Usage:
    python examples/liquid_water/md.py --model examples/liquid_water/run/best.fpscf
    python examples/liquid_water/md.py --model water-b3lyp --out /tmp/md_test \\
        --equilibrate-ps 0.01 --nvt-ps 0.02 --chunk-ps 0.01 --nve-ps 0.01 --field-ps 0.01

The model (a ``.fpscf`` file or a shipped model name) is copied into ``OUT/work`` and exported
there for LAMMPS (``fpscf export``, particle-mesh k-space); the plugin is built if missing. A
periodic box of ``--molecules`` (64) rigid waters at 1 g/cm³ (``fpscf.datagen.liquid.water_box``)
is relaxed with LAMMPS' minimizer, then MD runs at ``--timestep-fs`` (0.5 fs) on ``--ranks`` (2)
MPI ranks, in phases:

    minimize     the placed box relaxed (``minimize``, at most --minimize-steps iterations)
    equilibrate  Langevin thermostat at --temperature (300 K) from Maxwell-Boltzmann velocities
    nvt          Nosé-Hoover NVT at --temperature, --nvt-ps (20 ps), from the end of equilibrate
    nve          NVE from the end of nvt (--nve-ps, 5 ps): energy drift
    field_005    Nosé-Hoover NVT in 0.05 V/Å along z from the end of nvt (--field-ps, 5 ps)
    field_010    the same in 0.10 V/Å (--fields sets the fields; names are field_<100 × field>)

Every phase is one or more separate LAMMPS runs ("segments") of at most --chunk-ps each. A segment
reads a restart file (the previous phase's last one, or its own phase's latest), writes restart
files every --restart-ps and at its end, and its own files in ``OUT/<phase>/``:
``<phase>_<first step>.log`` (LAMMPS log; thermo every --thermo-every steps: step, time, temp, pe,
ke, etotal, press, vol, the box dipole c_extra[1..3] in e·Å and SCF steps c_extra[5]),
``.dipole`` (the box dipole every --dipole-every steps, for the IR spectrum) and ``.lammpstrj``
(positions and charges every --dump-every steps, for the RDF and the molecular dipoles).
``OUT/<phase>/status.json`` records the phase: target, steps done, state (done, running, failed),
its segments and, for a failure, the step, time and LAMMPS' message.

Running the same command again continues: finished phases are skipped, an interrupted one
resumes from its latest restart file (``OUT/restart/<phase>.<step>.restart``), a longer --nvt-ps
extends nvt. A phase that failed (a LAMMPS error, e.g. the pair style's non-finite energy, or the
temperature above --max-temperature) is recorded and not retried unless --retry-failed; the phases
that start from it are skipped. ``OUT/run.json`` fixes the model (its sha256), the box and the
time step: a rerun with another model or box stops with a message instead of mixing runs.
--stop-after-hours starts no new segment after that wall time (to run in pieces).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parents[1]
DEFAULT_MODEL = HERE / "run" / "best.fpscf"
SPECIES = ("O", "H")
MASSES = {"O": 15.999, "H": 1.008}
THERMO_COLUMNS = ("step time temp pe ke etotal press vol "
                  "c_extra[1] c_extra[2] c_extra[3] c_extra[5]")
#: Settings of a run that a continuation must share (a change would mix two different runs).
FIXED_SETTINGS = ("model_sha256", "molecules", "seed", "density", "timestep_fs", "temperature", "kspace", "species")


@dataclass(frozen=True)
class Phase:
    """One MD phase: ``ensemble`` "minimize", "langevin", "nvt" or "nve"; ``field`` V/Å along z;
    ``length_ps``; ``source``: the phase whose last restart starts it (None for minimize)."""

    name: str
    ensemble: str
    field: float
    length_ps: float
    source: str | None


@dataclass(frozen=True)
class RunFiles:
    """Where a run keeps its files (OUT is committed except work/, restart/ and *.lammpstrj)."""

    out: Path

    @property
    def work(self) -> Path:
        return self.out / "work"

    @property
    def restarts(self) -> Path:
        return self.out / "restart"

    @property
    def run_json(self) -> Path:
        return self.out / "run.json"

    @property
    def model_copy(self) -> Path:
        return self.work / "model.fpscf"

    @property
    def exported(self) -> Path:
        return self.work / "model.lmp"

    @property
    def data(self) -> Path:
        return self.work / "start.data"

    def phase_dir(self, phase: str) -> Path:
        return self.out / phase

    def status(self, phase: str) -> Path:
        return self.phase_dir(phase) / "status.json"

    def restart(self, phase: str, step: int) -> Path:
        return self.restarts / f"{phase}.{step}.restart"


def field_phase_name(field: float) -> str:
    """``field_005`` for 0.05 V/Å: the phase name of a field (V/Å, along z)."""
    return f"field_{round(abs(field) * 100):03d}"


def build_phases(args: argparse.Namespace) -> list[Phase]:
    """The phases in the order they run, from the command line lengths."""
    phases = [
        Phase("minimize", "minimize", 0.0, 0.0, None),
        Phase("equilibrate", "langevin", 0.0, args.equilibrate_ps, "minimize"),
        Phase("nvt", "nvt", 0.0, args.nvt_ps, "equilibrate"),
        Phase("nve", "nve", 0.0, args.nve_ps, "nvt"),
    ]
    phases += [Phase(field_phase_name(field), "nvt", field, args.field_ps, "nvt") for field in args.fields]
    names = [phase.name for phase in phases]
    if len(set(names)) != len(names):
        raise SystemExit(f"md.py: error: --fields {args.fields} give the same phase name twice: {names}")
    return phases


def steps_of(length_ps: float, timestep_fs: float) -> int:
    """Number of MD steps in ``length_ps`` at ``timestep_fs``."""
    return int(round(length_ps * 1000.0 / timestep_fs))


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None if the file does not exist."""
    return json.loads(path.read_text()) if path.is_file() else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (a reader never sees half a file)."""
    from fpscf.atomic_files import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def model_file(model: str) -> Path:
    """The ``.fpscf`` file of ``model``: a path, or a shipped model name (water-b3lyp)."""
    if Path(model).is_file():
        return Path(model).resolve()
    from fpscf.models import SHIPPED_MODELS, shipped_model_path

    if model in SHIPPED_MODELS:
        return shipped_model_path(model)
    raise SystemExit(f"md.py: error: --model {model!r} is neither a file nor a shipped model "
                     f"({', '.join(sorted(SHIPPED_MODELS))}); train one or pass its path")


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# preparation: run.json, model copy and export, plugin, box
# ---------------------------------------------------------------------------------------------

def run_settings(args: argparse.Namespace, source: Path) -> dict[str, Any]:
    """What run.json records about this run (FIXED_SETTINGS must not change between sessions)."""
    return {
        "model": str(args.model), "model_file": str(source), "model_sha256": sha256(source),
        "molecules": args.molecules, "atoms": 3 * args.molecules, "seed": args.seed, "density": args.density,
        "timestep_fs": args.timestep_fs, "temperature": args.temperature, "kspace": args.kspace,
        "species": list(SPECIES), "ranks": args.ranks, "scf_tol": args.scf_tol,
        "thermo_every": args.thermo_every, "dipole_every": args.dipole_every, "dump_every": args.dump_every,
    }


def check_run_json(files: RunFiles, settings: dict[str, Any]) -> None:
    """Create run.json, or stop if the run in ``files.out`` was made with other fixed settings."""
    recorded = read_json(files.run_json)
    if recorded is None:
        write_json(files.run_json, settings)
        return
    changed = [key for key in FIXED_SETTINGS if recorded.get(key) != settings[key]]
    if changed:
        details = "; ".join(f"{key}: recorded {recorded.get(key)!r}, now {settings[key]!r}" for key in changed)
        raise SystemExit(
            f"md.py: error: {files.out} holds a run made with other settings ({details}). "
            f"Continue it with the recorded settings (model {recorded.get('model')}), or start a new run "
            "with another --out (or delete that directory)."
        )


def prepare_model(files: RunFiles, source: Path, kspace: str, scf_tol: float) -> Path:
    """Copy the model into work/ (the training may overwrite the original) and export it for LAMMPS."""
    from fpscf.export import export_model

    if not files.model_copy.is_file():
        shutil.copyfile(source, files.model_copy)
    if not files.exported.is_file():
        print(f"exporting {source} -> {files.exported} (kspace {kspace})", flush=True)
        export_model(files.model_copy, files.exported, kspace=kspace, scf_tolerance=scf_tol)
    return files.exported


def write_start_box(files: RunFiles, molecules: int, seed: int, density: float) -> Path:
    """The placed box as a LAMMPS data file (atom_style charge, types O=1, H=2)."""
    from ase.io import write

    from fpscf.datagen.liquid import water_box

    if not files.data.is_file():
        box = water_box(molecules, seed, density=density)
        write(files.data, box, format="lammps-data", specorder=list(SPECIES), masses=True, atom_style="charge")
    return files.data


# ---------------------------------------------------------------------------------------------
# LAMMPS scripts
# ---------------------------------------------------------------------------------------------

def pair_lines(exported: Path, field: float, scf_tol: float) -> list[str]:
    """pair_style/pair_coeff of the exported model in a field (V/Å along z): ``fpscf.export.pair_commands``
    where this fpscf has it (it adds LAMMPS' dispersion/d3 for a model with a D3 term), else plain fpscf."""
    options = f"efield 0.0 0.0 {field} scf_tol {scf_tol}"
    try:
        from fpscf.export import pair_commands
    except ImportError:
        return [f"pair_style fpscf {options}", f"pair_coeff * * {exported} {' '.join(SPECIES)}"]
    return pair_commands(exported, SPECIES, options)


def model_commands(exported: Path, field: float, scf_tol: float, thermo_every: int) -> list[str]:
    """pair_style/pair_coeff, the fpscf compute (dipole, SCF steps) and the thermo output."""
    return [
        *pair_lines(exported, field, scf_tol),
        "compute extra all pair fpscf",
        f"thermo_style custom {THERMO_COLUMNS}",
        "thermo_modify format float %.10g flush yes",
        f"thermo {thermo_every}",
    ]


def minimize_script(plugin: Path, files: RunFiles, args: argparse.Namespace) -> str:
    """Relax the placed box (fixed cell) and write restart/minimize.0.restart."""
    return "\n".join([
        f"plugin load {plugin}", "units metal", "atom_style charge", f"read_data {files.data}",
        *model_commands(files.exported, 0.0, args.scf_tol, 1),
        "min_modify dmax 0.05",
        f"minimize 0.0 0.05 {args.minimize_steps} {2 * args.minimize_steps}",
        "reset_timestep 0",
        f"write_restart {files.restart('minimize', 0)}",
    ]) + "\n"


def ensemble_commands(phase: Phase, args: argparse.Namespace, first_segment: bool, start_step: int) -> list[str]:
    """Velocities (first segment of equilibrate) and the integrator/thermostat fixes of a phase."""
    temperature = args.temperature
    if phase.ensemble == "langevin":
        return [
            *([f"velocity all create {temperature} {args.seed + 4242} mom yes rot no dist gaussian"] if first_segment else []),
            "fix nve all nve",
            f"fix langevin all langevin {temperature} {temperature} {args.langevin_damp_ps} "
            f"{args.seed + 1000 + start_step} zero yes",
        ]
    if phase.ensemble == "nvt":
        return [f"fix nvt all nvt temp {temperature} {temperature} {args.nvt_damp_ps}"]
    if phase.ensemble == "nve":
        return ["fix nve all nve"]
    raise ValueError(f"unknown ensemble {phase.ensemble!r}")


def segment_script(plugin: Path, files: RunFiles, phase: Phase, args: argparse.Namespace, restart: Path,
                   first_segment: bool, start_step: int, end_step: int, stem: Path) -> str:
    """One segment of an MD phase: from ``restart`` to step ``end_step`` of the phase."""
    restart_every = max(1, steps_of(args.restart_ps, args.timestep_fs))
    return "\n".join([
        f"plugin load {plugin}",
        f"read_restart {restart}",
        *(["reset_timestep 0"] if first_segment else []),
        *model_commands(files.exported, phase.field, args.scf_tol, args.thermo_every),
        f"timestep {args.timestep_fs / 1000.0}",
        *ensemble_commands(phase, args, first_segment, start_step),
        "variable hot equal temp",
        f"fix too_hot all halt {args.thermo_every} v_hot > {args.max_temperature} error hard message yes",
        f"fix dipole all ave/time {args.dipole_every} 1 {args.dipole_every} c_extra[1] c_extra[2] c_extra[3] "
        f"file {stem.with_suffix('.dipole')} format ' %.12g'",
        f"dump traj all custom {args.dump_every} {stem.with_suffix('.lammpstrj')} id type x y z q",
        "dump_modify traj sort id",
        f"restart {restart_every} {files.restarts / (phase.name + '.*.restart')}",
        f"run {end_step} upto",
        f"write_restart {files.restarts / (phase.name + '.*.restart')}",
    ]) + "\n"


# ---------------------------------------------------------------------------------------------
# running phases
# ---------------------------------------------------------------------------------------------

def restart_steps(files: RunFiles, phase: str) -> list[int]:
    """Steps of the restart files of ``phase`` on disk, ascending."""
    steps = []
    for path in files.restarts.glob(f"{phase}.*.restart"):
        match = re.fullmatch(rf"{re.escape(phase)}\.(\d+)\.restart", path.name)
        if match:
            steps.append(int(match.group(1)))
    return sorted(steps)


def prune_restarts(files: RunFiles, phase: str, keep: int = 2) -> None:
    """Delete all but the ``keep`` latest restart files of ``phase`` (each is a full snapshot)."""
    for step in restart_steps(files, phase)[:-keep]:
        files.restart(phase, step).unlink(missing_ok=True)


def lammps_error(text: str) -> str:
    """The ERROR lines of LAMMPS output, each once (every rank may print the same), as one message;
    the end of the output if there is none."""
    errors = [re.sub(r"^ERROR( on proc \d+)?: ", "", line.strip()) for line in text.splitlines()
              if line.startswith("ERROR")]
    unique = list(dict.fromkeys(errors))
    return " | ".join(unique) if unique else text.strip()[-1000:]


def pair_warnings(screen: Path) -> list[str]:
    """The pair style's warnings (training domain) in a LAMMPS screen output, each once."""
    if not screen.is_file():
        return []
    lines = [line.strip() for line in screen.read_text(errors="replace").splitlines()
             if line.startswith("WARNING: pair_style fpscf")]
    return list(dict.fromkeys(lines))


def last_dipole_step(path: Path) -> int | None:
    """Step of the last box-dipole sample of a segment (every --dipole-every steps)."""
    if not path.is_file():
        return None
    rows = [line.split() for line in path.read_text(errors="replace").splitlines() if line and not line.startswith("#")]
    steps = [int(row[0]) for row in rows if len(row) == 4 and row[0].isdigit()]
    return steps[-1] if steps else None


def error_step(message: str) -> int | None:
    """The step LAMMPS names in an error message (pair style fpscf, fix halt), if any."""
    match = re.search(r"\bstep (\d+)", message)
    return int(match.group(1)) if match else None


def last_thermo_step(log: Path) -> int | None:
    """Step of the last thermo row in a (possibly unfinished) LAMMPS log."""
    if not log.is_file():
        return None
    last = None
    in_table = False
    for line in log.read_text(errors="replace").splitlines():
        words = line.split()
        if words[:2] == ["Step", "Time"]:
            in_table = True
            continue
        if in_table and words and re.fullmatch(r"\d+", words[0]) and len(words) == len(THERMO_COLUMNS.split()):
            last = int(words[0])
        elif line.startswith("Loop time"):
            in_table = False
    return last


def new_status(phase: Phase, args: argparse.Namespace) -> dict[str, Any]:
    """status.json of a phase that has not started."""
    target = steps_of(phase.length_ps, args.timestep_fs)
    return {
        "phase": phase.name, "ensemble": phase.ensemble, "field_V_per_A": [0.0, 0.0, phase.field],
        "temperature_K": args.temperature, "timestep_fs": args.timestep_fs, "target_steps": target,
        "target_ps": target * args.timestep_fs / 1000.0, "steps_done": 0, "state": "not started",
        "source": phase.source, "started_from": None, "segments": [],
    }


def run_lammps(script_text: str, script: Path, log: Path, ranks: int) -> tuple[bool, str, float]:
    """Run a LAMMPS script under mpirun on ``ranks`` ranks (one torch thread each):
    (success, error message, wall seconds). Screen output goes to ``script`` + ``.screen``.

    LAMMPS runs in its own process group, so that an interrupt (Ctrl-C, SIGTERM) of this script
    stops every rank before the next session starts: no orphaned rank keeps writing the files.
    """
    from fpscf.export import lmp_executable, mpirun_executable, subprocess_environment

    script.write_text(script_text)
    screen = script.with_name(script.name + ".screen")
    command = [str(mpirun_executable()), "-np", str(ranks), str(lmp_executable()), "-in", str(script), "-log", str(log)]
    start = time.perf_counter()
    with open(screen, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=script.parent,
                                   env=subprocess_environment(omp_threads=1), start_new_session=True)
        try:
            code = process.wait()
        except BaseException:
            stop_process_group(process)
            raise
    wall = time.perf_counter() - start
    if code != 0:
        text = screen.read_text(errors="replace")
        return False, lammps_error(text) or f"LAMMPS exited with status {code}", wall
    return True, "", wall


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process group of ``process`` (mpirun and its ranks), SIGKILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def record_failure(status: dict[str, Any], message: str, step: int | None, timestep_fs: float) -> None:
    """Mark a phase failed at ``step`` (the step LAMMPS names, else the last step with output; None:
    before the first MD step) with LAMMPS' message."""
    status.update(state="failed", message=message, failed_at_step=step,
                  failed_at_ps=None if step is None else step * timestep_fs / 1000.0)


def run_minimize(files: RunFiles, plugin: Path, args: argparse.Namespace, phase: Phase) -> dict[str, Any]:
    """The minimize phase (done once; rerun from the placed box if it was interrupted)."""
    status = read_json(files.status(phase.name)) or new_status(phase, args)
    if status["state"] == "done" and files.restart(phase.name, 0).is_file():
        return status
    if status["state"] == "failed" and not args.retry_failed:
        return status
    log = files.phase_dir(phase.name) / "minimize.log"
    status.update(state="running", message=None, segments=[{"log": log.name, "start_step": 0, "end_step": 0,
                                                            "state": "running"}])
    write_json(files.status(phase.name), status)
    print(f"minimize: at most {args.minimize_steps} iterations -> {log}", flush=True)
    ok, message, wall = run_lammps(minimize_script(plugin, files, args), files.work / "in.minimize", log, args.ranks)
    status["segments"][0].update(state="done" if ok else "failed", wall_s=round(wall, 1))
    if ok:
        status.update(state="done", final_restart=files.restart(phase.name, 0).name)
    else:
        record_failure(status, message, None, args.timestep_fs)
    write_json(files.status(phase.name), status)
    return status


def resume_point(files: RunFiles, phase: Phase, status: dict[str, Any],
                 source_status: dict[str, Any]) -> tuple[Path, int, bool]:
    """(restart file, its step in the phase, first segment?) from which the phase continues."""
    steps = restart_steps(files, phase.name)
    if steps:
        return files.restart(phase.name, steps[-1]), steps[-1], False
    source_restart = files.restarts / source_status["final_restart"]
    status["started_from"] = {"phase": phase.source, "restart": source_restart.name,
                              "source_steps_done": source_status["steps_done"]}
    return source_restart, 0, True


def run_md_phase(files: RunFiles, plugin: Path, args: argparse.Namespace, phase: Phase,
                 source_status: dict[str, Any], deadline: float) -> dict[str, Any]:
    """Run the segments of an MD phase until it reaches its target, fails or the deadline passes."""
    path = files.status(phase.name)
    status = read_json(path) or new_status(phase, args)
    target = steps_of(phase.length_ps, args.timestep_fs)
    status.update(target_steps=target, target_ps=target * args.timestep_fs / 1000.0)
    if status["state"] == "failed" and not args.retry_failed:
        print(f"{phase.name}: failed before ({status.get('message')}); skipped (--retry-failed to retry)")
        return status
    chunk = max(1, steps_of(args.chunk_ps, args.timestep_fs))
    while True:
        restart, start, first = resume_point(files, phase, status, source_status)
        if start >= target:
            status.update(state="done", steps_done=start, final_restart=restart.name, message=None)
            write_json(path, status)
            return status
        if time.time() > deadline:
            print(f"{phase.name}: --stop-after-hours reached at step {start}; rerun to continue")
            status.update(state="paused", steps_done=start)
            write_json(path, status)
            return status
        end = min(target, (start // chunk + 1) * chunk)
        stem = files.phase_dir(phase.name) / f"{phase.name}_{start:07d}"
        segment = {"log": stem.name + ".log", "dipole": stem.name + ".dipole", "dump": stem.name + ".lammpstrj",
                   "start_step": start, "end_step": end, "restart": restart.name, "state": "running"}
        for old in status["segments"]:
            if old["state"] == "running":
                old["state"] = "interrupted"
        status["segments"] = [s for s in status["segments"] if s["start_step"] != start] + [segment]
        status.update(state="running", steps_done=start, message=None, failed_at_step=None, failed_at_ps=None)
        write_json(path, status)
        print(f"{phase.name}: steps {start} -> {end} of {target} ({end * args.timestep_fs / 1000:.3f} ps) "
              f"from {restart.name}; log {stem.with_suffix('.log')}", flush=True)
        script = segment_script(plugin, files, phase, args, restart, first, start, end, stem)
        ok, message, wall = run_lammps(script, files.work / f"in.{phase.name}", stem.with_suffix(".log"), args.ranks)
        segment.update(wall_s=round(wall, 1), state="done" if ok else "failed")
        warnings = pair_warnings(files.work / f"in.{phase.name}.screen")
        if warnings:
            status["warnings"] = list(dict.fromkeys(status.get("warnings", []) + warnings))[:20]
        if not ok:
            step = error_step(message)
            if step is None:  # the last step with output; the error came at the next force evaluation
                sampled = [last_thermo_step(stem.with_suffix(".log")), last_dipole_step(stem.with_suffix(".dipole"))]
                step = max((s for s in sampled if s is not None), default=None)
            record_failure(status, message, step, args.timestep_fs)
            status["steps_done"] = status["failed_at_step"] or start
            write_json(path, status)
            print(f"{phase.name}: FAILED at {status['failed_at_ps']} ps: {message}", flush=True)
            return status
        prune_restarts(files, phase.name)
        status["steps_done"] = end
        write_json(path, status)


def run_all(args: argparse.Namespace) -> None:
    """Prepare the run directory and run (or skip) every phase in order."""
    from fpscf.export import build_plugin

    files = RunFiles(args.out.resolve())
    source = model_file(args.model)
    phases = build_phases(args)
    for directory in [files.out, files.work, files.restarts, *(files.phase_dir(p.name) for p in phases)]:
        directory.mkdir(parents=True, exist_ok=True)
    check_run_json(files, run_settings(args, source))
    plugin = build_plugin(REPOSITORY / "build" / "lammps_plugin")
    prepare_model(files, source, args.kspace, args.scf_tol)
    write_start_box(files, args.molecules, args.seed, args.density)
    deadline = time.time() + 3600.0 * args.stop_after_hours if args.stop_after_hours else float("inf")
    statuses: dict[str, dict[str, Any]] = {}
    for phase in phases:
        if args.phases and phase.name not in args.phases:
            statuses[phase.name] = read_json(files.status(phase.name)) or new_status(phase, args)
            continue
        if phase.ensemble == "minimize":
            statuses[phase.name] = run_minimize(files, plugin, args, phase)
            continue
        source_status = statuses.get(phase.source) or read_json(files.status(phase.source)) or {}
        if source_status.get("state") != "done":
            print(f"{phase.name}: not started: {phase.source} is {source_status.get('state', 'not started')}")
            statuses[phase.name] = read_json(files.status(phase.name)) or new_status(phase, args)
            continue
        statuses[phase.name] = run_md_phase(files, plugin, args, phase, source_status, deadline)
    for name, status in statuses.items():
        print(f"{name:12s} {status['state']:12s} {status['steps_done'] * args.timestep_fs / 1000:8.3f} ps"
              + (f"  failed at {status.get('failed_at_ps')} ps: {status.get('message')}" if status["state"] == "failed" else ""))


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of md.py (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="model file (.fpscf) or shipped model name")
    parser.add_argument("--out", type=Path, default=HERE / "md", help="run directory (default examples/liquid_water/md)")
    parser.add_argument("--molecules", type=int, default=64, help="water molecules in the box")
    parser.add_argument("--seed", type=int, default=0, help="seed of the box and the velocities")
    parser.add_argument("--density", type=float, default=1.0, help="g/cm³")
    parser.add_argument("--ranks", type=int, default=2, help="MPI ranks (one torch thread each)")
    parser.add_argument("--timestep-fs", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--minimize-steps", type=int, default=100, help="minimizer iterations at most")
    parser.add_argument("--equilibrate-ps", type=float, default=2.0)
    parser.add_argument("--nvt-ps", type=float, default=20.0)
    parser.add_argument("--nve-ps", type=float, default=5.0)
    parser.add_argument("--field-ps", type=float, default=5.0)
    parser.add_argument("--fields", type=float, nargs="*", default=[0.05, 0.1], help="V/Å along z, one phase each")
    parser.add_argument("--chunk-ps", type=float, default=2.5, help="longest single LAMMPS run")
    parser.add_argument("--restart-ps", type=float, default=0.5, help="restart file interval")
    parser.add_argument("--thermo-every", type=int, default=10, help="steps between thermo rows")
    parser.add_argument("--dipole-every", type=int, default=2, help="steps between dipole samples (IR)")
    parser.add_argument("--dump-every", type=int, default=20, help="steps between position/charge frames")
    parser.add_argument("--langevin-damp-ps", type=float, default=0.1, help="equilibrate: Langevin damping time")
    parser.add_argument("--nvt-damp-ps", type=float, default=0.1, help="Nosé-Hoover damping time")
    parser.add_argument("--scf-tol", type=float, default=1e-6, help="pair_style scf_tol, e")
    parser.add_argument("--kspace", choices=["pme", "ewald", "auto"], default="pme", help="fpscf export k-space")
    parser.add_argument("--max-temperature", type=float, default=2000.0, help="K: a hotter box stops the phase (blow-up)")
    parser.add_argument("--phases", nargs="*", default=None, help="run only these phases (default: all)")
    parser.add_argument("--retry-failed", action="store_true", help="retry failed phases from their last restart")
    parser.add_argument("--stop-after-hours", type=float, default=None, help="start no new segment after this")
    args = parser.parse_args(argv)
    if args.molecules < 1 or args.ranks < 1 or args.timestep_fs <= 0:
        parser.error("--molecules, --ranks and --timestep-fs must be positive")
    return args


class Interrupted(Exception):
    """SIGTERM or SIGHUP (a session that ends): stop LAMMPS and leave the restart files."""


def raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def lock_run_directory(out: Path) -> Any:
    """An exclusive lock on OUT/.lock (two md.py on one run would write the same files)."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    handle = open(out / ".lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"md.py: error: another md.py is running in {out}; wait for it or stop it first") from None
    return handle


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    lock = lock_run_directory(args.out)
    previous = {signum: signal.signal(signum, raise_interrupted) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        run_all(args)
    except (KeyboardInterrupt, Interrupted) as interruption:
        print(f"\ninterrupted ({interruption or 'SIGINT'}): run the same command again to continue from the "
              "latest restart files", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        lock.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    main()
