"""The training loop: stages, optimizer groups, metrics, checkpoints, resume, model outputs.

Output directory (all files written atomically):

- ``checkpoint.pt``: weights, optimizer state, epoch, best validation loss and metrics (plain
  tensors and numbers, loaded with ``weights_only=True``); ``--resume`` continues from it and
  gives the same weights as an uninterrupted run (batches are shuffled by a generator seeded
  with ``seed`` and the epoch, so no random state has to be restored; time-reversal augmentation
  uses no random numbers). The checkpoint records the config: a resume with a changed one is
  refused or must be accepted (:mod:`fpscf.training.checkpoints`). Temporaries that a killed run
  left behind are removed when a run starts.
- ``best.fpscf`` (lowest validation loss within the latest stage, whose loss it is measured by) and
  ``final.fpscf``: deployable models for :func:`fpscf.load_model` and ``FixedPointCalculator``,
  with the training domain of the training structures (:class:`fpscf.domain.TrainingDomain`) in
  their header.
- ``config.yaml`` (the resolved config), ``metrics.csv``/``metrics.json``,
  ``learning_curves.png`` and ``parity_<stage>.png`` (validation set, end of each stage).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import yaml

from fpscf.atomic_files import remove_stale_temporaries
from fpscf.data.graph import AtomicGraph
from fpscf.domain import TrainingDomain
from fpscf.errors import FpscfError
from fpscf.model import FixedPointModel, build_model
from fpscf.model_io import save_model
from fpscf.training import distributed
from fpscf.training.augmentation import time_reversal_partners
from fpscf.training.checkpoints import resume_from, save_checkpoint
from fpscf.training.data import load_training_data
from fpscf.training.config import StageConfig, TrainingConfig
from fpscf.training.distributed import Ranks
from fpscf.training.epochs import MAX_FAILED_BATCH_FRACTION, EpochRunner, SCFTrainingError, TrainingError
from fpscf.training.finetune import parent_model, write_model_card
from fpscf.training.losses import UNITS
from fpscf.training.reporting import MetricsLog, atomic_write_text, plot_parity
from fpscf.training.statistics import field_feature_norms, level_atomic_energies, resolve_model_options

CHECKPOINT = "checkpoint.pt"
DTYPES = {"float64": torch.float64, "float32": torch.float32}
__all__ = ["CHECKPOINT", "MAX_FAILED_BATCH_FRACTION", "SCFTrainingError", "Trainer", "TrainingError",
           "TrainingInterrupted", "TrainingResult", "train"]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: where it stopped and the checkpoint ``--resume`` continues from.

    Attributes:
        epoch: the epoch that was running (counted from 1, as the progress bar shows it).
        checkpoint: the checkpoint file, or None if none was written yet.
        checkpoint_epoch: the last finished epoch it holds (from 1), or None.
    """

    def __init__(self, epoch: int, checkpoint: Path | None, checkpoint_epoch: int | None) -> None:
        super().__init__(epoch)
        self.epoch, self.checkpoint, self.checkpoint_epoch = epoch, checkpoint, checkpoint_epoch

    def describe(self, resume_command: str) -> str:
        """One line: where training stopped and how to continue."""
        if self.checkpoint is None:
            return f"interrupted in epoch {self.epoch} before the first checkpoint; start again (without --resume)"
        return (f"interrupted in epoch {self.epoch}; {self.checkpoint} holds epoch {self.checkpoint_epoch}: "
                f"continue with {resume_command}")


@dataclass
class TrainingResult:
    """Paths of the outputs and the final validation metrics (property → RMSE)."""

    output_dir: Path
    best_model: Path
    final_model: Path
    metrics: dict[str, float]


