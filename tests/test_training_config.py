"""The training config is parsed into typed dataclasses and every bad value fails fast with its key path."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from fpscf.data.labels import KeyMap
from fpscf.training.config import (
    LOSS_NAMES,
    ConfigError,
    FixedPointOptions,
    OptimizerConfig,
    SCFOptions,
    StageConfig,
    TrainingConfig,
    load_config,
    parse_overrides,
)

EXAMPLE_YAML = """\
train_file: train.xyz          # extxyz, path relative to the config file's directory
valid_file: valid.xyz
valid_fraction: 0.1
key_map: {energy: REF_energy, forces: REF_forces}
output_dir: run
seed: 0
batch_size: 4
valid_batch_size: 8
device: cpu
default_dtype: float64
atomic_numbers: [H, O]
model: {r_max: 4.0, num_channels: 8, field_feature_norms: average}
optimizer: {name: adam, weight_decay: 0.0, field_block_weight_decay: 1.0e-4, local_charges_weight_decay: 0.0}
checkpoint_every: 1
train_schedule:
  0: {name: direct, start: 0, end: 99, lr: 0.01,
      loss: {atomic_multipoles: 100.0, total_charge_per_atom: 1000.0, dipole_per_atom: 1.0e6,
             energy_per_atom: 10.0, forces: 100.0},
      fixed_point_training_options: {mode: direct}}
  1:
    name: unroll
    start: 100
    end: 110
    lr: 0.001
    loss: {atomic_multipoles: 100.0, energy_per_atom: 1000.0, forces: 100.0}
    fixed_point_training_options:
      mode: unroll_scf
      scf: {num_scf_steps: 10, constant_charge: true, mixing_parameter: 0.3,
            initial_density: from_data, initial_fermi_level: from_data, use_autograd_forces: true}
"""

UNROLL_OPTIONS = ("train_schedule", 1, "fixed_point_training_options")
SCF = (*UNROLL_OPTIONS, "scf")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A directory with the example config and dummy data files (only their existence is checked)."""
    (tmp_path / "train.xyz").write_text("dummy\n")
    (tmp_path / "valid.xyz").write_text("dummy\n")
    (tmp_path / "config.yaml").write_text(EXAMPLE_YAML)
    return tmp_path


@pytest.fixture
def data(run_dir: Path) -> dict[str, Any]:
    """The example config as plain data, to be edited by each test."""
    return yaml.safe_load(EXAMPLE_YAML)


def _set(data: dict[str, Any], keys: tuple[Any, ...], value: Any) -> dict[str, Any]:
    target = data
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    return data


def _delete(data: dict[str, Any], keys: tuple[Any, ...]) -> dict[str, Any]:
    target = data
    for key in keys[:-1]:
        target = target[key]
    del target[keys[-1]]
    return data


def _error(data: dict[str, Any], base_dir: Path) -> str:
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_dict(data, base_dir=base_dir)
    return str(info.value)


def test_example_config_loads_with_types_absolute_paths_and_defaults(run_dir: Path) -> None:
    config = load_config(run_dir / "config.yaml")
    assert config.train_file == str(run_dir / "train.xyz") and os.path.isabs(config.train_file)
    assert config.valid_file == str(run_dir / "valid.xyz")
    assert config.output_dir == str(run_dir / "run")
    assert config.atomic_numbers == (1, 8)
    assert config.model == {"r_max": 4.0, "num_channels": 8, "field_feature_norms": "average"}
    assert config.optimizer == OptimizerConfig(field_block_weight_decay=1e-4)
    assert (config.valid_batch_size, config.progress, config.plot) == (8, True, True)
    direct, unroll = config.train_schedule
    assert direct == StageConfig(
        index=0, name="direct", start=0, end=99, lr=0.01,
        loss={"atomic_multipoles": 100.0, "total_charge_per_atom": 1000.0, "dipole_per_atom": 1e6,
              "energy_per_atom": 10.0, "forces": 100.0},
        fixed_point_training_options=FixedPointOptions(mode="direct", scf=None),
    )
    assert unroll.fixed_point_training_options == FixedPointOptions(
        mode="unroll_scf",
        scf=SCFOptions(num_scf_steps=10, mixing_parameter=0.3, initial_density="from_data",
                       initial_fermi_level="from_data"),
    )
    assert isinstance(unroll.lr, float) and all(isinstance(w, float) for w in unroll.loss.values())
    assert config.make_key_map() == KeyMap(energy="REF_energy", forces="REF_forces")


