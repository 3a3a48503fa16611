"""Shared helpers of the benchmark scripts: water boxes at liquid density and timing."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
from ase import Atoms
from ase.build import molecule


def water_box(n_atoms: int, seed: int = 0) -> Atoms:
    """About ``n_atoms`` atoms of water (n_atoms // 3 molecules) on a jittered grid at ~1 g/cm³."""
    from scipy.spatial.transform import Rotation

    n_molecules = max(1, n_atoms // 3)
    per_side = int(np.ceil(n_molecules ** (1 / 3)))
    spacing = 3.1
    rng = np.random.default_rng(seed)
    atoms = Atoms(cell=np.eye(3) * per_side * spacing, pbc=True)
    for index in range(n_molecules):
        centre = (np.array(np.unravel_index(index, (per_side,) * 3)) + 0.5) * spacing
        mol = molecule("H2O")
        mol.positions = Rotation.random(random_state=rng).apply(mol.positions - mol.get_center_of_mass())
        mol.positions += centre + rng.normal(scale=0.1, size=3)
        atoms += mol
    return atoms


def best_time(function: Callable[[], object], repeats: int = 3) -> float:
    """Smallest wall time (s) of ``repeats`` calls after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def scaling_exponent(sizes: list[int], times: list[float]) -> float:
    """Slope of log(time) against log(size)."""
    return float(np.polyfit(np.log(sizes), np.log(times), 1)[0])
