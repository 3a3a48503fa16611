"""Fixed-point update rules ``Δp(h, f)``: how the density responds to the field features.

The SCF map is ``p ← p_local(h) + Δp(h, f[p; μ, ε])`` (docs/physics.md, The model). Field features
``f`` have shape (N, W, (L_f+1)²) (receiver widths × e3nn ``0e + 1o + 2e``), already normalised;
multipoles have shape (N, (l_max+1)²).
"""

from __future__ import annotations

import torch
from e3nn import o3

from fpscf.electrostatics.multipoles import l_block
from fpscf.nn import MLP, InteractionBlock, IrrepsReadout

UPDATE_TYPES = ("OneBodyVariableUpdate", "ManyBodyUpdate")
EMBEDDING_TYPES = ("BiasedLinearPotentialEmbedding",)
NONLINEARITY_TYPES = ("NoNonLinearity", "MLPNonLinearity")


class BiasedLinearPotentialEmbedding(torch.nn.Module):
    """Affine response ``e_l = Σ_k a_{k,l}(h) f_{k,l} (+ b(h) for l = 0)``.

    The coefficients ``a = −softplus(MLP(h))·scale`` are negative (the density screens the potential:
    charge flows down the potential, dipoles align with the field), which keeps a random model's
    SCF map contractive. h: (N, S) invariant node features.

    With ``maximum_compliance`` (one value c_max,l per responding l, in e²/eV for charges and
    e·Å²/V for dipoles) the atom's compliance ``c_l = −Σ_k a_{k,l}/n_{k,l}`` (n the feature norms
    (W, L_f+1)) is bounded smoothly, ``c_l → c_max,l·tanh(c_l/c_max,l)``, by scaling its a_{k,l}
    together: the hardness ``1/c_l`` of every atom in every geometry stays above ``1/c_max,l``, which
    makes the energy of a variational model strictly convex in the multipoles once that exceeds
    the Gaussian self-Coulomb (see :func:`fpscf.scf.bounds.convexity_margin`).
    """

    def __init__(
        self, num_scalars: int, num_widths: int, feature_max_l: int, multipole_max_l: int, hidden: int = 32,
        scale: float = 0.02, maximum_compliance: list[float] | None = None, feature_norms: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.num_widths = num_widths
        self.response_max_l = min(feature_max_l, multipole_max_l)
        self.multipole_max_l = multipole_max_l
        self.num_coefficients = num_widths * (self.response_max_l + 1)
        self.coefficients = MLP([num_scalars, hidden, self.num_coefficients + 1])
        self.scale = scale
        self.bounded = maximum_compliance is not None
        limits = torch.tensor([float(c) for c in maximum_compliance or [1.0] * (self.response_max_l + 1)])
        if limits.shape != (self.response_max_l + 1,):
            raise ValueError(
                f"maximum_compliance needs {self.response_max_l + 1} values (l = 0..{self.response_max_l}), got {maximum_compliance!r}"
            )
        norms = feature_norms if feature_norms is not None else torch.ones(num_widths, feature_max_l + 1)
        self.register_buffer("maximum_compliance", limits, persistent=False)
        self.register_buffer("norms", norms[:, : self.response_max_l + 1].clone(), persistent=False)

    def response(self, node_scalars: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Response coefficients a (N, W, min(L_f, l_max)+1) (< 0) and charge bias b (N, 1)."""
        raw = self.coefficients(node_scalars)
        response = -torch.nn.functional.softplus(raw[:, : self.num_coefficients]) * self.scale
        response = response.reshape(-1, self.num_widths, self.response_max_l + 1)
        if self.bounded:
            limit = self.maximum_compliance.to(response.dtype)
            ratio = -(response / self.norms.to(response.dtype)).sum(1) / limit  # (N, L+1) ≥ 0
            small = ratio < 1e-4
            safe = torch.where(small, torch.ones_like(ratio), ratio)
            shrink = torch.where(small, 1.0 - ratio * ratio / 3.0, torch.tanh(safe) / safe)
            response = response * shrink[:, None, :]
        return response, raw[:, self.num_coefficients :] * self.scale

    def forward(self, node_scalars: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        response, bias = self.response(node_scalars)
        out = features.new_zeros(features.shape[0], (self.multipole_max_l + 1) * (self.multipole_max_l + 1))
        pieces = []
        for l in range(self.multipole_max_l + 1):
            if l <= self.response_max_l:
                pieces.append((response[:, :, l : l + 1] * l_block(features, l)).sum(1))
            else:
                pieces.append(l_block(out, l))
        pieces[0] = pieces[0] + bias
        return torch.cat(pieces, dim=-1)


class NoNonLinearity(torch.nn.Module):
    """``Δp = e``: the update stays affine in the field features."""

    def forward(self, node_scalars: torch.Tensor, embedded: torch.Tensor) -> torch.Tensor:
        return embedded


class MLPNonLinearity(torch.nn.Module):
    """Equivariant nonlinear map of the embedded response ``e``.

    Invariants ``s = [h, e_0, |e_1|, |e_2|]`` feed an MLP giving gates g_l, and
    ``Δp_l = e_l (1 + tanh g_l)``: smooth, equivariant, nonlinear in the field features. The last
    layer starts small, so a new model begins close to the affine one.
    """

    def __init__(self, num_scalars: int, multipole_max_l: int, hidden: int = 32) -> None:
        super().__init__()
        self.multipole_max_l = multipole_max_l
        self.mlp = MLP([num_scalars + 1 + multipole_max_l, hidden, 1 + multipole_max_l])
        last = self.mlp.layers[-1]
        with torch.no_grad():
            last.weight.mul_(0.3)

    def forward(self, node_scalars: torch.Tensor, embedded: torch.Tensor) -> torch.Tensor:
        norms = [
            torch.sqrt((l_block(embedded, l) ** 2).sum(-1, keepdim=True) + 1e-12)
            for l in range(1, self.multipole_max_l + 1)
        ]
        gates = torch.tanh(self.mlp(torch.cat([node_scalars, embedded[:, :1]] + norms, dim=-1)))
        return torch.cat(
            [l_block(embedded, l) * (1.0 + gates[:, l : l + 1]) for l in range(self.multipole_max_l + 1)],
            dim=-1,
        )


class OneBodyVariableUpdate(torch.nn.Module):
    """Per-atom update: potential embedding followed by a (non)linearity."""

    def __init__(self, embedding: torch.nn.Module, nonlinearity: torch.nn.Module) -> None:
        super().__init__()
        self.embedding = embedding
        self.nonlinearity = nonlinearity

    def forward(self, node_scalars: torch.Tensor, node_feats: torch.Tensor, features: torch.Tensor, graph_edges: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.nonlinearity(node_scalars, self.embedding(node_scalars, features))


class ManyBodyUpdate(torch.nn.Module):
    """Many-body update: field features are embedded into the node features, one interaction
    block is rerun over the same edges, and an equivariant readout gives the update (each l block
    softly bounded by its norm, which keeps it equivariant); it is added to the one-body affine
    response so a new model starts close to linear response.
    """

    __jit_unused_properties__ = ["embedding"]  # Python-side accessor; TorchScript skips it

    def __init__(
        self,
        embedding: torch.nn.Module,
        nonlinearity: torch.nn.Module,
        node_irreps: o3.Irreps,
        feature_irreps: o3.Irreps,
        multipole_irreps: o3.Irreps,
        interaction: InteractionBlock,
        scale: float = 0.01,
    ) -> None:
        super().__init__()
        self.one_body = OneBodyVariableUpdate(embedding, nonlinearity)
        self.field_embedding = o3.Linear(feature_irreps, node_irreps)
        self.interaction = interaction
        self.readout = IrrepsReadout(interaction.irreps_out, multipole_irreps)
        self.feature_irreps = feature_irreps
        self.scale = scale

    @property
    def embedding(self) -> torch.nn.Module:
        """The affine potential embedding of the one-body part (used by the strict readout)."""
        return self.one_body.embedding

    def forward(self, node_scalars: torch.Tensor, node_feats: torch.Tensor, features: torch.Tensor, graph_edges: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        edge_sh, edge_radial, edge_index = graph_edges
        one_body = self.one_body(node_scalars, node_feats, features, graph_edges)
        flat = _flatten_features(features)
        hidden = node_feats + self.field_embedding(flat)
        hidden = self.interaction(hidden, edge_sh, edge_radial, edge_index)
        return one_body + self.scale * _bounded(self.readout(hidden))


def _bounded(multipoles: torch.Tensor) -> torch.Tensor:
    """Equivariant soft bound of each l block: ``x_l / sqrt(1 + |x_l|²)`` (N, (l_max+1)²)."""
    max_l = int(round(multipoles.shape[-1] ** 0.5)) - 1
    blocks = [l_block(multipoles, l) for l in range(max_l + 1)]
    return torch.cat([x * torch.rsqrt(1.0 + (x * x).sum(-1, keepdim=True)) for x in blocks], dim=-1)


def _flatten_features(features: torch.Tensor) -> torch.Tensor:
    """(N, W, (L+1)²) → (N, W×0e + W×1o + W×2e) in e3nn layout (multiplicity-major per l)."""
    n, w, size = features.shape
    max_l = int(round(size**0.5)) - 1
    return torch.cat([l_block(features, l).reshape(n, -1) for l in range(max_l + 1)], dim=-1)


def feature_irreps(num_widths: int, feature_max_l: int) -> o3.Irreps:
    """Irreps of flattened field features: ``W×0e + W×1o + W×2e`` up to ``feature_max_l``."""
    return o3.Irreps([(num_widths, (l, (-1) ** l)) for l in range(feature_max_l + 1)])
