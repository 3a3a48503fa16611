"""The harmonic reference of an MD spectrum: mode frequencies with IR intensities and Raman activities
(from :mod:`fpscf.calculators.spectra` or the ``modes.csv`` of ``fpscf spectra``), and band-by-band
comparison of MD band areas with them (both in e²/amu and Å⁴/amu)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fpscf.md_spectra.correlation import SPEED_OF_LIGHT_CM_PER_FS, SpectrumInputError, angular_frequency, band_integral


@dataclass(frozen=True)
class HarmonicReference:
    """Vibrational modes (M,): frequencies cm⁻¹, ir_intensity e²/amu, raman_activity Å⁴/amu; source."""

    frequencies: np.ndarray
    ir_intensity: np.ndarray
    raman_activity: np.ndarray
    source: str


def from_spectra(spectra: Any, source: str = "fpscf.calculators.spectra") -> HarmonicReference:
    """The real, non-rigid (non-acoustic) modes of a :class:`fpscf.calculators.spectra.Spectra`."""
    keep = (~spectra.modes.rigid) & (spectra.modes.frequencies > 0)
    return HarmonicReference(spectra.modes.frequencies[keep], spectra.intensities.ir_intensity[keep],
                             spectra.intensities.raman_activity[keep], source)


def read_harmonic(path: str | Path) -> HarmonicReference:
    """``modes.csv`` of ``fpscf spectra`` (or the directory holding it): real modes that are not acoustic."""
    path = Path(path)
    path = path / "modes.csv" if path.is_dir() else path
    if not path.is_file():
        raise SpectrumInputError(f"harmonic reference {str(path)!r} does not exist (give the --out of fpscf spectra)")
    with open(path, newline="") as stream:
        rows = [row for row in csv.DictReader(stream)
                if float(row["frequency_cm-1"]) > 0 and row.get("acoustic", "0") in ("0", "")]
    if not rows:
        raise SpectrumInputError(f"{path}: no real vibrational modes")
    column = lambda name: np.array([float(row[name]) for row in rows])  # noqa: E731
    return HarmonicReference(column("frequency_cm-1"), column("ir_intensity"), column("raman_activity"), str(path))


def band_windows(frequencies: np.ndarray, resolution: float, margin: float = 300.0) -> list[tuple[float, float, np.ndarray]]:
    """Bands around the modes: modes closer than ``resolution`` cm⁻¹ share one; edges halfway between
    neighbouring bands, the outer ones ``max(margin, half the gap)`` beyond the first and last mode.
    Returns (low, high, mode indices) per band, in increasing frequency."""
    order = np.argsort(frequencies)
    groups: list[list[int]] = []
    for k in order:
        if groups and frequencies[k] - frequencies[groups[-1][-1]] < resolution:
            groups[-1].append(int(k))
        else:
            groups.append([int(k)])
    centres = [float(np.mean(frequencies[g])) for g in groups]
    edges = [0.5 * (a + b) for a, b in zip(centres[:-1], centres[1:])]
    first_gap = edges[0] - centres[0] if edges else margin
    last_gap = centres[-1] - edges[-1] if edges else margin
    lows = [max(0.0, centres[0] - max(margin, first_gap))] + edges
    highs = edges + [centres[-1] + max(margin, last_gap)]
    return [(low, high, np.array(g)) for low, high, g in zip(lows, highs, groups)]


def compare_bands(wavenumbers: np.ndarray, values: np.ndarray, frequencies: np.ndarray, intensities: np.ndarray,
                  resolution: float) -> list[dict[str, float]]:
    """Per band: its window, the MD peak (cm⁻¹), the harmonic frequency (intensity-weighted mean of its
    modes), the MD area and the harmonic intensity (sum over its modes) and their ratio."""
    rows = []
    upper = float(wavenumbers[-1])
    for low, high, modes in band_windows(frequencies, resolution):
        high = min(high, upper)
        inside = (wavenumbers >= low) & (wavenumbers <= high)
        if inside.sum() < 2:
            continue
        weights = intensities[modes]
        centre = float(np.average(frequencies[modes], weights=weights)) if weights.sum() > 0 else float(frequencies[modes].mean())
        area = band_integral(wavenumbers, values, low, high)
        harmonic = float(weights.sum())
        rows.append({"low_cm-1": low, "high_cm-1": high, "harmonic_cm-1": centre,
                     "md_peak_cm-1": float(wavenumbers[inside][np.argmax(values[inside])]),
                     "md_area": area, "harmonic": harmonic,
                     "ratio": area / harmonic if harmonic > 0 else float("nan")})
    return rows


def resolution(correlation_fs: float) -> float:
    """Full width at half maximum (cm⁻¹) of a line after a Hann window over lags up to ``correlation_fs``:
    ≈ 0.72/(c t_max) (1.44 bins of a Hann window of length 2 t_max)."""
    return 0.72 / (SPEED_OF_LIGHT_CM_PER_FS * correlation_fs)


def verlet_wavenumber(wavenumbers: np.ndarray, timestep_fs: float) -> np.ndarray:
    """Where velocity Verlet with step Δt puts a harmonic line of ν̃ (cm⁻¹): ω' = (2/Δt) arcsin(ωΔt/2),
    a blue shift of 22 cm⁻¹ for the 3878 cm⁻¹ OH stretch at Δt = 0.5 fs (NaN beyond ωΔt = 2, unstable)."""
    half = 0.5 * angular_frequency(np.asarray(wavenumbers, float)) * timestep_fs
    with np.errstate(invalid="ignore"):
        return np.where(half <= 1.0, np.arcsin(np.minimum(half, 1.0)) / half, np.nan) * np.asarray(wavenumbers, float)
