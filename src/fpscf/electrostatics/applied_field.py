"""Uniform applied electric field: potential ``φ_ext(r) = −ε·r`` projected on receiver Gaussians.

A linear potential is unchanged by Gaussian smoothing, so its projection is the same for every
receiver width: value ``−ε·r_i`` (V), gradient ``−ε`` (V/Å), Hessian zero. The energy of the density
in the field is ``Σ_i p_i·f_i = −ε·D`` with ``D = Σ_i (q_i r_i + d_i)`` (DESIGN.md section 1).
"""

from __future__ import annotations

import torch


def applied_field_features(
    positions: torch.Tensor, field_per_atom: torch.Tensor, receiver_max_l: int
) -> torch.Tensor:
    """positions (N, 3) Å, field_per_atom (N, 3) V/Å → (N, 1, (receiver_max_l+1)²), broadcast over widths."""
    parts = [-(field_per_atom * positions).sum(-1, keepdim=True)]
    if receiver_max_l >= 1:
        parts.append(-field_per_atom)
    if receiver_max_l >= 2:
        parts.append(field_per_atom.new_zeros(field_per_atom.shape[0], 5))
    return torch.cat(parts, dim=-1).unsqueeze(1)


def total_dipole(
    positions: torch.Tensor, multipoles: torch.Tensor, batch: torch.Tensor, num_graphs: int
) -> torch.Tensor:
    """``D = Σ_i (q_i r_i + d_i)`` per structure, (B, 3) e·Å."""
    per_atom = multipoles[:, :1] * positions
    if multipoles.shape[-1] >= 4:
        per_atom = per_atom + multipoles[:, 1:4]
    return per_atom.new_zeros(num_graphs, 3).index_add(0, batch, per_atom)
