"""Cost of the shipped crystal model ``alas-lda`` on AlAs supercells, in one run.

Usage: python benchmarks/crystal.py [--repeats 1 2 3 4] [--model alas-lda]
For rattled cubic supercells (8·repeat³ atoms, ε = 0.02 V/Å along x) the script times (median of 3
after a warm-up): energy + forces + stress of the model with its SCF; the same weights without SCF
(density fixed at the local guess); the same weights with the field coupled at the positions instead
of the bond midpoints (the cost of ``field_coupling: bond_midpoints``); and energy + forces plus α and
Born charges (five more derivative passes). Columns: atoms, seconds, ratios to the SCF model, SCF steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from ase.build import bulk

from fpscf.calculators.response import evaluate_response
from fpscf.data import atoms_to_graph
from fpscf.model import FixedPointModel
from fpscf.models import resolve_model
from fpscf.scf.settings import SCFSettings


def timed(function, repeats: int = 3) -> tuple[float, dict]:
    """Median wall time (s) of ``repeats`` calls after a warm-up, and the last output."""
    function()
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), out


def with_positions_coupling(model: FixedPointModel) -> FixedPointModel:
    """The same weights with the field coupled at the atomic positions."""
    config = dataclasses.replace(model.config, field_coupling="positions", field_coupling_bond_range=None)
    twin = FixedPointModel(config).to(torch.float64)
    twin.load_state_dict(model.state_dict())
    return twin.eval()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--model", default="alas-lda")
    args = parser.parse_args()
    model = resolve_model(args.model).to(torch.float64).eval()
    twin = with_positions_coupling(model)
    settings = SCFSettings(scf_tolerance=1e-6)
    print(f"# {args.model}, torch threads {torch.get_num_threads()}, scf tolerance 1e-6, field 0.02 V/Å along x")
    print(f"{'atoms':>6} {'SCF s':>8} {'no-SCF s':>9} {'SCF/no':>7} {'positions s':>12} {'bonds/pos':>10} "
          f"{'+alpha,Z* s':>12} {'ratio':>6} {'SCF steps':>10}")
    sizes, times = [], []
    for repeat in args.repeats:
        atoms = bulk("AlAs", "zincblende", a=5.595, cubic=True).repeat(repeat)
        atoms.rattle(0.03, seed=1)
        atoms.info["external_field"] = [0.02, 0.0, 0.0]
        graph = atoms_to_graph(atoms, model.config.r_max)
        scf, out = timed(lambda: model(graph, compute_forces=True, compute_stress=True, settings=settings))
        local, _ = timed(lambda: model(graph, compute_forces=True, compute_stress=True, self_consistent=False))
        positions, _ = timed(lambda: twin(graph, compute_forces=True, compute_stress=True, settings=settings))
        response, _ = timed(lambda: evaluate_response(model, graph, ["polarizability", "born_effective_charges"],
                                                       settings=settings), repeats=1)
        sizes.append(len(atoms))
        times.append(scf)
        print(f"{len(atoms):>6} {scf:>8.3f} {local:>9.3f} {scf / local:>7.2f} {positions:>12.3f} {scf / positions:>10.2f} "
              f"{response:>12.3f} {response / scf:>6.2f} {int(out['scf_steps']):>10}", flush=True)
    if len(sizes) > 1:
        slope = np.polyfit(np.log(sizes[1:]), np.log(times[1:]), 1)[0] if len(sizes) > 2 else np.nan
        print(f"SCF model time ∝ N^{slope:.2f} (fit over the sizes above 8 atoms)")


if __name__ == "__main__":
    main()
