"""Radial basis of the edges: Bessel functions times a smooth polynomial cutoff envelope."""

import math

import torch
from torch import Tensor


#: Sharpness (1/Å) of the clamp of edge lengths at the core radius.
CORE_SOFTNESS = 20.0


def core_clamped(lengths: Tensor, core_radius: float, softness: float = CORE_SOFTNESS) -> Tensor:
    """Edge lengths seen by the learnt radial functions, Å: ``r_c + softplus(β (r − r_c))/β``.

    Equal to r (to ``e^{−β(r − r_c)}/β``) above the core radius r_c and flat at r_c below it, with
    every derivative continuous; ``core_radius = 0`` returns ``lengths`` unchanged.
    """
    if core_radius <= 0.0:
        return lengths
    return core_radius + torch.nn.functional.softplus(lengths - core_radius, beta=softness)


class BesselBasis(torch.nn.Module):
    """``sqrt(2/r_max) sin(n pi r / r_max) / r`` for ``n = 1..num_basis``.

    ``r``: ``(E, 1)`` edge lengths in Å -> ``(E, num_basis)`` in Å^-3/2.
    """

    r_max: float
    prefactor: float

    def __init__(self, r_max: float, num_basis: int = 8) -> None:
        super().__init__()
        if r_max <= 0.0 or num_basis < 1:
            raise ValueError(
                f"BesselBasis(r_max={r_max}, num_basis={num_basis}): expected r_max > 0 Å and num_basis >= 1."
            )
        self.r_max = float(r_max)
        self.prefactor = math.sqrt(2.0 / r_max)
        frequencies = torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) * (math.pi / r_max)
        self.register_buffer("frequencies", frequencies)

    def forward(self, r: Tensor) -> Tensor:
        frequencies = self.frequencies.to(dtype=r.dtype)
        return self.prefactor * torch.sin(frequencies * r) / r


class PolynomialCutoff(torch.nn.Module):
    """Polynomial envelope of Klicpera et al. (DimeNet), as in NequIP/MACE.

    ``u(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)`` with ``x = r/r_max`` for
    ``r < r_max`` and 0 beyond: ``u(1) = u'(1) = u''(1) = 0``, so anything multiplied by it goes
    to zero at ``r_max`` with continuous first and second derivatives.
    ``r``: ``(E, 1)`` Å -> ``(E, 1)`` dimensionless.
    """

    r_max: float
    p: float

    def __init__(self, r_max: float, p: int = 5) -> None:
        super().__init__()
        if r_max <= 0.0 or p < 2:
            raise ValueError(f"PolynomialCutoff(r_max={r_max}, p={p}): expected r_max > 0 Å and p >= 2.")
        self.r_max = float(r_max)
        self.p = float(p)

    def forward(self, r: Tensor) -> Tensor:
        p = self.p
        x = r / self.r_max
        envelope = (
            1.0
            - (p + 1.0) * (p + 2.0) / 2.0 * torch.pow(x, p)
            + p * (p + 2.0) * torch.pow(x, p + 1.0)
            - p * (p + 1.0) / 2.0 * torch.pow(x, p + 2.0)
        )
        return envelope * (x < 1.0).to(r.dtype)


class RadialEmbedding(torch.nn.Module):
    """Bessel basis multiplied by the cutoff envelope.

    ``edge_lengths``: ``(E, 1)`` Å -> ``(E, num_basis)``; exactly zero for ``r >= r_max``.
    """

    def __init__(self, r_max: float, num_basis: int = 8, polynomial_cutoff_p: int = 5) -> None:
        super().__init__()
        self.num_basis = int(num_basis)
        self.bessel = BesselBasis(r_max, num_basis)
        self.cutoff = PolynomialCutoff(r_max, polynomial_cutoff_p)

    def forward(self, edge_lengths: Tensor) -> Tensor:
        return self.bessel(edge_lengths) * self.cutoff(edge_lengths)
