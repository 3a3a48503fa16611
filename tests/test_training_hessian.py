"""Hessian rows as a training target: the label's storage, Hessian rows through the SCF against
the calculator's Hessian and finite differences of forces, and the sampled loss as an unbiased
estimate (value and parameter gradient) of the loss on every row."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml
from ase.build import molecule

from fpscf import FixedPointCalculator, build_model
from fpscf.data import atoms_to_graph, collate
from fpscf.data.extxyz import read_extxyz, write_extxyz
from fpscf.data.graph import unbatch
from fpscf.datagen.synthetic import TEACHER_ARCHITECTURE
from fpscf.training.config import FixedPointOptions, SCFOptions, load_config
from fpscf.training.forward import predict
from fpscf.training.hessian import hessian_rows, hessian_term, sample_rows
from fpscf.training.trainer import Trainer

R_MAX = TEACHER_ARCHITECTURE["r_max"]
IMPLICIT = FixedPointOptions("implicit", SCFOptions(num_scf_steps=200, mixing_parameter=0.5, scf_tolerance=1e-12))


def _structures() -> list:
    water, dimer = molecule("H2O"), molecule("H2O")
    other = molecule("H2O")
    other.positions += [2.9, 0.2, 0.1]
    dimer += other
    water.rattle(0.05, seed=1)
    dimer.rattle(0.05, seed=2)
    water.info["external_field"] = [0.0, 0.03, -0.02]
    return [water, dimer]


@pytest.fixture(scope="module")
def model():
    return build_model([1, 8], seed=5, **TEACHER_ARCHITECTURE)


@pytest.fixture(scope="module")
def labelled(model):
    """The two structures with the calculator's Hessian plus noise as the label (errors are not zero)."""
    rng = np.random.default_rng(0)
    calculator = FixedPointCalculator(model, scf_tolerance=1e-12)
    frames = []
    for atoms in _structures():
        exact = calculator.get_properties(["hessian"], atoms)["hessian"]
        atoms.info["exact_hessian"] = exact
        atoms.info["hessian"] = exact + rng.normal(scale=0.3, size=exact.shape)
        frames.append(atoms)
    return frames


def _batch(frames):
    return collate([atoms_to_graph(atoms, R_MAX, species=[1, 8]) for atoms in frames])


def _dense_rows(model, graph):
    """Every Hessian row of every structure, (3N_max, N, 3), computed row by row here (slot s: row s, or none)."""
    out = predict(model, graph, IMPLICIT, {"forces"}, training=True)
    counts = (3 * graph.num_atoms_per_graph).tolist()
    rows = torch.tensor([[s if s < n else -1 for n in counts] for s in range(max(counts))])
    return out, rows, hessian_rows(out, graph, rows, create_graph=True)


def test_the_hessian_label_is_read_in_every_layout_and_survives_extxyz_collate_and_unbatch(labelled, tmp_path):
    atoms = labelled[1].copy()
    n = len(atoms)
    dense = np.asarray(atoms.info.pop("hessian"))
    del atoms.info["exact_hessian"]
    atoms.arrays["hessian"] = dense.reshape(n, 9 * n)  # row i: [α, j, β]
    from_arrays = atoms_to_graph(atoms, R_MAX).labels["hessian"]
    blocks = dense.reshape(n, 3, n, 3)
    assert from_arrays.shape == (n * n, 3, 3)
    for i in range(n):
        for j in range(n):
            assert torch.equal(from_arrays[i * n + j], torch.tensor(blocks[i, :, j, :]))
    write_extxyz(tmp_path / "h.xyz", [labelled[0], atoms])
    graphs = [atoms_to_graph(a, R_MAX) for a in read_extxyz(tmp_path / "h.xyz")]
    assert torch.allclose(graphs[1].labels["hessian"], from_arrays, rtol=0, atol=1e-7)  # extxyz keeps 8 decimals
    again = unbatch(collate(graphs))
    for graph, back in zip(graphs, again):
        assert torch.equal(graph.labels["hessian"], back.labels["hessian"])


def test_hessian_rows_through_the_scf_match_the_calculator_and_finite_differences(model, labelled):
    graph = _batch(labelled)
    _, rows, dense = _dense_rows(model, graph)
    ptr = graph.ptr.tolist()
    for b, atoms in enumerate(labelled):
        n = len(atoms)
        ours = torch.stack([dense[s, ptr[b] : ptr[b + 1]].reshape(-1) for s in range(3 * n)])
        assert torch.allclose(ours, torch.as_tensor(atoms.info["exact_hessian"]), atol=1e-9)
    # Central differences of the converged forces for the water molecule, column (atom 1, y).
    h, water = 1e-4, labelled[0]
    forces = []
    for sign in (1, -1):
        moved = water.copy()
        moved.positions[1, 1] += sign * h
        out = predict(model, _batch([moved]), IMPLICIT, {"forces"}, training=False)
        forces.append(out["forces"].detach().reshape(-1))
    column = -(forces[0] - forces[1]) / (2 * h)
    assert torch.allclose(dense[3 * 1 + 1, : len(water)].reshape(-1).detach(), column, atol=1e-6)


