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
from typing import Any, Callable

import numpy as np
import torch
import yaml

from fpscf.config import ModelConfig
from fpscf.data.extxyz import load_dataset, read_extxyz
from fpscf.data.graph import AtomicGraph, collate
from fpscf.data.labels import PER_ATOM_LABELS
from fpscf.domain import TrainingDomain
from fpscf.model import FixedPointModel, build_model
from fpscf.model_io import save_model
from fpscf.scf.solver import SCFConvergenceError
from fpscf.training.config import StageConfig, TrainingConfig
from fpscf.training.augmentation import time_reversal_partners
from fpscf.training.forward import NEEDS_FIELD_RESPONSE, NEEDS_MAGNETIC_RESPONSE, predict
from fpscf.training.losses import (
    LOSS_LABELS,
    UNITS,
    LossTerm,
    compute_losses,
    constrained_moments_mask,
    losses_with_data,
)
from fpscf.training.reporting import (
    MetricRecord,
    MetricsLog,
    ProgressBar,
    atomic_write_text,
    plot_parity,
)
from fpscf.training.statistics import field_feature_norms, resolve_model_options
from fpscf.atomic_files import remove_stale_temporaries
from fpscf.errors import FpscfError
from fpscf.training.checkpoints import resume_from, save_checkpoint

CHECKPOINT = "checkpoint.pt"
DTYPES = {"float64": torch.float64, "float32": torch.float32}
#: A training epoch in which the SCF fails for more than this fraction of the batches stops the run.
MAX_FAILED_BATCH_FRACTION = 0.2


class TrainingError(FpscfError, ValueError):
    """The data and the config do not fit together (found before training starts)."""


class SCFTrainingError(TrainingError):
    """The SCF failed for too many batches of an epoch: the model went unstable during training."""


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


class _Accumulator:
    """Running RMSE / MAE per property and the mean loss."""

    def __init__(self) -> None:
        self.squares: dict[str, float] = {}
        self.absolute: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.loss_sum = 0.0
        self.batches = 0

    def add(self, loss: float, terms: dict[str, LossTerm]) -> None:
        self.loss_sum += loss
        self.batches += 1
        for name, term in terms.items():
            errors = term.errors.detach().double()
            self.squares[name] = self.squares.get(name, 0.0) + float((errors * errors).sum())
            self.absolute[name] = self.absolute.get(name, 0.0) + float(errors.abs().sum())
            self.counts[name] = self.counts.get(name, 0) + errors.numel()

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.batches, 1)

    def records(self, epoch: int, stage: str, split: str) -> list[MetricRecord]:
        rows = [MetricRecord(epoch, stage, split, "loss", math.nan, math.nan, self.batches, self.loss)]
        for name, count in self.counts.items():
            rows.append(
                MetricRecord(epoch, stage, split, name, math.sqrt(self.squares[name] / count), self.absolute[name] / count, count)
            )
        return rows


