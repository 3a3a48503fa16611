"""Atomic graphs: one structure or a batch of structures as torch tensors, and ASE conversion.

Edge convention (MACE's): ``edge_index[0]`` is the sender ``i``, ``edge_index[1]`` the receiver
``j``, and the edge vector from ``i`` to ``j`` is::

    positions[j] - positions[i] + unit_shifts[e] @ cell[batch[i]]        # Å

where ``unit_shifts`` are integer lattice translations stored as floats. Edge lists are full
(both directions) and contain periodic self-images but no zero-shift self-edges; see
:mod:`fpscf.data.neighbors`. Edge vectors are never stored: :func:`edge_vectors` recomputes them
from (possibly strained) positions and cell so that forces and stress follow by autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

from fpscf.data.labels import (
    PER_ATOM_LABELS,
    PER_PAIR_LABELS,
    KeyMap,
    default_label_shape,
    label_dtype_kind,
    read_properties,
    to_storage,
)
from fpscf.data.neighbors import Backend, neighbor_list
from fpscf.units import MIN_INTERATOMIC_DISTANCE


@dataclass
class AtomicGraph:
    """One structure or a batch of B structures with N atoms and E edges in total.

    Attributes:
        positions: (N, 3) float, Å.
        atomic_numbers: (N,) int64.
        cell: (B, 3, 3) float, Å, rows are lattice vectors. Rows of non-periodic directions may be
            zero; a fully open structure has an all-zero cell.
        pbc: (B, 3) bool, periodic directions.
        batch: (N,) int64, structure index of each atom (atoms of a structure are contiguous).
        ptr: (B + 1,) int64, atoms of structure b are ``ptr[b]:ptr[b+1]``.
        edge_index: (2, E) int64, ``[sender, receiver]`` (see module docstring).
        unit_shifts: (E, 3) float, integer-valued lattice translations of the receiver.
        external_field: (B, 3) float, applied electric field, V/Å.
        magnetic_field: (B, 3) float, applied magnetic field, T.
        total_charge: (B,) float, e.
        labels: property name -> reference values; per-atom labels (``PER_ATOM_LABELS``) have
            leading dimension N, the others B. Shapes and units: :mod:`fpscf.data.labels`.
            Missing values are zero-filled.
        label_masks: property name -> (B,) bool, True where the structure has that label.
        weights: property name -> (B,) float loss weight per structure (default 1).
        initial_magmoms: (N, 3) float, starting (or, for constrained moments, fixed) magnetic
            moments, μ_B, axial vectors; collinear moments s are stored as (0, 0, s). None: absent;
            NaN rows: structures batched (``collate``) with others but without initial moments.
        spin_on: (B,) bool, whether each structure is magnetic (spin-polarised). None: all are.
    """

    positions: torch.Tensor
    atomic_numbers: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    batch: torch.Tensor
    ptr: torch.Tensor
    edge_index: torch.Tensor
    unit_shifts: torch.Tensor
    external_field: torch.Tensor
    magnetic_field: torch.Tensor
    total_charge: torch.Tensor
    labels: dict[str, torch.Tensor] = field(default_factory=dict)
    label_masks: dict[str, torch.Tensor] = field(default_factory=dict)
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    initial_magmoms: torch.Tensor | None = None
    spin_on: torch.Tensor | None = None

    def __post_init__(self) -> None:
        _check_graph(self)

    @property
    def num_graphs(self) -> int:
        """Number of structures B."""
        return int(self.cell.shape[0])

    @property
    def num_atoms(self) -> int:
        """Total number of atoms N."""
        return int(self.positions.shape[0])

    @property
    def num_edges(self) -> int:
        """Total number of edges E."""
        return int(self.edge_index.shape[1])

    @property
    def num_atoms_per_graph(self) -> torch.Tensor:
        """(B,) int64, number of atoms of each structure."""
        return self.ptr[1:] - self.ptr[:-1]

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> AtomicGraph:
        """Copy to ``device``; floats become ``dtype``, int64 and bool tensors keep their dtype."""

        def move(tensor: torch.Tensor) -> torch.Tensor:
            if tensor.is_floating_point():
                return tensor.to(device=device, dtype=dtype)
            return tensor.to(device=device)

        return _map_tensors(self, move)

    def clone(self) -> AtomicGraph:
        """Deep copy of every tensor."""
        return _map_tensors(self, torch.Tensor.clone)


_TENSOR_FIELDS: tuple[str, ...] = (
    "positions",
    "atomic_numbers",
    "cell",
    "pbc",
    "batch",
    "ptr",
    "edge_index",
    "unit_shifts",
    "external_field",
    "magnetic_field",
    "total_charge",
)
_DICT_FIELDS: tuple[str, ...] = ("labels", "label_masks", "weights")
_OPTIONAL_FIELDS: tuple[str, ...] = ("initial_magmoms", "spin_on")


def _map_tensors(graph: AtomicGraph, function) -> AtomicGraph:  # noqa: ANN001
    """New graph with ``function`` applied to every tensor."""
    values = {name: function(getattr(graph, name)) for name in _TENSOR_FIELDS}
    for name in _OPTIONAL_FIELDS:
        value = getattr(graph, name)
        values[name] = None if value is None else function(value)
    for name in _DICT_FIELDS:
        values[name] = {key: function(t) for key, t in getattr(graph, name).items()}
    return AtomicGraph(**values)


def _check_graph(graph: AtomicGraph) -> None:
    """Shape and dtype checks (no data-dependent synchronisation)."""
    n, b, e = graph.positions.shape[0], graph.cell.shape[0], graph.edge_index.shape[-1]
    expected = {
        "positions": ((n, 3), "float"),
        "atomic_numbers": ((n,), torch.int64),
        "cell": ((b, 3, 3), "float"),
        "pbc": ((b, 3), torch.bool),
        "batch": ((n,), torch.int64),
        "ptr": ((b + 1,), torch.int64),
        "edge_index": ((2, e), torch.int64),
        "unit_shifts": ((e, 3), "float"),
        "external_field": ((b, 3), "float"),
        "magnetic_field": ((b, 3), "float"),
        "total_charge": ((b,), "float"),
        "initial_magmoms": ((n, 3), "float"),
        "spin_on": ((b,), torch.bool),
    }
    for name, (shape, dtype) in expected.items():
        tensor = getattr(graph, name)
        if tensor is None and name in _OPTIONAL_FIELDS:
            continue
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(
                f"AtomicGraph.{name} is a {type(tensor).__name__}, expected a torch.Tensor."
            )
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"AtomicGraph.{name} has shape {tuple(tensor.shape)}, expected {shape} "
                f"(N={n} atoms, B={b} structures, E={e} edges)."
            )
        if dtype == "float":
            if tensor.dtype != graph.positions.dtype or not tensor.is_floating_point():
                raise ValueError(
                    f"AtomicGraph.{name} has dtype {tensor.dtype}, expected the floating dtype "
                    f"of positions ({graph.positions.dtype})."
                )
        elif tensor.dtype != dtype:
            raise ValueError(f"AtomicGraph.{name} has dtype {tensor.dtype}, expected {dtype}.")
    for name, value in graph.labels.items():
        lead = _label_lead(name, graph)
        if value.ndim == 0 or value.shape[0] != lead:
            what = "atoms" if name in PER_ATOM_LABELS else "atom pairs" if name in PER_PAIR_LABELS else "structures"
            raise ValueError(
                f"AtomicGraph.labels['{name}'] has shape {tuple(value.shape)}, expected leading "
                f"dimension {lead} ({what})."
            )
        if name not in graph.label_masks:
            raise ValueError(f"AtomicGraph.labels['{name}'] has no entry in label_masks.")
    for kind, entries in (("label_masks", graph.label_masks), ("weights", graph.weights)):
        for name, value in entries.items():
            if tuple(value.shape) != (b,):
                raise ValueError(
                    f"AtomicGraph.{kind}['{name}'] has shape {tuple(value.shape)}, expected ({b},)."
                )
            if kind == "label_masks" and value.dtype != torch.bool:
                raise ValueError(
                    f"AtomicGraph.label_masks['{name}'] has dtype {value.dtype}, expected bool."
                )


def edge_vectors(
    graph: AtomicGraph, positions: torch.Tensor | None = None, cell: torch.Tensor | None = None
) -> torch.Tensor:
    """Edge vectors ``positions[j] - positions[i] + unit_shifts @ cell[batch[i]]``, (E, 3) Å.

    Differentiable with respect to ``positions`` (N, 3) Å and ``cell`` (B, 3, 3) Å, which default
    to the graph's own. For stress, pass the strained positions and cell of :func:`apply_strain`.
    """
    positions = graph.positions if positions is None else positions
    cell = graph.cell if cell is None else cell
    if tuple(positions.shape) != (graph.num_atoms, 3):
        raise ValueError(
            f"edge_vectors: positions have shape {tuple(positions.shape)}, "
            f"expected ({graph.num_atoms}, 3)."
        )
    if tuple(cell.shape) != (graph.num_graphs, 3, 3):
        raise ValueError(
            f"edge_vectors: cell has shape {tuple(cell.shape)}, "
            f"expected ({graph.num_graphs}, 3, 3)."
        )
    sender, receiver = graph.edge_index
    shifts = torch.einsum("ei,eij->ej", graph.unit_shifts.to(cell.dtype), cell[graph.batch[sender]])
    return positions[receiver] - positions[sender] + shifts


def apply_strain(graph: AtomicGraph, strain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions and cell deformed by a homogeneous strain.

    ``r' = r (I + strain)`` for positions (N, 3) and every cell row; ``strain`` is (B, 3, 3),
    dimensionless, usually zeros with ``requires_grad``. With ASE's convention the stress is
    ``(1/V) dE/dstrain`` at ``strain = 0`` (eV/Å³).

    Returns:
        positions: (N, 3) Å; cell: (B, 3, 3) Å.
    """
    if tuple(strain.shape) != (graph.num_graphs, 3, 3):
        raise ValueError(
            f"apply_strain: strain has shape {tuple(strain.shape)}, "
            f"expected ({graph.num_graphs}, 3, 3)."
        )
    positions = graph.positions + torch.einsum("ni,nij->nj", graph.positions, strain[graph.batch])
    cell = graph.cell + torch.bmm(graph.cell, strain)
    return positions, cell


