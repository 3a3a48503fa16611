"""Training configuration: the YAML read by ``fpscf train``, validated into frozen dataclasses.

Every check runs before any training starts. A bad value raises :class:`ConfigError` whose message
names the key path (``train_schedule.1.fixed_point_training_options.scf.num_scf_steps``), the value
and what is expected; a misspelled key gets a "did you mean" suggestion and the list of valid keys.

Paths (``train_file``, ``valid_file``, ``output_dir``) are relative to the directory of the config
file and are stored absolute. Command-line overrides (``--r_max=4.0``, ``--seed=3``,
``--train_schedule.1.lr=1.0e-4``) are applied on top of the YAML before validation, see
:func:`parse_overrides`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, NoReturn, Sequence

import yaml

from fpscf.config import ModelConfig, hyperparameter_names, make_config
from fpscf.data.labels import KeyMap
from fpscf.errors import FpscfError

#: Loss terms a stage may weight (``loss: {name: weight}``).
LOSS_NAMES: tuple[str, ...] = (
    "energy_per_atom",
    "forces",
    "stress",
    "atomic_multipoles",
    "charges",
    "total_charge_per_atom",
    "dipole_per_atom",
    "fermi_level_per_atom",
    "polarizability",
    "born_effective_charges",
    "esps",
    "field_features",
    "hessian",
    "fixedpoint_scf_stability",
    "magmoms",
    "magnetic_moment_per_atom",
    "noncollinear_magnetic_forces",
    "magnetic_susceptibility",
)
#: Losses that need a model with magnetic moments (model option ``magnetic_moments`` not ``none``),
#: and those that need non-collinear moments.
MAGNETIC_LOSS_NAMES: frozenset[str] = frozenset(
    {"magmoms", "magnetic_moment_per_atom", "noncollinear_magnetic_forces", "magnetic_susceptibility"}
)
NONCOLLINEAR_LOSS_NAMES: frozenset[str] = frozenset({"noncollinear_magnetic_forces"})
#: How a stage differentiates through the fixed point (see docs/physics.md, Training modes).
TRAINING_MODES: tuple[str, ...] = ("direct", "unroll_scf", "implicit", "linearize_solve")
#: Starting density of the SCF loop during training.
INITIAL_DENSITIES: tuple[str, ...] = ("from_data", "local_guess", "zero")
#: Starting Fermi level of the SCF loop during training.
INITIAL_FERMI_LEVELS: tuple[str, ...] = ("from_data", "zero")
OPTIMIZERS: tuple[str, ...] = ("adam", "adamw")
DTYPES: tuple[str, ...] = ("float64", "float32")

#: Modes that iterate the SCF loop and so need explicit ``num_scf_steps`` and ``mixing_parameter``.
_MODES_NEEDING_SCF: tuple[str, ...] = ("unroll_scf", "implicit")
_STAGE_KEYS: tuple[str, ...] = ("name", "start", "end", "lr", "final_lr", "loss", "fixed_point_training_options")
_FIXED_POINT_KEYS: tuple[str, ...] = ("mode", "scf")
_MAX_Z = 118


AVERAGE = "average"
#: Model options that may be given as ``"average"``: estimated from the training set when training starts.
ESTIMATED_OPTIONS = ("atomic_energies", "avg_num_neighbors", "atom_density_scaling", "field_feature_norms")


class ConfigError(FpscfError, ValueError):
    """A training config is invalid; the message names the key path, the value and the fix."""

    def __init__(self, message: str, key_path: str | None = None) -> None:
        super().__init__(message)
        self.key_path = key_path


@dataclass(frozen=True)
class SCFOptions:
    """SCF loop used by a training stage.

    ``mixing_parameter``: linear mixing weight of the new density (1 = no mixing).
    ``scf_tolerance``: convergence threshold on the change of the multipoles (e, e·Å, ...).
    """

    num_scf_steps: int = 200
    constant_charge: bool = True
    mixing_parameter: float = 0.5
    initial_density: str = "local_guess"
    initial_fermi_level: str = "zero"
    use_autograd_forces: bool = True
    scf_tolerance: float = 1e-6


@dataclass(frozen=True)
class FixedPointOptions:
    """Training mode of a stage; ``scf`` is None only for mode ``direct``."""

    mode: str
    scf: SCFOptions | None


@dataclass(frozen=True)
class StageConfig:
    """One stage of the training schedule: epochs ``start..end`` (inclusive)."""

    index: int
    name: str
    start: int
    end: int
    lr: float
    loss: dict[str, float]
    fixed_point_training_options: FixedPointOptions
    final_lr: float | None = None

    def lr_at(self, epoch: int) -> float:
        """Learning rate of an epoch of this stage: ``lr``, or with ``final_lr`` a geometric decay
        from ``lr`` at ``start`` to ``final_lr`` at ``end`` (a function of the epoch alone, so a
        resumed run uses the same rates)."""
        if self.final_lr is None or self.end == self.start:
            return self.lr
        fraction = (epoch - self.start) / (self.end - self.start)
        return self.lr * (self.final_lr / self.lr) ** fraction

    @property
    def num_epochs(self) -> int:
        """Number of epochs in this stage (``end - start + 1``)."""
        return self.end - self.start + 1


@dataclass(frozen=True)
class OptimizerConfig:
    """Optimizer and its weight decays (per parameter group); ``gradient_clip``: max grad norm or None."""

    name: str = "adam"
    weight_decay: float = 0.0
    field_block_weight_decay: float = 0.0
    local_charges_weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    amsgrad: bool = False
    gradient_clip: float | None = 10.0


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """A validated training config. Build it with :func:`load_config` or :meth:`from_dict`.

    ``time_reversal_augmentation``: every training batch also holds the time-reversed copy of each
    of its magnetic structures (:mod:`fpscf.training.augmentation`; validation batches do not);
    needs a magnetic model.

    ``batch_size`` is the global batch: with several ranks (``torchrun``,
    :mod:`fpscf.training.distributed`) each trains on its share of every batch. ``num_workers``:
    processes that read and collate batches ahead of training (0: in the training process).
    ``early_stopping_patience``: a stage ends after that many epochs without a lower validation
    loss (None: every stage runs to its ``end``); training continues with the next stage.
    ``finetune``: ``{model: NAME_OR_PATH, freeze: [block, ...]}`` starts from a trained model
    (:mod:`fpscf.training.finetune`) instead of building one from ``model``.
    ``hessian_rows_per_structure``: Hessian rows drawn per structure and step for the ``hessian``
    loss (:mod:`fpscf.training.hessian`; an unbiased estimate of the loss on all rows).
    """

    train_file: str
    valid_file: str | None = None
    valid_fraction: float = 0.1
    key_map: dict[str, str | None] = field(default_factory=dict)
    output_dir: str
    seed: int = 0
    batch_size: int = 4
    valid_batch_size: int | None = None
    device: str = "cpu"
    default_dtype: str = "float64"
    atomic_numbers: tuple[int, ...] | None = None
    model: dict[str, Any] = field(default_factory=dict)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train_schedule: tuple[StageConfig, ...]
    checkpoint_every: int = 1
    progress: bool = True
    plot: bool = True
    time_reversal_augmentation: bool = False
    num_workers: int = 0
    early_stopping_patience: int | None = None
    finetune: dict[str, Any] | None = None
    hessian_rows_per_structure: int = 2

    @property
    def num_epochs(self) -> int:
        """Total number of epochs (last stage's ``end`` + 1)."""
        return self.train_schedule[-1].end + 1

    def stage_at(self, epoch: int) -> StageConfig:
        """The stage that runs epoch ``epoch`` (0-based)."""
        for stage in self.train_schedule:
            if stage.start <= epoch <= stage.end:
                return stage
        raise ValueError(f"epoch {epoch} is outside the training schedule (epochs 0..{self.num_epochs - 1})")

    def make_key_map(self) -> KeyMap:
        """The :class:`~fpscf.data.labels.KeyMap` for reading the extxyz labels."""
        return dataclasses.replace(KeyMap(), **self.key_map)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML/JSON-serialisable) that :meth:`from_dict` reads back to an equal config."""
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["key_map"] = dict(self.key_map)
        data["atomic_numbers"] = None if self.atomic_numbers is None else list(self.atomic_numbers)
        data["model"] = _plain(self.model)
        optimizer = dataclasses.asdict(self.optimizer)
        optimizer["betas"] = list(self.optimizer.betas)
        data["optimizer"] = optimizer
        data["train_schedule"] = {stage.index: _stage_to_dict(stage) for stage in self.train_schedule}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: str | os.PathLike = ".") -> TrainingConfig:
        """Validate plain config data; relative paths are resolved against ``base_dir``."""
        return _parse_training_config(data, os.path.abspath(os.fspath(base_dir)))


_TOP_LEVEL_KEYS: tuple[str, ...] = tuple(f.name for f in fields(TrainingConfig))
_SCF_KEYS: tuple[str, ...] = tuple(f.name for f in fields(SCFOptions))
_OPTIMIZER_KEYS: tuple[str, ...] = tuple(f.name for f in fields(OptimizerConfig))
_KEY_MAP_KEYS: tuple[str, ...] = tuple(f.name for f in fields(KeyMap))
#: KeyMap fields that may be null (labels that can be ignored); inputs are always read.
_NULLABLE_KEY_MAP_KEYS: tuple[str, ...] = tuple(f.name for f in fields(KeyMap) if "None" in str(f.type))


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> TrainingConfig:
    """Read and validate a YAML training config, with command-line ``overrides`` applied first.

    Relative paths in the file and in the overrides are relative to the config file's directory.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        reason = "is a directory" if os.path.isdir(path) else "does not exist"
        raise ConfigError(f"config file {path!r} {reason} (resolved to {os.path.abspath(path)})")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path!r} is not valid YAML: {exc}") from None
    if data is None:
        raise ConfigError(f"config file {path!r} is empty; it needs at least train_file and train_schedule")
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path!r} must hold a mapping of options (key: value), got {type(data).__name__}"
        )
    _merge(data, parse_overrides(overrides), "")
    try:
        return TrainingConfig.from_dict(data, base_dir=os.path.dirname(os.path.abspath(path)))
    except ConfigError as exc:
        raise ConfigError(f"in {path}: {exc}", exc.key_path) from None


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Turn ``["--r_max=4.0", "seed=3", "--model.num_channels=8"]`` into nested config data.

    Leading dashes are stripped, the key is split from the value at the first ``=`` and the value
    is read as YAML (``4.0`` is a float, ``[H, O]`` a list, ``null`` None). Top-level config keys
    set those (``seed`` is the training seed; use ``model.seed`` for the model's), model
    hyperparameters go into ``model``, and dotted keys set nested values
    (``train_schedule.1.lr=1.0e-4``). Mapping values are merged into the config's mappings.
    """
    result: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"override {item!r} has no '='; write --name=value, e.g. --r_max=4.0, --seed=3 "
                f"or --train_schedule.1.lr=1.0e-4"
            )
        key, text = item.lstrip("-").split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not key or any(not part for part in parts):
            raise ConfigError(f"override {item!r} has an empty key; write --name=value, e.g. --r_max=4.0")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value {text!r} is not valid YAML ({exc})", key) from None
        if parts[0] not in _TOP_LEVEL_KEYS:
            if parts[0] not in _model_option_names():
                valid = [*_TOP_LEVEL_KEYS, *(n for n in _model_option_names() if n not in _TOP_LEVEL_KEYS)]
                _unknown(key, parts[0], valid, "override key")
            parts = ["model", *parts]
        path: list[Any] = [int(part) if part.isdigit() else part for part in parts]
        nested: Any = value
        for part in reversed(path):
            nested = {part: nested}
        _merge(result, nested, "")
    return result


# --------------------------------------------------------------------------------------------
# Parsing of each section


def _parse_training_config(data: Any, base_dir: str) -> TrainingConfig:
    _require_mapping(data, "config", "a mapping of options (train_file: ..., train_schedule: ...)")
    for key in data:
        if key not in _TOP_LEVEL_KEYS and key in _model_option_names():
            raise ConfigError(
                f"{key}: {key!r} is a model hyperparameter; put it under 'model:' (e.g. model: {{{key}: ...}})", key
            )
    _check_keys(data, _TOP_LEVEL_KEYS, "", "top-level key")
    for key in ("train_file", "train_schedule"):
        if data.get(key) is None:
            raise ConfigError(f"{key}: required key is missing", key)
    atomic_numbers = _parse_atomic_numbers(data.get("atomic_numbers"), "atomic_numbers")
    valid_file, valid_batch_size = data.get("valid_file"), data.get("valid_batch_size")
    config = TrainingConfig(
        train_file=_existing_file(data["train_file"], "train_file", base_dir),
        valid_file=None if valid_file is None else _existing_file(valid_file, "valid_file", base_dir),
        valid_fraction=_float_in(data.get("valid_fraction", 0.1), "valid_fraction", 0.0, 1.0, "a fraction 0 < f < 1"),
        key_map=_parse_key_map(data.get("key_map"), "key_map"),
        output_dir=_resolve(_str(data.get("output_dir", "."), "output_dir"), base_dir),
        seed=_int(data.get("seed", 0), "seed", minimum=0),
        batch_size=_int(data.get("batch_size", 4), "batch_size", minimum=1),
        valid_batch_size=None if valid_batch_size is None else _int(valid_batch_size, "valid_batch_size", minimum=1),
        device=_parse_device(data.get("device", "cpu"), "device"),
        default_dtype=_choice(data.get("default_dtype", "float64"), "default_dtype", DTYPES),
        atomic_numbers=atomic_numbers,
        model=_parse_model(data.get("model"), "model", atomic_numbers),
        optimizer=_parse_optimizer(data.get("optimizer"), "optimizer"),
        train_schedule=_parse_schedule(data["train_schedule"], "train_schedule"),
        checkpoint_every=_int(data.get("checkpoint_every", 1), "checkpoint_every", minimum=1),
        progress=_bool(data.get("progress", True), "progress"),
        plot=_bool(data.get("plot", True), "plot"),
        time_reversal_augmentation=_bool(data.get("time_reversal_augmentation", False), "time_reversal_augmentation"),
        num_workers=_int(data.get("num_workers", 0), "num_workers", minimum=0),
        early_stopping_patience=None if data.get("early_stopping_patience") is None
        else _int(data["early_stopping_patience"], "early_stopping_patience", minimum=1),
        finetune=_parse_finetune(data.get("finetune"), "finetune", base_dir),
        hessian_rows_per_structure=_int(data.get("hessian_rows_per_structure", 2), "hessian_rows_per_structure", minimum=1),
    )
    _check_magnetic_options(config)
    return config


def _check_magnetic_options(config: TrainingConfig) -> None:
    """Magnetic losses and time-reversal augmentation need a model with magnetic moments (and the
    magnetic-force loss non-collinear ones)."""
    kind = config.model.get("magnetic_moments", "none")
    for stage in config.train_schedule:
        for name, weight in stage.loss.items():
            path = f"train_schedule.{stage.index}.loss.{name}"
            if weight > 0 and name in MAGNETIC_LOSS_NAMES and kind == "none":
                raise ConfigError(
                    f"{path}: the magnetic loss {name!r} needs a model with magnetic moments, but model."
                    f"magnetic_moments is 'none'; set model: {{magnetic_moments: collinear|noncollinear}} or remove "
                    f"the loss", path,
                )
            if weight > 0 and name in NONCOLLINEAR_LOSS_NAMES and kind != "noncollinear":
                raise ConfigError(
                    f"{path}: the loss {name!r} compares (N, 3) magnetic forces and needs non-collinear moments, but "
                    f"model.magnetic_moments is {kind!r}; set model: {{magnetic_moments: noncollinear}} or remove the "
                    f"loss", path,
                )
    if config.time_reversal_augmentation and kind == "none":
        raise ConfigError(
            "time_reversal_augmentation = true flips magnetic fields and moments, which a model with "
            "model.magnetic_moments 'none' does not see; set model: {magnetic_moments: collinear|noncollinear} or "
            "time_reversal_augmentation: false", "time_reversal_augmentation",
        )


def _parse_schedule(data: Any, path: str) -> tuple[StageConfig, ...]:
    example = "{0: {start: 0, end: 99, lr: 0.01, loss: {...}, fixed_point_training_options: {mode: direct}}}"
    _require_mapping(data, path, f"a mapping from stage index to stage, e.g. {example}")
    if not data:
        raise ConfigError(f"{path}: needs at least one stage, e.g. {example}", path)
    indexed: dict[int, Any] = {}
    for key, value in data.items():
        index = _stage_index(key)
        if index is None or index in indexed:
            raise ConfigError(
                f"{path}: stage keys must be the integers 0, 1, 2, ...; got {key!r} (keys: {list(data)})", path
            )
        indexed[index] = value
    if sorted(indexed) != list(range(len(indexed))):
        raise ConfigError(
            f"{path}: stage keys must be the integers 0, 1, 2, ... with no gaps; got {sorted(indexed)}", path
        )
    stages: list[StageConfig] = []
    for index in range(len(indexed)):
        stage = _parse_stage(indexed[index], index, f"{path}.{index}")
        _check_contiguous(stage, stages[-1] if stages else None, f"{path}.{index}.start")
        stages.append(stage)
    return tuple(stages)


def _parse_stage(data: Any, index: int, path: str) -> StageConfig:
    _require_mapping(data, path, "a mapping with start, end, lr, loss and fixed_point_training_options")
    _check_keys(data, _STAGE_KEYS, path, "stage key")
    for key in ("start", "end", "lr", "loss", "fixed_point_training_options"):
        if key not in data:
            raise ConfigError(f"{path}.{key}: required stage key is missing", f"{path}.{key}")
    start = _int(data["start"], f"{path}.start", minimum=0)
    end = _int(data["end"], f"{path}.end", minimum=0)
    if end < start:
        raise ConfigError(
            f"{path}.end = {end} is before start = {start}; a stage runs epochs start..end inclusive", f"{path}.end"
        )
    return StageConfig(
        index=index,
        name=_str(data.get("name", f"stage{index}"), f"{path}.name"),
        start=start,
        end=end,
        lr=_positive_float(data["lr"], f"{path}.lr"),
        final_lr=_positive_float(data["final_lr"], f"{path}.final_lr") if data.get("final_lr") is not None else None,
        loss=_parse_loss(data["loss"], f"{path}.loss"),
        fixed_point_training_options=_parse_fixed_point(
            data["fixed_point_training_options"], f"{path}.fixed_point_training_options"
        ),
    )


def _check_contiguous(stage: StageConfig, previous: StageConfig | None, path: str) -> None:
    if previous is None:
        if stage.start != 0:
            raise ConfigError(f"{path} = {stage.start}: the first stage ({stage.name!r}) must start at epoch 0", path)
        return
    if stage.start != previous.end + 1:
        raise ConfigError(
            f"{path} = {stage.start}: stage {stage.index} ({stage.name!r}) must start right after stage "
            f"{previous.index} ({previous.name!r}), which ends at {previous.end}; set start: {previous.end + 1}",
            path,
        )


def _parse_loss(data: Any, path: str) -> dict[str, float]:
    _require_mapping(data, path, f"a mapping of loss weights, e.g. {{energy_per_atom: 1.0, forces: 100.0}}")
    _check_keys(data, LOSS_NAMES, path, "loss name")
    weights = {name: _non_negative_float(value, f"{path}.{name}") for name, value in data.items()}
    if not any(weight > 0 for weight in weights.values()):
        raise ConfigError(
            f"{path} = {data!r}: at least one loss weight must be > 0; valid loss names: {', '.join(LOSS_NAMES)}", path
        )
    return weights


def _parse_fixed_point(data: Any, path: str) -> FixedPointOptions:
    _require_mapping(data, path, "a mapping with 'mode' (and 'scf' for iterating modes)")
    _check_keys(data, _FIXED_POINT_KEYS, path, "key")
    if data.get("mode") is None:
        raise ConfigError(
            f"{path}.mode: required key is missing; choose one of {', '.join(TRAINING_MODES)}", f"{path}.mode"
        )
    mode = _choice(data["mode"], f"{path}.mode", TRAINING_MODES)
    scf_data = data.get("scf")
    scf_path = f"{path}.scf"
    if mode == "direct":
        if scf_data is not None:
            raise ConfigError(
                f"{scf_path}: mode 'direct' takes one update from the reference density and has no 'scf' block; "
                f"remove it or choose unroll_scf/implicit/linearize_solve",
                scf_path,
            )
        return FixedPointOptions(mode=mode, scf=None)
    if mode in _MODES_NEEDING_SCF:
        example = "scf: {num_scf_steps: 10, mixing_parameter: 0.3}"
        if scf_data is None:
            raise ConfigError(
                f"{scf_path}: mode {mode!r} iterates the SCF loop and needs an 'scf' block with num_scf_steps "
                f"and mixing_parameter, e.g. {example}",
                scf_path,
            )
        _require_mapping(scf_data, scf_path, f"a mapping of SCF options, e.g. {example}")
        _check_keys(scf_data, _SCF_KEYS, scf_path, "scf option")  # a typo is named as such, not as a missing key
        for key in ("num_scf_steps", "mixing_parameter"):
            if key not in scf_data:
                raise ConfigError(
                    f"{scf_path}.{key}: mode {mode!r} needs {key} given explicitly, e.g. {example}", f"{scf_path}.{key}"
                )
    return FixedPointOptions(mode=mode, scf=_parse_scf({} if scf_data is None else scf_data, scf_path))


def _parse_scf(data: Any, path: str) -> SCFOptions:
    _require_mapping(data, path, "a mapping of SCF options, e.g. {num_scf_steps: 10, mixing_parameter: 0.3}")
    _check_keys(data, _SCF_KEYS, path, "scf option")
    default = SCFOptions()
    use_autograd_forces = _bool(data.get("use_autograd_forces", True), f"{path}.use_autograd_forces")
    if not use_autograd_forces:
        raise ConfigError(
            f"{path}.use_autograd_forces = false is not supported: in fpscf forces are always −∂E/∂R of the "
            f"converged energy (autograd through the fixed point); remove the key or set it to true",
            f"{path}.use_autograd_forces",
        )
    return SCFOptions(
        num_scf_steps=_int(data.get("num_scf_steps", default.num_scf_steps), f"{path}.num_scf_steps", minimum=1),
        constant_charge=_bool(data.get("constant_charge", default.constant_charge), f"{path}.constant_charge"),
        mixing_parameter=_float_in(
            data.get("mixing_parameter", default.mixing_parameter), f"{path}.mixing_parameter", 0.0, 1.0,
            "a mixing weight 0 < a ≤ 1", include_high=True,
        ),
        initial_density=_choice(data.get("initial_density", default.initial_density), f"{path}.initial_density",
                                INITIAL_DENSITIES),
        initial_fermi_level=_choice(data.get("initial_fermi_level", default.initial_fermi_level),
                                    f"{path}.initial_fermi_level", INITIAL_FERMI_LEVELS),
        use_autograd_forces=use_autograd_forces,
        scf_tolerance=_positive_float(data.get("scf_tolerance", default.scf_tolerance), f"{path}.scf_tolerance"),
    )


def _parse_finetune(data: Any, path: str, base_dir: str) -> dict[str, Any] | None:
    """``{model: shipped name or .fpscf path, freeze: [names of model blocks]}`` or None; a path
    relative to the config's directory that exists is made absolute (a file wins over a shipped name)."""
    if data is None:
        return None
    if isinstance(data, str):
        data = {"model": data}
    _require_mapping(data, path, "a mapping {model: water-b3lyp, freeze: [encoder]} (or a model name)")
    _check_keys(data, ("model", "freeze"), path, "finetune option")
    if data.get("model") is None:
        raise ConfigError(f"{path}.model: required key is missing (a shipped model name or a .fpscf file)", f"{path}.model")
    freeze = data.get("freeze") or []
    if not isinstance(freeze, (list, tuple)) or not all(isinstance(name, str) for name in freeze):
        raise ConfigError(f"{path}.freeze = {freeze!r} is not valid: expected a list of block names, e.g. [encoder]",
                          f"{path}.freeze")
    model = _str(data["model"], f"{path}.model")
    if os.path.exists(_resolve(model, base_dir)):
        model = _resolve(model, base_dir)
    return {"model": model, "freeze": list(freeze)}


def _parse_optimizer(data: Any, path: str) -> OptimizerConfig:
    if data is None:
        return OptimizerConfig()
    _require_mapping(data, path, "a mapping of optimizer options, e.g. {name: adam, weight_decay: 0.0}")
    _check_keys(data, _OPTIMIZER_KEYS, path, "optimizer option")
    default = OptimizerConfig()
    betas = data.get("betas", default.betas)
    if not isinstance(betas, (list, tuple)) or len(betas) != 2:
        raise ConfigError(f"{path}.betas = {betas!r} is not valid: expected two numbers, e.g. [0.9, 0.999]",
                          f"{path}.betas")
    clip = data.get("gradient_clip", default.gradient_clip)
    return OptimizerConfig(
        name=_choice(data.get("name", default.name), f"{path}.name", OPTIMIZERS),
        weight_decay=_non_negative_float(data.get("weight_decay", 0.0), f"{path}.weight_decay"),
        field_block_weight_decay=_non_negative_float(
            data.get("field_block_weight_decay", 0.0), f"{path}.field_block_weight_decay"
        ),
        local_charges_weight_decay=_non_negative_float(
            data.get("local_charges_weight_decay", 0.0), f"{path}.local_charges_weight_decay"
        ),
        betas=(_beta(betas[0], f"{path}.betas.0"), _beta(betas[1], f"{path}.betas.1")),
        eps=_positive_float(data.get("eps", default.eps), f"{path}.eps"),
        amsgrad=_bool(data.get("amsgrad", default.amsgrad), f"{path}.amsgrad"),
        gradient_clip=None if clip is None else _positive_float(clip, f"{path}.gradient_clip"),
    )


def _beta(value: Any, path: str) -> float:
    return _float_in(value, path, 0.0, 1.0, "a number 0 ≤ β < 1", include_low=True)


def _parse_key_map(data: Any, path: str) -> dict[str, str | None]:
    if data is None:
        return {}
    _require_mapping(data, path, "a mapping from property to extxyz key, e.g. {energy: REF_energy}")
    _check_keys(data, _KEY_MAP_KEYS, path, "key_map field")
    result: dict[str, str | None] = {}
    for name, key in data.items():
        if key is not None and not isinstance(key, str):
            raise ConfigError(
                f"{path}.{name} = {key!r} is not valid: expected the extxyz key name (a string), or null to ignore "
                f"the label", f"{path}.{name}"
            )
        if key is None and name not in _NULLABLE_KEY_MAP_KEYS:
            raise ConfigError(
                f"{path}.{name} = null is not valid: only labels ({', '.join(_NULLABLE_KEY_MAP_KEYS)}) can be "
                f"ignored; {name} is always read", f"{path}.{name}"
            )
        result[name] = key
    return result


def _model_option_names() -> list[str]:
    return [name for name in hyperparameter_names() if name != "atomic_numbers"]


def _parse_model(data: Any, path: str, atomic_numbers: tuple[int, ...] | None) -> dict[str, Any]:
    if data is None:
        return {}
    _require_mapping(data, path, "a mapping of model hyperparameters, e.g. {r_max: 4.0, num_channels: 8}")
    if "atomic_numbers" in data:
        raise ConfigError(
            f"{path}.atomic_numbers: set atomic_numbers at the top level of the config, not under model",
            f"{path}.atomic_numbers",
        )
    _check_keys(data, _model_option_names(), path, "model option")
    types = {f.name: f.type for f in fields(ModelConfig)}
    model: dict[str, Any] = {}
    for name, value in data.items():
        kind, key_path = types[name], f"{path}.{name}"
        if name in ESTIMATED_OPTIONS and value == AVERAGE:
            pass  # estimated from the training data when the trainer starts
        elif kind == "float":
            value = _float(value, key_path)
        elif kind == "int":
            value = _int(value, key_path)
        elif kind == "bool":
            value = _bool(value, key_path)
        elif kind == "str":
            value = _str(value, key_path)
        model[name] = _plain(value)
    _check_model_builds(model, path, atomic_numbers)
    return model


def _check_model_builds(model: dict[str, Any], path: str, atomic_numbers: tuple[int, ...] | None) -> None:
    """Build a :class:`ModelConfig` once so architecture errors show up before training."""
    options = copy.deepcopy(model)
    if atomic_numbers is None:
        # Species come from the training data later; check per-species options then.
        if isinstance(options.get("atom_density_scaling"), dict):
            options.pop("atom_density_scaling")
        atomic_numbers = (1,)
    try:
        make_config(atomic_numbers, **options)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: {exc}", path) from None


def _parse_atomic_numbers(data: Any, path: str) -> tuple[int, ...] | None:
    if data is None:
        return None
    if not isinstance(data, (list, tuple)) or not data:
        raise ConfigError(
            f"{path} = {data!r} is not valid: expected a non-empty list of element symbols or atomic numbers, "
            f"e.g. [H, O] or [1, 8]", path
        )
    from ase.data import atomic_numbers as symbol_to_z

    numbers: set[int] = set()
    for i, item in enumerate(data):
        item_path = f"{path}.{i}"
        if isinstance(item, str):
            if item not in symbol_to_z or symbol_to_z[item] == 0:
                symbols = [s for s, z in symbol_to_z.items() if 1 <= z <= _MAX_Z]
                close = difflib.get_close_matches(item.capitalize(), symbols, n=3)
                hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                raise ConfigError(f"{item_path} = {item!r} is not a chemical element symbol.{hint}", item_path)
            numbers.add(symbol_to_z[item])
        elif isinstance(item, int) and not isinstance(item, bool) and 1 <= item <= _MAX_Z:
            numbers.add(item)
        else:
            raise ConfigError(
                f"{item_path} = {item!r} is not valid: expected an element symbol (e.g. 'O') or an atomic number "
                f"1..{_MAX_Z}", item_path
            )
    return tuple(sorted(numbers))


def _parse_device(value: Any, path: str) -> str:
    device = _str(value, path)
    import torch

    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{path} = {device!r} is not a torch device; use e.g. cpu, cuda or cuda:0", path) from None
    return device


def _stage_to_dict(stage: StageConfig) -> dict[str, Any]:
    options = stage.fixed_point_training_options
    fixed_point: dict[str, Any] = {"mode": options.mode}
    if options.scf is not None:
        fixed_point["scf"] = dataclasses.asdict(options.scf)
    return {
        "name": stage.name,
        "start": stage.start,
        "end": stage.end,
        "lr": stage.lr,
        "final_lr": stage.final_lr,
        "loss": dict(stage.loss),
        "fixed_point_training_options": fixed_point,
    }


def _stage_index(key: Any) -> int | None:
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    if isinstance(key, str) and key.isdigit():  # JSON turns integer keys into strings
        return int(key)
    return None


# --------------------------------------------------------------------------------------------
# Small checks shared by every section


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _unknown(path: str, key: Any, valid: Sequence[str], what: str) -> NoReturn:
    close = difflib.get_close_matches(str(key), list(valid), n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"{path}: unknown {what} {key!r}.{hint} Valid {what}s: {', '.join(valid)}", path)


def _check_keys(data: Mapping[Any, Any], valid: Sequence[str], path: str, what: str) -> None:
    for key in data:
        if key not in valid:
            _unknown(_join(path, key), key, valid, what)


def _require_mapping(data: Any, path: str, expected: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path} = {data!r} is not valid: expected {expected}", path)


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{path} = {value!r} is not valid: expected true or false", path)
    return value


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path} = {value!r} is not valid: expected a non-empty string", path)
    return value


