"""Normal modes, phonons with LO–TO splitting, IR intensities and Raman activities
(fpscf.calculators.spectra) against finite differences, sum rules, rotations and the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.optimize import BFGS
from scipy.spatial.transform import Rotation

from fpscf import FixedPointCalculator, build_model
from fpscf.calculators.spectra import (
    crystal_spectra,
    frequencies_from_eigenvalues,
    lorentzian_spectrum,
    mass_weighted,
    SpectraError,
    molecule_spectra,
    phonon_gamma_modes,
    relax_molecule,
)
from fpscf.cli import main
from fpscf.units import (
    COULOMB_CONSTANT,
    IR_INTENSITY_KM_PER_MOL,
    VACUUM_PERMITTIVITY,
    WAVENUMBER_PER_SQRT_EV_A2_AMU,
)

FIELD = [0.02, -0.03, 0.05]
STEP = 1e-4


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny systems run fastest on one thread (and are not slowed by a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(species, seed=5, update="MLPNonLinearity"):
    """Random model; crystals use the linear update (a random MLP update gives NaCl a negative ε∞)."""
    return build_model(
        species, fixedpoint_update_config={"nonlinearity_cls": update}, num_channels=8, r_max=3.5,
        max_L=1, atomic_multipoles_max_l=1, field_feature_max_l=1, seed=seed,
    ).double()


def rattled(name, seed=4):
    atoms = molecule(name)
    atoms.rattle(0.05, seed=seed)
    return atoms


def rock_salt():
    return bulk("NaCl", "rocksalt", a=5.64)


def relative_error(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(b).max())


@pytest.mark.parametrize("periodic", [False, True])
def test_hessian_equals_finite_differences_of_forces(periodic):
    atoms = rattled("H2O")
    atoms.info["external_field"] = FIELD
    if periodic:
        atoms.set_cell([[4.6, 0.3, 0.0], [0.0, 5.0, 0.2], [0.1, 0.0, 5.2]])
        atoms.pbc = True
    calc = FixedPointCalculator(tiny_model([1, 8]), scf_tolerance=1e-12)
    hessian = calc.get_properties(["hessian"], atoms)["hessian"]
    finite = np.zeros_like(hessian)
    for index in range(len(atoms)):
        for axis in range(3):
            forces = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[index, axis] += sign * STEP
                forces.append(calc.get_properties(["forces"], moved)["forces"])
            finite[:, 3 * index + axis] = -(forces[0] - forces[1]).ravel() / (2 * STEP)
    assert relative_error(hessian, finite) < 1e-5
    assert np.abs(hessian - hessian.T).max() < 1e-9 * np.abs(hessian).max()


def test_ir_intensity_and_mode_raman_tensor_equal_finite_differences_along_each_mode():
    """I_k = |dD/dQ_k|² and α'_k = dα/dQ_k by central differences of converged SCF dipoles and
    polarizabilities along u_k = e_k/√m (H2O2 in a field, acoustic sum rule on)."""
    model = tiny_model([1, 8])
    atoms = rattled("H2O2")
    atoms.info["external_field"] = FIELD
    spectra = molecule_spectra(atoms, FixedPointCalculator(model, scf_tolerance=1e-12, acoustic_sum_rule=True))
    calc = FixedPointCalculator(model, scf_tolerance=1e-12)
    vibrations = np.nonzero(~spectra.modes.rigid)[0]
    assert len(vibrations) == 6
    step = 1e-4  # √amu·Å
    errors_ir, errors_raman = [], []
    for k in vibrations:
        values = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions += sign * step * spectra.modes.displacements[k]
            calc.reset()
            values.append(calc.get_properties(["dipole", "polarizability"], moved))
        dipole_fd = (values[0]["dipole"] - values[1]["dipole"]) / (2 * step)
        alpha_fd = (values[0]["polarizability"] - values[1]["polarizability"]) / (2 * step) * COULOMB_CONSTANT
        errors_ir.append(abs(spectra.intensities.ir_intensity[k] - (dipole_fd**2).sum()) / (dipole_fd**2).sum())
        errors_raman.append(relative_error(spectra.intensities.polarizability_derivatives[k], alpha_fd))
    assert max(errors_ir) < 1e-4, errors_ir
    assert max(errors_raman) < 1e-4, errors_raman


@pytest.mark.parametrize("name,species,seed,rigid", [("H2O", [1, 8], 1, 6), ("CO2", [6, 8], 2, 5)])
def test_relaxed_molecule_has_six_or_five_zero_modes(name, species, seed, rigid):
    """At a relaxed geometry the raw mass-weighted Hessian has 6 (linear: 5) zero modes; the
    projected modes have exactly those as rigid modes and the same vibrations."""
    model = tiny_model(species, seed=seed)
    atoms = molecule(name)
    atoms.calc = FixedPointCalculator(model, scf_tolerance=1e-12)
    assert BFGS(atoms, logfile=None).run(fmax=1e-6, steps=200)
    calc = FixedPointCalculator(model, scf_tolerance=1e-12, acoustic_sum_rule=True)
    spectra = molecule_spectra(atoms, calc)
    raw = frequencies_from_eigenvalues(np.linalg.eigvalsh(mass_weighted(calc.results["hessian"], atoms.get_masses())))
    by_size = np.argsort(np.abs(raw))
    assert np.abs(raw[by_size[:rigid]]).max() < 0.5  # cm⁻¹
    assert np.abs(raw[by_size[rigid]]) > 50.0
    modes = spectra.modes
    assert modes.rigid.sum() == rigid
    assert np.all(modes.frequencies[modes.rigid] == 0.0)
    assert np.allclose(np.sort(modes.frequencies[~modes.rigid]), np.sort(raw[by_size[rigid:]]), rtol=1e-6, atol=1e-4)


def test_relax_molecule_reaches_fmax_in_the_given_field_and_reports_failure():
    model = tiny_model([1, 8])
    atoms = rattled("H2O")
    calc = FixedPointCalculator(model, scf_tolerance=1e-10)
    field = [0.0, 0.1, 0.0]
    relaxed = relax_molecule(atoms, calc, fmax=1e-4, field=field)
    assert relaxed.calc is None and np.allclose(atoms.positions, rattled("H2O").positions)  # input untouched
    probe = relaxed.copy()
    probe.info["external_field"] = field
    probe.calc = calc
    assert np.linalg.norm(probe.get_forces(), axis=1).max() < 1e-4
    probe.info["external_field"] = [0.0, 0.0, 0.0]  # the minimum in the field is not the zero-field one
    assert np.linalg.norm(probe.get_forces(), axis=1).max() > 1e-3
    with pytest.raises(SpectraError, match="did not reach"):
        relax_molecule(atoms, calc, fmax=1e-6, steps=1)


def test_molecule_spectrum_does_not_depend_on_orientation():
    model = tiny_model([1, 8])
    atoms = rattled("H2O2")
    atoms.info["external_field"] = FIELD
    rotation = Rotation.from_euler("zyx", [0.4, -1.1, 2.3]).as_matrix()
    turned = atoms.copy()
    turned.positions = atoms.positions @ rotation.T
    turned.info["external_field"] = list(rotation @ np.array(FIELD))
    calc = FixedPointCalculator(model, scf_tolerance=1e-12, acoustic_sum_rule=True)
    first, second = molecule_spectra(atoms, calc), molecule_spectra(turned, calc)
    assert np.allclose(first.modes.frequencies, second.modes.frequencies, rtol=1e-8, atol=1e-6)
    for name in ("ir_intensity", "raman_activity", "depolarization_ratio"):
        a, b = getattr(first.intensities, name), getattr(second.intensities, name)
        vib = ~first.modes.rigid
        assert np.allclose(a[vib], b[vib], rtol=1e-7, atol=1e-10 * np.abs(a[vib]).max()), name


def test_applied_field_changes_the_spectrum_and_is_recorded():
    model = tiny_model([1, 8])
    atoms = rattled("H2O")
    calc = FixedPointCalculator(model, scf_tolerance=1e-10)
    plain = molecule_spectra(atoms, calc)
    field = [0.0, 0.0, 0.2]
    in_field = molecule_spectra(atoms, calc, field=field)
    assert np.allclose(plain.field, 0.0) and np.allclose(in_field.field, field)
    vib = ~plain.modes.rigid
    assert relative_error(in_field.modes.frequencies[vib], plain.modes.frequencies[vib]) > 1e-4
    assert relative_error(in_field.intensities.ir_intensity[vib], plain.intensities.ir_intensity[vib]) > 1e-4


@pytest.fixture(scope="module")
def salt():
    """NaCl (2-atom rock-salt cell), random Na/Cl model, Γ modes with LO–TO along a*."""
    calc = FixedPointCalculator(tiny_model([11, 17], seed=3, update="NoNonLinearity"), scf_tolerance=1e-10, acoustic_sum_rule=True)
    return crystal_spectra(rock_salt(), calc, q_direction=[1.0, 0.0, 0.0])


def test_crystal_acoustic_modes_vanish_at_gamma_after_sum_rule(salt):
    for frequencies in (salt.modes.frequencies, salt.frequencies_without_nac):
        acoustic = np.sort(np.abs(frequencies))[:3]
        assert acoustic.max() < 1e-3  # cm⁻¹
        assert np.sort(np.abs(frequencies))[3] > 10.0
    assert salt.modes.rigid.sum() == 3
    assert np.abs(salt.born_effective_charges.sum(0)).max() < 1e-10
    assert np.abs(salt.intensities.ir_intensity[salt.modes.rigid]).max() < 1e-20


def test_polar_crystal_has_lo_to_splitting_from_its_born_charges_and_none_without(salt):
    """Cubic two-atom cell: the LO eigenvalue is raised by Z²/(ε0 ε∞ Ω μ), the TO ones are not;
    with the Born charges zeroed the modes along q equal the analytic ones."""
    atoms, phonon = salt.atoms, salt.phonon
    to_lambda = lambda nu: np.sign(nu) * (nu / WAVENUMBER_PER_SQRT_EV_A2_AMU) ** 2  # noqa: E731
    analytic = np.sort(to_lambda(salt.frequencies_without_nac))
    along_q = np.sort(to_lambda(salt.modes.frequencies))
    masses = atoms.get_masses()
    reduced_mass = masses.prod() / masses.sum()
    charge = salt.born_effective_charges[0, 0, 0]
    assert abs(charge) > 0.1
    expected = charge**2 / (VACUUM_PERMITTIVITY * salt.dielectric_tensor[0, 0] * atoms.get_volume() * reduced_mass)
    shift = along_q - analytic
    lo = int(np.argmax(np.abs(shift)))
    assert shift[lo] == pytest.approx(expected, rel=1e-5)
    assert np.abs(np.delete(shift, lo)).max() < 1e-8 * expected
    phonon.nac_params = {**phonon.nac_params, "born": np.zeros_like(phonon.nac_params["born"])}
    no_charges = phonon_gamma_modes(phonon, [1.0, 0.0, 0.0])
    assert np.allclose(np.sort(no_charges.frequencies), np.sort(salt.frequencies_without_nac), atol=1e-4)


def test_unit_conversions_match_phonopy_and_literature():
    from phonopy.physical_units import get_physical_units

    units = get_physical_units()
    assert WAVENUMBER_PER_SQRT_EV_A2_AMU == pytest.approx(units.DefaultToTHz * units.THzToCm, rel=1e-6)
    # 42.2561 km/mol per (D/Å)²/amu (Gaussian's factor) and 1 e·Å = 4.803204 D
    assert IR_INTENSITY_KM_PER_MOL == pytest.approx(42.2561 * 4.803204**2, rel=1e-5)


def test_lorentzian_lines_have_unit_area_and_the_given_width():
    grid = np.linspace(-20000, 20000, 2_000_001)
    spectrum = lorentzian_spectrum(np.array([100.0, 300.0]), np.array([2.0, 0.5]), grid, width=8.0)
    assert np.trapezoid(spectrum, grid) == pytest.approx(2.5, rel=1e-3)
    peak = lorentzian_spectrum(np.array([0.0]), np.array([1.0]), np.array([0.0, 4.0]), width=8.0)
    assert peak[1] == pytest.approx(peak[0] / 2)


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_cli_writes_all_output_files_for_a_molecule(tmp_path, capsys):
    model_path = tmp_path / "water.fpscf"
    tiny_model([1, 8]).save(model_path)
    structure = tmp_path / "water.xyz"
    rattled("H2O").write(structure)
    out = tmp_path / "out"
    assert main(["spectra", str(structure), "--model", str(model_path), "--out", str(out),
                 "--field", "0", "0", "0.05", "--width", "5"]) == 0
    assert "backward passes" in capsys.readouterr().out
    for name in ("modes.csv", "spectrum.csv", "spectrum.png", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    rows = read_csv(out / "modes.csv")
    assert len(rows) == 3 and list(rows[0])[:6] == [
        "index", "frequency_cm-1", "ir_intensity", "raman_activity", "depolarization_ratio", "symmetry"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["field_V_per_A"] == [0.0, 0.0, 0.05]
    assert summary["acoustic_sum_rule"] is True and summary["model"] == str(model_path)
    assert summary["lorentzian_fwhm_cm-1"] == 5.0
    spectrum = read_csv(out / "spectrum.csv")
    assert list(spectrum[0]) == ["frequency_cm-1", "ir_intensity", "raman_activity"]


def test_cli_writes_phonopy_files_and_bands_for_a_crystal(tmp_path):
    import phonopy
    from phonopy.physical_units import get_physical_units

    model_path = tmp_path / "nacl.fpscf"
    tiny_model([11, 17], seed=3, update="NoNonLinearity").save(model_path)
    structure = tmp_path / "nacl.extxyz"
    rock_salt().write(structure)
    out = tmp_path / "out"
    assert main(["spectra", str(structure), "--model", str(model_path), "--out", str(out),
                 "--q-direction", "1", "0", "0", "--bands"]) == 0
    for name in ("modes.csv", "spectrum.csv", "spectrum.png", "summary.json", "phonopy.yaml", "BORN",
                 "band.yaml", "bands.png"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["supercell"] == [1, 1, 1] and summary["q_direction_reduced"] == [1.0, 0.0, 0.0]
    # reduced (1, 0, 0) of the fcc primitive cell is b1 ∝ (-1, 1, 1), written as a Cartesian unit vector too
    assert summary["q_direction_cartesian"] == pytest.approx(np.array([-1.0, 1.0, 1.0]) / np.sqrt(3.0))
    assert summary["point_group"] == "m-3m"
    assert len(read_csv(out / "modes.csv")) == 6
    reloaded = phonopy.load(out / "phonopy.yaml", born_filename=out / "BORN")
    assert np.allclose(reloaded.nac_params["born"], summary["born_effective_charges_e"], atol=1e-7)
    frequencies = reloaded.run_qpoints([[0, 0, 0]]).frequencies[0] * get_physical_units().THzToCm
    assert np.allclose(np.sort(frequencies), np.sort(summary["frequencies_without_nac_cm-1"]), atol=1e-3)


@pytest.mark.parametrize(
    "arguments,message",
    [
        (["missing.xyz", "--model", "MODEL"], "does not exist"),
        (["SALT"], "does not know"),  # the shipped default model (H, O) has no Na or Cl
        (["SALT", "--model", "MODEL"], "does not know"),
    ],
)
def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, capsys, arguments, message):
    model_path = tmp_path / "water.fpscf"
    tiny_model([1, 8]).save(model_path)
    molecule("H2O").write(tmp_path / "water.xyz")
    rock_salt().write(tmp_path / "salt.extxyz")
    names = {"MODEL": str(model_path), "STRUCTURE": str(tmp_path / "water.xyz"), "SALT": str(tmp_path / "salt.extxyz")}
    arguments = [names.get(a, a) for a in arguments]
    assert main(["spectra", *arguments, "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error
