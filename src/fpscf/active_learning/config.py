"""The ``fpscf active-learn`` config: YAML validated into frozen dataclasses before anything runs.

Sections and their keys are the fields of the settings classes: ``md``
(:class:`~fpscf.active_learning.explore.MDSettings`), ``stop``
(:class:`~fpscf.active_learning.explore.StopCriteria`), ``selection``
(:class:`~fpscf.active_learning.select.SelectionSettings`), ``labelling``
(:class:`LabellingSettings`), ``training`` (:class:`TrainingSettings`) and ``evaluation``
(:class:`EvaluationSettings`). Errors are :class:`~fpscf.training.config.ConfigError` with the key
path, the value and what is expected, as for ``fpscf train``; a misspelled key gets the nearest
valid one. Paths are relative to the config file.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

import yaml

from fpscf.active_learning.explore import MDSettings, StopCriteria
from fpscf.active_learning.label import LABEL_METHODS
from fpscf.active_learning.select import SelectionSettings
from fpscf.training.config import ConfigError, _check_keys, _str


@dataclass(frozen=True)
class LabellingSettings:
    """method: ``dft`` (PySCF, ``settings`` = DFTSettings fields, default B3LYP/aug-cc-pVDZ), ``xtb``
    (zero field only) or ``model`` (labels from the fpscf model file ``model``: smoke runs).
    workers, threads_per_worker: labelling processes and their threads. response_fraction,
    max_response_atoms: α and Born charges for a seeded fraction of small clusters."""

    method: str = "dft"
    workers: int = 1
    threads_per_worker: int | None = None
    response_fraction: float = 0.0
    max_response_atoms: int = 6
    settings: dict[str, Any] = field(default_factory=dict)
    model: str | None = None


@dataclass(frozen=True)
class TrainingSettings:
    """config: the ``fpscf train`` config of the model (its data, loss and schedule). train_file:
    the base training set (default: the config's). train_schedule: a schedule for each retraining
    (default: the config's), written as in the training config."""

    config: str
    train_file: str | None = None
    train_schedule: dict[Any, Any] | None = None


@dataclass(frozen=True)
class EvaluationSettings:
    """Fresh MD with each retrained model: ``trajectories`` runs (default: as ``md``) of ``steps``
    steps (default: ``md.steps``). reuse_for_exploration: the next iteration explores with these
    runs instead of running new ones (same model, same settings)."""

    trajectories: int | None = None
    steps: int | None = None
    reuse_for_exploration: bool = True


@dataclass(frozen=True, kw_only=True)
class ActiveLearningConfig:
    """A validated ``fpscf active-learn`` config (module docstring); paths absolute."""

    work_dir: str
    start_structures: tuple[str, ...]
    model: str = "water-b3lyp"
    max_iterations: int = 10
    stable_runs_to_stop: int = 3
    md: MDSettings = field(default_factory=MDSettings)
    stop: StopCriteria = field(default_factory=StopCriteria)
    selection: SelectionSettings = field(default_factory=SelectionSettings)
    labelling: LabellingSettings = field(default_factory=LabellingSettings)
    training: TrainingSettings
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)


_SECTIONS = {"md": MDSettings, "stop": StopCriteria, "selection": SelectionSettings, "labelling": LabellingSettings,
             "training": TrainingSettings, "evaluation": EvaluationSettings}
_TOP_LEVEL = tuple(f.name for f in fields(ActiveLearningConfig))
#: Numbers that must be > 0 (the others must be >= 0; field components may have any sign).
_POSITIVE = {"temperature_K", "timestep_fs", "steps", "record_every", "scf_tolerance", "max_scf_steps", "max_force",
             "scf_spike_factor", "max_temperature_factor", "frames", "clusters_per_frame", "shell_radius",
             "min_molecules", "max_molecules", "committee_stride", "committee_force_scale", "workers",
             "threads_per_worker", "max_response_atoms", "trajectories", "max_iterations", "stable_runs_to_stop"}


def load_active_learning_config(path: str | os.PathLike[str]) -> ActiveLearningConfig:
    """Read and validate ``path`` (YAML). Raises :class:`ConfigError` naming the file and key."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist (resolved to {os.path.abspath(path)})")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path!r} is not valid YAML: {' '.join(str(error).split())}") from None
    try:
        return parse_config(data, os.path.dirname(os.path.abspath(path)))
    except ConfigError as error:
        raise ConfigError(f"in {path}: {error}", error.key_path) from None


def parse_config(data: Any, base_dir: str) -> ActiveLearningConfig:
    """Validate plain config data; relative paths are resolved against ``base_dir``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"the config must be a mapping (work_dir: ..., start_structures: ..., training: ...), "
                          f"got {type(data).__name__}")
    _check_keys(data, _TOP_LEVEL, "", "top-level key")
    for key in ("work_dir", "start_structures", "training"):
        if data.get(key) is None:
            raise ConfigError(f"{key}: required key is missing", key)
    sections = {name: _section(cls, data.get(name), name) for name, cls in _SECTIONS.items()}
    starts = data["start_structures"]
    starts = [starts] if isinstance(starts, str) else starts
    if not isinstance(starts, list) or not starts or not all(isinstance(s, str) for s in starts):
        raise ConfigError(f"start_structures = {starts!r}: expected an extxyz file or a list of them",
                          "start_structures")
    model = _str(data.get("model", "water-b3lyp"), "model")
    config = ActiveLearningConfig(
        work_dir=_resolve(_str(data["work_dir"], "work_dir"), base_dir),
        start_structures=tuple(_existing(s, f"start_structures.{k}", base_dir) for k, s in enumerate(starts)),
        model=_model_reference(model, "model", base_dir),
        max_iterations=_number(data.get("max_iterations", 10), "max_iterations", "int"),
        stable_runs_to_stop=_number(data.get("stable_runs_to_stop", 3), "stable_runs_to_stop", "int"),
        **sections,
    )
    return _resolved(config, base_dir)


