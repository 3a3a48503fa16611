"""nvalchemi-toolkit-ops (Warp) backend for periodic Gaussian-multipole field features.

Wraps ``multipole_electrostatic_features`` (direct k-space, Warp kernels, autograd including
double backward) and converts its conventions to ours:

* dipoles: ours are Cartesian (x, y, z) (e3nn ≥ 0.6 ``1o``), nvalchemi's packed input is (y, z, x);
* feature columns: nvalchemi groups by l, then receiver width, then m; ours are (width, lm);
* l = 2 receivers: nvalchemi's real-harmonic basis differs from e3nn's component basis by the fixed
  linear map :data:`_L2_OURS_TO_NVALCHEMI` (ours @ map = theirs), found by fitting on random
  systems and written in closed form (entries 2/(3√5), 1/(3√5), 1/√15).

Features include every atom's own density (self-interaction); the caller removes it if asked.
This backend is not exportable (Warp kernels): the pure-torch path in
:mod:`fpscf.electrostatics.reciprocal` is what the LAMMPS export uses, and the tests check the two agree.
"""

from __future__ import annotations

import math

import torch

_A = 2.0 / (3.0 * math.sqrt(5.0))
_C = 1.0 / (3.0 * math.sqrt(5.0))
_S = 1.0 / math.sqrt(15.0)
_L2_OURS_TO_NVALCHEMI = (
    (0.0, 0.0, 0.0, _A, 0.0),
    (_A, 0.0, 0.0, 0.0, 0.0),
    (0.0, 0.0, -_C, 0.0, -_S),
    (0.0, _A, 0.0, 0.0, 0.0),
    (0.0, 0.0, _S, 0.0, -_C),
)


def nvalchemi_periodic_features(
    positions: torch.Tensor,
    cell: torch.Tensor,
    multipoles: torch.Tensor,
    smearing_width: float,
    receiver_widths: list[float],
    k_cutoff: float,
    max_l: int,
    coulomb_constant: float,
) -> torch.Tensor:
    """Potential projections (N, W, (max_l+1)²) of one periodic structure, self-interaction included.

    positions (N, 3) Å, cell (3, 3) Å, multipoles (N, (l_max+1)²) in our layout.
    """
    from nvalchemiops.torch.interactions.electrostatics import multipole_electrostatic_features
    from nvalchemiops.torch.math import FIELD_CONSTANT

    packed = multipoles
    if multipoles.shape[-1] >= 4:
        packed = torch.cat([multipoles[:, :1], multipoles[:, [2, 3, 1]], multipoles[:, 4:]], dim=-1)
    feature_l = max(max_l, 1)
    raw = multipole_electrostatic_features(
        positions,
        packed,
        cell,
        sigma=smearing_width,
        receiver_sigmas=list(receiver_widths),
        k_cutoff=k_cutoff,
        feature_max_l=feature_l,
        feature_normalize="MULTIPOLES",
        include_self_interaction=True,
    ).to(positions.dtype)
    n, widths = positions.shape[0], len(receiver_widths)
    blocks = []
    offset = 0
    for l in range(feature_l + 1):
        size = widths * (2 * l + 1)
        blocks.append(raw[:, offset : offset + size].reshape(n, widths, 2 * l + 1))
        offset += size
    if feature_l >= 1:
        blocks[1] = blocks[1][..., [2, 0, 1]]
    if feature_l >= 2:
        to_theirs = torch.tensor(_L2_OURS_TO_NVALCHEMI, dtype=raw.dtype, device=raw.device)
        blocks[2] = blocks[2] @ torch.linalg.inv(to_theirs)
    features = torch.cat(blocks[: max_l + 1], dim=-1)
    return features * (coulomb_constant * 4.0 * math.pi / FIELD_CONSTANT)
