"""Evaluate a model on labelled structures: predictions, errors per property, parity plots.

``fpscf eval MODEL DATA.xyz --out DIR`` (the counterpart of MACE's ``mace_eval_configs`` and
``nequip-evaluate``) runs :func:`evaluate_file`: every structure of an extended XYZ file is
computed with :class:`fpscf.FixedPointCalculator` in its own applied field, total charge and
magnetic field (read per structure as in training, :mod:`fpscf.data.labels`), and the predictions
are compared with whatever reference labels the file has. Written to ``DIR``:

- ``predictions.xyz``: the input structures with their labels unchanged and the predictions under
  ``fpscf_<property>`` keys (per-structure ones in ``info``, per-atom ones in ``arrays``; tensors
  flattened row-major: polarizability 9 values, Born charges (N, 9));
- ``errors.json`` and ``errors.txt``: RMSE and MAE per property over all components of all
  structures that have the label (energy also per atom; stress over the 6 Voigt components,
  ASE's sign and order);
- ``parity.png``: reference against prediction, one panel per property.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Properties compared with labels, with their units (fpscf units, :mod:`fpscf.units`). The keys
#: are both the label names (:data:`fpscf.data.labels.LABEL_NAMES`) and the calculator's names.
EVALUATED_UNITS: dict[str, str] = {
    "energy": "eV",
    "energy_per_atom": "eV/atom",
    "forces": "eV/Å",
    "stress": "eV/Å³",
    "dipole": "e·Å",
    "charges": "e",
    "atomic_multipoles": "e·Åˡ",
    "polarizability": "e·Å²/V",
    "born_effective_charges": "e",
    "magmoms": "μ_B",
    "magnetic_moment": "μ_B",
    "magnetic_susceptibility": "eV/T²",
}
#: Always predicted (stress only for fully periodic structures), labelled or not.
DEFAULT_PREDICTIONS = ("energy", "forces", "stress", "dipole", "charges")
#: Predicted only when the structure has the label, or when asked for (several derivative passes).
ON_REQUEST = ("atomic_multipoles", "polarizability", "born_effective_charges", "magmoms", "magnetic_moment",
              "magnetic_susceptibility")
PREFIX = "fpscf_"


@dataclass
class PropertyErrors:
    """Errors of one property: ``count`` compared values (components), RMSE and MAE in ``unit``."""

    unit: str
    count: int = 0
    sum_squared: float = 0.0
    sum_absolute: float = 0.0
    structures: int = 0

    def add(self, reference: np.ndarray, predicted: np.ndarray) -> None:
        error = np.asarray(predicted, dtype=float).ravel() - np.asarray(reference, dtype=float).ravel()
        self.count += error.size
        self.sum_squared += float(np.sum(error**2))
        self.sum_absolute += float(np.sum(np.abs(error)))
        self.structures += 1

    @property
    def rmse(self) -> float:
        return math.sqrt(self.sum_squared / self.count) if self.count else math.nan

    @property
    def mae(self) -> float:
        return self.sum_absolute / self.count if self.count else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "rmse": self.rmse, "mae": self.mae, "values": self.count,
                "structures": self.structures}


@dataclass
class Evaluation:
    """What :func:`evaluate_file` computed: per-property errors, the reference/prediction pairs of the
    parity plots, the written files and the time taken (s)."""

    errors: dict[str, PropertyErrors]
    pairs: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = field(default_factory=dict)
    structures: int = 0
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> str:
        """The errors as a fixed-width text table (property, unit, structures, values, RMSE, MAE)."""
        if not self.errors:
            return "no reference labels to compare with (predictions only)"
        lines = [f"{'property':<24} {'unit':<8} {'structures':>10} {'values':>8} {'RMSE':>11} {'MAE':>11}"]
        for name, errors in self.errors.items():
            lines.append(f"{name:<24} {errors.unit:<8} {errors.structures:>10} {errors.count:>8} "
                         f"{errors.rmse:>11.4e} {errors.mae:>11.4e}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"structures": self.structures, "errors": {k: v.to_dict() for k, v in self.errors.items()},
                "seconds": round(self.seconds, 3)}


def _inputs_only(atoms: Any, properties: Any) -> Any:
    """A copy with positions, cell and the model inputs of ``properties`` only, so no label of the
    file (a stored ``fermi_level``, say) can be taken as an input by the calculator."""
    from ase import Atoms

    clean = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    clean.info["external_field"] = [float(x) for x in properties.external_field]
    clean.info["total_charge"] = float(properties.total_charge)
    clean.info["magnetic_field"] = [float(x) for x in properties.magnetic_field]
    if "spin_on" in properties.labels:
        clean.info["spin_on"] = bool(properties.labels["spin_on"])
    for key in ("initial_magmoms", "initial_noncollinear_magmoms"):
        if key in atoms.arrays:
            clean.arrays[key] = np.array(atoms.arrays[key])
    return clean


def _compared(name: str, value: np.ndarray) -> np.ndarray:
    """The components compared for a property: stress as ASE's 6 Voigt components."""
    if name == "stress":
        value = np.asarray(value, dtype=float)
        if value.shape == (3, 3):
            return np.array([value[0, 0], value[1, 1], value[2, 2], value[1, 2], value[0, 2], value[0, 1]])
    return np.asarray(value, dtype=float)


