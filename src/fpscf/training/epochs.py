"""One training epoch and one validation pass, on one process or on many (:mod:`fpscf.training.distributed`).

With one process a step is: forward, loss, backward, clip, optimizer step; a batch whose SCF does
not converge is skipped with a warning. With several ranks each trains on its share of the global
batch; the losses are normalised by the global row counts and the gradients summed over ranks, so
the step is the one a single process would take on the whole batch (to round-off), and a batch
that fails on any rank is skipped on all.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from fpscf.data.graph import AtomicGraph
from fpscf.data.labels import PER_ATOM_LABELS
from fpscf.errors import FpscfError
from fpscf.scf.solver import SCFConvergenceError
from fpscf.training import distributed
from fpscf.training.batches import dataset_groups, local_batches, plan_batches
from fpscf.training.config import StageConfig, TrainingConfig
from fpscf.training.distributed import Ranks
from fpscf.training.forward import predict
from fpscf.training.hessian import add_hessian_rows
from fpscf.training.losses import LOSS_LABELS, LossTerm, compute_losses, constrained_moments_mask, losses_with_data
from fpscf.training.reporting import MetricRecord, ProgressBar

#: A training epoch in which the SCF fails for more than this fraction of the batches stops the run.
MAX_FAILED_BATCH_FRACTION = 0.2
#: Reference/prediction arrays per loss, for parity plots.
Pairs = dict[str, tuple[list[np.ndarray], list[np.ndarray]]]


class TrainingError(FpscfError, ValueError):
    """The data and the config do not fit together (found before training starts)."""


class SCFTrainingError(TrainingError):
    """The SCF failed for too many batches of an epoch: the model went unstable during training."""


class Accumulator:
    """Running RMSE / MAE per property and the mean loss (over global batches)."""

    def __init__(self) -> None:
        self.squares: dict[str, float] = {}
        self.absolute: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.loss_sum = 0.0
        self.batches = 0

    def add(self, loss: float, terms: dict[str, LossTerm]) -> None:
        """One batch: its (global) loss and this rank's errors."""
        self.loss_sum += loss
        self.batches += 1
        for name, term in terms.items():
            errors = term.errors.detach().double()
            self.squares[name] = self.squares.get(name, 0.0) + float((errors * errors).sum())
            self.absolute[name] = self.absolute.get(name, 0.0) + float(errors.abs().sum())
            self.counts[name] = self.counts.get(name, 0) + errors.numel()

    def reduce(self, ranks: Ranks) -> Accumulator:
        """The errors of every rank summed (the losses are already global); self with one rank."""
        if not ranks.distributed:
            return self
        total = Accumulator()
        total.loss_sum, total.batches = self.loss_sum, self.batches
        for squares, absolute, counts in distributed.gather_objects((self.squares, self.absolute, self.counts), ranks):
            for name in counts:
                total.squares[name] = total.squares.get(name, 0.0) + squares[name]
                total.absolute[name] = total.absolute.get(name, 0.0) + absolute[name]
                total.counts[name] = total.counts.get(name, 0) + counts[name]
        return total

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


