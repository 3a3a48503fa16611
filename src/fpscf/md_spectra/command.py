"""``fpscf md-spectra``: IR, Raman and dielectric spectra from an MD trajectory (docs/md_spectra.md).

Kept apart from :mod:`fpscf.cli` (which only registers it) so the command's options and its work
live together; torch is imported only when the model is needed."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from fpscf.md_spectra.correlation import WINDOWS, SpectrumInputError
from fpscf.md_spectra.quantum import QUANTUM_CORRECTIONS
from fpscf.md_spectra.readers import ASE_FORMAT, LAMMPS_DIPOLE_FORMAT
from fpscf.units import IR_INTENSITY_KM_PER_MOL

DESCRIPTION = (
    "IR absorption from the dipole (its autocorrelation of dD/dt; with --born-charges, dD/dt = sum Z*.v from "
    "the model), Raman VV/VH and activity from the polarizability (evaluated with --model every "
    "--polarizability-every frames, or stored in the frames), and for periodic cells the static permittivity "
    "from dipole fluctuations (tin-foil) and eps(omega). Inputs: ASE trajectories/extended XYZ (dipole and "
    "alpha from results or info), or the dipole file of LAMMPS' compute pair fpscf + fix ave/time. Files in "
    "--out: spectrum.csv, dielectric.csv (cells), summary.json, spectrum.png. Units: docs/md_spectra.md."
)


def add_parser(sub: Any) -> None:
    """Register ``md-spectra`` on the CLI's subparsers."""
    parser = sub.add_parser("md-spectra", help="IR/Raman/dielectric spectra from MD: fpscf md-spectra TRAJ --timestep FS "
                                               "--temperature K --out DIR", description=DESCRIPTION)
    parser.add_argument("trajectory", nargs="+",
                        help="ASE trajectory or extxyz, or LAMMPS fix ave/time dipole file(s) (segments joined by step)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--format", choices=[ASE_FORMAT, LAMMPS_DIPOLE_FORMAT],
                        help="input format (default: lammps-dipole for a fix ave/time file, else ase)")
    parser.add_argument("--timestep", type=float, help="MD time step, fs (LAMMPS units metal: timestep x 1000)")
    parser.add_argument("--frame-interval", type=int, default=1, help="ASE input: MD steps between frames (default 1)")
    parser.add_argument("--volume", type=float, help="LAMMPS input: periodic box volume, Å^3 (enables eps0 and eps(omega))")
    parser.add_argument("--temperature", type=float, help="temperature, K (default: kinetic temperature of the frames)")
    parser.add_argument("--model", help="model (file or shipped name) for properties evaluated along the trajectory")
    parser.add_argument("--polarizability-every", type=int, metavar="N",
                        help="with --model: alpha on every N-th frame, for the Raman spectrum")
    parser.add_argument("--born-charges", action="store_true",
                        help="with --model: dD/dt = sum_I Z*_I.v_I from Born charges on every frame (needs velocities)")
    parser.add_argument("--dielectric", action="store_true",
                        help="with --model and periodic frames: eps_inf from the model on the alpha frames")
    parser.add_argument("--field", type=float, nargs=3, metavar=("EX", "EY", "EZ"),
                        help="with --model: field of the MD, V/Å, for frames without info['external_field'] (default 0)")
    parser.add_argument("--cache", help="with --model: .npz cache of evaluated frames (rerun continues from it)")
    parser.add_argument("--harmonic", help="output directory (or modes.csv) of fpscf spectra to compare with")
    parser.add_argument("--correlation-time", type=float, default=1000.0, help="longest correlation lag, fs (default 1000)")
    parser.add_argument("--window", choices=WINDOWS, default="hann", help="window of the correlation (default hann)")
    parser.add_argument("--quantum-correction", choices=QUANTUM_CORRECTIONS, default="harmonic",
                        help="quantum correction factor (default harmonic; exact for TRPMD/centroid Kubo correlations)")
    parser.add_argument("--blocks", type=int, default=4, help="blocks for error bars (default 4; 1: none)")
    parser.add_argument("--laser-wavelength", type=float, default=532.0, help="Raman laser wavelength, nm (default 532)")
    parser.add_argument("--max-wavenumber", type=float, default=4500.0, help="grid end, cm^-1 (default 4500)")
    parser.add_argument("--wavenumber-step", type=float, default=2.0, help="grid step, cm^-1 (default 2)")
    parser.add_argument("--epsilon-infinity", type=float, help="electronic permittivity for eps0 and eps(omega)")
    parser.set_defaults(func=run)


