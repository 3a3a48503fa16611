"""Extended XYZ: every label kind survives write/read/graph round trips; bad input fails clearly."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

from fpscf.data import (
    LABEL_NAMES,
    PER_ATOM_LABELS,
    KeyMap,
    atoms_to_graph,
    collate,
    graph_to_atoms,
    load_dataset,
    read_extxyz,
    write_extxyz,
)

R_MAX = 3.0


def _fully_labelled_crystal(rng: np.random.Generator) -> Atoms:
    """Periodic structure with every label in info/arrays (l_max = 2, non-collinear magmoms)."""
    atoms = bulk("MgO", "rocksalt", a=4.2).repeat((1, 1, 2))
    atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
    n = len(atoms)
    symmetric = rng.normal(size=(3, 3))
    atoms.info.update(
        energy=-12.345678901234,
        stress=symmetric + symmetric.T,
        dipole=rng.normal(size=3),
        fermi_level=-4.25,
        polarizability=rng.normal(size=(3, 3)),  # not symmetric: catches transposed storage
        level=2,
        spin_on=True,
        total_charge=1.0,
        external_field=np.array([0.01, -0.02, 0.03]),
        magnetic_field=np.array([0.0, 0.0, 5.0]),
        magnetic_moment=rng.normal(size=3),
        magnetic_susceptibility=rng.normal(size=(3, 3)),  # not symmetric: catches transposed storage
        energy_weight=2.5,
        forces_weight=0.5,
    )
    atoms.arrays["forces"] = rng.normal(size=(n, 3))
    atoms.arrays["charges"] = rng.normal(size=n)
    atoms.arrays["atomic_multipoles"] = rng.normal(size=(n, 9))
    atoms.arrays["magmoms"] = rng.normal(size=(n, 3))
    atoms.arrays["noncollinear_magnetic_forces"] = rng.normal(size=(n, 3))
    atoms.arrays["born_effective_charges"] = rng.normal(size=(n, 9))  # flattened, not symmetric
    return atoms


def _partly_labelled_molecule(rng: np.random.Generator) -> Atoms:
    """Open structure: l_max = 1 multipoles, collinear magmoms and total moment, flat 9-value
    polarizability and susceptibility."""
    atoms = molecule("H2O")
    atoms.info.update(energy=-14.2, polarizability=rng.normal(size=9), level=0, spin_on=False,
                      magnetic_moment=1.5, magnetic_susceptibility=rng.normal(size=9))
    atoms.arrays["atomic_multipoles"] = rng.normal(size=(3, 4))
    atoms.arrays["magmoms"] = rng.normal(size=3)
    atoms.arrays["born_effective_charges"] = rng.normal(size=(3, 9))
    return atoms


def _calculator_labelled_molecule(rng: np.random.Generator) -> Atoms:
    """Labels only in a SinglePointCalculator, with Voigt stress."""
    atoms = molecule("NH3")
    atoms.calc = SinglePointCalculator(
        atoms,
        energy=-19.5,
        forces=rng.normal(size=(4, 3)),
        stress=rng.normal(size=6),
        dipole=rng.normal(size=3),
        charges=rng.normal(size=4),
    )
    return atoms


def _expected_labels(atoms: Atoms) -> dict[str, np.ndarray]:
    """Labels of a test structure in fpscf's stored shapes, computed independently."""
    source = dict(atoms.info) | dict(atoms.arrays)
    if atoms.calc is not None:
        source |= atoms.calc.results
    expected = {}
    for name in LABEL_NAMES:
        if name not in source:
            continue
        value = np.asarray(source[name])
        if name == "stress" and value.shape == (6,):
            xx, yy, zz, yz, xz, xy = value
            value = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
        elif name in ("polarizability", "magnetic_susceptibility"):
            value = value.reshape(3, 3)
        elif name == "magnetic_moment" and value.shape == ():
            value = np.array([0.0, 0.0, float(value)])
        elif name == "born_effective_charges":
            value = value.reshape(len(atoms), 3, 3)
        expected[name] = value
    return expected


@pytest.fixture
def labelled_structures() -> list[Atoms]:
    rng = np.random.default_rng(42)
    return [
        _fully_labelled_crystal(rng),
        _partly_labelled_molecule(rng),
        _calculator_labelled_molecule(rng),
    ]


