"""Bad input gets a clear answer (issue N): every class of bad structure, parameter, model file,
checkpoint and config that once gave absurd numbers, a raw traceback or silence now gives a short
error naming the problem and the fix (or a warning and a correct result where the input is
legitimate: isolated atoms, dissociation curves), and a fuzz test holds the calculator to it:
finite numbers or one of fpscf's own exceptions, nothing else."""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import struct
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.build import molecule

from fpscf import FixedPointCalculator, build_model, load_model
from fpscf.cli import main
from fpscf.data.extxyz import write_extxyz
from fpscf.datagen.synthetic import TEACHER_ARCHITECTURE, teacher_structures
from fpscf.errors import (
    CheckpointError,
    FpscfError,
    InputError,
    InputWarning,
    ModelFileError,
    ModelNotFoundError,
    NonFiniteResultError,
    OutOfDomainWarning,
)
from fpscf.model_io import read_header, save_model
from fpscf.scf.krylov import LinearSolveSettings, gmres
from fpscf.training.config import ConfigError, load_config
from fpscf.training.trainer import Trainer


@pytest.fixture(scope="module")
def calc():
    return FixedPointCalculator(model="water-b3lyp")


def water(**info) -> Atoms:
    atoms = molecule("H2O")
    atoms.info.update(info)
    return atoms


def energy(calc, atoms: Atoms) -> float:
    atoms.calc = calc
    return atoms.get_potential_energy()


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and text
    return text


