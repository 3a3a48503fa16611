"""IR absorption from the total dipole along MD (linear response, classical trajectories).

``I(ν̃) = β · 4c ∫₀^∞ ⟨Ḋ(0)·Ḋ(t)⟩ w(t) cos ωt dt × f_Q(ν̃)`` (e²/amu)/cm⁻¹, Ḋ (e·Å/fs) either the
exact rate ``Σ_I Z*_I·v_I`` (Born charges times velocities, no wrapping or polarization quantum)
or differences of an unwrapped dipole series (then divided by the difference filter sinc²(ωΔt/2),
exact below the Nyquist wavenumber 1/(2cΔt)). β = 1/k_B T, w a window, f_Q the quantum correction
factor (:mod:`fpscf.md_spectra.quantum`, 1 for ``harmonic``).

Units, chosen so that MD and harmonic spectra compare directly: I(ν̃) is the harmonic ``ir_intensity``
(e²/amu, |∂D/∂Q|²) per cm⁻¹. With the harmonic correction its integral is the classical sum rule
``∫₀^∞ I dν̃ = β⟨|Ḋ|²⟩``, which for a harmonic system with a linear dipole is ``Σ_k |∂D/∂Q_k|²``, so each
band's area equals the harmonic intensity of its modes at every temperature. ``× 974.88``
(:data:`fpscf.units.IR_INTENSITY_KM_PER_MOL`) gives the integrated molar absorption coefficient in
(km/mol)/cm⁻¹ (per mole of simulated systems), and ``× 1e5/(N_A V)`` the absorption coefficient
times refractive index α(ν̃)n(ν̃) in cm⁻¹ of a cell of volume V cm³. That last form is the textbook
``α n = β/(3 ε0 V c) ∫ ⟨Ḋ(0)·Ḋ(t)⟩ cos ωt dt`` (e.g. McQuarrie, Statistical Mechanics, ch. 21).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fpscf.md_spectra.correlation import (
    SpectrumInputError,
    as_series_list,
    band_integral,
    difference_filter,
    rate_spectral_density,
    rates_from_samples,
)
from fpscf.md_spectra.quantum import quantum_correction
from fpscf.units import AVOGADRO, BOLTZMANN, EV_PER_AMU_A2_PER_FS2, IR_INTENSITY_KM_PER_MOL


@dataclass(frozen=True)
class IRSpectrum:
    """IR absorption on a wavenumber grid (formulas and units in the module docstring).

    wavenumbers (K,) cm⁻¹; intensity (K,) (e²/amu)/cm⁻¹ and its block standard error (None with
    one block); volume Å³ (None: no absorption coefficient); sum_rule β⟨|Ḋ|²⟩ e²/amu; the settings
    used (temperature K, quantum correction, window, correlation length fs, sample spacing fs,
    samples, dipole source ``"rate"`` or ``"differences"``).
    """

    wavenumbers: np.ndarray
    intensity: np.ndarray
    intensity_error: np.ndarray | None
    volume: float | None
    sum_rule: float
    temperature: float
    quantum_correction: str
    window: str
    correlation_fs: float
    timestep_fs: float
    n_samples: int
    n_blocks: int
    source: str

    @property
    def km_per_mol(self) -> np.ndarray:
        """Integrated molar absorption coefficient density (K,) (km/mol)/cm⁻¹."""
        return self.intensity * IR_INTENSITY_KM_PER_MOL

    @property
    def absorption_coefficient(self) -> np.ndarray | None:
        """α(ν̃)n(ν̃) (K,) cm⁻¹ of the cell (None without a volume)."""
        if self.volume is None:
            return None
        return self.km_per_mol * 1e5 / (AVOGADRO * self.volume * 1e-24)

    def band(self, low: float, high: float) -> float:
        """Integrated intensity of the band [low, high] cm⁻¹, e²/amu (compare with harmonic ``ir_intensity``)."""
        return band_integral(self.wavenumbers, self.intensity, low, high)


def dipole_rate_from_born_charges(born_effective_charges: np.ndarray, velocities: np.ndarray) -> np.ndarray:
    """``Ḋ_a = Σ_{I,b} Z*_{I,ab} v_{I,b}`` (T, 3) e·Å/fs from Z* (T, N, 3, 3) e and velocities (T, N, 3) Å/fs."""
    return np.einsum("tIab,tIb->ta", np.asarray(born_effective_charges, float), np.asarray(velocities, float))


def ir_spectrum(
    timestep_fs: float,
    temperature: float,
    dipole: np.ndarray | Sequence[np.ndarray] | None = None,
    dipole_rate: np.ndarray | Sequence[np.ndarray] | None = None,
    volume: float | None = None,
    wavenumbers: np.ndarray | None = None,
    correlation_fs: float = 1000.0,
    window: str = "hann",
    quantum: str = "harmonic",
    n_blocks: int = 1,
) -> IRSpectrum:
    """IR spectrum from one or several dipole series (T, 3) e·Å, or dipole rates (T, 3) e·Å/fs, every
    ``timestep_fs``; ``temperature`` K of the ensemble. Give exactly one of ``dipole`` and ``dipole_rate``
    (the dipole must be unwrapped: continuous in time). Default grid 0–4500 cm⁻¹ in steps of 2."""
    if (dipole is None) == (dipole_rate is None):
        raise SpectrumInputError("give either dipole (e·Å) or dipole_rate (e·Å/fs) series, not both or neither")
    if not temperature > 0:
        raise SpectrumInputError(f"the temperature must be positive (K), got {temperature}")
    if volume is not None and not volume > 0:
        raise SpectrumInputError(f"the cell volume must be positive (Å^3), got {volume}")
    grid = np.arange(0.0, 4500.0 + 1e-9, 2.0) if wavenumbers is None else np.asarray(wavenumbers, float)
    if dipole is not None:
        series = as_series_list(dipole, "dipole")
        rates, source = rates_from_samples(series, timestep_fs), "differences"
    else:
        rates, source = as_series_list(dipole_rate, "dipole rate"), "rate"
    for item in rates:
        if item.shape[1:] != (3,):
            raise SpectrumInputError(f"dipole series must have shape (T, 3); got {item.shape}")
    density = rate_spectral_density(rates, timestep_fs, grid, correlation_fs, window, n_blocks)
    scale = EV_PER_AMU_A2_PER_FS2 / (BOLTZMANN * temperature)  # (e·Å/fs)²/eV -> e²/amu
    factor = quantum_correction(grid, temperature, quantum)
    if source == "differences":
        factor = factor / difference_filter(grid, timestep_fs)
    return IRSpectrum(
        wavenumbers=grid,
        intensity=density.values * scale * factor,
        intensity_error=None if density.error is None else density.error * scale * factor,
        volume=volume,
        sum_rule=density.mean_square * scale,
        temperature=float(temperature),
        quantum_correction=quantum,
        window=window,
        correlation_fs=density.max_lag_fs,
        timestep_fs=float(timestep_fs),
        n_samples=sum(len(item) for item in rates),
        n_blocks=density.n_blocks,
        source=source,
    )
