"""Neighbour lists: every ordered atom pair closer than a cutoff, with its periodic image shift.

Convention (MACE's, used throughout fpscf): an edge ``(i, j, S)`` means atom ``j`` in the image
translated by the integer lattice vector ``S`` lies within ``r_max`` of atom ``i``::

    vector_ij = positions[j] - positions[i] + S @ cell        # Å, points from i to j

``edge_index[0] = i`` is the sender and ``edge_index[1] = j`` the receiver. The list is full
(both ``(i, j, S)`` and ``(j, i, -S)`` are present) and has no self-edges except periodic
self-images (``i == j`` with ``S != 0``), which are kept. Positions need not be wrapped into
the cell: shifts refer to the positions exactly as given.

Two backends build the same list (edges are returned in the same canonical order, sorted by
sender, receiver, then shift):

* ``"nvalchemi"``: Warp kernels of nvalchemi-toolkit-ops (O(N) cell lists). The first call in a
  fresh environment compiles kernels into ``~/.cache/warp`` (seconds to minutes).
* ``"torch"``: brute force over the image shifts needed for ``r_max`` (O(N² × images)),
  processed in chunks. No compilation; best for molecules, tiny systems and small cells.

``"auto"`` picks ``"torch"`` for open boundaries (up to ``TORCH_MAX_OPEN_ATOMS`` atoms), for
systems of at most ``TORCH_MAX_ATOMS`` atoms, and for cells thinner than ``2 r_max`` in a periodic
direction; otherwise ``"nvalchemi"``.

Index construction is not differentiable; differentiate edge vectors with
:func:`fpscf.data.graph.edge_vectors`, which recomputes them from positions and cell.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch

Backend = Literal["auto", "nvalchemi", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "nvalchemi", "torch")

#: ``"auto"`` uses the torch backend for systems with at most this many atoms.
TORCH_MAX_ATOMS: int = 64
#: ``"auto"`` uses the torch backend for fully open systems with at most this many atoms.
TORCH_MAX_OPEN_ATOMS: int = 2000
#: Number of (sender, image, receiver) distance evaluations per chunk in the torch backend.
_TORCH_CHUNK_PAIRS: int = 1 << 21
#: Relative tolerance below which a cell is treated as singular.
_SINGULAR_CELL_TOLERANCE: float = 1e-8


def neighbor_list(
    positions: torch.Tensor,
    cell: torch.Tensor,
    pbc: torch.Tensor,
    r_max: float,
    backend: Backend = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full neighbour list of one structure.

    Args:
        positions: (N, 3) Å, Cartesian, wrapped or not.
        cell: (3, 3) Å, rows are lattice vectors. Rows of non-periodic directions may be zero
            (a fully open structure may pass an all-zero cell).
        pbc: (3,) bool, periodic directions.
        r_max: cutoff in Å; pairs with distance < r_max are neighbours.
        backend: ``"auto"``, ``"nvalchemi"`` or ``"torch"`` (see module docstring).

    Returns:
        edge_index: (2, E) int64, ``[sender i, receiver j]``.
        unit_shifts: (E, 3) int64 integer lattice translations ``S`` of the receiver, so that
            ``positions[j] - positions[i] + S @ cell`` is the edge vector.

    Raises:
        ValueError: bad shapes, non-finite positions, non-positive cutoff, an unknown backend, or
            a periodic direction whose lattice vector is zero or linearly dependent.
    """
    positions, cell, pbc = _check_inputs(positions, cell, pbc, r_max, backend)
    with torch.no_grad():
        pos = positions.detach().to(torch.float64)
        full_cell = _complete_cell(cell.detach().to(torch.float64), pbc)
        images = _images_needed(full_cell, pbc, r_max)
        if backend == "auto":
            backend = _choose_backend(pos.shape[0], full_cell, pbc, r_max)
        if backend == "torch":
            edge_index, unit_shifts = _torch_neighbor_list(pos, full_cell, pbc, r_max, images)
        else:
            edge_index, unit_shifts = _nvalchemi_neighbor_list(pos, full_cell, pbc, r_max, images)
        return _canonical_order(edge_index, unit_shifts, pos.shape[0])


