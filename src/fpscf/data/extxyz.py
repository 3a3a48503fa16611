"""Extended XYZ files: read labelled structures, load them as graphs, write them atomically.

Labels may be stored in ``atoms.info`` / ``atoms.arrays`` under the keys of :class:`KeyMap`, or in
the single-point calculator that ``ase.io.read`` builds for the standard ASE property names
(``energy``, ``forces``, ``stress``, ``dipole``, ``charges``, ``magmoms``, ...). Shapes, units and
sign conventions are listed in :mod:`fpscf.data.labels`; stress may be given in Voigt form
(xx, yy, zz, yz, xz, xy) or as 3x3, and is stored as (3, 3) with ASE's sign.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

import ase.io
import torch
from ase import Atoms

from fpscf.atomic_files import atomic_write
from fpscf.data.graph import AtomicGraph, atoms_to_graph
from fpscf.data.labels import KeyMap, read_properties
from fpscf.data.neighbors import Backend


def read_extxyz(
    path: str | os.PathLike[str], key_map: KeyMap | None = None, index: str | int = ":"
) -> list[Atoms]:
    """Read structures from an extended XYZ file and validate their labels.

    Args:
        path: the file.
        key_map: where labels are stored; ``KeyMap()`` by default. Every label it names is
            checked (shape, type, finiteness) here, so errors point at the file.
        index: ASE index string or integer (``":"`` = all structures).

    Returns:
        The structures, always as a list.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is empty, holds no structures, cannot be parsed, or has a malformed
            label (the message names the file, the structure index and the key).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"extxyz file not found: '{path}' (resolved: '{path.resolve()}').")
    if _is_blank(path):
        raise ValueError(f"extxyz file '{path}' is empty; it must hold at least one structure.")
    try:
        frames = ase.io.read(path, index=index, format="extxyz")
    except Exception as error:  # ASE raises many types for malformed files
        raise ValueError(
            f"could not parse '{path}' as extended XYZ: {type(error).__name__}: {error}"
        ) from error
    frames = [frames] if isinstance(frames, Atoms) else list(frames)
    if not frames:
        raise ValueError(f"extxyz file '{path}' holds no structures (index={index!r}).")
    for k, atoms in enumerate(frames):
        try:
            read_properties(atoms, key_map, k)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    return frames


def _is_blank(path: Path) -> bool:
    """True if the file holds only whitespace (read in chunks; stops at the first character)."""
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            if chunk.strip():
                return False
    return True


def load_dataset(
    path: str | os.PathLike[str],
    r_max: float,
    key_map: KeyMap | None = None,
    species: list[int] | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    backend: Backend = "auto",
) -> list[AtomicGraph]:
    """Read an extended XYZ file and convert every structure to an :class:`AtomicGraph`.

    Args:
        path: the file.
        r_max: neighbour cutoff in Å.
        key_map: where labels are stored; ``KeyMap()`` by default.
        species: atomic numbers the model knows (None accepts all elements).
        dtype: floating dtype of the graphs.
        backend: neighbour-list backend.

    Raises:
        FileNotFoundError, ValueError: as :func:`read_extxyz` and
            :func:`fpscf.data.graph.atoms_to_graph`, with the file named in the message.
    """
    frames = read_extxyz(path, key_map)
    graphs = []
    for k, atoms in enumerate(frames):
        try:
            graphs.append(
                atoms_to_graph(atoms, r_max, key_map, species, k, dtype=dtype, backend=backend)
            )
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    return graphs


def write_extxyz(path: str | os.PathLike[str], atoms_list: Atoms | list[Atoms]) -> None:
    """Write structures to an extended XYZ file atomically (temporary file, then ``os.replace``).

    ``info``, ``arrays`` and single-point calculator results are written, so
    :func:`read_extxyz` reads back the same labels. A reader never sees a half-written file.

    Precision: ASE writes per-atom columns (positions, forces, charges, ...) with a fixed 8
    decimals (1e-8 Å, 1e-8 eV/Å, ...) and per-structure values (energy, stress, ...) exactly.
    Rewriting values that were read from such a file is lossless.

    Raises:
        ValueError: nothing to write.
    """
    frames = [atoms_list] if isinstance(atoms_list, Atoms) else list(atoms_list)
    if not frames:
        raise ValueError(f"write_extxyz: no structures to write to '{path}'.")
    def write(stream: BinaryIO) -> None:
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="\n")
        ase.io.write(text, frames, format="extxyz")
        text.flush()
        text.detach()

    atomic_write(path, write, make_parents=True)


__all__ = ["KeyMap", "load_dataset", "read_extxyz", "write_extxyz"]
