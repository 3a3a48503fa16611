"""The active-learning loop: explore → select → label → merge → retrain → evaluate, resumable.

Work directory layout (every file written atomically; what exists decides what is done)::

    <work_dir>/history.json               one entry per finished iteration (its summary)
    <work_dir>/iter_001/explore/          MD with the model the iteration starts from (traj_*.xyz/csv/json)
    <work_dir>/iter_001/selected.xyz      the clusters cut around flagged atoms (unlabelled)
    <work_dir>/iter_001/selection.json    picked frames: trajectory, step, score and its terms, clusters
    <work_dir>/iter_001/labels/           the labeller's output (parts/, failed.json, data.xyz; resumable)
    <work_dir>/iter_001/labelled.json     written when labelling has finished
    <work_dir>/iter_001/train.xyz         base training set + the labels of iterations 1..i
    <work_dir>/iter_001/train/            fpscf train output (best.fpscf: the iteration's model)
    <work_dir>/iter_001/evaluate/         fresh MD with the new model (stability: time to failure)
    <work_dir>/iter_001/summary.json

Iteration 1 explores with ``model``; iteration i > 1 starts from iteration i−1's model and, with
``evaluation.reuse_for_exploration``, explores with its evaluation runs (the same model and MD
settings, so no MD is run twice). Run k of the exploration of iteration i is seeded by
``(md.seed, 2i, k)``, of its evaluation by ``(md.seed, 2i + 1, k)``. The loop stops after
``max_iterations``, or when the last ``stable_runs_to_stop`` evaluation runs (over the iterations,
in order) all reached their length without trouble. Rerunning continues where it stopped: an
interrupted MD phase reruns only unfinished trajectories, labelling resumes from its parts,
training from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import ase.io
from ase import Atoms

from fpscf.active_learning.config import ActiveLearningConfig
from fpscf.active_learning.explore import explore
from fpscf.active_learning.label import DatasetLabeller, Labeller, count_labelled, model_labeller
from fpscf.active_learning.retrain import continued_config, retrain
from fpscf.active_learning.select import select_structures
from fpscf.active_learning.trajectory import Trajectory
from fpscf.atomic_files import atomic_write_text
from fpscf.data.extxyz import write_extxyz

#: Sample ids of iteration i's clusters are ``i * SAMPLE_ID_BLOCK + k``: unique across iterations.
SAMPLE_ID_BLOCK = 10000


class ActiveLearning:
    """One active-learning workflow (module docstring) as an :class:`ActiveLearningConfig` says.

    ``labeller`` replaces the labeller of ``config.labelling`` (any :class:`Labeller`);
    ``calculator_factory(model) -> calculator`` replaces the FixedPointCalculator of the MD runs;
    ``log`` receives the progress lines (default: stderr).
    """

    def __init__(self, config: ActiveLearningConfig, *, labeller: Labeller | None = None,
                 calculator_factory: Callable[[Any], Any] | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.work_dir = Path(config.work_dir)
        self.labeller = labeller if labeller is not None else default_labeller(config)
        self.calculator_factory = calculator_factory
        self._log = log if log is not None else (lambda line: print(line, file=sys.stderr, flush=True))
        self.structures = [atoms for path in config.start_structures
                           for atoms in ase.io.read(path, index=":", format="extxyz")]

    # ------------------------------------------------------------------ whole loop
    def run(self) -> list[dict[str, Any]]:
        """Iterate until converged or ``max_iterations``; return the history (one summary each)."""
        history = self.history()
        for iteration in range(1, self.config.max_iterations + 1):
            if converged(history, self.config.stable_runs_to_stop):
                break
            if not any(entry["iteration"] == iteration for entry in history):
                self.run_iteration(iteration)
                history = self.history()
        if converged(history, self.config.stable_runs_to_stop):
            self._say(0, f"converged: the last {self.config.stable_runs_to_stop} evaluation runs reached "
                         f"{self._evaluation_steps()} steps without trouble")
        else:
            self._say(0, f"stopped after {len(history)} iterations (max_iterations {self.config.max_iterations}) "
                         "without converging")
        return history

    def history(self) -> list[dict[str, Any]]:
        """The entries of ``history.json`` (empty before the first iteration finishes)."""
        path = self.work_dir / "history.json"
        return json.loads(path.read_text()) if path.is_file() else []

    def model_before(self, iteration: int) -> str:
        """The model iteration ``iteration`` starts from (file or shipped name)."""
        if iteration == 1:
            return self.config.model
        previous = self.work_dir / f"iter_{iteration - 1:03d}"
        summary = json.loads((previous / "summary.json").read_text())
        return summary["model_out"]

    # ------------------------------------------------------------------ one iteration
    def run_iteration(self, iteration: int) -> dict[str, Any]:
        """Run (or finish) iteration ``iteration``; write its summary and add it to the history."""
        directory = self.work_dir / f"iter_{iteration:03d}"
        directory.mkdir(parents=True, exist_ok=True)
        from fpscf.models import resolve_model

        times: dict[str, float] = {}
        model_in = self.model_before(iteration)
        model = resolve_model(model_in)
        self._say(iteration, f"explore: MD with {model_in}")
        clock = time.perf_counter()
        runs, explored_in = self._explore(iteration, model)
        times["explore"] = time.perf_counter() - clock
        self._say(iteration, f"explore: {_run_line(runs)} ({explored_in})")

        clock = time.perf_counter()
        clusters, selection = self._select(iteration, directory, runs, model)
        times["select"] = time.perf_counter() - clock
        reasons = Counter(str(c.info["al_reason"]) for c in clusters)
        self._say(iteration, f"select: {len(selection)} frames, {len(clusters)} clusters"
                             + "".join(f", {n} around the {reason.replace('_', ' ')}" for reason, n in reasons.items()))
        model_out, labelled, training = model_in, 0, {}
        if clusters:
            self._say(iteration, f"label: {len(clusters)} clusters ({self.config.labelling.method})")
            clock = time.perf_counter()
            labelled = self._label(iteration, directory, clusters)
            times["label"] = time.perf_counter() - clock
            self._say(iteration, f"label: {labelled}/{len(clusters)} clusters labelled in {directory / 'labels'}")
            self._say(iteration, f"train: from {model_in} in {directory / 'train'}")
            clock = time.perf_counter()
            training = self._train(iteration, directory, model)
            times["train"] = time.perf_counter() - clock
            model_out = training["model"]
            self._say(iteration, f"train: {training['structures']} structures, model {model_out}, validation RMSE "
                                 + ", ".join(f"{k} {v:.4g}" for k, v in training["validation_rmse"].items()))
        else:
            self._say(iteration, "nothing to label: the model is kept as it is")
        self._say(iteration, f"evaluate: fresh MD with {model_out}")
        clock = time.perf_counter()
        evaluation = self._evaluate(iteration, model if model_out == model_in else model_out)
        times["evaluate"] = time.perf_counter() - clock
        self._say(iteration, f"evaluate: {_run_line(evaluation)}")
        summary = {
            "iteration": iteration, "model_in": str(model_in), "model_out": str(model_out),
            "explore": {"directory": explored_in, **_runs_summary(runs)},
            "selection": {"frames": len(selection), "clusters": len(clusters), "reasons": dict(reasons)},
            "labels": {"labelled": labelled, "requested": len(clusters)},
            "training": training,
            "evaluation": _runs_summary(evaluation),
            "wall_s": {k: round(v, 1) for k, v in times.items()},
        }
        atomic_write_text(directory / "summary.json", json.dumps(summary, indent=2) + "\n")
        history = [entry for entry in self.history() if entry["iteration"] != iteration] + [summary]
        history.sort(key=lambda entry: entry["iteration"])
        atomic_write_text(self.work_dir / "history.json", json.dumps(history, indent=2) + "\n")
        return summary

    # ------------------------------------------------------------------ phases
    def _explore(self, iteration: int, model: Any) -> tuple[list[Trajectory], str]:
        if iteration > 1 and self.config.evaluation.reuse_for_exploration:
            previous = self.work_dir / f"iter_{iteration - 1:03d}" / "evaluate"
            return self._md(previous, model, self._evaluation_md(), 2 * (iteration - 1) + 1, iteration), str(previous)
        directory = self.work_dir / f"iter_{iteration:03d}" / "explore"
        return self._md(directory, model, self.config.md, 2 * iteration, iteration), str(directory)

    def _evaluate(self, iteration: int, model_out: Any) -> list[Trajectory]:
        from fpscf.models import resolve_model

        directory = self.work_dir / f"iter_{iteration:03d}" / "evaluate"
        return self._md(directory, resolve_model(model_out), self._evaluation_md(), 2 * iteration + 1, iteration)

    def _evaluation_md(self):  # noqa: ANN202 (MDSettings)
        md, evaluation = self.config.md, self.config.evaluation
        return dataclasses.replace(
            md, steps=evaluation.steps or md.steps,
            trajectories=evaluation.trajectories if evaluation.trajectories is not None else md.trajectories,
        )

    def _evaluation_steps(self) -> int:
        return self._evaluation_md().steps

    def _md(self, directory: Path, model: Any, md: Any, stream: int, iteration: int) -> list[Trajectory]:
        factory = None if self.calculator_factory is None else (lambda: self.calculator_factory(model))
        return explore(self.structures, model, md, self.config.stop, directory, stream=stream,
                       calculator_factory=factory, log=lambda line: self._say(iteration, "  " + line))

    def _select(self, iteration: int, directory: Path, runs: list[Trajectory],
                model: Any) -> tuple[list[Atoms], list[dict[str, Any]]]:
        record_path, clusters_path = directory / "selection.json", directory / "selected.xyz"
        if record_path.is_file():
            records = json.loads(record_path.read_text())
            clusters = list(ase.io.read(clusters_path, index=":", format="extxyz")) if clusters_path.is_file() else []
            return clusters, records
        clusters, records = select_structures(runs, self.config.selection, iteration=iteration,
                                              domain=getattr(model, "training_domain", None),
                                              source=f"iter_{iteration:03d}/")
        if len(clusters) >= SAMPLE_ID_BLOCK:
            raise ValueError(f"{len(clusters)} clusters in one iteration: at most {SAMPLE_ID_BLOCK - 1}")
        for k, cluster in enumerate(clusters):
            cluster.info["sample_id"] = iteration * SAMPLE_ID_BLOCK + k
        if clusters:
            write_extxyz(clusters_path, clusters)
        atomic_write_text(record_path, json.dumps(records, indent=2) + "\n")
        return clusters, records

    def _label(self, iteration: int, directory: Path, clusters: list[Atoms]) -> int:
        marker = directory / "labelled.json"
        if marker.is_file():
            return int(json.loads(marker.read_text())["labelled"])
        data = self.labeller(clusters, directory / "labels")
        labelled = count_labelled(data)
        atomic_write_text(marker, json.dumps({"labelled": labelled, "requested": len(clusters), "data": str(data)}) + "\n")
        return labelled

    def _train(self, iteration: int, directory: Path, model_in: Any) -> dict[str, Any]:
        train_file = directory / "train.xyz"
        if not train_file.is_file():
            parts = [Path(self.config.training.train_file)] + [
                path for k in range(1, iteration + 1)
                if (path := self.work_dir / f"iter_{k:03d}" / "labels" / "data.xyz").is_file()
                and (self.work_dir / f"iter_{k:03d}" / "labelled.json").is_file()
            ]
            text = "".join(_with_final_newline(path.read_text(encoding="utf-8")) for path in parts)
            atomic_write_text(train_file, text)
        config = continued_config(self.config.training.config, model_in, train_file=train_file,
                                  output_dir=directory / "train", train_schedule=self.config.training.train_schedule)
        result = retrain(config, model_in)
        structures = sum(1 for _ in ase.io.iread(train_file, index=":", format="extxyz"))
        return {"train_file": str(train_file), "structures": structures, "model": str(result.best_model),
                "validation_rmse": {name: value for name, value in result.metrics.items() if math.isfinite(value)}}

    def _say(self, iteration: int, text: str) -> None:
        self._log(f"[active-learn iter {iteration:03d}] {text}" if iteration else f"[active-learn] {text}")


def default_labeller(config: ActiveLearningConfig) -> Labeller:
    """The labeller ``config.labelling`` describes."""
    labelling = config.labelling
    if labelling.method == "model":
        return model_labeller(labelling.model)
    settings = None
    if labelling.method == "dft":
        from fpscf.datagen.pyscf_labels import DFTSettings

        settings = DFTSettings(**labelling.settings)
    return DatasetLabeller(labelling.method, labelling.workers, labelling.threads_per_worker,
                           labelling.response_fraction, labelling.max_response_atoms, settings, config.md.seed)


def converged(history: list[dict[str, Any]], stable_runs: int) -> bool:
    """The last ``stable_runs`` evaluation runs of ``history`` all reached their length without trouble."""
    flags = [run["stable"] for entry in history for run in entry["evaluation"]["runs"]]
    return len(flags) >= stable_runs and all(flags[-stable_runs:])


def run_active_learning(config: ActiveLearningConfig, **options: Any) -> list[dict[str, Any]]:
    """``fpscf active-learn``: :meth:`ActiveLearning.run` of ``config``."""
    return ActiveLearning(config, **options).run()


def _runs_summary(runs: list[Trajectory]) -> dict[str, Any]:
    return {"runs": [run.summary() for run in runs], "stable_runs": sum(run.stable for run in runs),
            "stop_reasons": dict(Counter(run.stop_reason for run in runs if run.stop_reason)),
            "time_to_failure_fs": [run.time_to_failure_fs for run in runs]}


def _run_line(runs: list[Trajectory]) -> str:
    stable = sum(run.stable for run in runs)
    failures = ", ".join(f"{run.name} {run.stop_reason} at {run.time_to_failure_fs:g} fs" for run in runs if not run.stable)
    return f"{stable}/{len(runs)} runs stable" + (f"; {failures}" if failures else "")


def _with_final_newline(text: str) -> str:
    return text if text.endswith("\n") or not text else text + "\n"


__all__ = ["SAMPLE_ID_BLOCK", "ActiveLearning", "converged", "default_labeller", "run_active_learning"]
