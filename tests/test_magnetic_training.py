"""Magnetic labels and training (issue H): time-reversal augmentation flips exactly the odd
quantities, the magnetic losses compute the right numbers, constrained-moment structures are
held at their labels, and magnetic options fail before training when the model cannot use them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fpscf.units import BOHR_MAGNETON
from ase.build import molecule

from fpscf.data import LABEL_NAMES, atoms_to_graph, collate
from fpscf.data.graph import AtomicGraph
from fpscf.training.augmentation import (
    TIME_REVERSAL_EVEN_LABELS,
    TIME_REVERSAL_ODD_LABELS,
    changes_under_time_reversal,
    time_reversal_partners,
    time_reversed,
)
from fpscf.training.config import ConfigError, TrainingConfig
from fpscf.training.forward import constrain_moments
from fpscf.training.losses import compute_losses

R_MAX = 3.0
ODD_LABELS = ("magmoms", "magnetic_moment", "noncollinear_magnetic_forces")


def _magnetic_water(seed: int, *, field=(1.0, -2.0, 3.0), constrained: bool = True, collinear: bool = False):
    """H2O with every label kind, a field and initial moments (random numbers, fixed by ``seed``)."""
    rng = np.random.default_rng(seed)
    atoms = molecule("H2O")
    atoms.positions += rng.normal(0.0, 0.02, atoms.positions.shape)
    n = len(atoms)
    atoms.info.update(
        energy=-14.0 + rng.normal(), dipole=rng.normal(size=3), polarizability=rng.normal(size=(3, 3)),
        fermi_level=-3.0, magnetic_field=np.asarray(field, float), external_field=rng.normal(0, 0.01, 3),
        magnetic_moment=rng.normal(size=3), magnetic_susceptibility=1e-7 * rng.normal(size=(3, 3)), spin_on=True,
        magmoms_weight=2.0,
    )
    atoms.arrays.update(
        forces=rng.normal(size=(n, 3)), charges=rng.normal(size=n), atomic_multipoles=rng.normal(size=(n, 4)),
        born_effective_charges=rng.normal(size=(n, 9)), esps=rng.normal(size=n),
        magmoms=rng.normal(size=n) if collinear else rng.normal(size=(n, 3)),
    )
    if constrained:
        atoms.arrays["noncollinear_magnetic_forces"] = rng.normal(size=(n, 3))
    if collinear:
        atoms.set_initial_magnetic_moments(rng.normal(size=n))
    else:
        atoms.arrays["initial_noncollinear_magmoms"] = rng.normal(size=(n, 3))
    return atoms


def _graph(atoms) -> AtomicGraph:
    return atoms_to_graph(atoms, R_MAX)


def _assert_same_graph(a: AtomicGraph, b: AtomicGraph) -> None:
    for f in dataclasses.fields(AtomicGraph):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, dict):
            assert x.keys() == y.keys(), f.name
            for key in x:
                assert torch.equal(x[key], y[key]), (f.name, key)
        elif x is None or y is None:
            assert x is None and y is None, f.name
        else:
            assert torch.equal(x, y), f.name


# ----------------------------------------------------------------------------- time reversal


def test_every_label_has_a_time_reversal_parity():
    assert TIME_REVERSAL_ODD_LABELS | TIME_REVERSAL_EVEN_LABELS == set(LABEL_NAMES)
    assert not TIME_REVERSAL_ODD_LABELS & TIME_REVERSAL_EVEN_LABELS
    assert TIME_REVERSAL_ODD_LABELS == set(ODD_LABELS)
    assert {"magnetic_susceptibility", "polarizability", "energy", "forces", "dipole"} <= TIME_REVERSAL_EVEN_LABELS


def test_time_reversal_flips_exactly_the_odd_quantities_and_is_an_involution():
    graph = collate([_graph(_magnetic_water(0)), _graph(_magnetic_water(1, field=(0.0, 0.0, 0.0)))])
    reversed_ = time_reversed(graph)
    assert torch.equal(reversed_.magnetic_field, -graph.magnetic_field)
    assert torch.equal(reversed_.initial_magmoms, -graph.initial_magmoms)
    for name in LABEL_NAMES:
        expected = -graph.labels[name] if name in ODD_LABELS else graph.labels[name]
        assert torch.equal(reversed_.labels[name], expected), name
        assert torch.equal(reversed_.label_masks[name], graph.label_masks[name]), name
    for name in ("positions", "cell", "external_field", "total_charge", "spin_on", "edge_index", "unit_shifts"):
        assert torch.equal(getattr(reversed_, name), getattr(graph, name)), name
    assert reversed_.weights.keys() == graph.weights.keys()
    assert all(torch.equal(reversed_.weights[k], graph.weights[k]) for k in graph.weights)
    _assert_same_graph(time_reversed(reversed_), graph)


def test_collinear_moments_along_the_field_axis_flip_only_without_a_field():
    """s along n̂ = B/|B|: T flips the moment and, in a field, the axis, so s changes sign only at B = 0."""
    no_field = _graph(_magnetic_water(2, field=(0.0, 0.0, 0.0), collinear=True, constrained=False))
    in_field = _graph(_magnetic_water(3, field=(0.0, 0.5, -2.0), collinear=True, constrained=False))
    graph = collate([no_field, in_field])
    n = no_field.num_atoms
    sign = torch.tensor([-1.0] * n + [1.0] * in_field.num_atoms, dtype=torch.float64)
    for collinear in (True, False):
        reversed_ = time_reversed(graph, collinear=collinear)
        assert torch.equal(reversed_.labels["magmoms"], sign * graph.labels["magmoms"])
        assert torch.equal(reversed_.labels["magnetic_moment"], -graph.labels["magnetic_moment"])
        expected_initial = sign[:, None] * graph.initial_magmoms if collinear else -graph.initial_magmoms
        assert torch.equal(reversed_.initial_magmoms, expected_initial)
        _assert_same_graph(time_reversed(reversed_, collinear=collinear), graph)


def test_only_structures_that_time_reversal_changes_get_a_copy():
    plain = molecule("H2O")
    spin_on_only = molecule("H2O")
    spin_on_only.info["spin_on"] = True  # no field, no moments: its own time-reversed copy
    zero_moments = molecule("H2O")
    zero_moments.arrays["magmoms"] = np.zeros(3)
    moments = molecule("H2O")
    moments.arrays["magmoms"] = np.array([0.0, 0.0, 1.0])
    field = molecule("H2O")
    field.info["magnetic_field"] = np.array([0.0, 0.0, 1.0])
    initial = molecule("H2O")
    initial.set_initial_magnetic_moments([0.0, 0.5, 0.0])
    total = molecule("H2O")
    total.info["magnetic_moment"] = 2.0
    graphs = [_graph(a) for a in (plain, spin_on_only, zero_moments, moments, field, initial, total)]
    expected = [False, False, False, True, True, True, True]
    assert changes_under_time_reversal(collate(graphs)).tolist() == expected
    partners = time_reversal_partners(graphs)
    assert sorted(partners) == [k for k, e in enumerate(expected) if e]
    _assert_same_graph(partners[3], time_reversed(graphs[3]))


def test_a_label_of_unknown_time_reversal_parity_is_an_error():
    graph = _graph(_magnetic_water(4))
    odd = dataclasses.replace(
        graph, labels={**graph.labels, "spin_current": torch.zeros(1, 3, dtype=torch.float64)},
        label_masks={**graph.label_masks, "spin_current": torch.ones(1, dtype=torch.bool)},
    )
    with pytest.raises(ValueError, match=r"\['spin_current'\].*TIME_REVERSAL_ODD_LABELS"):
        time_reversed(odd)


# ----------------------------------------------------------------------------- labels


def test_a_collinear_total_moment_is_stored_along_the_field_axis():
    atoms = molecule("H2O")
    atoms.info.update(magnetic_moment=2.0, magnetic_field=[0.0, 3.0, -4.0])
    assert np.allclose(_graph(atoms).labels["magnetic_moment"][0].numpy(), [0.0, 1.2, -1.6])
    atoms.info["magnetic_field"] = [0.0, 0.0, 0.0]
    assert _graph(atoms).labels["magnetic_moment"][0].tolist() == [0.0, 0.0, 2.0]


def test_magnetic_labels_of_the_wrong_shape_name_the_key():
    atoms = molecule("H2O")
    atoms.arrays["noncollinear_magnetic_forces"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"'noncollinear_magnetic_forces'.*shape \(3,\), expected \(3, 3\)"):
        _graph(atoms)
    atoms = molecule("H2O")
    atoms.info["magnetic_susceptibility"] = np.zeros(4)
    with pytest.raises(ValueError, match=r"'magnetic_susceptibility'.*expected \(3, 3\) or \(9,\)"):
        _graph(atoms)


# ----------------------------------------------------------------------------- losses


def _two_structures(collinear: bool = False) -> AtomicGraph:
    """Structure 0 relaxes its moments; structure 1 is a constrained-moment calculation."""
    relaxed = _magnetic_water(5, constrained=False, collinear=collinear)
    constrained = _magnetic_water(6, constrained=True, collinear=collinear)
    constrained.info["noncollinear_magnetic_forces_weight"] = 3.0
    return collate([_graph(relaxed), _graph(constrained)])


def _predictions(graph: AtomicGraph, seed: int, collinear: bool = False) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    n, b = graph.num_atoms, graph.num_graphs
    t = lambda *shape: torch.tensor(rng.normal(size=shape))  # noqa: E731
    return {
        "magmoms": t(n) if collinear else t(n, 3), "magnetic_moment": t(b, 3), "magnetic_forces": t(n, 3),
        "magnetic_susceptibility": t(b, 3, 3),
    }


def test_magnetic_losses_are_weighted_mean_squared_errors_over_labelled_rows():
    graph = _two_structures()
    out = _predictions(graph, 0)
    weights = {"magmoms": 1.0, "magnetic_moment_per_atom": 10.0, "noncollinear_magnetic_forces": 0.1,
               "magnetic_susceptibility": 0.01}
    total, terms = compute_losses(out, graph, weights)
    labels = {name: graph.labels[name].numpy() for name in graph.labels}
    pred = {name: value.numpy() for name, value in out.items()}
    # magmoms: only the relaxed structure (atoms 0..2), its weight 2 (magmoms_weight)
    expected_magmoms = 2.0 * np.mean((pred["magmoms"][:3] - labels["magmoms"][:3]) ** 2)
    expected_moment = np.mean(((pred["magnetic_moment"] - labels["magnetic_moment"]) / 3.0) ** 2)
    # magnetic forces: only the constrained structure (atoms 3..5), its weight 3
    expected_forces = 3.0 * np.mean((pred["magnetic_forces"][3:] - labels["noncollinear_magnetic_forces"][3:]) ** 2)
    # susceptibility errors in μ_B/T
    expected_chi = np.mean(((pred["magnetic_susceptibility"] - labels["magnetic_susceptibility"]) / BOHR_MAGNETON) ** 2)
    expected = {"magmoms": expected_magmoms, "magnetic_moment_per_atom": expected_moment,
                "noncollinear_magnetic_forces": expected_forces, "magnetic_susceptibility": expected_chi}
    for name, value in expected.items():
        assert float(terms[name].value) == pytest.approx(value, rel=1e-12), name
    assert float(total) == pytest.approx(sum(weights[k] * v for k, v in expected.items()), rel=1e-12)
    assert terms["magmoms"].errors.shape == (3, 3)  # the relaxed structure's atoms only
    assert terms["noncollinear_magnetic_forces"].errors.shape == (3, 3)
    assert terms["magnetic_moment_per_atom"].errors.shape == (2, 3)


def test_collinear_magmoms_loss_compares_scalars():
    graph = _two_structures(collinear=True)
    graph = dataclasses.replace(graph, label_masks={**graph.label_masks,
                                                    "noncollinear_magnetic_forces": torch.tensor([False, False])})
    out = _predictions(graph, 1, collinear=True)
    _, terms = compute_losses(out, graph, {"magmoms": 1.0})
    error = out["magmoms"] - graph.labels["magmoms"]
    weight = graph.weights["magmoms"][graph.batch]
    assert float(terms["magmoms"].value) == pytest.approx(float((weight * error**2).mean()), rel=1e-12)


@pytest.mark.parametrize(("collinear_labels", "wanted"), [(False, "noncollinear"), (True, "collinear")])
def test_collinear_and_noncollinear_moments_cannot_be_compared(collinear_labels, wanted):
    graph = _two_structures(collinear=collinear_labels)
    out = _predictions(graph, 2, collinear=not collinear_labels)
    with pytest.raises(ValueError, match=f"magnetic_moments: {wanted}"):
        compute_losses(out, graph, {"magmoms": 1.0})


def test_collinear_magnetic_forces_against_noncollinear_labels_name_the_option():
    graph = _two_structures()
    out = _predictions(graph, 3)
    out["magnetic_forces"] = out["magnetic_forces"][:, 2]
    with pytest.raises(ValueError, match="magnetic_moments: noncollinear"):
        compute_losses(out, graph, {"noncollinear_magnetic_forces": 1.0})


@pytest.mark.parametrize("loss", ["magmoms", "magnetic_moment_per_atom", "noncollinear_magnetic_forces",
                                  "magnetic_susceptibility"])
def test_a_magnetic_loss_without_magnetic_outputs_names_the_model_option(loss):
    graph = _two_structures()
    with pytest.raises(ValueError, match=r"magnetic_moments: collinear\|noncollinear"):
        compute_losses({"energy": torch.zeros(2)}, graph, {loss: 1.0})


# ----------------------------------------------------------------------------- constrained moments


def test_constrained_structures_start_and_stay_at_their_magmoms_labels():
    graph = _two_structures()
    constrained, fixed = constrain_moments(graph)
    assert fixed.tolist() == [False, True]
    assert torch.equal(constrained.initial_magmoms[:3], graph.initial_magmoms[:3])  # relaxed: untouched
    assert torch.equal(constrained.initial_magmoms[3:], graph.labels["magmoms"][3:])
    unconstrained = collate([_graph(_magnetic_water(7, constrained=False))])
    same, fixed = constrain_moments(unconstrained)
    assert same is unconstrained and not fixed.any()


def test_collinear_constrained_moments_are_z_columns_for_collinear_models_and_vectors_along_the_field_otherwise():
    graph = collate([_graph(_magnetic_water(8, field=(0.0, 3.0, 4.0), collinear=True))])
    s = graph.labels["magmoms"]
    collinear, _ = constrain_moments(graph, collinear=True)
    assert torch.equal(collinear.initial_magmoms, torch.stack([0 * s, 0 * s, s], dim=1))
    vectors, _ = constrain_moments(graph, collinear=False)
    assert torch.allclose(vectors.initial_magmoms, s[:, None] * torch.tensor([0.0, 0.6, 0.8], dtype=torch.float64))


def test_magnetic_forces_without_constrained_moments_are_an_error():
    atoms = _magnetic_water(9)
    del atoms.arrays["magmoms"]
    with pytest.raises(ValueError, match=r"structures \[0\].*no magmoms label"):
        constrain_moments(collate([_graph(atoms)]))


def test_relaxed_structures_without_initial_moments_start_where_the_model_would():
    from fpscf.scf.magnetic import DEFAULT_START_MOMENT

    constrained = _magnetic_water(34)
    relaxed = _magnetic_water(35, field=(0.0, 0.0, -2.0), constrained=False)
    for atoms in (constrained, relaxed):
        del atoms.arrays["initial_noncollinear_magmoms"]
    graph = collate([_graph(constrained), _graph(relaxed)])
    assert graph.initial_magmoms is None
    started, _ = constrain_moments(graph)
    assert torch.equal(started.initial_magmoms[:3], graph.labels["magmoms"][:3])
    assert started.initial_magmoms[3:].tolist() == [[0.0, 0.0, -DEFAULT_START_MOMENT]] * 3  # along B


# ----------------------------------------------------------------------------- config


def _config(tmp_path: Path, loss: dict[str, float], **top: Any) -> dict[str, Any]:
    (tmp_path / "train.xyz").write_text("dummy\n")
    return {
        "train_file": "train.xyz", **top,
        "train_schedule": {0: {"start": 0, "end": 1, "lr": 0.01, "loss": loss,
                               "fixed_point_training_options": {"mode": "direct"}}},
    }


def test_magnetic_losses_and_time_reversal_parse_with_a_magnetic_model(tmp_path):
    loss = {"energy_per_atom": 1.0, "magmoms": 1.0, "magnetic_moment_per_atom": 1.0,
            "noncollinear_magnetic_forces": 1.0, "magnetic_susceptibility": 1.0}
    data = _config(tmp_path, loss, model={"magnetic_moments": "noncollinear"}, time_reversal_augmentation=True)
    config = TrainingConfig.from_dict(data, base_dir=tmp_path)
    assert config.time_reversal_augmentation and config.train_schedule[0].loss == loss
    assert TrainingConfig.from_dict(config.to_dict()) == config
    default = TrainingConfig.from_dict(_config(tmp_path, {"forces": 1.0}), base_dir=tmp_path)
    assert default.time_reversal_augmentation is False


@pytest.mark.parametrize("loss", ["magmoms", "magnetic_moment_per_atom", "noncollinear_magnetic_forces",
                                  "magnetic_susceptibility"])
def test_a_magnetic_loss_with_a_nonmagnetic_model_fails_before_training(tmp_path, loss):
    data = _config(tmp_path, {"energy_per_atom": 1.0, loss: 1.0})
    with pytest.raises(ConfigError, match=rf"train_schedule\.0\.loss\.{loss}.*magnetic_moments: collinear\|noncollinear"):
        TrainingConfig.from_dict(data, base_dir=tmp_path)
    # weight 0 switches the loss off: nothing to check
    TrainingConfig.from_dict(_config(tmp_path, {"energy_per_atom": 1.0, loss: 0.0}), base_dir=tmp_path)


def test_magnetic_forces_loss_needs_noncollinear_moments(tmp_path):
    data = _config(tmp_path, {"noncollinear_magnetic_forces": 1.0}, model={"magnetic_moments": "collinear"})
    with pytest.raises(ConfigError, match="magnetic_moments: noncollinear"):
        TrainingConfig.from_dict(data, base_dir=tmp_path)


@pytest.mark.parametrize(("top", "expected"), [
    ({"time_reversal_augmentation": "yes"}, "time_reversal_augmentation = 'yes' is not valid: expected true or false"),
    ({"time_reversal_augmentaton": True}, "Did you mean 'time_reversal_augmentation'"),
    ({"time_reversal_augmentation": True}, r"time_reversal_augmentation.*magnetic_moments: collinear\|noncollinear"),
])
def test_bad_time_reversal_options_fail_with_their_key(tmp_path, top, expected):
    with pytest.raises(ConfigError, match=expected):
        TrainingConfig.from_dict(_config(tmp_path, {"forces": 1.0}, **top), base_dir=tmp_path)


# ----------------------------------------------------------------------------- trainer


def test_each_time_reversed_copy_is_trained_in_the_batch_of_its_partner_and_fixed_moments_apart(tmp_path):
    from fpscf.training.trainer import Trainer

    data = _config(tmp_path, {"energy_per_atom": 1.0}, model={"magnetic_moments": "noncollinear"},
                   time_reversal_augmentation=True)
    trainer = Trainer(TrainingConfig.from_dict(data, base_dir=tmp_path))
    graphs = [_graph(_magnetic_water(10 + k, constrained=False)) for k in range(4)]
    graphs += [_graph(molecule("H2O")) for _ in range(3)]  # not magnetic: no copies
    graphs += [_graph(_magnetic_water(20 + k)) for k in range(2)]  # constrained moments
    partners = time_reversal_partners(graphs)
    assert sorted(partners) == [0, 1, 2, 3, 7, 8]
    batches = trainer._batches(graphs, 3, torch.Generator().manual_seed(0), partners)
    again = trainer._batches(graphs, 3, torch.Generator().manual_seed(0), partners)
    assert sum(b.num_graphs for b in batches) == len(graphs) + len(partners)
    for batch, repeat in zip(batches, again):  # the same batches for the same seed (resume is exact)
        _assert_same_graph(batch, repeat)
        constrained = batch.label_masks["noncollinear_magnetic_forces"]
        assert bool(constrained.all()) or not bool(constrained.any())  # held and relaxed moments apart
        fields = batch.magnetic_field
        magnetic = fields.abs().sum(dim=1) > 0
        for b in magnetic.nonzero().reshape(-1).tolist():  # the partner: same atoms, opposite field
            same_atoms = torch.tensor([torch.equal(batch.positions[batch.batch == b], batch.positions[batch.batch == c])
                                       for c in range(batch.num_graphs)])
            assert bool((same_atoms & (fields == -fields[b]).all(dim=1)).any())


# ----------------------------------------------------------------------------- with the model

MAGNETIC_ARCHITECTURE = dict(
    r_max=3.5, num_channels=8, max_L=1, num_interactions=1, atomic_multipoles_max_l=1, magnetic_moments="noncollinear",
)
IMPLICIT = {"mode": "implicit", "scf": {"num_scf_steps": 60, "mixing_parameter": 0.5}}


def test_training_with_time_reversal_fits_magnetic_labels_of_both_partners(tmp_path):
    import json

    import yaml

    from fpscf.data.extxyz import write_extxyz
    from fpscf.training.config import load_config
    from fpscf.training.trainer import Trainer

    relaxed = [_magnetic_water(20 + k, constrained=False) for k in range(5)]
    constrained = [_magnetic_water(30 + k) for k in range(3)]
    write_extxyz(tmp_path / "train.xyz", relaxed[:4] + constrained[:2])
    write_extxyz(tmp_path / "valid.xyz", relaxed[4:] + constrained[2:])
    loss = {"energy_per_atom": 1.0, "magmoms": 1.0, "magnetic_moment_per_atom": 1.0, "magnetic_susceptibility": 1.0,
            "noncollinear_magnetic_forces": 1.0}
    config = {
        "train_file": "train.xyz", "valid_file": "valid.xyz", "output_dir": "run", "batch_size": 2,
        "progress": False, "plot": False, "time_reversal_augmentation": True, "model": MAGNETIC_ARCHITECTURE,
        "train_schedule": {0: {"start": 0, "end": 1, "lr": 0.003, "loss": loss, "fixed_point_training_options": IMPLICIT}},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = Trainer(load_config(tmp_path / "config.yaml")).run()
    rows = json.loads((result.output_dir / "metrics.json").read_text())
    count = {(r["split"], r["property"]): r["count"] for r in rows if r["epoch"] == 1}
    # 6 training structures and their 6 time-reversed copies; validation structures are not augmented.
    # Moments are fitted on the relaxed ones, magnetic forces on the constrained ones.
    assert count["train", "magmoms"] == 8 * 3 * 3 and count["valid", "magmoms"] == 1 * 3 * 3
    assert count["train", "noncollinear_magnetic_forces"] == 4 * 3 * 3
    assert count["valid", "noncollinear_magnetic_forces"] == 1 * 3 * 3
    assert count["train", "magnetic_susceptibility"] == 12 * 9 and count["train", "energy_per_atom"] == 12
    assert all(np.isfinite(result.metrics[name]) for name in loss)


def _constrained_prediction(graph: AtomicGraph):
    from fpscf import build_model
    from fpscf.training.config import FixedPointOptions, SCFOptions
    from fpscf.training.forward import predict

    model = build_model([1, 8], seed=0, **MAGNETIC_ARCHITECTURE)
    options = FixedPointOptions("implicit", SCFOptions(num_scf_steps=60, mixing_parameter=0.5))
    losses = {"energy_per_atom": 1.0, "magmoms": 1.0, "noncollinear_magnetic_forces": 1.0}
    out = predict(model, graph, options, set(losses), training=True)
    total, terms = compute_losses(out, graph, losses)
    total.backward()
    gradient = sum(float(p.grad.abs().sum()) for p in model.parameters() if p.grad is not None)
    return out, terms, gradient


def test_constrained_structures_are_evaluated_at_their_labelled_moments():
    graph = collate([_graph(_magnetic_water(30)), _graph(_magnetic_water(31))])
    out, terms, gradient = _constrained_prediction(graph)
    assert torch.equal(out["magmoms"].detach(), graph.labels["magmoms"])
    assert out["magnetic_forces"].shape == (graph.num_atoms, 3)
    assert "magmoms" not in terms  # the constrained moments are inputs, not targets
    assert np.isfinite(float(terms["noncollinear_magnetic_forces"].value.detach())) and gradient > 0


def test_constrained_and_relaxed_structures_share_a_batch():
    graph = collate([_graph(_magnetic_water(32)), _graph(_magnetic_water(33, constrained=False))])
    out, terms, gradient = _constrained_prediction(graph)
    assert torch.equal(out["magmoms"][:3].detach(), graph.labels["magmoms"][:3])
    assert {"magmoms", "noncollinear_magnetic_forces"} <= set(terms) and gradient > 0
