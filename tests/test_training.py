"""Training: the four fixed-point modes give the gradients they should, a two-stage run learns,
a killed run resumes to the same weights, and bad input fails before training starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase.build import molecule

from fpscf import FixedPointCalculator, build_model, load_model
from fpscf.data import atoms_to_graph, collate
from fpscf.data.extxyz import write_extxyz
from fpscf.datagen.synthetic import TEACHER_ARCHITECTURE as ARCHITECTURE
from fpscf.datagen.synthetic import teacher_structures
from fpscf.training.config import FixedPointOptions, SCFOptions, load_config
from fpscf.training.forward import predict
from fpscf.training.losses import compute_losses
from fpscf.training.trainer import Trainer, TrainingError


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    structures = teacher_structures(16, seed=0)
    write_extxyz(directory / "train.xyz", structures[:12])
    write_extxyz(directory / "valid.xyz", structures[12:])
    return directory


def write_config(directory: Path, **changes) -> Path:
    config = {
        "train_file": "train.xyz", "valid_file": "valid.xyz", "output_dir": "run", "seed": 1, "batch_size": 4,
        "progress": False,
        "model": dict(ARCHITECTURE, field_feature_norms="average", atomic_energies="average"),
        "train_schedule": {
            0: {"name": "direct", "start": 0, "end": 5, "lr": 0.01,
                "loss": {"atomic_multipoles": 100.0, "energy_per_atom": 10.0, "forces": 10.0, "dipole_per_atom": 10.0},
                "fixed_point_training_options": {"mode": "direct"}},
            1: {"name": "solve", "start": 6, "end": 8, "lr": 0.001,
                "loss": {"energy_per_atom": 10.0, "forces": 10.0, "dipole_per_atom": 10.0},
                "fixed_point_training_options": {"mode": "linearize_solve", "scf": {"num_scf_steps": 100, "mixing_parameter": 0.5, "scf_tolerance": 1e-9}}},
        },
    }
    config.update(changes)
    path = directory / f"config_{abs(hash(str(changes))) % 10**8}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def parameter_gradient(model, graph, options, losses) -> torch.Tensor:
    model.zero_grad()
    out = predict(model, graph, options, set(losses), training=True)
    total, _ = compute_losses(out, graph, losses)
    total.backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("update", ["MLPNonLinearity", "ManyBodyUpdate"])
def test_implicit_linearize_solve_and_converged_unroll_give_the_same_parameter_gradient(data_dir, update):
    config = dict(ARCHITECTURE)
    config["fixedpoint_update_config"] = (
        {"type": "ManyBodyUpdate", "nonlinearity_cls": "MLPNonLinearity"} if update == "ManyBodyUpdate" else {"nonlinearity_cls": update}
    )
    model = build_model([1, 8], seed=7, **config)
    atoms = teacher_structures(1, seed=3)[0]
    graph = collate([atoms_to_graph(atoms, 3.5, species=[1, 8])])
    losses = {"energy_per_atom": 1.0, "forces": 1.0, "atomic_multipoles": 1.0, "dipole_per_atom": 1.0}
    scf = dict(num_scf_steps=300, mixing_parameter=0.5, scf_tolerance=1e-13)
    implicit = parameter_gradient(model, graph, FixedPointOptions("implicit", SCFOptions(**scf)), losses)
    linearized = parameter_gradient(model, graph, FixedPointOptions("linearize_solve", SCFOptions(**scf)), losses)
    unrolled = parameter_gradient(model, graph, FixedPointOptions("unroll_scf", SCFOptions(**dict(scf, num_scf_steps=40, mixing_parameter=1.0))), losses)
    scale = implicit.norm()
    assert float((linearized - implicit).norm() / scale) < 1e-5
    assert float((unrolled - implicit).norm() / scale) < 1e-5


def test_direct_mode_is_one_update_from_the_reference_density(data_dir):
    model = build_model([1, 8], seed=7, **ARCHITECTURE)
    atoms = teacher_structures(1, seed=4)[0]
    atoms.info["external_field"] = [0.01, 0.02, -0.03]
    graph = collate([atoms_to_graph(atoms, 3.5, species=[1, 8])])
    # Reference = the model's own converged density: one update must return it unchanged.
    converged = model(graph, settings=__import__("fpscf").scf.settings.SCFSettings(scf_tolerance=1e-12))
    graph.labels["atomic_multipoles"] = converged["multipoles"].detach()
    graph.labels["fermi_level"] = converged["fermi_level"].detach()
    direct = predict(model, graph, FixedPointOptions("direct", None), {"energy_per_atom"}, training=False)
    assert torch.allclose(direct["multipoles"], converged["multipoles"], atol=1e-9)
    assert float(direct["energy"]) == pytest.approx(float(converged["energy"]), abs=1e-8)
    # From any other reference it is exactly G(p_ref, μ_ref).
    p_ref = converged["multipoles"].detach() + 0.01
    graph.labels["atomic_multipoles"] = p_ref
    direct = predict(model, graph, FixedPointOptions("direct", None), {"energy_per_atom"}, training=False)
    expected = converged["scf_map"](p_ref, converged["fermi_level"].detach())
    assert torch.allclose(direct["multipoles"], expected, atol=1e-12)


def test_two_stage_training_lowers_validation_errors_and_writes_outputs(data_dir):
    config = load_config(write_config(data_dir))
    result = Trainer(config).run()
    import json

    rows = json.loads((result.output_dir / "metrics.json").read_text())
    for prop in ("energy_per_atom", "forces"):  # the direct stage: large, steady improvements
        rmse = {r["epoch"]: r["rmse"] for r in rows if r["stage"] == "direct" and r["split"] == "valid" and r["property"] == prop}
        assert rmse[5] < rmse[0], ("direct", prop, rmse)
    # The short SCF stage fine-tunes: its weighted validation loss goes down (single properties may trade off).
    loss = {r["epoch"]: r["loss"] for r in rows if r["stage"] == "solve" and r["split"] == "valid" and r["property"] == "loss"}
    assert loss[8] < loss[6], loss
    for name in ("best.fpscf", "final.fpscf", "metrics.csv", "learning_curves.png", "parity_direct.png", "parity_solve.png", "config.yaml"):
        assert (result.output_dir / name).stat().st_size > 0
    model = load_model(result.final_model)
    atoms = molecule("H2O")
    atoms.calc = FixedPointCalculator(model)
    assert np.isfinite(atoms.get_potential_energy())
    norms = model.config.field_feature_norms
    assert isinstance(norms, (list, tuple)) and all(v > 0 for v in norms)


def test_resume_after_kill_gives_the_same_weights_as_an_uninterrupted_run(data_dir):
    schedule = {0: {"name": "direct", "start": 0, "end": 5, "lr": 0.01, "loss": {"atomic_multipoles": 10.0, "energy_per_atom": 1.0, "forces": 1.0},
                    "fixed_point_training_options": {"mode": "direct"}}}
    whole = load_config(write_config(data_dir, output_dir="whole", train_schedule=schedule))
    reference = Trainer(whole).run()
    killed_path = write_config(data_dir, output_dir="killed", train_schedule=schedule)
    # Bitwise equality needs the same reduction order: the same number of threads in both processes.
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    process = subprocess.Popen([sys.executable, "-m", "fpscf.train", "--config", str(killed_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    checkpoint = data_dir / "killed" / "checkpoint.pt"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if checkpoint.exists():
            epoch = torch.load(checkpoint, weights_only=True)["epoch"]
            if epoch >= 1:
                process.send_signal(signal.SIGKILL)
                break
        time.sleep(0.05)
    process.wait()
    state = torch.load(checkpoint, weights_only=True)
    assert state["epoch"] < 5, "the run finished before it could be killed"
    with pytest.raises(TrainingError, match="--resume"):
        Trainer(load_config(killed_path)).run()
    resumed = Trainer(load_config(killed_path)).run(resume=True)
    a, b = load_model(reference.final_model), load_model(resumed.final_model)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_a_loss_whose_label_is_absent_everywhere_fails_before_training(data_dir):
    schedule = {0: {"name": "bad", "start": 0, "end": 1, "lr": 0.01, "loss": {"polarizability": 1.0, "energy_per_atom": 1.0},
                    "fixed_point_training_options": {"mode": "direct"}}}
    config = load_config(write_config(data_dir, output_dir="bad", train_schedule=schedule))
    with pytest.raises(TrainingError, match="polarizability.*no training structure"):
        Trainer(config).run()


def test_cli_train_reports_a_bad_key_with_the_valid_choices(data_dir):
    path = write_config(data_dir, output_dir="cli", batch_sise=3)
    completed = subprocess.run([sys.executable, "-m", "fpscf.train", "--config", str(path)], capture_output=True, text=True)
    assert completed.returncode == 2
    assert "batch_sise" in completed.stderr and "batch_size" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_example_config_in_the_repository_is_valid(tmp_path):
    source = Path(__file__).resolve().parents[1] / "examples" / "training" / "config.yaml"
    (tmp_path / "data").mkdir()
    for name in ("train.xyz", "valid.xyz"):
        (tmp_path / "data" / name).write_text("")
    target = tmp_path / "config.yaml"
    target.write_text(source.read_text())
    config = load_config(target, ["--num_channels=4"])
    assert [s.fixed_point_training_options.mode for s in config.train_schedule] == ["direct", "implicit"]
    assert config.model["num_channels"] == 4


def test_average_feature_norms_without_reference_multipoles_is_a_clear_error(data_dir, tmp_path):
    from ase.io import read

    from fpscf.training.statistics import StatisticsError

    frames = read(data_dir / "train.xyz", ":")
    for atoms in frames:
        del atoms.arrays["atomic_multipoles"]
    write_extxyz(tmp_path / "train.xyz", frames)
    write_extxyz(tmp_path / "valid.xyz", frames[:2])
    schedule = {0: {"name": "s", "start": 0, "end": 0, "lr": 0.01, "loss": {"energy_per_atom": 1.0},
                    "fixed_point_training_options": {"mode": "implicit", "scf": {"num_scf_steps": 50, "mixing_parameter": 0.5}}}}
    config = load_config(write_config(tmp_path, train_schedule=schedule))
    with pytest.raises(StatisticsError, match="field_feature_norms.*none of the"):
        Trainer(config).run()


def _scf_stage(num_scf_steps: int) -> dict:
    return {0: {"name": "scf", "start": 0, "end": 1, "lr": 0.003, "loss": {"energy_per_atom": 10.0, "forces": 10.0},
                "fixed_point_training_options": {"mode": "implicit", "scf": {
                    "num_scf_steps": num_scf_steps, "mixing_parameter": 0.5, "scf_tolerance": 1e-12}}}}


def test_a_batch_whose_scf_fails_is_skipped_with_a_warning(data_dir, monkeypatch, capsys):
    """One failing batch per epoch is skipped (no step on it) and named; the run goes on."""
    import fpscf.training.epochs as trainer_module
    from fpscf.scf.solver import SCFConvergenceError

    calls = {"n": 0}
    real_predict = trainer_module.predict

    def flaky_predict(model, batch, options, losses, training):
        calls["n"] += 1
        if training and calls["n"] % 3 == 1 and calls["n"] < 4:
            raise SCFConvergenceError("SCF did not converge (test)", [1e-1, 1e-3, 2e-4])
        return real_predict(model, batch, options, losses, training=training)

    monkeypatch.setattr(trainer_module, "predict", flaky_predict)
    config = load_config(write_config(data_dir, output_dir="run_flaky", batch_size=1, train_schedule=_scf_stage(100)))
    result = Trainer(config).run()
    assert result.final_model.is_file()
    err = capsys.readouterr().err
    assert "SCF did not converge for a training batch of" in err and "batch skipped" in err and "last 2.00e-04" in err


def test_training_stops_with_a_clear_error_when_the_scf_fails_for_most_batches(data_dir):
    from fpscf.training.trainer import SCFTrainingError

    config = load_config(write_config(data_dir, output_dir="run_failing", train_schedule=_scf_stage(2)))
    with pytest.raises(SCFTrainingError, match=r"did not converge for 3 of 3 training batches.*--resume"):
        Trainer(config).run()
