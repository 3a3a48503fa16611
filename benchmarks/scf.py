"""SCF cost: Anderson vs linear mixing, and a full SCF evaluation vs the same model without SCF.

Usage: python benchmarks/scf.py [--sizes 100 300 1000 3000 10000] [--backend nvalchemi] [--kspace ewald]
Periodic sums on the particle mesh by default (O(N log N)); ``--kspace ewald`` for the direct
k-sum. For each
periodic water box: SCF steps and wall time (energy + forces) with linear and Anderson
mixing at the same tolerance, and the time of the same model with the density fixed at the local
guess (self_consistent=False), and the peak memory. Ratios are measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import scaling_exponent, water_box  # noqa: E402

import fpscf  # noqa: E402
from fpscf.data import atoms_to_graph  # noqa: E402
from fpscf.scf.settings import SCFSettings  # noqa: E402
from fpscf.scf.solver import SCFConvergenceError  # noqa: E402


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (GB; sizes run in increasing order)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def timed(model, graph, **kw) -> tuple[float, int | str]:
    """Wall time (s) and SCF steps of energy + forces; 'diverged@n' if the SCF failed."""
    start = time.perf_counter()
    try:
        out = model(graph, compute_forces=True, **kw)
    except SCFConvergenceError as error:
        return time.perf_counter() - start, f"diverged@{len(error.residual_history)}"
    return time.perf_counter() - start, int(out["scf_steps"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000, 3000])
    parser.add_argument("--backend", default="torch", choices=["torch", "nvalchemi"])
    parser.add_argument("--ewald-split", type=float, default=0.0, help="Ewald split width a (Å); 0 = direct k-sum")
    parser.add_argument("--kspace", default="auto", choices=["auto", "ewald", "pme"],
                        help="periodic sums: particle mesh (auto, pme) or direct k-sum (ewald)")
    parser.add_argument("--tolerance", type=float, default=1e-6)
    parser.add_argument("--skip-linear", action="store_true", help="measure Anderson and no-SCF only")
    args = parser.parse_args()
    model = fpscf.build_model(
        ["H", "O"], r_max=4.0, num_channels=16, max_L=1, atomic_multipoles_max_l=1,
        field_feature_widths=[1.0, 2.0], kspace_cutoff_factor=5.0, electrostatics_backend=args.backend,
        ewald_split_width=args.ewald_split or None, kspace_method=args.kspace,
    )
    print(f"random water model, periodic boxes, backend {args.backend}, periodic sums "
          f"{model.electrostatics.config.periodic_method}, Ewald split {args.ewald_split} Å, tolerance {args.tolerance:g}, "
          f"field 0.05 V/Å, energy + forces, {torch.get_num_threads()} threads")
    header = f"{'atoms':>6} {'linear steps':>12} {'linear s':>9} {'anderson steps':>14} {'anderson s':>10} {'no-SCF s':>9} {'SCF/no-SCF':>10} {'peak RSS GB':>11}"
    print(header)
    sizes, scf_times = [], []
    for n in args.sizes:
        atoms = water_box(n)
        atoms.info["external_field"] = [0.0, 0.0, 0.05]
        graph = atoms_to_graph(atoms, model.config.r_max, species=[1, 8]).to(dtype=torch.float64)
        model(graph, self_consistent=False)  # warm-up (kernel compilation, allocator)
        t_lin, s_lin = (float("nan"), "-") if args.skip_linear else timed(
            model, graph, settings=SCFSettings(scf_tolerance=args.tolerance, mixing="linear", mixing_parameter=0.5, max_scf_steps=500)
        )
        t_and, s_and = timed(model, graph, settings=SCFSettings(scf_tolerance=args.tolerance, mixing="anderson", mixing_parameter=0.5))
        t_none, _ = timed(model, graph, self_consistent=False)
        sizes.append(len(atoms))
        scf_times.append(t_and)
        print(f"{len(atoms):>6} {s_lin:>12} {t_lin:>9.3f} {s_and:>14} {t_and:>10.3f} {t_none:>9.3f} {t_and / t_none:>10.2f} {peak_rss_gb():>11.2f}", flush=True)
    if len(sizes) >= 2:
        print(f"Anderson SCF time ∝ N^{scaling_exponent(sizes, scf_times):.2f}")


if __name__ == "__main__":
    main()
