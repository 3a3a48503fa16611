"""Measure the liquid-water MD of md.py the way water models are measured; write summary.json and plots.

Usage:
    python examples/liquid_water/analyse.py [--run examples/liquid_water/md] [--dipole-frames 8]

Reads every phase that exists in the run directory (``<phase>/status.json`` and the files of its
segments; unfinished and failed phases count up to their last thermo row) and writes, atomically,
``RUN/summary.json``:

* per phase: state, simulated ps (and ``failed_at_ps`` with LAMMPS' message for a failure), mean
  temperature (K) and pressure (bar), mean SCF steps per MD step, ms per atom per step from LAMMPS'
  loop times (with the CPU use LAMMPS reports: on a shared machine the time is not the code's
  alone); the total simulated time;
* nve: the drift of the total energy (linear fit, meV/atom/ps) and its standard deviation;
* field phases: the box polarisation along the field, P = D_z/Ω (e/Å², μC/cm²), minus the mean of
  the zero-field nvt, per half of the phase (the orientational response takes picoseconds), and
  the effective permittivity 1 + ΔP/(ε0 ε) that it implies at this (large, saturating) field;
* the O–O radial distribution function of nvt (first peak position and height, beside the
  experiment: 2.80 Å and 2.57, Skinner et al., J. Chem. Phys. 138, 074506 (2013));
* the mean molecular dipole: from the per-atom charges of the dumps (point charges, every frame;
  molecules from each H's nearest O) and, on --dipole-frames frames, with the atomic dipoles the
  Python model gives (the pair style exposes charges and the box dipole, not atomic dipoles);
* the IR spectrum of nvt from the box dipole time series: α(ν̃)n(ν̃) in cm⁻¹ from the
  autocorrelation of dD/dt (Hann window, harmonic quantum correction), with the band maxima of the
  libration (≈650 cm⁻¹), the bend (≈1640) and the OH stretch (≈3400).

The IR spectrum is :func:`fpscf.md_spectra.ir_spectrum` (the tool behind ``fpscf md-spectra``); the
RDF is computed here with numpy.

Plots: ``RUN/thermo.png`` (temperature, total energy and SCF steps against time, per phase),
``RUN/rdf.png`` (g_OO with the experimental peak) and ``RUN/ir.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fpscf.md_spectra import ir_spectrum
from fpscf.units import BOLTZMANN, DEBYE, POLARIZATION_MICROCOULOMB_PER_CM2, SPEED_OF_LIGHT_A_PER_FS, VACUUM_PERMITTIVITY

HERE = Path(__file__).resolve().parent
PHASE_ORDER = ("minimize", "equilibrate", "nvt", "nve")
EXPERIMENT_RDF = {"first_peak_position_A": 2.80, "first_peak_height": 2.57,
                  "reference": "Skinner et al., J. Chem. Phys. 138, 074506 (2013), X-ray diffraction, 295 K"}
IR_BANDS = {"libration": (300.0, 1000.0), "bend": (1400.0, 1900.0), "stretch": (2800.0, 4000.0)}
EXPERIMENT_IR = {"libration": 650.0, "bend": 1640.0, "stretch": 3400.0,
                 "reference": "liquid water at 298 K, e.g. Bertie and Lan, Appl. Spectrosc. 50, 1047 (1996)"}
O_TYPE, H_TYPE = 1, 2
MASS = {O_TYPE: 15.999, H_TYPE: 1.008}


# ---------------------------------------------------------------------------------------------
# reading LAMMPS output
# ---------------------------------------------------------------------------------------------

def read_thermo(log: Path) -> dict[str, np.ndarray]:
    """Thermo columns (name -> values) of the MD run in a LAMMPS log, complete or not.

    Rows are read from the last ``Step`` header to ``Loop time`` or the end of the file; lines that
    are not all numbers with the header's width (warnings, a half-written row) are skipped.
    """
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    headers = [k for k, line in enumerate(lines) if line.split()[:1] == ["Step"]]
    if not headers:
        return {}
    names = lines[headers[-1]].split()
    rows = []
    for line in lines[headers[-1] + 1:]:
        if line.startswith("Loop time"):
            break
        words = line.split()
        if len(words) != len(names):
            continue
        try:
            rows.append([float(word) for word in words])
        except ValueError:
            continue
    table = np.array(rows, dtype=float).reshape(-1, len(names))
    return {name: table[:, k] for k, name in enumerate(names)}


@dataclass(frozen=True)
class LoopTime:
    """LAMMPS' ``Loop time of S on P procs for N steps with A atoms`` and its CPU use (%)."""

    seconds: float
    ranks: int
    steps: int
    atoms: int
    cpu_percent: float | None


