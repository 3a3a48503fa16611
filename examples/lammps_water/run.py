"""NVE molecular dynamics of a periodic water box in an applied field, in LAMMPS with the shipped model.

Usage: python examples/lammps_water/run.py [--per-side 2] [--steps 1000] [--timestep 0.25]
           [--field 0 0 0.05] [--ranks 2] [--out examples/lammps_water]

Builds the plugin, exports `water-b3lyp`, writes a box of per-side³ water molecules at 1 g/cm³
(randomly oriented on a cubic grid, 3.1 Å apart), relaxes it briefly, gives it 300 K velocities
(``--temperature``; optionally equilibrates with a Langevin thermostat), then runs NVE in a constant field and reports the drift of
the total energy (linear fit, meV/atom/ps) and its fluctuation. Writes `nve_field.log` (the
LAMMPS thermo output), `nve_field.png` (total, potential and kinetic energy against time) and
`nve_field.json` (the figures). The shipped model was trained on clusters: a periodic water box
runs, but its structure is not validated against DFT (see the model card).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import molecule

HERE = Path(__file__).resolve().parent


def water_box(per_side: int, seed: int = 0) -> Atoms:
    """per_side³ molecules on a jittered cubic grid at 1 g/cm³ (a cubic cell LAMMPS reads as is)."""
    from scipy.spatial.transform import Rotation

    n_molecules = per_side**3
    edge = (n_molecules * 18.015 / 0.6022) ** (1 / 3)  # Å at 1 g/cm³
    rng = np.random.default_rng(seed)
    atoms = Atoms(cell=np.eye(3) * edge, pbc=True)
    for index in range(n_molecules):
        centre = (np.array(np.unravel_index(index, (per_side,) * 3)) + 0.5) * edge / per_side
        water = molecule("H2O")
        water.positions = Rotation.random(random_state=rng).apply(water.positions - water.get_center_of_mass())
        water.positions += centre + rng.normal(scale=0.05, size=3)
        atoms += water
    return atoms


def write_data(path: Path, atoms: Atoms) -> None:
    cell = atoms.cell.array
    lines = ["water box", "", f"{len(atoms)} atoms", "2 atom types", f"0 {cell[0, 0]} xlo xhi",
             f"0 {cell[1, 1]} ylo yhi", f"0 {cell[2, 2]} zlo zhi", "", "Atoms # charge", ""]
    for i, (symbol, x) in enumerate(zip(atoms.get_chemical_symbols(), atoms.positions)):
        lines.append(f"{i + 1} {1 if symbol == 'O' else 2} 0.0 {x[0]} {x[1]} {x[2]}")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-side", type=int, default=2, help="molecules per box edge (2: 8 molecules)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--equilibration", type=int, default=0,
                        help="Langevin steps at 300 K before NVE (0: start NVE from 300 K velocities)")
    parser.add_argument("--timestep", type=float, default=0.25, help="fs")
    parser.add_argument("--temperature", type=float, default=300.0, help="K, initial velocities")
    parser.add_argument("--field", type=float, nargs=3, default=[0.0, 0.0, 0.05], help="V/Å")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()

    from fpscf.export import build_plugin, export_model, run_lammps_script, thermo_table

    args.out.mkdir(parents=True, exist_ok=True)
    plugin = build_plugin(HERE.parents[1] / "build" / "lammps_plugin")
    work = args.out / "work"
    work.mkdir(exist_ok=True)
    model = export_model("water-b3lyp", work / "water.lmp")
    atoms = water_box(args.per_side)
    write_data(work / "water.data", atoms)
    field = " ".join(str(v) for v in args.field)
    dt = args.timestep / 1000.0  # ps
    script = work / "in.nve_field"
    script.write_text("\n".join([
        f"plugin load {plugin}", "units metal", "atom_style charge", f"read_data {work / 'water.data'}",
        "mass 1 15.999", "mass 2 1.008", f"pair_style fpscf efield {field} scf_tol 1e-6",
        f"pair_coeff * * {model} O H", "compute extra all pair fpscf",
        "thermo_style custom step time temp pe ke etotal press c_extra[3] c_extra[5]",
        "thermo_modify format float %.10g", f"timestep {dt}",
        "minimize 1e-6 1e-3 50 200", "reset_timestep 0",
        f"velocity all create {args.temperature} 12345 mom yes rot no dist gaussian", "fix integrate all nve",
        *([f"fix warm all langevin {args.temperature} {args.temperature} 0.05 2024 zero yes", "thermo 100", f"run {args.equilibration}",
           "unfix warm", "reset_timestep 0"] if args.equilibration > 0 else []),
        "thermo 10", f"run {args.steps}",
    ]) + "\n")
    output = run_lammps_script(script, ranks=args.ranks, log=args.out / "nve_field.log", cwd=work)
    _, rows = thermo_table(output)
    table = np.array(rows)
    time_ps, temperature, potential, kinetic, total = table[:, 1], table[:, 2], table[:, 3], table[:, 4], table[:, 5]
    n = len(atoms)
    slope = np.polyfit(time_ps, total, 1)[0]
    loop = float(re.findall(r"Loop time of ([0-9.eE+-]+) on", output)[-1])
    figures = {
        "atoms": n, "field_V_per_A": args.field, "timestep_fs": args.timestep, "steps": args.steps,
        "ranks": args.ranks, "initial_temperature_K": args.temperature, "mean_temperature_K": float(temperature.mean()),
        "drift_meV_per_atom_per_ps": float(slope / n * 1000.0),
        "total_energy_std_meV_per_atom": float(total.std() / n * 1000.0),
        "kinetic_energy_std_meV_per_atom": float(kinetic.std() / n * 1000.0),
        "mean_scf_steps": float(table[:, 8].mean()), "seconds_per_step": loop / args.steps,
    }
    (args.out / "nve_field.json").write_text(json.dumps(figures, indent=1) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for values, label in [(total, "total"), (potential, "potential"), (kinetic, "kinetic")]:
        axis.plot(time_ps, (values - values[0]) / n * 1000.0, label=label)
    axis.set_xlabel("time (ps)")
    axis.set_ylabel("E − E(0) (meV/atom)")
    axis.set_title(f"NVE, {n} atoms of water from {args.temperature:g} K, field {args.field} V/Å, Δt {args.timestep} fs: "
                   f"drift {figures['drift_meV_per_atom_per_ps']:.3f} meV/atom/ps", fontsize=9)
    axis.legend()
    figure.tight_layout()
    figure.savefig(args.out / "nve_field.png", dpi=120)
    for key, value in figures.items():
        print(f"{key:32s} {value}")


if __name__ == "__main__":
    main()
