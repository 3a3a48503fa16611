"""Thermal factors of spectra from classical (or path-integral) MD: quantum corrections, Bose
factor and the Raman frequency prefactor.

With x = h c ν̃/(k_B T), a quantum correction factor Q(x) estimates the quantum correlation
spectrum from the classical one, ``Ĉ_q(ω) ≈ Q(x) Ĉ_cl(ω)``. The spectra of
:mod:`fpscf.md_spectra.correlation` are written with the harmonic choice built in
(``β ω² Ĉ_cl``, so band areas equal harmonic intensities); :func:`quantum_correction` gives the
factor that turns them into another choice:

- ``harmonic``: Q = x/(1 − e^{−x}) (exact for a harmonic system with a linear dipole or α; exact for
  the Kubo-transformed correlations of TRPMD or centroid MD), factor 1;
- ``standard`` (Schofield): Q = e^{x/2}, factor 2 sinh(x/2)/x;
- ``classical``: Q = 1, factor (1 − e^{−x})/x.
"""

from __future__ import annotations

import numpy as np

from fpscf.md_spectra.correlation import SpectrumInputError
from fpscf.units import BOLTZMANN, EV_PER_WAVENUMBER

QUANTUM_CORRECTIONS = ("harmonic", "standard", "classical")


def reduced_frequency(wavenumbers: np.ndarray, temperature: float) -> np.ndarray:
    """x = h c ν̃/(k_B T) (dimensionless) for ν̃ in cm⁻¹ and T in K."""
    if not temperature > 0:
        raise SpectrumInputError(f"the temperature must be positive (K), got {temperature}")
    return np.asarray(wavenumbers, float) * EV_PER_WAVENUMBER / (BOLTZMANN * temperature)


def quantum_correction(wavenumbers: np.ndarray, temperature: float, kind: str = "harmonic") -> np.ndarray:
    """Factor (K,) that turns a harmonic-corrected spectrum into the ``kind`` correction (1 at ν̃ = 0)."""
    x = reduced_frequency(wavenumbers, temperature)
    safe = np.where(x > 1e-12, x, 1.0)
    if kind == "harmonic":
        return np.ones_like(x)
    if kind == "standard":
        return np.where(x > 1e-12, 2.0 * np.sinh(0.5 * safe) / safe, 1.0)
    if kind == "classical":
        return np.where(x > 1e-12, -np.expm1(-safe) / safe, 1.0)
    raise SpectrumInputError(f"unknown quantum correction {kind!r}; choose one of {', '.join(QUANTUM_CORRECTIONS)}")


def bose_stokes_factor(wavenumbers: np.ndarray, temperature: float) -> np.ndarray:
    """``n(ν̃) + 1 = 1/(1 − e^{−x})`` of Stokes scattering (NaN at ν̃ ≤ 0)."""
    x = reduced_frequency(wavenumbers, temperature)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, -1.0 / np.expm1(-np.where(x > 0, x, 1.0)), np.nan)


def raman_prefactor(wavenumbers: np.ndarray, temperature: float, laser_wavelength_nm: float) -> np.ndarray:
    """``(ν̃_L − ν̃)⁴/ν̃ · (n + 1)`` in cm⁻³ for Stokes lines at ν̃ (cm⁻¹), laser ν̃_L = 1e7/λ_L (nm).

    Times a Raman activity (Å⁴/amu) it is proportional to the differential cross-section of the line
    (the harmonic formula, e.g. Porezag and Pederson, Phys. Rev. B 54, 7830 (1996)); NaN at ν̃ ≤ 0.
    """
    if not laser_wavelength_nm > 0:
        raise SpectrumInputError(f"the laser wavelength must be positive (nm), got {laser_wavelength_nm}")
    wavenumbers = np.asarray(wavenumbers, float)
    laser = 1e7 / laser_wavelength_nm
    with np.errstate(divide="ignore", invalid="ignore"):
        prefactor = np.where(wavenumbers > 0, (laser - wavenumbers) ** 4 / wavenumbers, np.nan)
    return prefactor * bose_stokes_factor(wavenumbers, temperature)