def _evaluate(series: Any, args: argparse.Namespace) -> Any:
    """The series with the model's properties on its frames (dipole where missing, α, Z*·v, ε∞)."""
    from fpscf import FixedPointCalculator
    from fpscf.md_spectra.evaluate import evaluate_frames
    from fpscf.md_spectra.ir import dipole_rate_from_born_charges
    from fpscf.threads import configure_threads

    if not series.frames:
        raise SpectrumInputError("--model evaluates properties on frames: give an ASE trajectory or extxyz")
    print(f"model {args.model}; torch: {configure_threads().describe()}", flush=True)
    calculator = FixedPointCalculator(model=args.model, scf_tolerance=1e-8, acoustic_sum_rule=args.born_charges,
                                      electric_field=args.field)
    progress = lambda line: print(line, flush=True)  # noqa: E731
    changes: dict[str, Any] = {}
    every_frame = ["dipole"] if series.dipole is None else []
    if args.born_charges:
        if series.frames[0].get_velocities() is None or not np.any(series.frames[0].get_velocities()):
            raise SpectrumInputError("--born-charges needs velocities in the frames (ASE .traj keeps them)")
        every_frame.append("born_effective_charges")
    cache = args.cache
    if every_frame:
        done = evaluate_frames(series.frames, calculator, every_frame, every=1, cache=cache, progress=progress)
        if "dipole" in done.values:
            changes["dipole"] = done.values["dipole"]
        if "born_effective_charges" in done.values:
            from ase import units

            velocities = np.array([atoms.get_velocities() for atoms in series.frames]) * units.fs  # Å/fs
            changes["dipole_rate"] = dipole_rate_from_born_charges(done.values["born_effective_charges"], velocities)
        cache = None if cache is None else str(cache) + ".alpha.npz"
    if args.polarizability_every:
        names = ["polarizability"] + (["dielectric_tensor"] if args.dielectric else [])
        done = evaluate_frames(series.frames, calculator, names, every=args.polarizability_every, cache=cache,
                               progress=progress)
        changes.update(polarizability=done.values["polarizability"], polarizability_stride=args.polarizability_every)
        if args.dielectric:
            changes["epsilon_infinity"] = done.values["dielectric_tensor"].mean(axis=0)
    return series.with_values(**changes)


def run(args: argparse.Namespace) -> int:
    """Read, evaluate (with --model), analyse and write; print the main numbers."""
    from fpscf.md_spectra.files import write_md_spectra
    from fpscf.md_spectra.harmonic import read_harmonic
    from fpscf.md_spectra.readers import read_series
    from fpscf.md_spectra.workflow import MDSpectraSettings, compute_md_spectra

    start = time.perf_counter()
    if (args.polarizability_every or args.born_charges or args.dielectric or args.field) and not args.model:
        raise SpectrumInputError("--polarizability-every, --born-charges, --dielectric and --field need --model")
    series = read_series(args.trajectory, args.format, args.timestep, args.frame_interval, args.volume)
    print(f"{series.source}: sample interval {series.timestep_fs:g} fs, field {series.field.tolist()} V/Å", flush=True)
    harmonic = read_harmonic(args.harmonic) if args.harmonic else None
    if args.model:
        if args.field is not None and not any("external_field" in atoms.info for atoms in series.frames[:1]):
            series = series.with_values(field=np.asarray(args.field, float))
        series = _evaluate(series, args)
    settings = MDSpectraSettings(
        temperature=args.temperature, max_wavenumber=args.max_wavenumber, wavenumber_step=args.wavenumber_step,
        correlation_fs=args.correlation_time, window=args.window, quantum=args.quantum_correction,
        n_blocks=args.blocks, laser_wavelength_nm=args.laser_wavelength, epsilon_infinity=args.epsilon_infinity)
    result = compute_md_spectra(series, settings)
    written = write_md_spectra(result, args.out, harmonic, title=" ".join(args.trajectory)[:100])
    if result.ir is not None:
        print(f"IR: sum rule beta<|dD/dt|^2> {result.ir.sum_rule:.5g} e^2/amu "
              f"({result.ir.sum_rule * IR_INTENSITY_KM_PER_MOL:.4g} km/mol), T {result.temperature:.1f} K")
    if result.static is not None:
        error = result.static.isotropic_error
        print(f"static permittivity {result.static.isotropic:.3f}" + (f" +- {error:.3f}" if error else ""))
    print(f"written to {args.out}: {', '.join(path.name for path in written)} ({time.perf_counter() - start:.1f} s)")
    return 0
