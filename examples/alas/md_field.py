"""AlAs under an applied field in LAMMPS (pair_style fpscf) with the shipped crystal model.

Usage: python examples/alas/md_field.py [--model alas-lda] [--repeat 3] [--steps 1000] [--timestep 2]
           [--temperature 100] [--field 0.05] [--ranks 2] [--out examples/alas/md]

A field ε along x pushes the Al sublattice against the As sublattice (force Z* ε on each ion), and
the crystal answers with the transverse-optic restoring force: the static shift is
u = Z* ε / (μ ω_TO²) per Al–As pair (harmonic), the ionic part of the static dielectric response.
The script measures that shift three ways with the same model:

1. ASE: the two-atom cell relaxed in the field by the Python calculator (``FixedPointCalculator``);
2. LAMMPS: the repeat³ cubic supercell minimised in the field (``minimize``, fixed box);
3. LAMMPS: NVE at ``--temperature`` from the minimised structure, time average of the sublattice
   shift (unwrapped centres of mass of the two species), with the drift of the total energy.

It also prints the harmonic estimate from the model's own Z* and Γ force constant, and the frequency
at which the MD sublattice shift oscillates (the Γ TO frequency, to compare with phonopy). Writes
``md_field.json`` (the figures), ``md_field.log`` (LAMMPS log) and ``md_field.png`` (energies and
the sublattice shift against time) into --out; working files go to --out/work.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.io import write

from fpscf.atomic_files import atomic_write_text

HERE = Path(__file__).resolve().parent
LATTICE_CONSTANT = 5.595  # Å, LDA at 30 Ry (the reference data's level)


def python_reference(model: str, field: float, displacement: float = 0.005) -> dict[str, float]:
    """Static response of the two-atom cell with the Python calculator: the relaxed sublattice shift
    in the field, and the harmonic estimate Z*_xx ε / k_TO (k_TO: Γ force constant of the relative
    coordinate, from central differences of the forces)."""
    from ase.optimize import BFGS

    from fpscf import FixedPointCalculator

    cell = bulk("AlAs", "zincblende", a=LATTICE_CONSTANT)
    calc = FixedPointCalculator(model, scf_tolerance=1e-9)
    cell.calc = calc
    born = calc.get_property("born_effective_charges", cell)
    forces = []
    for sign in (1.0, -1.0):
        moved = cell.copy()
        moved.positions[0, 0] += sign * displacement
        moved.calc = calc
        forces.append(moved.get_forces()[0, 0])
    # Moving Al by d along x changes the relative coordinate u = x_Al − x_As by d: k = −dF_Al/du.
    force_constant = -(forces[0] - forces[1]) / (2 * displacement)
    relaxed = cell.copy()
    relaxed.calc = FixedPointCalculator(model, scf_tolerance=1e-9, electric_field=[field, 0.0, 0.0])
    if not BFGS(relaxed, logfile=None).run(fmax=1e-5, steps=200):
        raise SystemExit(f"the two-atom cell did not relax in {field} V/Å within 200 BFGS steps: is the model trained?")
    shift = (relaxed.positions[0] - relaxed.positions[1]) - (cell.positions[0] - cell.positions[1])
    return {
        "born_charge_Al_xx_e": float(born[0, 0, 0]),
        "gamma_force_constant_eV_per_A2": float(force_constant),
        "harmonic_shift_A": float(born[0, 0, 0] * field / force_constant),
        "ase_relaxed_shift_A": float(shift[0]),
    }


def run_lammps(args: argparse.Namespace) -> tuple[np.ndarray, list[str], str, int]:
    """Minimise in the field, then NVE; returns the thermo table, its column names, stdout, atoms."""
    from fpscf.export import build_plugin, export_model, run_lammps_script, thermo_table

    plugin = build_plugin(HERE.parents[1] / "build" / "lammps_plugin")
    work = args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    exported = export_model(args.model, work / "alas.lmp")
    crystal = bulk("AlAs", "zincblende", a=LATTICE_CONSTANT, cubic=True).repeat(args.repeat)
    write(work / "alas.data", crystal, format="lammps-data", specorder=["Al", "As"], masses=True, atom_style="charge")
    dt = args.timestep / 1000.0  # ps
    # Relative shift of the sublattices along x minus its ideal value (a/4 · (−1)): unwrapped centres of mass.
    ideal = float(np.mean(crystal.positions[crystal.numbers == 13, 0]) - np.mean(crystal.positions[crystal.numbers == 33, 0]))
    script = work / "in.md_field"
    script.write_text("\n".join([
        f"plugin load {plugin}", "units metal", "atom_style charge", f"read_data {work / 'alas.data'}",
        f"pair_style fpscf efield {args.field} 0.0 0.0 scf_tol 1e-7", f"pair_coeff * * {exported} Al As",
        "group al type 1", "group as type 2", "compute comAl al com", "compute comAs as com",
        f"variable shift equal c_comAl[1]-c_comAs[1]-({ideal})", "compute extra all pair fpscf",
        "thermo_style custom step time temp pe ke etotal press v_shift c_extra[1] c_extra[5]",
        "thermo_modify format float %.12g", f"timestep {dt}",
        "min_style cg", "minimize 0 1e-5 200 1000", "print 'MINIMISED_SHIFT ${shift}'", "reset_timestep 0",
        f"velocity all create {args.temperature} 4242 mom yes rot no dist gaussian", "fix integrate all nve",
        "thermo 5", f"run {args.steps}",
    ]) + "\n")
    output = run_lammps_script(script, ranks=args.ranks, log=args.out / "md_field.log", cwd=work)
    columns, rows = thermo_table(output)
    return np.array(rows), columns, output, len(crystal)


def oscillation_frequency(time_ps: np.ndarray, shift: np.ndarray) -> float:
    """Frequency (cm⁻¹) of the oscillation of the sublattice shift, which is the Γ transverse-optic
    coordinate (in a periodic box at fixed field there is no macroscopic depolarizing field, so no
    LO term): its thermal motion rings at ω_TO. A least-squares sinusoid started from the FFT peak."""
    from scipy.optimize import curve_fit

    centred = shift - shift.mean()
    spectrum = np.abs(np.fft.rfft(centred))
    frequencies = np.fft.rfftfreq(len(centred), d=time_ps[1] - time_ps[0])  # 1/ps
    start = frequencies[1 + np.argmax(spectrum[1:])]
    model = lambda t, a, b, f: a * np.sin(2 * np.pi * f * t) + b * np.cos(2 * np.pi * f * t)  # noqa: E731
    (_, _, fitted), _ = curve_fit(model, time_ps, centred, p0=[centred.std(), centred.std(), start])
    return float(abs(fitted) * 1e12 / 2.99792458e10)  # 1/ps -> cm⁻¹


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="alas-lda", help="model file or shipped model name")
    parser.add_argument("--repeat", type=int, default=3, help="cubic 8-atom cells per edge (3: 216 atoms)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--timestep", type=float, default=2.0, help="fs")
    parser.add_argument("--temperature", type=float, default=100.0, help="K, initial velocities")
    parser.add_argument("--field", type=float, default=0.05, help="V/Å along x")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "md")
    parser.add_argument("--analyse-only", action="store_true", help="redo the figures from --out/md_field.log, no MD")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    static = python_reference(args.model, args.field)
    if args.analyse_only:
        from fpscf.export import thermo_table

        stdout = (args.out / "md_field.log").read_text()
        columns, rows = thermo_table(stdout)
        table, n_atoms = np.array(rows), 8 * args.repeat**3
    else:
        table, columns, stdout, n_atoms = run_lammps(args)
    column = {name: k for k, name in enumerate(columns)}
    time_ps, total, potential, kinetic = (table[:, column[c]] for c in ("Time", "TotEng", "PotEng", "KinEng"))
    shift = table[:, column["v_shift"]]
    minimised = float(re.findall(r"MINIMISED_SHIFT ([-0-9.eE+]+)", stdout)[-1])
    loop = float(re.findall(r"Loop time of ([0-9.eE+-]+) on", stdout)[-1])
    half = len(shift) // 2
    figures = {
        "atoms": n_atoms, "field_V_per_A": [args.field, 0.0, 0.0], "timestep_fs": args.timestep, "steps": args.steps,
        "ranks": args.ranks, "initial_temperature_K": args.temperature,
        "mean_temperature_K": float(table[:, column["Temp"]].mean()),
        **static,
        "lammps_minimised_shift_A": minimised,
        "md_mean_shift_A": float(shift.mean()),
        "md_mean_shift_halves_A": [float(shift[:half].mean()), float(shift[half:].mean())],
        "md_shift_oscillation_cm-1": oscillation_frequency(time_ps, shift),
        "drift_meV_per_atom_per_ps": float(np.polyfit(time_ps, total, 1)[0] / n_atoms * 1000.0),
        "total_energy_std_meV_per_atom": float(total.std() / n_atoms * 1000.0),
        "kinetic_energy_std_meV_per_atom": float(kinetic.std() / n_atoms * 1000.0),
        "mean_scf_steps": float(table[:, column["c_extra[5]"]].mean()),
        "seconds_per_step": loop / args.steps,
    }
    atomic_write_text(args.out / "md_field.json", json.dumps(figures, indent=1) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (energies, displacement) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for values, label in [(total, "total"), (potential, "potential"), (kinetic, "kinetic")]:
        energies.plot(time_ps, (values - values[0]) / n_atoms * 1000.0, label=label)
    energies.set_ylabel("E − E(0) (meV/atom)")
    energies.set_title(f"AlAs, {n_atoms} atoms, NVE from {args.temperature:g} K in {args.field} V/Å along x: "
                       f"drift {figures['drift_meV_per_atom_per_ps']:.3f} meV/atom/ps", fontsize=9)
    energies.legend()
    displacement.plot(time_ps, shift * 1000.0, lw=0.8, label="MD (LAMMPS)")
    displacement.axhline(shift.mean() * 1000.0, color="C0", ls="--", label=f"MD mean {shift.mean() * 1000:.2f} mÅ")
    displacement.axhline(minimised * 1000.0, color="C1", label=f"LAMMPS minimised {minimised * 1000:.2f} mÅ")
    displacement.axhline(static["ase_relaxed_shift_A"] * 1000.0, color="C2", ls=":",
                         label=f"ASE relaxed {static['ase_relaxed_shift_A'] * 1000:.2f} mÅ")
    displacement.set_xlabel("time (ps)")
    displacement.set_ylabel("x(Al) − x(As) shift (mÅ)")
    displacement.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(args.out / "md_field.png", dpi=120)
    for key, value in figures.items():
        print(f"{key:34s} {value}")


if __name__ == "__main__":
    main()