def _full_loss(dense, rows, graph):
    """The loss on every row, written out here: (1/R) Σ_b Σ_r mean((H_r − H^ref_r)²)."""
    ptr, total, count = graph.ptr.tolist(), 0.0, 0
    offset = 0
    for b in range(graph.num_graphs):
        n = ptr[b + 1] - ptr[b]
        reference = graph.labels["hessian"][offset : offset + n * n].reshape(n, n, 3, 3).permute(0, 2, 1, 3).reshape(3 * n, n, 3)
        offset += n * n
        for r in range(3 * n):
            error = dense[r, ptr[b] : ptr[b + 1]] - reference[r]
            total = total + (error * error).mean()
        count += 3 * n
    return total / count


def test_the_sampled_hessian_loss_and_its_gradient_are_unbiased(model, labelled):
    graph = _batch(labelled)
    out, rows, dense = _dense_rows(model, graph)
    parameters = [p for p in model.parameters() if p.requires_grad]
    full = _full_loss(dense, rows, graph)
    full_gradient = torch.autograd.grad(full, parameters, retain_graph=True, allow_unused=True)
    # Exact expectation over one drawn row per structure: slot s draws row s mod 3N_b (9 and 18
    # rows: over 18 slots each structure's rows are drawn equally often; the loss is a sum over
    # structures). The mean of the estimates is kept as one graph: its gradient is the mean gradient.
    counts = (3 * graph.num_atoms_per_graph).tolist()
    plans = math.lcm(*counts)
    mean_estimate = 0.0
    for s in range(plans):
        drawn = torch.tensor([[s % n for n in counts]])
        picked = torch.stack([dense[s % n] for n in counts])  # slot of each structure's row
        sample = {"hessian_sample": drawn, "hessian_rows": torch.stack([
            torch.cat([picked[b, graph.ptr[b] : graph.ptr[b + 1]] for b in range(graph.num_graphs)])])}
        term = hessian_term(sample, graph)
        assert term.count == sum(counts)
        mean_estimate = mean_estimate + term.value / plans
    assert float(mean_estimate.detach()) == pytest.approx(float(full.detach()), rel=1e-12)
    mean_gradient = torch.autograd.grad(mean_estimate, parameters, retain_graph=True, allow_unused=True)
    for estimate, exact in zip(mean_gradient, full_gradient):
        assert (estimate is None) == (exact is None)
        if exact is not None:
            assert torch.allclose(estimate, exact, rtol=1e-9, atol=1e-12 * float(exact.abs().max() + 1))
    # The sampler: 2 rows of each structure without replacement, each row equally likely; the
    # Monte Carlo mean of the estimate agrees with the full loss within 4 standard errors.
    generator, draws = torch.Generator().manual_seed(0), 400
    hits = [torch.zeros(n) for n in counts]
    values = []
    with torch.no_grad():
        for _ in range(draws):
            drawn = sample_rows(graph, 2, generator)
            assert all(len(set(drawn[:, b].tolist())) == 2 for b in range(graph.num_graphs))
            for b in range(graph.num_graphs):
                hits[b][drawn[:, b]] += 1
            slots = torch.stack([torch.cat([dense[int(drawn[s, b]), graph.ptr[b] : graph.ptr[b + 1]]
                                            for b in range(graph.num_graphs)]) for s in range(2)])
            values.append(float(hessian_term({"hessian_sample": drawn, "hessian_rows": slots}, graph).value))
    for b, n in enumerate(counts):
        expected = draws * 2 / n
        assert float(((hits[b] - expected) ** 2 / expected).sum()) < n + 6 * math.sqrt(2 * n)  # χ² with n−1 dof
    error = np.std(values) / math.sqrt(draws)
    assert abs(np.mean(values) - float(full.detach())) < 4 * error


def test_training_on_hessian_rows_runs_and_reports_them(labelled, tmp_path):
    frames = []
    for atoms in labelled:
        atoms = atoms.copy()
        del atoms.info["exact_hessian"]
        frames.append(atoms)
    write_extxyz(tmp_path / "train.xyz", frames + frames)
    write_extxyz(tmp_path / "valid.xyz", frames)
    config = {"train_file": "train.xyz", "valid_file": "valid.xyz", "output_dir": "run", "batch_size": 2,
              "progress": False, "plot": False, "hessian_rows_per_structure": 3, "model": dict(TEACHER_ARCHITECTURE),
              "train_schedule": {0: {"name": "scf", "start": 0, "end": 1, "lr": 1e-3, "loss": {"hessian": 1.0},
                                     "fixed_point_training_options": {"mode": "implicit", "scf": {
                                         "num_scf_steps": 100, "mixing_parameter": 0.5, "scf_tolerance": 1e-10}}}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = Trainer(load_config(tmp_path / "config.yaml")).run()
    rows = json.loads((result.output_dir / "metrics.json").read_text())
    counts = {(r["epoch"], r["split"]): r["count"] for r in rows if r["property"] == "hessian"}
    # 3 rows of each structure, of 9 and 18 entries (3 and 6 atoms); each structure twice in training.
    assert counts[(1, "train")] == 2 * (3 * 9 + 3 * 18) and counts[(1, "valid")] == 3 * 9 + 3 * 18
    assert np.isfinite(result.metrics["hessian"])