class Trainer:
    """Train a :class:`FixedPointModel` as a :class:`TrainingConfig` says."""

    def __init__(self, config: TrainingConfig, on_epoch_end: Callable[[int], None] | None = None,
                 distributed_required: bool = False) -> None:
        self.config = config
        self.on_epoch_end = on_epoch_end
        self.dtype = DTYPES[config.default_dtype]
        self.device = torch.device(config.device)
        self.output_dir = Path(config.output_dir)
        #: ranges of the training structures (set by ``run`` from the training split), saved with every model
        self.training_domain: TrainingDomain | None = None
        #: ``fpscf train --distributed``: refuse to run outside torchrun
        self.distributed_required = distributed_required
        self.ranks = Ranks(device=self.device)
        self.runner = EpochRunner(config, self.ranks, self._warn)

    def _batches(self, graphs: list[AtomicGraph], size: int, generator: torch.Generator | None,
                 partners: dict[int, AtomicGraph] | None = None) -> list[AtomicGraph]:
        """This rank's batches of ``graphs`` (:mod:`fpscf.training.batches`), collated."""
        return [batch for batch in self.runner.batches(graphs, size, generator, partners)[1] if batch is not None]

    # ------------------------------------------------------------------ setup
    def _load_data(self) -> tuple[list[int], Sequence[AtomicGraph], Sequence[AtomicGraph]]:
        data = load_training_data(self.config, self.dtype)
        self.training_domain = data.domain
        return data.numbers, data.train, data.valid

    def _build_model(self, numbers: list[int], train: list[AtomicGraph]) -> FixedPointModel:
        if self.config.finetune is not None:  # the parent's architecture, weights and normalisers
            return parent_model(self.config, numbers, self.device, self.dtype)
        options = resolve_model_options(dict(self.config.model), numbers, train)
        options.setdefault("seed", self.config.seed)
        levels = int(self.config.model.get("num_levels", 1))
        per_level = None
        if levels > 1 and self.config.model.get("atomic_energies") == "average":  # E0 of level 0, shifts of the others
            per_level = level_atomic_energies(list(train), numbers, levels)
            options["atomic_energies"] = per_level[0]
        model = build_model(numbers, **options)
        if self.config.model.get("field_feature_norms") == "average":
            options["field_feature_norms"] = field_feature_norms(model, train)
            model = build_model(numbers, **options)
        if per_level is not None and model.level_heads is not None:
            with torch.no_grad():
                for level in range(1, levels):
                    shift = [per_level[level][z] - per_level[0][z] for z in numbers]
                    model.level_heads.energy_shift[level - 1] = torch.tensor(shift)
        return model.to(device=self.device, dtype=self.dtype)

    def _optimizer(self, model: FixedPointModel) -> torch.optim.Optimizer:
        """Three parameter groups: the field block (update rule and field readout), the local
        charges head, and everything else, each with its own weight decay."""
        settings = self.config.optimizer
        field_ids = {id(p) for module in (model.update, model.field_readout) for p in module.parameters()}
        local_modules = [model.local_charges] + ([model.local_higher] if model.local_higher is not None else [])
        local_ids = {id(p) for module in local_modules for p in module.parameters()}
        groups: dict[str, list[torch.nn.Parameter]] = {"field_block": [], "local_charges": [], "other": []}
        for parameter in model.parameters():
            if not parameter.requires_grad:
                continue
            key = "field_block" if id(parameter) in field_ids else "local_charges" if id(parameter) in local_ids else "other"
            groups[key].append(parameter)
        decay = {
            "field_block": settings.field_block_weight_decay,
            "local_charges": settings.local_charges_weight_decay,
            "other": settings.weight_decay,
        }
        param_groups = [{"params": ps, "weight_decay": decay[k], "name": k} for k, ps in groups.items() if ps]
        lr = self.config.train_schedule[0].lr
        kind = torch.optim.AdamW if settings.name == "adamw" else torch.optim.Adam
        return kind(param_groups, lr=lr, betas=tuple(settings.betas), eps=settings.eps, amsgrad=settings.amsgrad)

    # ------------------------------------------------------------------ loop
    def run(self, resume: bool = False, accept_changes: bool = False) -> TrainingResult:
        """Train through every stage; with ``resume`` continue from the checkpoint (a changed config
        is an error unless ``accept_changes``: :mod:`fpscf.training.checkpoints`). Under torchrun
        every rank runs this (:mod:`fpscf.training.distributed`); rank 0 writes the files."""
        self.ranks = distributed.start(self.config.device, required=self.distributed_required)
        self.device = self.ranks.device
        self.runner = EpochRunner(self.config, self.ranks, self._warn)
        try:
            return self._run(resume, accept_changes)
        finally:
            distributed.stop(self.ranks)

    def _run(self, resume: bool, accept_changes: bool) -> TrainingResult:
        config, writes = self.config, self.ranks.writes
        checkpoint_path = self.output_dir / CHECKPOINT
        if writes:
            remove_stale_temporaries(self.output_dir)
        if checkpoint_path.exists() and not resume:
            raise TrainingError(
                f"{self.output_dir} already holds a training run ({CHECKPOINT}); pass --resume to continue it "
                "or choose another output_dir (nothing is overwritten)"
            )
        if resume and not checkpoint_path.exists():
            raise TrainingError(f"--resume: no {CHECKPOINT} in {self.output_dir}; start without --resume")
        self.output_dir.mkdir(parents=True, exist_ok=True)
        try:
            numbers, train, valid = self._load_data()
        except (TypeError, ValueError) as error:  # the data readers' messages name the file, structure and fix
            if isinstance(error, FpscfError):
                raise
            raise TrainingError(str(error)) from None
        model = self._build_model(numbers, train)
        model.training_domain = self.training_domain  # written into best.fpscf and final.fpscf by save_model
        optimizer = self._optimizer(model)
        partners = None
        if config.time_reversal_augmentation:
            partners = time_reversal_partners(train, collinear=model.config.magnetic_moments == "collinear")
        metrics, progress = MetricsLog(), _Progress(0, math.inf, 0)
        if resume:
            state, accepted = resume_from(checkpoint_path, model, optimizer, config.to_dict(), accept_changes, write=writes)
            if accepted:
                self._warn(f"resume: config changes accepted (config.yaml updated): {'; '.join(accepted)}")
            progress = _Progress(int(state["epoch"]) + 1, float(state["best"]), int(state.get("stale", 0)))
            metrics = MetricsLog.from_list(state["metrics"])
            self._say(f"resumed from {checkpoint_path}: epochs 1-{progress.epoch} done, continuing at epoch "
                      f"{progress.epoch + 1} of {config.num_epochs}")
        elif writes:
            atomic_write_text(self.output_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
        distributed.broadcast_parameters(model, self.ranks)
        ranks = f", {self.ranks.world_size} ranks" if self.ranks.distributed else ""
        self._say(f"fpscf train: {len(train)} training / {len(valid)} validation structures, "
                  f"{sum(p.numel() for p in model.parameters())} parameters{ranks}, output {self.output_dir}")
        self._epoch, self._checkpoint_epoch = progress.epoch, (progress.epoch - 1 if resume else None)
        try:
            self._epochs(model, optimizer, train, valid, partners, metrics, progress)
        except KeyboardInterrupt:
            saved = self._checkpoint_epoch
            raise TrainingInterrupted(self._epoch + 1, None if saved is None else checkpoint_path,
                                      None if saved is None else saved + 1) from None
        final = self.output_dir / "final.fpscf"
        if writes:
            save_model(model, final)
            if not (self.output_dir / "best.fpscf").exists():
                save_model(model, self.output_dir / "best.fpscf")
        last = metrics.latest(config.train_schedule[-1].name, "valid")
        if writes and getattr(model, "parent", None) is not None:
            write_model_card(self.output_dir, config, model.parent, {k: r.rmse for k, r in last.items()}, len(train))
        return TrainingResult(self.output_dir, self.output_dir / "best.fpscf", final, {k: r.rmse for k, r in last.items()})

    def _epochs(
        self, model: FixedPointModel, optimizer: torch.optim.Optimizer, train: list[AtomicGraph],
        valid: list[AtomicGraph], partners: dict[int, AtomicGraph] | None, metrics: MetricsLog, progress: _Progress,
    ) -> None:
        """Epochs from ``progress.epoch`` (from 0) to the last: train, validate, keep the best model,
        checkpoint; a stage whose validation loss stalls for ``early_stopping_patience`` epochs ends early."""
        config, writes = self.config, self.ranks.writes
        epoch, best, stale = progress.epoch, progress.best, progress.stale
        while epoch < config.num_epochs:
            self._epoch = epoch
            stage = config.stage_at(epoch)
            if epoch == stage.start:
                best, stale = math.inf, 0  # "best" compares validation losses of one stage's loss only
            for group in optimizer.param_groups:
                group["lr"] = stage.lr_at(epoch)
            train_stats = self.runner.train_epoch(model, optimizer, train, stage, epoch, partners)
            # At a stage's last epoch the validation pass also keeps reference/prediction pairs
            # for the parity plot, so the validation set is evaluated once per epoch.
            valid_stats, pairs = self.runner.evaluate(model, valid, stage, keep=config.plot and epoch == stage.end)
            metrics.extend(train_stats.records(epoch, stage.name, "train"))
            metrics.extend(valid_stats.records(epoch, stage.name, "valid"))
            stale = 0 if valid_stats.loss < best else stale + 1
            if valid_stats.loss < best:
                best = valid_stats.loss
                if writes:
                    save_model(model, self.output_dir / "best.fpscf")
            patience = config.early_stopping_patience
            stop = epoch < stage.end and patience is not None and stale >= patience
            stop = bool(distributed.all_reduce_sum(torch.tensor([float(stop)]), self.ranks)[0] > 0)  # all ranks agree
            if stop:
                self._say(f"\nearly stopping: stage '{stage.name}' has not lowered its validation loss for {stale} "
                          f"epochs; it ends at epoch {epoch + 1} (planned {stage.end + 1})")
                if config.plot:
                    pairs = self.runner.evaluate(model, valid, stage, keep=True)[1]
            done = stage.end if stop else epoch  # the epoch the checkpoint holds: a stopped stage counts as done
            if (epoch + 1) % config.checkpoint_every == 0 or epoch == stage.end or stop:
                self._checkpoint(model, optimizer, done, best, metrics, stale)
            if writes:
                metrics.write(self.output_dir)
                if config.plot:
                    metrics.plot_learning_curves(self.output_dir / "learning_curves.png", UNITS)
            if epoch == stage.end or stop:
                self._say(f"\nstage {stage.index} '{stage.name}' (epochs {stage.start + 1}–{epoch + 1}, mode "
                          f"{stage.fixed_point_training_options.mode}) done:\n" + metrics.stage_table(stage.name, UNITS))
                if config.plot and writes:
                    self._parity(pairs, stage)
            if self.on_epoch_end is not None:
                self.on_epoch_end(epoch)
            epoch = done + 1

    def _parity(self, pairs: dict[str, tuple[list[np.ndarray], list[np.ndarray]]], stage: StageConfig) -> None:
        data = {name: (np.concatenate(ref), np.concatenate(pred)) for name, (ref, pred) in pairs.items()}
        plot_parity(self.output_dir / f"parity_{stage.name}.png", data, UNITS, title=f"validation, stage {stage.name}")

    def _checkpoint(self, model: FixedPointModel, optimizer: torch.optim.Optimizer, epoch: int, best: float,
                    metrics: MetricsLog, stale: int) -> None:
        """Rank 0 writes ``checkpoint.pt`` (the state is the same on every rank)."""
        if self.ranks.writes:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "best": best,
                     "metrics": metrics.to_list(), "stale": stale}
            save_checkpoint(self.output_dir / CHECKPOINT, state, self.config.to_dict())
        self._checkpoint_epoch = epoch

    def _say(self, text: str) -> None:
        if self.config.progress and self.ranks.writes:
            print(text, file=sys.stderr, flush=True)

    def _warn(self, text: str) -> None:
        where = f"rank {self.ranks.rank}: " if self.ranks.distributed else ""
        print(f"warning: {where}{text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class _Progress:
    """Where a run starts: the first epoch to train (from 0), the stage's best validation loss so
    far and the epochs since it improved (early stopping)."""

    epoch: int
    best: float
    stale: int


def train(
    config_path: str | os.PathLike, overrides: list[str] | None = None, resume: bool = False, accept_changes: bool = False,
    distributed_required: bool = False,
) -> TrainingResult:
    """``fpscf train --config config.yaml [--option=value ...] [--resume [--accept-changes]] [--distributed]``."""
    from fpscf.training.config import load_config

    trainer = Trainer(load_config(config_path, overrides or []), distributed_required=distributed_required)
    return trainer.run(resume=resume, accept_changes=accept_changes)
