"""IR and Raman spectra of a gas-phase water molecule from NVE MD with the shipped model, beside its
harmonic spectrum (same model, same units: band areas compare with harmonic intensities).

Usage:
    python examples/md_spectra/water_gas_phase.py [--temperature 300] [--steps 2000] [--trajectories 4]
        [--out examples/md_spectra/water_300K]

Each trajectory starts at the minimum with every vibration given exactly k_B T (random phases:
``--sampling equipartition``, the default) or drawn from the harmonic canonical distribution
(``--sampling canonical``: the vibrational energy of one run then fluctuates by 100 %, so band areas
need many runs), and with the molecule rotating (rigid-body velocities drawn at the temperature, no
drift; ``--no-rotation`` to switch off). NVE with 0.5 fs steps; the dipole is recorded every step
and α every 4 steps (2 fs). The trajectories are the blocks of the error bars. At a low temperature
with ``--no-rotation`` this is the harmonic check (tests/test_md_spectra_harmonic.py).
Writes spectrum.csv, summary.json (with the band-by-band comparison) and spectrum.png into --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from ase.build import molecule

from fpscf import FixedPointCalculator
from fpscf.atomic_files import atomic_write_text
from fpscf.md_spectra.files import write_md_spectra
from fpscf.md_spectra.molecule import molecule_md_spectra
from fpscf.md_spectra.workflow import MDSpectraSettings

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    parser.add_argument("--steps", type=int, default=2000, help="NVE steps of 0.5 fs per trajectory (default 2000)")
    parser.add_argument("--trajectories", type=int, default=4, help="independent runs (default 4)")
    parser.add_argument("--sampling", choices=["equipartition", "canonical"], default="equipartition",
                        help="vibrational initial conditions (default equipartition: k_B T in every mode)")
    parser.add_argument("--no-rotation", action="store_true", help="start without rotation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(HERE / "water_300K"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # three atoms: one thread is fastest, and leaves the other core free
    calculator = FixedPointCalculator(model="water-b3lyp", scf_tolerance=1e-8, acoustic_sum_rule=True)
    start = time.perf_counter()
    settings = MDSpectraSettings(temperature=args.temperature, n_blocks=args.trajectories,
                                 correlation_fs=0.25 * args.steps, max_wavenumber=4500.0)
    result = molecule_md_spectra(
        molecule("H2O"), calculator, args.temperature, args.steps, timestep_fs=0.5, polarizability_every=4,
        trajectories=args.trajectories, equipartition=args.sampling == "equipartition", rotation=not args.no_rotation,
        seed=args.seed, settings=settings, progress=lambda line: print(line, flush=True))
    kind = f"{args.sampling} vibrations, " + ("no rotation" if args.no_rotation else "rotating")
    written = write_md_spectra(result.spectra, args.out, result.harmonic,
                               title=f"H2O ({kind}), water-b3lyp, {args.trajectories} x {args.steps * 0.5:g} fs NVE, "
                                     f"{args.temperature:g} K")
    summary = json.loads((Path(args.out) / "summary.json").read_text())
    drift = [float(run.total_energy[-1] - run.total_energy[0]) for run in result.runs]
    options = [f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out", "no_rotation")]
    summary["example"] = {"command": " ".join(["python examples/md_spectra/water_gas_phase.py", *options]
                                              + (["--no-rotation"] if args.no_rotation else [])),
                          "seconds": time.perf_counter() - start, "energy_change_per_run_eV": drift}
    atomic_write_text(Path(args.out) / "summary.json", json.dumps(summary, indent=2) + "\n")
    for name in ("ir_bands", "raman_bands"):
        for band in summary["harmonic"].get(name, []):
            print(f"{name[:-6]:>5}: harmonic {band['harmonic_cm-1']:7.1f} cm-1, MD peak {band['md_peak_cm-1']:7.1f}; "
                  f"area MD/harmonic {band['ratio']:.3f}")
    for name in ("ir", "raman"):
        total = summary["harmonic"].get(f"{name}_vibrations_total")
        if total:
            print(f"{name:>5}: all vibrational bands ({total['low_cm-1']:.0f}-{total['high_cm-1']:.0f} cm-1), "
                  f"area MD/harmonic {total['ratio']:.3f}")
    print(f"written to {args.out}: {', '.join(p.name for p in written)} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
