"""Interaction block: equivariant convolution over edges, product block and self-connection."""

from typing import List

import torch
from e3nn import o3
from torch import Tensor

from .config import EncoderConfig
from .convolution import SphericalConvolution
from .mlp import MLP
from .product import ProductBlock


def message_irreps(irreps_in: o3.Irreps, irreps_out: o3.Irreps, sh_irreps: o3.Irreps, num_channels: int) -> o3.Irreps:
    """Irreps of the aggregated messages: ``num_channels x`` every ``l <= sh_irreps.lmax`` that
    ``irreps_in ⊗ sh_irreps`` reaches, polar parity ``(-1)^l`` only unless the input or the output
    holds axial (``(-1)^(l+1)``) irreps, in which case both parities are kept."""
    lmax = sh_irreps.lmax
    polar_only = all(ir.p == (-1) ** ir.l for _, ir in irreps_in) and all(ir.p == (-1) ** ir.l for _, ir in irreps_out)
    reached: List[o3.Irrep] = []
    for _, ir_in in irreps_in:
        for _, ir_sh in sh_irreps:
            for ir in ir_in * ir_sh:
                if ir.l > lmax or (polar_only and ir.p != (-1) ** ir.l) or ir in reached:
                    continue
                reached.append(ir)
    return o3.Irreps([(num_channels, ir) for ir in sorted(reached)])


class InteractionBlock(torch.nn.Module):
    """One message-passing layer, ``node_feats (N, irreps_in.dim) -> (N, irreps_out.dim)``.

    1. ``h' = Linear(h)`` to ``num_channels x`` each irrep type of ``irreps_in``;
    2. message on edge ``j -> i``: ``m_ij = h'_j ⊗ Y(r_ij)`` (``uvu`` paths) weighted per edge, path
       and channel by ``MLP(edge_radial)`` (bias-free, so zero radial input gives zero weights);
    3. ``A_i = Linear(sum_j m_ij) / avg_num_neighbors`` (sum over receivers with ``index_add``,
       see :class:`SphericalConvolution`);
    4. ``out_i = ProductBlock(A_i; weights from the scalars of h_i) + SelfConnection(h_i)``.

    The block depends on the geometry only through ``edge_sh`` and ``edge_radial``, so it can be
    rerun on modified node features with the same edges. Shapes: ``edge_sh (E, sh_irreps.dim)``,
    ``edge_radial (E, num_bessel)`` (already times the cutoff envelope), ``edge_index (2, E)`` int64
    with ``edge_index[0]`` the sender and ``edge_index[1]`` the receiver.
    """

    avg_num_neighbors: float
    dim_in: int
    dim_sh: int
    num_radial: int

    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps, config: EncoderConfig) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        self.sh_irreps = config.sh_irreps
        self.num_radial = int(config.num_bessel)
        self.avg_num_neighbors = float(config.avg_num_neighbors)
        self.dim_in = self.irreps_in.dim
        self.dim_sh = self.sh_irreps.dim
        if self.irreps_in.dim == 0 or self.irreps_out.dim == 0:
            raise ValueError(
                f"InteractionBlock irreps_in={irreps_in}, irreps_out={irreps_out}: both must be non-empty."
            )
        if self.irreps_in.count("0e") == 0:
            raise ValueError(
                f"InteractionBlock irreps_in={irreps_in} has no scalars (0e); they are needed to weight the "
                f"product block. Add scalar channels to the input features."
            )
        self.irreps_message = message_irreps(self.irreps_in, self.irreps_out, self.sh_irreps, config.num_channels)

        # uniform multiplicity for the channel-wise convolution
        self.irreps_up = o3.Irreps([(config.num_channels, ir) for ir in sorted({ir for _, ir in self.irreps_in})])
        self.linear_up = o3.Linear(self.irreps_in, self.irreps_up)
        self.convolution = SphericalConvolution(self.irreps_up, self.sh_irreps, [ir for _, ir in self.irreps_message])
        self.irreps_mid = self.convolution.irreps_out
        hidden = config.radial_mlp_hidden
        self.radial_mlp = MLP([self.num_radial, hidden, hidden, hidden, self.convolution.weight_numel], bias=False)
        self.linear_message = o3.Linear(self.irreps_mid, self.irreps_message)
        self.product = ProductBlock(self.irreps_message, self.irreps_out, self.irreps_in, config.correlation)
        self.self_connection = o3.Linear(self.irreps_in, self.irreps_out)

    def forward(self, node_feats: Tensor, edge_sh: Tensor, edge_radial: Tensor, edge_index: Tensor) -> Tensor:
        """``node_feats (N, irreps_in.dim)`` -> ``(N, irreps_out.dim)``."""
        assert node_feats.shape[-1] == self.dim_in, "node_feats do not match InteractionBlock.irreps_in"
        assert edge_sh.shape[-1] == self.dim_sh, "edge_sh do not match InteractionBlock.sh_irreps"
        assert edge_radial.shape[-1] == self.num_radial, "edge_radial do not match the number of radial functions"
        weights = self.radial_mlp(edge_radial)
        aggregated = self.convolution(self.linear_up(node_feats), edge_sh, weights, edge_index)
        message = self.linear_message(aggregated) / self.avg_num_neighbors
        return self.product(message, node_feats) + self.self_connection(node_feats)
