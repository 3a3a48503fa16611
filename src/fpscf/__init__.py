"""fpscf: equivariant interatomic potentials with a self-consistent charge density under fields."""

from __future__ import annotations

__version__ = "0.1.0"
