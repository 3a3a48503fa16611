"""Rattled and strained cells of a zinc-blende crystal: the structures of ``fpscf data crystal``.

Sample 0 is the ideal cell at the given lattice constant; every other sample is the ``supercell``
of the 8-atom cubic cell (``cell="cubic"``) or the 2-atom primitive cell (``cell="primitive"``: cheap
enough for many DFPT response labels) under a random symmetric strain (each component
uniform in ±``max_strain``) with every atom displaced by a Gaussian of a width drawn uniformly from
``rattle`` (Å). Structures carry ``info["sample_id"]`` and ``info["rattle"]``/``info["strain"]``.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk

#: LDA equilibrium lattice constants (Å) with Debian's quantum-espresso-data potentials at 30 Ry
#: (``fpscf.datagen.crystal.equilibrium_lattice_constant``).
LDA_LATTICE_CONSTANTS = {"AlAs": 5.595}


def sample_crystal_structures(
    n: int, seed: int, *, formula: str = "AlAs", lattice_constant: float | None = None,
    supercell: tuple[int, int, int] = (1, 1, 1), rattle: tuple[float, float] = (0.01, 0.08), max_strain: float = 0.02,
    cell: str = "cubic",
) -> list[Atoms]:
    """``n`` periodic cells of the zinc-blende ``formula`` (positions Å), sample 0 ideal."""
    if n < 0 or not 0 <= rattle[0] <= rattle[1] or not 0 <= max_strain < 0.2:
        raise ValueError(f"need n ≥ 0, 0 ≤ rattle[0] ≤ rattle[1] and 0 ≤ max_strain < 0.2; got {n}, {rattle}, {max_strain}")
    if lattice_constant is None:
        if formula not in LDA_LATTICE_CONSTANTS:
            raise ValueError(f"no default lattice constant for {formula!r}; pass lattice_constant (Å)")
        lattice_constant = LDA_LATTICE_CONSTANTS[formula]
    if cell not in ("cubic", "primitive"):
        raise ValueError(f"cell must be 'cubic' or 'primitive', got {cell!r}")
    ideal = bulk(formula, "zincblende", a=lattice_constant, cubic=cell == "cubic").repeat(tuple(supercell))
    ideal.arrays.pop("initial_magmoms", None)
    rng = np.random.default_rng(seed)
    structures = []
    for index in range(n):
        atoms = ideal.copy()
        width, strain = 0.0, np.zeros((3, 3))
        if index > 0:
            width = float(rng.uniform(*rattle))
            upper = rng.uniform(-max_strain, max_strain, size=(3, 3))
            strain = np.triu(upper) + np.triu(upper, 1).T
            atoms.set_cell(ideal.cell.array @ (np.eye(3) + strain), scale_atoms=True)
            atoms.positions += rng.normal(scale=width, size=atoms.positions.shape)
        atoms.info.update({"sample_id": index, "rattle": width, "strain": strain.reshape(-1)})
        structures.append(atoms)
    return structures


def equilibrium_lattice_constant(formula: str, settings, guess: float, step: float = 0.02) -> float:  # noqa: ANN001
    """Lattice constant (Å) of zero pressure from pw.x stresses of the primitive cell at
    ``guess ± step`` (linear interpolation of the pressure; one secant refinement)."""
    from fpscf.datagen.qe_labels import label_structure

    def pressure(a: float) -> float:
        return -float(np.trace(label_structure(bulk(formula, "zincblende", a=a), settings).info["stress"])) / 3

    low, high = guess - step, guess + step
    p_low, p_high = pressure(low), pressure(high)
    estimate = low - p_low * (high - low) / (p_high - p_low)
    p_mid = pressure(estimate)
    return estimate - p_mid * (high - low) / (p_high - p_low)


__all__ = ["LDA_LATTICE_CONSTANTS", "equilibrium_lattice_constant", "sample_crystal_structures"]
