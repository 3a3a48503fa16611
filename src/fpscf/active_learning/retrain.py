"""Retraining: ``fpscf train`` on the grown training set, starting from the previous model's weights.

Each iteration trains in its own output directory with the training config of the model
(``training.config``), its ``train_file`` replaced by the grown set and, optionally, its schedule by
a shorter fine-tuning one (``training.train_schedule``). The model is not built from the config
but loaded from the previous iteration's model (same architecture, same normalisations, its
weights as the starting point; the config's ``model`` section is replaced by that model's
hyperparameters so the saved ``config.yaml`` says what was trained). ``fpscf train --resume``
semantics hold inside an iteration: an interrupted training resumes from its ``checkpoint.pt``.

The trainer is :class:`fpscf.training.trainer.Trainer` with its model construction replaced
(:class:`ContinuedTrainer`); nothing else of the training differs from ``fpscf train``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

from fpscf.model import FixedPointModel
from fpscf.training.config import ConfigError, TrainingConfig, load_config
from fpscf.training.trainer import CHECKPOINT, Trainer, TrainingError, TrainingResult


class ContinuedTrainer(Trainer):
    """A :class:`Trainer` whose model starts as ``initial_model`` (a model, a file or a shipped
    name) instead of being built from the config."""

    def __init__(self, config: TrainingConfig, initial_model: Any) -> None:
        super().__init__(config)
        self.initial_model = initial_model

    def _build_model(self, numbers: list[int], train: list[Any]) -> FixedPointModel:
        from fpscf.models import resolve_model

        model = self.initial_model
        model = copy.deepcopy(model) if isinstance(model, FixedPointModel) else resolve_model(model)
        if [int(z) for z in model.atomic_numbers] != [int(z) for z in numbers]:
            raise TrainingError(f"the model to continue from has species {list(model.atomic_numbers)} but the training "
                                f"data are read with {numbers}; set atomic_numbers in the training config")
        return model.to(device=self.device, dtype=self.dtype)


def continued_config(
    config_path: str | os.PathLike[str],
    initial_model: Any,
    *,
    train_file: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    train_schedule: Mapping[Any, Any] | None = None,
    base_dir: str | os.PathLike[str] = ".",
) -> TrainingConfig:
    """The training config at ``config_path`` with ``train_file``, ``output_dir``, the species and
    model section of ``initial_model`` and, if given, ``train_schedule`` (validated as
    ``fpscf train`` validates it; relative paths against ``base_dir``).

    Raises:
        ConfigError: a bad config or schedule (the key path in the message).
    """
    from fpscf.models import resolve_model

    data = load_config(config_path).to_dict()
    model = initial_model if isinstance(initial_model, FixedPointModel) else resolve_model(initial_model)
    hyperparameters = model.config.to_dict()
    data["atomic_numbers"] = [int(z) for z in hyperparameters.pop("atomic_numbers")]
    data["model"] = hyperparameters
    data["train_file"] = os.fspath(train_file)
    data["output_dir"] = os.fspath(output_dir)
    if train_schedule is not None:
        data["train_schedule"] = dict(train_schedule)
    try:
        return TrainingConfig.from_dict(data, base_dir=base_dir)
    except ConfigError as error:
        raise ConfigError(f"training config {config_path}: {error}", error.key_path) from None


def retrain(config: TrainingConfig, initial_model: Any) -> TrainingResult:
    """Train as ``config`` says from ``initial_model``'s weights; if ``config.output_dir`` holds the
    checkpoint of an interrupted run, resume it (the finished run's models are returned as they are)."""
    output = Path(config.output_dir)
    best, final = output / "best.fpscf", output / "final.fpscf"
    if final.is_file() and best.is_file():
        return TrainingResult(output, best, final, validation_metrics(config))
    return ContinuedTrainer(config, initial_model).run(resume=(output / CHECKPOINT).is_file())


def validation_metrics(config: TrainingConfig) -> dict[str, float]:
    """RMSE per property on the validation set at the last epoch of a finished run (its metrics.json)."""
    import json

    from fpscf.training.reporting import MetricsLog

    path = Path(config.output_dir) / "metrics.json"
    if not path.is_file():
        return {}
    log = MetricsLog.from_list(json.loads(path.read_text()))
    return {name: record.rmse for name, record in log.latest(config.train_schedule[-1].name, "valid").items()}


__all__ = ["ContinuedTrainer", "continued_config", "retrain", "validation_metrics"]