@dataclass
class EpochRunner:
    """Runs epochs of one training: config, ranks, data layout and the warning channel."""

    config: TrainingConfig
    ranks: Ranks = field(default_factory=Ranks)
    warn: Callable[[str], None] = lambda text: print(f"warning: {text}", file=sys.stderr, flush=True)

    @property
    def magnetic(self) -> bool:
        return self.config.model.get("magnetic_moments", "none") != "none"

    def batches(self, data: Sequence[AtomicGraph], size: int, generator: torch.Generator | None,
                partners: dict[int, AtomicGraph] | None = None) -> tuple[int, Any]:
        """Number of global batches and an iterator over this rank's shares of them."""
        chunks = plan_batches(dataset_groups(data, self.magnetic), size, generator)
        workers = getattr(self.config, "num_workers", 0)
        return len(chunks), local_batches(data, chunks, self.ranks, self.ranks.device, partners, workers)

    # ------------------------------------------------------------------ training
    def train_epoch(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: Sequence[AtomicGraph],
        stage: StageConfig, epoch: int, partners: dict[int, AtomicGraph] | None = None,
    ) -> Accumulator:
        """One pass over the training set (shuffled by ``seed`` and ``epoch``); metrics over all ranks."""
        model.train()
        generator = torch.Generator().manual_seed(self.config.seed * 100003 + epoch)
        count, batches = self.batches(data, self.config.batch_size, generator, partners)
        stats = Accumulator()
        losses = {name for name, w in stage.loss.items() if w > 0}
        bar = ProgressBar(count, f"[{stage.name}] epoch {epoch + 1}/{self.config.num_epochs}",
                          enabled=self.config.progress and self.ranks.writes)
        failures: list[str] = []
        rows = self._hessian_sampling(losses, self.config.seed * 100003 + epoch)
        for batch in batches:
            optimizer.zero_grad(set_to_none=True)
            out, error = _forward(model, batch, stage, losses, training=True, hessian=rows)
            if self.ranks.distributed:
                loss, terms, failure = self._distributed_step(model, batch, out, error, stage)
            else:
                loss, terms, failure = self._step(model, batch, out, error, stage)
            if failure is not None:
                failures.append(failure)
                self.warn(f"epoch {epoch + 1}: {failure}; batch skipped ({len(failures)} this epoch)")
                bar.update(1)
                continue
            if self.config.optimizer.gradient_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.optimizer.gradient_clip)
            optimizer.step()
            stats.add(loss, terms)
            bar.update(1, loss=loss)
        bar.close()
        if len(failures) > MAX_FAILED_BATCH_FRACTION * count or len(failures) == count:
            raise SCFTrainingError(
                f"epoch {epoch + 1}: the SCF did not converge for {len(failures)} of {count} training batches "
                f"(more than {MAX_FAILED_BATCH_FRACTION:.0%}); the last: {failures[-1]}. The model went unstable in a "
                "field or density: resume from the last checkpoint (--resume) with a smaller learning rate, a smaller "
                "scf.mixing_parameter or more scf.num_scf_steps"
            )
        return stats.reduce(self.ranks)

    def _step(self, model: torch.nn.Module, batch: AtomicGraph, out: dict[str, Any] | None,
              error: SCFConvergenceError | None, stage: StageConfig) -> tuple[float, dict[str, LossTerm], str | None]:
        """One process: loss and backward (the failure message if the SCF failed)."""
        if error is not None or out is None:
            return math.nan, {}, _failure_message(batch, error)
        total, terms = compute_losses(out, batch, stage.loss)
        total.backward()
        return float(total.detach()), terms, None

    def _distributed_step(self, model: torch.nn.Module, batch: AtomicGraph | None, out: dict[str, Any] | None,
                          error: SCFConvergenceError | None, stage: StageConfig) -> tuple[float, dict[str, LossTerm], str | None]:
        """Several ranks: global normalisation, backward, gradients summed (module docstring)."""
        terms = compute_losses(out, batch, stage.loss)[1] if out is not None and batch is not None else {}
        names = list(stage.loss)
        failed, rows = distributed.global_row_counts(names, {n: t.rows for n, t in terms.items()},
                                                     error is not None, self.ranks)
        if failed:
            return math.nan, {}, (_failure_message(batch, error) if error is not None
                                  else "the SCF did not converge on another rank for this training batch")
        total = _globally_normalised(terms, rows, stage.loss)
        if total is not None and total.requires_grad:
            total.backward()
        local = total.detach().reshape(1) if total is not None else torch.zeros(1, dtype=torch.float64)
        loss = distributed.sum_gradients(model.parameters(), local, self.ranks)
        return float(loss[0]), terms, None

    # ------------------------------------------------------------------ validation
    def evaluate(
        self, model: torch.nn.Module, data: Sequence[AtomicGraph], stage: StageConfig, keep: bool = False
    ) -> tuple[Accumulator, Pairs]:
        """Validation metrics over all ranks, and (``keep``) reference/prediction arrays per loss for parity plots."""
        model.eval()
        stats = Accumulator()
        losses = {name for name, w in stage.loss.items() if w > 0}
        pairs: Pairs = {}
        count, batches = self.batches(data, self.config.valid_batch_size or self.config.batch_size, None)
        failed = 0
        rows = self._hessian_sampling(losses, self.config.seed * 100003 - 1)  # the same rows every epoch
        for batch in batches:
            out, error = _forward(model, batch, stage, losses, training=False, hessian=rows)
            total, terms = compute_losses(out, batch, stage.loss) if out is not None and batch is not None else (None, {})
            loss, any_failed = self._validation_loss(total, terms, error is not None, stage)
            if any_failed:
                failed += 1
                where = "" if error is not None else " on another rank"
                self.warn(f"validation: SCF did not converge{where} for a batch; left out of this epoch's validation "
                          f"metrics. {_residual_tail(error) if error is not None else ''}".rstrip())
                if failed == count:
                    raise SCFTrainingError(f"validation: the SCF did not converge for any batch; the last: "
                                           f"{error if error is not None else 'on another rank'}")
                continue
            stats.add(loss, terms)
            if keep and batch is not None:
                for name, term in terms.items():
                    collect_pair(pairs, name, batch, term)
        if keep and self.ranks.distributed:
            pairs = _merge_pairs(distributed.gather_objects(pairs, self.ranks))
        return stats.reduce(self.ranks), pairs

    def _hessian_sampling(self, losses: set[str], seed: int) -> tuple[int, torch.Generator] | None:
        """Rows per structure and the generator that draws them, when the stage fits Hessians."""
        if "hessian" not in losses:
            return None
        generator = torch.Generator().manual_seed(seed * 1009 + self.ranks.rank)
        return self.config.hessian_rows_per_structure, generator

    def _validation_loss(self, total: torch.Tensor | None, terms: dict[str, LossTerm], failed: bool,
                         stage: StageConfig) -> tuple[float, bool]:
        """The batch's loss (over all ranks) and whether its SCF failed anywhere."""
        if not self.ranks.distributed:
            return (math.nan, True) if failed or total is None else (float(total.detach()), False)
        names = list(stage.loss)
        local = [float(failed)] + [float(terms[n].rows) if n in terms else 0.0 for n in names]
        local += [float(terms[n].value.detach()) * terms[n].rows if n in terms else 0.0 for n in names]
        total = distributed.all_reduce_sum(torch.tensor(local, dtype=torch.float64), self.ranks).cpu().tolist()
        rows, sums = total[1 : 1 + len(names)], total[1 + len(names) :]
        loss = sum(stage.loss[n] * s / r for n, r, s in zip(names, rows, sums) if r > 0)
        return float(loss), total[0] > 0