def test_final_lr_decays_geometrically_across_a_stage() -> None:
    options = FixedPointOptions(mode="direct", scf=None)
    stage = StageConfig(index=0, name="s", start=10, end=20, lr=1e-2, final_lr=1e-4, loss={"forces": 1.0},
                        fixed_point_training_options=options)
    assert stage.lr_at(10) == pytest.approx(1e-2) and stage.lr_at(20) == pytest.approx(1e-4)
    assert stage.lr_at(15) == pytest.approx(1e-3)  # geometric mean half-way
    constant = StageConfig(index=0, name="s", start=0, end=5, lr=1e-3, loss={"forces": 1.0},
                           fixed_point_training_options=options)
    assert [constant.lr_at(e) for e in range(6)] == [1e-3] * 6


def test_stage_at_and_num_epochs_follow_the_schedule(run_dir: Path) -> None:
    config = load_config(run_dir / "config.yaml")
    assert config.num_epochs == 111
    assert [stage.num_epochs for stage in config.train_schedule] == [100, 11]
    assert config.stage_at(0).name == "direct" and config.stage_at(99).name == "direct"
    assert config.stage_at(100).name == "unroll" and config.stage_at(110).name == "unroll"
    with pytest.raises(ValueError, match="outside the training schedule"):
        config.stage_at(111)


def test_to_dict_round_trips_through_yaml_and_json(run_dir: Path) -> None:
    config = load_config(run_dir / "config.yaml")
    plain = config.to_dict()
    assert TrainingConfig.from_dict(plain) == config
    assert TrainingConfig.from_dict(yaml.safe_load(yaml.safe_dump(plain))) == config
    assert TrainingConfig.from_dict(json.loads(json.dumps(plain))) == config


def test_minimal_config_gets_documented_defaults(run_dir: Path) -> None:
    data = {
        "train_file": "train.xyz",
        "train_schedule": {0: {"start": 0, "end": 4, "lr": 0.01, "loss": {"forces": 1.0},
                               "fixed_point_training_options": {"mode": "linearize_solve"}}},
    }
    config = TrainingConfig.from_dict(data, base_dir=run_dir)
    assert config.valid_file is None and config.valid_fraction == 0.1
    assert config.output_dir == str(run_dir) and config.seed == 0 and config.batch_size == 4
    assert config.valid_batch_size is None and config.atomic_numbers is None
    assert config.model == {} and config.key_map == {} and config.optimizer == OptimizerConfig()
    assert config.train_schedule[0].name == "stage0"
    assert config.train_schedule[0].fixed_point_training_options.scf == SCFOptions()


@pytest.mark.parametrize(
    ("keys", "expected_path", "suggestion"),
    [
        (("trian_file",), "trian_file", "train_file"),
        (("train_schedule", 0, "ennd"), "train_schedule.0.ennd", "end"),
        ((*SCF, "num_scf_step"), "train_schedule.1.fixed_point_training_options.scf.num_scf_step", "num_scf_steps"),
        (("optimizer", "weight_decy"), "optimizer.weight_decy", "weight_decay"),
        (("key_map", "energies"), "key_map.energies", "energy"),
        (("train_schedule", 1, "loss", "force"), "train_schedule.1.loss.force", "forces"),
        (("model", "num_channel"), "model.num_channel", "num_channels"),
    ],
)
def test_unknown_keys_name_the_path_a_suggestion_and_the_valid_keys(
    data: dict[str, Any], run_dir: Path, keys: tuple[Any, ...], expected_path: str, suggestion: str
) -> None:
    message = _error(_set(data, keys, 1.0), run_dir)
    assert expected_path in message
    assert f"Did you mean '{suggestion}'" in message
    assert "Valid" in message


