"""Building modules in a given floating-point precision.

e3nn (and :mod:`fpscf.nn`) create their Clebsch-Gordan constants in ``torch.get_default_dtype()`` when a
module is constructed. A module built in float32 and cast with ``.double()`` computes in float64 but
keeps float32-rounded constants (equivariance errors ~1e-7). Build under the precision you will run in::

    with default_dtype(torch.float64):
        encoder = EquivariantEncoder(config)
"""

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Temporarily set ``torch.set_default_dtype(dtype)`` (float32 or float64), restoring it on exit."""
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"default_dtype({dtype}): expected torch.float32 or torch.float64.")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
