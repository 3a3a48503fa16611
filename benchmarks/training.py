"""Training throughput: structures per second on 1 and 2 CPU processes (torch.distributed, gloo),
and the cost per structure of each training mode, in one run.

Usage: python benchmarks/training.py [--structures 24] [--molecules 16] [--epochs 3] [--batch-size 4] > benchmarks/training.out

Data: open water clusters of ``--molecules`` molecules (cut from a jittered liquid-density grid,
rattled) labelled by the random teacher model of the training tests (energy, forces, multipoles).

1. Data-parallel throughput. The same ``fpscf train`` run (direct mode,
   global batch ``--batch-size``) under ``torchrun --nproc_per_node P`` for P = 1 and 2, one thread
   per process; structures/s = training structures / median epoch time (training and validation,
   epochs after the first). The ratio is the speed-up of the second process; on a machine whose
   cores are busy with other work it says little (the load average is printed).
2. Cost per structure of each mode (one process, the teacher's weights): forward, losses (energy, forces) and backward
   for batches of ``--batch-size`` structures: ``direct`` (one update from the reference density),
   ``unroll_scf`` (backprop through ``num_scf_steps`` linear-mixing steps), ``implicit`` (Anderson
   SCF to 1e-6, adjoint solve in backward) and ``linearize_solve`` (converge, then one linearised
   differentiable solve). Median over the batches of two passes after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import water_box  # noqa: E402

MODES = {
    "direct": {"mode": "direct"},
    "unroll_scf": {"mode": "unroll_scf", "scf": {"num_scf_steps": 20, "mixing_parameter": 0.5}},
    "implicit": {"mode": "implicit", "scf": {"num_scf_steps": 100, "mixing_parameter": 0.5, "scf_tolerance": 1e-6}},
    "linearize_solve": {"mode": "linearize_solve", "scf": {"num_scf_steps": 100, "mixing_parameter": 0.5, "scf_tolerance": 1e-6}},
}
LOSS = {"energy_per_atom": 10.0, "forces": 10.0}


def water_clusters(count: int, molecules: int, seed: int = 0) -> list:
    """``count`` open clusters of ``molecules`` waters labelled by the teacher model (eV, Å, e)."""
    from fpscf import FixedPointCalculator, build_model
    from fpscf.datagen.synthetic import TEACHER_ARCHITECTURE

    calculator = FixedPointCalculator(build_model([1, 8], seed=101, **TEACHER_ARCHITECTURE), scf_tolerance=1e-10)
    rng = np.random.default_rng(seed)
    structures = []
    for k in range(count):
        atoms = water_box(3 * molecules, seed=seed + k)
        atoms.pbc, atoms.cell = False, np.zeros((3, 3))
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        calculator.calculate(atoms, ["energy"])
        atoms.info.update(energy=calculator.results["energy"], dipole=calculator.results["dipole"])
        atoms.arrays["forces"] = calculator.results["forces"]
        atoms.arrays["atomic_multipoles"] = calculator.results["atomic_multipoles"]
        atoms.calc = None
        structures.append(atoms)
    return structures


def _config(directory: Path, epochs: int, batch_size: int) -> Path:
    from fpscf.datagen.synthetic import TEACHER_ARCHITECTURE

    config = {"train_file": "train.xyz", "valid_file": "valid.xyz", "output_dir": "run", "seed": 0,
              "batch_size": batch_size, "progress": False, "plot": False,
              "model": dict(TEACHER_ARCHITECTURE, atomic_energies="average"),
              "train_schedule": {0: {"name": "direct", "start": 0, "end": epochs - 1, "lr": 0.003,
                                     "loss": dict(LOSS, atomic_multipoles=10.0), "fixed_point_training_options": MODES["direct"]}}}
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def worker(config: str, output: str, timings: str) -> None:
    """Run under torchrun: train and record the wall time at the end of each epoch (rank 0 writes)."""
    from fpscf.training.config import load_config
    from fpscf.training.trainer import Trainer

    stamps = [time.perf_counter()]
    trainer = Trainer(load_config(config, [f"--output_dir={output}"]), on_epoch_end=lambda epoch: stamps.append(time.perf_counter()))
    trainer.run()
    if int(os.environ.get("RANK", "0")) == 0:
        Path(timings).write_text(json.dumps([b - a for a, b in zip(stamps, stamps[1:])]))


def throughput(directory: Path, processes: int, train_size: int, epochs: int, batch_size: int) -> dict:
    config = _config(directory, epochs, batch_size)
    timings = directory / f"epochs_{processes}.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               __file__, "--worker", str(config), str(directory / f"run_{processes}"), str(timings)]
    subprocess.run(command, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True)
    seconds = json.loads(timings.read_text())
    epoch = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    return {"processes": processes, "epoch_s": epoch, "structures_per_s": train_size / epoch}


def mode_costs(structures: list, batch_size: int) -> dict[str, float]:
    """Seconds per structure of forward + losses + backward in each mode (one process, one thread)."""
    from fpscf.data import atoms_to_graph, collate
    from fpscf.datagen.synthetic import TEACHER_ARCHITECTURE
    from fpscf.model import build_model
    from fpscf.training.config import FixedPointOptions, SCFOptions
    from fpscf.training.forward import predict
    from fpscf.training.losses import compute_losses

    torch.set_num_threads(1)
    model = build_model([1, 8], seed=101, **TEACHER_ARCHITECTURE)  # the teacher: its SCF converges on these clusters
    graphs = [atoms_to_graph(atoms, TEACHER_ARCHITECTURE["r_max"], species=[1, 8]) for atoms in structures]
    batches = [collate(graphs[k : k + batch_size]) for k in range(0, len(graphs), batch_size)]
    costs = {}
    for name, options in MODES.items():
        scf = SCFOptions(**options["scf"]) if "scf" in options else None
        fixed_point = FixedPointOptions(options["mode"], scf)

        def step(batch) -> None:
            model.zero_grad(set_to_none=True)
            out = predict(model, batch, fixed_point, set(LOSS), training=True)
            compute_losses(out, batch, LOSS)[0].backward()

        step(batches[0])
        times = []
        for _ in range(2):
            for batch in batches:
                start = time.perf_counter()
                step(batch)
                times.append((time.perf_counter() - start) / batch.num_graphs)
        costs[name] = statistics.median(times)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=24, help="training structures (plus 4 for validation)")
    parser.add_argument("--molecules", type=int, default=16, help="water molecules per cluster")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    from fpscf.data.extxyz import write_extxyz

    structures = water_clusters(args.structures + 4, args.molecules)
    atoms = sum(len(s) for s in structures[: args.structures]) / args.structures
    print(f"# fpscf training benchmark: {args.structures} training structures ({atoms:.1f} atoms each), "
          f"global batch {args.batch_size}, torch {torch.__version__}, {os.cpu_count()} cores, "
          f"load average at start {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_extxyz(directory / "train.xyz", structures[: args.structures])
        write_extxyz(directory / "valid.xyz", structures[args.structures :])
        rows = [throughput(directory, p, args.structures, args.epochs, args.batch_size) for p in (1, 2)]
    print("\n## data-parallel training (direct mode, 1 thread per process)")
    print(f"{'processes':>9} {'epoch s':>9} {'structures/s':>13}")
    for row in rows:
        print(f"{row['processes']:>9} {row['epoch_s']:>9.3f} {row['structures_per_s']:>13.2f}")
    print(f"speed-up of 2 processes over 1: {rows[1]['structures_per_s'] / rows[0]['structures_per_s']:.2f} "
          f"(load average now {os.getloadavg()[0]:.2f})")
    costs = mode_costs(structures[: args.structures], args.batch_size)
    print("\n## cost per structure of each training mode (forward + energy/force losses + backward, 1 thread)")
    print(f"{'mode':>16} {'ms/structure':>13} {'÷ direct':>9}")
    for name, seconds in costs.items():
        print(f"{name:>16} {1e3 * seconds:>13.2f} {seconds / costs['direct']:>9.2f}")


if __name__ == "__main__":
    main()
