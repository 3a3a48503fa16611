"""Dielectric response of a periodic cell from MD (tin-foil boundary conditions, classical FDT).

Static: ``ε₀_ab = ε∞_ab + β (⟨D_a D_b⟩ − ⟨D_a⟩⟨D_b⟩)/(ε0 V)`` with D the unwrapped cell dipole (e·Å),
V the volume (Å³), β = 1/k_B T, ε0 = 0.0055263494 e/(V·Å) and ε∞ the electronic permittivity of the
model (1 + α/(ε0 V), the calculator's ``dielectric_tensor``). Its error comes from block averaging.

Dynamic (physics convention e^{−iωt}, ε'' ≥ 0 where the system absorbs), from the dipole or its rate:
``ε(ω) = ε∞ + β/(3 ε0 V) [⟨δD²⟩ + iω ∫₀^∞ ⟨δD(0)·δD(t)⟩ e^{iωt} dt] = ε∞ + iβ/(3 ε0 V ω) ∫₀^∞ ⟨Ḋ(0)·Ḋ(t)⟩ e^{iωt} dt``
(two integrations by parts); the second form needs only the rate Ḋ, so wrapping and the polarization
quantum never enter. ``ω ε''(ω)/c`` is the IR absorption α n of :mod:`fpscf.md_spectra.ir`.
The harmonic counterpart (the form Allegro-pol compares with DFPT) is
:func:`harmonic_dielectric_function`: ``ε∞ + (1/(ε0 V)) Σ_k d_k d_kᵀ/(ω_k² − ω² − iγω)``, trace/3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fpscf.md_spectra.correlation import (
    SPEED_OF_LIGHT_CM_PER_FS,
    SpectrumInputError,
    angular_frequency,
    as_series_list,
    autocorrelation,
    difference_filter,
    fourier_laplace,
    rates_from_samples,
    split_blocks,
    window_function,
)
from fpscf.units import BOLTZMANN, EV_PER_AMU_A2_PER_FS2, VACUUM_PERMITTIVITY


@dataclass(frozen=True)
class StaticPermittivity:
    """ε₀ (3,3) and its isotropic mean (trace/3), with block standard errors (None with one block)."""

    tensor: np.ndarray
    isotropic: float
    tensor_error: np.ndarray | None
    isotropic_error: float | None
    epsilon_infinity: np.ndarray
    n_blocks: int


@dataclass(frozen=True)
class DielectricFunction:
    """ε(ν̃) (K,) complex, isotropic (trace/3), on wavenumbers (K,) cm⁻¹ (ν̃ > 0)."""

    wavenumbers: np.ndarray
    epsilon: np.ndarray
    epsilon_infinity: float


def _as_tensor(epsilon_infinity: float | np.ndarray) -> np.ndarray:
    value = np.asarray(epsilon_infinity, float)
    tensor = value * np.eye(3) if value.ndim == 0 else value
    if tensor.shape != (3, 3) or not np.all(np.isfinite(tensor)):
        raise SpectrumInputError(f"epsilon_infinity must be a number or a 3x3 tensor, got shape {value.shape}")
    return tensor


def _fluctuation_term(series: list[np.ndarray], beta_over_volume: float) -> np.ndarray:
    samples = np.concatenate(series, axis=0)
    centred = samples - samples.mean(axis=0)
    covariance = centred.T @ centred / len(samples)
    return beta_over_volume * covariance / VACUUM_PERMITTIVITY


def static_permittivity(
    dipole: np.ndarray | Sequence[np.ndarray],
    volume: float,
    temperature: float,
    epsilon_infinity: float | np.ndarray = 1.0,
    n_blocks: int = 1,
) -> StaticPermittivity:
    """ε₀ from the fluctuations of the unwrapped cell dipole (T, 3) e·Å of one or several series;
    ``volume`` Å³, ``temperature`` K, ``epsilon_infinity`` a number or (3,3). The error is the standard
    error of the block estimates (each block its own mean); the value is from all samples."""
    series = as_series_list(dipole, "dipole")
    if not volume > 0 or not temperature > 0:
        raise SpectrumInputError(f"volume (Å^3) and temperature (K) must be positive, got {volume} and {temperature}")
    infinity = _as_tensor(epsilon_infinity)
    factor = 1.0 / (BOLTZMANN * temperature * volume)
    tensor = infinity + _fluctuation_term(series, factor)
    tensor_error = isotropic_error = None
    if n_blocks > 1:
        estimates = np.array([_fluctuation_term(block, factor) for block in split_blocks(series, n_blocks)])
        tensor_error = estimates.std(axis=0, ddof=1) / np.sqrt(n_blocks)
        traces = np.trace(estimates, axis1=1, axis2=2) / 3.0
        isotropic_error = float(traces.std(ddof=1) / np.sqrt(n_blocks))
    return StaticPermittivity(tensor, float(np.trace(tensor) / 3.0), tensor_error, isotropic_error, infinity, n_blocks)


def _rate_form(rates: list[np.ndarray], dt: float, max_lag: int, window: str, grid: np.ndarray) -> np.ndarray:
    """``(i/ω) ∫₀^tmax ⟨Ḋ(0)·Ḋ(t)⟩ w(t) e^{iωt} dt`` in (e·Å)², rates Ḋ in e·Å/fs and ω in rad/fs."""
    correlation = autocorrelation(rates, max_lag) * window_function(window, max_lag + 1)
    return 1j * fourier_laplace(correlation, dt, grid) / angular_frequency(grid)


def dielectric_function(
    timestep_fs: float,
    temperature: float,
    volume: float,
    wavenumbers: np.ndarray,
    dipole: np.ndarray | Sequence[np.ndarray] | None = None,
    dipole_rate: np.ndarray | Sequence[np.ndarray] | None = None,
    epsilon_infinity: float | np.ndarray = 1.0,
    correlation_fs: float = 1000.0,
    window: str = "hann",
) -> DielectricFunction:
    """Isotropic ε(ν̃) every ``timestep_fs``, ν̃ > 0 cm⁻¹, from dipole rates (T, 3) e·Å/fs (Z*·v: the rate
    form throughout) or from an unwrapped dipole (T, 3) e·Å: below ``10/(c t_max)`` cm⁻¹ the fluctuation
    form (which tends to ε₀ as ω → 0, where the rate form's 1/ω amplifies noise), above it the rate form
    of the dipole's differences divided by the difference filter (where the fluctuation form's
    quadrature error, ∝ (ωΔt)² times the large static term, would show)."""
    if (dipole is None) == (dipole_rate is None):
        raise SpectrumInputError("give either dipole (e·Å) or dipole_rate (e·Å/fs) series, not both or neither")
    grid = np.asarray(wavenumbers, float)
    if np.any(grid <= 0):
        raise SpectrumInputError("ε(ω) needs wavenumbers > 0 (the static value is static_permittivity)")
    if not volume > 0 or not temperature > 0:
        raise SpectrumInputError(f"volume (Å^3) and temperature (K) must be positive, got {volume} and {temperature}")
    series = as_series_list(dipole if dipole is not None else dipole_rate, "dipole" if dipole is not None else "dipole rate")
    max_lag = int(min(round(correlation_fs / timestep_fs), min(len(item) for item in series) // 2 - 1))
    if max_lag < 4:
        raise SpectrumInputError("the dipole series is too short for ε(ω): give a longer trajectory")
    if dipole_rate is not None:
        response = _rate_form(series, timestep_fs, max_lag, window, grid)
    else:
        rates = rates_from_samples(series, timestep_fs)
        response = _rate_form(rates, timestep_fs, max_lag, window, grid) / difference_filter(grid, timestep_fs)
        low = grid < 10.0 / (SPEED_OF_LIGHT_CM_PER_FS * max_lag * timestep_fs)
        if np.any(low):
            mean = np.concatenate(series).mean(axis=0)
            correlation = autocorrelation([item - mean for item in series], max_lag) * window_function(window, max_lag + 1)
            transform = fourier_laplace(correlation, timestep_fs, grid[low])
            response[low] = correlation[0] + 1j * angular_frequency(grid[low]) * transform
    scale = 1.0 / (3.0 * VACUUM_PERMITTIVITY * volume * BOLTZMANN * temperature)
    infinity = float(np.trace(_as_tensor(epsilon_infinity)) / 3.0)
    return DielectricFunction(grid, infinity + scale * response, infinity)


def harmonic_dielectric_function(
    wavenumbers: np.ndarray,
    mode_wavenumbers: np.ndarray,
    dipole_derivatives: np.ndarray,
    volume: float,
    epsilon_infinity: float | np.ndarray,
    width: float = 10.0,
) -> DielectricFunction:
    """Isotropic ε(ν̃) of harmonic modes: frequencies (M,) cm⁻¹, dipole derivatives ∂D/∂Q (M, 3)
    e/√amu (``ModeIntensities.dipole_derivatives``), damping γ = ``width`` cm⁻¹ (FWHM of ε'')."""
    omega = angular_frequency(np.asarray(wavenumbers, float))[:, None]
    modes = angular_frequency(np.asarray(mode_wavenumbers, float))[None, :]
    gamma = angular_frequency(np.asarray(width, float))
    strengths = (np.asarray(dipole_derivatives, float) ** 2).sum(-1) / 3.0  # e²/amu, orientational mean
    lorentz = strengths[None, :] / (modes**2 - omega**2 - 1j * gamma * omega)  # e² fs²/amu
    infinity = float(np.trace(_as_tensor(epsilon_infinity)) / 3.0)
    epsilon = infinity + lorentz.sum(-1) / (VACUUM_PERMITTIVITY * volume * EV_PER_AMU_A2_PER_FS2)
    return DielectricFunction(np.asarray(wavenumbers, float), epsilon, infinity)
