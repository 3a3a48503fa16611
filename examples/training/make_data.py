"""Write data/train.xyz and data/valid.xyz for the training example: water monomers and dimers,
rattled, half of them in a random field, labelled (energy, forces, dipole, multipoles, Fermi
level) by a random fpscf "teacher" model. Usage: python examples/training/make_data.py"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.build import molecule

from fpscf import FixedPointCalculator, build_model
from fpscf.data.extxyz import write_extxyz


def main(n: int = 40, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    teacher = build_model([1, 8], r_max=3.5, num_channels=8, max_L=1, num_interactions=1, seed=101,
                          fixedpoint_update_config={"nonlinearity_cls": "MLPNonLinearity"})
    calc = FixedPointCalculator(teacher, scf_tolerance=1e-10)
    structures = []
    for k in range(n):
        atoms = molecule("H2O")
        if k % 3 == 2:
            other = molecule("H2O")
            other.positions += [2.9, 0.2, 0.1]
            atoms += other
        atoms.rattle(0.08, seed=int(rng.integers(1 << 30)))
        if k % 2:
            atoms.info["external_field"] = list(rng.normal(scale=0.05, size=3))
        calc.calculate(atoms, ["energy"])
        atoms.info.update(energy=calc.results["energy"], dipole=calc.results["dipole"], fermi_level=calc.results["fermi_level"])
        atoms.arrays["forces"] = calc.results["forces"]
        atoms.arrays["atomic_multipoles"] = calc.results["atomic_multipoles"]
        atoms.calc = None
        structures.append(atoms)
    out = Path(__file__).parent / "data"
    out.mkdir(exist_ok=True)
    write_extxyz(out / "train.xyz", structures[: int(0.8 * n)])
    write_extxyz(out / "valid.xyz", structures[int(0.8 * n) :])
    print(f"wrote {out}/train.xyz ({int(0.8 * n)}) and valid.xyz ({n - int(0.8 * n)})")


if __name__ == "__main__":
    main()
