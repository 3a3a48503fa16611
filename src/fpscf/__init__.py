"""fpscf: equivariant interatomic potentials with a self-consistent charge density under fields."""

from __future__ import annotations

__version__ = "0.1.0"

from fpscf.domain import NonFiniteResultError, OutOfDomainWarning, TrainingDomain  # noqa: E402
from fpscf.model import FixedPointModel, build_model  # noqa: E402
from fpscf.model_io import load_model  # noqa: E402


def __getattr__(name: str):  # lazy: ASE calculator pulls in ase.calculators
    if name == "FixedPointCalculator":
        from fpscf.calculators.fixed_point import FixedPointCalculator

        return FixedPointCalculator
    raise AttributeError(name)


__all__ = [
    "FixedPointCalculator",
    "FixedPointModel",
    "NonFiniteResultError",
    "OutOfDomainWarning",
    "TrainingDomain",
    "build_model",
    "load_model",
    "__version__",
]
