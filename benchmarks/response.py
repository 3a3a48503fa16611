"""Cost of each response property relative to one energy + forces evaluation.

Usage: python benchmarks/response.py [--sizes 100 1000] [--tolerance 1e-6] [--ewald-split 2.0]
For periodic water boxes (field 0.05 V/Å) the script times, in one run and on the same model:
energy + forces + dipole + virial from a cold start, then (all warm-started from the converged
density, as in MD or phonon displacements) the same again as the baseline, then each property asked for alone, then all
of them together (one shared forward pass). Born charges and the polarizability come from the
same three backward passes, so they cost the same. The last column is what central finite
differences of converged SCF results would need for the same tensor, in baseline evaluations.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import water_box  # noqa: E402

import fpscf  # noqa: E402
from fpscf.calculators.response import evaluate_response  # noqa: E402
from fpscf.data import atoms_to_graph  # noqa: E402
from fpscf.scf.settings import SCFSettings  # noqa: E402

CASES = [
    ("energy+forces", [], "1"),
    ("polarizability", ["polarizability"], "6"),
    ("born_effective_charges", ["born_effective_charges"], "6"),
    ("raman_tensors", ["raman_tensors"], "6N x (alpha)"),
    ("virials (per atom)", ["virials"], "n/a"),
    ("all together", ["polarizability", "born_effective_charges", "raman_tensors", "virials"], ""),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--tolerance", type=float, default=1e-6)
    parser.add_argument("--ewald-split", type=float, default=0.0, help="Ewald split width a (Å); 0 = direct k-sum")
    args = parser.parse_args()
    model = fpscf.build_model(
        ["H", "O"], r_max=4.0, num_channels=16, max_L=1, atomic_multipoles_max_l=1,
        field_feature_widths=[1.0, 2.0], kspace_cutoff_factor=5.0,
        fixedpoint_update_config={"type": "ManyBodyUpdate", "nonlinearity_cls": "MLPNonLinearity"},
        ewald_split_width=args.ewald_split or None,
    )
    settings = SCFSettings(scf_tolerance=args.tolerance)
    print(f"random water model (ManyBodyUpdate + MLPNonLinearity), periodic boxes, Ewald split {args.ewald_split} Å, field 0.05 V/Å, "
          f"SCF tolerance {args.tolerance:g}, float64, {torch.get_num_threads()} threads")
    print(f"{'atoms':>6} {'property':>24} {'seconds':>9} {'x baseline':>10} {'finite differences':>19}")
    for n in args.sizes:
        atoms = water_box(n)
        atoms.info["external_field"] = [0.0, 0.0, 0.05]
        graph = atoms_to_graph(atoms, model.config.r_max, species=[1, 8]).to(dtype=torch.float64)
        start = time.perf_counter()
        converged = evaluate_response(model, graph, [], settings=settings)
        cold = time.perf_counter() - start
        print(f"{len(atoms):>6} {'energy+forces, cold SCF':>24} {cold:>9.2f} {'':>10} {'':>19}  ({converged['scf_steps']} SCF steps)")
        warm = dict(initial_multipoles=converged["multipoles"].detach(), initial_fermi_level=converged["fermi_level"].detach())
        baseline = None
        for name, properties, fd_cost in CASES:
            start = time.perf_counter()
            evaluate_response(model, graph, properties, settings=settings, **warm)
            seconds = time.perf_counter() - start
            baseline = baseline or seconds
            print(f"{len(atoms):>6} {name:>24} {seconds:>9.2f} {seconds / baseline:>10.1f} {fd_cost:>19}", flush=True)


if __name__ == "__main__":
    main()
