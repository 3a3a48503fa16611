"""fpscf: equivariant interatomic potentials with a self-consistent charge density under fields."""

from __future__ import annotations

__version__ = "0.1.0"

#: Public names and the module each is imported from on first use, so that ``import fpscf`` (and
#: ``fpscf --help``) does not load torch, e3nn and ASE before they are needed.
_LAZY = {
    "FixedPointCalculator": "fpscf.calculators.fixed_point",
    "FixedPointModel": "fpscf.model",
    "build_model": "fpscf.model",
    "load_model": "fpscf.model_io",
    "NonFiniteResultError": "fpscf.domain",
    "OutOfDomainWarning": "fpscf.domain",
    "TrainingDomain": "fpscf.domain",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fpscf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
