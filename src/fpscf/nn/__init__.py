"""fpscf.nn: e3nn building blocks of the geometry encoder (radial basis, interactions, products, readouts).

Every module here runs under ``torch.jit.script`` and ``torch.export``: forward code is plain torch,
module constants are typed class attributes, and the modules avoid ``from __future__ import
annotations`` (TorchScript cannot resolve string annotations of class attributes).
"""

from __future__ import annotations

from .config import EncoderConfig, natural_irreps
from .convolution import SphericalConvolution
from .dtypes import default_dtype
from .encoder import EquivariantEncoder
from .interaction import InteractionBlock, message_irreps
from .mlp import MLP, ScaledSiLU
from .product import ChannelwiseProduct, ProductBlock, ProductStep
from .radial import BesselBasis, PolynomialCutoff, RadialEmbedding
from .readout import IrrepsReadout, ScalarReadout

__all__ = [
    "BesselBasis",
    "ChannelwiseProduct",
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
    "SphericalConvolution",
    "default_dtype",
    "message_irreps",
    "natural_irreps",
]
