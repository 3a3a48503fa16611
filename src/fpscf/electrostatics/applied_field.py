"""Uniform applied electric field: potential ``φ_ext(r) = −ε·r`` projected on receiver Gaussians.

A linear potential is unchanged by Gaussian smoothing, so its projection is the same for every
receiver width: value ``−ε·x_i`` (V), gradient ``−ε`` (V/Å), Hessian zero. The energy of the density
in the field is ``Σ_i p_i·f_i = −ε·D`` with ``D = Σ_i (q_i x_i + d_i)`` (docs/physics.md, Units and signs).

``x_i`` is the atom's position in open boundaries. In a periodic cell ``Σ_i q_i r_i`` depends on
which periodic image of each atom the cell holds as soon as the charges respond to the field or
to the geometry, so α, ε∞, Born charges and Raman tensors would too. Models built with
``field_coupling="bond_midpoints"`` use instead, for periodic structures, the atom's displacement
from the centroid of its bond midpoints, :func:`bond_midpoint_coordinates`: it depends on bond
vectors only (minimum image within the cutoff), so everything is independent of the images, and
for any set of fixed charges in bonded pairs it gives the same dipole changes as ``Σ q r``.
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


#: Bond weight added to the denominator of :func:`bond_midpoint_coordinates`: an atom that loses
#: all its bonds loses its charge–field coupling continuously instead of jumping.
BOND_WEIGHT_FLOOR = 0.05


def bond_switch(length: torch.Tensor, bond_on: float, bond_off: float) -> torch.Tensor:
    """Bond weight (E,): 1 below ``bond_on`` Å, 0 beyond ``bond_off`` Å, a quintic smoothstep
    between (continuous first and second derivatives)."""
    t = torch.clamp((length - bond_on) / (bond_off - bond_on), 0.0, 1.0)
    return 1.0 - t * t * t * (10.0 - 15.0 * t + 6.0 * t * t)


def bond_midpoint_coordinates(
    vectors: torch.Tensor, receivers: torch.Tensor, num_atoms: int, bond_on: float, bond_off: float,
    floor: float = BOND_WEIGHT_FLOOR,
) -> torch.Tensor:
    """Field coordinates (N, 3) Å of a periodic structure: ``x_i = ½ Σ_j w_ij (r_i − r_j) / (Σ_j w_ij + w₀)``.

    vectors (E, 3) Å: ``r_receiver − r_sender`` of each directed edge (minimum image); receivers
    (E,): the atom i each edge belongs to; w_ij = :func:`bond_switch` of the bond length; w₀ =
    ``floor`` (:data:`BOND_WEIGHT_FLOOR`). ``x_i`` is the atom's displacement from the centroid of the
    midpoints of its bonds. For two bonded atoms with charges ±q, ``q x_A − q x_B ≈ q (r_A − r_B)``;
    in an ideal crystal where every atom's bonds cancel, x = 0 and a uniform field moves no charge
    between atoms, as symmetry requires.
    """
    weights = bond_switch(torch.linalg.norm(vectors, dim=-1), bond_on, bond_off)
    weighted = vectors.new_zeros(num_atoms, 3).index_add(0, receivers, weights[:, None] * vectors)
    total = vectors.new_zeros(num_atoms).index_add(0, receivers, weights)
    return 0.5 * weighted / (total + floor)[:, None]


def total_dipole(
    positions: torch.Tensor, multipoles: torch.Tensor, batch: torch.Tensor, num_graphs: int
) -> torch.Tensor:
    """``D = Σ_i (q_i x_i + d_i)`` per structure, (B, 3) e·Å; positions: the field coordinates x (N, 3)."""
    per_atom = multipoles[:, :1] * positions
    if multipoles.shape[-1] >= 4:
        per_atom = per_atom + multipoles[:, 1:4]
    return per_atom.new_zeros(num_graphs, 3).index_add(0, batch, per_atom)