def test_unknown_loss_lists_all_loss_names(data: dict[str, Any], run_dir: Path) -> None:
    message = _error(_set(data, ("train_schedule", 0, "loss", "enrgy"), 1.0), run_dir)
    assert all(name in message for name in LOSS_NAMES)


def test_model_options_in_the_wrong_place_are_redirected(data: dict[str, Any], run_dir: Path) -> None:
    assert "put it under 'model:'" in _error(_set(copy.deepcopy(data), ("r_max",), 4.0), run_dir)
    assert "top level" in _error(_set(data, ("model", "atomic_numbers"), [1]), run_dir)


def test_invalid_model_hyperparameters_fail_before_training(data: dict[str, Any], run_dir: Path) -> None:
    message = _error(_set(data, ("model", "electrostatic_pbc_method"), "ewald"), run_dir)
    assert "model" in message and "realspace" in message
    assert "model.r_max" in _error(_set(data, ("model", "r_max"), "far"), run_dir)


@pytest.mark.parametrize("key", ["train_file", "train_schedule"])
def test_required_keys_are_reported_missing(data: dict[str, Any], run_dir: Path, key: str) -> None:
    assert f"{key}: required" in _error(_delete(data, (key,)), run_dir)


@pytest.mark.parametrize("key", ["train_file", "valid_file"])
def test_missing_data_files_name_the_key_and_resolved_path(data: dict[str, Any], run_dir: Path, key: str) -> None:
    message = _error(_set(data, (key,), "missing.xyz"), run_dir)
    assert key in message and str(run_dir / "missing.xyz") in message


def test_unknown_training_mode_lists_the_modes(data: dict[str, Any], run_dir: Path) -> None:
    message = _error(_set(data, (*UNROLL_OPTIONS, "mode"), "unrol_scf"), run_dir)
    assert "train_schedule.1.fixed_point_training_options.mode" in message
    assert "Did you mean 'unroll_scf'" in message and "linearize_solve" in message


def test_direct_mode_rejects_an_scf_block(data: dict[str, Any], run_dir: Path) -> None:
    data = _set(data, ("train_schedule", 0, "fixed_point_training_options", "scf"), {"num_scf_steps": 3})
    message = _error(data, run_dir)
    assert "train_schedule.0.fixed_point_training_options.scf" in message
    assert "has no 'scf' block" in message and "unroll_scf/implicit/linearize_solve" in message


@pytest.mark.parametrize("mode", ["unroll_scf", "implicit"])
@pytest.mark.parametrize("missing", ["num_scf_steps", "mixing_parameter"])
def test_iterating_modes_need_explicit_steps_and_mixing(
    data: dict[str, Any], run_dir: Path, mode: str, missing: str
) -> None:
    data = _set(data, (*UNROLL_OPTIONS, "mode"), mode)
    message = _error(_delete(data, (*SCF, missing)), run_dir)
    assert f"train_schedule.1.fixed_point_training_options.scf.{missing}" in message and mode in message


def test_iterating_mode_without_scf_block_is_rejected(data: dict[str, Any], run_dir: Path) -> None:
    message = _error(_delete(data, SCF), run_dir)
    assert "train_schedule.1.fixed_point_training_options.scf" in message and "num_scf_steps" in message


def test_linearize_solve_uses_scf_defaults(data: dict[str, Any], run_dir: Path) -> None:
    data = _delete(_set(data, (*UNROLL_OPTIONS, "mode"), "linearize_solve"), SCF)
    config = TrainingConfig.from_dict(data, base_dir=run_dir)
    assert config.train_schedule[1].fixed_point_training_options.scf == SCFOptions()


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("num_scf_steps", 0, "≥ 1"),
        ("num_scf_steps", 2.5, "integer"),
        ("mixing_parameter", 0.0, "0 < a ≤ 1"),
        ("mixing_parameter", 1.5, "0 < a ≤ 1"),
        ("initial_density", "guess", "local_guess"),
        ("initial_fermi_level", "fermi", "from_data"),
        ("scf_tolerance", 0.0, "> 0"),
        ("constant_charge", "yes please", "true or false"),
    ],
)
def test_scf_options_are_range_checked(
    data: dict[str, Any], run_dir: Path, key: str, value: Any, expected: str
) -> None:
    message = _error(_set(data, (*SCF, key), value), run_dir)
    assert f"train_schedule.1.fixed_point_training_options.scf.{key} = {value!r}" in message
    assert expected in message


