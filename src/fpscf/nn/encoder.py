"""Equivariant message-passing encoder (MACE-like): node features per interaction layer."""

from typing import List, Tuple

import torch
from e3nn import o3
from torch import Tensor

from .config import EncoderConfig
from .interaction import InteractionBlock
from .radial import RadialEmbedding, core_clamped


class EquivariantEncoder(torch.nn.Module):
    """Species embedding followed by ``num_interactions`` :class:`InteractionBlock` layers.

    Inputs: ``species_index (N,)`` int64 in ``[0, num_species)``; ``edge_vectors (E, 3)`` Å, the
    vector ``r_receiver - r_sender (+ periodic shift)`` of each edge; ``edge_index (2, E)`` int64 with
    ``edge_index[0]`` = sender, ``edge_index[1]`` = receiver. Edges longer than ``r_max`` are allowed
    and contribute exactly zero.

    Output: a list with one tensor per interaction layer ``s``, shape ``(N, irreps_out[s].dim)``,
    ``irreps_out[s] = num_channels x (0e + 1o + ...)`` up to ``max_L``. The output is a smooth (C2)
    function of the edge vectors, equivariant under rotations and inversion, invariant under
    permutations of the atoms that carry their edges along.

    Precision and device follow the module: build it under ``fpscf.nn.default_dtype(torch.float64)``
    for float64 (e3nn's Clebsch-Gordan constants are created in the default dtype), move it with
    ``.to(device)``; inputs must have the module's dtype and device.
    """

    r_max: float
    core_radius: float

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.r_max = float(config.r_max)
        self.core_radius = float(config.radial_core_radius)
        self.num_species = int(config.num_species)
        self.irreps_embedding = o3.Irreps(f"{config.num_channels}x0e")
        self.sh_irreps = config.sh_irreps
        self.species_embedding = torch.nn.Embedding(config.num_species, config.num_channels)
        with torch.no_grad():
            self.species_embedding.weight.normal_(0.0, 1.0)
        self.spherical_harmonics = o3.SphericalHarmonics(self.sh_irreps, normalize=True, normalization="component")
        self.radial_embedding = RadialEmbedding(config.r_max, config.num_bessel, config.polynomial_cutoff_p)
        blocks: List[InteractionBlock] = []
        irreps = self.irreps_embedding
        irreps_out: List[o3.Irreps] = []
        for _ in range(config.num_interactions):
            block = InteractionBlock(irreps, config.node_irreps, config)
            blocks.append(block)
            irreps = block.irreps_out
            irreps_out.append(irreps)
        self.irreps_out = irreps_out
        self.interactions = torch.nn.ModuleList(blocks)

    @torch.jit.export
    def edge_embedding(self, edge_vectors: Tensor) -> Tuple[Tensor, Tensor]:
        """``edge_vectors (E, 3)`` Å -> ``(edge_sh (E, sh_irreps.dim), edge_radial (E, num_bessel))``.

        ``edge_sh`` are component-normalised spherical harmonics of the edge direction (``1o`` in
        x, y, z order); ``edge_radial`` is the Bessel basis times the smooth cutoff envelope, of the
        lengths clamped at ``radial_core_radius`` (:func:`~fpscf.nn.radial.core_clamped`).
        """
        lengths = core_clamped(torch.linalg.norm(edge_vectors, dim=-1, keepdim=True), self.core_radius)
        edge_sh = self.spherical_harmonics(edge_vectors)
        edge_radial = self.radial_embedding(lengths)
        return edge_sh, edge_radial

    def embed_species(self, species_index: Tensor) -> Tensor:
        """``species_index (N,)`` -> initial node features ``(N, num_channels)`` (``0e``)."""
        return self.species_embedding(species_index)

    def forward(self, species_index: Tensor, edge_vectors: Tensor, edge_index: Tensor) -> List[Tensor]:
        assert edge_vectors.dtype == self.species_embedding.weight.dtype, (
            "edge_vectors and the encoder have different dtypes: cast one (build the encoder under "
            "fpscf.nn.default_dtype(torch.float64) for float64 runs)"
        )
        assert edge_index.shape[0] == 2 and edge_index.shape[1] == edge_vectors.shape[0], (
            "edge_index must be (2, E) and edge_vectors (E, 3)"
        )
        edge_sh, edge_radial = self.edge_embedding(edge_vectors)
        return self.forward_embedded(species_index, edge_sh, edge_radial, edge_index)

    @torch.jit.export
    def forward_embedded(
        self, species_index: Tensor, edge_sh: Tensor, edge_radial: Tensor, edge_index: Tensor
    ) -> List[Tensor]:
        """Same as ``forward`` from a precomputed :meth:`edge_embedding`, for callers that reuse it."""
        node_feats = self.embed_species(species_index)
        outputs: List[Tensor] = []
        for block in self.interactions:
            node_feats = block(node_feats, edge_sh, edge_radial, edge_index)
            outputs.append(node_feats)
        return outputs