def _resolved(config: ActiveLearningConfig, base_dir: str) -> ActiveLearningConfig:
    """Paths made absolute and checked; cross-section checks."""
    from fpscf.training.config import TrainingConfig, load_config

    selection, labelling, training = config.selection, config.labelling, config.training
    if selection.min_molecules > selection.max_molecules:
        raise ConfigError(f"selection.min_molecules = {selection.min_molecules} is above selection.max_molecules = "
                          f"{selection.max_molecules}", "selection.min_molecules")
    committee = tuple(_model_reference(m, f"selection.committee.{k}", base_dir) for k, m in enumerate(selection.committee))
    _choice(labelling.method, "labelling.method", LABEL_METHODS)
    if labelling.method == "model" and labelling.model is None:
        raise ConfigError("labelling.model: method 'model' needs the labelling model (a .fpscf file or shipped name)",
                          "labelling.model")
    teacher = None if labelling.model is None else _model_reference(labelling.model, "labelling.model", base_dir)
    if labelling.method == "xtb" and any(config.md.field):
        raise ConfigError(f"labelling.method = 'xtb' gives zero-field labels only, but md.field = {list(config.md.field)}; "
                          "use method dft or a zero field", "labelling.method")
    if labelling.settings and labelling.method != "dft":
        raise ConfigError(f"labelling.settings are DFT settings; method {labelling.method!r} takes none",
                          "labelling.settings")
    if labelling.settings:
        from fpscf.datagen.pyscf_labels import DFTSettings

        _check_keys(labelling.settings, [f.name for f in fields(DFTSettings)], "labelling.settings", "DFT setting")
    training_config = _existing(training.config, "training.config", base_dir)
    base = load_config(training_config)  # a bad training config fails here, with its own key path
    train_file = base.train_file if training.train_file is None else _existing(training.train_file,
                                                                                "training.train_file", base_dir)
    if training.train_schedule is not None:
        try:
            TrainingConfig.from_dict({**base.to_dict(), "train_schedule": training.train_schedule}, base_dir)
        except ConfigError as error:
            raise ConfigError(f"training.{error}", f"training.{error.key_path}") from None
    return dataclasses.replace(
        config,
        selection=dataclasses.replace(selection, committee=committee),
        labelling=dataclasses.replace(labelling, model=teacher),
        training=dataclasses.replace(training, config=training_config, train_file=train_file),
    )


