"""Recorded MD runs: per-frame records, the trajectory, and their files.

A trajectory ``<name>`` in a directory is three files, each written atomically: ``<name>.xyz``
(the recorded frames, extended XYZ, model outputs under ``model_*`` keys), ``<name>.csv`` (one row
per frame, :data:`CSV_COLUMNS`) and, written last, ``<name>.json`` (the summary: length, why it
stopped, time to failure, wall time). A trajectory whose JSON exists is finished.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ase.io
from ase import Atoms

from fpscf.atomic_files import atomic_write_text
from fpscf.data.extxyz import write_extxyz

CSV_COLUMNS = ("step", "time_fs", "energy_eV", "max_force_eV_per_A", "max_force_atom", "scf_steps",
               "temperature_K", "domain_violations", "domain_kinds", "status")


@dataclass
class FrameRecord:
    """One recorded frame: step, time (fs), energy (eV), largest |F| (eV/Å) and its atom, SCF
    steps, temperature (K), number and kinds of per-frame domain violations, status."""

    step: int
    time_fs: float
    energy_eV: float = math.nan
    max_force_eV_per_A: float = math.nan
    max_force_atom: int = -1
    scf_steps: int = -1
    temperature_K: float = math.nan
    domain_violations: int = 0
    domain_kinds: str = ""
    status: str = "ok"


@dataclass
class Trajectory:
    """A finished run: its recorded frames (``ase.Atoms`` with ``model_*`` keys) and records, why
    it stopped (``stop_reason`` None if it reached ``steps_requested``) and its wall time (s)."""

    name: str
    frames: list[Atoms]
    records: list[FrameRecord]
    steps_requested: int
    steps_run: int
    timestep_fs: float
    stop_reason: str | None = None
    stop_detail: str = ""
    seed: int = 0
    start_index: int = 0
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def stable(self) -> bool:
        """Reached the requested length without trouble."""
        return self.stop_reason is None

    @property
    def time_to_failure_fs(self) -> float | None:
        """Simulated time (fs) at the stop; None for a stable run."""
        return None if self.stable else self.steps_run * self.timestep_fs

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name, "start_index": self.start_index, "seed": self.seed,
            "steps_requested": self.steps_requested, "steps_run": self.steps_run,
            "timestep_fs": self.timestep_fs, "simulated_fs": self.steps_run * self.timestep_fs,
            "stable": self.stable, "stop_reason": self.stop_reason, "stop_detail": self.stop_detail,
            "time_to_failure_fs": self.time_to_failure_fs, "frames": len(self.frames),
            "wall_s": round(self.wall_s, 2), **self.extra,
        }


def write_trajectory(run: Trajectory, directory: str | Path) -> Path:
    """Write ``<name>.xyz``, ``<name>.csv`` and last ``<name>.json`` (atomically); return the JSON path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if run.frames:
        write_extxyz(directory / f"{run.name}.xyz", run.frames)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in run.records:
        writer.writerow(asdict(record))
    atomic_write_text(directory / f"{run.name}.csv", buffer.getvalue())
    path = directory / f"{run.name}.json"
    atomic_write_text(path, json.dumps(run.summary(), indent=2) + "\n")
    return path


def read_trajectory(directory: str | Path, name: str) -> Trajectory:
    """A trajectory written by :func:`write_trajectory`."""
    directory = Path(directory)
    summary = json.loads((directory / f"{name}.json").read_text())
    frames_path = directory / f"{name}.xyz"
    frames = list(ase.io.read(frames_path, index=":", format="extxyz")) if frames_path.is_file() else []
    with open(directory / f"{name}.csv", newline="") as handle:
        records = [_record_from_row(row) for row in csv.DictReader(handle)]
    known = {"name", "start_index", "seed", "steps_requested", "steps_run", "timestep_fs", "stop_reason",
             "stop_detail", "wall_s"}
    derived = {"simulated_fs", "stable", "time_to_failure_fs", "frames"}
    return Trajectory(name, frames, records, summary["steps_requested"], summary["steps_run"], summary["timestep_fs"],
                      summary["stop_reason"], summary["stop_detail"], summary["seed"], summary["start_index"],
                      summary["wall_s"], {k: v for k, v in summary.items() if k not in known | derived})


def _record_from_row(row: dict[str, str]) -> FrameRecord:
    return FrameRecord(int(row["step"]), float(row["time_fs"]), float(row["energy_eV"]),
                       float(row["max_force_eV_per_A"]), int(row["max_force_atom"]), int(row["scf_steps"]),
                       float(row["temperature_K"]), int(row["domain_violations"]), row["domain_kinds"], row["status"])


__all__ = ["CSV_COLUMNS", "FrameRecord", "Trajectory", "read_trajectory", "write_trajectory"]