def _stored(value: Any, per_atom: bool) -> Any:
    """A prediction in a form extxyz writes and reads back: per-atom tensors as (N, k), others flat."""
    array = np.asarray(value, dtype=float)
    if array.ndim == 0:
        return float(array)
    if per_atom:
        return array.reshape(len(array), -1) if array.ndim > 2 else array
    return array.ravel()


def evaluate_file(
    model: Any,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    key_map: Any = None,
    properties: Iterable[str] = (),
    scf_tolerance: float = 1e-6,
    plots: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Evaluation:
    """Compute every structure of ``data`` with ``model`` and compare with the file's labels.

    Args:
        model: a model, a model file or a shipped model name (as :class:`fpscf.FixedPointCalculator`).
        data: extended XYZ file; labels, total charge and fields read per structure with ``key_map``.
        out: directory for ``predictions.xyz``, ``errors.json``, ``errors.txt`` and ``parity.png``
            (None: nothing is written).
        key_map: a :class:`fpscf.data.labels.KeyMap` (where the labels are stored; default the plain names).
        properties: more properties to predict for every structure (of :data:`ON_REQUEST`); labelled
            ones are always predicted.
        scf_tolerance: SCF tolerance of the calculator.
        plots: write ``parity.png``.
        progress: called with a line of text about ten times during the run (None: silent).

    Returns:
        The :class:`Evaluation`.

    Raises:
        FileNotFoundError, ValueError: a missing or malformed data file (the message names the
            structure and key), or an unknown property in ``properties``.
    """
    from fpscf.calculators.fixed_point import FixedPointCalculator
    from fpscf.data.extxyz import read_extxyz
    from fpscf.data.labels import PER_ATOM_LABELS, KeyMap, read_properties

    extra = set(properties)
    unknown = extra - set(ON_REQUEST)
    if unknown:
        raise ValueError(f"cannot predict {sorted(unknown)} with fpscf eval; choose from {list(ON_REQUEST)}")
    key_map = key_map or KeyMap()
    start = time.perf_counter()
    frames = read_extxyz(data, key_map)
    calculator = FixedPointCalculator(model=model, scf_tolerance=scf_tolerance)
    magnetic = calculator.model.config.magnetic_moments != "none"
    evaluation = Evaluation(errors={})
    report_every = max(1, math.ceil(len(frames) / 10))
    for index, atoms in enumerate(frames):
        labels = read_properties(atoms, key_map, index)
        periodic = bool(np.all(atoms.pbc))
        wanted = [name for name in DEFAULT_PREDICTIONS if name != "stress" or periodic]
        wanted += [name for name in ON_REQUEST if (name in labels.labels or name in extra)
                   and (magnetic or not name.startswith("mag"))]
        clean = _inputs_only(atoms, labels)
        results = calculator.get_properties(wanted, clean)
        for name in wanted:
            per_atom = name in PER_ATOM_LABELS
            target = atoms.arrays if per_atom else atoms.info
            target[PREFIX + name] = _stored(results[name], per_atom)
            if name not in labels.labels:
                continue
            reference, predicted = _compared(name, labels.labels[name]), _compared(name, results[name])
            if reference.size != predicted.size:
                raise ValueError(f"{data}: structure {index}: label {name!r} has {reference.size} values, the "
                                 f"model predicts {predicted.size}")
            comparisons = [(name, reference, predicted)]
            if name == "energy":
                comparisons.append(("energy_per_atom", reference / len(atoms), predicted / len(atoms)))
            for key, ref, pred in comparisons:
                evaluation.errors.setdefault(key, PropertyErrors(EVALUATED_UNITS[key])).add(ref, pred)
                pair = evaluation.pairs.setdefault(key, ([], []))
                pair[0].append(ref.ravel())
                pair[1].append(pred.ravel())
        evaluation.structures += 1
        if progress is not None and ((index + 1) % report_every == 0 or index + 1 == len(frames)):
            progress(f"{index + 1}/{len(frames)} structures, {time.perf_counter() - start:.1f} s")
    order = [name for name in EVALUATED_UNITS if name in evaluation.errors]
    evaluation.errors = {name: evaluation.errors[name] for name in order}
    evaluation.seconds = time.perf_counter() - start
    if out is not None:
        evaluation.files = _write(evaluation, frames, Path(out), plots, title=Path(data).name)
    return evaluation


def _write(evaluation: Evaluation, frames: list, out: Path, plots: bool, title: str) -> list[Path]:
    """predictions.xyz, errors.json, errors.txt and (with ``plots``) parity.png in ``out``; the written paths."""
    from fpscf.atomic_files import atomic_write_text
    from fpscf.data.extxyz import write_extxyz

    out.mkdir(parents=True, exist_ok=True)
    write_extxyz(out / "predictions.xyz", frames)
    written = [out / "predictions.xyz", out / "errors.json", out / "errors.txt"]
    atomic_write_text(written[1], json.dumps(evaluation.to_dict(), indent=2, allow_nan=True) + "\n")
    atomic_write_text(written[2], evaluation.table() + "\n")
    if plots and evaluation.pairs:
        from fpscf.training.reporting import plot_parity

        pairs = {name: (np.concatenate(ref), np.concatenate(pred)) for name, (ref, pred) in evaluation.pairs.items()
                 if name != "energy"}  # energy per atom is shown; the total adds nothing to the plot
        plot_parity(out / "parity.png", pairs, EVALUATED_UNITS, title=f"{title}: {len(frames)} structures")
        written.append(out / "parity.png")
    return written


def parse_key_map(pairs: Iterable[str]) -> Any:
    """A :class:`fpscf.data.labels.KeyMap` from ``PROPERTY=KEY`` strings (``energy=REF_energy``);
    ``PROPERTY=`` ignores that label."""
    import dataclasses

    from fpscf.data.labels import KeyMap

    names = {f.name for f in dataclasses.fields(KeyMap)} - {"weight_suffix"}
    chosen: dict[str, str | None] = {}
    for pair in pairs:
        name, sep, key = pair.partition("=")
        if not sep or name not in names:
            raise ValueError(f"--key {pair!r}: expected PROPERTY=KEY with PROPERTY one of {sorted(names)}")
        chosen[name] = key or None
    return dataclasses.replace(KeyMap(), **chosen)


def print_progress(line: str) -> None:
    """Progress lines of ``fpscf eval`` (stderr, flushed)."""
    print(f"  {line}", file=sys.stderr, flush=True)