class Trainer:
    """Train a :class:`FixedPointModel` as a :class:`TrainingConfig` says."""

    def __init__(self, config: TrainingConfig, on_epoch_end: Callable[[int], None] | None = None) -> None:
        self.config = config
        self.on_epoch_end = on_epoch_end
        self.dtype = DTYPES[config.default_dtype]
        self.device = torch.device(config.device)
        self.output_dir = Path(config.output_dir)
        #: ranges of the training structures (set by ``run`` from the training split), saved with every model
        self.training_domain: TrainingDomain | None = None

    # ------------------------------------------------------------------ setup
    def _load_data(self) -> tuple[list[int], list[AtomicGraph], list[AtomicGraph]]:
        config = self.config
        key_map = config.make_key_map()
        r_max = float(config.model.get("r_max", ModelConfig.__dataclass_fields__["r_max"].default))
        frames = read_extxyz(config.train_file, key_map)
        numbers = list(config.atomic_numbers) if config.atomic_numbers else sorted(
            {int(z) for atoms in frames for z in atoms.numbers}
        )
        train = load_dataset(config.train_file, r_max, key_map, numbers, dtype=self.dtype)
        magnetic = config.model.get("magnetic_moments", "none") != "none"
        if magnetic:
            _check_constrained_moments(train, config.train_file)
        if config.valid_file:
            valid = load_dataset(config.valid_file, r_max, key_map, numbers, dtype=self.dtype)
            if magnetic:
                _check_constrained_moments(valid, config.valid_file)
        else:
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.seed)).tolist()
            n_valid = max(1, int(round(config.valid_fraction * len(train))))
            if len(train) - n_valid < 1:
                raise TrainingError(f"{config.train_file} has {len(train)} structures: too few to hold out a validation set; give valid_file")
            valid = [train[i] for i in order[:n_valid]]
            train = [train[i] for i in order[n_valid:]]
            frames = [frames[i] for i in order[n_valid:]]
        if not train:
            raise TrainingError(f"{config.train_file} has no structures")
        self.training_domain = TrainingDomain.from_structures(frames, key_map)
        self._check_labels(train)
        return numbers, train, valid

    def _check_labels(self, train: list[AtomicGraph]) -> None:
        """Every loss with a weight must have its label on at least one training structure."""
        key_map = self.config.make_key_map()
        for stage in self.config.train_schedule:
            for name, weight in stage.loss.items():
                label = LOSS_LABELS[name]
                if weight <= 0 or label is None:
                    continue
                if not any(label in g.label_masks and bool(g.label_masks[label].any()) for g in train):
                    key = getattr(key_map, label, label)
                    raise TrainingError(
                        f"train_schedule.{stage.index}.loss.{name} has weight {weight} but no training structure in "
                        f"{self.config.train_file} has a '{label}' label (looked for key '{key}'); remove the loss, "
                        f"or set key_map.{label} to the key your file uses"
                    )
            options = stage.fixed_point_training_options
            needs_reference = options.mode == "direct" or (options.scf is not None and options.scf.initial_density == "from_data")
            if needs_reference:
                missing = sum(1 for g in train if not ("atomic_multipoles" in g.label_masks and bool(g.label_masks["atomic_multipoles"].all())))
                if missing:
                    raise TrainingError(
                        f"train_schedule.{stage.index} ({stage.name}) starts from the reference density "
                        f"(mode {options.mode!r}, initial_density from_data) but {missing} of {len(train)} training "
                        "structures have no atomic_multipoles; add them or use initial_density: local_guess"
                    )

    def _build_model(self, numbers: list[int], train: list[AtomicGraph]) -> FixedPointModel:
        options = resolve_model_options(dict(self.config.model), numbers, train)
        options.setdefault("seed", self.config.seed)
        model = build_model(numbers, **options)
        if self.config.model.get("field_feature_norms") == "average":
            options["field_feature_norms"] = field_feature_norms(model, train)
            model = build_model(numbers, **options)
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
        is an error unless ``accept_changes``: :mod:`fpscf.training.checkpoints`)."""
        config = self.config
        checkpoint_path = self.output_dir / CHECKPOINT
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
        metrics = MetricsLog()
        start_epoch, best = 0, math.inf
        if resume:
            state, accepted = resume_from(checkpoint_path, model, optimizer, config.to_dict(), accept_changes)
            if accepted:
                self._warn(f"resume: config changes accepted (config.yaml updated): {'; '.join(accepted)}")
            start_epoch, best = int(state["epoch"]) + 1, float(state["best"])
            metrics = MetricsLog.from_list(state["metrics"])
            self._say(f"resumed from {checkpoint_path}: epochs 1-{start_epoch} done, continuing at epoch "
                      f"{start_epoch + 1} of {config.num_epochs}")
        else:
            atomic_write_text(self.output_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
        self._say(f"fpscf train: {len(train)} training / {len(valid)} validation structures, "
                  f"{sum(p.numel() for p in model.parameters())} parameters, output {self.output_dir}")
        self._epoch, self._checkpoint_epoch = start_epoch, (start_epoch - 1 if resume else None)
        try:
            self._epochs(model, optimizer, train, valid, partners, metrics, start_epoch, best)
        except KeyboardInterrupt:
            saved = self._checkpoint_epoch
            raise TrainingInterrupted(self._epoch + 1, None if saved is None else checkpoint_path,
                                      None if saved is None else saved + 1) from None
        final = self.output_dir / "final.fpscf"
        save_model(model, final)
        if not (self.output_dir / "best.fpscf").exists():
            save_model(model, self.output_dir / "best.fpscf")
        last = metrics.latest(config.train_schedule[-1].name, "valid")
        return TrainingResult(self.output_dir, self.output_dir / "best.fpscf", final, {k: r.rmse for k, r in last.items()})

    def _epochs(
        self, model: FixedPointModel, optimizer: torch.optim.Optimizer, train: list[AtomicGraph],
        valid: list[AtomicGraph], partners: dict[int, AtomicGraph] | None, metrics: MetricsLog,
        start_epoch: int, best: float,
    ) -> None:
        """Epochs ``start_epoch`` .. the last (from 0): train, validate, keep the best model, checkpoint."""
        config = self.config
        for epoch in range(start_epoch, config.num_epochs):
            self._epoch = epoch
            stage = config.stage_at(epoch)
            if epoch == stage.start:
                best = math.inf  # "best" compares validation losses of one stage's loss only
            for group in optimizer.param_groups:
                group["lr"] = stage.lr_at(epoch)
            train_stats = self._train_epoch(model, optimizer, train, stage, epoch, partners)
            # At a stage's last epoch the validation pass also keeps reference/prediction pairs
            # for the parity plot, so the validation set is evaluated once per epoch.
            valid_stats, pairs = self._evaluate(model, valid, stage, keep=config.plot and epoch == stage.end)
            metrics.extend(train_stats.records(epoch, stage.name, "train"))
            metrics.extend(valid_stats.records(epoch, stage.name, "valid"))
            if valid_stats.loss < best:
                best = valid_stats.loss
                save_model(model, self.output_dir / "best.fpscf")
            if (epoch + 1) % config.checkpoint_every == 0 or epoch == stage.end:
                self._checkpoint(model, optimizer, epoch, best, metrics)
            metrics.write(self.output_dir)
            if config.plot:
                metrics.plot_learning_curves(self.output_dir / "learning_curves.png", UNITS)
            if epoch == stage.end:
                self._say(f"\nstage {stage.index} '{stage.name}' (epochs {stage.start + 1}–{stage.end + 1}, mode "
                          f"{stage.fixed_point_training_options.mode}) done:\n" + metrics.stage_table(stage.name, UNITS))
                if config.plot:
                    self._parity(pairs, stage)
            if self.on_epoch_end is not None:
                self.on_epoch_end(epoch)

    def _batches(
        self, graphs: list[AtomicGraph], size: int, generator: torch.Generator | None,
        partners: dict[int, AtomicGraph] | None = None,
    ) -> list[AtomicGraph]:
        """Batches of ``size`` structures (shuffled by ``generator``, in order without one).

        Structures with response labels (α, Z*, χ: several extra derivative passes through the
        SCF) are batched only with each other, so the other batches skip those passes. For a
        magnetic model, structures whose moments are all held fixed (constrained moments, or
        ``spin_on`` False) are batched apart from those that relax them, so their batches skip
        the moment SCF. ``partners`` (structure index → time-reversed copy) are appended to the
        batch of their structure."""
        partners = partners or {}
        magnetic = self.config.model.get("magnetic_moments", "none") != "none"
        groups: dict[tuple[tuple[str, ...], bool], list[int]] = {}
        for index, graph in enumerate(graphs):
            groups.setdefault((_response_labels(graph), magnetic and _holds_moments_fixed(graph)), []).append(index)
        chunks: list[list[int]] = []
        for key in sorted(groups):
            members = groups[key]
            if generator is not None:
                members = [members[i] for i in torch.randperm(len(members), generator=generator).tolist()]
            chunks.extend(members[k : k + size] for k in range(0, len(members), size))
        if generator is not None:
            chunks = [chunks[i] for i in torch.randperm(len(chunks), generator=generator).tolist()]
        return [
            collate([graphs[i] for i in chunk] + [partners[i] for i in chunk if i in partners]).to(device=self.device)
            for chunk in chunks
        ]

    def _train_epoch(
        self, model: FixedPointModel, optimizer: torch.optim.Optimizer, train: list[AtomicGraph], stage: StageConfig,
        epoch: int, partners: dict[int, AtomicGraph] | None = None,
    ) -> _Accumulator:
        model.train()
        generator = torch.Generator().manual_seed(self.config.seed * 100003 + epoch)
        batches = self._batches(train, self.config.batch_size, generator, partners)
        stats = _Accumulator()
        losses = {name for name, w in stage.loss.items() if w > 0}
        bar = ProgressBar(len(batches), f"[{stage.name}] epoch {epoch + 1}/{self.config.num_epochs}", enabled=self.config.progress)
        failures: list[SCFConvergenceError] = []
        for batch in batches:
            optimizer.zero_grad(set_to_none=True)
            try:
                out = predict(model, batch, stage.fixed_point_training_options, losses_with_data(losses, batch), training=True)
            except SCFConvergenceError as error:  # skip the batch: no step is taken on it
                failures.append(error)
                self._warn(f"epoch {epoch + 1}: SCF did not converge for a training batch of {batch.num_graphs} "
                           f"structures; batch skipped ({len(failures)} this epoch). {_residual_tail(error)}")
                bar.update(1)
                continue
            total, terms = compute_losses(out, batch, stage.loss)
            total.backward()
            if self.config.optimizer.gradient_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.optimizer.gradient_clip)
            optimizer.step()
            stats.add(float(total.detach()), terms)
            bar.update(1, loss=float(total.detach()))
        bar.close()
        if len(failures) > MAX_FAILED_BATCH_FRACTION * len(batches) or len(failures) == len(batches):
            raise SCFTrainingError(
                f"epoch {epoch + 1}: the SCF did not converge for {len(failures)} of {len(batches)} training batches "
                f"(more than {MAX_FAILED_BATCH_FRACTION:.0%}); the last: {failures[-1]}. The model went unstable in a "
                "field or density: resume from the last checkpoint (--resume) with a smaller learning rate, a smaller "
                "scf.mixing_parameter or more scf.num_scf_steps"
            )
        return stats

    def _evaluate(
        self, model: FixedPointModel, graphs: list[AtomicGraph], stage: StageConfig, keep: bool = False
    ) -> tuple[_Accumulator, dict[str, tuple[list[np.ndarray], list[np.ndarray]]]]:
        """Validation metrics, and (``keep``) reference/prediction arrays per loss for parity plots."""
        model.eval()
        stats = _Accumulator()
        losses = {name for name, w in stage.loss.items() if w > 0}
        pairs: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        batches = self._batches(graphs, self.config.valid_batch_size or self.config.batch_size, None)
        failed = 0
        for batch in batches:
            try:
                out = predict(model, batch, stage.fixed_point_training_options, losses_with_data(losses, batch), training=False)
            except SCFConvergenceError as error:
                failed += 1
                self._warn(f"validation: SCF did not converge for a batch of {batch.num_graphs} structures; left out "
                           f"of this epoch's validation metrics. {_residual_tail(error)}")
                if failed == len(batches):
                    raise SCFTrainingError(f"validation: the SCF did not converge for any batch; the last: {error}") from error
                continue
            total, terms = compute_losses(out, batch, stage.loss)
            stats.add(float(total.detach()), terms)
            if keep:
                for name, term in terms.items():
                    _collect_pair(pairs, name, batch, term)
        return stats, pairs

    def _parity(self, pairs: dict[str, tuple[list[np.ndarray], list[np.ndarray]]], stage: StageConfig) -> None:
        data = {name: (np.concatenate(ref), np.concatenate(pred)) for name, (ref, pred) in pairs.items()}
        plot_parity(self.output_dir / f"parity_{stage.name}.png", data, UNITS, title=f"validation, stage {stage.name}")

    def _checkpoint(self, model: FixedPointModel, optimizer: torch.optim.Optimizer, epoch: int, best: float, metrics: MetricsLog) -> None:
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "best": best,
                 "metrics": metrics.to_list()}
        save_checkpoint(self.output_dir / CHECKPOINT, state, self.config.to_dict())
        self._checkpoint_epoch = epoch

    def _say(self, text: str) -> None:
        if self.config.progress:
            print(text, file=sys.stderr, flush=True)

    @staticmethod
    def _warn(text: str) -> None:
        print(f"warning: {text}", file=sys.stderr, flush=True)


def _residual_tail(error: SCFConvergenceError) -> str:
    history = error.residual_history
    return f"Residuals: first {history[0]:.2e}, last {history[-1]:.2e} after {len(history)} steps." if history else ""


def _collect_pair(pairs: dict, name: str, batch: AtomicGraph, term: LossTerm) -> None:
    """Reference and prediction arrays of one loss, for parity plots (prediction = ref + error)."""
    label = LOSS_LABELS[name]
    errors = term.errors.detach().cpu().numpy().reshape(-1)
    if label is None:
        reference = np.zeros_like(errors)
    else:
        mask = batch.label_masks[label]
        if name == "magmoms":  # constrained moments are inputs, not fitted
            mask = mask & ~constrained_moments_mask(batch)
        if label in PER_ATOM_LABELS:
            mask = mask[batch.batch]
        reference = batch.labels[label][mask].detach().cpu().numpy()
        if name == "atomic_multipoles":
            reference = reference[:, : term.errors.shape[1]]
        if name in ("energy_per_atom", "dipole_per_atom", "fermi_level_per_atom", "magnetic_moment_per_atom"):
            atoms = batch.num_atoms_per_graph.to(torch.float64)[mask].cpu().numpy()
            reference = reference / (atoms if reference.ndim == 1 else atoms[:, None])
        reference = reference.reshape(-1)
    ref_list, pred_list = pairs.setdefault(name, ([], []))
    ref_list.append(reference)
    pred_list.append(reference + errors)


def train(
    config_path: str | os.PathLike, overrides: list[str] | None = None, resume: bool = False, accept_changes: bool = False
) -> TrainingResult:
    """``fpscf train --config config.yaml [--option=value ...] [--resume [--accept-changes]]``."""
    from fpscf.training.config import load_config

    return Trainer(load_config(config_path, overrides or [])).run(resume=resume, accept_changes=accept_changes)


def _response_labels(graph: AtomicGraph) -> tuple[str, ...]:
    """The response labels (α, Z*, magnetic susceptibility) that a structure has, sorted."""
    return tuple(sorted(
        label for label in NEEDS_FIELD_RESPONSE | NEEDS_MAGNETIC_RESPONSE
        if label in graph.label_masks and bool(graph.label_masks[label].any())
    ))


def _holds_moments_fixed(graph: AtomicGraph) -> bool:
    """The moments of this structure are not relaxed: constrained to its magmoms label, or zero
    because it is not magnetic (``spin_on`` False)."""
    not_magnetic = graph.spin_on is not None and not bool(graph.spin_on.any())
    return bool(constrained_moments_mask(graph).all()) or not_magnetic


def _check_constrained_moments(graphs: list[AtomicGraph], path: str) -> None:
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
