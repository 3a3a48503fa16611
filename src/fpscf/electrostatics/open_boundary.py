"""Open boundaries: analytic pair sums between Gaussian multipoles (all pairs in a structure)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fpscf.electrostatics.kernels import smeared_coulomb_radial_functions
from fpscf.electrostatics.pair_fields import potential_derivatives


def all_pairs(batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """Every ordered pair (receiver, source), receiver ≠ source, within each structure: (2, P)."""
    counts = torch.bincount(batch, minlength=num_graphs)
    offsets = torch.cumsum(counts, 0) - counts
    pieces = []
    for count, offset in zip(counts.tolist(), offsets.tolist()):
        if count < 2:
            continue
        idx = torch.arange(count, device=batch.device)
        receivers, sources = torch.meshgrid(idx, idx, indexing="ij")
        keep = receivers != sources
        pieces.append(torch.stack([receivers[keep], sources[keep]]) + offset)
    if not pieces:
        return torch.zeros(2, 0, dtype=torch.long, device=batch.device)
    return torch.cat(pieces, dim=1)


@dataclass
class PairGeometry:
    """Pair data reused at every SCF step: pairs (2, P), separation (P, 3) Å, radial (P, W, n)."""

    pairs: torch.Tensor
    separation: torch.Tensor
    radial: torch.Tensor


def prepare_pairs(
    positions: torch.Tensor,
    pairs: torch.Tensor,
    interaction_widths: torch.Tensor,
    max_order: int,
    coulomb_constant: float,
) -> PairGeometry:
    """Separations and radial kernels for widths ``s_w`` (W,) Å (``s² = σ² + w²``)."""
    separation = positions[pairs[0]] - positions[pairs[1]]
    distance_squared = (separation * separation).sum(-1)
    radial = smeared_coulomb_radial_functions(
        distance_squared[:, None], interaction_widths[None, :], max_order, coulomb_constant
    )
    return PairGeometry(pairs=pairs, separation=separation, radial=radial)


def pair_potential_derivatives(
    geometry: PairGeometry,
    charges: torch.Tensor,
    dipoles: torch.Tensor | None,
    quadrupoles: torch.Tensor | None,
    receiver_max_l: int,
    num_atoms: int,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Sum over sources j ≠ i of V0 (N, W), V1 (N, W, 3), V2 (N, W, 3, 3) at every receiver i."""
    receivers, sources = geometry.pairs
    v0, v1, v2 = potential_derivatives(
        geometry.separation,
        geometry.radial,
        charges[sources],
        dipoles[sources] if dipoles is not None else None,
        quadrupoles[sources] if quadrupoles is not None else None,
        receiver_max_l,
    )
    n_widths = geometry.radial.shape[1]
    out0 = v0.new_zeros(num_atoms, n_widths).index_add(0, receivers, v0)
    out1 = None if v1 is None else v1.new_zeros(num_atoms, n_widths, 3).index_add(0, receivers, v1)
    out2 = None if v2 is None else v2.new_zeros(num_atoms, n_widths, 3, 3).index_add(0, receivers, v2)
    return out0, out1, out2