def test_mixing_parameter_one_is_allowed(data: dict[str, Any], run_dir: Path) -> None:
    config = TrainingConfig.from_dict(_set(data, (*SCF, "mixing_parameter"), 1), base_dir=run_dir)
    assert config.train_schedule[1].fixed_point_training_options.scf.mixing_parameter == 1.0


def test_autograd_forces_cannot_be_switched_off(data: dict[str, Any], run_dir: Path) -> None:
    message = _error(_set(data, (*SCF, "use_autograd_forces"), False), run_dir)
    assert "scf.use_autograd_forces" in message and "−∂E/∂R" in message


def test_first_stage_must_start_at_zero(data: dict[str, Any], run_dir: Path) -> None:
    message = _error(_set(data, ("train_schedule", 0, "start"), 1), run_dir)
    assert "train_schedule.0.start" in message and "epoch 0" in message


def test_stages_must_follow_each_other_without_gaps(data: dict[str, Any], run_dir: Path) -> None:
    message = _error(_set(data, ("train_schedule", 1, "start"), 101), run_dir)
    assert "train_schedule.1.start" in message
    assert "'unroll'" in message and "'direct'" in message and "start: 100" in message


@pytest.mark.parametrize(
    ("keys", "value", "expected_path"),
    [
        (("train_schedule", 1, "end"), 50, "train_schedule.1.end"),
        (("train_schedule", 0, "start"), -1, "train_schedule.0.start"),
        (("train_schedule", 0, "lr"), 0.0, "train_schedule.0.lr"),
        (("train_schedule", 0, "lr"), "fast", "train_schedule.0.lr"),
        (("train_schedule", 0, "final_lr"), -1e-3, "train_schedule.0.final_lr"),
        (("train_schedule", 0, "loss", "forces"), -1.0, "train_schedule.0.loss.forces"),
        (("train_schedule", 0, "loss"), {"forces": 0.0, "energy_per_atom": 0}, "train_schedule.0.loss"),
        (("batch_size",), 0, "batch_size"),
        (("batch_size",), True, "batch_size"),
        (("valid_batch_size",), 0, "valid_batch_size"),
        (("checkpoint_every",), 0, "checkpoint_every"),
        (("valid_fraction",), 1.0, "valid_fraction"),
        (("default_dtype",), "float16", "float64"),
        (("optimizer", "name"), "sgd", "adamw"),
        (("optimizer", "field_block_weight_decay"), -1e-4, "optimizer.field_block_weight_decay"),
        (("progress",), "yes please", "progress"),
        (("device",), "gpu", "cuda"),
    ],
)
def test_out_of_range_values_are_rejected_with_their_key(
    data: dict[str, Any], run_dir: Path, keys: tuple[Any, ...], value: Any, expected_path: str
) -> None:
    assert expected_path in _error(_set(data, keys, value), run_dir)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [({}, "at least one stage"), ({"first": {}}, "0, 1, 2"), ({0: None, 2: None}, "no gaps")],
)
def test_schedule_keys_must_be_consecutive_integers(
    data: dict[str, Any], run_dir: Path, schedule: dict[Any, Any], expected: str
) -> None:
    stages = data["train_schedule"]
    schedule = {key: stages[0] if value is None else value for key, value in schedule.items()}
    assert expected in _error(_set(data, ("train_schedule",), schedule), run_dir)


def test_stage_name_defaults_to_its_index(data: dict[str, Any], run_dir: Path) -> None:
    config = TrainingConfig.from_dict(_delete(data, ("train_schedule", 1, "name")), base_dir=run_dir)
    assert config.train_schedule[1].name == "stage1"


