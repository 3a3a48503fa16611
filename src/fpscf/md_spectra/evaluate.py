"""Response properties along a saved trajectory: the model's dipole, polarizability α, Born charges Z*
and ε∞ on every n-th frame, in batches, with a progress line and a resumable cache.

Each frame keeps the field it carries (``info['external_field']``, V/Å), so a trajectory run in a
field is analysed in that field. The cache (``.npz``, written atomically after every batch) holds the
frames done so far; running again with the same cache continues where the last run stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from fpscf.atomic_files import atomic_write
from fpscf.md_spectra.correlation import SpectrumInputError

#: Properties this module can evaluate and the calculator property behind each.
PROPERTIES = {"dipole": "dipole", "polarizability": "polarizability",
              "born_effective_charges": "born_effective_charges", "dielectric_tensor": "dielectric_tensor"}


@dataclass(frozen=True)
class FrameProperties:
    """Properties on the frames ``indices`` (F,) of a trajectory: name -> (F, ...) array in the
    calculator's units (dipole e·Å, polarizability e·Å²/V, born_effective_charges e, dielectric_tensor 1)."""

    indices: np.ndarray
    values: dict[str, np.ndarray]
    seconds: float


def _load_cache(cache: Path | None, indices: np.ndarray, names: Sequence[str]) -> dict[str, list[np.ndarray]]:
    if cache is None or not cache.is_file():
        return {name: [] for name in names}
    with np.load(cache) as stored:
        done = stored["indices"]
        if len(done) > len(indices) or np.any(done != indices[: len(done)]) or set(names) - set(stored.files):
            raise SpectrumInputError(f"cache {cache} was made for other frames or properties: remove it or use another --cache")
        return {name: list(stored[name]) for name in names}


def _save_cache(cache: Path, indices: np.ndarray, values: dict[str, list[np.ndarray]]) -> None:
    done = len(next(iter(values.values())))
    arrays = {name: np.array(items) for name, items in values.items()}
    atomic_write(cache, lambda stream: np.savez(stream, indices=indices[:done], **arrays), make_parents=True)


def evaluate_frames(
    frames: Sequence[Any],
    calculator: Any,
    properties: Sequence[str] = ("polarizability",),
    every: int = 1,
    batch: int = 50,
    cache: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> FrameProperties:
    """Evaluate ``properties`` (keys of :data:`PROPERTIES`) with ``calculator`` on frames 0, every,
    2·every, ... (one SCF and one set of derivative passes per frame); progress after each batch."""
    unknown = sorted(set(properties) - set(PROPERTIES))
    if unknown or not properties:
        raise SpectrumInputError(f"unknown properties {unknown}; choose from {', '.join(PROPERTIES)}")
    if every < 1 or batch < 1:
        raise SpectrumInputError(f"every and batch must be >= 1, got {every} and {batch}")
    if "dielectric_tensor" in properties and not frames[0].pbc.all():
        raise SpectrumInputError("dielectric_tensor needs periodic frames (pbc all True)")
    indices = np.arange(0, len(frames), every)
    cache_path = None if cache is None else Path(cache)
    values = _load_cache(cache_path, indices, properties)
    start, first = time.perf_counter(), len(values[properties[0]])
    for done in range(first, len(indices)):
        atoms = frames[int(indices[done])].copy()
        results = calculator.get_properties([PROPERTIES[name] for name in properties], atoms)
        for name in properties:
            values[name].append(np.array(results[PROPERTIES[name]], float))
        finished = done + 1
        if finished % batch == 0 or finished == len(indices):
            if cache_path is not None:
                _save_cache(cache_path, indices, values)
            if progress:
                rate = (time.perf_counter() - start) / (finished - first)
                progress(f"  {', '.join(properties)}: frame {finished}/{len(indices)} ({rate:.2f} s/frame, "
                         f"{rate * (len(indices) - finished):.0f} s left)")
    return FrameProperties(indices, {name: np.array(items) for name, items in values.items()},
                           time.perf_counter() - start)