def _section(cls: type, data: Any, path: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path} = {data!r} is not valid: expected a mapping of {path} settings", path)
    kinds = {f.name: str(f.type) for f in fields(cls)}
    _check_keys(data, list(kinds), path, f"{path} key")
    values = {name: _convert(value, f"{path}.{name}", kinds[name]) for name, value in data.items()}
    missing = [f.name for f in fields(cls) if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and f.name not in values]
    if missing:
        raise ConfigError(f"{path}.{missing[0]}: required key is missing", f"{path}.{missing[0]}")
    return cls(**values)


def _convert(value: Any, path: str, kind: str) -> Any:
    """``value`` as the annotated ``kind`` of a settings field."""
    if value is None and "None" in kind:
        return None
    base = kind.replace(" | None", "")
    if base in ("int", "float"):
        return _number(value, path, base)
    if base == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{path} = {value!r} is not valid: expected true or false", path)
        return value
    if base == "str":
        return _str(value, path)
    if base == "tuple[float, float, float]":
        if not isinstance(value, (list, tuple)) or len(value) != 3:
            raise ConfigError(f"{path} = {value!r} is not valid: expected three numbers, e.g. [0.0, 0.0, 0.05]", path)
        return tuple(_finite(v, path) for v in value)
    if base == "tuple[str, ...]":
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{path} = {value!r} is not valid: expected a list of model files", path)
        return tuple(value)
    if base.startswith("dict"):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path} = {value!r} is not valid: expected a mapping", path)
        return dict(value)
    raise TypeError(f"no conversion for {path} of type {kind}")


def _finite(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{path} = {value!r} is not valid: expected a finite number", path)
    return float(value)


def _number(value: Any, path: str, kind: str) -> Any:
    name = path.rsplit(".", 1)[-1]
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{path} = {value!r} is not valid: expected an integer", path)
    number = int(value) if kind == "int" else _finite(value, path)
    if name in _POSITIVE and number <= 0:
        raise ConfigError(f"{path} = {value!r} is not valid: expected a number > 0", path)
    if number < 0:
        raise ConfigError(f"{path} = {value!r} is not valid: expected a number >= 0", path)
    return number


def _choice(value: str, path: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        close = difflib.get_close_matches(value, choices, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{path} = {value!r} is not valid.{hint} Choose one of: {', '.join(choices)}", path)


def _resolve(path: str, base_dir: str) -> str:
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(path)))


def _existing(path: Any, key: str, base_dir: str) -> str:
    resolved = _resolve(_str(path, key), base_dir)
    if not os.path.isfile(resolved):
        raise ConfigError(f"{key} = {path!r}: file not found (resolved to {resolved})", key)
    return resolved


def _model_reference(model: str, key: str, base_dir: str) -> str:
    """A shipped model name as it is, a model file resolved and checked."""
    from fpscf.models import SHIPPED_MODELS

    resolved = _resolve(model, base_dir)
    if os.path.isfile(resolved):
        return resolved
    if model in SHIPPED_MODELS:
        return model
    raise ConfigError(f"{key} = {model!r}: neither a model file (looked for {resolved}) nor a shipped model "
                      f"({', '.join(sorted(SHIPPED_MODELS))})", key)


__all__ = ["ActiveLearningConfig", "EvaluationSettings", "LabellingSettings", "TrainingSettings",
           "load_active_learning_config", "parse_config"]
