"""Time correlation functions, windows and their transforms: the numerics every MD spectrum shares.

Conventions: a series is an array (T, ...) sampled every ``dt`` fs; its components (the trailing
axes) are summed in a correlation, ``C(t) = ⟨x(0)·x(t)⟩``, averaged over all time origins (and
over the series given, weighted by their number of origins). Transforms run over t ≥ 0 with the
trapezoid rule; wavenumbers ν̃ are in cm⁻¹ and ω = 2π c ν̃ in rad/fs.

The spectral density of a rate ẋ (:func:`rate_spectral_density`) is normalised so that its integral
over ν̃ from 0 to ∞ is ``⟨ẋ·ẋ⟩``: ``S(ν̃) = 4 c ∫₀^∞ ⟨ẋ(0)·ẋ(t)⟩ w(t) cos(ωt) dt`` (c in cm/fs).
For x = Σ_k x'_k Q_k (harmonic modes, Q mass-weighted) the classical ``β⟨ẋ·ẋ⟩ = Σ_k |x'_k|²``,
which is how MD band areas compare with harmonic intensities (:mod:`fpscf.md_spectra.ir`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fpscf.errors import FpscfError
from fpscf.units import SPEED_OF_LIGHT_A_PER_FS

#: Speed of light in cm/fs.
SPEED_OF_LIGHT_CM_PER_FS: float = SPEED_OF_LIGHT_A_PER_FS * 1e-8
WINDOWS = ("hann", "none")


class SpectrumInputError(FpscfError, ValueError):
    """A time series or an option an MD spectrum cannot use (the message says what to change)."""


def angular_frequency(wavenumbers: np.ndarray) -> np.ndarray:
    """ω = 2π c ν̃ in rad/fs from ν̃ (cm⁻¹)."""
    return 2.0 * np.pi * SPEED_OF_LIGHT_CM_PER_FS * np.asarray(wavenumbers, float)


def as_series_list(series: np.ndarray | Sequence[np.ndarray], name: str) -> list[np.ndarray]:
    """One series (T, ...) or several (each (T_i, ...), same trailing shape) as a list of float arrays."""
    items = [np.asarray(series, float)] if isinstance(series, np.ndarray) else [np.asarray(s, float) for s in series]
    if not items:
        raise SpectrumInputError(f"no {name} series given")
    shape = items[0].shape[1:]
    for item in items:
        if item.ndim < 1 or item.shape[1:] != shape:
            raise SpectrumInputError(f"{name} series must all have shape (T, {', '.join(map(str, shape))}); "
                                     f"got {item.shape}")
        if not np.all(np.isfinite(item)):
            raise SpectrumInputError(f"the {name} series has non-finite values (NaN or inf): check the trajectory")
    return items


def autocorrelation_sums(x: np.ndarray, max_lag: int) -> np.ndarray:
    """``Σ_origins x(t0)·x(t0+t)`` for lags 0..max_lag (FFT, zero-padded, components summed); x (T, ...)."""
    n = len(x)
    flat = x.reshape(n, -1)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    transform = np.fft.rfft(flat, n=size, axis=0)
    sums = np.fft.irfft((transform * transform.conj()).real, n=size, axis=0)[: max_lag + 1].sum(axis=1)
    return sums


def autocorrelation(series: np.ndarray | Sequence[np.ndarray], max_lag: int) -> np.ndarray:
    """``⟨x(0)·x(t)⟩`` (max_lag + 1,) averaged over all origins of all series (each at least max_lag + 1 long)."""
    items = as_series_list(series, "correlation")
    if min(len(item) for item in items) <= max_lag:
        raise SpectrumInputError(f"a series of {min(len(i) for i in items)} samples is too short for "
                                 f"{max_lag} lags: shorten the correlation time or give longer series")
    sums = sum(autocorrelation_sums(item, max_lag) for item in items)
    origins = sum(len(item) - np.arange(max_lag + 1) for item in items)
    return sums / origins


def window_function(name: str, n: int) -> np.ndarray:
    """Window w(t) over lags 0..n−1: ``hann`` = cos²(π t/2t_max) (1 at t = 0, 0 at t_max), ``none`` = 1."""
    if name == "hann":
        return np.cos(0.5 * np.pi * np.arange(n) / max(n - 1, 1)) ** 2
    if name == "none":
        return np.ones(n)
    raise SpectrumInputError(f"unknown window {name!r}; choose one of {', '.join(WINDOWS)}")


def fourier_laplace(correlation: np.ndarray, dt: float, wavenumbers: np.ndarray) -> np.ndarray:
    """``∫₀^{t_max} C(t) e^{iωt} dt`` (complex, trapezoid rule) at ν̃ = ``wavenumbers`` cm⁻¹; C sampled every dt fs."""
    weights = np.asarray(correlation, float) * dt
    weights[0] *= 0.5
    weights[-1] *= 0.5
    lags = np.arange(len(weights)) * dt
    return np.exp(1j * np.outer(angular_frequency(wavenumbers), lags)) @ weights


def difference_filter(wavenumbers: np.ndarray, dt: float) -> np.ndarray:
    """``sinc²(ω dt/2)``: how much a rate from differences of samples dt fs apart attenuates the
    spectral density at ν̃ (cm⁻¹); dividing by it restores the derivative's spectrum below Nyquist."""
    half = 0.5 * angular_frequency(wavenumbers) * dt
    return np.sinc(half / np.pi) ** 2


