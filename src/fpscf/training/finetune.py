"""Fine-tuning a trained model on new data: ``fpscf train --config c.yaml --finetune water-b3lyp``
or the config key ``finetune: {model: water-b3lyp, freeze: [encoder]}``.

- The model starts as the parent (a shipped model's name or a ``.fpscf`` file): its architecture,
  weights and normalisers (atomic energies, field-feature norms, dispersion) are kept; nothing is
  recomputed from the new data. The config's ``model`` section may only repeat the parent's
  hyperparameters (a different value is an error naming the key).
- Species: the fine-tuned model keeps the parent's elements. Data holding an element the parent
  does not know is refused before training (an element needs its own embedding, energies and
  hardness, learnt from scratch: train a new model, or fine-tune one that knows the element).
- ``freeze``: names of the model's blocks (its top-level modules: ``encoder``, ``update``,
  ``field_readout``, ``local_energy``, ``local_charges``, ...) whose parameters stay as the parent's.
- The new model file's header records the parent (``parent``: name or path, its weights digest,
  the frozen blocks), and the output directory gets a ``model_card.md`` that names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from fpscf.atomic_files import atomic_write_text
from fpscf.errors import ModelFileError
from fpscf.model import FixedPointModel
from fpscf.training.config import TrainingConfig
from fpscf.training.epochs import TrainingError


def block_names(model: FixedPointModel) -> list[str]:
    """The blocks a fine-tuning run may freeze: top-level modules that hold parameters."""
    return [name for name, module in model.named_children() if any(True for _ in module.parameters())]


def parent_header(name: str) -> dict[str, Any]:
    """The header of the model file ``name`` (a shipped model's name or a path)."""
    from fpscf.model_io import read_header
    from fpscf.models import SHIPPED_MODELS, shipped_model_path

    try:
        is_shipped = name in SHIPPED_MODELS and not Path(name).exists()
        return read_header(shipped_model_path(name) if is_shipped else name)
    except (ModelFileError, FileNotFoundError, TypeError) as error:
        raise TrainingError(f"finetune.model = {name!r}: {error}") from None


def parent_model(config: TrainingConfig, numbers: Sequence[int], device: torch.device, dtype: torch.dtype) -> FixedPointModel:
    """The parent of ``config.finetune``, checked against the data's elements ``numbers`` and the
    config's model section, with the named blocks frozen and ``model.parent`` set."""
    from fpscf.models import resolve_model

    settings = config.finetune or {}
    name = settings["model"]
    header = parent_header(name)
    try:
        model = resolve_model(name)
    except (ModelFileError, FileNotFoundError, TypeError) as error:
        raise TrainingError(f"finetune.model = {name!r}: {error}") from None
    known = [int(z) for z in model.atomic_numbers]
    new = sorted(set(int(z) for z in numbers) - set(known))
    if new:
        raise TrainingError(
            f"finetune.model {name!r} knows elements {known} but the training data hold {new}; a fine-tuned model keeps "
            "its parent's elements (a new element needs its own embedding, energies and hardness): train a new model, "
            "or fine-tune one that knows them"
        )
    parent = model.config.to_dict()
    for key, value in config.model.items():
        if key in parent and parent[key] != value and not (isinstance(value, (list, tuple)) and list(value) == parent[key]):
            raise TrainingError(f"model.{key} = {value!r} but finetune.model {name!r} has {parent[key]!r}: a fine-tuned "
                                f"model has its parent's architecture; remove model.{key} from the config")
    blocks = block_names(model)
    unknown = [block for block in settings.get("freeze", []) if block not in blocks]
    if unknown:
        raise TrainingError(f"finetune.freeze names {unknown}, which are not blocks of {name!r}; choose from {blocks}")
    for block in settings.get("freeze", []):
        for parameter in getattr(model, block).parameters():
            parameter.requires_grad_(False)
    model.parent = {"model": name, "weights_sha256": header.get("weights_sha256"), "frozen": list(settings.get("freeze", []))}
    return model.to(device=device, dtype=dtype)


def write_model_card(output_dir: Path, config: TrainingConfig, parent: dict[str, Any], metrics: dict[str, float],
                     num_train: int) -> Path:
    """``model_card.md`` of a fine-tuned model: its parent, data, frozen blocks and validation errors."""
    lines = [
        "# Fine-tuned fpscf model", "",
        f"- parent: `{parent['model']}` (weights sha256 `{parent['weights_sha256']}`)",
        f"- frozen blocks: {', '.join(parent['frozen']) or 'none'}",
        f"- training data: `{config.train_file}` ({num_train} structures); validation: "
        f"`{config.valid_file or f'{config.valid_fraction:.0%} held out'}`",
        f"- schedule: {', '.join(f'{s.name} ({s.fixed_point_training_options.mode}, {s.num_epochs} epochs)' for s in config.train_schedule)}",
        "", "| property | validation RMSE |", "|---|---|",
        *(f"| {name} | {value:.4g} |" for name, value in metrics.items()),
        "", "Architecture, normalisers and species are the parent's (fpscf.training.finetune).", "",
    ]
    path = output_dir / "model_card.md"
    atomic_write_text(path, "\n".join(lines))
    return path


__all__ = ["block_names", "parent_header", "parent_model", "write_model_card"]
