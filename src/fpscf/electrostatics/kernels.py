"""Radial kernels of the Coulomb interaction between Gaussian densities.

Two normalised Gaussians of standard deviations σ_a and σ_b interact through
``Φ_s(R) = k_e erf(R / (√2 s)) / R`` with ``s² = σ_a² + σ_b²``. Multipole interactions need its
Cartesian derivatives, which follow from the radial functions ``B_n = (−(1/R) d/dR)^n Φ_s``:
``B_n(R) = k_e 2^{n+1}/√π α^{2n+1} F_n(α² R²)``, ``α = 1/(√2 s)``, with ``F_n`` the Boys function.
All functions are smooth (twice differentiable) at R = 0 and written in plain torch.
"""

from __future__ import annotations

import math

import torch

_SERIES_THRESHOLD = 1.0
_SERIES_TERMS = 30


def _boys_series(x: torch.Tensor, max_order: int) -> torch.Tensor:
    """Taylor series ``F_n(x) = Σ_j (−x)^j / (j! (2j + 2n + 1))`` (accurate for x < 1), (..., n+1)."""
    orders = []
    for n in range(max_order + 1):
        total = torch.zeros_like(x)
        power = torch.ones_like(x)
        for j in range(30):  # _SERIES_TERMS
            total = total + power / (2 * j + 2 * n + 1)
            power = power * (-x) / (j + 1)
        orders.append(total)
    return torch.stack(orders, dim=-1)


def _boys_recursion(x: torch.Tensor, max_order: int) -> torch.Tensor:
    """``F_0 = √π erf(√x)/(2√x)``, ``F_n = ((2n−1) F_{n−1} − e^{−x})/(2x)`` (stable for x ≥ 1)."""
    sqrt_x = torch.sqrt(x)
    exp_x = torch.exp(-x)
    orders = [0.5 * math.sqrt(math.pi) * torch.erf(sqrt_x) / sqrt_x]
    for n in range(1, max_order + 1):
        orders.append(((2 * n - 1) * orders[-1] - exp_x) / (2.0 * x))
    return torch.stack(orders, dim=-1)


def boys_function(x: torch.Tensor, max_order: int) -> torch.Tensor:
    """Boys functions ``F_n(x) = ∫_0^1 t^{2n} exp(−x t²) dt`` for n = 0..max_order.

    x: (...) ≥ 0. Returns (..., max_order + 1). Upward recursion for x ≥ 1, Taylor series below,
    the series evaluated only on the entries that need it. Both branches see safe inputs, so
    gradients (of any order) are finite everywhere, including x = 0.
    """
    small = x < 1.0  # _SERIES_THRESHOLD (a literal: TorchScript reads no module globals)
    result = _boys_recursion(torch.where(small, torch.ones_like(x), x), max_order)
    if bool(small.any()):
        flat_small = small.reshape(-1)
        index = flat_small.nonzero().squeeze(-1)
        series = _boys_series(x.reshape(-1)[index], max_order)
        result = result.reshape(-1, max_order + 1).index_copy(0, index, series).reshape(result.shape)
    return result


def smeared_coulomb_radial_functions(
    distance_squared: torch.Tensor, width: torch.Tensor, max_order: int, coulomb_constant: float
) -> torch.Tensor:
    """Radial functions ``B_n(R)`` (eV·Å^{-1-2n} per e²) of the Gaussian-smeared Coulomb kernel.

    distance_squared: (...) Å²; width: s (...) broadcastable, Å. Returns (..., max_order + 1).
    """
    alpha = 1.0 / (math.sqrt(2.0) * width)
    boys = boys_function(alpha * alpha * distance_squared, max_order)
    orders = torch.arange(max_order + 1, dtype=distance_squared.dtype, device=distance_squared.device)
    prefactor = (
        coulomb_constant
        * (2.0 ** (orders + 1))
        / math.sqrt(math.pi)
        * alpha.unsqueeze(-1) ** (2 * orders + 1)
    )
    return prefactor * boys


def self_radial_functions(width: torch.Tensor, max_order: int, coulomb_constant: float) -> torch.Tensor:
    """``B_n(0) = k_e 2^{n+1} α^{2n+1} / (√π (2n+1))`` for widths s (...). Returns (..., max_order+1)."""
    alpha = 1.0 / (math.sqrt(2.0) * width)
    orders = torch.arange(max_order + 1, dtype=width.dtype, device=width.device)
    return (
        coulomb_constant
        * 2.0 ** (orders + 1)
        / math.sqrt(math.pi)
        * alpha.unsqueeze(-1) ** (2 * orders + 1)
        / (2 * orders + 1)
    )