def rates_from_samples(series: Sequence[np.ndarray], dt: float) -> list[np.ndarray]:
    """Rates ``(x(t+dt) − x(t))/dt`` (T−1, ...) of each series (units of x per fs)."""
    return [np.diff(item, axis=0) / dt for item in series]


@dataclass(frozen=True)
class SpectralDensity:
    """``S(ν̃)`` of a rate on a wavenumber grid, with its block standard error.

    wavenumbers (K,) cm⁻¹; values and error (K,) in (unit of ẋ)²/cm⁻¹; error is None with one
    block; mean_square = ⟨ẋ·ẋ⟩ over all samples (the integral of S over all ν̃); max_lag_fs the
    correlation length used; n_blocks the number of independent blocks behind ``error``.
    """

    wavenumbers: np.ndarray
    values: np.ndarray
    error: np.ndarray | None
    mean_square: float
    max_lag_fs: float
    n_blocks: int


def _density(rates: list[np.ndarray], dt: float, max_lag: int, window: str, wavenumbers: np.ndarray) -> np.ndarray:
    correlation = autocorrelation(rates, max_lag) * window_function(window, max_lag + 1)
    return 4.0 * SPEED_OF_LIGHT_CM_PER_FS * fourier_laplace(correlation, dt, wavenumbers).real


def split_blocks(series: list[np.ndarray], n_blocks: int) -> list[list[np.ndarray]]:
    """n_blocks groups of samples: the series themselves when there are n_blocks of them, else each
    series cut into n_blocks consecutive pieces (piece j of every series in block j)."""
    if len(series) == n_blocks:
        return [[item] for item in series]
    blocks: list[list[np.ndarray]] = [[] for _ in range(n_blocks)]
    for item in series:
        for j, piece in enumerate(np.array_split(item, n_blocks)):
            blocks[j].append(piece)
    return blocks


def rate_spectral_density(
    rates: np.ndarray | Sequence[np.ndarray],
    dt: float,
    wavenumbers: np.ndarray,
    correlation_fs: float,
    window: str = "hann",
    n_blocks: int = 1,
) -> SpectralDensity:
    """``S(ν̃) = 4c ∫₀^{t_max} ⟨ẋ(0)·ẋ(t)⟩ w(t) cos ωt dt`` of rates ẋ (T, ...) sampled every dt fs.

    t_max = ``correlation_fs`` (cut to half the shortest block). With ``n_blocks`` > 1 the series
    (or, for one series, its consecutive blocks) give independent estimates; ``values`` is their
    mean and ``error`` the standard error of the mean (std/√n). The resolution is about
    1/(c t_max) cm⁻¹ (Hann window: ≈ 2/(c t_max) full width at half maximum).
    """
    items = as_series_list(rates, "rate")
    if dt <= 0:
        raise SpectrumInputError(f"the time step must be positive (fs), got {dt}")
    if n_blocks < 1:
        raise SpectrumInputError(f"n_blocks must be at least 1, got {n_blocks}")
    blocks = split_blocks(items, n_blocks) if n_blocks > 1 else [items]
    shortest = min(len(piece) for block in blocks for piece in block)
    max_lag = int(min(round(correlation_fs / dt), shortest // 2))
    if max_lag < 4:
        raise SpectrumInputError(f"blocks of {shortest} samples are too short for a spectrum: use fewer blocks, "
                                 "longer trajectories or a smaller time between samples")
    wavenumbers = np.asarray(wavenumbers, float)
    estimates = np.array([_density(block, dt, max_lag, window, wavenumbers) for block in blocks])
    values = estimates.mean(axis=0)
    error = estimates.std(axis=0, ddof=1) / np.sqrt(n_blocks) if n_blocks > 1 else None
    total = sum(float((item.reshape(len(item), -1) ** 2).sum()) for item in items)
    mean_square = total / sum(len(item) for item in items)
    return SpectralDensity(wavenumbers, values, error, mean_square, max_lag * dt, n_blocks)


def band_integral(wavenumbers: np.ndarray, values: np.ndarray, low: float, high: float) -> float:
    """``∫_low^high values dν̃`` (trapezoid over the grid points inside [low, high] cm⁻¹)."""
    inside = (wavenumbers >= low) & (wavenumbers <= high)
    if inside.sum() < 2:
        raise SpectrumInputError(f"the band {low}-{high} cm^-1 holds fewer than two grid points")
    return float(np.trapezoid(values[inside], wavenumbers[inside]))
