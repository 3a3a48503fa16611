"""Slab boundary: 3D-periodic sums plus the Yeh–Berkowitz dipole correction (Ballenegger form).

The structure is periodic in the first two cell vectors and open along the third (vacuum along it).
z is the coordinate along the surface normal ``n = a×b/|a×b|`` and ``L_z = Ω/|a×b|`` the period
along it (the third vector may be tilted). With ``M_z = Σ_i (q_i z_i + d_iz)``, ``Q = Σ q_i`` and
``S₂ = Σ_i ∫ρ_i z² = Σ_i [q_i (z_i² + σ²) + 2 d_iz z_i + Θ_i,zz]`` the correction energy is
``E = (2π k_e/Ω) (M_z² − Q S₂ − Q² L_z²/12)``; it is the energy ``½∫ρ v`` of the quadratic potential
``v(z) = (4π k_e/Ω) (M_z z − Q z²/2 − S₂/2 − Q L_z²/12)``, whose Gaussian projections are the features.
"""

from __future__ import annotations

import math

import torch


def slab_correction_features(
    positions: torch.Tensor,
    cell: torch.Tensor,
    multipoles: torch.Tensor,
    smearing_width: float,
    receiver_widths: torch.Tensor,
    receiver_max_l: int,
    quadrupole_matrices: torch.Tensor,
    coulomb_constant: float,
) -> torch.Tensor:
    """Projections (N, W, (receiver_max_l+1)²) of the slab-correction potential for one structure."""
    normal = torch.linalg.cross(cell[0], cell[1])
    area = torch.linalg.norm(normal)
    c_hat = normal / area
    z = positions @ c_hat
    volume = torch.abs(torch.linalg.det(cell))
    length = volume / area
    q = multipoles[:, 0]
    total_charge = q.sum()
    dipole_z = (q * z).sum()
    second_moment = (q * (z * z + smearing_width**2)).sum()
    if multipoles.shape[-1] >= 4:
        dz = multipoles[:, 1:4] @ c_hat
        dipole_z = dipole_z + dz.sum()
        second_moment = second_moment + 2.0 * (dz * z).sum()
    zz_matrices = torch.einsum("a,mab,b->m", c_hat, quadrupole_matrices.to(cell.dtype), c_hat)
    if multipoles.shape[-1] >= 9:
        second_moment = second_moment + (multipoles[:, 4:9] @ zz_matrices).sum()
    prefactor = 4.0 * math.pi * coulomb_constant / volume
    constant = -0.5 * second_moment - total_charge * length**2 / 12.0
    potential = prefactor * (
        dipole_z * z[:, None]
        - 0.5 * total_charge * (z[:, None] ** 2 + receiver_widths[None, :] ** 2)
        + constant
    )
    parts = [potential.unsqueeze(-1)]
    if receiver_max_l >= 1:
        slope = prefactor * (dipole_z - total_charge * z)  # (N,)
        parts.append((slope[:, None, None] * c_hat).expand(-1, receiver_widths.shape[0], 3))
    if receiver_max_l >= 2:
        curvature = -0.5 * prefactor * total_charge * zz_matrices  # (5,)
        parts.append(curvature.expand(positions.shape[0], receiver_widths.shape[0], 5))
    return torch.cat(parts, dim=-1)
