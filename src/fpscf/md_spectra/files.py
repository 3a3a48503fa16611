"""Files of MD spectra, each written atomically: ``spectrum.csv`` (IR and Raman on one grid),
``dielectric.csv`` (periodic cells), ``summary.json`` (settings, units, sum rules, peaks, ε₀, the
band-by-band comparison with a harmonic reference) and ``spectrum.png``."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from fpscf.atomic_files import atomic_write_text
from fpscf.md_spectra.correlation import band_integral
from fpscf.md_spectra.harmonic import HarmonicReference, compare_bands, resolution
from fpscf.md_spectra.plotting import plot_md_spectra
from fpscf.md_spectra.workflow import MDSpectra
from fpscf.units import IR_INTENSITY_KM_PER_MOL

#: Units of every column and value written (also in summary.json).
UNITS = {
    "wavenumber": "cm^-1",
    "ir_intensity": "(e^2/amu)/cm^-1: the harmonic ir_intensity |dD/dQ|^2 per cm^-1 (band areas compare with it)",
    "ir_km_per_mol": "(km/mol)/cm^-1 (= ir_intensity x %.4f), per mole of simulated systems" % IR_INTENSITY_KM_PER_MOL,
    "ir_absorption_coefficient": "cm^-1: alpha(nu) n(nu) of the cell (periodic cells)",
    "raman_isotropic, raman_vv, raman_vh": "(Angstrom^4/amu)/cm^-1, orientational averages a'^2, a'^2 + 4 gamma'^2/45, gamma'^2/15",
    "raman_activity": "(Angstrom^4/amu)/cm^-1: 45 (VV + VH), band areas compare with the harmonic raman_activity",
    "raman_intensity_vv, raman_intensity_vh": "relative: (nu_L - nu)^4/nu (n + 1) x VV, VH, maximum of their sum = 1",
    "*_error": "standard error of the mean over the blocks",
    "epsilon": "1 (isotropic, physics convention exp(-i omega t): eps'' >= 0 where the system absorbs)",
    "sum_rule": "beta <|dD/dt|^2>, e^2/amu: the integral of ir_intensity over all wavenumbers (harmonic correction)",
}


def _columns(result: MDSpectra) -> dict[str, np.ndarray]:
    ir, raman = result.ir, result.raman
    grid = (ir or raman).wavenumbers
    columns: dict[str, np.ndarray] = {"wavenumber_cm-1": grid}
    if ir is not None:
        columns["ir_intensity"] = ir.intensity
        if ir.intensity_error is not None:
            columns["ir_intensity_error"] = ir.intensity_error
        columns["ir_km_per_mol"] = ir.km_per_mol
        if ir.absorption_coefficient is not None:
            columns["ir_absorption_coefficient_cm-1"] = ir.absorption_coefficient
    if raman is not None:
        columns.update(raman_isotropic=raman.isotropic, raman_vv=raman.vv, raman_vh=raman.vh,
                       raman_activity=raman.activity)
        if raman.isotropic_error is not None:
            columns["raman_isotropic_error"] = raman.isotropic_error
            columns["raman_vh_error"] = raman.vh_error
        columns.update(raman_intensity_vv=raman.intensity("vv"), raman_intensity_vh=raman.intensity("vh"))
    return columns


def _table(columns: dict[str, np.ndarray]) -> str:
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(list(columns))
    for row in zip(*columns.values()):
        writer.writerow([f"{value:.4f}" if k == 0 else f"{value:.8e}" for k, value in enumerate(row)])
    return stream.getvalue()


def _peaks(grid: np.ndarray, values: np.ndarray, fraction: float = 0.05) -> list[float]:
    """Local maxima above ``fraction`` of the largest value (cm⁻¹)."""
    inner = (values[1:-1] > values[:-2]) & (values[1:-1] >= values[2:]) & (values[1:-1] > fraction * np.nanmax(values))
    return [float(x) for x in grid[1:-1][inner]]


def _samples(series: Any) -> int | None:
    if series is None:
        return None
    return int(len(series)) if isinstance(series, np.ndarray) else int(sum(len(item) for item in series))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def summary(result: MDSpectra, harmonic: HarmonicReference | None = None) -> dict[str, Any]:
    """The JSON summary (see the module docstring)."""
    series = result.series
    data: dict[str, Any] = {
        "source": series.source, "sample_interval_fs": series.timestep_fs,
        "dipole_samples": _samples(series.dipole if series.dipole is not None else series.dipole_rate),
        "field_V_per_A": np.asarray(series.field).tolist(), "volume_A3": series.volume,
        "kinetic_temperature_K": series.kinetic_temperature, "settings": result.settings_dict(), "units": UNITS,
    }
    if result.ir is not None:
        ir = result.ir
        data["ir"] = {"source": ir.source, "sum_rule_e2_per_amu": ir.sum_rule, "correlation_fs": ir.correlation_fs,
                      "resolution_cm-1": resolution(ir.correlation_fs), "n_blocks": ir.n_blocks,
                      "total_area_e2_per_amu": float(np.trapezoid(ir.intensity, ir.wavenumbers)),
                      "peaks_cm-1": _peaks(ir.wavenumbers, ir.intensity)}
    if result.raman is not None:
        raman = result.raman
        data["raman"] = {"sample_interval_fs": raman.timestep_fs, "correlation_fs": raman.correlation_fs,
                         "laser_wavelength_nm": raman.laser_wavelength_nm, "n_blocks": raman.n_blocks,
                         "peaks_cm-1": _peaks(raman.wavenumbers, raman.activity)}
    if result.static is not None:
        static = result.static
        data["static_permittivity"] = {
            "isotropic": static.isotropic, "isotropic_error": static.isotropic_error, "tensor": static.tensor.tolist(),
            "epsilon_infinity": static.epsilon_infinity.tolist(), "boundary": "tin-foil (conducting)",
            "dipole": "unwrapped dipole" if series.dipole is not None else "time integral of the dipole rate"}
    if harmonic is not None:
        data["harmonic"] = _comparison(result, harmonic)
    return data


def _comparison(result: MDSpectra, harmonic: HarmonicReference) -> dict[str, Any]:
    out: dict[str, Any] = {"source": harmonic.source, "frequencies_cm-1": harmonic.frequencies.tolist(),
                           "ir_intensity_e2_per_amu": harmonic.ir_intensity.tolist(),
                           "raman_activity_A4_per_amu": harmonic.raman_activity.tolist()}
    for name, spectrum, values, reference in (
        ("ir", result.ir, None if result.ir is None else result.ir.intensity, harmonic.ir_intensity),
        ("raman", result.raman, None if result.raman is None else result.raman.activity, harmonic.raman_activity),
    ):
        if spectrum is None:
            continue
        bands = compare_bands(spectrum.wavenumbers, values, harmonic.frequencies, reference,
                              resolution(spectrum.correlation_fs))
        out[f"{name}_bands"] = bands
        if bands:  # all vibrational bands together (rotational branches can cross the edges between bands)
            low, high = bands[0]["low_cm-1"], bands[-1]["high_cm-1"]
            area = band_integral(spectrum.wavenumbers, values, low, high)
            total = float(sum(band["harmonic"] for band in bands))
            out[f"{name}_vibrations_total"] = {"low_cm-1": low, "high_cm-1": high, "md_area": area, "harmonic": total,
                                               "ratio": area / total if total > 0 else None}
    return out


def write_md_spectra(result: MDSpectra, out: str | Path, harmonic: HarmonicReference | None = None,
                     title: str = "") -> list[Path]:
    """Write the files into directory ``out`` (created); returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    atomic_write_text(out / "spectrum.csv", _table(_columns(result)))
    written.append(out / "spectrum.csv")
    if result.dielectric is not None:
        eps = result.dielectric
        atomic_write_text(out / "dielectric.csv", _table({"wavenumber_cm-1": eps.wavenumbers,
                                                           "epsilon_real": eps.epsilon.real,
                                                           "epsilon_imag": eps.epsilon.imag}))
        written.append(out / "dielectric.csv")
    plot_md_spectra(result, out / "spectrum.png", harmonic, title)
    written.append(out / "spectrum.png")
    data = summary(result, harmonic)
    data["files"] = [path.name for path in written] + ["summary.json"]
    atomic_write_text(out / "summary.json", json.dumps(_clean(data), indent=2, allow_nan=False) + "\n")
    written.append(out / "summary.json")
    return written


def _clean(value: Any) -> Any:
    """NaN and inf as null, numpy scalars as Python numbers (valid JSON)."""
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    if isinstance(value, (np.floating, float)):
        return _finite(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value
