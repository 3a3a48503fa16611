"""Spectra from MD (fpscf.md_spectra): correlation numerics against analytic results, the classical
sum rule, units against a hand calculation in SI, and the dielectric response of a Lorentz-oscillator
model whose fluctuations and susceptibility are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.constants as si

from fpscf.md_spectra.correlation import (
    SPEED_OF_LIGHT_CM_PER_FS,
    angular_frequency,
    autocorrelation,
    fourier_laplace,
    rate_spectral_density,
)
from fpscf.md_spectra.dielectric import dielectric_function, harmonic_dielectric_function, static_permittivity
from fpscf.md_spectra.ir import dipole_rate_from_born_charges, ir_spectrum
from fpscf.md_spectra.quantum import quantum_correction, raman_prefactor
from fpscf.md_spectra.raman import raman_spectrum
from fpscf.units import BOLTZMANN, COULOMB_CONSTANT, EV_PER_AMU_A2_PER_FS2, IR_INTENSITY_KM_PER_MOL


def ornstein_uhlenbeck(n: int, dt: float, tau: float, sigma: float, rng: np.random.Generator, dims: int = 3) -> np.ndarray:
    """Exact samples of an OU process: ⟨x_a(0) x_a(t)⟩ = σ² e^{−|t|/τ} per component."""
    decay = np.exp(-dt / tau)
    noise = rng.normal(0.0, sigma * np.sqrt(1 - decay**2), (n, dims))
    x = np.empty((n, dims))
    x[0] = rng.normal(0.0, sigma, dims)
    for i in range(1, n):
        x[i] = decay * x[i - 1] + noise[i]
    return x


def test_damped_cosine_transform_is_lorentzian():
    dt, tau, nu0 = 0.5, 300.0, 1600.0
    lags = np.arange(40000) * dt  # 20 ps, e^{-t/τ} ~ 1e-29 at the end
    w0 = angular_frequency(nu0)
    correlation = np.cos(w0 * lags) * np.exp(-lags / tau)
    grid = np.arange(1400.0, 1800.0, 5.0)
    w = angular_frequency(grid)
    expected = 0.5 * ((1 / tau) / ((w - w0) ** 2 + tau**-2) + (1 / tau) / ((w + w0) ** 2 + tau**-2))
    got = fourier_laplace(correlation, dt, grid).real
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=1e-4 * expected.max())


def test_autocorrelation_of_ornstein_uhlenbeck_is_exponential_and_spectrum_lorentzian():
    rng = np.random.default_rng(7)
    dt, tau, sigma = 1.0, 20.0, 0.3
    x = ornstein_uhlenbeck(200_000, dt, tau, sigma, rng)
    correlation = autocorrelation(x, 100)
    expected = 3 * sigma**2 * np.exp(-np.arange(101) * dt / tau)
    np.testing.assert_allclose(correlation, expected, atol=0.03 * expected[0])
    grid = np.arange(0.0, 600.0, 10.0)
    density = rate_spectral_density(x, dt, grid, correlation_fs=400.0, window="none", n_blocks=8)
    w = angular_frequency(grid)
    lorentzian = 4 * SPEED_OF_LIGHT_CM_PER_FS * 3 * sigma**2 * tau / (1 + (w * tau) ** 2)
    deviation = np.abs(density.values - lorentzian)
    assert np.all(deviation < 4 * density.error + 0.01 * lorentzian[0])
    # the block errors are honest: about one standard error of deviation on average
    assert 0.3 < np.sqrt(np.mean((deviation / density.error) ** 2)) < 2.0


@pytest.mark.parametrize("window", ["hann", "none"])
def test_classical_sum_rule_integral_equals_mean_square(window):
    rng = np.random.default_rng(3)
    dt = 0.5
    x = ornstein_uhlenbeck(8_000, dt, 8.0, 1.0, rng) + np.sin(angular_frequency(3000.0) * np.arange(8_000) * dt)[:, None]
    nyquist = 1.0 / (2 * SPEED_OF_LIGHT_CM_PER_FS * dt)
    grid = np.linspace(0.0, nyquist, 2001)
    density = rate_spectral_density(x, dt, grid, correlation_fs=400.0, window=window)
    area = np.trapezoid(density.values, grid)
    assert area == pytest.approx(autocorrelation(x, 0)[0], rel=1e-3)
    assert density.mean_square == pytest.approx(np.mean((x**2).sum(1)), rel=1e-12)


def harmonic_dipole(d: np.ndarray, nu: float, temperature: float, dt: float, n: int, phase: float = 0.3):
    """D(t) = d Q(t) of one mass-weighted mode (Å√amu) with energy k_B T; d (3,) e/√amu."""
    thermal = BOLTZMANN * temperature / EV_PER_AMU_A2_PER_FS2
    w = angular_frequency(nu)
    t = np.arange(n) * dt
    q = np.sqrt(2 * thermal) / w * np.sin(w * t + phase)
    rate = np.sqrt(2 * thermal) * np.cos(w * t + phase)
    return q[:, None] * d[None, :], rate[:, None] * d[None, :]


def test_ir_band_area_of_harmonic_mode_equals_its_intensity_and_units_match_si():
    d = np.array([0.1, -0.2, 0.15])  # ∂D/∂Q, e/√amu
    temperature, dt, volume = 300.0, 0.5, 1000.0
    dipole, rate = harmonic_dipole(d, 1650.0, temperature, dt, 8000)
    exact = ir_spectrum(dt, temperature, dipole_rate=rate, volume=volume, correlation_fs=1000.0)
    sampled = ir_spectrum(dt, temperature, dipole=dipole, volume=volume, correlation_fs=1000.0)
    harmonic = float(d @ d)  # the ir_intensity of fpscf.calculators.spectra, e²/amu
    for spectrum in (exact, sampled):
        assert spectrum.band(1500.0, 1800.0) == pytest.approx(harmonic, rel=0.01)
        assert spectrum.wavenumbers[np.argmax(spectrum.intensity)] == pytest.approx(1650.0, abs=2.0)
    assert exact.sum_rule == pytest.approx(harmonic, rel=1e-3)
    # α n by hand in SI: β/(3 ε0 V c) ∫ ⟨Ḋ(0)·Ḋ(t)⟩ w(t) cos ωt dt, from the same windowed correlation
    max_lag = int(exact.correlation_fs / dt)
    correlation = autocorrelation(rate, max_lag) * np.cos(0.5 * np.pi * np.arange(max_lag + 1) / max_lag) ** 2
    integral = fourier_laplace(correlation, dt, exact.wavenumbers).real * (si.e * 1e-10 / 1e-15) ** 2 * 1e-15
    beta = 1 / (si.k * temperature)
    alpha_n = beta * integral / (3 * si.epsilon_0 * volume * 1e-30 * si.c) / 100.0  # 1/m -> 1/cm
    np.testing.assert_allclose(exact.absorption_coefficient, alpha_n, rtol=1e-6, atol=1e-9 * alpha_n.max())
    assert exact.km_per_mol.max() == pytest.approx(exact.intensity.max() * IR_INTENSITY_KM_PER_MOL)


def test_ir_from_born_charges_and_velocities_equals_dipole_rate():
    rng = np.random.default_rng(0)
    charges, velocities = rng.normal(size=(5, 4, 3, 3)), rng.normal(size=(5, 4, 3))
    expected = np.array([sum(charges[t, i] @ velocities[t, i] for i in range(4)) for t in range(5)])
    np.testing.assert_allclose(dipole_rate_from_born_charges(charges, velocities), expected)


def test_quantum_corrections_limits_and_raman_prefactor():
    grid = np.array([1e-6, 100.0, 3000.0])
    for kind in ("harmonic", "standard", "classical"):
        assert quantum_correction(grid, 300.0, kind)[0] == pytest.approx(1.0)
    x = grid[2] * si.h * si.c * 100 / (si.k * 300.0)
    assert quantum_correction(grid, 300.0, "standard")[2] == pytest.approx(2 * np.sinh(x / 2) / x)
    assert quantum_correction(grid, 300.0, "classical")[2] == pytest.approx((1 - np.exp(-x)) / x)
    laser = 1e7 / 532.0
    assert raman_prefactor(grid, 300.0, 532.0)[2] == pytest.approx((laser - 3000.0) ** 4 / 3000.0 / (1 - np.exp(-x)))


def test_raman_band_areas_equal_harmonic_activity_and_depolarisation():
    rng = np.random.default_rng(5)
    derivative = rng.normal(size=(3, 3))
    derivative = 0.5 * (derivative + derivative.T) / COULOMB_CONSTANT  # ∂α/∂Q, e·Å²/V per Å√amu
    temperature, dt = 200.0, 2.0
    q, _ = harmonic_dipole(np.ones(1), 1000.0, temperature, dt, 4000)
    alpha = 1.0 + q[:, 0, None, None] * derivative[None]  # (T, 3, 3)
    spectrum = raman_spectrum(dt, temperature, alpha, correlation_fs=2000.0)
    a_prime = np.trace(derivative) / 3 * COULOMB_CONSTANT  # Å²/√amu
    traceless = derivative * COULOMB_CONSTANT - a_prime * np.eye(3)
    gamma2 = 1.5 * np.sum(traceless**2)
    assert spectrum.band(900.0, 1100.0) == pytest.approx(45 * a_prime**2 + 7 * gamma2, rel=0.01)
    band = (spectrum.wavenumbers > 900) & (spectrum.wavenumbers < 1100)
    ratio = np.trapezoid(spectrum.vh[band]) / np.trapezoid(spectrum.vv[band])
    assert ratio == pytest.approx(3 * gamma2 / (45 * a_prime**2 + 4 * gamma2), rel=1e-6)
    intensity = spectrum.intensity("total")
    assert np.nanmax(intensity) == pytest.approx(1.0)


def lorentz_oscillators(rng: np.random.Generator, n: int, steps: int, dt: float, mass: float, omega0: float,
                        gamma: float, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions and velocities (steps, n, 3) of independent 3D Langevin oscillators (BAOAB), Å and Å/fs."""
    thermal = BOLTZMANN * temperature / EV_PER_AMU_A2_PER_FS2
    x = rng.normal(0.0, np.sqrt(thermal / (mass * omega0**2)), (n, 3))
    v = rng.normal(0.0, np.sqrt(thermal / mass), (n, 3))
    c1, c2 = np.exp(-gamma * dt), np.sqrt((1 - np.exp(-2 * gamma * dt)) * thermal / mass)
    xs, vs = np.empty((steps, n, 3)), np.empty((steps, n, 3))
    for i in range(steps):
        v -= 0.5 * dt * omega0**2 * x
        x += 0.5 * dt * v
        v = c1 * v + c2 * rng.normal(size=(n, 3))
        x += 0.5 * dt * v
        v -= 0.5 * dt * omega0**2 * x
        xs[i], vs[i] = x, v
    return xs, vs


