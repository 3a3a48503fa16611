"""The package's own exceptions and warnings: one small hierarchy, so callers (and the CLI) can
tell a user error with a clear message from a bug.

Every error fpscf raises on purpose derives from :class:`FpscfError`; each also derives from the
builtin it used to be (``ValueError``, ``RuntimeError``, ``FileNotFoundError``), so existing
``except ValueError`` code keeps working. Messages name the bad value, what was expected and the fix.

- :class:`InputError` (``ValueError``): a structure or parameter the calculator or a command cannot
  use (unknown element, non-finite position, degenerate cell, impossible total charge, ...).
- :class:`ModelFileError` (``ValueError``): a model file that is missing, foreign, corrupt or written
  by an incompatible fpscf; :class:`ModelNotFoundError` also derives from ``FileNotFoundError``.
- :class:`CheckpointError` (``ValueError``): a training checkpoint that is corrupt, not weights-only,
  or does not belong to the config it is resumed with.
- :class:`NonFiniteResultError` (``RuntimeError``): a non-finite or absurd energy, force or other
  result of a converged model.

Domain-specific subclasses live beside the code that raises them (``ConfigError``,
``TrainingError``, ``SCFConvergenceError``, ``ExportError``, ``SpectraError``, ...).
"""

from __future__ import annotations


class FpscfError(Exception):
    """Base of every error fpscf raises on purpose (a user error with a message, not a bug)."""


class InputError(FpscfError, ValueError):
    """A structure or parameter that cannot be used; the message names it and the fix."""


class InputTypeError(InputError, TypeError):
    """A parameter of the wrong type (an InputError that is also the TypeError Python code expects)."""


class ModelFileError(FpscfError, ValueError):
    """A model file that cannot be loaded: foreign, corrupt, tampered with, or from another fpscf."""


class ModelNotFoundError(ModelFileError, FileNotFoundError):
    """No model file (and no shipped model) of the given name."""


class CheckpointError(FpscfError, ValueError):
    """A training checkpoint that cannot be resumed (corrupt, unsafe, or from another config)."""


class NonFiniteResultError(FpscfError, RuntimeError):
    """The model produced a non-finite (or absurdly large) energy, force or other result."""


class OutOfDomainWarning(UserWarning):
    """A structure lies outside the ranges the model was trained on: its results are extrapolation."""


class InputWarning(UserWarning):
    """An input that is legal but unusual (a fractional total charge, an ignored key): results follow."""


__all__ = [
    "CheckpointError",
    "FpscfError",
    "InputError",
    "InputTypeError",
    "InputWarning",
    "ModelFileError",
    "ModelNotFoundError",
    "NonFiniteResultError",
    "OutOfDomainWarning",
]
