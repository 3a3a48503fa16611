"""Equivariant readouts of node features: per-atom scalars and per-atom irreps (e.g. multipoles)."""

import torch
from e3nn import o3
from torch import Tensor

from .mlp import MLP, ScaledSiLU


class ScalarReadout(torch.nn.Module):
    """Per-atom invariants: ``Linear(scalars of x) -> hidden``, SiLU, ``Linear -> num_outputs``.

    Only the ``0e`` part of the input enters (the map is rotation and inversion invariant).
    ``x``: ``(N, irreps_in.dim)`` -> ``(N, num_outputs)``.
    """

    def __init__(self, irreps_in: o3.Irreps, hidden: int, num_outputs: int = 1) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        if self.irreps_in.count("0e") == 0:
            raise ValueError(f"ScalarReadout irreps_in={irreps_in} has no scalars (0e) to read out.")
        if hidden < 1 or num_outputs < 1:
            raise ValueError(f"ScalarReadout(hidden={hidden}, num_outputs={num_outputs}): expected positive integers.")
        self.irreps_out = o3.Irreps(f"{num_outputs}x0e")
        self.linear = o3.Linear(self.irreps_in, o3.Irreps(f"{hidden}x0e"), biases=True)
        self.activation = ScaledSiLU()
        self.output = MLP([hidden, num_outputs], bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self.activation(self.linear(x)))


class IrrepsReadout(torch.nn.Module):
    """Equivariant linear map ``x (N, irreps_in.dim) -> (N, irreps_out.dim)``, e.g. to ``0e + 1o + 2e``.

    Each output irrep is a learned combination of the input channels of the same irrep (``o3.Linear``);
    with ``bias=True`` the ``0e`` outputs get a learned constant. Output irreps without a matching
    input irrep are rejected (they would be identically zero).
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps, bias: bool = False) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        available = {ir for _, ir in self.irreps_in}
        missing = [str(ir) for _, ir in self.irreps_out if ir not in available and not (bias and ir == o3.Irrep("0e"))]
        if missing:
            raise ValueError(
                f"IrrepsReadout cannot produce {missing} of irreps_out={self.irreps_out} "
                f"from irreps_in={self.irreps_in}: "
                f"no input irrep of that type (raise max_L of the encoder or drop them)."
            )
        self.linear = o3.Linear(self.irreps_in, self.irreps_out, biases=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)