def atoms_to_graph(
    atoms: Atoms,
    r_max: float,
    key_map: KeyMap | None = None,
    species: list[int] | None = None,
    index: int = 0,
    *,
    dtype: torch.dtype = torch.float64,
    backend: Backend = "auto",
) -> AtomicGraph:
    """Graph of one structure with its labels, fields and neighbour list.

    Args:
        atoms: the structure; labels, weights, fields and total charge are read from
            ``atoms.info``, ``atoms.arrays`` or a ``SinglePointCalculator`` as ``key_map`` says
            (fields and charge default to zero).
        r_max: cutoff in Å.
        key_map: property -> key names, ``KeyMap()`` by default.
        species: atomic numbers the model knows; other elements are rejected. None accepts all.
        index: position of the structure in its data set, for error messages.
        dtype: floating dtype of the graph.
        backend: neighbour-list backend (:func:`fpscf.data.neighbors.neighbor_list`).

    Raises:
        ValueError: empty structure, unknown element, non-finite positions, bad cell, two atoms
            (or an atom and a periodic image) closer than ``MIN_INTERATOMIC_DISTANCE``, or a
            malformed label; the message names the structure index.
    """
    if not isinstance(atoms, Atoms):
        raise TypeError(f"structure {index}: expected an ase.Atoms, got {type(atoms).__name__}.")
    if not isinstance(r_max, (int, float)) or not math.isfinite(r_max) or r_max <= 0:
        raise ValueError(f"r_max={r_max!r} must be a positive finite cutoff in Å.")
    if len(atoms) == 0:
        raise ValueError(f"structure {index} has no atoms; remove it from the data set.")
    numbers = np.array(atoms.numbers, dtype=np.int64)  # copies: the graph owns its memory
    if species is not None:
        _check_species(numbers, species, index)
    positions = np.array(atoms.positions, dtype=np.float64)
    if not np.all(np.isfinite(positions)):
        bad = int(np.nonzero(~np.isfinite(positions).all(axis=1))[0][0])
        raise ValueError(
            f"structure {index}: atom {bad} has non-finite position {positions[bad].tolist()}."
        )
    cell = np.array(atoms.cell.array, dtype=np.float64)
    pbc = np.array(atoms.pbc, dtype=bool)
    properties = read_properties(atoms, key_map, index)

    positions_t, cell_t = torch.from_numpy(positions), torch.from_numpy(cell)
    pbc_t = torch.from_numpy(pbc)
    try:
        edge_index, shifts = neighbor_list(
            positions_t, cell_t, pbc_t, max(float(r_max), MIN_INTERATOMIC_DISTANCE), backend=backend
        )
    except ValueError as error:
        raise ValueError(f"structure {index}: {error}") from None
    vectors = positions_t[edge_index[1]] - positions_t[edge_index[0]] + shifts.double() @ cell_t
    lengths = vectors.norm(dim=1)
    _check_overlaps(edge_index, shifts, lengths, index)
    if r_max < MIN_INTERATOMIC_DISTANCE:
        keep = lengths < r_max
        edge_index, shifts = edge_index[:, keep], shifts[keep]

    key_map = KeyMap() if key_map is None else key_map
    labels, masks = {}, {}
    for name in key_map.label_keys():
        value = properties.labels.get(name)
        masks[name] = torch.tensor([value is not None])
        if value is None:
            value = np.zeros(default_label_shape(name, len(atoms)))
        labels[name] = _label_tensor(name, value, dtype)
    weights = {name: torch.tensor([w], dtype=dtype) for name, w in properties.weights.items()}
    return AtomicGraph(
        positions=positions_t.to(dtype),
        atomic_numbers=torch.from_numpy(numbers),
        cell=cell_t.to(dtype)[None],
        pbc=pbc_t[None],
        batch=torch.zeros(len(atoms), dtype=torch.int64),
        ptr=torch.tensor([0, len(atoms)], dtype=torch.int64),
        edge_index=edge_index,
        unit_shifts=shifts.to(dtype),
        external_field=torch.as_tensor(properties.external_field, dtype=dtype)[None],
        magnetic_field=torch.as_tensor(properties.magnetic_field, dtype=dtype)[None],
        total_charge=torch.tensor([properties.total_charge], dtype=dtype),
        labels=labels,
        label_masks=masks,
        weights=weights,
        initial_magmoms=_initial_magmoms(atoms, index, dtype),
        spin_on=None if atoms.info.get("spin_on") is None else torch.tensor([bool(atoms.info["spin_on"])]),
    )


