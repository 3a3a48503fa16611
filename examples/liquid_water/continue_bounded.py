"""Continue the liquid-water model with the local multipoles bounded (``local_multipole_bound: 4``).

The first liquid model (``run/best.fpscf``, trained without the bound) drove a 64-water box into a
collapsed molecule under LAMMPS' minimizer: its local charge network returned −4.15 e on a squeezed
oxygen. This rebuilds the same weights with the bound and fine-tunes them on the same data with the
implicit SCF (``--epochs``, lr 0.001 → 0.0001) into ``run_bounded/``:

    OMP_NUM_THREADS=2 python examples/liquid_water/continue_bounded.py     (rerun to resume)
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import yaml

from fpscf.active_learning.retrain import continued_config, retrain
from fpscf.model import FixedPointModel
from fpscf.models import resolve_model

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", default=str(HERE / "run/best.fpscf"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--bound", type=float, default=4.0)
    args = parser.parse_args()
    start = resolve_model(args.start)
    model = FixedPointModel(dataclasses.replace(start.config, local_multipole_bound=args.bound))
    model.load_state_dict(start.state_dict())
    schedule = yaml.safe_load((HERE / "config.yaml").read_text())["train_schedule"][1]
    schedule.update(name="bounded", start=0, end=args.epochs - 1, lr=0.001, final_lr=0.0001)
    config = continued_config(HERE / "config.yaml", model, train_file=HERE / "data/train.xyz",
                              output_dir=HERE / "run_bounded", train_schedule={0: schedule}, base_dir=HERE)
    retrain(config, model)


if __name__ == "__main__":
    main()
