"""Checks of what enters the ASE calculator: parameters (fields, total charge) and per-structure
inputs in ``atoms.info``. Each bad value raises :class:`~fpscf.errors.InputError` naming the
parameter, the value, what was expected and the fix.

Total charge (e): ``atoms.info['total_charge']``, else ``atoms.info['charge']`` (the key several ASE
calculators and extended XYZ files use), else the calculator's ``total_charge``, else 0. It must be
a finite number between −ΣZ and +ΣZ (ΣZ: the structure's electron count when neutral; a positive
total charge removes electrons, and no structure loses more electrons than it has, nor binds as
many extra as it has). A fractional total charge is legal (doped cells, fractional-charge studies)
but usually a mistake: it gives an :class:`~fpscf.errors.InputWarning`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from fpscf.errors import InputError

#: atoms.info keys read as the total charge (e), first found wins; "charge" is ASE's and extxyz's.
TOTAL_CHARGE_KEYS: tuple[str, ...] = ("total_charge", "charge")


def vector3(value: Any, name: str, unit: str) -> np.ndarray:
    """``value`` as a finite (3,) float array; ``name`` and ``unit`` (e.g. ``"V/Å"``) for the message."""
    example = f"{name}=[0, 0, 0.05]"
    if isinstance(value, str):
        raise InputError(f"{name} must be 3 numbers in {unit}, e.g. {example}; got the string {value!r}")
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be 3 numbers in {unit}, e.g. {example}; got {value!r}") from None
    if array.shape != (3,) or not np.all(np.isfinite(array)):
        raise InputError(f"{name} must be 3 finite numbers in {unit}, e.g. {example}; got {value!r}")
    return array


def total_charge(value: Any, where: str, numbers_: Any) -> float:
    """The total charge ``value`` (e) of a structure with atomic numbers ``numbers_``, checked:
    a finite real number within ±ΣZ. ``where`` names its source for the message."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise InputError(f"{where} must be one finite number (e, +1 for a cation), got {value!r}")
    charge = float(value)
    electrons = int(np.sum(numbers_))
    if abs(charge) > electrons:
        raise InputError(
            f"{where} = {charge:g} e is impossible for a structure of {len(numbers_)} atoms with {electrons} electrons "
            f"when neutral (allowed: -{electrons} to +{electrons} e); the total charge is in units of e, positive for "
            "a cation (e.g. 1 for H3O+, -1 for OH-)"
        )
    return charge


def structure_charge(info: dict[str, Any], default: float | None, numbers_: Any) -> tuple[float | None, str]:
    """(total charge in e or None, where it came from) of a structure: ``info['total_charge']``, else
    ``info['charge']``, else ``default`` (the calculator's). Both keys given and different: an error."""
    found = [(key, info[key]) for key in TOTAL_CHARGE_KEYS if info.get(key) is not None]
    if len(found) == 2:
        a, b = (total_charge(v, f"atoms.info[{k!r}]", numbers_) for k, v in found)
        if a != b:
            raise InputError(
                f"atoms.info['total_charge'] = {a:g} and atoms.info['charge'] = {b:g} disagree; set one of them"
            )
    if found:
        key, value = found[0]
        return total_charge(value, f"atoms.info[{key!r}]", numbers_), f"atoms.info[{key!r}]"
    if default is None:
        return None, ""
    return total_charge(default, "total_charge", numbers_), "total_charge"


__all__ = ["TOTAL_CHARGE_KEYS", "structure_charge", "total_charge", "vector3"]
