"""Data layer: ASE structures and extended XYZ files to batched atomic graphs.

Units: positions and cells in Å, fields in V/Å and T, charges in e; label units are listed in
:mod:`fpscf.data.labels`. Edge convention: :mod:`fpscf.data.graph`.
"""

from __future__ import annotations

from fpscf.data.extxyz import load_dataset, read_extxyz, write_extxyz
from fpscf.data.graph import (
    AtomicGraph,
    apply_strain,
    atoms_to_graph,
    collate,
    edge_vectors,
    graph_to_atoms,
    unbatch,
)
from fpscf.data.labels import INPUT_NAMES, LABEL_NAMES, PER_ATOM_LABELS, KeyMap, read_properties
from fpscf.data.neighbors import neighbor_list

__all__ = [
    "INPUT_NAMES",
    "LABEL_NAMES",
    "PER_ATOM_LABELS",
    "AtomicGraph",
    "KeyMap",
    "apply_strain",
    "atoms_to_graph",
    "collate",
    "edge_vectors",
    "graph_to_atoms",
    "load_dataset",
    "neighbor_list",
    "read_extxyz",
    "read_properties",
    "unbatch",
    "write_extxyz",
]
