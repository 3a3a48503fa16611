"""The training and validation sets of a run: extended XYZ files read into memory, or data sets
packed by ``fpscf data pack`` (:mod:`fpscf.data.packed`) read lazily; checks that they fit the
config before training starts.

Either file may be either kind. Without ``valid_file`` a ``valid_fraction`` of the training
structures is held out, drawn with ``seed`` (the same structures for both kinds). The training
domain saved with the model is that of the training structures; for a packed set it is the
merged domain of the shards they come from, stored when packing (with ``valid_fraction`` it then
also spans the held-out structures).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from fpscf.config import ModelConfig
from fpscf.data.extxyz import load_dataset, read_extxyz
from fpscf.data.graph import AtomicGraph
from fpscf.data.packed import PackedDataError, PackedDataset, is_packed
from fpscf.domain import TrainingDomain
from fpscf.errors import FpscfError
from fpscf.training.config import TrainingConfig
from fpscf.training.epochs import TrainingError
from fpscf.training.losses import LOSS_LABELS, constrained_moments_mask


@dataclass
class TrainingData:
    """The elements of the model, the two sets and the training domain."""

    numbers: list[int]
    train: Sequence[AtomicGraph]
    valid: Sequence[AtomicGraph]
    domain: TrainingDomain


def load_training_data(config: TrainingConfig, dtype: torch.dtype) -> TrainingData:
    """Read (or open) the sets of ``config``; :class:`TrainingError` names what does not fit."""
    try:
        data = _load(config, dtype)
    except (TypeError, ValueError) as error:  # the data readers' messages name the file, structure and fix
        if isinstance(error, FpscfError):
            raise
        raise TrainingError(str(error)) from None
    check_labels(config, data.train)
    return data


def _load(config: TrainingConfig, dtype: torch.dtype) -> TrainingData:
    key_map = config.make_key_map()
    r_max = float(config.model.get("r_max", ModelConfig.__dataclass_fields__["r_max"].default))
    if config.finetune is not None:  # the parent's cutoff
        from fpscf.training.finetune import parent_header

        r_max = float(parent_header(config.finetune["model"])["hyperparameters"]["r_max"])
    frames = None
    if is_packed(config.train_file):
        train: Sequence[AtomicGraph] = _open_pack(config.train_file, r_max, dtype)
        numbers = list(config.atomic_numbers) if config.atomic_numbers else train.elements
        _check_elements(train, numbers, config.train_file)
    else:
        frames = read_extxyz(config.train_file, key_map)
        found = sorted({int(z) for atoms in frames for z in atoms.numbers})
        numbers = list(config.atomic_numbers) if config.atomic_numbers else found
        train = load_dataset(config.train_file, r_max, key_map, numbers, dtype=dtype)
    magnetic = config.model.get("magnetic_moments", "none") != "none"
    if magnetic:
        _check_constrained_moments(train, config.train_file)
    if config.valid_file:
        if is_packed(config.valid_file):
            valid: Sequence[AtomicGraph] = _open_pack(config.valid_file, r_max, dtype)
            _check_elements(valid, numbers, config.valid_file)
        else:
            valid = load_dataset(config.valid_file, r_max, key_map, numbers, dtype=dtype)
        if magnetic:
            _check_constrained_moments(valid, config.valid_file)
    else:
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.seed)).tolist()
        n_valid = max(1, int(round(config.valid_fraction * len(train))))
        if len(train) - n_valid < 1:
            raise TrainingError(f"{config.train_file} has {len(train)} structures: too few to hold out a validation set; give valid_file")
        train, valid = _split(train, order[n_valid:]), _split(train, order[:n_valid])
        if frames is not None:
            frames = [frames[i] for i in order[n_valid:]]
    if not len(train):
        raise TrainingError(f"{config.train_file} has no structures")
    domain = train.training_domain() if frames is None else TrainingDomain.from_structures(frames, key_map)
    return TrainingData(numbers, train, valid, domain)


def _open_pack(path: str, r_max: float, dtype: torch.dtype) -> PackedDataset:
    try:
        return PackedDataset(path, r_max, dtype)
    except PackedDataError as error:
        raise TrainingError(str(error)) from None


def _split(data: Sequence[AtomicGraph], items: list[int]) -> Sequence[AtomicGraph]:
    return data.subset(items) if isinstance(data, PackedDataset) else [data[i] for i in items]


def _check_elements(data: PackedDataset, numbers: list[int], path: str) -> None:
    unknown = sorted(set(data.elements) - set(numbers))
    if unknown:
        raise TrainingError(f"{path} holds elements {unknown} that the model does not know (atomic_numbers {numbers}); "
                            "add them to atomic_numbers or leave them out of the data")


def label_sets(data: Sequence[AtomicGraph]) -> list[set[str]]:
    """The labels each structure has (from a packed set's index without reading it)."""
    if isinstance(data, PackedDataset):
        return data.label_sets()
    return [{name for name, mask in g.label_masks.items() if bool(mask.any())} for g in data]


def check_labels(config: TrainingConfig, train: Sequence[AtomicGraph]) -> None:
    """Every loss with a weight must have its label on at least one training structure, and a
    stage that starts from the reference density needs it on every one."""
    key_map = config.make_key_map()
    present = label_sets(train)
    for stage in config.train_schedule:
        for name, weight in stage.loss.items():
            label = LOSS_LABELS[name]
            if weight <= 0 or label is None:
                continue
            if not any(label in labels for labels in present):
                key = getattr(key_map, label, label)
                raise TrainingError(
                    f"train_schedule.{stage.index}.loss.{name} has weight {weight} but no training structure in "
                    f"{config.train_file} has a '{label}' label (looked for key '{key}'); remove the loss, "
                    f"or set key_map.{label} to the key your file uses"
                )
        options = stage.fixed_point_training_options
        needs_reference = options.mode == "direct" or (options.scf is not None and options.scf.initial_density == "from_data")
        if needs_reference:
            missing = sum(1 for labels in present if "atomic_multipoles" not in labels)
            if missing:
                raise TrainingError(
                    f"train_schedule.{stage.index} ({stage.name}) starts from the reference density "
                    f"(mode {options.mode!r}, initial_density from_data) but {missing} of {len(train)} training "
                    "structures have no atomic_multipoles; add them or use initial_density: local_guess"
                )


def _check_constrained_moments(graphs: Sequence[AtomicGraph], path: str) -> None:
    """A structure with magnetic forces (a constrained-moment calculation) needs the ``magmoms``
    label its moments are held at."""
    missing = [
        k for k, g in enumerate(graphs)
        if bool(constrained_moments_mask(g).any()) and not ("magmoms" in g.label_masks and bool(g.label_masks["magmoms"].all()))
    ]
    if missing:
        raise TrainingError(
            f"{len(missing)} structures of {path} (first: index {missing[0]}) have noncollinear_magnetic_forces (a "
            "constrained-moment calculation) but no magmoms label giving the constrained moments; add the magmoms "
            "(or set key_map.magmoms to their key), or remove their magnetic forces"
        )


__all__ = ["TrainingData", "check_labels", "label_sets", "load_training_data"]
