"""The liquid-water model in the liquid: 200 steps (100 fs) of Langevin MD of 32 periodic waters at
300 K with the Python calculator, stopped at the first sign of trouble (forces above 20 eV/Å, an SCF
spike, T above 900 K, atoms within 0.6 Å: fpscf.active_learning.explore). The shipped water-b3lyp
blows up in such boxes within 6–17 fs. Marked slow (about 2 min on one idle core); the long LAMMPS run is
examples/liquid_water/md.py."""

from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from fpscf.active_learning.explore import MDSettings, StopCriteria, run_md
from fpscf.calculators.fixed_point import FixedPointCalculator

LIQUID = Path(__file__).resolve().parents[1] / "examples" / "liquid_water"
MODEL = LIQUID / "run_v2" / "best.fpscf"


@pytest.mark.slow
def test_32_waters_stay_whole_for_100_fs_at_300_K():
    box = read(LIQUID / "start" / "box_32_seed0.xyz")
    calculator = FixedPointCalculator(str(MODEL), scf_tolerance=1e-6)
    run = run_md(box, calculator, MDSettings(steps=200, seed=1), StopCriteria(), seed=1)
    assert run.stable, f"stopped after {run.time_to_failure_fs} fs: {run.stop_reason} ({run.stop_detail})"
    last = run.frames[-1]
    assert np.isfinite(last.info["model_energy"]) and np.abs(last.arrays["model_forces"]).max() < 20.0
    temperatures = [record.temperature_K for record in run.records]
    assert np.mean(temperatures[len(temperatures) // 2 :]) < 600.0  # the thermostat holds it (the start box relaxes)
    distances = last.get_all_distances(mic=True)
    oxygens, hydrogens = np.flatnonzero(last.numbers == 8), np.flatnonzero(last.numbers == 1)
    bonds = np.sort(distances[np.ix_(hydrogens, oxygens)], axis=1)
    assert bonds[:, 0].max() < 1.25 and bonds[:, 1].min() > 1.3  # every H on one O: 32 whole molecules
    owners = distances[np.ix_(hydrogens, oxygens)].argmin(axis=1)
    assert np.bincount(owners, minlength=len(oxygens)).tolist() == [2] * len(oxygens)
