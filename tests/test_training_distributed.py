"""Data-parallel training on 2 CPU processes (torchrun, gloo): the same loss curve and weights as one
process with the same global batch, a killed run resumed on another number of ranks, and a batch
whose SCF fails on one rank skipped on all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from fpscf import load_model
from fpscf.data.extxyz import write_extxyz
from fpscf.data.packed import pack_extxyz
from fpscf.datagen.synthetic import TEACHER_ARCHITECTURE, teacher_structures
from fpscf.training.config import load_config
from fpscf.training.distributed import DistributedSetupError
from fpscf.training.trainer import Trainer

HERE = Path(__file__).resolve().parent
SCF = {"num_scf_steps": 200, "mixing_parameter": 0.5, "scf_tolerance": 1e-12}
#: Two direct epochs, then one epoch of each SCF mode: the adjoint backward of implicit, backprop
#: through 30 unrolled steps, and the linearised solve run on each rank as in one process.
SCHEDULE = {
    0: {"name": "direct", "start": 0, "end": 1, "lr": 0.01,
        "loss": {"atomic_multipoles": 100.0, "energy_per_atom": 10.0, "forces": 10.0},
        "fixed_point_training_options": {"mode": "direct"}},
    1: {"name": "implicit", "start": 2, "end": 2, "lr": 0.001, "loss": {"energy_per_atom": 10.0, "forces": 10.0},
        "fixed_point_training_options": {"mode": "implicit", "scf": SCF}},
    2: {"name": "unroll", "start": 3, "end": 3, "lr": 0.001, "loss": {"energy_per_atom": 10.0, "forces": 10.0},
        "fixed_point_training_options": {"mode": "unroll_scf", "scf": dict(SCF, num_scf_steps=30)}},
    3: {"name": "linearize", "start": 4, "end": 4, "lr": 0.001, "loss": {"energy_per_atom": 10.0, "forces": 10.0},
        "fixed_point_training_options": {"mode": "linearize_solve", "scf": SCF}},
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """10 training structures (global batches of 3: rank 1's share of the last one is empty), 4 validation."""
    directory = tmp_path_factory.mktemp("distributed")
    structures = teacher_structures(14, seed=0)
    write_extxyz(directory / "train.xyz", structures[:10])
    write_extxyz(directory / "valid.xyz", structures[10:])
    return directory


def _config(directory: Path, output_dir: str, **changes) -> Path:
    config = {"train_file": "train.xyz", "valid_file": "valid.xyz", "output_dir": output_dir, "seed": 1, "batch_size": 3,
              "progress": False, "plot": False,
              "model": dict(TEACHER_ARCHITECTURE, field_feature_norms="average", atomic_energies="average"),
              "train_schedule": SCHEDULE}
    config.update(changes)
    path = directory / f"{output_dir}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _torchrun(arguments: list[str], **popen) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *arguments]
    env = dict(os.environ, OMP_NUM_THREADS="1", **popen.pop("env", {}))
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **popen)


def _finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, out + err
    return err


def _kill_with_workers(process: subprocess.Popen) -> None:
    """SIGKILL torchrun and the ranks it started (they run in sessions of their own), as a crash would."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    pending, found = [process.pid], []
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    for pid in reversed(found):  # workers first
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _metrics(output_dir: Path) -> dict[tuple, float]:
    rows = json.loads((output_dir / "metrics.json").read_text())
    return {(r["epoch"], r["split"], r["property"], r["count"]): (r["loss"] if r["property"] == "loss" else r["rmse"])
            for r in rows}


def _assert_same_run(a: Path, b: Path, rtol: float) -> None:
    ma, mb = _metrics(a), _metrics(b)
    assert ma.keys() == mb.keys()  # same epochs, properties and counts (every structure seen once)
    for key in ma:
        assert mb[key] == pytest.approx(ma[key], rel=rtol), key
    wa, wb = load_model(a / "final.fpscf").state_dict(), load_model(b / "final.fpscf").state_dict()
    for name in wa:
        if wa[name].is_floating_point():
            assert torch.allclose(wa[name], wb[name], rtol=rtol, atol=rtol * 1e-2), name


@pytest.fixture(scope="module")
def single_process(data_dir):
    torch.set_num_threads(1)
    return Trainer(load_config(_config(data_dir, "one"))).run().output_dir


def test_two_ranks_follow_the_loss_curve_of_one_process_with_the_same_global_batch(data_dir, single_process):
    err = _finish(_torchrun(["-m", "fpscf.train", "--config", str(_config(data_dir, "two")), "--distributed"]))
    assert "Traceback" not in err
    # Sums in another order and SCFs converged per share (to 1e-12) differ at round-off.
    _assert_same_run(single_process, data_dir / "two", rtol=1e-8)


@pytest.mark.slow
def test_a_run_killed_on_two_ranks_resumes_on_one_to_the_same_weights(data_dir, single_process):
    """Also from a packed training set read by a worker process per rank (fpscf data pack)."""
    pack_extxyz(data_dir / "train.xyz", data_dir / "train_pack", TEACHER_ARCHITECTURE["r_max"], shard_size=4)
    path = _config(data_dir, "killed", train_file="train_pack", num_workers=1)
    process = _torchrun(["-m", "fpscf.train", "--config", str(path)])
    checkpoint = data_dir / "killed" / "checkpoint.pt"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if checkpoint.exists() and torch.load(checkpoint, weights_only=True)["epoch"] >= 0:
            _kill_with_workers(process)
            break
        time.sleep(0.05)
    process.communicate(timeout=60)
    assert torch.load(checkpoint, weights_only=True)["epoch"] < 4, "the run finished before it could be killed"
    assert not (data_dir / "killed" / "final.fpscf").exists()
    Trainer(load_config(path)).run(resume=True)
    _assert_same_run(single_process, data_dir / "killed", rtol=1e-8)


@pytest.mark.slow
def test_a_batch_whose_scf_fails_on_one_rank_is_skipped_on_every_rank(data_dir):
    """Global batches of 2 (one structure per rank); rank 1's second training batch fails. The
    run must equal one process whose second batch fails, and the other rank must say why it skipped."""
    worker = str(HERE / "distributed_worker.py")
    two = _torchrun([worker, "--config", str(_config(data_dir, "fail_two", batch_size=2))],
                    env={"FAIL_RANK": "1", "FAIL_CALL": "2"})
    env = dict(os.environ, OMP_NUM_THREADS="1", FAIL_RANK="0", FAIL_CALL="2")
    one = subprocess.run([sys.executable, worker, "--config", str(_config(data_dir, "fail_one", batch_size=2))],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr
    err = _finish(two)
    assert "rank 1: epoch 1: SCF did not converge for a training batch of 1 structures" in err, err
    assert "rank 0: epoch 1: the SCF did not converge on another rank" in err, err
    assert "batch skipped (1 this epoch)" in one.stderr
    _assert_same_run(data_dir / "fail_one", data_dir / "fail_two", rtol=1e-8)


def test_distributed_outside_torchrun_is_a_one_line_error(data_dir, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(DistributedSetupError, match="torchrun --nproc_per_node N -m fpscf.train"):
        Trainer(load_config(_config(data_dir, "alone")), distributed_required=True).run()
