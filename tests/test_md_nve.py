"""NVE molecular dynamics with the ASE calculator conserves energy (forces are exact derivatives)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.build import molecule
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet
from ase.optimize import FIRE

import fpscf


def run_nve(atoms, steps: int) -> tuple[float, float]:
    """Relax (a random model's PES is arbitrary: start near a minimum), then NVE at 30 K, 0.5 fs.

    Returns (drift in eV/atom/ps from a linear fit of the total energy, standard deviation in eV).
    """
    FIRE(atoms, logfile=None).run(fmax=0.02, steps=300)
    MaxwellBoltzmannDistribution(atoms, temperature_K=30, rng=np.random.default_rng(0))
    dynamics = VelocityVerlet(atoms, 0.5 * units.fs)
    energies: list[float] = []
    dynamics.attach(lambda: energies.append(atoms.get_total_energy()), interval=1)
    dynamics.run(steps)
    values = np.array(energies)
    times_ps = np.arange(len(values)) * 0.5e-3
    drift = np.polyfit(times_ps, values, 1)[0] / len(atoms)
    print(f"NVE {len(atoms)} atoms, {steps} steps: drift {drift:.2e} eV/atom/ps, fluctuation {values.std():.2e} eV")
    return float(drift), float(values.std())


def model():
    return fpscf.build_model(["H", "O"], num_channels=8, r_max=3.5, seed=1)


def test_nve_energy_conservation_water_cluster_in_field():
    atoms = molecule("H2O") + molecule("H2O")
    atoms.positions[3:] += [2.9, 0.2, 0.1]
    atoms.calc = fpscf.FixedPointCalculator(model=model(), electric_field=[0, 0, 0.05], scf_tolerance=1e-10)
    drift, fluctuation = run_nve(atoms, 500)
    assert abs(drift) < 1e-4
    assert fluctuation < 1e-3


@pytest.mark.slow
def test_nve_energy_conservation_periodic_water_box():
    atoms = molecule("H2O") + molecule("H2O")
    atoms.positions[3:] += [2.9, 0.2, 0.1]
    atoms.set_cell([6.5, 6.0, 6.2])
    atoms.pbc = True
    atoms.calc = fpscf.FixedPointCalculator(model=model(), electric_field=[0.03, 0, 0], scf_tolerance=1e-10)
    drift, fluctuation = run_nve(atoms, 500)
    assert abs(drift) < 1e-4
    assert fluctuation < 1e-3