def test_dielectric_response_of_lorentz_oscillators_matches_closed_form():
    """N charges q on springs in a cell of volume V: ε₀ − ε∞ = N q²/(ε0 V k) and
    ε(ω) = ε∞ + (N q²/(ε0 V m))/(ω0² − ω² − iγω) (Langevin friction γ)."""
    rng = np.random.default_rng(11)
    n, mass, charge, volume, temperature, eps_inf = 64, 10.0, 0.8, 2000.0, 300.0, 1.7
    omega0, gamma, dt = angular_frequency(500.0), 0.01, 1.0  # rad/fs, 1/fs, fs
    x, v = lorentz_oscillators(rng, n, 40_000, dt, mass, omega0, gamma, temperature)
    dipole, rate = charge * x.sum(1), charge * v.sum(1)
    strength = n * charge**2 / (mass * 0.0055263494 * volume * EV_PER_AMU_A2_PER_FS2)  # rad²/fs²
    static = static_permittivity(dipole, volume, temperature, eps_inf, n_blocks=8)
    assert static.isotropic == pytest.approx(eps_inf + strength / omega0**2, abs=3 * static.isotropic_error)
    assert static.isotropic_error < 0.05 * (static.isotropic - eps_inf)
    from fpscf.md_spectra.workflow import integrated_dipole

    from_rate = static_permittivity(integrated_dipole(rate, dt), volume, temperature, eps_inf)
    # BAOAB's velocities are not exactly dx/dt: 0.1 % of the fluctuation term here
    assert from_rate.isotropic - eps_inf == pytest.approx(static.isotropic - eps_inf, rel=0.01)
    grid = np.arange(200.0, 800.0, 10.0)
    w = angular_frequency(grid)
    expected = eps_inf + strength / (omega0**2 - w**2 - 1j * gamma * w)
    result = dielectric_function(dt, temperature, volume, grid, dipole_rate=rate, epsilon_infinity=eps_inf,
                                 correlation_fs=2000.0)
    scale = np.abs(expected - eps_inf).max()
    assert np.abs(result.epsilon - expected).max() < 0.1 * scale
    from_dipole = dielectric_function(dt, temperature, volume, np.concatenate([[2.0], grid]), dipole=dipole,
                                      epsilon_infinity=eps_inf, correlation_fs=2000.0)
    assert np.abs(from_dipole.epsilon[1:] - expected).max() < 0.1 * scale
    assert from_dipole.epsilon[0].real == pytest.approx(static.isotropic, abs=0.05 * (static.isotropic - eps_inf))
    # the harmonic form with the oscillators as modes (∂D/∂Q = q/√m along each axis, 3n modes)
    derivatives = np.repeat(np.eye(3) * charge / np.sqrt(mass), n, axis=0)
    width = gamma / (2 * np.pi * SPEED_OF_LIGHT_CM_PER_FS)
    harmonic = harmonic_dielectric_function(grid, np.full(3 * n, 500.0), derivatives, volume, eps_inf, width=width)
    np.testing.assert_allclose(harmonic.epsilon, expected, rtol=1e-9)


