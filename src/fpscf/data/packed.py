"""Packed data sets: graphs and labels precomputed from extended XYZ into shards read lazily.

``fpscf data pack data.xyz packed/ --r-max 5.0`` reads the file one structure at a time (never
all of it), builds each graph exactly as training from the extxyz would (:func:`atoms_to_graph`:
same neighbour list, labels, masks and weights) and writes:

- ``shard_00000.safetensors``, ...: ``shard_size`` structures each; structure ``i``'s tensors
  are named ``"{i}/positions"``, ``"{i}/labels/energy"``, ``"{i}/label_masks/energy"``, ...
  (the fields of :class:`~fpscf.data.graph.AtomicGraph`), stored in float64.
- ``index.json``: format version, cutoff, elements, key map, the shards and their sizes, per
  structure its labels (for checks before training) and batch group, and the training domain of
  each shard (:class:`fpscf.domain.TrainingDomain`) so that a model's domain needs no pass over
  the structures.

Why safetensors: fpscf already depends on it (no new dependency); the files are plain tensors with
a JSON header that the safetensors libraries read in Python, Rust, C++ and JavaScript, loading them
never runs code (unlike pickles), and a reader memory-maps a shard and copies out only the tensors
of the structures it asks for. :class:`PackedDataset` opens each shard once per process, so
DataLoader worker processes (``num_workers``) read in parallel. HDF5 (h5py) or LMDB would add a
dependency for the same lazy, per-structure reads.

Every file is written atomically; ``index.json`` last, so a pack whose index exists is complete.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import ase.io
import torch
from safetensors import safe_open
from safetensors.torch import save as save_tensors

from fpscf.atomic_files import atomic_write_bytes, atomic_write_text
from fpscf.data.graph import AtomicGraph, atoms_to_graph
from fpscf.data.labels import KeyMap, read_properties
from fpscf.domain import TrainingDomain, pair_key

INDEX = "index.json"
FORMAT = "fpscf-packed"
VERSION = 1
#: Response labels that put a structure in a batch group of its own (fpscf.training.batches).
_RESPONSE_LABELS = ("born_effective_charges", "magnetic_susceptibility", "polarizability")
_DICT_FIELDS = ("labels", "label_masks", "weights")


class PackedDataError(ValueError):
    """A packed data set that cannot be read (missing index, foreign or newer format, other cutoff)."""


def is_packed(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a packed data set (a directory holding ``index.json``)."""
    return (Path(path) / INDEX).is_file()


def pack_extxyz(
    source: str | os.PathLike[str], output: str | os.PathLike[str], r_max: float, *, key_map: KeyMap | None = None,
    species: list[int] | None = None, shard_size: int = 1000,
) -> Path:
    """Pack the extended XYZ file ``source`` into the directory ``output`` (module docstring).

    Args:
        r_max: neighbour cutoff, Å; training must use the same ``r_max``.
        key_map: where the labels are (as the training config's ``key_map``).
        species: elements to accept (None: any).
        shard_size: structures per shard.

    Returns:
        The path of ``index.json``.
    """
    from fpscf.training.batches import holds_moments_fixed

    out = Path(output)
    if is_packed(out):
        raise PackedDataError(f"{out} already holds a packed data set ({INDEX}); choose another directory or delete it")
    out.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, Any]] = []
    labels: list[list[str]] = []
    fixed: list[bool] = []
    elements: set[int] = set()
    for number, chunk in enumerate(_chunks(_read_structures(source, key_map), shard_size)):
        tensors: dict[str, torch.Tensor] = {}
        for index, atoms in chunk:
            try:
                graph = atoms_to_graph(atoms, r_max, key_map, species, index, dtype=torch.float64)
            except ValueError as error:
                raise ValueError(f"{source}: {error}") from None
            tensors.update(_graph_tensors(index, graph))
            labels.append(sorted(name for name, mask in graph.label_masks.items() if bool(mask.any())))
            fixed.append(holds_moments_fixed(graph))
            elements.update(int(z) for z in atoms.numbers)
        name = f"shard_{number:05d}.safetensors"
        atomic_write_bytes(out / name, save_tensors(tensors))
        domain = TrainingDomain.from_structures([atoms for _, atoms in chunk], key_map)
        shards.append({"file": name, "count": len(chunk), "domain": domain.to_dict()})
    index = {
        "format": FORMAT, "version": VERSION, "source": os.fspath(source), "r_max": float(r_max),
        "elements": sorted(elements), "key_map": dataclasses.asdict(key_map or KeyMap()), "shards": shards,
        "labels": labels, "moments_fixed": fixed,
    }
    atomic_write_text(out / INDEX, json.dumps(index))
    return out / INDEX