def _forward(model: torch.nn.Module, batch: AtomicGraph | None, stage: StageConfig, losses: set[str],
             training: bool, hessian: tuple[int, torch.Generator] | None = None,
             ) -> tuple[dict[str, Any] | None, SCFConvergenceError | None]:
    """Model outputs for one (local) batch, or the SCF failure; (None, None) for an empty share.
    ``hessian``: rows per structure and generator of the sampled Hessian loss (:mod:`fpscf.training.hessian`)."""
    if batch is None:
        return None, None
    wanted = losses_with_data(losses, batch)
    try:
        out = predict(model, batch, stage.fixed_point_training_options, wanted, training=training)
    except SCFConvergenceError as error:  # skip the batch: no step is taken on it
        return None, error
    if hessian is not None and "hessian" in wanted:
        add_hessian_rows(out, batch, hessian[0], hessian[1], create_graph=training)
    return out, None


def _globally_normalised(terms: dict[str, LossTerm], rows: dict[str, int], weights: dict[str, float]) -> torch.Tensor | None:
    """Σ weight · (this rank's share of the global mean): each local mean times local/global rows."""
    total: torch.Tensor | None = None
    for name in weights:
        if name not in terms or rows.get(name, 0) == 0:
            continue
        term = terms[name]
        piece = weights[name] * term.value * (term.rows / rows[name])
        total = piece if total is None else total + piece
    return total


def _failure_message(batch: AtomicGraph | None, error: SCFConvergenceError | None) -> str:
    size = batch.num_graphs if batch is not None else 0
    tail = f". {_residual_tail(error)}" if error is not None and error.residual_history else ""
    return f"SCF did not converge for a training batch of {size} structures{tail}"


def _residual_tail(error: SCFConvergenceError) -> str:
    history = error.residual_history
    return f"Residuals: first {history[0]:.2e}, last {history[-1]:.2e} after {len(history)} steps." if history else ""


def _merge_pairs(gathered: list[Pairs]) -> Pairs:
    merged: Pairs = {}
    for pairs in gathered:
        for name, (ref, pred) in pairs.items():
            target = merged.setdefault(name, ([], []))
            target[0].extend(ref)
            target[1].extend(pred)
    return merged


def collect_pair(pairs: Pairs, name: str, batch: AtomicGraph, term: LossTerm) -> None:
    """Reference and prediction arrays of one loss, for parity plots (prediction = ref + error)."""
    label = LOSS_LABELS[name]
    if name == "hessian":  # sampled rows: no one-to-one reference array (fpscf.training.hessian)
        return
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


__all__ = ["Accumulator", "EpochRunner", "MAX_FAILED_BATCH_FRACTION", "SCFTrainingError", "TrainingError", "collect_pair"]