def test_lammps_dipole_file_reader_and_cli_write_harmonic_band(tmp_path):
    """A fix ave/time dipole file (restart repeating a step) read and turned into files by fpscf md-spectra."""
    import json

    from fpscf.cli import main
    from fpscf.md_spectra.readers import read_series

    d, temperature, md_step = np.array([0.0, 0.05, 0.2]), 300.0, 0.5
    dipole, _ = harmonic_dipole(d, 1650.0, temperature, 2 * md_step, 4000)
    header = ["# Time-averaged data for fix dipole", "# TimeStep c_extra[1] c_extra[2] c_extra[3]"]
    rows = [f"{2 * i} {x:.12g} {y:.12g} {z:.12g}" for i, (x, y, z) in enumerate(dipole)]
    # two segments of a restarted run; step 2000 is in both, and the later row counts
    paths = [tmp_path / "run_0.dipole", tmp_path / "run_2000.dipole"]
    paths[0].write_text("\n".join(header + rows[:1000] + ["2000 9 9 9"]) + "\n")
    paths[1].write_text("\n".join(header + rows[1000:]) + "\n")
    series = read_series(paths, timestep_fs=md_step)
    assert series.timestep_fs == pytest.approx(2 * md_step) and len(series.dipole) == 4000
    np.testing.assert_allclose(series.dipole, dipole, atol=1e-9)
    modes = tmp_path / "modes.csv"
    modes.write_text("index,frequency_cm-1,ir_intensity,raman_activity,depolarization_ratio,symmetry,"
                     "ir_intensity_km_per_mol,acoustic\n1,1650.0,%.8e,0.0,nan,-,0,0\n" % float(d @ d))
    out = tmp_path / "out"
    assert main(["md-spectra", *map(str, paths), "--timestep", str(md_step), "--temperature", str(temperature),
                 "--harmonic", str(modes), "--blocks", "2", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    band = summary["harmonic"]["ir_bands"][0]
    assert band["ratio"] == pytest.approx(1.0, abs=0.02)
    assert band["md_peak_cm-1"] == pytest.approx(1650.0, abs=4.0)
    header = (out / "spectrum.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["wavenumber_cm-1", "ir_intensity", "ir_intensity_error", "ir_km_per_mol"]
    assert (out / "spectrum.png").stat().st_size > 0


def test_extxyz_with_dipole_and_polarizability_gives_ir_raman_and_permittivity(tmp_path):
    """Periodic frames carrying dipole and α in info: IR, Raman, ε₀ and ε(ω) from the ASE reader."""
    import ase.io
    from ase import Atoms

    from fpscf.md_spectra import MDSpectraSettings, compute_md_spectra, read_ase

    rng = np.random.default_rng(2)
    n = 400
    dipole = ornstein_uhlenbeck(n, 2.0, 30.0, 0.5, rng)
    frames = []
    for i in range(n):
        atoms = Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]], cell=np.eye(3) * 10.0, pbc=True)
        atoms.info.update(dipole=dipole[i], polarizability=np.eye(3) * 0.1 + 0.01 * dipole[i, 0] * np.eye(3),
                          external_field=[0.0, 0.0, 0.01], time=2.0 * i)
        frames.append(atoms)
    path = tmp_path / "frames.extxyz"
    ase.io.write(path, frames)
    series = read_ase(path)
    assert series.timestep_fs == 2.0 and series.volume == pytest.approx(1000.0)
    np.testing.assert_allclose(series.field, [0.0, 0.0, 0.01])
    result = compute_md_spectra(series, MDSpectraSettings(temperature=300.0, n_blocks=2, correlation_fs=200.0))
    expected = 1.5 + np.trace(np.cov(dipole.T, bias=True)) / (3 * 0.0055263494 * 1000.0 * BOLTZMANN * 300.0)
    static = static_permittivity(dipole, 1000.0, 300.0, 1.5)
    assert static.isotropic == pytest.approx(expected, rel=1e-10)
    assert result.ir is not None and result.raman is not None and result.dielectric is not None
    assert result.static.isotropic == pytest.approx(1.0 + expected - 1.5, rel=1e-10)
    assert np.all(np.isfinite(result.raman.activity[1:]))


