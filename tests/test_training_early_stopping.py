"""Early stopping: a stage whose validation loss stops falling ends early, training goes on with
the next stage at its planned start, and a run interrupted right after the stop resumes there."""

from __future__ import annotations

import json

import pytest
import torch
from test_training import data_dir, write_config  # noqa: F401  (data_dir is a fixture)

from fpscf import load_model
from fpscf.training.config import load_config
from fpscf.training.trainer import Trainer, TrainingInterrupted

# A vanishing learning rate leaves the validation loss where it is: with patience 1 each stage
# stops after its second epoch (no lower loss than the first), whatever the data.
FROZEN = 1e-30
SCHEDULE = {
    0: {"name": "first", "start": 0, "end": 5, "lr": FROZEN, "loss": {"atomic_multipoles": 10.0, "energy_per_atom": 1.0},
        "fixed_point_training_options": {"mode": "direct"}},
    1: {"name": "second", "start": 6, "end": 9, "lr": FROZEN, "loss": {"energy_per_atom": 1.0, "forces": 1.0},
        "fixed_point_training_options": {"mode": "direct"}},
}


def _epochs(output_dir) -> dict[str, list[int]]:
    rows = json.loads((output_dir / "metrics.json").read_text())
    epochs: dict[str, list[int]] = {}
    for row in rows:
        if row["split"] == "valid" and row["property"] == "loss":
            epochs.setdefault(row["stage"], []).append(row["epoch"])
    return epochs


def test_a_stalled_stage_ends_early_and_the_next_starts_on_time(data_dir, capsys):  # noqa: F811
    config = load_config(write_config(data_dir, output_dir="early", early_stopping_patience=1, train_schedule=SCHEDULE,
                                      progress=True))
    result = Trainer(config).run()
    assert _epochs(result.output_dir) == {"first": [0, 1], "second": [6, 7]}
    err = capsys.readouterr().err
    assert "early stopping: stage 'first' has not lowered its validation loss for 1 epochs; it ends at epoch 2 (planned 6)" in err
    assert torch.load(result.output_dir / "checkpoint.pt", weights_only=True)["epoch"] == 9


@pytest.mark.slow
def test_a_run_interrupted_after_an_early_stop_resumes_at_the_next_stage(data_dir, capsys):  # noqa: F811
    path = write_config(data_dir, output_dir="early_killed", early_stopping_patience=1, train_schedule=SCHEDULE)
    whole = Trainer(load_config(write_config(data_dir, output_dir="early_whole", early_stopping_patience=1,
                                             train_schedule=SCHEDULE))).run()

    def interrupt(epoch: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    trainer = Trainer(load_config(path), on_epoch_end=interrupt)
    with pytest.raises(TrainingInterrupted):
        trainer.run()
    assert torch.load(data_dir / "early_killed" / "checkpoint.pt", weights_only=True)["epoch"] == 5  # stage 0 done
    capsys.readouterr()
    resumed = Trainer(load_config(path)).run(resume=True)
    assert _epochs(resumed.output_dir) == _epochs(whole.output_dir)
    a, b = load_model(whole.final_model).state_dict(), load_model(resumed.final_model).state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name
