"""Response properties (α, ε∞, Born charges, Raman tensors, per-atom virials) against finite
differences of converged SCF results, symmetry, and sum rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import molecule
from scipy.spatial.transform import Rotation

from fpscf import FixedPointCalculator, build_model
from fpscf.calculators.response import evaluate_response, polarization_branch
from fpscf.data import atoms_to_graph
from fpscf.scf.settings import SCFSettings
from fpscf.units import VACUUM_PERMITTIVITY

TIGHT = SCFSettings(scf_tolerance=1e-12, charge_tolerance=1e-12, max_scf_steps=400)
UPDATES = {
    "linear": {"nonlinearity_cls": "NoNonLinearity"},
    "mlp": {"nonlinearity_cls": "MLPNonLinearity"},
    "manybody": {"type": "ManyBodyUpdate", "nonlinearity_cls": "MLPNonLinearity"},
}
FIELD = [0.02, -0.03, 0.05]
STEP = 1e-4
ALL = ["polarizability", "born_effective_charges", "raman_tensors", "virials"]


def small_model(update: str):
    return build_model(
        [1, 8], fixedpoint_update_config=UPDATES[update], num_channels=8, r_max=3.5, max_L=1,
        atomic_multipoles_max_l=1, field_feature_max_l=1, seed=5,
    ).double()


def water(periodic: bool):
    atoms = molecule("H2O")
    atoms.rattle(0.05, seed=4)
    atoms.info["external_field"] = list(FIELD)
    if periodic:
        atoms.set_cell([[4.6, 0.3, 0.0], [0.0, 5.0, 0.2], [0.1, 0.0, 5.2]])
        atoms.pbc = True
    return atoms


def response(model, atoms, properties=()):
    graph = atoms_to_graph(atoms, model.config.r_max, species=model.atomic_numbers)
    out = evaluate_response(model, graph, properties, settings=TIGHT)
    return {k: v.detach().numpy() for k, v in out.items() if isinstance(v, torch.Tensor)}


def with_field(atoms, field):
    new = atoms.copy()
    new.info["external_field"] = list(field)
    return new


def displaced(atoms, index, axis, step):
    new = atoms.copy()
    new.positions[index, axis] += step
    return new


def relative_error(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


CASES = [(u, p) for u in UPDATES for p in (False, True)]
_cache: dict = {}


def analytic(update, periodic):
    if (update, periodic) not in _cache:
        model, atoms = small_model(update), water(periodic)
        _cache[update, periodic] = (model, atoms, response(model, atoms, ALL))
    return _cache[update, periodic]


@pytest.mark.parametrize("update,periodic", CASES)
def test_born_charges_and_polarizability_equal_field_derivatives(update, periodic):
    model, atoms, out = analytic(update, periodic)
    born_fd = np.zeros_like(out["born_effective_charges"])
    alpha_fd = np.zeros((3, 3))
    for a in range(3):
        field_plus, field_minus = np.array(FIELD), np.array(FIELD)
        field_plus[a] += STEP
        field_minus[a] -= STEP
        plus, minus = response(model, with_field(atoms, field_plus)), response(model, with_field(atoms, field_minus))
        born_fd[:, a, :] = (plus["forces"] - minus["forces"]) / (2 * STEP)
        alpha_fd[a, :] = (plus["dipole"][0] - minus["dipole"][0]) / (2 * STEP)
    assert relative_error(out["born_effective_charges"], born_fd) < 1e-4
    alpha = out["polarizability"][0]
    assert relative_error(alpha, alpha_fd) < 1e-4
    assert np.abs(alpha - alpha.T).max() < 1e-10 * np.abs(alpha).max()


@pytest.mark.parametrize("update,periodic", CASES)
def test_born_charges_and_raman_tensors_equal_displacement_derivatives(update, periodic):
    model, atoms, out = analytic(update, periodic)
    raman = out["raman_tensors"]
    assert np.abs(raman - raman.transpose(0, 1, 3, 2)).max() < 1e-10 * np.abs(raman).max()
    for index, axis in [(0, 2), (1, 0)]:
        plus = response(model, displaced(atoms, index, axis, STEP), ["polarizability"])
        minus = response(model, displaced(atoms, index, axis, -STEP), ["polarizability"])
        dipole_fd = (plus["dipole"][0] - minus["dipole"][0]) / (2 * STEP)
        alpha_fd = (plus["polarizability"][0] - minus["polarizability"][0]) / (2 * STEP)
        assert np.abs(out["born_effective_charges"][index, :, axis] - dipole_fd).max() < 1e-4 * np.abs(
            out["born_effective_charges"]
        ).max()
        assert np.abs(raman[index, axis] - alpha_fd).max() < 1e-4 * np.abs(raman).max()


@pytest.mark.parametrize("periodic", [False, True])
def test_per_atom_virials_and_energies_sum_to_totals(periodic):
    model, atoms, out = analytic("manybody", periodic)
    assert np.abs(out["virials"].sum(0) - out["virial"][0]).max() < 1e-10 * np.abs(out["virial"]).max()
    assert np.abs(out["virials"] - out["virials"].transpose(0, 2, 1)).max() < 1e-12
    assert out["node_energy"].sum() == pytest.approx(out["energy"][0], abs=1e-10)
    assert np.abs(out["virials"]).max() > 1e-3  # not trivially zero


def test_global_virial_is_minus_strain_derivative():
    model, atoms = small_model("mlp"), water(periodic=True)
    virial = response(model, atoms)["virial"][0]
    eta = 1e-5
    for a, b in [(0, 0), (0, 1), (2, 1)]:
        strain = np.eye(3)
        strain[a, b] += eta / 2
        strain[b, a] += eta / 2
        plus, minus = atoms.copy(), atoms.copy()
        plus.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        strain_minus = 2 * np.eye(3) - strain
        minus.set_cell(atoms.cell.array @ strain_minus, scale_atoms=True)
        derivative = (response(model, plus)["energy"][0] - response(model, minus)["energy"][0]) / (2 * eta)
        assert -derivative == pytest.approx(virial[a, b], rel=1e-4, abs=1e-6)


def test_response_tensors_rotate_with_structure_and_field():
    model, atoms = small_model("manybody"), water(periodic=True)
    rotation = Rotation.from_euler("zyx", [0.4, -1.1, 2.3]).as_matrix()
    out = response(model, atoms, ALL)
    turned = atoms.copy()
    turned.positions = atoms.positions @ rotation.T
    turned.set_cell(atoms.cell.array @ rotation.T)
    turned.info["external_field"] = list(rotation @ np.array(FIELD))
    out_r = response(model, turned, ALL)
    r = rotation
    assert np.allclose(out_r["polarizability"][0], r @ out["polarizability"][0] @ r.T, atol=1e-9)
    assert np.allclose(out_r["born_effective_charges"], np.einsum("ij,njk,lk->nil", r, out["born_effective_charges"], r), atol=1e-9)
    expected = np.einsum("cd,ae,bf,ndef->ncab", r, r, r, out["raman_tensors"])
    assert np.allclose(out_r["raman_tensors"], expected, atol=1e-8)
    assert np.allclose(out_r["virials"], np.einsum("ij,njk,lk->nil", r, out["virials"], r), atol=1e-9)


@pytest.mark.parametrize("total_charge", [0.0, 1.0])
def test_acoustic_sum_rule_holds_and_can_be_enforced(total_charge):
    model = small_model("mlp")
    atoms = water(periodic=False)
    atoms.info["total_charge"] = total_charge
    calc = FixedPointCalculator(model, scf_tolerance=1e-12)
    born = calc.get_properties(["born_effective_charges"], atoms)["born_effective_charges"]
    target = total_charge * np.eye(3)
    assert np.abs(born.sum(0) - target).max() < 1e-8
    exact = FixedPointCalculator(model, scf_tolerance=1e-6, acoustic_sum_rule=True)
    born_exact = exact.get_properties(["born_effective_charges"], atoms)["born_effective_charges"]
    assert np.abs(born_exact.sum(0) - target).max() < 1e-13
    assert np.abs(born_exact - born).max() < 1e-5


def test_calculator_batches_properties_and_reports_periodic_ones():
    model, atoms = small_model("linear"), water(periodic=True)
    calc = FixedPointCalculator(model, scf_tolerance=1e-10)
    atoms.calc = calc
    values = calc.get_properties(["dielectric_tensor", "polarization", "stresses", "raman_tensors"], atoms)
    volume = atoms.get_volume()
    alpha = calc.results["polarizability"]
    assert np.allclose(values["dielectric_tensor"], np.eye(3) + alpha / (VACUUM_PERMITTIVITY * volume))
    assert values["stresses"].shape == (3, 6)
    assert np.allclose(values["stresses"].sum(0), atoms.get_stress(), atol=1e-10)
    assert values["raman_tensors"].shape == (3, 3, 3, 3)
    assert np.allclose(atoms.get_dipole_moment(), calc.results["dipole"])  # cached, no new SCF
    quantum = calc.results["polarization_quantum"]
    frac = np.linalg.solve(quantum.T, values["polarization"] - calc.results["dipole"] / volume)
    assert np.allclose(frac, np.round(frac), atol=1e-9)


def test_periodic_only_properties_are_a_clear_error_for_molecules():
    calc = FixedPointCalculator(small_model("linear"))
    with pytest.raises(ValueError, match="periodic cells only"):
        calc.get_property("dielectric_tensor", water(periodic=False))


def test_polarization_branch_is_the_lattice_point_nearest_zero():
    cell = torch.tensor([[4.0, 0.0, 0.0], [3.5, 2.0, 0.0], [0.0, 0.0, 5.0]], dtype=torch.float64)
    volume = float(torch.linalg.det(cell))
    small = torch.tensor([0.01, -0.02, 0.005], dtype=torch.float64)
    for shift in ([1, 0, 0], [2, -3, 1], [0, 5, -1]):
        dipole = (small + torch.tensor(shift, dtype=torch.float64) @ cell / volume) * volume
        polarization, quantum = polarization_branch(dipole, cell)
        assert torch.allclose(polarization, small, atol=1e-12)
        assert torch.allclose(quantum, cell / volume)


def test_polarizability_of_linear_model_equals_closed_form_linear_response():
    """Affine variational model: dp/dε from one dense bordered solve [[I − J, −∂G/∂μ], [Σq, 0]] — no implicit
    layer, no finite differences of the SCF — gives α_ab = Σ_i (r_i,b ∂q_i/∂ε_a + ∂d_i,b/∂ε_a)."""
    # Variational case (affine update, strict quadratic readout, one receiver of width σ): the
    # dipole −∂E/∂ε is the density dipole, so α is the field derivative of Σ(q r + d).
    model = build_model(
        [1, 8], num_channels=8, r_max=3.5, max_L=1, atomic_multipoles_max_l=1, field_feature_max_l=1,
        field_feature_widths=[1.0], atomic_multipoles_smearing_width=1.0, seed=5,
    ).double()
    atoms = water(periodic=False)
    graph = atoms_to_graph(atoms, model.config.r_max, species=model.atomic_numbers)
    out = model(graph, settings=TIGHT)
    p, mu, scf_map = out["multipoles"].detach(), out["fermi_level"].detach(), out["scf_map"]
    n, k = p.shape
    jacobian = torch.autograd.functional.jacobian(lambda x: scf_map(x.reshape(n, k), mu).reshape(-1), p.reshape(-1))
    d_mu = torch.autograd.functional.jacobian(lambda m: scf_map(p, m).reshape(-1), mu)
    charge_rows = torch.zeros(1, n * k, dtype=p.dtype)
    charge_rows[0, ::k] = 1.0
    bordered = torch.cat(
        [torch.cat([torch.eye(n * k, dtype=p.dtype) - jacobian, -d_mu], 1), torch.cat([charge_rows, torch.zeros(1, 1, dtype=p.dtype)], 1)]
    )
    positions = torch.tensor(atoms.positions)
    alpha = torch.zeros(3, 3, dtype=p.dtype)
    for a in range(3):
        shifted = atoms.copy()
        shifted.info["external_field"] = list(np.array(FIELD) + 0.1 * np.eye(3)[a])
        shifted_map = model(atoms_to_graph(shifted, model.config.r_max, species=model.atomic_numbers), settings=TIGHT)["scf_map"]
        d_field = ((shifted_map(p, mu) - scf_map(p, mu)) / 0.1).detach().reshape(-1)  # exact: G is affine in ε
        d_p = torch.linalg.solve(bordered, torch.cat([d_field, torch.zeros(1, dtype=p.dtype)]))[:-1].reshape(n, k)
        alpha[a] = (d_p[:, :1] * positions + d_p[:, 1:4]).sum(0)
    analytic = response(model, atoms, ["polarizability"])["polarizability"][0]
    assert np.abs(analytic - alpha.numpy()).max() < 1e-9 * np.abs(analytic).max()


def test_changing_only_the_field_in_atoms_info_recomputes():
    atoms = water(periodic=False)
    atoms.calc = FixedPointCalculator(small_model("linear"), scf_tolerance=1e-10)
    first = atoms.get_potential_energy()
    atoms.info["external_field"] = [0.0, 0.0, 0.2]
    second = atoms.get_potential_energy()
    assert abs(second - first) > 1e-4
    atoms.info["external_field"] = list(FIELD)
    assert atoms.get_potential_energy() == pytest.approx(first, abs=1e-9)


def test_per_atom_virials_are_minus_strain_derivatives_of_per_atom_energies():
    model, atoms, out = analytic("manybody", True)
    eta = 1e-5
    for a, b in [(0, 0), (1, 2)]:
        strain = np.eye(3)
        strain[a, b] += eta / 2
        strain[b, a] += eta / 2
        plus, minus = atoms.copy(), atoms.copy()
        plus.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        minus.set_cell(atoms.cell.array @ (2 * np.eye(3) - strain), scale_atoms=True)
        fd = -(response(model, plus)["node_energy"] - response(model, minus)["node_energy"]) / (2 * eta)
        assert np.abs(out["virials"][:, a, b] - fd).max() < 1e-4 * np.abs(out["virials"]).max()


def test_bad_mode_options_are_clear_errors():
    model, atoms = small_model("linear"), water(False)
    graph = atoms_to_graph(atoms, model.config.r_max, species=model.atomic_numbers)
    with pytest.raises(ValueError, match="mode must be one of"):
        model(graph, mode="unrolled")
    with pytest.raises(ValueError, match="unroll_steps"):
        model(graph, mode="unroll_scf", unroll_steps=0)
    with pytest.raises(TypeError, match="acoustic_sum_rule"):
        FixedPointCalculator(model, acoustic_sum_rule="yes")
