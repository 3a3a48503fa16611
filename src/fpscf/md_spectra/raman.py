"""Raman spectra from the polarizability along MD: isotropic, anisotropic, VV and VH.

α(t) (e·Å²/V, converted to Å³ with k_e = 1/(4π ε0)) every Δt fs is split into its mean
``a = tr α/3`` and traceless part ``β = α − a·1``. From the rates ȧ, β̇ (differences, divided by the
difference filter sinc²(ωΔt/2)) and :func:`fpscf.md_spectra.correlation.rate_spectral_density`:

- ``isotropic(ν̃) = β_T 4c ∫ ⟨ȧ(0) ȧ(t)⟩ w cos ωt dt``
- ``anisotropic(ν̃) = VH(ν̃) = β_T 4c ∫ (1/10) ⟨Σ_ab β̇_ab(0) β̇_ab(t)⟩ w cos ωt dt``
- ``VV = isotropic + (4/3) VH``; ``activity = 45 (VV + VH) = 45 isotropic + 105 VH``

in Å⁴/amu per cm⁻¹ (β_T = 1/k_B T, harmonic quantum correction built in, times the factor of another
choice). These are the orientational averages of the harmonic formulas (``⟨α'_zz²⟩ = a'² + 4γ'²/45``,
``⟨α'_zx²⟩ = γ'²/15``, γ'² = (3/2) Σ β'_ab²): for a harmonic system with a linear α, the area of a
band of ``activity`` is the harmonic Raman activity 45a'² + 7γ'² of its modes, of VH/VV the
depolarisation ratio 3γ'²/(45a'² + 4γ'²). The measured Stokes intensity is the spectrum times
:func:`fpscf.md_spectra.quantum.raman_prefactor` ``(ν̃_L − ν̃)⁴/ν̃ · (n + 1)`` for a laser wavelength
and temperature (returned normalised: relative units).
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
from fpscf.md_spectra.quantum import quantum_correction, raman_prefactor
from fpscf.units import BOLTZMANN, COULOMB_CONSTANT, EV_PER_AMU_A2_PER_FS2


@dataclass(frozen=True)
class RamanSpectrum:
    """Raman spectra on a wavenumber grid (formulas in the module docstring).

    wavenumbers (K,) cm⁻¹; isotropic, vh (= anisotropic) (K,) Å⁴/amu per cm⁻¹ with block standard
    errors (None with one block); laser_wavelength_nm; the settings used.
    """

    wavenumbers: np.ndarray
    isotropic: np.ndarray
    vh: np.ndarray
    isotropic_error: np.ndarray | None
    vh_error: np.ndarray | None
    temperature: float
    laser_wavelength_nm: float
    quantum_correction: str
    window: str
    correlation_fs: float
    timestep_fs: float
    n_samples: int
    n_blocks: int

    @property
    def vv(self) -> np.ndarray:
        """Polarised spectrum VV = isotropic + (4/3) VH (K,) Å⁴/amu per cm⁻¹."""
        return self.isotropic + 4.0 / 3.0 * self.vh

    @property
    def activity(self) -> np.ndarray:
        """45 (VV + VH) (K,) Å⁴/amu per cm⁻¹: band areas compare with harmonic Raman activities."""
        return 45.0 * (self.vv + self.vh)

    def intensity(self, polarisation: str = "total") -> np.ndarray:
        """Stokes intensity (``vv``, ``vh`` or ``total`` = VV + VH) with the laser and Bose prefactors,
        normalised to a maximum of 1 over ν̃ > 0 (relative units; NaN at ν̃ ≤ 0)."""
        spectra = {"vv": self.vv, "vh": self.vh, "total": self.vv + self.vh}
        if polarisation not in spectra:
            raise SpectrumInputError(f"unknown polarisation {polarisation!r}; choose vv, vh or total")
        prefactor = raman_prefactor(self.wavenumbers, self.temperature, self.laser_wavelength_nm)
        total = prefactor * (self.vv + self.vh)
        scale = np.nanmax(total) if np.any(np.isfinite(total)) else 1.0
        return prefactor * spectra[polarisation] / (scale if scale > 0 else 1.0)

    def band(self, low: float, high: float) -> float:
        """Integrated activity of the band [low, high] cm⁻¹, Å⁴/amu (compare with harmonic ``raman_activity``)."""
        return band_integral(self.wavenumbers, self.activity, low, high)


def polarizability_invariant_series(polarizability: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``a`` (T, 1) and traceless part ``β`` (T, 3, 3), Å³, of α (T, 3, 3) e·Å²/V (symmetrised)."""
    alpha = np.asarray(polarizability, float) * COULOMB_CONSTANT
    if alpha.ndim != 3 or alpha.shape[1:] != (3, 3):
        raise SpectrumInputError(f"polarizability series must have shape (T, 3, 3); got {alpha.shape}")
    alpha = 0.5 * (alpha + np.swapaxes(alpha, 1, 2))
    mean = np.trace(alpha, axis1=1, axis2=2) / 3.0
    return mean[:, None], alpha - mean[:, None, None] * np.eye(3)


def raman_spectrum(
    timestep_fs: float,
    temperature: float,
    polarizability: np.ndarray | Sequence[np.ndarray],
    laser_wavelength_nm: float = 532.0,
    wavenumbers: np.ndarray | None = None,
    correlation_fs: float = 1000.0,
    window: str = "hann",
    quantum: str = "harmonic",
    n_blocks: int = 1,
) -> RamanSpectrum:
    """Raman spectra from one or several α series (T, 3, 3) e·Å²/V sampled every ``timestep_fs`` (the
    MD step times the stride of the α evaluations); ``temperature`` K. Default grid 0–4500 cm⁻¹, step 2."""
    if not temperature > 0:
        raise SpectrumInputError(f"the temperature must be positive (K), got {temperature}")
    grid = np.arange(0.0, 4500.0 + 1e-9, 2.0) if wavenumbers is None else np.asarray(wavenumbers, float)
    series = as_series_list(polarizability, "polarizability")
    invariants = [polarizability_invariant_series(item) for item in series]
    mean_rates = rates_from_samples([mean for mean, _ in invariants], timestep_fs)
    traceless_rates = rates_from_samples([traceless for _, traceless in invariants], timestep_fs)
    isotropic = rate_spectral_density(mean_rates, timestep_fs, grid, correlation_fs, window, n_blocks)
    traceless = rate_spectral_density(traceless_rates, timestep_fs, grid, correlation_fs, window, n_blocks)
    scale = EV_PER_AMU_A2_PER_FS2 / (BOLTZMANN * temperature)  # (Å³/fs)²/eV -> Å⁴/amu
    factor = quantum_correction(grid, temperature, quantum) / difference_filter(grid, timestep_fs) * scale
    return RamanSpectrum(
        wavenumbers=grid,
        isotropic=isotropic.values * factor,
        vh=traceless.values * factor / 10.0,
        isotropic_error=None if isotropic.error is None else isotropic.error * factor,
        vh_error=None if traceless.error is None else traceless.error * factor / 10.0,
        temperature=float(temperature),
        laser_wavelength_nm=float(laser_wavelength_nm),
        quantum_correction=quantum,
        window=window,
        correlation_fs=isotropic.max_lag_fs,
        timestep_fs=float(timestep_fs),
        n_samples=sum(len(item) for item in mean_rates),
        n_blocks=isotropic.n_blocks,
    )