class PackedDataset(Sequence[AtomicGraph]):
    """A packed data set (or a subset of it) as a sequence of single-structure graphs, read on access.

    Args:
        path: the pack's directory.
        r_max: the training cutoff, Å: must be the pack's.
        dtype: floating dtype of the graphs returned.
        indices: the structures of this view (None: all).
    """

    def __init__(self, path: str | os.PathLike[str], r_max: float | None = None, dtype: torch.dtype = torch.float64,
                 indices: Sequence[int] | None = None) -> None:
        self.path = Path(path)
        self.index = _read_index(self.path)
        if r_max is not None and not math.isclose(float(r_max), self.index["r_max"], rel_tol=0, abs_tol=1e-12):
            raise PackedDataError(
                f"{self.path} was packed with r_max {self.index['r_max']} Å but the model uses r_max {r_max} Å; "
                f"pack it again with --r-max {r_max} (neighbour lists are stored)"
            )
        self.dtype = dtype
        total = len(self.index["labels"])
        self.indices = list(range(total)) if indices is None else [int(i) for i in indices]
        starts = [0]
        for shard in self.index["shards"]:
            starts.append(starts[-1] + int(shard["count"]))
        self._starts = starts
        self._handles: dict[tuple[int, int], Any] = {}

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> AtomicGraph:  # type: ignore[override]
        index = self.indices[item]
        shard = _shard_of(self._starts, index)
        handle = self._handle(shard)
        prefix = f"{index}/"
        values: dict[str, Any] = {name: {} for name in _DICT_FIELDS}
        for key in handle.names_of(index):
            tensor = handle.file.get_tensor(key)
            parts = key[len(prefix):].split("/")
            if len(parts) == 2:
                values[parts[0]][parts[1]] = tensor
            else:
                values[parts[0]] = tensor
        return AtomicGraph(**values).to(dtype=self.dtype)

    def __iter__(self) -> Iterator[AtomicGraph]:
        for item in range(len(self)):
            yield self[item]

    def subset(self, items: Sequence[int]) -> PackedDataset:
        """The view of ``items`` (positions in this view)."""
        view = PackedDataset.__new__(PackedDataset)
        view.__dict__.update(self.__dict__)
        view.indices = [self.indices[i] for i in items]
        view._handles = {}
        return view

    @property
    def elements(self) -> list[int]:
        return list(self.index["elements"])

    def label_sets(self) -> list[set[str]]:
        """The labels each structure of this view has."""
        return [set(self.index["labels"][i]) for i in self.indices]

    def batch_groups(self) -> list[tuple[tuple[str, ...], bool]]:
        """Per structure: its response labels and whether its moments are held fixed (fpscf.training.batches)."""
        return [(tuple(n for n in _RESPONSE_LABELS if n in self.index["labels"][i]), bool(self.index["moments_fixed"][i]))
                for i in self.indices]

    def training_domain(self) -> TrainingDomain:
        """The domain of the shards this view draws from (all of a shard, whichever of its structures are in the view)."""
        used = sorted({_shard_of(self._starts, i) for i in self.indices})
        return merge_domains([TrainingDomain.from_dict(self.index["shards"][k]["domain"]) for k in used])

    def _handle(self, shard: int) -> _Shard:
        key = (os.getpid(), shard)  # a handle per process: DataLoader workers open their own
        if key not in self._handles:
            self._handles[key] = _Shard(self.path / self.index["shards"][shard]["file"])
        return self._handles[key]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state


