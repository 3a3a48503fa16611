"""Ctrl-C during ``fpscf train`` prints one line that says where training stopped and the command
that continues it, and ``--resume`` says which checkpoint and epoch it continues from."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from test_training import data_dir, write_config  # noqa: F401  (data_dir is a fixture)

from fpscf.training.config import load_config
from fpscf.training.trainer import Trainer, TrainingInterrupted

SCHEDULE = {0: {"name": "direct", "start": 0, "end": 39, "lr": 0.01,
                "loss": {"atomic_multipoles": 10.0, "energy_per_atom": 1.0, "forces": 1.0},
                "fixed_point_training_options": {"mode": "direct"}}}


@pytest.fixture(scope="module")
def config_path(data_dir):  # noqa: F811
    """40 direct epochs with a checkpoint after each, on the training tests' teacher data."""
    return write_config(data_dir, output_dir="run_ctrl_c", checkpoint_every=1, progress=True, train_schedule=SCHEDULE)


def test_ctrl_c_prints_one_line_with_the_resume_command(config_path):
    process = subprocess.Popen([sys.executable, "-m", "fpscf.cli", "train", "--config", str(config_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, OMP_NUM_THREADS="1"))
    checkpoint = config_path.parent / "run_ctrl_c" / "checkpoint.pt"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if checkpoint.exists() and torch.load(checkpoint, weights_only=True)["epoch"] >= 1:
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.05)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    lines = [line for line in err.splitlines() if "interrupted in epoch" in line]
    assert len(lines) == 1, err
    assert f"fpscf train --config {config_path} --resume" in lines[0]
    assert "checkpoint.pt holds epoch" in lines[0]


def test_resume_says_which_checkpoint_and_epoch(config_path, capsys):
    config = load_config(config_path)
    stop_at = 2

    def interrupt(epoch: int) -> None:
        if epoch == stop_at:
            raise KeyboardInterrupt

    trainer = Trainer(config)
    trainer.output_dir = config_path.parent / "run_inprocess"
    trainer.on_epoch_end = interrupt
    with pytest.raises(TrainingInterrupted) as caught:
        trainer.run()
    assert (caught.value.epoch, caught.value.checkpoint_epoch) == (stop_at + 1, stop_at + 1)
    capsys.readouterr()
    again = Trainer(config)
    again.output_dir = trainer.output_dir
    stop_at += 1
    again.on_epoch_end = interrupt
    with pytest.raises(TrainingInterrupted):
        again.run(resume=True)
    err = capsys.readouterr().err
    assert f"resumed from {trainer.output_dir / 'checkpoint.pt'}: epochs 1-3 done, continuing at epoch 4 of 40" in err
