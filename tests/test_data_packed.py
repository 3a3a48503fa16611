"""Packed data sets (``fpscf data pack``): the same graphs as the extxyz, read lazily (also in
worker processes), and training from them gives the run that training from the extxyz gives."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
import yaml

from fpscf import load_model
from fpscf.data.extxyz import load_dataset, write_extxyz
from fpscf.data.packed import PackedDataError, PackedDataset, pack_extxyz
from fpscf.datagen.synthetic import TEACHER_ARCHITECTURE, teacher_structures
from fpscf.training.batches import batch_group
from fpscf.training.config import load_config
from fpscf.training.trainer import Trainer

R_MAX = TEACHER_ARCHITECTURE["r_max"]
SCHEDULE = {0: {"name": "direct", "start": 0, "end": 1, "lr": 0.01,
                "loss": {"atomic_multipoles": 100.0, "energy_per_atom": 10.0, "forces": 10.0},
                "fixed_point_training_options": {"mode": "direct"}}}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("packed")
    structures = teacher_structures(12, seed=2)
    structures[3].info["external_field"] = [0.0, 0.02, -0.01]
    write_extxyz(directory / "train.xyz", structures[:9])
    write_extxyz(directory / "valid.xyz", structures[9:])
    return directory


def _assert_same_graph(a, b) -> None:
    for spec in dataclasses.fields(a):
        x, y = getattr(a, spec.name), getattr(b, spec.name)
        if isinstance(x, dict):
            assert x.keys() == y.keys(), spec.name
            for key in x:
                assert torch.equal(x[key], y[key]), (spec.name, key)
        elif x is None:
            assert y is None, spec.name
        else:
            assert torch.equal(x, y), spec.name


def test_packed_structures_are_the_graphs_of_the_extxyz_and_read_in_workers(data_dir):
    pack_extxyz(data_dir / "train.xyz", data_dir / "train_pack", R_MAX, shard_size=4)  # shards of 4, 4, 1
    packed = PackedDataset(data_dir / "train_pack", R_MAX)
    direct = load_dataset(data_dir / "train.xyz", R_MAX)
    index = json.loads((data_dir / "train_pack" / "index.json").read_text())
    assert [s["count"] for s in index["shards"]] == [4, 4, 1] and len(packed) == 9
    for k in range(len(direct)):
        _assert_same_graph(direct[k], packed[k])
    assert packed.batch_groups() == [batch_group(g, magnetic=False) for g in direct]
    view = packed.subset([8, 0])
    _assert_same_graph(view[0], direct[8])
    loader = torch.utils.data.DataLoader(packed, batch_size=None, num_workers=2)  # each worker opens the shards itself
    for k, graph in enumerate(loader):
        _assert_same_graph(graph, direct[k])


def test_a_pack_with_another_cutoff_is_refused_with_the_fix(data_dir):
    pack_extxyz(data_dir / "valid.xyz", data_dir / "valid_pack_other", R_MAX + 1.0)
    with pytest.raises(PackedDataError, match=r"pack it again with --r-max"):
        PackedDataset(data_dir / "valid_pack_other", R_MAX)
    with pytest.raises(PackedDataError, match="already holds"):
        pack_extxyz(data_dir / "valid.xyz", data_dir / "valid_pack_other", R_MAX)


def _config(directory, name: str, train: str, valid: str, **changes) -> object:
    config = {"train_file": train, "valid_file": valid, "output_dir": name, "seed": 3, "batch_size": 4,
              "progress": False, "plot": False,
              "model": dict(TEACHER_ARCHITECTURE, field_feature_norms="average", atomic_energies="average"),
              "train_schedule": SCHEDULE}
    config.update(changes)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_config(path)


def test_training_from_a_pack_gives_the_run_of_the_extxyz(data_dir):
    command = [sys.executable, "-m", "fpscf.cli", "data", "pack", str(data_dir / "valid.xyz"), str(data_dir / "valid_pack"),
               "--r-max", str(R_MAX), "--shard-size", "2"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    if not (data_dir / "train_pack").exists():
        pack_extxyz(data_dir / "train.xyz", data_dir / "train_pack", R_MAX, shard_size=4)
    torch.set_num_threads(1)
    plain = Trainer(_config(data_dir, "plain", "train.xyz", "valid.xyz")).run()
    packed = Trainer(_config(data_dir, "packed", "train_pack", "valid_pack", num_workers=2)).run()
    assert json.loads((plain.output_dir / "metrics.json").read_text()) == json.loads((packed.output_dir / "metrics.json").read_text())
    a, b = load_model(plain.final_model), load_model(packed.final_model)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    assert a.training_domain.to_dict() == b.training_domain.to_dict()