def read_loop_time(log: Path) -> LoopTime | None:
    """The last loop time of a LAMMPS log, None for a run that did not finish."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    loops = re.findall(r"Loop time of ([0-9.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms", text)
    if not loops:
        return None
    cpu = re.findall(r"([0-9.]+)% CPU use", text)
    seconds, ranks, steps, atoms = loops[-1]
    return LoopTime(float(seconds), int(ranks), int(steps), int(atoms), float(cpu[-1]) if cpu else None)


def read_dipole_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Steps (T,) and box dipoles (T, 3) e·Å of a ``fix ave/time`` file of md.py."""
    if not path.is_file():
        return np.zeros(0, dtype=int), np.zeros((0, 3))
    rows = [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    rows = [row for row in rows if len(row) == 4]
    table = np.array(rows, dtype=float).reshape(-1, 4)
    return table[:, 0].astype(int), table[:, 1:]


@dataclass(frozen=True)
class Frame:
    """One dump frame: step, orthogonal box edges (3,) Å, atom types (N,), wrapped positions (N, 3) Å,
    charges (N,) e; atoms sorted by id."""

    step: int
    box: np.ndarray
    types: np.ndarray
    positions: np.ndarray
    charges: np.ndarray


def read_dump(path: Path) -> Iterator[Frame]:
    """Frames of a ``dump custom ... id type x y z q`` file (orthogonal box); a truncated last frame is skipped."""
    if not path.is_file():
        return
    lines = path.read_text(errors="replace").splitlines()
    k = 0
    while k + 9 <= len(lines):
        if lines[k] != "ITEM: TIMESTEP":
            raise ValueError(f"{path}: line {k + 1}: expected 'ITEM: TIMESTEP', found {lines[k]!r}")
        step, count = int(lines[k + 1]), int(lines[k + 3])
        if "xy" in lines[k + 4]:
            raise ValueError(f"{path}: triclinic boxes are not supported (md.py writes cubic boxes)")
        bounds = np.array([lines[k + 5 + d].split()[:2] for d in range(3)], dtype=float)
        columns = lines[k + 8].split()[2:]
        body = lines[k + 9: k + 9 + count]
        if len(body) < count:
            return
        table = np.array(" ".join(body).split(), dtype=float).reshape(count, len(columns))
        column = {name: index for index, name in enumerate(columns)}
        order = np.argsort(table[:, column["id"]])
        table = table[order]
        yield Frame(step, bounds[:, 1] - bounds[:, 0], table[:, column["type"]].astype(int),
                    table[:, [column["x"], column["y"], column["z"]]] - bounds[:, 0],
                    table[:, column["q"]] if "q" in column else np.zeros(count))
        k += 9 + count


# ---------------------------------------------------------------------------------------------
# a phase's time series over its segments
# ---------------------------------------------------------------------------------------------

@dataclass
class PhaseData:
    """What a phase left on disk: its status, thermo table, box dipole series and dump file paths."""

    name: str
    status: dict[str, Any]
    thermo: dict[str, np.ndarray]
    dipole_steps: np.ndarray
    dipoles: np.ndarray
    dumps: list[tuple[Path, int]]
    loops: list[LoopTime]

    @property
    def timestep_fs(self) -> float:
        return float(self.status["timestep_fs"])

    @property
    def time_ps(self) -> np.ndarray:
        return self.thermo.get("Step", np.zeros(0)) * self.timestep_fs / 1000.0


def stitch(parts: Sequence[tuple[np.ndarray, np.ndarray]], starts: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Join per-segment (steps, values) series: each segment is cut where the next one starts
    (a segment resumed from a restart file re-runs the steps after that file)."""
    kept_steps, kept_values = [], []
    for k, (steps, values) in enumerate(parts):
        end = starts[k + 1] if k + 1 < len(starts) else math.inf
        keep = (steps < end) & ((steps >= starts[k]) if k > 0 else True)
        kept_steps.append(steps[keep])
        kept_values.append(values[keep])
    if not kept_steps:
        return np.zeros(0, dtype=int), np.zeros((0,))
    return np.concatenate(kept_steps), np.concatenate(kept_values)


def load_phase(directory: Path) -> PhaseData | None:
    """The data of the phase in ``directory`` (None without a status.json)."""
    status_path = directory / "status.json"
    if not status_path.is_file():
        return None
    status = json.loads(status_path.read_text())
    segments = sorted(status.get("segments", []), key=lambda s: s["start_step"])
    starts = [s["start_step"] for s in segments]
    tables = [read_thermo(directory / s["log"]) for s in segments]
    columns = next((list(t) for t in tables if t), [])
    thermo: dict[str, np.ndarray] = {}
    if columns:
        steps = [t.get("Step", np.zeros(0)) for t in tables]
        values = [np.column_stack([t[c] for c in columns]) if t else np.zeros((0, len(columns))) for t in tables]
        joined_steps, joined = stitch(list(zip(steps, values)), starts)
        order = np.argsort(joined_steps, kind="stable")
        thermo = {name: joined.reshape(-1, len(columns))[order, k] for k, name in enumerate(columns)}
    dipole_parts = [read_dipole_file(directory / s["dipole"]) for s in segments if "dipole" in s]
    dipole_steps, dipoles = stitch(dipole_parts, [s["start_step"] for s in segments if "dipole" in s])
    dumps = [(directory / s["dump"], s["start_step"]) for s in segments if "dump" in s]
    loops = [loop for s in segments if (loop := read_loop_time(directory / s["log"])) is not None]
    return PhaseData(directory.name, status, thermo, dipole_steps, dipoles.reshape(-1, 3), dumps, loops)


def phase_frames(phase: PhaseData, every: int = 1) -> list[Frame]:
    """Dump frames of a phase in step order, each step once (later segments win), every ``every``-th."""
    frames: dict[int, Frame] = {}
    starts = [start for _, start in phase.dumps]
    for k, (path, start) in enumerate(phase.dumps):
        end = starts[k + 1] if k + 1 < len(starts) else math.inf
        for frame in read_dump(path):
            if start <= frame.step < end:
                frames[frame.step] = frame
    return [frames[step] for step in sorted(frames)][::every]


# ---------------------------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------------------------

def drift_per_atom(time_ps: np.ndarray, energy: np.ndarray, atoms: int) -> float:
    """Slope of a linear fit of ``energy`` (eV) against ``time_ps``, in meV/atom/ps."""
    return float(np.polyfit(time_ps, energy, 1)[0] / atoms * 1000.0)


def minimum_image(vectors: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Minimum-image vectors (..., 3) Å in an orthogonal box with edges ``box`` (3,) Å."""
    return vectors - box * np.round(vectors / box)


def radial_distribution(positions: Sequence[np.ndarray], boxes: Sequence[np.ndarray], r_max: float,
                        bin_width: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """g(r) of one species: positions per frame (N, 3) Å, orthogonal boxes (3,) Å; r_max ≤ half the
    shortest edge. Returns bin centres (Å) and g, normalised by the ideal-gas pair count of each
    frame (N(N−1)/2 pairs spread over the box volume)."""
    edges = np.arange(0.0, r_max + 0.5 * bin_width, bin_width)
    counts = np.zeros(len(edges) - 1)
    expected = np.zeros(len(edges) - 1)
    shells = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    for x, box in zip(positions, boxes):
        if r_max > 0.5 * float(np.min(box)) + 1e-9:
            raise ValueError(f"r_max {r_max} Å exceeds half the box edge {0.5 * float(np.min(box)):.3f} Å")
        n = len(x)
        i, j = np.triu_indices(n, k=1)
        distances = np.linalg.norm(minimum_image(x[j] - x[i], box), axis=1)
        counts += np.histogram(distances, bins=edges)[0]
        expected += 0.5 * n * (n - 1) * shells / float(np.prod(box))
    return 0.5 * (edges[1:] + edges[:-1]), counts / np.where(expected > 0, expected, 1.0)


def first_peak(r: np.ndarray, g: np.ndarray, window: tuple[float, float] = (2.3, 3.3)) -> tuple[float, float]:
    """Position (Å) and height of the largest g in ``window``, refined by a parabola through the
    largest bin and its neighbours."""
    inside = np.flatnonzero((r >= window[0]) & (r <= window[1]))
    k = int(inside[np.argmax(g[inside])])
    if 0 < k < len(g) - 1:
        a, b, c = g[k - 1], g[k], g[k + 1]
        denominator = a - 2 * b + c
        if denominator < 0:
            shift = 0.5 * (a - c) / denominator
            return float(r[k] + shift * (r[1] - r[0])), float(b - 0.25 * (a - c) * shift)
    return float(r[k]), float(g[k])


def molecules(frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    """Oxygen indices (M,) and, per atom, the index 0..M−1 of its molecule (each H to its nearest O,
    minimum image)."""
    oxygens = np.flatnonzero(frame.types == O_TYPE)
    owner = np.empty(len(frame.types), dtype=int)
    owner[oxygens] = np.arange(len(oxygens))
    hydrogens = np.flatnonzero(frame.types != O_TYPE)
    vectors = minimum_image(frame.positions[oxygens][None] - frame.positions[hydrogens][:, None], frame.box)
    owner[hydrogens] = np.argmin(np.linalg.norm(vectors, axis=-1), axis=1)
    return oxygens, owner


def molecular_dipoles(frame: Frame, atomic_dipoles: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dipoles (M, 3) e·Å of the molecules about their centres of mass and their charges (M,) e:
    Σ_i q_i (r_i − r_com) (whole molecules by minimum image from the O) plus Σ_i d_i if
    ``atomic_dipoles`` (N, 3) e·Å are given."""
    oxygens, owner = molecules(frame)
    relative = minimum_image(frame.positions - frame.positions[oxygens][owner], frame.box)
    masses = np.array([MASS.get(int(t), MASS[H_TYPE]) for t in frame.types])
    count = len(oxygens)
    total_mass = np.bincount(owner, masses, count)
    centre = np.stack([np.bincount(owner, masses * relative[:, d], count) for d in range(3)], 1) / total_mass[:, None]
    about_centre = relative - centre[owner]
    per_atom = frame.charges[:, None] * about_centre + (0.0 if atomic_dipoles is None else atomic_dipoles)
    dipoles = np.stack([np.bincount(owner, per_atom[:, d], count) for d in range(3)], 1)
    return dipoles, np.bincount(owner, frame.charges, count)


def ir_absorption(dipoles: np.ndarray, dt_fs: float, temperature: float, volume: float,
                  correlation_fs: float = 1000.0, n_blocks: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """IR absorption α(ν̃)n(ν̃) (cm⁻¹) of a box from its dipole series ``dipoles`` (T, 3) e·Å every
    ``dt_fs``; ``temperature`` K, ``volume`` Å³: :func:`fpscf.md_spectra.ir_spectrum` (rates by
    differences of the unwrapped dipole, Hann window, harmonic quantum correction, ``n_blocks`` blocks
    for the standard error). Returns (wavenumbers cm⁻¹, α n cm⁻¹, its standard error or None)."""
    max_lag_fs = (len(dipoles) - 2) // 2 * dt_fs
    blocks = n_blocks if len(dipoles) // n_blocks * dt_fs >= 2 * min(correlation_fs, max_lag_fs) else 1
    spectrum = ir_spectrum(dt_fs, temperature, dipole=dipoles, volume=volume,
                           correlation_fs=min(correlation_fs, max_lag_fs), n_blocks=blocks)
    absorption = spectrum.absorption_coefficient
    error = None
    if spectrum.intensity_error is not None:
        error = spectrum.intensity_error * absorption / np.where(spectrum.intensity == 0, 1.0, spectrum.intensity)
    return spectrum.wavenumbers, absorption, error


def band_maxima(wavenumbers: np.ndarray, spectrum: np.ndarray,
                windows: dict[str, tuple[float, float]] = IR_BANDS) -> dict[str, float | None]:
    """Wavenumber of the maximum of ``spectrum`` in each window (None if the window is empty)."""
    maxima: dict[str, float | None] = {}
    for name, (low, high) in windows.items():
        inside = np.flatnonzero((wavenumbers >= low) & (wavenumbers <= high))
        maxima[name] = float(wavenumbers[inside[np.argmax(spectrum[inside])]]) if len(inside) else None
    return maxima


# ---------------------------------------------------------------------------------------------
# per-phase summaries
# ---------------------------------------------------------------------------------------------

def simulated_ps(phase: PhaseData) -> float:
    """Time the phase covered: the last thermo step (or the steps done) times the time step
    (0 for the minimizer, whose steps are iterations)."""
    if phase.status.get("ensemble") == "minimize":
        return 0.0
    steps = phase.thermo.get("Step")
    last = float(steps[-1]) if steps is not None and len(steps) else 0.0
    return max(last, float(phase.status.get("steps_done", 0))) * phase.timestep_fs / 1000.0


def timing(loops: Sequence[LoopTime]) -> dict[str, Any]:
    """ms per atom per MD step over the completed segments, with LAMMPS' CPU use."""
    steps = sum(loop.steps for loop in loops)
    if not steps:
        return {"ms_per_atom_step": None}
    seconds = sum(loop.seconds for loop in loops)
    cpu = [loop.cpu_percent for loop in loops if loop.cpu_percent is not None]
    return {"ms_per_atom_step": 1000.0 * seconds / steps / loops[0].atoms, "seconds_per_step": seconds / steps,
            "timed_steps": steps, "ranks": loops[0].ranks, "cpu_use_percent": float(np.mean(cpu)) if cpu else None}


def phase_summary(phase: PhaseData) -> dict[str, Any]:
    """State, length, failure, means and timing of one phase."""
    status = phase.status
    summary: dict[str, Any] = {
        "state": status["state"], "ensemble": status.get("ensemble"), "field_V_per_A": status.get("field_V_per_A"),
        "target_ps": status.get("target_ps"), "simulated_ps": simulated_ps(phase),
        "segments": len(status.get("segments", [])),
    }
    if status["state"] == "failed":
        summary.update(failed_at_ps=status.get("failed_at_ps"), message=status.get("message"))
    if len(phase.thermo.get("Step", [])):
        summary.update(
            thermo_rows=int(len(phase.thermo["Step"])),
            mean_temperature_K=float(np.mean(phase.thermo["Temp"])),
            mean_pressure_bar=float(np.mean(phase.thermo["Press"])),
            mean_scf_steps=float(np.mean(phase.thermo["c_extra[5]"])),
            max_scf_steps=int(np.max(phase.thermo["c_extra[5]"])),
        )
    if status.get("ensemble") == "minimize":
        steps = phase.thermo.get("Step", np.zeros(0))
        summary["iterations"] = int(steps[-1]) if len(steps) else 0
        if len(steps):
            summary["energy_change_eV"] = float(phase.thermo["PotEng"][-1] - phase.thermo["PotEng"][0])
    else:
        summary.update(timing(phase.loops))
    return summary


def nve_summary(phase: PhaseData, atoms: int) -> dict[str, Any]:
    """Drift (linear fit of etotal, meV/atom/ps) and fluctuation of the NVE total energy."""
    time_ps, total = phase.time_ps, phase.thermo.get("TotEng", np.zeros(0))
    if len(total) < 3:
        return {"drift_meV_per_atom_per_ps": None, "note": "fewer than 3 thermo rows"}
    return {"drift_meV_per_atom_per_ps": drift_per_atom(time_ps, total, atoms),
            "total_energy_std_meV_per_atom": float(np.std(total) / atoms * 1000.0),
            "fit_over_ps": float(time_ps[-1] - time_ps[0])}


def polarisation_summary(phase: PhaseData, reference: PhaseData | None) -> dict[str, Any]:
    """Box polarisation along the field (z) in a field phase, against the zero-field nvt mean."""
    field = float(phase.status["field_V_per_A"][2])
    volume = float(np.mean(phase.thermo["Volume"]))
    dz = phase.dipoles[:, 2]
    if len(dz) < 2:
        return {"note": "no dipole samples"}
    zero = float(np.mean(reference.dipoles[:, 2])) if reference is not None and len(reference.dipoles) else 0.0
    halves = [dz[: len(dz) // 2], dz[len(dz) // 2:]]
    polarisation = [float((np.mean(h) - zero) / volume) for h in halves]
    result = {
        "field_V_per_A": field, "volume_A3": volume, "zero_field_mean_Dz_eA": zero,
        "mean_Dz_eA": float(np.mean(dz)), "start_Dz_eA": float(dz[0]),
        "delta_P_z_e_per_A2_halves": polarisation,
        "delta_P_z_uC_per_cm2_halves": [p * POLARIZATION_MICROCOULOMB_PER_CM2 for p in polarisation],
        "reference": "P = (⟨D_z⟩ − ⟨D_z⟩ of nvt)/Ω over the first and the second half of the phase",
    }
    if field:
        result["effective_permittivity_halves"] = [1.0 + p / (VACUUM_PERMITTIVITY * field) for p in polarisation]
        result["permittivity_note"] = ("1 + ΔP/(ε0 ε) at this field; water's static ε ≈ 78 is the weak-field limit, "
                                       "a field of 0.05 V/Å saturates the orientational response")
    return result


def rdf_summary(phase: PhaseData, bin_width: float = 0.02) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray] | None]:
    """O–O g(r) over the phase's frames: first peak beside experiment."""
    frames = phase_frames(phase)
    if not frames:
        return {"phase": phase.name, "frames": 0, "note": "no dump frames"}, None
    oxygens = [f.positions[f.types == O_TYPE] for f in frames]
    boxes = [f.box for f in frames]
    r_max = 0.5 * min(float(np.min(b)) for b in boxes)
    r, g = radial_distribution(oxygens, boxes, r_max, bin_width)
    summary: dict[str, Any] = {"phase": phase.name, "frames": len(frames), "r_max_A": r_max, "bin_A": bin_width,
                               "experiment": EXPERIMENT_RDF}
    if r_max > 3.3:
        position, height = first_peak(r, g)
        summary.update(first_peak_position_A=position, first_peak_height=height)
    return summary, (r, g)


def dipole_summary(phase: PhaseData, model: Path | None, frames_with_model: int) -> dict[str, Any]:
    """Mean molecular dipole: point charges over every frame; with the model's atomic dipoles on a few."""
    frames = phase_frames(phase)
    if not frames:
        return {"phase": phase.name, "frames": 0, "note": "no dump frames"}
    magnitudes, charges = [], []
    for frame in frames:
        dipoles, molecule_charges = molecular_dipoles(frame)
        magnitudes.append(np.linalg.norm(dipoles, axis=1))
        charges.append(np.abs(molecule_charges))
    summary: dict[str, Any] = {
        "phase": phase.name, "frames": len(frames),
        "point_charge_mean_D": float(np.mean(magnitudes) / DEBYE),
        "point_charge_std_D": float(np.std(np.concatenate(magnitudes)) / DEBYE),
        "mean_abs_molecular_charge_e": float(np.mean(charges)),
        "definition": "|Σ_i q_i (r_i − r_com)| per molecule (each H to its nearest O); point_charge_* uses the "
                      "dumped charges only; with_atomic_dipoles_* adds the model's atomic dipoles Σ_i d_i (the "
                      "density dipole, which for a model that is not variational in the field differs by a few % "
                      "from −∂E/∂ε: water-b3lyp, one molecule: 1.78 vs 1.86 D)",
        "context": "gas-phase water 1.855 D; liquid ≈ 2.9–3.0 D in ab initio MD (Silvestrelli and Parrinello, "
                   "Phys. Rev. Lett. 82, 3308 (1999))",
    }
    if model is not None and frames_with_model > 0:
        picked = [frames[k] for k in np.linspace(0, len(frames) - 1, min(frames_with_model, len(frames))).astype(int)]
        field = np.asarray(phase.status.get("field_V_per_A", [0.0, 0.0, 0.0]), float)
        full = [np.linalg.norm(molecular_dipoles(f, atomic_dipoles_from_model(model, f, field))[0], axis=1)
                for f in picked]
        summary.update(with_atomic_dipoles_mean_D=float(np.mean(full) / DEBYE),
                       with_atomic_dipoles_frames=len(picked), model=str(model))
    return summary


def atomic_dipoles_from_model(model: Path, frame: Frame, field: np.ndarray) -> np.ndarray:
    """Atomic dipoles (N, 3) e·Å of a frame from the Python model (FixedPointCalculator)."""
    from ase import Atoms

    from fpscf import FixedPointCalculator

    numbers = np.where(frame.types == O_TYPE, 8, 1)
    atoms = Atoms(numbers=numbers, positions=frame.positions, cell=np.diag(frame.box), pbc=True)
    atoms.calc = FixedPointCalculator(str(model), electric_field=field)
    multipoles = atoms.calc.get_property("atomic_multipoles", atoms)
    if multipoles.shape[1] < 4:
        return np.zeros((len(atoms), 3))
    return np.asarray(multipoles[:, 1:4])


def ir_summary(phase: PhaseData, temperature: float, correlation_fs: float) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray] | None]:
    """IR spectrum of a phase from its box dipole series, with the band maxima."""
    steps, dipoles = phase.dipole_steps, phase.dipoles
    if len(steps) < 8:
        return {"phase": phase.name, "note": f"{len(steps)} dipole samples: too few for a spectrum"}, None
    spacing = np.diff(steps)
    if np.any(spacing != spacing[0]):
        raise ValueError(f"{phase.name}: dipole samples are not evenly spaced (steps {sorted(set(spacing.tolist()))})")
    dt_fs = float(spacing[0]) * phase.timestep_fs
    volume = float(np.mean(phase.thermo["Volume"]))
    wavenumbers, absorption, _ = ir_absorption(dipoles, dt_fs, temperature, volume, correlation_fs)
    used_fs = min(correlation_fs, (len(dipoles) - 2) // 2 * dt_fs)
    summary = {
        "phase": phase.name, "samples": int(len(steps)), "sample_fs": dt_fs, "series_ps": float(len(steps) * dt_fs / 1000),
        "correlation_fs": used_fs, "resolution_cm-1": 1.0 / (2 * SPEED_OF_LIGHT_A_PER_FS * used_fs * 1e-8),
        "band_maxima_cm-1": band_maxima(wavenumbers, absorption),
        "peak_absorption_cm-1": {name: float(np.max(absorption[(wavenumbers >= lo) & (wavenumbers <= hi)]))
                                 for name, (lo, hi) in IR_BANDS.items()},
        "experiment_cm-1": EXPERIMENT_IR,
        "method": "α n = β/(3 ε0 Ω c) ∫ ⟨Ḋ(0)·Ḋ(t)⟩ w(t) cos ωt dt (harmonic quantum correction), Hann window; "
                  "fpscf.md_spectra.ir_spectrum",
    }
    return summary, (wavenumbers, absorption)


# ---------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------

def phase_offsets(phases: dict[str, PhaseData]) -> dict[str, float]:
    """Start time (ps) of each phase on a common axis: a phase starts where its source ended."""
    offsets: dict[str, float] = {}

    def offset(name: str) -> float:
        if name not in offsets:
            status = phases[name].status
            started = status.get("started_from") or {}
            source = status.get("source")
            if source in phases and started:
                offsets[name] = offset(source) + started.get("source_steps_done", 0) * phases[name].timestep_fs / 1000.0
            else:
                offsets[name] = 0.0
        return offsets[name]

    for name in phases:
        offset(name)
    return offsets


def plot_thermo(phases: dict[str, PhaseData], atoms: int, path: Path) -> None:
    """Temperature, total energy per atom and SCF steps against time, one colour per phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    offsets = phase_offsets(phases)
    figure, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    for k, (name, phase) in enumerate(phases.items()):
        if phase.status.get("ensemble") == "minimize" or not len(phase.thermo.get("Step", [])):
            continue
        time_ps = phase.time_ps + offsets[name]
        colour = f"C{k % 10}"
        axes[0].plot(time_ps, phase.thermo["Temp"], color=colour, lw=0.8, label=name)
        axes[1].plot(time_ps, phase.thermo["TotEng"] / atoms, color=colour, lw=0.8)
        axes[2].plot(time_ps, phase.thermo["c_extra[5]"], color=colour, lw=0.8)
        if phase.status["state"] == "failed":
            for axis in axes:
                axis.axvline(time_ps[-1], color=colour, ls=":", lw=1)
    axes[0].set_ylabel("T (K)")
    axes[1].set_ylabel("E_total (eV/atom)")
    axes[2].set_ylabel("SCF steps")
    axes[2].set_xlabel("time (ps); nve and field phases start at the end of nvt; dotted: failure")
    axes[0].legend(fontsize=8, ncol=3)
    axes[0].set_title(f"liquid water, {atoms} atoms: thermo per phase", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_rdf(r: np.ndarray, g: np.ndarray, summary: dict[str, Any], path: Path) -> None:
    """g_OO with the experimental first peak marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(r, g, lw=1, label=f"model, {summary['phase']} ({summary['frames']} frames)")
    axis.plot([EXPERIMENT_RDF["first_peak_position_A"]], [EXPERIMENT_RDF["first_peak_height"]], "kx", ms=9,
              label="experiment, first peak (Skinner 2013)")
    if "first_peak_position_A" in summary:
        axis.plot([summary["first_peak_position_A"]], [summary["first_peak_height"]], "o", mfc="none", color="C0",
                  label=f"model peak {summary['first_peak_position_A']:.2f} Å, {summary['first_peak_height']:.2f}")
    axis.axhline(1.0, color="grey", lw=0.5)
    axis.set_xlabel("r (Å)")
    axis.set_ylabel("g_OO(r)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_ir(wavenumbers: np.ndarray, absorption: np.ndarray, summary: dict[str, Any], path: Path) -> None:
    """α n against wavenumber with the band maxima and the experimental band positions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(wavenumbers, absorption, lw=1, label=f"model, {summary['phase']} ({summary['series_ps']:.2f} ps)")
    for name, position in summary["band_maxima_cm-1"].items():
        if position is not None:
            axis.axvline(position, color="C0", ls="--", lw=0.6)
        axis.axvline(EXPERIMENT_IR[name], color="k", ls=":", lw=0.8)
    axis.plot([], [], "k:", label="experiment: 650, 1640, 3400 cm⁻¹")
    axis.plot([], [], "C0--", label="model band maxima")
    axis.set_xlabel("wavenumber (cm⁻¹)")
    axis.set_ylabel("α(ν̃) n(ν̃) (cm⁻¹)")
    axis.set_xlim(0, float(wavenumbers[-1]))
    axis.set_ylim(bottom=min(0.0, float(absorption.min())))
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------

def load_phases(run: Path) -> dict[str, PhaseData]:
    """Every phase with a status.json, in run order (minimize, equilibrate, nvt, nve, fields)."""
    found = {d.name: p for d in sorted(run.iterdir()) if d.is_dir() and (p := load_phase(d)) is not None}
    order = [name for name in PHASE_ORDER if name in found] + sorted(n for n in found if n not in PHASE_ORDER)
    return {name: found[name] for name in order}


def pick_phase(phases: dict[str, PhaseData], preferred: str, has: str) -> PhaseData | None:
    """``preferred`` if it has data of kind ``has`` ("dumps" or "dipoles"), else the MD phase with most."""
    def size(phase: PhaseData) -> int:
        return len(phase.dipole_steps) if has == "dipoles" else sum(p.is_file() for p, _ in phase.dumps)

    if preferred in phases and size(phases[preferred]) > 0:
        return phases[preferred]
    candidates = [p for p in phases.values() if p.status.get("ensemble") != "minimize" and size(p) > 0]
    return max(candidates, key=lambda p: len(p.dipole_steps)) if candidates else None


def data_note(phase: PhaseData, preferred: str) -> str | None:
    """Why a measurement is not from ``preferred`` or comes from a failed phase (None: nothing to say)."""
    notes = []
    if phase.name != preferred:
        notes.append(f"{preferred} has no data yet: measured on {phase.name}")
    if phase.status["state"] == "failed":
        notes.append(f"{phase.name} failed at {phase.status.get('failed_at_ps')} ps: its last samples approach the failure")
    return "; ".join(notes) or None


def summarise(run: Path, dipole_frames: int, correlation_fs: float, plots: bool = True) -> dict[str, Any]:
    """Everything in summary.json (and the plots) for the run directory ``run``."""
    settings = json.loads((run / "run.json").read_text())
    atoms, temperature = int(settings["atoms"]), float(settings["temperature"])
    phases = load_phases(run)
    summary: dict[str, Any] = {"run": settings, "phases": {name: phase_summary(p) for name, p in phases.items()}}
    summary["simulated_ps_total"] = sum(s["simulated_ps"] for s in summary["phases"].values())
    if "nve" in phases:
        summary["phases"]["nve"].update(nve_summary(phases["nve"], atoms))
    for name, phase in phases.items():
        if name.startswith("field_") and len(phase.thermo.get("Step", [])):
            summary["phases"][name]["polarisation"] = polarisation_summary(phase, phases.get("nvt"))
    structural = pick_phase(phases, "nvt", "dumps")
    if structural is not None:
        summary["rdf_OO"], rdf = rdf_summary(structural)
        summary["rdf_OO"]["data_note"] = data_note(structural, "nvt")
        model = run / "work" / "model.fpscf"
        summary["molecular_dipole"] = dipole_summary(structural, model if model.is_file() else None, dipole_frames)
        if plots and rdf is not None:
            plot_rdf(*rdf, summary["rdf_OO"], run / "rdf.png")
    spectral = pick_phase(phases, "nvt", "dipoles")
    if spectral is not None:
        summary["ir"], ir = ir_summary(spectral, temperature, correlation_fs)
        summary["ir"]["data_note"] = data_note(spectral, "nvt")
        if plots and ir is not None:
            plot_ir(*ir, summary["ir"], run / "ir.png")
    if plots and phases:
        plot_thermo(phases, atoms, run / "thermo.png")
    summary["spectra_tools"] = ("fpscf has no MD-spectra tool (no fpscf.spectra module, no fpscf md-spectra): "
                                "RDF, IR and dipoles are computed in examples/liquid_water/analyse.py with numpy")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=HERE / "md", help="run directory of md.py")
    parser.add_argument("--dipole-frames", type=int, default=8,
                        help="frames on which the Python model gives atomic dipoles (0: charges only)")
    parser.add_argument("--correlation-fs", type=float, default=1000.0, help="IR: longest lag of the correlation")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    if not (args.run / "run.json").is_file():
        raise SystemExit(f"analyse.py: error: {args.run} has no run.json; run md.py first")
    summary = summarise(args.run, args.dipole_frames, args.correlation_fs, plots=not args.no_plots)

    from fpscf.atomic_files import atomic_write_text

    atomic_write_text(args.run / "summary.json", json.dumps(summary, indent=1, default=float) + "\n")
    for name, phase in summary["phases"].items():
        line = f"{name:12s} {phase['state']:12s} {phase['simulated_ps']:8.3f} ps"
        for key, fmt in (("mean_temperature_K", "T {:.0f} K"), ("mean_scf_steps", "SCF {:.1f}"),
                         ("ms_per_atom_step", "{:.2f} ms/atom/step"), ("drift_meV_per_atom_per_ps", "drift {:.3f} meV/atom/ps")):
            if phase.get(key) is not None:
                line += "  " + fmt.format(phase[key])
        if phase["state"] == "failed":
            line += f"  FAILED at {phase.get('failed_at_ps')} ps: {phase.get('message')}"
        print(line)
    print(f"total {summary['simulated_ps_total']:.3f} ps; written {args.run / 'summary.json'}")


if __name__ == "__main__":
    main()
