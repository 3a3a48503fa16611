"""Write data/train.xyz and data/valid.xyz for the magnetic example: 60 Fe clusters (2–5 atoms)
labelled by the analytic Heisenberg + Landau + Zeeman paramagnet (fpscf.datagen.spin_model): half
with moments relaxed in random fields up to 200 T (energy, forces, magmoms, magnetic_moment), half
with random constrained moments at B = 0 (energy, forces, magmoms, noncollinear_magnetic_forces).
Usage: python examples/magnetic_spin_model/make_data.py [output directory]"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from fpscf.data.extxyz import write_extxyz
from fpscf.datagen.spin_model import PARAMAGNET, spin_dataset

N_STRUCTURES, N_TRAIN = 60, 51


def main(out: Path) -> None:
    structures = spin_dataset(PARAMAGNET, N_STRUCTURES, seed=0)
    np.random.default_rng(5).shuffle(structures)  # mix relaxed and constrained structures in both sets
    out.mkdir(parents=True, exist_ok=True)
    write_extxyz(out / "train.xyz", structures[:N_TRAIN])
    write_extxyz(out / "valid.xyz", structures[N_TRAIN:])
    print(f"wrote {out}/train.xyz ({N_TRAIN}) and valid.xyz ({N_STRUCTURES - N_TRAIN})")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data")
