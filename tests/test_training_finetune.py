"""Fine-tuning the shipped water model: it starts from the parent's weights (frozen blocks stay
bit for bit), keeps its elements (a new one is refused), and the new model names its parent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from ase.io import read

from fpscf import load_model
from fpscf.data.extxyz import write_extxyz
from fpscf.model_io import read_header
from fpscf.models import shipped_model_path
from fpscf.training.config import load_config
from fpscf.training.trainer import Trainer, TrainingError

SUBSET = Path(__file__).resolve().parent / "data" / "water_b3lyp_test_subset.xyz"
STAGE = {0: {"name": "direct", "start": 0, "end": 0, "lr": 1.0e-3,
             "loss": {"atomic_multipoles": 100.0, "energy_per_atom": 1000.0, "forces": 10.0},
             "fixed_point_training_options": {"mode": "direct"}}}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("finetune")
    frames = read(SUBSET, ":")
    write_extxyz(directory / "train.xyz", frames[:4])
    write_extxyz(directory / "valid.xyz", frames[4:])
    return directory


def _config(directory: Path, name: str, **changes) -> Path:
    config = {"train_file": "train.xyz", "valid_file": "valid.xyz", "output_dir": name, "batch_size": 2,
              "progress": False, "plot": False, "train_schedule": STAGE}
    config.update(changes)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_finetune_from_the_cli_keeps_frozen_blocks_and_records_the_parent(data_dir):
    path = _config(data_dir, "tuned", finetune={"freeze": ["encoder"], "model": "water-b3lyp"})
    done = subprocess.run([sys.executable, "-m", "fpscf.cli", "train", "--config", str(path), "--finetune", "water-b3lyp"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    parent, tuned = load_model("water-b3lyp"), load_model(data_dir / "tuned" / "final.fpscf")
    changed = {name for name, value in tuned.state_dict().items()
               if value.is_floating_point() and not torch.equal(value, parent.state_dict()[name])}
    assert changed and not any(name.startswith("encoder.") for name in changed)  # trained, encoder frozen
    assert [int(z) for z in tuned.atomic_numbers] == [int(z) for z in parent.atomic_numbers]
    header = read_header(data_dir / "tuned" / "final.fpscf")
    assert header["parent"] == {"model": "water-b3lyp", "frozen": ["encoder"],
                                "weights_sha256": read_header(shipped_model_path("water-b3lyp"))["weights_sha256"]}
    assert tuned.parent["model"] == "water-b3lyp"
    card = (data_dir / "tuned" / "model_card.md").read_text()
    assert "parent: `water-b3lyp`" in card and "frozen blocks: encoder" in card


def test_finetuning_starts_from_the_parents_weights(data_dir):
    """With a vanishing learning rate the run changes nothing: the first step is taken from the parent."""
    config = load_config(_config(data_dir, "still", finetune="water-b3lyp",
                                 train_schedule={0: dict(STAGE[0], lr=1e-30)}))
    result = Trainer(config).run()
    parent, tuned = load_model("water-b3lyp").state_dict(), load_model(result.final_model).state_dict()
    for name, value in tuned.items():
        assert torch.allclose(value, parent[name], rtol=0, atol=1e-20), name


def test_finetuning_refuses_new_elements_other_architectures_and_unknown_blocks(data_dir):
    frames = read(SUBSET, ":")
    frames[0].numbers[0] = 6  # a carbon the parent does not know
    write_extxyz(data_dir / "carbon.xyz", frames[:4])
    with pytest.raises(TrainingError, match=r"knows elements \[1, 8\] but the training data hold \[6\]"):
        Trainer(load_config(_config(data_dir, "carbon", train_file="carbon.xyz", finetune="water-b3lyp"))).run()
    with pytest.raises(TrainingError, match=r"model.num_channels = 8 but finetune.model 'water-b3lyp' has 24"):
        Trainer(load_config(_config(data_dir, "wide", model={"num_channels": 8}, finetune="water-b3lyp"))).run()
    with pytest.raises(TrainingError, match=r"finetune.freeze names \['encoderr'\].*choose from \[.*'encoder'"):
        Trainer(load_config(_config(data_dir, "typo", finetune={"model": "water-b3lyp", "freeze": ["encoderr"]}))).run()