def _check_inputs(
    positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, r_max: float, backend: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate shapes and values at the boundary; return (positions, cell, pbc) as tensors."""
    if backend not in BACKENDS:
        raise ValueError(f"neighbor_list: backend={backend!r} is unknown; use one of {BACKENDS}.")
    if not isinstance(r_max, (int, float)) or not math.isfinite(r_max) or r_max <= 0:
        raise ValueError(f"neighbor_list: r_max={r_max!r} must be a positive finite cutoff in Å.")
    positions = torch.as_tensor(positions)
    cell = torch.as_tensor(cell, device=positions.device)
    pbc = torch.as_tensor(pbc, device=positions.device)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(
            f"neighbor_list: positions have shape {tuple(positions.shape)}, expected (N, 3) in Å."
        )
    if not positions.is_floating_point() or not bool(torch.isfinite(positions).all()):
        raise ValueError("neighbor_list: positions must be finite floating-point numbers (Å).")
    if cell.shape != (3, 3):
        raise ValueError(
            f"neighbor_list: cell has shape {tuple(cell.shape)}, expected (3, 3) "
            "(rows = lattice vectors in Å)."
        )
    if pbc.shape != (3,) or pbc.dtype != torch.bool:
        raise ValueError(
            f"neighbor_list: pbc has shape {tuple(pbc.shape)} and dtype {pbc.dtype}, "
            "expected (3,) bool."
        )
    return positions, cell, pbc


def _complete_cell(cell: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """Return an invertible cell equal to ``cell`` in its periodic rows.

    Non-periodic rows that are zero or make the cell singular are replaced by unit vectors
    orthogonal to the periodic rows; shifts along them are always zero, so the choice does not
    change any edge.
    """
    periodic = [d for d in range(3) if bool(pbc[d])]
    for d in periodic:
        if float(cell[d].norm()) == 0.0:
            raise ValueError(
                f"pbc[{d}] is True but lattice vector {d} of the cell is zero; give the cell "
                f"a nonzero vector in that direction or set pbc[{d}] = False."
            )
    if periodic and torch.linalg.matrix_rank(cell[periodic]) < len(periodic):
        raise ValueError(
            f"the periodic lattice vectors {periodic} of the cell {cell.tolist()} are linearly "
            "dependent; fix the cell or make the redundant directions non-periodic."
        )
    scale = float(cell.norm(dim=1).prod())
    if scale > 0 and abs(float(torch.linalg.det(cell))) > _SINGULAR_CELL_TOLERANCE * scale:
        return cell
    full = cell.clone()
    basis = [cell[d] / cell[d].norm() for d in periodic]
    for d in range(3):
        if d in periodic:
            continue
        for trial in torch.eye(3, dtype=cell.dtype, device=cell.device):
            vector = trial.clone()
            for b in basis:
                vector = vector - (vector @ b) * b
            if float(vector.norm()) > 0.5:
                vector = vector / vector.norm()
                basis.append(vector)
                full[d] = vector
                break
    return full


def _cell_heights(cell: torch.Tensor) -> list[float]:
    """Distance between opposite faces of the cell along each direction, in Å."""
    volume = abs(float(torch.linalg.det(cell)))
    heights = []
    for d in range(3):
        e, f = [k for k in range(3) if k != d]
        heights.append(volume / float(torch.linalg.cross(cell[e], cell[f]).norm()))
    return heights


def _images_needed(cell: torch.Tensor, pbc: torch.Tensor, r_max: float) -> list[int]:
    """Number of image cells on each side needed per direction (0 if not periodic)."""
    heights = _cell_heights(cell)
    return [math.ceil(r_max / heights[d]) if bool(pbc[d]) else 0 for d in range(3)]


def _choose_backend(num_atoms: int, cell: torch.Tensor, pbc: torch.Tensor, r_max: float) -> str:
    """The ``"auto"`` rule: torch for open, tiny or thin-cell systems, nvalchemi otherwise."""
    if not bool(pbc.any()):
        return "torch" if num_atoms <= TORCH_MAX_OPEN_ATOMS else "nvalchemi"
    heights = _cell_heights(cell)
    thin = any(bool(pbc[d]) and heights[d] < 2.0 * r_max for d in range(3))
    if num_atoms <= TORCH_MAX_ATOMS or thin:
        return "torch"
    return "nvalchemi"


def _torch_neighbor_list(
    positions: torch.Tensor,
    cell: torch.Tensor,
    pbc: torch.Tensor,
    r_max: float,
    images: list[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Brute-force neighbour list over all needed image shifts (float64, chunked)."""
    num_atoms = positions.shape[0]
    device = positions.device
    periodic = pbc.to(positions.dtype)
    # Wrap periodic fractional coordinates into [0, 1); remember the integer offsets k.
    fractional = positions @ torch.linalg.inv(cell)
    offsets = torch.floor(fractional) * periodic
    wrapped = positions - offsets @ cell
    shifts = torch.tensor(
        list(itertools.product(*[range(-n, n + 1) for n in images])),
        dtype=positions.dtype,
        device=device,
    )
    shift_vectors = shifts @ cell
    zero_shift = (shifts == 0).all(dim=1)
    atom_index = torch.arange(num_atoms, device=device)
    chunk = max(1, _TORCH_CHUNK_PAIRS // max(1, shifts.shape[0] * num_atoms))
    senders, receivers, wrapped_shifts = [], [], []
    for start in range(0, num_atoms, chunk):
        rows = atom_index[start : start + chunk]
        # (rows, shifts, receivers, 3)
        vectors = (
            wrapped[None, None, :, :]
            - wrapped[rows][:, None, None, :]
            + shift_vectors[None, :, None, :]
        )
        close = (vectors * vectors).sum(dim=-1) < r_max * r_max
        self_edge = (rows[:, None] == atom_index[None, :])[:, None, :] & zero_shift[None, :, None]
        i, s, j = torch.nonzero(close & ~self_edge, as_tuple=True)
        senders.append(rows[i])
        receivers.append(j)
        wrapped_shifts.append(shifts[s])
    sender = torch.cat(senders)
    receiver = torch.cat(receivers)
    # positions[j] - positions[i] + S @ cell with S = S_wrapped + k_i - k_j.
    unit_shifts = torch.cat(wrapped_shifts) + offsets[sender] - offsets[receiver]
    edge_index = torch.stack([sender, receiver])
    return edge_index.long(), torch.round(unit_shifts).long()


def _nvalchemi_neighbor_list(
    positions: torch.Tensor,
    cell: torch.Tensor,
    pbc: torch.Tensor,
    r_max: float,
    images: list[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Neighbour list from nvalchemi-toolkit-ops (Warp), retrying if its buffer overflows."""
    # Imported here: importing Warp takes seconds and prints a CUDA notice on CPU machines.
    from nvalchemiops.torch.neighbors import NeighborOverflowError
    from nvalchemiops.torch.neighbors import neighbor_list as nvalchemi_neighbor_list

    num_atoms = positions.shape[0]
    num_images = math.prod(2 * n + 1 for n in images)
    upper_bound = max(1, num_atoms * num_images)
    max_neighbors = min(upper_bound, _estimate_max_neighbors(positions, cell, pbc, r_max))
    periodic = bool(pbc.any())
    for _ in range(16):
        try:
            if periodic:
                pairs, _, shifts = nvalchemi_neighbor_list(
                    positions,
                    r_max,
                    cell=cell,
                    pbc=pbc,
                    return_neighbor_list=True,
                    max_neighbors=max_neighbors,
                )
            else:
                pairs, _ = nvalchemi_neighbor_list(
                    positions, r_max, return_neighbor_list=True, max_neighbors=max_neighbors
                )
                shifts = torch.zeros(pairs.shape[1], 3, dtype=torch.int64, device=pairs.device)
            return pairs.long(), shifts.long()
        except NeighborOverflowError as error:
            needed = max(int(error.num_neighbors) + 8, 2 * max_neighbors)
            max_neighbors = min(upper_bound, needed)
    raise RuntimeError(
        "nvalchemi neighbor_list kept overflowing its buffer "
        f"(last max_neighbors={max_neighbors}); use backend='torch'."
    )


def _estimate_max_neighbors(
    positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, r_max: float
) -> int:
    """Generous guess of the largest neighbour count from the mean density."""
    extent = positions.max(dim=0).values - positions.min(dim=0).values
    lengths = [
        float(cell[d].norm()) if bool(pbc[d]) else max(float(extent[d]), 2.0 * r_max)
        for d in range(3)
    ]
    volume = max(math.prod(lengths), 1e-12)
    if bool(pbc.all()):
        volume = abs(float(torch.linalg.det(cell)))
    sphere = 4.0 / 3.0 * math.pi * r_max**3
    return max(64, int(2.0 * positions.shape[0] / volume * sphere) + 16)


def _canonical_order(
    edge_index: torch.Tensor, unit_shifts: torch.Tensor, num_atoms: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort edges by (sender, receiver, shift) so both backends return identical tensors."""
    order = torch.arange(edge_index.shape[1], device=edge_index.device)
    keys = [unit_shifts[:, 2], unit_shifts[:, 1], unit_shifts[:, 0], edge_index[1], edge_index[0]]
    for key in keys:  # least significant first; stable sorts keep earlier orderings
        order = order[torch.sort(key[order], stable=True).indices]
    return edge_index[:, order].contiguous(), unit_shifts[order].contiguous()
