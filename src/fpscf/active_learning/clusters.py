"""Clusters of whole water molecules cut around chosen atoms of a frame (periodic or open).

:func:`cluster_around` is :func:`fpscf.datagen.liquid.cut_cluster` generalised to what active
learning needs: the core is every molecule that holds one of the chosen atoms (a close contact
between two molecules keeps both), the frame may be periodic or an open cluster, and each cluster
atom remembers its index in the frame (``arrays["al_parent_index"]``). Molecules are found as in
:mod:`fpscf.datagen.liquid` (every H to its nearest O, minimum image), so a hopped proton counts
where it is and the cluster's ``total_charge`` is Σ (n_H − 2) e over its molecules.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.geometry import find_mic

from fpscf.datagen.liquid import _composition, assign_molecules


def _mic(vectors: np.ndarray, atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-image vectors (Å) and lengths; plain ones for open boundaries."""
    if atoms.pbc.any():
        return find_mic(vectors, atoms.cell, atoms.pbc)
    return vectors, np.linalg.norm(vectors, axis=-1)


def cluster_around(
    frame: Atoms,
    chosen: Sequence[int],
    *,
    shell_radius: float = 3.2,
    min_molecules: int = 3,
    max_molecules: int = 6,
) -> Atoms:
    """Whole molecules around the atoms ``chosen`` of ``frame`` (H and O only), open boundaries.

    The core molecules (those holding a chosen atom) come first, then the others in order of
    their O's distance (Å, minimum image) to the nearest core O: all within ``shell_radius``, at
    least ``min_molecules`` and at most ``max_molecules`` in all (the core is always kept, even
    if larger). Every molecule is made whole and placed at its minimum-image position relative
    to the first core O; the centre of mass is put at the origin; ``pbc`` False, no cell.

    ``info``: ``total_charge`` (int, e), ``composition`` (as in the data sets) and the frame's
    ``external_field`` (V/Å); ``arrays["al_parent_index"]``: index of each atom in ``frame``.

    Raises:
        ValueError: no atoms chosen, an index out of range, bad bounds, an element other than
            H and O, or a cluster reaching beyond half the narrowest width of a periodic cell.
    """
    chosen = [int(i) for i in chosen]
    if not chosen or min(chosen) < 0 or max(chosen) >= len(frame):
        raise ValueError(f"chosen atoms {chosen}: expected indices of the frame's {len(frame)} atoms")
    if not 1 <= min_molecules <= max_molecules:
        raise ValueError(f"molecule bounds {min_molecules}..{max_molecules}: expected 1 <= min <= max")
    if not shell_radius > 0:
        raise ValueError(f"shell_radius = {shell_radius} Å: expected > 0")
    molecules = assign_molecules(frame)
    owner = {atom: m for m, (o, hs) in enumerate(molecules) for atom in (o, *hs)}
    core = list(dict.fromkeys(owner[i] for i in chosen))
    oxygens = np.array([o for o, _ in molecules])
    positions = frame.positions
    # distance of every O to each core O (minimum image); a molecule is anchored at its nearest core O
    pair_vectors = positions[oxygens][:, None, :] - positions[oxygens[core]][None, :, :]
    to_core = _mic(pair_vectors.reshape(-1, 3), frame)[1].reshape(len(oxygens), len(core))
    distances = to_core.min(axis=1)
    others = [int(m) for m in np.argsort(distances, kind="stable") if int(m) not in core]
    inside = sum(1 for m in others if distances[m] <= shell_radius)
    extra = max(min(inside, max_molecules - len(core)), min(min_molecules, len(molecules)) - len(core), 0)
    members = core + others[:extra]
    placed = {core[0]: np.zeros(3)}
    half = 0.5 * _narrowest_width(frame) if frame.pbc.any() else np.inf
    for member in members[1:]:
        anchor = core[0] if member in core else core[int(np.argmin(to_core[member]))]
        vector, length = _mic(positions[oxygens[member]] - positions[oxygens[anchor]], frame)
        if float(np.max(length)) >= half:
            raise ValueError(f"molecule {member} is {float(np.max(length)):.2f} Å from the core molecule it is placed "
                             f"by, beyond half the cell ({half:.2f} Å): the box is too small for this cluster")
        placed[member] = placed[anchor] + np.reshape(vector, 3)
    o_vectors = [placed[m] for m in members]
    numbers, cluster_positions, parents, species = [], [], [], []
    for member, o_position in zip(members, o_vectors):
        o, hydrogens = molecules[member]
        bonds = _mic(positions[hydrogens] - positions[o], frame)[0].reshape(-1, 3)
        numbers += [8] + [1] * len(hydrogens)
        cluster_positions += [o_position] + list(o_position + bonds)
        parents += [o, *hydrogens]
        species.append(len(hydrogens))
    cluster = Atoms(numbers=numbers, positions=np.array(cluster_positions), pbc=False)
    cluster.positions -= cluster.get_center_of_mass()
    cluster.info["total_charge"] = int(sum(s - 2 for s in species))
    cluster.info["composition"] = _composition(species)
    cluster.info["external_field"] = np.asarray(frame.info.get("external_field", np.zeros(3)), dtype=float)
    cluster.arrays["al_parent_index"] = np.array(parents, dtype=int)
    return cluster


def _narrowest_width(atoms: Atoms) -> float:
    """Smallest distance (Å) between opposite faces of the cell."""
    cell = atoms.cell.array
    volume = abs(np.linalg.det(cell))
    return float(min(volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)))


__all__ = ["cluster_around"]
