"""Reference labels and applied fields: their names, shapes, units, and how they are read from ASE.

Every label has a property name (the name used inside fpscf, e.g. ``"forces"``) and an extxyz key
(where it is found on an ``ase.Atoms``, e.g. ``"REF_forces"``), given by :class:`KeyMap`. A value is
looked up, in this order, in ``atoms.info``, ``atoms.arrays`` and the results of an attached
``SinglePointCalculator`` (which is where ``ase.io.read`` puts ``energy``, ``forces``, ``stress``,
``dipole``, ``charges``, ``magmoms``...).

Labels (per structure unless marked per atom), stored shapes and units:

============================= ================= ==================================================
property                      stored shape      meaning
============================= ================= ==================================================
energy                        ()                total energy (electric enthalpy), eV
forces                        (N, 3) per atom   eV/Å
stress                        (3, 3)            ASE sign: (1/V) dE/dstrain, eV/Å³; read from Voigt
                                                (xx, yy, zz, yz, xz, xy), 3x3 or 9 values
dipole                        (3,)              e·Å
charges                       (N,) per atom     e
atomic_multipoles             (N, (l+1)²)       e3nn order [q, p_x, p_y, p_z, five l=2 coefficients]
                              per atom          (e, e·Å, e·Å²); width 1, 4 or 9 gives l_max 0, 1, 2
fermi_level                   ()                eV
magmoms                       (N,) or (N, 3)    μ_B; collinear: along the spin axis n̂ = B/|B| (ẑ
                              per atom          without a field), > 0 parallel to B; the constrained
                                                moments of a structure with magnetic forces
magnetic_moment               (3,)              total moment M = −(1/μ_B) ∂E/∂B, μ_B; a single number
                                                (collinear) is stored as M n̂
noncollinear_magnetic_forces  (N, 3) per atom   −∂E/∂m_i at moments constrained to the ``magmoms``
                                                label (constrained-moment calculation), eV/μ_B
magnetic_susceptibility       (3, 3)            −∂²E/∂B_a∂B_b = μ_B ∂M_a/∂B_b, eV/T²; 3x3 or 9
                                                values (row-major)
born_effective_charges        (N, 3, 3)         e, ``Z*[I, a, b] = dF_{I,b}/d eps_a``; may be stored
                              per atom          flattened (N, 9) in row-major order, index 3a + b
polarizability                (3, 3)            e·Å²/V; 3x3 or 9 values (row-major)
esps                          (N,) per atom     electrostatic potential of the reference density
                                                (plus the applied field's −ε·r) at each nucleus, V
field_features                (N, F) per atom   reference field features (the model's layout,
                                                widths × (l_f+1)², flattened), V, V/Å, V/Å²
hessian                       (N², 3, 3)        ∂²E/∂R_{iα}∂R_{jβ}, eV/Å², row i·N + j holds [α, β]
                              per atom pair     of atoms i, j; read from (3N, 3N) (``info``), or
                                                (N, 9N) / (N, 3, N, 3) (``arrays``, row i: [α, j, β])
level                         () int64          level of theory / data-set head index
spin_on                       () bool           structure is magnetic
============================= ================= ==================================================

Inputs (never masked, zero when absent): ``total_charge`` () e, ``external_field`` (3,) V/Å,
``magnetic_field`` (3,) T.

Per-property loss weights are read from ``atoms.info["<property>_weight"]`` (for example
``energy_weight``, ``forces_weight``), a non-negative number per structure, default 1; every
floating-point label has one (``level`` and ``spin_on`` have none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

#: Names of all reference labels, in a fixed order.
LABEL_NAMES: tuple[str, ...] = (
    "energy",
    "forces",
    "stress",
    "dipole",
    "charges",
    "atomic_multipoles",
    "fermi_level",
    "magmoms",
    "magnetic_moment",
    "noncollinear_magnetic_forces",
    "magnetic_susceptibility",
    "born_effective_charges",
    "polarizability",
    "esps",
    "field_features",
    "hessian",
    "level",
    "spin_on",
)
#: Labels with one row per atom (leading dimension N); all others have one row per structure.
PER_ATOM_LABELS: frozenset[str] = frozenset({
    "forces", "charges", "atomic_multipoles", "magmoms", "noncollinear_magnetic_forces", "born_effective_charges",
    "esps", "field_features",
})
#: Labels with one row per pair of atoms of a structure (leading dimension N², row i·N + j).
PER_PAIR_LABELS: frozenset[str] = frozenset({"hessian"})
#: Labels stored as int64 and bool; all others are floating point.
INTEGER_LABELS: frozenset[str] = frozenset({"level"})
BOOL_LABELS: frozenset[str] = frozenset({"spin_on"})
#: Inputs read with the labels: applied fields and total charge.
INPUT_NAMES: tuple[str, ...] = ("total_charge", "external_field", "magnetic_field")

# Accepted raw shapes; "N" stands for the number of atoms.
_ACCEPTED_SHAPES: dict[str, tuple[tuple[Any, ...], ...]] = {
    "energy": ((),),
    "forces": (("N", 3),),
    "stress": ((3, 3), (6,), (9,)),
    "dipole": ((3,),),
    "charges": (("N",), ("N", 1)),
    "atomic_multipoles": (("N", 1), ("N",), ("N", 4), ("N", 9)),
    "fermi_level": ((),),
    "magmoms": (("N",), ("N", 3)),
    "magnetic_moment": ((3,), ()),
    "noncollinear_magnetic_forces": (("N", 3),),
    "magnetic_susceptibility": ((3, 3), (9,)),
    "born_effective_charges": (("N", 3, 3), ("N", 9)),
    "polarizability": ((3, 3), (9,)),
    "esps": (("N",), ("N", 1)),
    "field_features": (("N", "F"),),
    "hessian": (("NN", 3, 3), ("3N", "3N"), ("N", "9N"), ("N", 3, "N", 3)),
    "level": ((),),
    "spin_on": ((),),
    "total_charge": ((),),
    "external_field": ((3,),),
    "magnetic_field": ((3,),),
}


@dataclass(frozen=True)
class KeyMap:
    """Where each property is stored on an ``ase.Atoms`` (extxyz key names).

    Defaults are the plain property names. Set a field to another key to read e.g. DFT labels
    stored as ``REF_energy``, or to ``None`` to ignore that label. Build variants with
    ``dataclasses.replace(KeyMap(), energy="REF_energy")``.

    The weight of property ``p`` is read from ``atoms.info[p + weight_suffix]`` (by default
    ``energy_weight``, ``forces_weight``, ...), independent of the key of ``p`` itself.
    """

    energy: str | None = "energy"
    forces: str | None = "forces"
    stress: str | None = "stress"
    dipole: str | None = "dipole"
    charges: str | None = "charges"
    atomic_multipoles: str | None = "atomic_multipoles"
    fermi_level: str | None = "fermi_level"
    magmoms: str | None = "magmoms"
    magnetic_moment: str | None = "magnetic_moment"
    noncollinear_magnetic_forces: str | None = "noncollinear_magnetic_forces"
    magnetic_susceptibility: str | None = "magnetic_susceptibility"
    born_effective_charges: str | None = "born_effective_charges"
    polarizability: str | None = "polarizability"
    esps: str | None = "esps"
    field_features: str | None = "field_features"
    hessian: str | None = "hessian"
    level: str | None = "level"
    spin_on: str | None = "spin_on"
    total_charge: str = "total_charge"
    external_field: str = "external_field"
    magnetic_field: str = "magnetic_field"
    weight_suffix: str = "_weight"

    def label_keys(self) -> dict[str, str]:
        """Property name -> extxyz key for every label that is read (key not None)."""
        keys = {name: getattr(self, name) for name in LABEL_NAMES}
        return {name: key for name, key in keys.items() if key is not None}

    def weight_key(self, name: str) -> str:
        """The ``atoms.info`` key holding the loss weight of property ``name``."""
        return f"{name}{self.weight_suffix}"

    @classmethod
    def inputs_only(cls) -> KeyMap:
        """A map reading no labels, only total charge and fields (for inference)."""
        return cls(**{name: None for name in LABEL_NAMES})


@dataclass
class StructureProperties:
    """Validated labels, weights and inputs of one structure, as numpy arrays in fpscf units.

    Attributes:
        labels: property name -> value in its stored shape (see module docstring); only the
            labels that were found.
        weights: property name -> weight (default 1.0) for every floating-point label of the key
            map (not for ``level`` and ``spin_on``, which are not fitted).
        total_charge: e.
        external_field: (3,) V/Å.
        magnetic_field: (3,) T.
    """

    labels: dict[str, np.ndarray]
    weights: dict[str, float]
    total_charge: float
    external_field: np.ndarray
    magnetic_field: np.ndarray


def read_properties(
    atoms: Atoms, key_map: KeyMap | None = None, index: int = 0
) -> StructureProperties:
    """Read and validate the labels, weights and inputs of one structure.

    Args:
        atoms: the structure.
        key_map: where to find each property; ``KeyMap()`` if None.
        index: position of the structure in its data set, used in error messages.

    Raises:
        ValueError: a value of the wrong shape or type, or a non-finite value, naming the structure
            index, the key, the shape found and the shape expected.
    """
    key_map = KeyMap() if key_map is None else key_map
    num_atoms = len(atoms)
    labels = {}
    for name, key in key_map.label_keys().items():
        raw = _lookup(atoms, key)
        if raw is not None:
            labels[name] = _convert(name, key, raw, num_atoms, index)
    weights = {}
    for name in key_map.label_keys():
        if label_dtype_kind(name) != "float":
            continue  # level and spin_on describe the structure; they are not fitted
        weight_key = key_map.weight_key(name)
        raw = atoms.info.get(weight_key)
        weights[name] = 1.0 if raw is None else _weight(weight_key, raw, index)
    inputs = {}
    for name in INPUT_NAMES:
        key = getattr(key_map, name)
        raw = _lookup(atoms, key)
        inputs[name] = (
            np.zeros(_ACCEPTED_SHAPES[name][0]) if raw is None
            else _convert(name, key, raw, num_atoms, index)
        )
    if "magnetic_moment" in labels and np.size(_lookup(atoms, key_map.magnetic_moment)) == 1:
        # a collinear total moment lies along the spin axis (fpscf.scf.magnetic.spin_axis)
        labels["magnetic_moment"] = labels["magnetic_moment"][2] * _spin_axis(inputs["magnetic_field"])
    return StructureProperties(
        labels=labels,
        weights=weights,
        total_charge=float(inputs["total_charge"]),
        external_field=inputs["external_field"],
        magnetic_field=inputs["magnetic_field"],
    )


def label_rows(name: str, num_atoms: int) -> int:
    """Leading dimension of a label of one structure of ``num_atoms`` atoms: N per atom, N² per
    pair of atoms, 1 per structure."""
    if name in PER_ATOM_LABELS:
        return num_atoms
    if name in PER_PAIR_LABELS:
        return num_atoms * num_atoms
    return 1


def default_label_shape(name: str, num_atoms: int) -> tuple[int, ...]:
    """Stored shape of a missing label (zero-filled and masked): the first accepted shape."""
    return _expand(_ACCEPTED_SHAPES[name][0], num_atoms)


def label_dtype_kind(name: str) -> str:
    """``"int"``, ``"bool"`` or ``"float"``: how a label is stored."""
    if name in INTEGER_LABELS:
        return "int"
    if name in BOOL_LABELS:
        return "bool"
    return "float"


def to_storage(name: str, value: np.ndarray) -> Any:
    """Convert a stored label of one structure into what is written to ``atoms.info/arrays``.

    Born effective charges are flattened to (N, 9) (extxyz columns are at most 2-D); scalars
    become Python numbers; everything else is kept.
    """
    if name == "born_effective_charges":
        return value.reshape(value.shape[0], 9)
    if name in PER_PAIR_LABELS:  # (N², 3, 3) -> (N, 9N): atom i's row [α, j, β]
        n = int(round(value.shape[0] ** 0.5))
        return value.reshape(n, n, 3, 3).transpose(0, 2, 1, 3).reshape(n, 9 * n)
    if value.ndim == 0:
        kind = label_dtype_kind(name)
        return bool(value) if kind == "bool" else int(value) if kind == "int" else float(value)
    return value


def _spin_axis(field: np.ndarray) -> np.ndarray:
    """Collinear spin axis n̂ = B/|B| (3,), ẑ without a field."""
    norm = float(np.linalg.norm(field))
    return field / norm if norm > 0 else np.array([0.0, 0.0, 1.0])


def _lookup(atoms: Atoms, key: str) -> Any:
    """Value stored under ``key`` in info, arrays or a single-point calculator; None if absent."""
    if key in atoms.info and atoms.info[key] is not None:
        return atoms.info[key]
    if key in atoms.arrays:
        return atoms.arrays[key]
    calc = atoms.calc
    if isinstance(calc, SinglePointCalculator) and calc.results.get(key) is not None:
        return calc.results[key]
    return None


def _expand(template: tuple[Any, ...], num_atoms: int) -> tuple[int, ...]:
    sizes = {"N": num_atoms, "F": 1, "NN": num_atoms * num_atoms, "3N": 3 * num_atoms, "9N": 9 * num_atoms}
    return tuple(sizes.get(d, d) if isinstance(d, str) else d for d in template)


def _convert(name: str, key: str, raw: Any, num_atoms: int, index: int) -> np.ndarray:
    """Check one raw value against the accepted shapes and return it in its stored shape."""
    where = f"structure {index}: property '{name}' (key '{key}')"
    value = np.asarray(raw)
    kind = label_dtype_kind(name)
    if value.dtype.kind not in "biuf":
        raise ValueError(f"{where} has non-numeric value {raw!r} of type {value.dtype}; "
                         "expected numbers. Fix the file or point KeyMap at the right key.")
    accepted = [_expand(t, num_atoms) for t in _ACCEPTED_SHAPES[name]]
    if name == "field_features" and value.ndim == 2:  # any feature width F
        accepted = [(num_atoms, value.shape[1])]
    if value.shape == (1,) and () in accepted:
        value = value.reshape(())
    if value.shape not in accepted:
        expected = " or ".join(str(s) for s in accepted)
        hint = ""
        if name == "atomic_multipoles" and value.ndim == 2 and value.shape[0] == num_atoms:
            hint = (f" Width {value.shape[1]} is not (l_max+1)^2 for l_max 0, 1 or 2 "
                    "(widths 1, 4, 9 in e3nn order [q, p_x, p_y, p_z, l=2...]).")
        raise ValueError(
            f"{where} has shape {value.shape}, expected {expected} (structure has {num_atoms} "
            f"atoms).{hint} Fix the file or point KeyMap.{name} at the right key."
        )
    if kind == "bool":
        if value.dtype.kind != "b" and not np.all((value == 0) | (value == 1)):
            raise ValueError(f"{where} is {raw!r}, expected a boolean (T/F).")
        return value.astype(bool)
    if kind == "int":
        if value.dtype.kind == "f" and not np.all(np.isfinite(value) & (value == np.round(value))):
            raise ValueError(f"{where} is {raw!r}, expected an integer.")
        return value.astype(np.int64)
    value = value.astype(np.float64)
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{where} contains non-finite values (nan or inf): {value.tolist()}.")
    return _canonical_shape(name, value, num_atoms)


def _canonical_shape(name: str, value: np.ndarray, num_atoms: int) -> np.ndarray:
    """Reshape an accepted float value to its stored shape."""
    if name == "stress" and value.shape == (6,):
        xx, yy, zz, yz, xz, xy = value
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    if name in ("stress", "polarizability", "magnetic_susceptibility"):
        return value.reshape(3, 3)
    if name == "magnetic_moment" and value.shape == ():  # collinear; turned to the spin axis by read_properties
        return np.array([0.0, 0.0, float(value)])
    if name == "born_effective_charges":
        return value.reshape(num_atoms, 3, 3)
    if name in PER_PAIR_LABELS and value.shape != (num_atoms * num_atoms, 3, 3):
        return value.reshape(num_atoms, 3, num_atoms, 3).transpose(0, 2, 1, 3).reshape(num_atoms * num_atoms, 3, 3)
    if name in ("charges", "esps"):
        return value.reshape(num_atoms)
    if name == "atomic_multipoles":
        return value.reshape(num_atoms, -1)
    return value


def _weight(key: str, raw: Any, index: int) -> float:
    value = np.asarray(raw)
    if value.dtype.kind not in "biuf" or value.size != 1:
        raise ValueError(f"structure {index}: weight '{key}' is {raw!r}, expected one number >= 0.")
    weight = float(value.reshape(()))
    if not np.isfinite(weight) or weight < 0:
        raise ValueError(
            f"structure {index}: weight '{key}' is {weight}, expected a finite number >= 0."
        )
    return weight


__all__ = [
    "BOOL_LABELS",
    "INPUT_NAMES",
    "INTEGER_LABELS",
    "LABEL_NAMES",
    "PER_ATOM_LABELS",
    "PER_PAIR_LABELS",
    "KeyMap",
    "StructureProperties",
    "default_label_shape",
    "label_dtype_kind",
    "label_rows",
    "read_properties",
    "to_storage",
]