# ----------------------------------------------------------------- 1. absurd numbers
@pytest.mark.parametrize("distance, reason", [(0.3, "sane: within"), (0.12, "not finite")])
def test_close_contact_is_an_error_not_an_absurd_energy(calc, distance, reason):
    atoms = Atoms("OH", positions=[[0, 0, 0], [distance, 0, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)
        with pytest.raises(NonFiniteResultError) as error:
            energy(calc, atoms)
    text = one_line(error.value)
    assert reason in text and f"shortest interatomic distance {distance:.3f} Å" in text


def test_water_in_a_tiny_periodic_box_is_an_error(calc):
    atoms = water()
    atoms.set_cell([2.0, 2.0, 2.0])
    atoms.pbc = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)
        with pytest.raises(FpscfError) as error:
            energy(calc, atoms)
    one_line(error.value)


def test_spectra_of_a_close_contact_is_one_line_and_writes_nothing(tmp_path, capsys):
    Atoms("OH", positions=[[0, 0, 0], [0.3, 0, 0]]).write(tmp_path / "oh.xyz")
    assert main(["spectra", str(tmp_path / "oh.xyz"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "fpscf spectra: error:" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------- 2. charge input
def test_impossible_total_charge_is_an_error(calc):
    with pytest.raises(InputError, match=r"total_charge'\] = -50 e is impossible .* 10 electrons"):
        energy(calc, water(total_charge=-50))
    with pytest.raises(InputError, match="one finite number"):
        energy(calc, water(total_charge="one"))


def test_fractional_total_charge_warns_and_gives_a_result():
    calc = FixedPointCalculator(model="water-b3lyp")
    with pytest.warns(InputWarning, match="not a whole number"):
        assert np.isfinite(energy(calc, water(total_charge=0.5)))


def test_ase_charge_key_is_read_as_the_total_charge(calc):
    neutral = energy(calc, water())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)
        by_charge = energy(calc, water(charge=1))
        by_total = energy(calc, water(total_charge=1))
    assert by_charge == pytest.approx(by_total, abs=1e-5)  # same input; warm starts differ within the SCF tolerance
    assert abs(by_charge - neutral) > 1.0
    with pytest.raises(InputError, match="disagree"):
        energy(calc, water(charge=1, total_charge=0))


def test_ignored_initial_charges_warn():
    atoms = water()
    atoms.set_initial_charges([1.0, 0.0, 0.0])
    with pytest.warns(InputWarning, match=r"initial charges \(sum 1 e\) are ignored.*total_charge'\] = 1"):
        energy(FixedPointCalculator(model="water-b3lyp"), atoms)


# ----------------------------------------------------------------- 3. extrapolation
def test_strong_fields_warn_once_per_calculator_and_still_return_numbers():
    calc = FixedPointCalculator(model="water-b3lyp")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for strength in (10.0, 100.0, 10.0):
            result = energy(calc, water(external_field=[0.0, 0.0, strength]))
            assert np.isfinite(result)
    fields = [w for w in caught if issubclass(w.category, OutOfDomainWarning) and "field" in str(w.message)]
    assert len(fields) == 1 and "exceeds the largest in training" in str(fields[0].message)


# ----------------------------------------------------------------- 4. isolated atoms
def test_isolated_atoms_and_dissociation_curves_work(calc):
    single = energy(calc, Atoms("O"))
    assert np.isfinite(single)
    boxed = Atoms("O", cell=[8.0, 8.0, 8.0], pbc=True)
    assert energy(calc, boxed) == pytest.approx(single, abs=1e-9)  # no image within the cutoff
    atoms = Atoms("O")
    atoms.calc = calc
    assert np.all(atoms.get_forces() == 0.0)
    curve = []
    for distance in (0.97, 1.5, 2.0, 3.0, 4.5, 6.0, 10.0, 20.0):
        atoms = Atoms("OH", positions=[[0, 0, 0], [distance, 0, 0]])
        curve.append(energy(calc, atoms))
        assert np.all(np.isfinite(atoms.get_forces()))
    assert np.all(np.isfinite(curve))
    assert abs(curve[-1] - curve[-2]) < 0.05  # flat far out (only the long-range tail of the charges remains)


def test_the_deployed_model_agrees_on_isolated_atoms(calc):
    """What pair_style fpscf runs (the deployed module, ghosts built as LAMMPS would) gives the
    calculator's numbers for a lone atom, open and in a box, and for a pair beyond the cutoff."""
    from fpscf.export.deployed import deploy
    from fpscf.export.testing import evaluate_atoms

    deployed = deploy(calc.model)
    for atoms in (Atoms("O"), Atoms("O", cell=[8.0, 8.0, 8.0], pbc=True), Atoms("OH", positions=[[0, 0, 0], [10, 0, 0]])):
        result = evaluate_atoms(deployed, atoms)
        assert result["energy"] == pytest.approx(energy(calc, atoms), abs=1e-8)
        assert np.abs(result["forces"] - atoms.get_forces()).max() < 1e-8


# ----------------------------------------------------------------- 5. model files
def _file_parts(path: Path) -> tuple[bytes, dict, bytes]:
    raw = path.read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    return raw, json.loads(raw[8:8 + size]), raw[8 + size:]


def _with_header(source: Path, target: Path, header_text: str) -> Path:
    raw, table, data = _file_parts(source)
    table["__metadata__"] = {"fpscf": header_text}
    text = json.dumps(table).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    target.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return target


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.fpscf"
    save_model(load_model("water-b3lyp"), path)
    return path


def test_a_flipped_byte_in_the_weights_is_detected(model_file, tmp_path):
    raw, table, data = _file_parts(model_file)
    flipped = bytearray(raw)
    flipped[len(raw) - len(data) + 1000] ^= 0x40
    (tmp_path / "flipped.fpscf").write_bytes(bytes(flipped))
    with pytest.raises(ModelFileError, match="do not match the digest recorded in the header"):
        load_model(tmp_path / "flipped.fpscf")
    assert read_header(model_file)["weights_sha256"]


def test_a_non_finite_weight_is_refused_by_load_and_export(tmp_path, capsys):
    broken = build_model([1, 8], r_max=4.0, num_channels=8, num_interactions=1, seed=1)
    with torch.no_grad():
        next(broken.local_energy.parameters()).view(-1)[0] = float("nan")
    save_model(broken, tmp_path / "nan.fpscf")
    with pytest.raises(ModelFileError, match=r"non-finite value\(s\)"):
        load_model(tmp_path / "nan.fpscf")
    assert main(["export", str(tmp_path / "nan.fpscf"), "-o", str(tmp_path / "nan.pt")]) == 2
    assert "non-finite" in capsys.readouterr().err
    assert not (tmp_path / "nan.pt").exists()


def test_absurd_header_values_are_refused_before_allocation(model_file, tmp_path):
    header = read_header(model_file)
    header["hyperparameters"]["num_channels"] = 10**9
    path = _with_header(model_file, tmp_path / "big.fpscf", json.dumps(header))
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"num_channels = 1000000000, outside the sane range"):
        load_model(path)
    assert time.perf_counter() - start < 5.0


def test_bad_headers_name_the_problem_and_the_version(model_file, tmp_path):
    with pytest.raises(ModelFileError, match="corrupt header"):
        load_model(_with_header(model_file, tmp_path / "json.fpscf", "{not json"))
    header = read_header(model_file)
    header["hyperparameters"]["future_option"] = 1
    header["fpscf_version"] = "9.0"
    with pytest.raises(ModelFileError, match=r"written by fpscf 9.0.*unknown hyperparameters \['future_option'\]"):
        load_model(_with_header(model_file, tmp_path / "new.fpscf", json.dumps(header)))


def test_loading_a_pickle_never_runs_it(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (tmp_path / "evil.fpscf").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "evil.fpscf")
    assert not marker.exists()


# ----------------------------------------------------------------- 6. checkpoints
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A one-epoch run: its directory and its config (plain data, to change for resumed runs)."""
    directory = tmp_path_factory.mktemp("run")
    structures = teacher_structures(8, seed=0)
    write_extxyz(directory / "train.xyz", structures[:6])
    write_extxyz(directory / "valid.xyz", structures[6:])
    config = {
        "train_file": str(directory / "train.xyz"), "valid_file": str(directory / "valid.xyz"), "output_dir": "run",
        "seed": 1, "batch_size": 3, "progress": False, "plot": False, "model": dict(TEACHER_ARCHITECTURE, atomic_energies="average"),
        "train_schedule": {0: {"name": "direct", "start": 0, "end": 0, "lr": 0.01,
                               "loss": {"atomic_multipoles": 1.0, "energy_per_atom": 1.0, "forces": 1.0},
                               "fixed_point_training_options": {"mode": "direct"}}},
    }
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    Trainer(load_config(directory / "config.yaml")).run()
    return directory, json.loads(json.dumps(config))


def _resume(trained_run, tmp_path, accept: bool = False, **changes):
    directory, config = trained_run
    shutil.copytree(directory, tmp_path, dirs_exist_ok=True)
    config = json.loads(json.dumps(config))
    for key, value in changes.items():
        *path, last = key.split("__")
        target = config
        for part in path:
            target = target[part]
        target[last] = value
    (tmp_path / "resume.yaml").write_text(yaml.safe_dump(config))
    return Trainer(load_config(tmp_path / "resume.yaml")).run(resume=True, accept_changes=accept)


def test_resume_with_another_learning_rate_needs_accepting(trained_run, tmp_path):
    with pytest.raises(CheckpointError, match=r"train_schedule.0.lr: 0.01 -> 0.005.*--accept-changes"):
        _resume(trained_run, tmp_path, train_schedule__0__lr=0.005)
    _resume(trained_run, tmp_path, accept=True, train_schedule__0__lr=0.005, train_schedule__0__end=1)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train_schedule"]["0"]["lr"] == 0.005
    assert (tmp_path / "run" / "config.before_epoch1.yaml").exists()


def test_resume_with_another_architecture_is_a_clear_error(trained_run, tmp_path):
    with pytest.raises(CheckpointError, match=r"model.num_channels: 8 -> 12.*cannot change within a run"):
        _resume(trained_run, tmp_path, model__num_channels=12)


def test_damaged_or_unsafe_checkpoints_are_refused(trained_run, tmp_path):
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    shutil.copytree(trained_run[0], tmp_path, dirs_exist_ok=True)
    checkpoint.write_bytes(checkpoint.read_bytes()[:3000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        Trainer(load_config(tmp_path / "config.yaml")).run(resume=True)
    torch.save({"model": argparse.Namespace(anything=1)}, checkpoint)
    with pytest.raises(CheckpointError, match="not a weights-only fpscf checkpoint") as error:
        Trainer(load_config(tmp_path / "config.yaml")).run(resume=True)
    assert "weights_only=False" not in str(error.value)


def test_temporaries_of_a_killed_run_are_removed_on_resume(trained_run, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    shutil.copytree(trained_run[0], tmp_path, dirs_exist_ok=True)
    stale = tmp_path / "run" / f".checkpoint.pt.{int(dead.stdout)}.abcd1234.tmp"
    stale.write_bytes(b"half a checkpoint")
    _resume(trained_run, tmp_path)
    assert not stale.exists()


# ----------------------------------------------------------------- 7. one line, not a traceback
@pytest.mark.parametrize("damage, expected", [
    ("nan_energy", "contains non-finite values"),
    ("garbage", "could not parse"),
    ("empty", "is empty"),
    ("duplicate", "closer than MIN_INTERATOMIC_DISTANCE"),
    ("foreign_element", "element Fe"),
])
def test_cli_train_data_errors_are_one_line(trained_run, tmp_path, capsys, damage, expected):
    directory, config = trained_run
    lines = (directory / "train.xyz").read_text().splitlines(keepends=True)
    if damage == "nan_energy":
        lines[1] = " ".join("energy=nan" if w.startswith("energy=") else w for w in lines[1].split(" "))
    elif damage == "garbage":
        lines = ["hello\n", "not xyz\n"]
    elif damage == "empty":
        lines = []
    elif damage == "duplicate":
        lines[3] = lines[2]
    (tmp_path / "train.xyz").write_text("".join(lines))
    shutil.copy(directory / "valid.xyz", tmp_path / "valid.xyz")
    if damage == "foreign_element":
        Atoms("FeO", positions=[[0, 0, 0], [2, 0, 0]], info={"energy": 1.0}).write(tmp_path / "valid.xyz")
    config = dict(config, train_file=str(tmp_path / "train.xyz"), valid_file=str(tmp_path / "valid.xyz"))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and expected in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1


def test_parameters_and_model_names_are_named_in_errors(tmp_path):
    with pytest.raises(InputError, match=r"electric_field must be 3 numbers in V/Å, e.g. electric_field=\[0, 0, 0.05\]"):
        FixedPointCalculator(model="water-b3lyp", electric_field="0 0 0.05")
    with pytest.raises(ModelNotFoundError, match=r"did you mean 'water-b3lyp'\?.*alas-lda, water-b3lyp"):
        FixedPointCalculator(model="water-b3lp")
    with pytest.raises(ModelNotFoundError, match="is a directory, not a model file"):
        load_model(tmp_path)


def test_cli_unreadable_structure_has_a_reason_and_debug_shows_the_traceback(tmp_path, capsys):
    (tmp_path / "text.cif").write_text("just some text\n")
    assert main(["spectra", str(tmp_path / "text.cif"), "--out", str(tmp_path / "o")]) == 2
    assert "ASE's reader failed (AssertionError)" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.fpscf"), "-o", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


def test_cli_resume_error_is_one_line_and_debug_raises_it(trained_run, tmp_path, capsys):
    directory, config = trained_run
    shutil.copytree(directory, tmp_path, dirs_exist_ok=True)
    config["train_schedule"]["0"]["lr"] = 0.002
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "fpscf train: error: --resume: the config differs" in err and "Traceback" not in err
    with pytest.raises(CheckpointError):
        main(["train", "--config", str(tmp_path / "c.yaml"), "--resume", "--debug"])


# ----------------------------------------------------------------- 8. names and typos
def test_load_model_accepts_shipped_names():
    assert list(load_model("water-b3lyp").atomic_numbers) == [1, 8]


def test_a_mistyped_scf_option_is_named_as_a_typo(trained_run, tmp_path):
    config = json.loads(json.dumps(trained_run[1]))
    config["train_schedule"]["0"]["fixed_point_training_options"] = {
        "mode": "implicit", "scf": {"num_scf_steps": 10, "mixing_paramter": 0.5}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"unknown scf option 'mixing_paramter'. Did you mean 'mixing_parameter'"):
        load_config(tmp_path / "c.yaml")


def test_implicit_derivative_solve_is_bitwise_reproducible():
    """GMRES (the implicit stages' adjoint solve) gives the same bits on every call: LAPACK's default
    least-squares driver did not, and implicit training drifted by 1e-15 to 1e-11 between runs."""
    generator = torch.Generator().manual_seed(0)
    matrix = torch.eye(40, dtype=torch.float64) + 0.9 * torch.randn(40, 40, dtype=torch.float64, generator=generator) / 40**0.5
    rhs = torch.randn(40, dtype=torch.float64, generator=generator)
    settings = LinearSolveSettings(rtol=1e-13, restart=30)
    first = gmres(lambda v: matrix @ v, rhs, settings)[0]
    assert all(torch.equal(gmres(lambda v: matrix @ v, rhs.clone(), settings)[0], first) for _ in range(20))
    assert torch.allclose(matrix @ first, rhs, atol=1e-10)


# ----------------------------------------------------------------- fuzz
def random_structure(rng: np.random.Generator) -> Atoms:
    """1-6 H/O atoms: random positions (some pairs nearly on top of each other), open or periodic
    with a random (possibly skewed or tiny) cell, a random field and total charge."""
    count = int(rng.integers(1, 7))
    size = float(rng.uniform(0.5, 6.0))
    positions = rng.uniform(0.0, size, (count, 3))
    if count > 1 and rng.random() < 0.4:  # a near-collision
        direction = rng.normal(size=3)
        positions[1] = positions[0] + direction / np.linalg.norm(direction) * rng.uniform(0.02, 1.0)
    atoms = Atoms(rng.choice(["H", "O"], count).tolist(), positions=positions)
    if rng.random() < 0.5:
        atoms.cell = np.eye(3) * rng.uniform(1.0, 8.0) + rng.normal(scale=rng.choice([0.0, 0.5, 3.0]), size=(3, 3))
        atoms.pbc = True
    atoms.info["external_field"] = (rng.normal(size=3) * 10 ** rng.uniform(-3, 2)).tolist()
    atoms.info["total_charge"] = int(rng.integers(-2, 3))
    return atoms


def test_fuzz_every_call_returns_finite_numbers_or_an_fpscf_error(calc):
    rng = np.random.default_rng(2026)
    outcomes = {"finite": 0, "error": 0}
    for _ in range(60):
        atoms = random_structure(rng)
        atoms.calc = calc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                results = calc.get_properties(["energy", "forces", "charges", "dipole"], atoms)
            except FpscfError as error:
                one_line(error)
                outcomes["error"] += 1
                continue
        for name, value in results.items():
            assert np.all(np.isfinite(value)), (name, atoms.positions, atoms.cell, atoms.info)
        outcomes["finite"] += 1
    assert outcomes["finite"] > 5 and outcomes["error"] > 5, outcomes
