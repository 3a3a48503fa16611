"""Start structures of the liquid-water active learning (examples/liquid_water/active_learning.yaml):
two periodic cubic boxes of 32 rigid water molecules at 1 g/cm³ (9.86 Å), randomly placed and
oriented (``fpscf.datagen.liquid.water_box``: O–O >= 2.5 Å, other intermolecular pairs >= 1.5 Å),
seeds 0 and 1, written to ``start/box_32_seed{0,1}.xyz``.

    python examples/liquid_water/make_start.py
"""

from pathlib import Path

from fpscf.data.extxyz import write_extxyz
from fpscf.datagen.liquid import water_box

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    for seed in (0, 1):
        box = water_box(32, seed=seed, density=1.0)
        path = HERE / "start" / f"box_32_seed{seed}.xyz"
        write_extxyz(path, box)
        print(f"{path}: {len(box)} atoms, cell {box.cell.lengths()[0]:.3f} Å, total charge {box.info['total_charge']}")
