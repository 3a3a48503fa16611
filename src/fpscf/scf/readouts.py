"""Field readouts: energy contributions of the converged density and field features.

All return per-atom energies (N,) in eV. ``multipoles`` (N, K), ``local_multipoles`` (N, K) the
density without field response, ``features`` (N, W, (L_f+1)²) normalised field features,
``node_scalars`` (N, S) invariant geometry features.
"""

from __future__ import annotations

import torch

from fpscf.electrostatics.multipoles import l_block
from fpscf.nn import MLP

READOUT_TYPES = (
    "NullFieldReadout",
    "StrictQuadraticFieldEnergyReadout",
    "OneBodyMLPFieldReadout",
    "ManyBodyChargesReadout",
    "ManyBodyChargesFieldReadout",
)


def _invariants(tensor: torch.Tensor, max_l: int) -> list[torch.Tensor]:
    """l = 0 components and smooth norms ``sqrt(|x_l|² + ε²) − ε`` of l > 0 blocks, each (..., 1)."""
    out = [tensor[..., :1]]
    for l in range(1, max_l + 1):
        block = l_block(tensor, l)
        out.append(torch.sqrt((block**2).sum(-1, keepdim=True) + 1e-8) - 1e-4)
    return out


class NullFieldReadout(torch.nn.Module):
    """No field energy beyond electrostatics."""

    def forward(self, node_scalars, multipoles, local_multipoles, features, edge_index) -> torch.Tensor:  # noqa: ANN001
        return multipoles.new_zeros(multipoles.shape[0])


class StrictQuadraticFieldEnergyReadout(torch.nn.Module):
    """Quadratic energy tied to the update's own response coefficients (the Legendre partner).

    For the affine update ``Δp_l = Σ_k a_{k,l}(h) f_{k,l}/n_{k,l} + b δ_l0`` this readout is
    ``E_i = ½ Σ_l κ_{i,l} |p_{i,l} − p_local_{i,l} − b_i δ_l0|²`` with ``1/κ_l = −Σ_k a_{k,l}/n_{k,l}``.
    When the receivers are the density Gaussians themselves (one width equal to σ, self-interaction
    treated alike in energy and features) the fixed point is then the stationary point of the
    energy: the model is variational, ``−∂E/∂ε`` equals the density dipole ``Σ(q r + d)``, and with
    constant charge μ is the Lagrange multiplier of Σq = Q. Multipoles above the response l get no
    quadratic term. Takes no trainable parameters of its own.
    """

    def __init__(self, multipole_max_l: int) -> None:
        super().__init__()
        self.multipole_max_l = multipole_max_l

    def forward(
        self, multipoles: torch.Tensor, local_multipoles: torch.Tensor, response: torch.Tensor, bias: torch.Tensor,
        feature_norms: torch.Tensor,
    ) -> torch.Tensor:
        """Per-atom energy (N,) eV from the multipoles (N, K), the local density (N, K) and the
        update's response coefficients (N, W, L+1) and charge bias (N, 1)
        (``BiasedLinearPotentialEmbedding.response``)."""
        norms = feature_norms[:, : response.shape[-1]].to(response.dtype)  # (W, L+1)
        compliance = -(response / norms).sum(1)  # (N, L+1) > 0
        target = local_multipoles.clone()
        target[:, :1] = target[:, :1] + bias
        delta = multipoles - target
        energy = delta.new_zeros(delta.shape[0])
        for l in range(response.shape[-1]):
            energy = energy + 0.5 * (l_block(delta, l) ** 2).sum(-1) / compliance[:, l]
        return energy


class OneBodyMLPFieldReadout(torch.nn.Module):
    """``E_i = MLP(h_i, invariants of p_i, invariants of f_i)``."""

    def __init__(self, num_scalars: int, multipole_max_l: int, num_widths: int, feature_max_l: int, hidden: int = 32) -> None:
        super().__init__()
        self.multipole_max_l = multipole_max_l
        self.feature_max_l = feature_max_l
        self.mlp = MLP([num_scalars + (multipole_max_l + 1) + num_widths * (feature_max_l + 1), hidden, 1])

    def forward(self, node_scalars, multipoles, local_multipoles, features, edge_index) -> torch.Tensor:  # noqa: ANN001
        inv_p = _invariants(multipoles, self.multipole_max_l)
        inv_f = [t.flatten(1) for t in _invariants(features, self.feature_max_l)]
        return self.mlp(torch.cat([node_scalars] + inv_p + inv_f, dim=-1)).squeeze(-1)  # (TorchScript: no *-unpacking)


class ManyBodyChargesReadout(torch.nn.Module):
    """Many-body energy of the charges: each atom sees its own and its neighbours' invariants.

    ``E_i = MLP(h_i, s_i, Σ_{j∈N(i)} w(r_ij) s_j)`` with ``s`` the density invariants (and field
    invariants when ``use_features``), ``w`` the cutoff-smoothed radial weights of the encoder.
    """

    def __init__(self, num_scalars: int, multipole_max_l: int, num_widths: int, feature_max_l: int, num_radial: int, use_features: bool, hidden: int = 32) -> None:
        super().__init__()
        self.multipole_max_l = multipole_max_l
        self.feature_max_l = feature_max_l
        self.use_features = use_features
        size = multipole_max_l + 1 + (num_widths * (feature_max_l + 1) if use_features else 0)
        self.radial = torch.nn.Linear(num_radial, size, bias=False)
        self.mlp = MLP([num_scalars + 2 * size, hidden, 1])

    def forward(self, node_scalars, multipoles, local_multipoles, features, edges) -> torch.Tensor:  # noqa: ANN001
        edge_radial, edge_index = edges
        parts = _invariants(multipoles, self.multipole_max_l)
        if self.use_features:
            parts += [t.flatten(1) for t in _invariants(features, self.feature_max_l)]
        own = torch.cat(parts, dim=-1)
        messages = self.radial(edge_radial) * own[edge_index[0]]
        neighbours = torch.zeros_like(own).index_add(0, edge_index[1], messages)
        return self.mlp(torch.cat([node_scalars, own, neighbours], dim=-1)).squeeze(-1)
