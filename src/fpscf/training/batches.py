"""Training batches: which structures go together, which rank trains which, and how they are read.

A data set here is anything with ``len`` and ``[i] → AtomicGraph``: the in-memory list that
:func:`fpscf.data.extxyz.load_dataset` returns, or a packed data set read lazily from disk
(:class:`fpscf.data.packed.PackedDataset`). A packed set also answers :func:`batch_group` for a
structure from its stored metadata, without reading the structure.

Batches are planned as lists of indices (:func:`plan_batches`) identically on every rank, so a
global batch is the same whatever the number of ranks; each rank then reads and collates only its
share (:func:`fpscf.training.distributed.local_share`), in the main process or in worker processes
(``num_workers``) through a :class:`torch.utils.data.DataLoader`.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader

from fpscf.data.graph import AtomicGraph, collate
from fpscf.training.distributed import Ranks, local_share
from fpscf.training.forward import NEEDS_FIELD_RESPONSE, NEEDS_MAGNETIC_RESPONSE
from fpscf.training.losses import constrained_moments_mask

#: The group a structure is batched in: its response labels, and whether its moments are held fixed.
Group = tuple[tuple[str, ...], bool]


def response_labels(graph: AtomicGraph) -> tuple[str, ...]:
    """The response labels (α, Z*, magnetic susceptibility) that a structure has, sorted."""
    return tuple(sorted(
        label for label in NEEDS_FIELD_RESPONSE | NEEDS_MAGNETIC_RESPONSE
        if label in graph.label_masks and bool(graph.label_masks[label].any())
    ))


def holds_moments_fixed(graph: AtomicGraph) -> bool:
    """The moments of this structure are not relaxed: constrained to its magmoms label, or zero
    because it is not magnetic (``spin_on`` False)."""
    not_magnetic = graph.spin_on is not None and not bool(graph.spin_on.any())
    return bool(constrained_moments_mask(graph).all()) or not_magnetic


def batch_group(graph: AtomicGraph, magnetic: bool) -> Group:
    """The group of one structure (:func:`plan_batches`)."""
    return response_labels(graph), magnetic and holds_moments_fixed(graph)


def dataset_groups(data: Sequence[AtomicGraph], magnetic: bool) -> list[Group]:
    """The group of every structure: from a packed set's metadata if it has them, else by reading each."""
    groups = getattr(data, "batch_groups", None)
    if groups is not None:
        return [(labels, magnetic and fixed) for labels, fixed in groups()]
    return [batch_group(graph, magnetic) for graph in data]


def plan_batches(groups: Sequence[Group], size: int, generator: torch.Generator | None) -> list[list[int]]:
    """Global batches of ``size`` structure indices (shuffled by ``generator``, in order without one).

    Structures with response labels (α, Z*, χ: several extra derivative passes through the SCF)
    are batched only with each other, so the other batches skip those passes. For a magnetic
    model, structures whose moments are all held fixed are batched apart from those that relax
    them, so their batches skip the moment SCF."""
    members_of: dict[Group, list[int]] = {}
    for index, group in enumerate(groups):
        members_of.setdefault(group, []).append(index)
    chunks: list[list[int]] = []
    for key in sorted(members_of):
        members = members_of[key]
        if generator is not None:
            members = [members[i] for i in torch.randperm(len(members), generator=generator).tolist()]
        chunks.extend(members[k : k + size] for k in range(0, len(members), size))
    if generator is not None:
        chunks = [chunks[i] for i in torch.randperm(len(chunks), generator=generator).tolist()]
    return chunks


class _Indexed(torch.utils.data.Dataset):
    """``(index, structure)`` pairs, so the collate step can add each structure's partner."""

    def __init__(self, data: Sequence[AtomicGraph]) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[int, AtomicGraph]:
        return index, self.data[index]


class _Collate:
    """One batch from ``(index, structure)`` pairs, time-reversed partners appended; None for none."""

    def __init__(self, partners: dict[int, AtomicGraph] | None) -> None:
        self.partners = partners or {}

    def __call__(self, items: list[tuple[int, AtomicGraph]]) -> AtomicGraph | None:
        if not items:
            return None
        graphs = [graph for _, graph in items]
        return collate(graphs + [self.partners[i] for i, _ in items if i in self.partners])


def local_batches(
    data: Sequence[AtomicGraph], chunks: Sequence[Sequence[int]], ranks: Ranks, device: torch.device,
    partners: dict[int, AtomicGraph] | None = None, num_workers: int = 0,
) -> Iterator[AtomicGraph | None]:
    """This rank's share of each global batch, collated on ``device`` (None where its share is
    empty: the rank still joins that batch's reductions). ``num_workers`` > 0 reads and collates
    in that many worker processes, ahead of the training."""
    shares = [local_share(chunk, ranks) for chunk in chunks]
    loader: Any = DataLoader(
        _Indexed(data), batch_sampler=shares, collate_fn=_Collate(partners), num_workers=num_workers,
        persistent_workers=False, **({"prefetch_factor": 2} if num_workers > 0 else {}),
    )
    for batch in loader:
        yield None if batch is None else batch.to(device=device)


__all__ = ["batch_group", "dataset_groups", "holds_moments_fixed", "local_batches", "plan_batches", "response_labels"]
