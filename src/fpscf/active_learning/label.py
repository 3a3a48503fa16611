"""Labelling of the selected clusters, resumable, into ``<labels dir>/data.xyz``.

A labeller is any callable ``labeller(structures, out_dir) -> Path`` that labels ``structures``
(``info["sample_id"]`` unique non-negative ints) into ``out_dir`` and returns the merged
``out_dir/data.xyz``; a rerun after an interruption must not relabel finished structures.

- :class:`DatasetLabeller`: the labellers of the reference data sets (PySCF DFT, GFN2-xTB) through
  :func:`fpscf.datagen.runner.generate_dataset` (worker processes, ``parts/``, ``failed.json``,
  ``manifest.json``).
- :class:`InProcessLabeller`: any ``label_one(atoms) -> labelled atoms`` function, run in this
  process with the same ``parts/`` layout (one atomically written part per structure, failures in
  ``failed.json``, merged ``data.xyz``); :func:`model_labeller` makes one from an fpscf model
  (a "teacher", for tests and smoke runs).
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from ase import Atoms

from fpscf.atomic_files import atomic_write_text
from fpscf.data.extxyz import read_extxyz, write_extxyz

#: ``labelling.method`` values: the data-set labellers and an fpscf teacher model.
LABEL_METHODS = ("dft", "xtb", "model")


class Labeller(Protocol):
    def __call__(self, structures: list[Atoms], out_dir: Path) -> Path: ...


@dataclass(frozen=True)
class DatasetLabeller:
    """Label with :func:`fpscf.datagen.runner.generate_dataset` (``method`` ``"dft"`` or ``"xtb"``;
    ``settings`` a :class:`fpscf.datagen.pyscf_labels.DFTSettings` for DFT). Response labels (α,
    Z*: six more SCFs each) go to a seeded ``response_fraction`` of structures of at most
    ``max_response_atoms`` atoms."""

    method: str = "dft"
    workers: int = 1
    threads_per_worker: int | None = None
    response_fraction: float = 0.0
    max_response_atoms: int = 6
    settings: Any = None
    seed: int = 0
    progress: bool = True

    def __call__(self, structures: list[Atoms], out_dir: Path) -> Path:
        from fpscf.datagen.runner import generate_dataset

        return generate_dataset(
            structures, out_dir, method=self.method, workers=self.workers, threads_per_worker=self.threads_per_worker,
            response_fraction=self.response_fraction, max_response_atoms=self.max_response_atoms,
            settings=self.settings, seed=self.seed, progress=self.progress,
            metadata={"structures": "active_learning_clusters"},
        )


class InProcessLabeller:
    """Label with ``label_one(atoms) -> Atoms`` in this process; resumable like ``generate_dataset``
    (a structure with a part file in ``out_dir/parts`` holding the same atoms is not relabelled)."""

    def __init__(self, label_one: Callable[[Atoms], Atoms], log: Callable[[str], None] | None = None) -> None:
        self.label_one = label_one
        self.log = log

    def __call__(self, structures: list[Atoms], out_dir: Path) -> Path:
        parts = Path(out_dir) / "parts"
        parts.mkdir(parents=True, exist_ok=True)
        failures: list[dict[str, Any]] = []
        finished = []
        for position, atoms in enumerate(structures):
            sample_id = int(atoms.info.get("sample_id", position))
            part = parts / f"{sample_id:06d}.xyz"
            if part.is_file():
                (previous,) = read_extxyz(part)
                if len(previous) != len(atoms) or not np.allclose(previous.positions, atoms.positions, atol=1e-6):
                    raise ValueError(f"{part} holds a different structure than sample_id {sample_id}; use a new "
                                     "output directory, or delete the parts to relabel")
                finished.append(part)
                continue
            try:
                labelled = self.label_one(atoms)
            except Exception as error:  # recorded, and retried on the next run
                failures.append({"sample_id": sample_id, "error": f"{type(error).__name__}: {error}",
                                 "traceback": traceback.format_exc()})
                continue
            labelled.info["sample_id"] = sample_id
            write_extxyz(part, labelled)
            finished.append(part)
            if self.log is not None:
                self.log(f"labelled sample {sample_id:06d} ({len(atoms)} atoms)")
        atomic_write_text(Path(out_dir) / "failed.json", json.dumps(failures, indent=2) + "\n")
        if not finished:
            raise RuntimeError(f"no structure could be labelled; the errors are in {Path(out_dir) / 'failed.json'}")
        data = Path(out_dir) / "data.xyz"
        write_extxyz(data, [atoms for part in finished for atoms in read_extxyz(part)])
        return data


def model_labeller(model: Any, scf_tolerance: float = 1e-10, log: Callable[[str], None] | None = None) -> InProcessLabeller:
    """An :class:`InProcessLabeller` whose labels come from an fpscf ``model`` (object, file or shipped
    name) at each structure's field and total charge: ``energy`` (eV), ``forces`` (eV/Å),
    ``dipole`` (e·Å), ``atomic_multipoles`` (e, e·Å) and ``fermi_level`` (eV), under the keys
    :func:`fpscf.datagen.synthetic.teacher_structures` uses."""
    from fpscf.calculators.fixed_point import FixedPointCalculator

    calculator = FixedPointCalculator(model, scf_tolerance=scf_tolerance)

    def label_one(atoms: Atoms) -> Atoms:
        labelled = atoms.copy()
        labelled.calc = None
        calculator.calculate(labelled, ["energy"])
        results = calculator.results
        labelled.info.update(energy=results["energy"], dipole=results["dipole"], fermi_level=results["fermi_level"])
        labelled.arrays["forces"] = results["forces"]
        labelled.arrays["atomic_multipoles"] = results["atomic_multipoles"]
        return labelled

    return InProcessLabeller(label_one, log)


def count_labelled(data: str | os.PathLike[str]) -> int:
    """Number of structures in a labelled ``data.xyz``."""
    return len(read_extxyz(data))


__all__ = ["LABEL_METHODS", "DatasetLabeller", "InProcessLabeller", "Labeller", "count_labelled", "model_labeller"]