PER_ATOM_DECIMALS_ATOL = 5e-9  # ASE writes per-atom extxyz columns with 8 decimals


def _assert_graph_has(graph, expected: dict[str, np.ndarray], per_atom_atol: float = 0.0) -> None:
    for name in LABEL_NAMES:
        present = name in expected
        assert bool(graph.label_masks[name][0]) is present, name
        if not present:
            continue
        if name in PER_ATOM_LABELS:
            np.testing.assert_allclose(
                graph.labels[name].numpy().reshape(np.shape(expected[name])), expected[name],
                rtol=0.0, atol=per_atom_atol, err_msg=name,
            )
        else:
            np.testing.assert_array_equal(
                graph.labels[name][0].numpy(), expected[name], err_msg=name
            )


def test_every_label_kind_survives_write_read_graph_and_back(tmp_path, labelled_structures):
    expected = [_expected_labels(a) for a in labelled_structures]
    first, second = tmp_path / "first.xyz", tmp_path / "second.xyz"
    write_extxyz(first, labelled_structures)
    graphs = [atoms_to_graph(a, R_MAX, index=k) for k, a in enumerate(read_extxyz(first))]
    for graph, labels, original in zip(graphs, expected, labelled_structures):
        _assert_graph_has(graph, labels, per_atom_atol=PER_ATOM_DECIMALS_ATOL)
        np.testing.assert_allclose(graph.positions.numpy(), original.positions, rtol=0, atol=5e-9)
        np.testing.assert_array_equal(graph.cell[0].numpy(), original.cell.array)
    crystal = graphs[0]
    assert crystal.labels["atomic_multipoles"].shape == (len(labelled_structures[0]), 9)
    assert crystal.labels["magmoms"].shape == (len(labelled_structures[0]), 3)
    assert graphs[1].labels["atomic_multipoles"].shape == (3, 4)
    assert crystal.weights["energy"].item() == 2.5 and crystal.weights["forces"].item() == 0.5
    assert crystal.weights["stress"].item() == 1.0 and "level" not in crystal.weights
    assert crystal.total_charge.item() == 1.0
    assert crystal.external_field[0].tolist() == [0.01, -0.02, 0.03]
    assert crystal.magnetic_field[0].tolist() == [0.0, 0.0, 5.0]

    # graph -> atoms -> file -> graph again: bit-identical labels, geometry and weights.
    # (Not collated: l_max = 2 and l_max = 1 multipoles cannot share a batch.)
    write_extxyz(second, [atoms for graph in graphs for atoms in graph_to_atoms(graph)])
    again = load_dataset(second, R_MAX)
    for before, after in zip(graphs, again):
        for name in ("positions", "cell", "pbc", "atomic_numbers", "edge_index", "unit_shifts",
                     "total_charge", "external_field", "magnetic_field"):
            assert torch.equal(getattr(before, name), getattr(after, name)), name
        for kind in ("labels", "label_masks", "weights"):
            for key, value in getattr(before, kind).items():
                assert torch.equal(value, getattr(after, kind)[key]), (kind, key)


def test_labels_are_read_from_single_point_calculator_without_a_file(labelled_structures):
    atoms = labelled_structures[2]
    graph = atoms_to_graph(atoms, R_MAX)
    _assert_graph_has(graph, _expected_labels(atoms))


def test_voigt_and_full_stress_give_the_same_stored_tensor():
    voigt = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    full = np.array([[1.0, 6.0, 5.0], [6.0, 2.0, 4.0], [5.0, 4.0, 3.0]])
    graphs = []
    for stress in (voigt, full, full.reshape(9)):
        atoms = molecule("H2O")
        atoms.info["stress"] = stress
        graphs.append(atoms_to_graph(atoms, R_MAX))
    for graph in graphs:
        np.testing.assert_array_equal(graph.labels["stress"][0].numpy(), full)