def test_born_charge_dipole_rate_along_model_md_equals_dipole_differences_and_cli_runs(tmp_path):
    """Ḋ = Σ Z*·v (model's Born charges, ASE velocities) agrees with differences of the model's dipole
    along a short water MD; fpscf md-spectra --model evaluates the same frames (cache resumable)."""
    import json

    import torch
    from ase.build import molecule
    from ase.io.trajectory import Trajectory

    from fpscf import FixedPointCalculator
    from fpscf.cli import main
    from fpscf.md_spectra.evaluate import evaluate_frames
    from fpscf.md_spectra.nve import run_nve

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        calculator = FixedPointCalculator(model="water-b3lyp", scf_tolerance=1e-8)
        atoms = molecule("H2O")
        atoms.set_velocities(np.random.default_rng(0).normal(0.0, 0.1, (3, 3)))  # ≈ 600 K
        run = run_nve(atoms, calculator, timestep_fs=0.25, steps=8)
        names = ["dipole", "born_effective_charges"]  # what the command evaluates with --born-charges
        born = evaluate_frames(run.frames, calculator, names, cache=tmp_path / "c.npz")
        velocities = np.array([frame.get_velocities() for frame in run.frames]) * units_fs()
        rate = dipole_rate_from_born_charges(born.values["born_effective_charges"], velocities)
        differences = np.diff(run.dipole, axis=0) / 0.25
        midpoint = 0.5 * (rate[1:] + rate[:-1])
        assert np.abs(differences - midpoint).max() < 0.02 * np.abs(rate).max()
        again = evaluate_frames(run.frames, None, names, cache=tmp_path / "c.npz")  # all cached, no calculator
        np.testing.assert_array_equal(again.values["born_effective_charges"], born.values["born_effective_charges"])
        path = tmp_path / "md.traj"
        with Trajectory(path, "w") as trajectory:
            for frame in run.frames:
                trajectory.write(frame)
        out = tmp_path / "out"
        assert main(["md-spectra", str(path), "--timestep", "0.25", "--model", "water-b3lyp", "--born-charges",
                     "--cache", str(tmp_path / "c.npz"), "--polarizability-every", "1", "--blocks", "1",
                     "--temperature", "600", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ir"]["source"] == "rate" and summary["raman"]["sample_interval_fs"] == 0.25


def units_fs() -> float:
    from ase import units

    return units.fs


def test_harmonic_initial_conditions_give_each_mode_kT_and_no_drift_or_spin():
    from fpscf.calculators.spectra import molecule_normal_modes
    from fpscf.md_spectra.sampling import harmonic_initial_conditions

    rng = np.random.default_rng(4)
    positions = np.array([[0.0, 0.0, 0.12], [0.0, 0.76, -0.48], [0.0, -0.76, -0.48], [0.9, 0.1, 0.3]])
    masses = np.array([16.0, 1.0, 1.0, 12.0])
    a = rng.normal(size=(12, 12))
    modes = molecule_normal_modes(a @ a.T + 12 * np.eye(12), masses, positions)
    vibrations = ~modes.rigid
    thermal = BOLTZMANN * 250.0 / EV_PER_AMU_A2_PER_FS2
    omega = angular_frequency(modes.frequencies[vibrations])
    e = modes.eigenvectors[vibrations].reshape(len(omega), -1)
    sqrt_m = np.repeat(np.sqrt(masses), 3)
    displacements, velocities = harmonic_initial_conditions(modes, 250.0, rng, equipartition=True)
    q, q_dot = e @ (displacements.ravel() * sqrt_m), e @ (velocities.ravel() * sqrt_m)
    np.testing.assert_allclose(0.5 * q_dot**2 + 0.5 * (omega * q) ** 2, thermal, rtol=1e-10)
    np.testing.assert_allclose(masses @ velocities, 0.0, atol=1e-12)
    centred = positions - masses @ positions / masses.sum()
    np.testing.assert_allclose((masses[:, None] * np.cross(centred, velocities)).sum(0), 0.0, atol=1e-12)
    energies = []
    for _ in range(400):
        d, v = harmonic_initial_conditions(modes, 250.0, rng, rotation=True)
        energies.append(0.5 * (masses[:, None] * v**2).sum())
    # canonical: k_B T/2 per vibration and per rotation (3N − 6 + 3 quadratic kinetic terms)
    assert np.mean(energies) == pytest.approx(0.5 * thermal * (12 - 6 + 3), rel=0.08)