def _int(value: Any, path: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{path} = {value!r} is not valid: expected an integer", path)
    if minimum is not None and value < minimum:
        raise ConfigError(f"{path} = {value!r} is not valid: expected an integer ≥ {minimum}", path)
    return value


def _float(value: Any, path: str) -> float:
    """A finite real number; strings such as ``"1e-3"`` (which PyYAML does not read as floats) are converted."""
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        raise ConfigError(f"{path} = {value!r} is not valid: expected a finite number, e.g. 1.0e-3", path)
    return number


def _positive_float(value: Any, path: str) -> float:
    number = _float(value, path)
    if not number > 0:
        raise ConfigError(f"{path} = {value!r} is not valid: expected a number > 0", path)
    return number


def _non_negative_float(value: Any, path: str) -> float:
    number = _float(value, path)
    if not number >= 0:
        raise ConfigError(f"{path} = {value!r} is not valid: expected a number ≥ 0", path)
    return number


def _float_in(value: Any, path: str, low: float, high: float, expected: str, *,
              include_low: bool = False, include_high: bool = False) -> float:
    number = _float(value, path)
    above = number >= low if include_low else number > low
    below = number <= high if include_high else number < high
    if not (above and below):
        raise ConfigError(f"{path} = {value!r} is not valid: expected {expected}", path)
    return number


def _choice(value: Any, path: str, choices: Sequence[str]) -> str:
    if value not in choices:
        close = difflib.get_close_matches(str(value), list(choices), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{path} = {value!r} is not valid.{hint} Choose one of: {', '.join(choices)}", path)
    return value


def _resolve(path: str, base_dir: str) -> str:
    return os.path.abspath(os.path.join(base_dir, os.path.expanduser(path)))


def _existing_file(value: Any, key: str, base_dir: str) -> str:
    """An extxyz file, or a directory packed by ``fpscf data pack`` (it holds ``index.json``)."""
    resolved = _resolve(_str(value, key), base_dir)
    if os.path.isdir(resolved) and os.path.isfile(os.path.join(resolved, "index.json")):
        return resolved
    if not os.path.isfile(resolved):
        raise ConfigError(
            f"{key} = {value!r}: file not found at {resolved} (relative paths are relative to the config "
            f"file's directory, {base_dir})", key
        )
    return resolved


def _plain(value: Any) -> Any:
    """Deep copy with tuples turned into lists, so the result dumps to YAML and JSON."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _merge(target: dict[Any, Any], updates: Mapping[Any, Any], path: str) -> None:
    """Merge ``updates`` into ``target`` in place; mappings merge, other values replace."""
    for key, value in updates.items():
        if isinstance(key, int) and key not in target and str(key) in target:
            key = str(key)
        key_path = _join(path, key)
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            _merge(current, value, key_path)
        elif isinstance(value, dict) and key in target and current is not None:
            raise ConfigError(f"{key_path}: cannot set nested keys on {current!r}, which is not a mapping", key_path)
        else:
            target[key] = copy.deepcopy(value)
