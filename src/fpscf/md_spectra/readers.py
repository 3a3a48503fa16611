"""Read MD output into time series for spectra: ASE trajectories and extended XYZ, and the dipole file
that LAMMPS writes with ``compute pair fpscf`` and ``fix ave/time`` (docs/md_spectra.md).

A :class:`TimeSeries` holds what the spectra need, each on its own sampling: the cell dipole every
``timestep_fs`` (unwrapped: continuous in time), or its rate; the polarizability every
``polarizability_stride`` dipole samples; the cell volume (periodic), the field the MD ran in, and the
frames themselves when they were read (for :mod:`fpscf.md_spectra.evaluate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fpscf.md_spectra.correlation import SpectrumInputError
from fpscf.units import BOLTZMANN

LAMMPS_DIPOLE_FORMAT = "lammps-dipole"
ASE_FORMAT = "ase"


@dataclass(frozen=True)
class TimeSeries:
    """Series along one MD run.

    timestep_fs: time between dipole samples (fs); dipole (T, 3) e·Å or None; dipole_rate (T, 3)
    e·Å/fs or None; polarizability (T', 3, 3) e·Å²/V every ``polarizability_stride`` dipole samples
    or None; volume Å³ (periodic cells) or None; field (3,) V/Å; kinetic_temperature K (from the
    frames' velocities over 3N − 3 degrees of freedom) or None; epsilon_infinity (3, 3) (mean of the
    model's ε∞ along the frames) or None; frames (ASE Atoms, one per dipole sample) or empty; source.
    dipole, dipole_rate and polarizability may also be lists of such arrays (independent runs, which
    are then the blocks of the error bars).
    """

    timestep_fs: float
    dipole: np.ndarray | list[np.ndarray] | None = None
    dipole_rate: np.ndarray | list[np.ndarray] | None = None
    polarizability: np.ndarray | list[np.ndarray] | None = None
    polarizability_stride: int = 1
    volume: float | None = None
    field: np.ndarray = dataclass_field(default_factory=lambda: np.zeros(3))
    kinetic_temperature: float | None = None
    epsilon_infinity: np.ndarray | None = None
    frames: list[Any] = dataclass_field(default_factory=list)
    source: str = ""

    def with_values(self, **changes: Any) -> "TimeSeries":
        """A copy with some fields replaced."""
        return replace(self, **changes)


def read_lammps_dipole(paths: str | Path | Sequence[str | Path], timestep_fs: float,
                       volume: float | None = None, columns: tuple[int, int, int] = (1, 2, 3)) -> TimeSeries:
    """The dipole file(s) of ``fix ave/time N 1 N c_ID[1] c_ID[2] c_ID[3] file PATH`` (``compute ID all
    pair fpscf``): rows ``step Dx Dy Dz`` e·Å, ``#`` comments; several files (segments of one run) are
    joined by step, and a step written twice (a restart) keeps its last row. ``timestep_fs`` is
    LAMMPS' ``timestep`` in fs (units metal: ps × 1000); the sample spacing is that times the step
    interval, which must be uniform. ``volume`` (Å³) of a periodic box enables the dielectric output."""
    files = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    tables = []
    for path in files:
        if not path.is_file():
            raise SpectrumInputError(f"LAMMPS dipole file {str(path)!r} does not exist")
        try:
            tables.append(np.loadtxt(path, comments="#", ndmin=2))
        except ValueError as error:
            raise SpectrumInputError(f"{path}: not a fix ave/time table of numbers ({error})") from None
        if tables[-1].shape[1] < max(columns) + 1:
            raise SpectrumInputError(f"{path}: expected a step column and dipole columns {columns}, "
                                     f"found {tables[-1].shape[1]} columns")
    table = np.concatenate(tables, axis=0)
    steps = table[:, 0].astype(np.int64)
    _, last = np.unique(steps[::-1], return_index=True)
    keep = len(steps) - 1 - last  # the last row of each step, in increasing step order
    steps, table = steps[keep], table[keep]
    spacing = np.diff(steps)
    if len(steps) < 8 or np.any(spacing != spacing[0]) or spacing[0] <= 0:
        raise SpectrumInputError(f"{', '.join(map(str, files))}: the dipole must be sampled at least 8 times at a "
                                 f"uniform step interval (found {len(steps)} rows, intervals "
                                 f"{sorted(set(spacing.tolist()))[:5]})")
    if not timestep_fs > 0:
        raise SpectrumInputError(f"the MD time step must be positive (fs), got {timestep_fs}")
    if volume is not None and not volume > 0:
        raise SpectrumInputError(f"the box volume must be positive (Å^3), got {volume}")
    return TimeSeries(timestep_fs=float(timestep_fs * spacing[0]), dipole=table[:, list(columns)], volume=volume,
                      source=f"{', '.join(map(str, files))} (LAMMPS dipole, steps {steps[0]}-{steps[-1]})")


def _frame_dipole(atoms: Any) -> np.ndarray | None:
    results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
    for value in (results.get("dipole"), atoms.info.get("dipole")):
        if value is not None:
            return np.asarray(value, float).reshape(3)
    return None


def _frame_polarizability(atoms: Any) -> np.ndarray | None:
    results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
    for value in (results.get("polarizability"), atoms.info.get("polarizability")):
        if value is not None:
            return np.asarray(value, float).reshape(3, 3)
    return None


def kinetic_temperature(frames: list[Any]) -> float | None:
    """Mean kinetic temperature (K) of frames with velocities, over 3N − 3 degrees of freedom."""
    energies = [atoms.get_kinetic_energy() for atoms in frames if atoms.get_velocities() is not None]
    if not energies or not np.any(energies) or len(frames[0]) < 2:
        return None
    return float(2.0 * np.mean(energies) / ((3 * len(frames[0]) - 3) * BOLTZMANN))


def _timestep_from_info(frames: list[Any]) -> float | None:
    times = [atoms.info.get("time") for atoms in frames[:2]]
    if len(times) == 2 and all(isinstance(t, (int, float)) for t in times) and times[1] > times[0]:
        return float(times[1] - times[0])
    return None


def read_ase(path: str | Path, timestep_fs: float | None = None, frame_interval: int = 1, index: str = ":") -> TimeSeries:
    """Frames of an ASE trajectory (``.traj``) or extended XYZ, one per sample. The dipole (e·Å) comes
    from each frame's calculator results or ``info['dipole']``, α (e·Å²/V) from results or
    ``info['polarizability']`` when every frame has it; the field from ``info['external_field']``.
    The time between frames is ``timestep_fs`` (the MD step) × ``frame_interval`` (steps between saved
    frames); without ``timestep_fs``, the difference of the first two ``info['time']`` (fs)."""
    import ase.io

    path = Path(path)
    if not path.is_file():
        raise SpectrumInputError(f"trajectory {str(path)!r} does not exist")
    try:
        frames = ase.io.read(path, index=index)
    except Exception as error:  # ASE raises many types for unreadable files
        raise SpectrumInputError(f"cannot read {str(path)!r} with ASE: {error or type(error).__name__}") from None
    frames = frames if isinstance(frames, list) else [frames]
    if len(frames) < 8:
        raise SpectrumInputError(f"{path}: {len(frames)} frames are too few for a spectrum (need at least 8)")
    step = timestep_fs * frame_interval if timestep_fs is not None else _timestep_from_info(frames)
    if step is None or not step > 0:
        raise SpectrumInputError(f"{path}: give the MD time step (--timestep, fs) and the steps between frames "
                                 "(--frame-interval); the frames carry no info['time']")
    dipoles = [_frame_dipole(atoms) for atoms in frames]
    alphas = [_frame_polarizability(atoms) for atoms in frames]
    periodic = bool(frames[0].pbc.all())
    return TimeSeries(
        timestep_fs=float(step),
        dipole=np.array(dipoles) if all(d is not None for d in dipoles) else None,
        polarizability=np.array(alphas) if all(a is not None for a in alphas) else None,
        volume=float(frames[0].get_volume()) if periodic else None,
        field=np.asarray(frames[0].info.get("external_field", np.zeros(3)), float).reshape(3),
        kinetic_temperature=kinetic_temperature(frames),
        frames=frames,
        source=f"{path} (ASE, {len(frames)} frames)",
    )


def read_series(paths: str | Path | Sequence[str | Path], fmt: str | None = None, timestep_fs: float | None = None,
                frame_interval: int = 1, volume: float | None = None) -> TimeSeries:
    """:func:`read_lammps_dipole` for ``fmt="lammps-dipole"`` (or files whose first line is a
    ``fix ave/time`` header), else :func:`read_ase` (one file)."""
    files = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if fmt is None:
        head = files[0].read_text(errors="replace")[:200] if files[0].is_file() else ""
        fmt = LAMMPS_DIPOLE_FORMAT if head.startswith("# Time-averaged data") else ASE_FORMAT
    if fmt == LAMMPS_DIPOLE_FORMAT:
        if timestep_fs is None:
            raise SpectrumInputError("a LAMMPS dipole file needs the MD time step: --timestep FS (LAMMPS timestep "
                                     "x 1000 in units metal)")
        return read_lammps_dipole(files, timestep_fs, volume)
    if fmt == ASE_FORMAT:
        if len(files) != 1:
            raise SpectrumInputError(f"give one ASE trajectory (got {len(files)} files)")
        series = read_ase(files[0], timestep_fs, frame_interval)
        return series if volume is None else series.with_values(volume=volume)
    raise SpectrumInputError(f"unknown trajectory format {fmt!r}; choose {ASE_FORMAT} or {LAMMPS_DIPOLE_FORMAT}")
