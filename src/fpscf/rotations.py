"""Exact rotation matrices of e3nn irreps.

``e3nn.o3.Irreps.D_from_matrix`` goes through Euler angles and is accurate to only ~1e-7, even in
float64. Tests of equivariance at 1e-10 need better: here ``D_l(R)`` is solved from
``Y_l(R x) = D_l(R) Y_l(x)`` on a fixed set of directions, exact to rounding.
"""

from __future__ import annotations

import torch
from e3nn import o3


def wigner_d(l: int, rotation: torch.Tensor) -> torch.Tensor:
    """``D_l(R)`` (2l+1, 2l+1) for a proper rotation R (3, 3), e3nn component basis."""
    g = torch.Generator().manual_seed(12345)
    directions = torch.randn(4 * l + 8, 3, generator=g, dtype=torch.float64).to(rotation.device)
    rotation64 = rotation.to(torch.float64)
    y = o3.spherical_harmonics(l, directions, normalize=True, normalization="component")
    y_rot = o3.spherical_harmonics(l, directions @ rotation64.T, normalize=True, normalization="component")
    solution = torch.linalg.lstsq(y, y_rot).solution  # y @ Dᵀ = y_rot
    return solution.T.to(rotation.dtype)


def irreps_rotation_matrix(irreps: o3.Irreps | str, rotation: torch.Tensor) -> torch.Tensor:
    """Block-diagonal representation (dim, dim) of an orthogonal matrix (proper or improper) on irreps."""
    irreps = o3.Irreps(irreps)
    det = torch.linalg.det(rotation.to(torch.float64))
    proper = rotation * det.to(rotation.dtype)
    blocks = []
    for mul, irrep in irreps:
        # R = det · proper; inversion acts on an irrep as its parity p.
        sign = float(irrep.p) if float(det) < 0 else 1.0
        blocks.extend([wigner_d(irrep.l, proper) * sign] * mul)
    return torch.block_diag(*blocks)