def test_missing_labels_are_masked_and_zero_filled(tmp_path):
    with_energy, bare = molecule("H2O"), molecule("CH4")
    with_energy.info["energy"] = -1.0
    path = tmp_path / "partial.xyz"
    write_extxyz(path, [with_energy, bare])
    batch = collate(load_dataset(path, R_MAX))
    assert batch.label_masks["energy"].tolist() == [True, False]
    assert batch.labels["energy"].tolist() == [-1.0, 0.0]
    for name in LABEL_NAMES:
        if name != "energy":
            assert not batch.label_masks[name].any(), name
            assert not batch.labels[name].any(), name
    assert batch.labels["forces"].shape == (8, 3)
    assert batch.labels["born_effective_charges"].shape == (8, 3, 3)
    assert batch.weights["forces"].tolist() == [1.0, 1.0]


def test_custom_key_map_reads_prefixed_keys_and_ignores_disabled_labels():
    atoms = molecule("H2O")
    atoms.info["REF_energy"] = -7.0
    atoms.info["energy"] = 99.0
    atoms.info["REF_field"] = np.array([0.0, 0.1, 0.0])
    key_map = dataclasses.replace(
        KeyMap(), energy="REF_energy", external_field="REF_field", forces=None
    )
    graph = atoms_to_graph(atoms, R_MAX, key_map)
    assert graph.labels["energy"].item() == -7.0
    assert graph.external_field[0].tolist() == [0.0, 0.1, 0.0]
    assert "forces" not in graph.labels
    assert KeyMap.inputs_only().label_keys() == {}


def test_wrong_shaped_label_error_names_structure_key_and_shapes(tmp_path):
    good, bad = molecule("H2O"), molecule("CH4")
    good.arrays["REF_forces"] = np.zeros((3, 3))
    bad.arrays["REF_forces"] = np.zeros((5, 2))
    path = tmp_path / "bad.xyz"
    write_extxyz(path, [good, bad])
    key_map = KeyMap(forces="REF_forces")
    with pytest.raises(ValueError) as info:
        load_dataset(path, R_MAX, key_map)
    message = str(info.value)
    assert "bad.xyz" in message and "structure 1" in message and "'REF_forces'" in message
    assert "shape (5, 2)" in message and "expected (5, 3)" in message


def test_multipole_width_that_is_not_a_square_is_rejected():
    atoms = molecule("H2O")
    atoms.arrays["atomic_multipoles"] = np.zeros((3, 5))
    pattern = r"structure 0: property 'atomic_multipoles'.*shape \(3, 5\).*Width 5"
    with pytest.raises(ValueError, match=pattern):
        atoms_to_graph(atoms, R_MAX)


def test_non_finite_label_is_rejected():
    atoms = molecule("H2O")
    atoms.info["energy"] = float("nan")
    with pytest.raises(ValueError, match="structure 0: property 'energy' .*non-finite"):
        atoms_to_graph(atoms, R_MAX)


def test_empty_file_is_a_clear_error(tmp_path):
    empty, blank = tmp_path / "empty.xyz", tmp_path / "blank.xyz"
    empty.write_text("")
    blank.write_text("\n  \n")
    for path in (empty, blank):
        with pytest.raises(ValueError, match=f"extxyz file '{path}' is empty"):
            read_extxyz(path)


def test_unparsable_file_is_a_clear_error(tmp_path):
    path = tmp_path / "garbage.xyz"
    path.write_text("this is not\nan xyz file\n")
    with pytest.raises(ValueError, match=f"could not parse '{path}' as extended XYZ"):
        read_extxyz(path)


def test_missing_file_error_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "data.xyz"
    with pytest.raises(FileNotFoundError, match=f"extxyz file not found: '{path}'"):
        load_dataset(path, R_MAX)


def test_write_replaces_file_atomically_without_leftovers(tmp_path):
    path = tmp_path / "data.xyz"
    write_extxyz(path, molecule("H2O"))
    write_extxyz(path, [molecule("CH4"), molecule("NH3")])
    assert [len(a) for a in read_extxyz(path)] == [5, 4]
    assert os.listdir(tmp_path) == ["data.xyz"]
    with pytest.raises(ValueError, match="no structures to write"):
        write_extxyz(path, [])


def test_multipoles_of_different_l_max_cannot_share_a_batch(labelled_structures):
    graphs = [atoms_to_graph(a, R_MAX) for a in labelled_structures[:2]]
    pattern = r"'atomic_multipoles' has per-item shape \(4,\) in graph 1 but \(9,\)"
    with pytest.raises(ValueError, match=pattern):
        collate(graphs)
