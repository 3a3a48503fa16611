"""fpscf.nn: e3nn building blocks of the geometry encoder (radial basis, interactions, products, readouts)."""

from __future__ import annotations

from .config import EncoderConfig, natural_irreps
from .convolution import SphericalConvolution
from .encoder import EquivariantEncoder
from .interaction import InteractionBlock, message_irreps
from .mlp import MLP, ScaledSiLU
from .product import ChannelwiseProduct, ProductBlock, ProductStep
from .radial import BesselBasis, PolynomialCutoff, RadialEmbedding
from .readout import IrrepsReadout, ScalarReadout

__all__ = [
    "BesselBasis",
    "ChannelwiseProduct",
    "SphericalConvolution",
    "EncoderConfig",
    "EquivariantEncoder",
    "InteractionBlock",
    "IrrepsReadout",
    "MLP",
    "PolynomialCutoff",
    "ProductBlock",
    "ProductStep",
    "RadialEmbedding",
    "ScalarReadout",
    "ScaledSiLU",
    "message_irreps",
    "natural_irreps",
]
