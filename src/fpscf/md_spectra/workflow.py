"""From time series to every spectrum they allow: IR (dipole), Raman (α), and for periodic cells the
static permittivity and ε(ω). One settings object, one result object; files in :mod:`.files`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fpscf.md_spectra.correlation import SpectrumInputError
from fpscf.md_spectra.dielectric import DielectricFunction, StaticPermittivity, dielectric_function, static_permittivity
from fpscf.md_spectra.ir import IRSpectrum, ir_spectrum
from fpscf.md_spectra.raman import RamanSpectrum, raman_spectrum
from fpscf.md_spectra.readers import TimeSeries


@dataclass(frozen=True)
class MDSpectraSettings:
    """temperature K (None: the series' kinetic temperature); grid 0..max_wavenumber every
    wavenumber_step cm⁻¹; correlation_fs the longest lag (fs); window ``hann``|``none``; quantum
    ``harmonic``|``standard``|``classical``; n_blocks for error bars (1: none); laser_wavelength_nm for
    the Raman prefactor; epsilon_infinity (number) overriding the series' ε∞ (periodic cells)."""

    temperature: float | None = None
    max_wavenumber: float = 4500.0
    wavenumber_step: float = 2.0
    correlation_fs: float = 1000.0
    window: str = "hann"
    quantum: str = "harmonic"
    n_blocks: int = 4
    laser_wavelength_nm: float = 532.0
    epsilon_infinity: float | None = None

    def grid(self) -> np.ndarray:
        """Wavenumbers (K,) cm⁻¹."""
        if not (self.max_wavenumber > 0 and 0 < self.wavenumber_step < self.max_wavenumber):
            raise SpectrumInputError(f"need 0 < wavenumber step < max wavenumber (cm^-1), got {self.wavenumber_step} "
                                     f"and {self.max_wavenumber}")
        return np.arange(0.0, self.max_wavenumber + 1e-9, self.wavenumber_step)


@dataclass(frozen=True)
class MDSpectra:
    """The spectra one series allows (None where its data are missing) and what they came from."""

    series: TimeSeries
    settings: MDSpectraSettings
    temperature: float
    ir: IRSpectrum | None
    raman: RamanSpectrum | None
    static: StaticPermittivity | None
    dielectric: DielectricFunction | None

    def settings_dict(self) -> dict[str, Any]:
        """The settings as used (temperature resolved)."""
        return {**asdict(self.settings), "temperature": self.temperature}


def _temperature(series: TimeSeries, settings: MDSpectraSettings) -> float:
    if settings.temperature is not None:
        return float(settings.temperature)
    if series.kinetic_temperature is None:
        raise SpectrumInputError("give the temperature (--temperature K): the series has no velocities to measure it")
    return series.kinetic_temperature


def integrated_dipole(rates: Any, timestep_fs: float) -> list[np.ndarray]:
    """The unwrapped dipole change ``∫₀^t Ḋ dt'`` (T, 3) e·Å of each rate series (T, 3) e·Å/fs (trapezoid rule):
    with Ḋ = Σ Z*·v, the polarization change that no wrapping or quantum enters (its constant cancels in ε₀)."""
    items = [np.asarray(rates, float)] if isinstance(rates, np.ndarray) else [np.asarray(r, float) for r in rates]
    return [np.concatenate([np.zeros((1, 3)), np.cumsum(0.5 * (r[1:] + r[:-1]) * timestep_fs, axis=0)]) for r in items]


def compute_md_spectra(series: TimeSeries, settings: MDSpectraSettings | None = None) -> MDSpectra:
    """IR from the dipole (or its rate), Raman from α, and for a cell with a volume the static permittivity
    (from the unwrapped dipole, or the integrated rate) and ε(ω) (ε∞ from the settings, the series, or 1)."""
    settings = settings or MDSpectraSettings()
    temperature = _temperature(series, settings)
    grid = settings.grid()
    common = dict(correlation_fs=settings.correlation_fs, window=settings.window)
    if series.dipole is None and series.dipole_rate is None and series.polarizability is None:
        raise SpectrumInputError(f"{series.source}: no dipole, dipole rate or polarizability to make a spectrum from "
                                 "(evaluate them with --model, or dump the dipole in LAMMPS)")
    ir = None
    if series.dipole is not None or series.dipole_rate is not None:
        source = {"dipole_rate": series.dipole_rate} if series.dipole_rate is not None else {"dipole": series.dipole}
        ir = ir_spectrum(series.timestep_fs, temperature, volume=series.volume, wavenumbers=grid,
                         quantum=settings.quantum, n_blocks=settings.n_blocks, **source, **common)
    raman = None
    if series.polarizability is not None:
        raman = raman_spectrum(series.timestep_fs * series.polarizability_stride, temperature, series.polarizability,
                               laser_wavelength_nm=settings.laser_wavelength_nm, wavenumbers=grid,
                               quantum=settings.quantum, n_blocks=settings.n_blocks, **common)
    static = dielectric = None
    if series.volume is not None and (series.dipole is not None or series.dipole_rate is not None):
        infinity = settings.epsilon_infinity if settings.epsilon_infinity is not None else (
            series.epsilon_infinity if series.epsilon_infinity is not None else 1.0)
        dipole = series.dipole if series.dipole is not None else integrated_dipole(series.dipole_rate, series.timestep_fs)
        static = static_permittivity(dipole, series.volume, temperature, infinity, settings.n_blocks)
        source = {"dipole_rate": series.dipole_rate} if series.dipole_rate is not None else {"dipole": series.dipole}
        dielectric = dielectric_function(series.timestep_fs, temperature, series.volume, grid[grid > 0],
                                         epsilon_infinity=infinity, **source, **common)
    return MDSpectra(series, settings, temperature, ir, raman, static, dielectric)
