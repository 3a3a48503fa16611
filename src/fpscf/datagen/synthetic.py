"""Synthetic labelled data from a random "teacher" fpscf model, for examples and tests of training:
water monomers and dimers (every third structure), rattled, half of them in a random field,
with energy, forces, dipole (−∂E/∂ε), converged atomic multipoles and Fermi level as labels."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import molecule

TEACHER_ARCHITECTURE: dict[str, Any] = dict(
    r_max=3.5, num_channels=8, max_L=1, num_interactions=1, atomic_multipoles_max_l=1,
    fixedpoint_update_config={"nonlinearity_cls": "MLPNonLinearity"},
)


def teacher_structures(
    n: int, seed: int, teacher_seed: int = 101, field_scale: float = 0.05,
    progress: Callable[[str], None] | None = None,
) -> list[Atoms]:
    """``n`` labelled structures (Å, eV, e·Å, e; fields in ``info["external_field"]``, V/Å).
    ``progress`` (if given) is called with one line per labelled structure."""
    from fpscf import FixedPointCalculator, build_model

    rng = np.random.default_rng(seed)
    teacher = build_model([1, 8], seed=teacher_seed, **TEACHER_ARCHITECTURE)
    calc = FixedPointCalculator(teacher, scf_tolerance=1e-10)
    structures = []
    start = time.perf_counter()
    for k in range(n):
        atoms = molecule("H2O")
        if k % 3 == 2:
            other = molecule("H2O")
            other.positions += [2.9, 0.2, 0.1]
            atoms += other
        atoms.rattle(0.08, seed=int(rng.integers(1 << 30)))
        if k % 2:
            atoms.info["external_field"] = list(rng.normal(scale=field_scale, size=3))
        calc.calculate(atoms, ["energy"])
        atoms.info.update(energy=calc.results["energy"], dipole=calc.results["dipole"], fermi_level=calc.results["fermi_level"])
        atoms.arrays["forces"] = calc.results["forces"]
        atoms.arrays["atomic_multipoles"] = calc.results["atomic_multipoles"]
        atoms.calc = None
        structures.append(atoms)
        if progress is not None:
            progress(f"{k + 1}/{n} structures labelled ({atoms.get_chemical_formula()}, "
                     f"{calc.results['scf_steps']} SCF steps, {time.perf_counter() - start:.1f} s)")
    return structures
