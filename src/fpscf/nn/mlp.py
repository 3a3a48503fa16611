"""Scalar multilayer perceptron with SiLU activations."""

import math
from typing import Sequence

import torch
from e3nn.math import normalize2mom
from torch import Tensor


class ScaledSiLU(torch.nn.Module):
    """SiLU scaled to unit second moment for unit-normal inputs (e3nn's ``normalize2mom``)."""

    scale: float

    def __init__(self) -> None:
        super().__init__()
        self.scale = float(normalize2mom(torch.nn.functional.silu).cst)

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * torch.nn.functional.silu(x)


class MLP(torch.nn.Module):
    """Fully connected network on invariant features, ``(..., dims[0]) -> (..., dims[-1])``.

    SiLU between layers, none after the last. Weights are drawn with variance ``1/fan_in`` so that
    unit-variance inputs give unit-variance activations. With ``bias=False`` the map sends zero to
    zero (used by the radial MLP so that the cutoff envelope carries through).
    """

    def __init__(self, dims: Sequence[int], bias: bool = True) -> None:
        super().__init__()
        dims = [int(d) for d in dims]
        if len(dims) < 2 or min(dims) < 1:
            raise ValueError(f"MLP dims={dims} is invalid: expected at least two positive layer widths.")
        self.dims = dims
        layers: list[torch.nn.Module] = []
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            linear = torch.nn.Linear(d_in, d_out, bias=bias)
            with torch.no_grad():
                linear.weight.normal_(0.0, 1.0 / math.sqrt(d_in))
                if bias:
                    linear.bias.zero_()
            layers.append(linear)
            if i < len(dims) - 2:
                layers.append(ScaledSiLU())
        self.layers = torch.nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(..., dims[0])`` -> ``(..., dims[-1])``."""
        return self.layers(x)
