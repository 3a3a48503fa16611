"""Continue a liquid-water model on the current training set (fine-tune with the implicit SCF).

Rebuilds the weights of ``--start`` (optionally with ``local_multipole_bound`` set to ``--bound``)
and trains them ``--epochs`` epochs on ``--train-file`` (default ``data/train.xyz``; rebuild it
first with ``make_training_set.py``) with the implicit-SCF stage of ``config.yaml``, lr 0.001 → 0.0001, into
``--out``. Used for:

* ``run_bounded/``: ``run/best.fpscf`` with the local multipoles bounded (``--bound 4``,
  10 epochs). The unbounded model drove a 64-water box into a collapsed molecule under LAMMPS'
  minimizer: its local charge network returned −4.15 e on a squeezed oxygen.
* ``run_bends/``: ``run_bounded/best.fpscf`` on the data with the H–O–H bend scan (15 epochs).
  The bounded model let one molecule of the box fold from 93° to 49° in 8 fs of MD.

    OMP_NUM_THREADS=2 python examples/liquid_water/continue_training.py --start run/best.fpscf \\
        --bound 4 --epochs 10 --out run_bounded                        (rerun to resume)
    OMP_NUM_THREADS=2 python examples/liquid_water/continue_training.py --start run_bounded/best.fpscf \\
        --epochs 15 --out run_bends
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
    parser.add_argument("--start", required=True, help="model file (relative to this directory or absolute)")
    parser.add_argument("--out", required=True, help="output directory (relative to this directory or absolute)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-file", default="data/train.xyz",
                        help="training set (relative to this directory or absolute; default data/train.xyz)")
    parser.add_argument("--bound", type=float, default=None,
                        help="set local_multipole_bound (default: keep the start model's)")
    args = parser.parse_args()
    start = resolve_model(str(HERE / args.start))
    config = start.config
    if args.bound is not None:
        config = dataclasses.replace(config, local_multipole_bound=args.bound)
    model = FixedPointModel(config)
    model.load_state_dict(start.state_dict())
    schedule = yaml.safe_load((HERE / "config.yaml").read_text())["train_schedule"][1]
    schedule.update(name="continued", start=0, end=args.epochs - 1, lr=0.001, final_lr=0.0001)
    training = continued_config(HERE / "config.yaml", model, train_file=HERE / args.train_file,
                                output_dir=HERE / args.out, train_schedule={0: schedule}, base_dir=HERE)
    retrain(training, model)


if __name__ == "__main__":
    main()
