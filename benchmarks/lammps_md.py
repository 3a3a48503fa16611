"""MD throughput of pair_style fpscf in LAMMPS (1 and 2 MPI ranks) against the ASE calculator.

Usage: python benchmarks/lammps_md.py [--sizes 192 375 648 1029] [--steps 10] [--model water-b3lyp]
           [--field 0 0 0.05] [--kspace auto|ewald|pme] [--skip-ase-above N]

For each periodic water box (random orientations on a grid, or with --replicate copies of one
8-molecule cell; relaxed by at most 10 steps of LAMMPS' minimizer, 0.02 Å at most per step): the model is exported (``fpscf export``), LAMMPS runs NVE for
``--steps`` steps after a 2-step warm-up (so the first, cold SCF is not timed) with 1 rank × 2
threads and 2 ranks × 1 thread, and ASE runs velocity Verlet with FixedPointCalculator (2 threads)
for the same steps. Prints atom-steps per second and the LAMMPS/ASE ratios measured in this run,
plus the scaling exponent with system size. Needs the plugin (fpscf build-lammps-plugin).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import scaling_exponent, water_box  # noqa: E402


def write_data(path: Path, atoms) -> None:  # noqa: ANN001
    cell = atoms.cell.array
    lines = ["water box", "", f"{len(atoms)} atoms", "2 atom types", f"0 {cell[0, 0]} xlo xhi",
             f"0 {cell[1, 1]} ylo yhi", f"0 {cell[2, 2]} zlo zhi", "", "Atoms # charge", ""]
    kinds = {"O": 1, "H": 2}
    for i, (symbol, x) in enumerate(zip(atoms.get_chemical_symbols(), atoms.positions)):
        lines.append(f"{i + 1} {kinds[symbol]} 0.0 {x[0]} {x[1]} {x[2]}")
    path.write_text("\n".join(lines) + "\n")


def lammps_rate(plugin: Path, model: Path, data: Path, n_atoms: int, steps: int, ranks: int, field: list[float],
                workdir: Path) -> tuple[float, float]:
    """Atom-steps per second and mean SCF steps of `run steps` after a warm-up, with `ranks` MPI ranks."""
    from fpscf.export import lmp_executable, mpirun_executable, subprocess_environment

    script = workdir / "in.bench"
    script.write_text("\n".join([
        f"plugin load {plugin}", "units metal", "atom_style charge", f"read_data {data}",
        "mass 1 15.999", "mass 2 1.008", f"pair_style fpscf efield {field[0]} {field[1]} {field[2]}",
        f"pair_coeff * * {model} O H", "min_modify dmax 0.02", "minimize 0 1e-2 10 50", "reset_timestep 0",
        "velocity all create 300 1 mom yes rot no", "timestep 0.0005",
        "fix 1 all nve", "compute extra all pair fpscf", "thermo_style custom step pe etotal c_extra[5]",
        "thermo 1", "run 2", f"run {steps}",
    ]) + "\n")
    env = subprocess_environment()
    env["OMP_NUM_THREADS"] = str(max(1, 2 // ranks))
    run = subprocess.run([str(mpirun_executable()), "-np", str(ranks), str(lmp_executable()), "-in", str(script),
                          "-log", "none"], capture_output=True, text=True, env=env, cwd=workdir)
    if run.returncode != 0:
        raise RuntimeError(run.stdout[-2000:] + run.stderr[-2000:])
    loop = re.findall(r"Loop time of ([0-9.eE+-]+) on", run.stdout)[-1]
    block = run.stdout.split("Step")[-1].split("Loop time")[0]
    scf = [float(line.split()[-1]) for line in block.splitlines()[2:] if line.strip()]
    return n_atoms * steps / float(loop), float(np.mean(scf))


def ase_rate(model_name: str, atoms, steps: int, field: list[float]) -> float:  # noqa: ANN001
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    from fpscf import FixedPointCalculator

    import warnings

    atoms = atoms.copy()
    atoms.calc = FixedPointCalculator(model_name, electric_field=field)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ASE's own deprecation notice
        MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(1))
    dynamics = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    dynamics.run(2)
    start = time.perf_counter()
    dynamics.run(steps)
    return len(atoms) * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[192, 375, 648])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--model", default="water-b3lyp")
    parser.add_argument("--field", type=float, nargs=3, default=[0.0, 0.0, 0.05])
    parser.add_argument("--kspace", choices=["auto", "ewald", "pme"], default="auto", help="export option (fpscf export)")
    parser.add_argument("--replicate", action="store_true",
                        help="build each box by repeating an 8-molecule cell (sizes 24·k³) instead of a random grid")
    parser.add_argument("--skip-ase-above", type=int, default=10**9, help="no ASE run for larger systems")
    args = parser.parse_args()

    from fpscf.export import build_plugin, export_model

    plugin = build_plugin(Path(__file__).resolve().parents[1] / "build" / "lammps_plugin")
    print(f"model {args.model} (export kspace {args.kspace}), periodic water boxes, field {args.field} V/Å, NVE {args.steps} steps after 2 "
          f"warm-up steps; LAMMPS 1 rank x 2 threads and 2 ranks x 1 thread, ASE velocity Verlet 2 threads")
    print(f"{'atoms':>6} {'SCF steps':>9} {'LAMMPS 1':>10} {'LAMMPS 2':>10} {'ASE':>10} {'L1/ASE':>7} {'L2/ASE':>7}"
          "   (atom-steps/s)", flush=True)
    sizes, one_rank = [], []
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        model = export_model(args.model, workdir / "model.lmp", kspace=args.kspace)
        for size in args.sizes:
            if args.replicate:
                repeats = max(1, round((size / 24) ** (1 / 3)))
                atoms = water_box(24).repeat(repeats)
            else:
                atoms = water_box(size)
            write_data(workdir / "box.data", atoms)
            rate1, scf = lammps_rate(plugin, model, workdir / "box.data", len(atoms), args.steps, 1, args.field, workdir)
            rate2, _ = lammps_rate(plugin, model, workdir / "box.data", len(atoms), args.steps, 2, args.field, workdir)
            if len(atoms) <= args.skip_ase_above:
                rate_ase = ase_rate(args.model, atoms, args.steps, args.field)
                ratios = f"{rate1 / rate_ase:7.2f} {rate2 / rate_ase:7.2f}"
                ase_text = f"{rate_ase:10.1f}"
            else:
                ase_text, ratios = f"{'-':>10}", f"{'-':>7} {'-':>7}"
            print(f"{len(atoms):6d} {scf:9.1f} {rate1:10.1f} {rate2:10.1f} {ase_text} {ratios}", flush=True)
            sizes.append(len(atoms))
            one_rank.append(len(atoms) / rate1)
    if len(sizes) > 1:
        print(f"LAMMPS time per step ∝ N^{scaling_exponent(sizes, one_rank):.2f} (1 rank)")


if __name__ == "__main__":
    main()