def _initial_magmoms(atoms: Atoms, index: int, dtype: torch.dtype) -> torch.Tensor | None:
    """Starting moments (N, 3) μ_B from ``arrays["initial_noncollinear_magmoms"]`` (N, 3) or ASE's
    ``initial_magmoms`` ((N,) collinear, stored as (0, 0, s), or (N, 3)); None when absent."""
    for key in ("initial_noncollinear_magmoms", "initial_magmoms"):
        if key not in atoms.arrays:
            continue
        value = np.asarray(atoms.arrays[key], dtype=np.float64)
        if value.shape == (len(atoms),):
            value = np.stack([np.zeros_like(value), np.zeros_like(value), value], axis=1)
        if value.shape != (len(atoms), 3) or not np.all(np.isfinite(value)):
            raise ValueError(
                f"structure {index}: arrays['{key}'] must be finite with shape (N,) (collinear) or "
                f"(N, 3) (non-collinear) in μ_B, got shape {value.shape}"
            )
        return torch.tensor(value, dtype=dtype)
    return None


def _label_tensor(name: str, value: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """Stored-shape numpy label -> tensor; per-structure labels get a leading batch axis of 1."""
    kind = label_dtype_kind(name)
    torch_dtype = torch.int64 if kind == "int" else torch.bool if kind == "bool" else dtype
    tensor = torch.as_tensor(np.asarray(value)).to(torch_dtype)
    return tensor if name in PER_ATOM_LABELS or name in PER_PAIR_LABELS else tensor[None]


def _label_lead(name: str, graph: AtomicGraph) -> int:
    """Leading dimension of label ``name`` in ``graph``: atoms, Σ N_b² atom pairs, or structures."""
    if name in PER_ATOM_LABELS:
        return graph.num_atoms
    if name in PER_PAIR_LABELS:
        return int((graph.num_atoms_per_graph ** 2).sum())
    return graph.num_graphs


def pair_offsets(graph: AtomicGraph) -> list[int]:
    """Start of each structure's rows in a per-pair label (:data:`PER_PAIR_LABELS`), and the total: (B + 1,)."""
    offsets = [0]
    for count in graph.num_atoms_per_graph.tolist():
        offsets.append(offsets[-1] + int(count) ** 2)
    return offsets


def _check_species(numbers: np.ndarray, species: list[int], index: int) -> None:
    known = sorted(int(z) for z in species)
    unknown = np.nonzero(~np.isin(numbers, known))[0]
    if len(unknown) > 0:
        atom = int(unknown[0])
        z = int(numbers[atom])
        symbol = chemical_symbols[z] if 0 <= z < len(chemical_symbols) else f"Z={z}"
        names = ", ".join(f"{chemical_symbols[k]} ({k})" for k in known)
        raise ValueError(
            f"structure {index}: element {symbol} (Z={z}, atom {atom}) is not among the model's "
            f"species [{names}]. Remove the structure or use a model trained with {symbol}."
        )


def _check_overlaps(
    edge_index: torch.Tensor, shifts: torch.Tensor, lengths: torch.Tensor, index: int
) -> None:
    if lengths.numel() == 0:
        return
    shortest = int(torch.argmin(lengths))
    distance = float(lengths[shortest])
    if distance >= MIN_INTERATOMIC_DISTANCE:
        return
    i, j = int(edge_index[0, shortest]), int(edge_index[1, shortest])
    shift = tuple(int(s) for s in shifts[shortest])
    what = (
        f"atom {i} is {distance:.4g} Å from its own periodic image {shift}; the cell is too small"
        if i == j
        else f"atoms {i} and {j} are {distance:.4g} Å apart (image shift {shift})"
    )
    raise ValueError(
        f"structure {index}: {what}, closer than MIN_INTERATOMIC_DISTANCE = "
        f"{MIN_INTERATOMIC_DISTANCE} Å. Remove duplicated atoms or fix the cell."
    )


def graph_to_atoms(graph: AtomicGraph, key_map: KeyMap | None = None) -> list[Atoms]:
    """One ``ase.Atoms`` per structure, with labels where their mask is True.

    Per-structure labels go to ``atoms.info``, per-atom labels to ``atoms.arrays`` under the
    keys of ``key_map`` (Born effective charges flattened to (N, 9)); weights different from 1
    go to ``info["<property>_weight"]``; nonzero fields and total charge go to ``atoms.info``.
    """
    key_map = KeyMap() if key_map is None else key_map
    keys = key_map.label_keys()
    result = []
    for single in unbatch(graph):
        atoms = Atoms(
            numbers=single.atomic_numbers.cpu().numpy(),
            positions=_numpy(single.positions),
            cell=_numpy(single.cell[0]),
            pbc=single.pbc[0].cpu().numpy(),
        )
        for name, value in single.labels.items():
            if not bool(single.label_masks[name][0]):
                continue
            key = keys.get(name, name)
            if name in PER_ATOM_LABELS or name in PER_PAIR_LABELS:
                atoms.set_array(key, to_storage(name, _numpy(value)))
            else:
                atoms.info[key] = to_storage(name, _numpy(value[0]))
        for name, weight in single.weights.items():
            if float(weight[0]) != 1.0:
                atoms.info[key_map.weight_key(name)] = float(weight[0])
        if float(single.total_charge[0]) != 0.0:
            atoms.info[key_map.total_charge] = float(single.total_charge[0])
        if single.initial_magmoms is not None and bool(torch.isfinite(single.initial_magmoms).all()):
            atoms.set_array("initial_noncollinear_magmoms", _numpy(single.initial_magmoms))
        if single.spin_on is not None:
            atoms.info["spin_on"] = bool(single.spin_on[0])
        for name in ("external_field", "magnetic_field"):
            value = _numpy(getattr(single, name)[0])
            if np.any(value != 0.0):
                atoms.info[getattr(key_map, name)] = value
        result.append(atoms)
    return result


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    return (tensor.double() if tensor.is_floating_point() else tensor).numpy()


def collate(graphs: list[AtomicGraph]) -> AtomicGraph:
    """Batch graphs (single structures or batches) into one graph.

    Atom and edge tensors are concatenated with edge indices offset by the atoms before them;
    per-structure tensors are concatenated along B. A label absent from some graphs, or present
    only with masks all False, is zero-filled and masked there.

    Raises:
        ValueError: empty list, mixed dtypes or devices, or a label whose trailing shape differs
            between structures that have it (e.g. collinear and non-collinear magmoms).
    """
    if len(graphs) == 0:
        raise ValueError("collate: got an empty list of graphs; pass at least one AtomicGraph.")
    first = graphs[0]
    for k, graph in enumerate(graphs):
        if not isinstance(graph, AtomicGraph):
            raise TypeError(
                f"collate: item {k} is a {type(graph).__name__}, expected an AtomicGraph."
            )
        dtype, device = graph.positions.dtype, graph.positions.device
        if dtype != first.positions.dtype or device != first.positions.device:
            raise ValueError(
                f"collate: graph {k} is {dtype} on {device}, graph 0 is {first.positions.dtype} "
                f"on {first.positions.device}; call .to(device, dtype) first."
            )
    atom_offsets = [0]
    graph_offsets = [0]
    for graph in graphs:
        atom_offsets.append(atom_offsets[-1] + graph.num_atoms)
        graph_offsets.append(graph_offsets[-1] + graph.num_graphs)
    ptr_parts = [first.ptr[:1]] + [g.ptr[1:] + atom_offsets[k] for k, g in enumerate(graphs)]
    label_names = list(dict.fromkeys(name for g in graphs for name in g.labels))
    weight_names = list(dict.fromkeys(name for g in graphs for name in g.weights))

    def cat(name: str) -> torch.Tensor:
        return torch.cat([getattr(g, name) for g in graphs])

    return AtomicGraph(
        positions=cat("positions"),
        atomic_numbers=cat("atomic_numbers"),
        cell=cat("cell"),
        pbc=cat("pbc"),
        batch=torch.cat([g.batch + graph_offsets[k] for k, g in enumerate(graphs)]),
        ptr=torch.cat(ptr_parts),
        edge_index=torch.cat([g.edge_index + atom_offsets[k] for k, g in enumerate(graphs)], dim=1),
        unit_shifts=cat("unit_shifts"),
        external_field=cat("external_field"),
        magnetic_field=cat("magnetic_field"),
        total_charge=cat("total_charge"),
        labels={name: _collate_label(name, graphs) for name in label_names},
        label_masks={
            name: torch.cat([
                g.label_masks.get(name, torch.zeros_like(g.total_charge, dtype=torch.bool))
                for g in graphs
            ])
            for name in label_names
        },
        weights={
            name: torch.cat([
                g.weights.get(name, torch.ones_like(g.total_charge)) for g in graphs
            ])
            for name in weight_names
        },
        initial_magmoms=None if all(g.initial_magmoms is None for g in graphs) else torch.cat([
            g.positions.new_full((g.num_atoms, 3), math.nan) if g.initial_magmoms is None else g.initial_magmoms
            for g in graphs
        ]),
        spin_on=None if all(g.spin_on is None for g in graphs) else torch.cat([
            torch.ones_like(g.total_charge, dtype=torch.bool) if g.spin_on is None else g.spin_on for g in graphs
        ]),
    )


def _collate_label(name: str, graphs: list[AtomicGraph]) -> torch.Tensor:
    """Concatenate one label, zero-filling graphs where it is absent or entirely masked."""
    present = [(k, g) for k, g in enumerate(graphs) if name in g.labels]
    labelled = [(k, g) for k, g in present if bool(g.label_masks[name].any())]
    reference_k, reference = (labelled or present)[0]
    trailing = tuple(reference.labels[name].shape[1:])
    for k, graph in labelled:
        shape = tuple(graph.labels[name].shape[1:])
        if shape != trailing:
            raise ValueError(
                f"collate: label '{name}' has per-item shape {shape} in graph {k} but "
                f"{trailing} in graph {reference_k}; structures with different shapes of "
                f"'{name}' cannot share a batch (e.g. multipoles of different l_max, or "
                "collinear and non-collinear magmoms); batch such structures separately or "
                "make the labels consistent."
            )
    template = reference.labels[name]
    parts = []
    for graph in graphs:
        value = graph.labels.get(name)
        if value is None or tuple(value.shape[1:]) != trailing:
            value = template.new_zeros((_label_lead(name, graph), *trailing))
        parts.append(value)
    return torch.cat(parts)


def unbatch(graph: AtomicGraph) -> list[AtomicGraph]:
    """Split a batch back into single-structure graphs (inverse of :func:`collate`)."""
    ptr = graph.ptr.tolist()
    pairs = pair_offsets(graph)
    edge_graph = graph.batch[graph.edge_index[0]]
    result = []
    for b in range(graph.num_graphs):
        start, stop = ptr[b], ptr[b + 1]
        edges = edge_graph == b
        labels = {
            name: value[start:stop] if name in PER_ATOM_LABELS
            else value[pairs[b] : pairs[b + 1]] if name in PER_PAIR_LABELS else value[b : b + 1]
            for name, value in graph.labels.items()
        }
        result.append(
            AtomicGraph(
                positions=graph.positions[start:stop],
                atomic_numbers=graph.atomic_numbers[start:stop],
                cell=graph.cell[b : b + 1],
                pbc=graph.pbc[b : b + 1],
                batch=torch.zeros(stop - start, dtype=torch.int64, device=graph.batch.device),
                ptr=torch.tensor([0, stop - start], dtype=torch.int64, device=graph.ptr.device),
                edge_index=graph.edge_index[:, edges] - start,
                unit_shifts=graph.unit_shifts[edges],
                external_field=graph.external_field[b : b + 1],
                magnetic_field=graph.magnetic_field[b : b + 1],
                total_charge=graph.total_charge[b : b + 1],
                labels=labels,
                label_masks={name: m[b : b + 1] for name, m in graph.label_masks.items()},
                weights={name: w[b : b + 1] for name, w in graph.weights.items()},
                initial_magmoms=None if graph.initial_magmoms is None else graph.initial_magmoms[start:stop],
                spin_on=None if graph.spin_on is None else graph.spin_on[b : b + 1],
            )
        )
    return result


__all__ = [
    "AtomicGraph",
    "apply_strain",
    "atoms_to_graph",
    "collate",
    "edge_vectors",
    "graph_to_atoms",
    "unbatch",
]
