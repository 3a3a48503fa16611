"""The harmonic check of spectra from MD with the shipped models: at low temperature in NVE, with every
vibration given k_B T, the MD peaks sit at the harmonic frequencies within the resolution and each
band's area equals the harmonic IR intensity (and Raman activity) within 10 %. Slow: minutes of MD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units

from fpscf.md_spectra.harmonic import compare_bands, from_spectra, resolution, verlet_wavenumber

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def one_thread():
    """Small systems run fastest on one thread (and leave the other core to the rest)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def assert_bands_match(bands: list[dict], width: float, timestep_fs: float, tolerance: float = 0.10,
                       weak: float = 0.0) -> None:
    """Each band (above ``weak``): its MD peak within the resolution ``width`` of the harmonic frequency,
    within a quarter of it once the integrator's own shift is included, and its area within ``tolerance``."""
    for band in bands:
        if band["harmonic"] <= weak:
            continue
        assert abs(band["md_peak_cm-1"] - band["harmonic_cm-1"]) <= width, band
        assert abs(band["md_peak_cm-1"] - verlet_wavenumber(band["harmonic_cm-1"], timestep_fs)) <= width / 4, band
        assert band["ratio"] == pytest.approx(1.0, abs=tolerance), band


def test_water_md_at_20K_reproduces_harmonic_frequencies_ir_intensities_and_raman_activities():
    from ase.build import molecule

    from fpscf import FixedPointCalculator
    from fpscf.md_spectra.molecule import molecule_md_spectra
    from fpscf.md_spectra.workflow import MDSpectraSettings

    calculator = FixedPointCalculator(model="water-b3lyp", scf_tolerance=1e-8, acoustic_sum_rule=True)
    settings = MDSpectraSettings(temperature=20.0, n_blocks=1, correlation_fs=500.0)
    result = molecule_md_spectra(molecule("H2O"), calculator, 20.0, steps=2000, timestep_fs=0.5,
                                 polarizability_every=4, equipartition=True, settings=settings)
    spectra, harmonic = result.spectra, result.harmonic
    width = resolution(spectra.ir.correlation_fs)  # ≈ 48 cm⁻¹; the stretches are 120 cm⁻¹ apart
    ir = compare_bands(spectra.ir.wavenumbers, spectra.ir.intensity, harmonic.frequencies, harmonic.ir_intensity, width)
    raman = compare_bands(spectra.raman.wavenumbers, spectra.raman.activity, harmonic.frequencies,
                          harmonic.raman_activity, width)
    assert len(ir) == 3
    assert_bands_match(ir, width, 0.5)
    # the asymmetric stretch's Raman activity is 1 % of the symmetric one's: its band is leakage-dominated
    assert_bands_match(raman, width, 0.5, weak=0.05 * harmonic.raman_activity.max())
    assert spectra.ir.sum_rule == pytest.approx(harmonic.ir_intensity.sum(), rel=0.10)


def test_alas_md_at_20K_reproduces_the_harmonic_to_mode_and_its_ir_intensity():
    from ase.build import bulk

    from fpscf import FixedPointCalculator
    from fpscf.calculators.spectra import crystal_spectra
    from fpscf.md_spectra.ir import ir_spectrum
    from fpscf.md_spectra.nve import run_nve
    from fpscf.md_spectra.sampling import harmonic_initial_conditions

    calculator = FixedPointCalculator(model="alas-lda", scf_tolerance=1e-8, acoustic_sum_rule=True)
    crystal = bulk("AlAs", "zincblende", a=5.595)
    harmonic_spectra = crystal_spectra(crystal, calculator, supercell=(1, 1, 1))
    harmonic = from_spectra(harmonic_spectra)
    displacements, velocities = harmonic_initial_conditions(harmonic_spectra.modes, 20.0, np.random.default_rng(0),
                                                            equipartition=True)
    start = crystal.copy()
    start.positions += displacements
    start.set_velocities(velocities / units.fs)
    run = run_nve(start, calculator, timestep_fs=2.0, steps=2000)
    spectrum = ir_spectrum(2.0, 20.0, dipole=run.dipole, volume=crystal.get_volume(), correlation_fs=2000.0,
                           wavenumbers=np.arange(0.0, 1000.0, 1.0))
    width = resolution(spectrum.correlation_fs)
    bands = compare_bands(spectrum.wavenumbers, spectrum.intensity, harmonic.frequencies, harmonic.ir_intensity, width)
    assert len(bands) == 1  # the three TO modes at Γ (no non-analytical term in a periodic cell: tin-foil)
    assert_bands_match(bands, width, 2.0)
    assert abs(run.total_energy - run.total_energy[0]).max() < 0.05 * 3 * 20.0 * units.kB
