"""Neighbour lists: both backends give ASE's edges in MACE's sender/receiver/shift convention."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list as ase_neighbor_list

from fpscf.data.neighbors import neighbor_list

BACKENDS = ("torch", "nvalchemi", "auto")


def _random_system(seed: int, num_atoms: int, length: float, pbc: tuple[bool, bool, bool]):
    """Triclinic cell, positions partly outside the cell (unwrapped)."""
    rng = np.random.default_rng(seed)
    cell = np.eye(3) * length + rng.normal(0.0, 0.15 * length, (3, 3))
    positions = rng.random((num_atoms, 3)) @ cell + rng.normal(0.0, 0.5 * length, (num_atoms, 3))
    return positions, cell, np.array(pbc)


def _edge_set(edge_index, unit_shifts) -> set[tuple[int, ...]]:
    return {
        (int(i), int(j), *(int(s) for s in shift))
        for i, j, shift in zip(edge_index[0], edge_index[1], unit_shifts)
    }


def _ase_edge_set(positions, cell, pbc, r_max) -> set[tuple[int, ...]]:
    atoms = Atoms(numbers=[1] * len(positions), positions=positions, cell=cell, pbc=pbc)
    i, j, shifts = ase_neighbor_list("ijS", atoms, r_max)
    return _edge_set((i, j), shifts)


def _all_backends(positions, cell, pbc, r_max):
    return {
        backend: neighbor_list(
            torch.tensor(positions), torch.tensor(cell), torch.tensor(pbc), r_max, backend=backend
        )
        for backend in BACKENDS
    }


SYSTEMS = {
    "bulk_triclinic": (1, 40, 7.0, (True, True, True), 3.5),
    "slab_xy_periodic": (2, 25, 6.0, (True, True, False), 3.0),
    "wire_x_periodic": (3, 12, 5.0, (True, False, False), 3.0),
    "cutoff_exceeds_cell_length": (4, 3, 2.0, (True, True, True), 4.5),
    "single_atom_tiny_cell": (5, 1, 1.7, (True, True, True), 3.2),
    "larger_bulk_above_torch_auto_limit": (6, 90, 9.0, (True, True, True), 4.0),
}


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_backends_agree_with_each_other_and_ase_on_periodic_systems(name):
    seed, num_atoms, length, pbc, r_max = SYSTEMS[name]
    positions, cell, pbc = _random_system(seed, num_atoms, length, pbc)
    reference = _ase_edge_set(positions, cell, pbc, r_max)
    results = _all_backends(positions, cell, pbc, r_max)
    assert len(reference) > 0
    for backend, (edge_index, unit_shifts) in results.items():
        assert _edge_set(edge_index, unit_shifts) == reference, backend
    # Canonical ordering: not just the same sets, the same tensors.
    assert torch.equal(results["torch"][0], results["nvalchemi"][0])
    assert torch.equal(results["torch"][1], results["nvalchemi"][1])


@pytest.mark.parametrize("num_atoms", [1, 2, 30])
def test_backends_agree_with_each_other_and_ase_on_open_systems(num_atoms):
    rng = np.random.default_rng(num_atoms)
    positions = rng.random((num_atoms, 3)) * 6.0
    for cell in (np.zeros((3, 3)), np.eye(3) * 3.0):  # the cell is irrelevant without pbc
        reference = _ase_edge_set(positions, cell, np.zeros(3, bool), 2.5)
        for backend, result in _all_backends(positions, cell, np.zeros(3, bool), 2.5).items():
            assert _edge_set(*result) == reference, backend


def test_edge_vector_convention_receiver_minus_sender_plus_shift():
    positions, cell, pbc = _random_system(7, 10, 5.0, (True, True, True))
    edge_index, unit_shifts = neighbor_list(
        torch.tensor(positions), torch.tensor(cell), torch.tensor(pbc), 3.0
    )
    pos, cell_t = torch.tensor(positions), torch.tensor(cell)
    vectors = pos[edge_index[1]] - pos[edge_index[0]] + unit_shifts.double() @ cell_t
    atoms = Atoms(numbers=[1] * 10, positions=positions, cell=cell, pbc=pbc)
    i, j, d_ase = ase_neighbor_list("ijD", atoms, 3.0)
    expected = {(a, b): set() for a, b in zip(i, j)}
    for a, b, d in zip(i, j, d_ase):
        expected[(a, b)].add(tuple(np.round(d, 8)))
    for (a, b), v in zip(edge_index.T.tolist(), vectors.numpy()):
        assert tuple(np.round(v, 8)) in expected[(a, b)]
    assert float(vectors.norm(dim=1).max()) < 3.0


def test_list_is_full_and_keeps_periodic_self_images_only():
    positions, cell, pbc = _random_system(8, 2, 2.2, (True, True, True))
    for backend in ("torch", "nvalchemi"):
        edge_index, unit_shifts = neighbor_list(
            torch.tensor(positions), torch.tensor(cell), torch.tensor(pbc), 3.0, backend=backend
        )
        edges = _edge_set(edge_index, unit_shifts)
        assert all((j, i, -a, -b, -c) in edges for i, j, a, b, c in edges)
        self_edges = [e for e in edges if e[0] == e[1]]
        assert self_edges and all(any(e[2:]) for e in self_edges)


def test_neighbor_list_rejects_bad_input_with_clear_messages():
    positions = torch.zeros(2, 3, dtype=torch.float64)
    positions[1, 0] = 1.0
    cell = torch.eye(3, dtype=torch.float64) * 4.0
    pbc = torch.tensor([True, True, True])
    with pytest.raises(ValueError, match="backend='fast' is unknown"):
        neighbor_list(positions, cell, pbc, 3.0, backend="fast")
    with pytest.raises(ValueError, match="r_max=-1.0 must be a positive"):
        neighbor_list(positions, cell, pbc, -1.0)
    flat = cell.clone()
    flat[2] = 0.0
    pattern = r"pbc\[2\] is True but lattice vector 2 of the cell is zero"
    with pytest.raises(ValueError, match=pattern):
        neighbor_list(positions, flat, pbc, 3.0)
    with pytest.raises(ValueError, match=r"positions have shape \(2, 2\), expected \(N, 3\)"):
        neighbor_list(positions[:, :2], cell, pbc, 3.0)
