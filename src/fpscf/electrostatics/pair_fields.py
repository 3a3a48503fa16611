"""Potential, gradient and Hessian of Gaussian multipoles at receiver Gaussians (real space).

For a source j with multipoles (q, d, Θ) and a receiver at ``R = r_i − r_j`` the smoothed
potential derivatives are (``B_n`` from :mod:`fpscf.electrostatics.kernels`, ``t = R·Θ·R``,
``u = Θ·R``, ``s = d·R``; Θ traceless):

* ``V0 = q B0 + s B1 + ½ t B2``                                   (V)
* ``V1_a = −R_a (q B1 + s B2 + ½ t B3) + d_a B1 + u_a B2``       (V/Å)
* ``V2_ab = R_a R_b (q B2 + s B3 + ½ t B4) − δ_ab (q B1 + s B2 + ½ t B3)
  − (d_a R_b + R_a d_b) B2 − (u_a R_b + R_a u_b) B3 + Θ_ab B2``    (V/Å²)

At R = 0 these reduce to the self terms. Everything is plain torch (exportable).
"""

from __future__ import annotations

from typing import Optional

import torch

from fpscf.electrostatics.multipoles import split_multipoles


def potential_derivatives(
    separation: torch.Tensor,
    radial: torch.Tensor,
    charges: torch.Tensor,
    dipoles: Optional[torch.Tensor],
    quadrupoles: Optional[torch.Tensor],
    receiver_max_l: int,
) -> tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Smoothed potential derivatives of sources at receivers.

    separation: (P, 3) ``r_receiver − r_source`` Å; radial: (P, W, n) ``B_n`` for W receiver widths;
    charges (P,), dipoles (P, 3) or None, quadrupoles (P, 3, 3) or None (source multipoles).
    Returns V0 (P, W), V1 (P, W, 3) if receiver_max_l ≥ 1, V2 (P, W, 3, 3) if receiver_max_l ≥ 2.
    """
    R = separation.unsqueeze(1)  # (P, 1, 3)
    B = radial
    q = charges[:, None]
    # chain[k] = q B_k + s B_{k+1} + ½ t B_{k+2}, k = 0..receiver_max_l
    chain = [q * B[..., k] for k in range(receiver_max_l + 1)]
    u: Optional[torch.Tensor] = None
    if dipoles is not None:
        s = (dipoles * separation).sum(-1)[:, None]
        chain = [c + s * B[..., k + 1] for k, c in enumerate(chain)]
    if quadrupoles is not None:
        u = torch.einsum("pab,pb->pa", quadrupoles, separation)
        t = 0.5 * (u * separation).sum(-1)[:, None]
        chain = [c + t * B[..., k + 2] for k, c in enumerate(chain)]

    v0 = chain[0]
    if receiver_max_l < 1:
        return v0, None, None
    v1 = -R * chain[1].unsqueeze(-1)
    if dipoles is not None:
        v1 = v1 + dipoles[:, None, :] * B[..., 1:2]
    if u is not None:
        v1 = v1 + u[:, None, :] * B[..., 2:3]
    if receiver_max_l < 2:
        return v0, v1, None

    eye = torch.eye(3, dtype=separation.dtype, device=separation.device)
    RR = R.unsqueeze(-1) * R.unsqueeze(-2)  # (P, 1, 3, 3)
    v2 = RR * chain[2][..., None, None] - eye * chain[1][..., None, None]
    if dipoles is not None:
        dR = dipoles[:, :, None] * separation[:, None, :]
        v2 = v2 - (dR + dR.transpose(-1, -2))[:, None] * B[..., 2, None, None]
    if u is not None and quadrupoles is not None:
        uR = u[:, :, None] * separation[:, None, :]
        v2 = v2 - (uR + uR.transpose(-1, -2))[:, None] * B[..., 3, None, None]
        v2 = v2 + quadrupoles[:, None] * B[..., 2, None, None]
    return v0, v1, v2


def stack_features(
    v0: torch.Tensor, v1: Optional[torch.Tensor], v2: Optional[torch.Tensor], quadrupole_matrices: torch.Tensor
) -> torch.Tensor:
    """Stack V0 (N, W), V1 (N, W, 3), V2 (N, W, 3, 3) into projections (N, W, (L+1)²): potential,
    gradient and ``½ M_m : V2`` in e3nn's ``0e + 1o + 2e`` layout."""
    parts = [v0.unsqueeze(-1)]
    if v1 is not None:
        parts.append(v1)
    if v2 is not None:
        parts.append(0.5 * torch.einsum("nwab,mab->nwm", v2, quadrupole_matrices.to(v2.dtype)))
    return torch.cat(parts, dim=-1)


def self_features(
    multipoles: torch.Tensor, radial: torch.Tensor, quadrupole_matrices: torch.Tensor, receiver_max_l: int
) -> torch.Tensor:
    """Each atom's projection of its own potential (N, W, (L+1)²), for the R = 0 kernel values
    ``radial`` (W, n) ``B_n(0)`` (:func:`fpscf.electrostatics.kernels.self_radial_functions`)."""
    matrices = quadrupole_matrices.to(multipoles.dtype)
    charges, dipoles, quadrupoles = split_multipoles(multipoles, matrices)
    n = multipoles.shape[0]
    v0, v1, v2 = potential_derivatives(
        multipoles.new_zeros(n, 3), radial.unsqueeze(0).expand(n, -1, -1), charges, dipoles, quadrupoles, receiver_max_l
    )
    return stack_features(v0, v1, v2, matrices)


def required_radial_order(source_max_l: int, receiver_max_l: int) -> int:
    """Highest ``B_n`` needed: the total derivative order ``source_l + receiver_l``."""
    return source_max_l + receiver_max_l
