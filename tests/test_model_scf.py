"""The fixed-point model and its ASE calculator, checked against physics and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

import fpscf
from fpscf import FixedPointCalculator, build_model
from fpscf.data import atoms_to_graph
from fpscf.electrostatics.multipoles import multipole_irreps
from fpscf.rotations import irreps_rotation_matrix
from fpscf.scf.settings import SCFSettings
from fpscf.scf.solver import SCFConvergenceError

TIGHT = SCFSettings(scf_tolerance=1e-11)
UPDATES = {
    "linear": {"nonlinearity_cls": "NoNonLinearity"},
    "mlp": {"nonlinearity_cls": "MLPNonLinearity"},
    "manybody": {"type": "ManyBodyUpdate"},
}


def small_model(update="linear", **kw):
    options = dict(num_channels=8, r_max=3.5, max_L=2, atomic_multipoles_max_l=2, field_feature_max_l=2, seed=3)
    options.update(kw)
    return build_model([1, 8], fixedpoint_update_config=UPDATES[update], **options).double()


def water(periodic=False):
    atoms = molecule("H2O")
    atoms.rattle(0.05, seed=2)
    if periodic:
        atoms.set_cell([[5.0, 0.3, 0.0], [0.0, 5.5, 0.2], [0.1, 0.0, 6.0]])
        atoms.pbc = True
    return atoms


def evaluate(model, atoms, **kw):
    graph = atoms_to_graph(atoms, model.config.r_max, species=model.atomic_numbers)
    return model(graph, settings=TIGHT, **kw)


def energy_of(model, atoms, **kw):
    return float(evaluate(model, atoms, **kw)["energy"].detach())


@pytest.mark.parametrize("update", list(UPDATES))
@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("constant_charge", [True, False])
def test_forces_are_minus_gradient_of_converged_energy(update, periodic, constant_charge):
    model = small_model(update)
    atoms = water(periodic)
    atoms.info["external_field"] = [0.03, -0.02, 0.08]
    kw = dict(constant_charge=constant_charge)
    if not constant_charge:
        kw["fermi_level"] = torch.tensor([0.3], dtype=torch.float64)
    forces = evaluate(model, atoms, compute_forces=True, **kw)["forces"].detach().numpy()
    h = 1e-4
    fd = np.zeros_like(forces)
    for i in range(len(atoms)):
        for a in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, a] += h
            minus.positions[i, a] -= h
            fd[i, a] = -(energy_of(model, plus, **kw) - energy_of(model, minus, **kw)) / (2 * h)
    assert np.abs(forces - fd).max() < 1e-5 * np.abs(fd).max()


def test_forces_without_field_and_with_ewald_split_match_finite_differences():
    model = small_model("mlp", ewald_split_width=1.5)
    atoms = water(periodic=True)
    forces = evaluate(model, atoms, compute_forces=True)["forces"].detach().numpy()
    h = 1e-4
    for i, a in [(0, 0), (1, 2), (2, 1)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, a] += h
        minus.positions[i, a] -= h
        fd = -(energy_of(model, plus) - energy_of(model, minus)) / (2 * h)
        assert forces[i, a] == pytest.approx(fd, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("update", list(UPDATES))
def test_stress_is_strain_derivative_of_converged_energy(update):
    model = small_model(update)
    atoms = water(periodic=True)
    atoms.info["external_field"] = [0.0, 0.05, 0.0]
    stress = evaluate(model, atoms, compute_stress=True)["stress"][0].detach().numpy()
    h = 1e-5
    volume = atoms.get_volume()
    for a, b in [(0, 0), (1, 2), (2, 2), (0, 1)]:
        eps = np.zeros((3, 3))
        eps[a, b] = eps[b, a] = h if a != b else h
        if a != b:
            eps *= 0.5
        energies = []
        for sign in (1, -1):
            strained = atoms.copy()
            strained.set_cell(atoms.cell.array @ (np.eye(3) + sign * eps), scale_atoms=True)
            energies.append(energy_of(model, strained))
        fd = (energies[0] - energies[1]) / (2 * h) / volume
        assert stress[a, b] == pytest.approx(fd, rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("update", list(UPDATES))
def test_rotating_structure_and_field_rotates_forces_dipole_and_multipoles(update):
    model = small_model(update)
    atoms = water()
    field = np.array([0.02, -0.04, 0.07])
    atoms.info["external_field"] = field.tolist()
    out = evaluate(model, atoms, compute_forces=True)
    torch.manual_seed(11)
    from e3nn import o3

    rotation = o3.rand_matrix(dtype=torch.float64).numpy()
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ rotation.T
    rotated.info["external_field"] = (rotation @ field).tolist()
    out_r = evaluate(model, rotated, compute_forces=True)
    assert float(out_r["energy"].detach()) == pytest.approx(float(out["energy"].detach()), abs=1e-9)
    np.testing.assert_allclose(out_r["forces"].detach().numpy(), out["forces"].detach().numpy() @ rotation.T, atol=1e-8)
    np.testing.assert_allclose(out_r["density_dipole"].detach().numpy()[0], rotation @ out["density_dipole"].detach().numpy()[0], atol=1e-9)
    D = irreps_rotation_matrix(multipole_irreps(2), torch.tensor(rotation)).numpy()
    np.testing.assert_allclose(out_r["multipoles"].detach().numpy(), out["multipoles"].detach().numpy() @ D.T, atol=1e-9)


def test_translation_and_permutation_invariance():
    model = small_model("manybody")
    atoms = water(periodic=True)
    energy = energy_of(model, atoms)
    moved = atoms.copy()
    moved.positions += [0.7, -1.3, 2.2]
    perm = [2, 0, 1]
    permuted = atoms[perm]
    assert energy_of(model, moved) == pytest.approx(energy, abs=1e-9)
    assert energy_of(model, permuted) == pytest.approx(energy, abs=1e-9)


@pytest.mark.parametrize("total_charge", [0.0, 1.0, -1.0])
def test_total_charge_is_conserved(total_charge):
    model = small_model("mlp")
    atoms = molecule("H2O") + molecule("H2O")
    atoms.positions[3:] += [2.8, 0.2, 0.1]
    atoms.info["total_charge"] = total_charge
    out = evaluate(model, atoms)
    assert float(out["charges"].sum()) == pytest.approx(total_charge, abs=1e-8)


@pytest.mark.parametrize("update", ["mlp", "manybody"])
def test_dipole_equals_minus_field_derivative_of_energy(update):
    model = small_model(update, field_readout_config={"type": "OneBodyMLPFieldReadout"})
    atoms = water(periodic=(update == "manybody"))
    field = np.array([0.01, 0.02, -0.03])
    atoms.info["external_field"] = field.tolist()
    dipole = evaluate(model, atoms, compute_dipole=True)["dipole"][0].detach().numpy()
    h = 1e-4
    for a in range(3):
        energies = {}
        for step in (-2, -1, 1, 2):  # fourth-order stencil: a random model is strongly nonlinear in ε
            shifted = atoms.copy()
            f = field.copy()
            f[a] += step * h
            shifted.info["external_field"] = f.tolist()
            energies[step] = energy_of(model, shifted)
        fd = -(energies[-2] - 8 * energies[-1] + 8 * energies[1] - energies[2]) / (12 * h)
        assert dipole[a] == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_variational_model_density_dipole_equals_minus_field_derivative():
    """Affine update on the density Gaussians + strict quadratic readout: the energy is stationary at the
    fixed point, so the density dipole Σ(q r + d) is −∂E/∂ε, by finite differences of converged energies."""
    model = small_model(
        "linear",
        atomic_multipoles_smearing_width=1.0,
        field_feature_widths=[1.0],
        field_readout_config={"type": "StrictQuadraticFieldEnergyReadout"},
    )
    atoms = molecule("H2O") + molecule("H2O")
    atoms.positions[3:] += [2.8, 0.3, 0.1]
    field = np.array([0.02, -0.01, 0.05])
    atoms.info["external_field"] = field.tolist()
    out = evaluate(model, atoms, compute_dipole=True)
    density_dipole = out["density_dipole"][0].detach().numpy()
    h = 1e-4
    fd = np.zeros(3)
    for a in range(3):
        energies = []
        for sign in (1, -1):
            shifted = atoms.copy()
            f = field.copy()
            f[a] += sign * h
            shifted.info["external_field"] = f.tolist()
            energies.append(energy_of(model, shifted))
        fd[a] = -(energies[0] - energies[1]) / (2 * h)
    np.testing.assert_allclose(density_dipole, fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(out["dipole"][0].detach().numpy(), density_dipole, rtol=1e-8, atol=1e-10)


def test_affine_update_reproduces_closed_form_linear_response():
    """SCF solution = one dense bordered linear solve of p = G(p, μ), Σq = Q (G affine in p and μ)."""
    model = small_model("linear", field_readout_config={"type": "StrictQuadraticFieldEnergyReadout"})
    atoms = molecule("H2O") + molecule("H2O")
    atoms.positions[3:] += [2.9, 0.3, -0.2]
    atoms.info["external_field"] = [0.0, 0.0, 0.1]
    atoms.info["total_charge"] = 0.5
    out = evaluate(model, atoms)
    scf_map = out["scf_map"]
    n, k = out["multipoles"].shape
    with torch.no_grad():
        zero_p = torch.zeros(n, k, dtype=torch.float64)
        zero_mu = torch.zeros(1, dtype=torch.float64)
        g0 = scf_map(zero_p, zero_mu).reshape(-1)
        columns = [(scf_map(e.reshape(n, k), zero_mu).reshape(-1) - g0) for e in torch.eye(n * k, dtype=torch.float64)]
        jacobian = torch.stack(columns, dim=1)
        mu_column = scf_map(zero_p, torch.ones(1, dtype=torch.float64)).reshape(-1) - g0
    constraint = torch.zeros(n * k, dtype=torch.float64)
    constraint[::k] = 1.0
    system = torch.zeros(n * k + 1, n * k + 1, dtype=torch.float64)
    system[: n * k, : n * k] = torch.eye(n * k, dtype=torch.float64) - jacobian
    system[: n * k, -1] = -mu_column
    system[-1, : n * k] = constraint
    rhs = torch.cat([g0, torch.tensor([0.5], dtype=torch.float64)])
    solution = torch.linalg.solve(system, rhs)
    torch.testing.assert_close(out["multipoles"].detach().reshape(-1), solution[:-1], rtol=0, atol=1e-8)
    assert float(out["fermi_level"][0]) == pytest.approx(float(solution[-1]), abs=1e-8)


def test_anderson_mixing_needs_fewer_steps_than_linear():
    model = small_model("linear")
    atoms = molecule("H2O") + molecule("H2O")
    atoms.positions[3:] += [2.8, 0.2, 0.1]
    graph = atoms_to_graph(atoms, model.config.r_max, species=model.atomic_numbers)
    steps = {}
    for mixing in ("linear", "anderson"):
        settings = SCFSettings(scf_tolerance=1e-10, mixing=mixing, mixing_parameter=0.5, max_scf_steps=500)
        steps[mixing] = model(graph, settings=settings)["scf_steps"]
    assert steps["anderson"] < steps["linear"]


def test_non_converging_scf_reports_residual_history():
    model = small_model("linear")
    graph = atoms_to_graph(water(), model.config.r_max, species=model.atomic_numbers)
    with pytest.raises(SCFConvergenceError, match=r"Residual history.*Try: a smaller mixing_parameter"):
        model(graph, settings=SCFSettings(scf_tolerance=1e-14, max_scf_steps=2, mixing="linear"))
    with pytest.warns(RuntimeWarning, match="did not converge"):
        model(graph, settings=SCFSettings(scf_tolerance=1e-14, max_scf_steps=2, mixing="linear", on_failure="warn"))


def test_model_file_round_trip_is_exact(tmp_path):
    model = small_model("manybody", field_feature_norms=[1.0, 2.0, 3.0, 1.5, 2.5, 3.5])
    path = tmp_path / "model.fpscf"
    model.save(path)
    loaded = fpscf.load_model(path)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    atoms = water()
    assert energy_of(loaded, atoms) == energy_of(model, atoms)
    from fpscf.model_io import read_header

    header = read_header(path)
    assert header["species"] == [1, 8] and header["units"]["energy"] == "eV" and header["fpscf_version"]


def test_corrupt_or_foreign_model_files_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.fpscf"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="not a readable fpscf model file"):
        fpscf.load_model(bad)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not an fpscf model"):
        fpscf.load_model(foreign)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fpscf.load_model(tmp_path / "missing.fpscf")


def test_bad_hyperparameters_and_elements_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown hyperparameter 'num_channel'.*Did you mean \['num_channels'\]"):
        build_model([1, 8], num_channel=8)
    with pytest.raises(ValueError, match="electrostatic_pbc_method='ewald' is not valid"):
        build_model([1, 8], electrostatic_pbc_method="ewald")
    with pytest.raises(ValueError, match=r"fixedpoint_update_config\['nonlinearity_cls'\] = 'Relu'"):
        build_model([1, 8], fixedpoint_update_config={"nonlinearity_cls": "Relu"})
    with pytest.raises(ValueError, match="field_readout_config"):
        build_model([1, 8], field_readout_config={"type": "Quadratic"})
    model = small_model()
    calc = FixedPointCalculator(model=model)
    atoms = Atoms("NaCl", positions=[[0, 0, 0], [2.5, 0, 0]])
    atoms.calc = calc
    with pytest.raises(ValueError, match="Na"):
        atoms.get_potential_energy()


def test_calculator_results_follow_ase_conventions_and_warm_start():
    model = small_model("linear")
    atoms = water(periodic=True)
    atoms.calc = FixedPointCalculator(model=model, electric_field=[0.0, 0.0, 0.05], scf_tolerance=1e-9)
    energy = atoms.get_potential_energy()
    first_steps = atoms.calc.results["scf_steps"]
    assert atoms.get_forces().shape == (3, 3)
    assert atoms.get_stress().shape == (6,)
    assert atoms.calc.results["energies"].sum() == pytest.approx(energy, abs=1e-10)
    assert atoms.get_charges().sum() == pytest.approx(0.0, abs=1e-8)
    atoms.positions[0, 0] += 0.002
    atoms.get_potential_energy()
    assert atoms.calc.results["scf_steps"] < first_steps
    atoms.info["external_field"] = [0.0, 0.0, 0.0]
    assert atoms.get_potential_energy() != pytest.approx(energy, abs=1e-6)
