"""Soft bound of the local (field-free) multipoles the geometry encoder predicts.

A network extrapolating to an environment it never saw can return any number; a local charge of
−4 e on an oxygen squeezed in the liquid made a Hartree energy that beat the repulsive wall. Each
l block ``x_l`` of the raw prediction (in units of the element's density scale) is mapped to
``x_l · B tanh(|x_l|/B)/|x_l|``: equal to ``x_l`` to O(|x_l|³/B²) for ordinary values, never longer
than B, smooth and equivariant (it only rescales each block by a function of its norm).
"""

import torch


class LocalMultipoleBound(torch.nn.Module):
    """``bound`` B in units of the per-element density scale (0 disables); input and output (N, K)
    raw local multipoles, K = (l_max+1)² or fewer leading components."""

    bound: float

    def __init__(self, bound: float) -> None:
        super().__init__()
        if not bound >= 0:
            raise ValueError(f"local_multipole_bound must be >= 0 (0: no bound), got {bound!r}")
        self.bound = float(bound)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        if self.bound <= 0.0:
            return raw
        blocks = []
        size = raw.shape[-1]
        l = 0
        while l * l < size:
            block = raw[:, l * l : min((l + 1) * (l + 1), size)]
            norm = torch.sqrt((block * block).sum(-1, keepdim=True) + 1e-30)
            blocks.append(block * (self.bound * torch.tanh(norm / self.bound) / norm))
            l += 1
        return torch.cat(blocks, dim=-1)
