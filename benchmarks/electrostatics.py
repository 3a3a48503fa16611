"""Time of the periodic electrostatics (energy + field features + gradients) for each backend.

Usage: python benchmarks/electrostatics.py [--sizes 100 1000 10000] [--max-nk 5e7] [--variants torch+pme torch]
Prints one row per (variant, size) and the scaling exponent per variant: ``torch+pme`` (the
smooth particle mesh, the default of models: k-vectors column is the direct sum's, for reference),
``torch`` (pure-torch direct k-sum, exportable), ``torch+ewald`` (the same with the Ewald split, a = 2 Å) and
``nvalchemi`` (Warp direct-k feature kernels). Direct k-sums cost O(N·K) = O(N²) at fixed density;
sizes with N·K above --max-nk are skipped.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import best_time, scaling_exponent, water_box  # noqa: E402

from fpscf.electrostatics.gaussian_multipoles import ElectrostaticsConfig, GaussianMultipoleElectrostatics  # noqa: E402
from fpscf.electrostatics.reciprocal import half_space_miller_indices  # noqa: E402


VARIANTS = {
    "torch+pme": dict(backend="torch", kspace_method="pme"),
    "torch": dict(backend="torch"),
    "torch+ewald": dict(backend="torch", ewald_split_width=2.0),
    "nvalchemi": dict(backend="nvalchemi"),
}


def run(variant: str, n_atoms: int, l_max: int, max_nk: float) -> tuple[float, int] | None:
    config = ElectrostaticsConfig(
        multipole_max_l=l_max, smearing_width=1.0, receiver_widths=(1.0, 2.0), feature_max_l=1,
        kspace_cutoff_factor=5.0, **VARIANTS[variant],
    )
    es = GaussianMultipoleElectrostatics(config)
    atoms = water_box(n_atoms)
    cell = torch.tensor(atoms.cell.array, dtype=torch.float64)
    n_k = len(half_space_miller_indices(cell, config.k_cutoff))
    if len(atoms) * n_k > max_nk and config.periodic_method != "pme":
        return None
    g = torch.Generator().manual_seed(0)
    multipoles = 0.1 * torch.randn(len(atoms), (l_max + 1) ** 2, generator=g, dtype=torch.float64)
    batch = torch.zeros(len(atoms), dtype=torch.long)

    def step() -> None:
        positions = torch.tensor(atoms.positions, dtype=torch.float64, requires_grad=True)
        p = multipoles.clone().requires_grad_(True)
        geometry = es.prepare(positions, cell[None], batch, ["periodic"])
        potential = es.potential(geometry, p)
        energy = es.hartree_energy(p, potential, batch, 1).sum() + potential[:, 1:].sum()
        torch.autograd.grad(energy, (positions, p))

    return best_time(step, repeats=2), n_k


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--l-max", type=int, default=1)
    parser.add_argument("--max-nk", type=float, default=2e8)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    print(f"periodic water boxes, σ = 1 Å, receivers (1, 2) Å, l_max = {args.l_max}, "
          f"k_cut = 5/σ, float64, {torch.get_num_threads()} threads")
    print(f"{'backend':>10} {'atoms':>7} {'k-vectors':>10} {'time (s)':>10}")
    for backend in args.variants:
        sizes, times = [], []
        for n in args.sizes:
            result = run(backend, n, args.l_max, args.max_nk)
            if result is None:
                print(f"{backend:>10} {n:>7} {'':>10} {'skipped (N·K > --max-nk)':>10}")
                continue
            seconds, n_k = result
            sizes.append(n)
            times.append(seconds)
            print(f"{backend:>10} {n:>7} {n_k:>10} {seconds:>10.3f}", flush=True)
        if len(sizes) >= 2:
            print(f"{backend:>10} scaling exponent (time ∝ N^x): x = {scaling_exponent(sizes, times):.2f}")


if __name__ == "__main__":
    main()