class _Shard:
    """An open shard and the tensor names of each of its structures."""

    def __init__(self, path: Path) -> None:
        self.file = safe_open(os.fspath(path), framework="pt")
        self._names: dict[int, list[str]] = {}
        for name in self.file.keys():
            self._names.setdefault(int(name.split("/", 1)[0]), []).append(name)

    def names_of(self, index: int) -> list[str]:
        return self._names[index]


def merge_domains(domains: Sequence[TrainingDomain]) -> TrainingDomain:
    """The domain of the union of the structures of several domains."""
    from ase.data import atomic_numbers, chemical_symbols

    elements = sorted({atomic_numbers[s] for d in domains for s in d.elements})
    minima: dict[str, float] = {}
    charges: dict[str, float] = {}
    for domain in domains:
        for key, value in domain.min_distances.items():
            if value is not None:
                minima[key] = min(value, minima.get(key, math.inf))
        for symbol, value in domain.max_atomic_charges.items():
            charges[symbol] = max(value, charges.get(symbol, 0.0))
    pairs = [pair_key(a, b) for i, a in enumerate(elements) for b in elements[i:]]
    return TrainingDomain(
        elements=[chemical_symbols[z] for z in elements],
        min_distances={key: minima.get(key) for key in pairs},
        max_field=max(d.max_field for d in domains),
        response_labels=any(d.response_labels for d in domains),
        total_charge_range=(min(d.total_charge_range[0] for d in domains), max(d.total_charge_range[1] for d in domains)),
        max_atomic_charges={s: charges[s] for s in sorted(charges, key=atomic_numbers.__getitem__)},
        periodic=any(d.periodic for d in domains),
        open=any(d.open for d in domains),
        num_structures=sum(d.num_structures for d in domains),
        distance_cutoff=domains[0].distance_cutoff,
    )


def _read_index(path: Path) -> dict[str, Any]:
    file = path / INDEX
    if not file.is_file():
        raise PackedDataError(f"{path} is not a packed data set (no {INDEX}); make one with fpscf data pack DATA.xyz {path}")
    index = json.loads(file.read_text())
    if index.get("format") != FORMAT:
        raise PackedDataError(f"{file} is not an fpscf packed data set (format {index.get('format')!r})")
    if int(index.get("version", 0)) > VERSION:
        raise PackedDataError(f"{file} is packed in format v{index['version']}, newer than this fpscf reads (v{VERSION}); upgrade fpscf")
    return index


def _read_structures(source: str | os.PathLike[str], key_map: KeyMap | None) -> Iterator[tuple[int, Any]]:
    """The structures of an extxyz file one at a time, labels validated as read_extxyz does."""
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"extxyz file not found: '{path}' (resolved: '{path.resolve()}').")
    count = 0
    for index, atoms in enumerate(ase.io.iread(path, index=":", format="extxyz")):
        try:
            read_properties(atoms, key_map, index)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        count += 1
        yield index, atoms
    if count == 0:
        raise ValueError(f"extxyz file '{path}' holds no structures.")


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _graph_tensors(index: int, graph: AtomicGraph) -> dict[str, torch.Tensor]:
    """The tensors of one structure's graph, named ``"{index}/{field}[/{label}]"``."""
    tensors: dict[str, torch.Tensor] = {}
    for spec in dataclasses.fields(graph):
        value = getattr(graph, spec.name)
        if value is None:
            continue
        if spec.name in _DICT_FIELDS:
            for label, tensor in value.items():
                tensors[f"{index}/{spec.name}/{label}"] = tensor.detach().contiguous().clone()
        else:
            tensors[f"{index}/{spec.name}"] = value.detach().contiguous().clone()
    return tensors


def _shard_of(starts: list[int], index: int) -> int:
    import bisect

    return bisect.bisect_right(starts, index) - 1


__all__ = ["INDEX", "PackedDataError", "PackedDataset", "is_packed", "merge_domains", "pack_extxyz"]