def test_atomic_numbers_accept_symbols_and_numbers_sorted_unique(data: dict[str, Any], run_dir: Path) -> None:
    config = TrainingConfig.from_dict(_set(data, ("atomic_numbers",), ["O", 1, "H", 8, "Zn"]), base_dir=run_dir)
    assert config.atomic_numbers == (1, 8, 30)


@pytest.mark.parametrize(("value", "expected"), [(["Hx"], "atomic_numbers.0"), ([1, 0], "atomic_numbers.1"),
                                                 ("H", "list")])
def test_bad_atomic_numbers_are_rejected(data: dict[str, Any], run_dir: Path, value: Any, expected: str) -> None:
    assert expected in _error(_set(data, ("atomic_numbers",), value), run_dir)


def test_key_map_null_ignores_a_label_but_not_an_input(data: dict[str, Any], run_dir: Path) -> None:
    config = TrainingConfig.from_dict(_set(copy.deepcopy(data), ("key_map", "stress"), None), base_dir=run_dir)
    assert config.make_key_map().stress is None
    assert "key_map.total_charge" in _error(_set(data, ("key_map", "total_charge"), None), run_dir)


def test_exponent_without_dot_is_read_as_a_float(run_dir: Path) -> None:
    text = EXAMPLE_YAML.replace("lr: 0.01", "lr: 1e-2").replace("dipole_per_atom: 1.0e6", "dipole_per_atom: 1e6")
    assert yaml.safe_load(text)["train_schedule"][0]["lr"] == "1e-2"  # PyYAML reads this as a string
    text = text.replace("field_block_weight_decay: 1.0e-4", "field_block_weight_decay: 1e-4")
    (run_dir / "config.yaml").write_text(text)
    config = load_config(run_dir / "config.yaml")
    assert config.train_schedule[0].lr == 0.01 and config.train_schedule[0].loss["dipole_per_atom"] == 1e6
    assert config.optimizer.field_block_weight_decay == 1e-4


def test_parse_overrides_routes_top_level_model_and_dotted_keys() -> None:
    overrides = parse_overrides(
        ["--r_max=4.0", "seed=3", "--model.num_channels=8", "--train_schedule.1.lr=1e-4", "--atomic_numbers=[H, O]"]
    )
    assert overrides == {
        "model": {"r_max": 4.0, "num_channels": 8},
        "seed": 3,
        "train_schedule": {1: {"lr": "1e-4"}},
        "atomic_numbers": ["H", "O"],
    }


def test_overrides_are_applied_on_top_of_the_yaml(run_dir: Path) -> None:
    config = load_config(
        run_dir / "config.yaml",
        ["--r_max=3.5", "--seed=7", "--model.num_channels=4", "--train_schedule.1.lr=1e-4",
         "--train_schedule.1.fixed_point_training_options.scf.num_scf_steps=20", "--optimizer.name=adamw"],
    )
    assert config.model == {"r_max": 3.5, "num_channels": 4, "field_feature_norms": "average"}
    assert config.seed == 7 and config.optimizer.name == "adamw"
    assert config.train_schedule[1].lr == 1e-4
    assert config.train_schedule[1].fixed_point_training_options.scf.num_scf_steps == 20


@pytest.mark.parametrize(
    ("override", "expected"),
    [("--r_max", "no '='"), ("--r_mx=3.0", "Did you mean 'r_max'"), ("--=3", "empty key")],
)
def test_bad_overrides_explain_the_usage(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_overrides([override])


def test_invalid_override_value_is_reported_with_its_key_path(run_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"train_schedule\.1\.fixed_point_training_options\.scf\.num_scf_steps"):
        load_config(run_dir / "config.yaml", ["--train_schedule.1.fixed_point_training_options.scf.num_scf_steps=0"])


def test_yaml_syntax_error_and_missing_file_name_the_file(run_dir: Path) -> None:
    broken = run_dir / "broken.yaml"
    broken.write_text("train_file: [train.xyz\n")
    with pytest.raises(ConfigError, match="broken.yaml.*not valid YAML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="nowhere.yaml.*does not exist"):
        load_config(run_dir / "nowhere.yaml")
    (run_dir / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_config(run_dir / "empty.yaml")
