"""Cost of the magnetic channel: the same model with and without self-consistent moments.

Usage: python benchmarks/magnetic.py [--repeats 2 3 4] [--field 20]
For periodic bcc Fe supercells (a = 2.87 Å, moments started along a rattled ferromagnetic
direction, B along z, ε = 0.01 V/Å along x) the script times, in one run and with the same
encoder and density weights (same seed): energy + forces + dipole of the model without moments,
the same with non-collinear moments (moment SCF + implicit attachment + M = −∂E/∂B), and the
susceptibility plus magnetoelectric tensor (three more backward passes). Columns: atoms, seconds
per evaluation (median of 5), ratio to the model without moments, moment SCF steps.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from ase.build import bulk

from fpscf import build_model
from fpscf.calculators.response import evaluate_response
from fpscf.data import atoms_to_graph
from fpscf.scf.settings import SCFSettings

ARCHITECTURE = dict(r_max=4.0, num_channels=16, num_interactions=2)


def timed(function, repeats: int = 5) -> tuple[float, dict]:
    """Median wall time (s) of ``repeats`` calls after a warm-up, and the last output."""
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, nargs="+", default=[2, 3, 4], help="supercell repeats of the 2-atom cubic cell")
    parser.add_argument("--field", type=float, default=20.0, help="B along z, T")
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    plain = build_model([26], seed=0, **ARCHITECTURE)
    magnetic = build_model([26], seed=0, magnetic_moments="noncollinear", **ARCHITECTURE)
    settings = SCFSettings(scf_tolerance=1e-6)
    print(f"# torch threads {torch.get_num_threads()}, B = {args.field} T along z, scf tolerance 1e-6")
    print(f"{'atoms':>6} {'plain s':>9} {'magnetic s':>11} {'ratio':>6} {'+chi,ME s':>10} {'ratio':>6} {'moment steps':>13}")
    rng = np.random.default_rng(0)
    for repeat in args.repeats:
        atoms = bulk("Fe", "bcc", a=2.87, cubic=True).repeat(repeat)
        atoms.rattle(0.05, seed=1)
        moments = np.array([0.3, 0.2, 2.0]) + rng.normal(scale=0.1, size=(len(atoms), 3))
        atoms.arrays.pop("initial_magmoms", None)  # ase.build sets collinear moments for Fe
        atoms.set_initial_magnetic_moments(moments)
        atoms.info["magnetic_field"] = [0.0, 0.0, args.field]
        atoms.info["external_field"] = [0.01, 0.0, 0.0]
        graph = atoms_to_graph(atoms, ARCHITECTURE["r_max"])
        t_plain, _ = timed(lambda: evaluate_response(plain, graph, [], settings=settings))
        t_mag, out = timed(lambda: evaluate_response(magnetic, graph, [], settings=settings))
        t_resp, _ = timed(
            lambda: evaluate_response(magnetic, graph, ["magnetic_susceptibility", "magnetoelectric_tensor"], settings=settings),
            repeats=1,
        )
        print(
            f"{len(atoms):6d} {t_plain:9.3f} {t_mag:11.3f} {t_mag / t_plain:6.2f} {t_resp:10.3f} {t_resp / t_plain:6.2f} "
            f"{out['moment_scf_steps']:13d}",
            flush=True,
        )


if __name__ == "__main__":
    main()
