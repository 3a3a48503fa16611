"""Atomic graphs: batching, differentiable edge vectors, strain, errors at the input boundary."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from fpscf.data import (
    AtomicGraph,
    apply_strain,
    atoms_to_graph,
    collate,
    edge_vectors,
    graph_to_atoms,
    unbatch,
)
from fpscf.units import MIN_INTERATOMIC_DISTANCE

R_MAX = 3.5


def _three_structures() -> list[Atoms]:
    """A periodic crystal, an open molecule and a slab, all of different sizes."""
    rng = np.random.default_rng(0)
    crystal = bulk("NaCl", "rocksalt", a=5.6).repeat((2, 1, 1))
    crystal.positions += rng.normal(0.0, 0.1, crystal.positions.shape)
    crystal.info["energy"] = -3.0
    water = molecule("H2O")
    water.info["external_field"] = np.array([0.0, 0.0, 0.01])
    water.info["total_charge"] = -1.0
    water.arrays["forces"] = rng.normal(size=(3, 3))
    slab = bulk("Cu", "fcc", a=3.6, cubic=True)
    slab.pbc = (True, True, False)
    slab.positions += rng.normal(0.0, 0.1, slab.positions.shape)
    return [crystal, water, slab]


def test_collated_edge_vectors_equal_each_structure_alone():
    graphs = [atoms_to_graph(a, R_MAX, index=k) for k, a in enumerate(_three_structures())]
    batch = collate(graphs)
    assert batch.num_graphs == 3
    assert batch.num_atoms_per_graph.tolist() == [g.num_atoms for g in graphs]
    assert batch.num_edges == sum(g.num_edges for g in graphs)
    separate = torch.cat([edge_vectors(g) for g in graphs])
    assert torch.equal(edge_vectors(batch), separate)
    assert float(edge_vectors(batch).norm(dim=1).max()) < R_MAX


def test_unbatch_inverts_collate():
    graphs = [atoms_to_graph(a, R_MAX, index=k) for k, a in enumerate(_three_structures())]
    for original, recovered in zip(graphs, unbatch(collate(graphs))):
        for name in ("positions", "atomic_numbers", "cell", "pbc", "edge_index", "unit_shifts",
                     "batch", "ptr", "external_field", "magnetic_field", "total_charge"):
            assert torch.equal(getattr(original, name), getattr(recovered, name)), name
        for kind in ("labels", "label_masks", "weights"):
            assert getattr(original, kind).keys() == getattr(recovered, kind).keys()
            for key, value in getattr(original, kind).items():
                assert torch.equal(value, getattr(recovered, kind)[key]), (kind, key)


def test_collate_of_batches_equals_collate_of_singles():
    graphs = [atoms_to_graph(a, R_MAX, index=k) for k, a in enumerate(_three_structures())]
    nested = collate([collate(graphs[:2]), graphs[2]])
    flat = collate(graphs)
    assert torch.equal(nested.edge_index, flat.edge_index)
    assert torch.equal(nested.ptr, flat.ptr)
    assert torch.equal(nested.batch, flat.batch)


def test_graph_to_atoms_round_trips_geometry_and_fields():
    structures = _three_structures()
    recovered = graph_to_atoms(collate([atoms_to_graph(a, R_MAX) for a in structures]))
    for original, atoms in zip(structures, recovered):
        np.testing.assert_array_equal(atoms.positions, original.positions)
        np.testing.assert_array_equal(atoms.cell.array, original.cell.array)
        np.testing.assert_array_equal(atoms.pbc, original.pbc)
        np.testing.assert_array_equal(atoms.numbers, original.numbers)
    assert recovered[1].info["total_charge"] == -1.0
    np.testing.assert_array_equal(recovered[1].info["external_field"], [0.0, 0.0, 0.01])
    np.testing.assert_array_equal(recovered[1].arrays["forces"], structures[1].arrays["forces"])
    assert recovered[0].info["energy"] == -3.0 and "forces" not in recovered[0].arrays


def test_edge_vectors_are_differentiable_wrt_positions_and_cell():
    graph = collate([atoms_to_graph(a, R_MAX) for a in _three_structures()[::2]])
    positions = graph.positions.clone().requires_grad_(True)
    cell = graph.cell.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p, c: edge_vectors(graph, p, c), (positions, cell))


def test_strain_derivative_equals_finite_difference_of_deformed_structure():
    """Stress by autograd through apply_strain matches energies of explicitly deformed cells."""
    atoms = _three_structures()[0]

    def pair_energy(vectors: torch.Tensor) -> torch.Tensor:
        return torch.exp(-(vectors**2).sum(dim=1)).sum()

    graph = atoms_to_graph(atoms, R_MAX)
    strain = torch.zeros(1, 3, 3, dtype=torch.float64, requires_grad=True)
    positions, cell = apply_strain(graph, strain)
    (derivative,) = torch.autograd.grad(pair_energy(edge_vectors(graph, positions, cell)), strain)
    step = 1e-5
    for a, b in [(0, 0), (1, 2), (2, 1)]:
        energies = []
        for sign in (1, -1):
            deformed = atoms.copy()
            deformation = np.eye(3)
            deformation[a, b] += sign * step
            deformed.set_cell(atoms.cell.array @ deformation, scale_atoms=False)
            deformed.positions = atoms.positions @ deformation
            energies.append(float(pair_energy(edge_vectors(atoms_to_graph(deformed, R_MAX)))))
        finite_difference = (energies[0] - energies[1]) / (2 * step)
        assert float(derivative[0, a, b]) == pytest.approx(finite_difference, rel=1e-6, abs=1e-8)


def test_to_changes_float_dtype_and_keeps_integer_and_bool_dtypes():
    atoms = _three_structures()[0]
    atoms.info["level"] = 2
    atoms.info["spin_on"] = True
    graph = atoms_to_graph(atoms, R_MAX).to("cpu", torch.float32)
    assert graph.positions.dtype == graph.cell.dtype == graph.unit_shifts.dtype == torch.float32
    assert graph.labels["energy"].dtype == graph.weights["energy"].dtype == torch.float32
    assert graph.atomic_numbers.dtype == graph.edge_index.dtype == graph.batch.dtype == torch.int64
    assert graph.labels["level"].dtype == torch.int64
    assert graph.labels["spin_on"].dtype == torch.bool
    assert graph.pbc.dtype == torch.bool and graph.label_masks["energy"].dtype == torch.bool
    assert graph.to().positions.dtype == torch.float32


def test_clone_does_not_share_memory():
    graph = atoms_to_graph(_three_structures()[0], R_MAX)
    copy = graph.clone()
    copy.positions += 1.0
    copy.labels["energy"] += 1.0
    assert not torch.equal(copy.positions, graph.positions)
    assert not torch.equal(copy.labels["energy"], graph.labels["energy"])


def test_graph_does_not_share_memory_with_its_atoms():
    atoms = _three_structures()[0]
    graph = atoms_to_graph(atoms, R_MAX)
    before = (graph.positions.clone(), graph.cell.clone(), graph.atomic_numbers.clone())
    atoms.positions += 1.0
    atoms.cell[0, 0] += 1.0
    atoms.numbers[0] = 1
    after = (graph.positions, graph.cell, graph.atomic_numbers)
    assert all(torch.equal(x, y) for x, y in zip(before, after))


def test_unknown_species_error_names_element_structure_and_known_species():
    with pytest.raises(ValueError) as info:
        atoms_to_graph(molecule("CH3Cl"), R_MAX, species=[1, 6], index=7)
    message = str(info.value)
    assert "structure 7" in message and "element Cl" in message
    assert "H (1), C (6)" in message


def test_overlapping_atoms_error_names_both_atoms_and_distance():
    atoms = Atoms("H3", positions=[[0, 0, 0], [1.0, 0, 0], [1.05, 0, 0]])
    with pytest.raises(ValueError, match=r"structure 4: atoms 1 and 2 are 0\.05 Å apart"):
        atoms_to_graph(atoms, R_MAX, index=4)


def test_overlapping_periodic_image_error_names_the_atoms():
    atoms = Atoms("H2", positions=[[0, 0, 0], [2.96, 0, 0]], cell=np.eye(3) * 3.0, pbc=True)
    pattern = r"structure 0: atoms 0 and 1 are 0\.04 Å apart \(image shift \(-1, 0, 0\)\)"
    with pytest.raises(ValueError, match=pattern):
        atoms_to_graph(atoms, R_MAX)
    assert MIN_INTERATOMIC_DISTANCE == 0.1


def test_empty_structure_and_bad_cutoff_are_rejected():
    with pytest.raises(ValueError, match="structure 3 has no atoms"):
        atoms_to_graph(Atoms(), R_MAX, index=3)
    with pytest.raises(ValueError, match="r_max=0 must be a positive"):
        atoms_to_graph(molecule("H2O"), 0)


def test_collate_zero_fills_labels_missing_or_masked_in_some_structures():
    rng = np.random.default_rng(1)
    with_quadrupoles, without = molecule("H2O"), molecule("NH3")
    with_quadrupoles.arrays["atomic_multipoles"] = rng.normal(size=(3, 9))
    batch = collate([atoms_to_graph(with_quadrupoles, R_MAX), atoms_to_graph(without, R_MAX)])
    assert batch.labels["atomic_multipoles"].shape == (7, 9)
    assert batch.label_masks["atomic_multipoles"].tolist() == [True, False]
    assert torch.all(batch.labels["atomic_multipoles"][3:] == 0)


def test_collate_rejects_collinear_and_noncollinear_magmoms_in_one_batch():
    collinear, noncollinear = molecule("H2O"), molecule("NH3")
    collinear.arrays["magmoms"] = np.ones(3)
    noncollinear.arrays["magmoms"] = np.ones((4, 3))
    graphs = [atoms_to_graph(collinear, R_MAX), atoms_to_graph(noncollinear, R_MAX)]
    with pytest.raises(ValueError, match=r"label 'magmoms' has per-item shape \(3,\) in graph 1"):
        collate(graphs)


def test_graph_constructor_rejects_inconsistent_shapes():
    graph = atoms_to_graph(molecule("H2O"), R_MAX)
    fields = {name: getattr(graph, name) for name in graph.__dataclass_fields__}
    fields["batch"] = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"AtomicGraph.batch has shape \(2,\), expected \(3,\)"):
        AtomicGraph(**fields)
