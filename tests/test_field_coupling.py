"""Bond-midpoint field coupling for periodic structures (``field_coupling: bond_midpoints``).

With ``Σ_i q_i r_i`` the response of a periodic cell depends on which periodic image of each atom
the cell holds (shown here, so the test can fail); with bond-midpoint coordinates energy, dipole
changes, α, Z* and Raman tensors are the same for every choice of images, stay translation
invariant and rotation equivariant (field rotated too), are exact derivatives (finite
differences), vanish where symmetry says so (ideal zinc blende moves no charge in a field), leave
open boundaries unchanged, and run the same in the deployed (LAMMPS) module."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from scipy.spatial.transform import Rotation

from fpscf import FixedPointCalculator, build_model
from fpscf.electrostatics.applied_field import BOND_WEIGHT_FLOOR, bond_midpoint_coordinates, bond_switch
from fpscf.export import deploy
from fpscf.export.testing import evaluate_atoms
from fpscf.scf.settings import SCFSettings

ONE_BODY = {"type": "OneBodyVariableUpdate", "nonlinearity_cls": "MLPNonLinearity"}
BONDS = {"field_coupling": "bond_midpoints", "field_coupling_bond_range": [2.9, 3.4]}
FIELD = np.array([0.03, -0.02, 0.04])
RESPONSE = ["energy", "forces", "stress", "dipole", "polarizability", "born_effective_charges", "raman_tensors"]


def crystal_model(**options):
    return build_model(["Al", "As"], r_max=4.5, num_channels=8, num_interactions=2, fixedpoint_update_config=ONE_BODY,
                       seed=5, **options)


@pytest.fixture(scope="module")
def bonded():
    return crystal_model(**BONDS)


def rattled_cell(seed: int = 1) -> Atoms:
    atoms = bulk("AlAs", "zincblende", a=5.6)
    atoms.rattle(0.05, seed=seed)
    return atoms


def other_images(atoms: Atoms) -> Atoms:
    moved = atoms.copy()
    moved.positions[1] += moved.cell[0] - 2 * moved.cell[2]
    return moved


def results(model, atoms: Atoms, field=FIELD, names=RESPONSE) -> dict:
    calc = FixedPointCalculator(model, electric_field=field, scf_tolerance=1e-11)
    return calc.get_properties(names, atoms)


def test_positions_coupling_depends_on_the_images_and_bond_midpoints_do_not(bonded):
    atoms = rattled_cell()
    plain = crystal_model()
    a, b = results(plain, atoms), results(plain, other_images(atoms))
    assert abs(np.trace(a["polarizability"]) - np.trace(b["polarizability"])) > 1e-3 * abs(np.trace(a["polarizability"]))
    a, b = results(bonded, atoms), results(bonded, other_images(atoms))
    for name in ("energy", "forces", "stress", "polarizability", "born_effective_charges", "raman_tensors"):
        assert np.allclose(a[name], b[name], rtol=1e-8, atol=1e-10), name
    # the dipole changes by the lattice vector times a charge only through the bond vectors: none here
    assert np.allclose(a["dipole"], b["dipole"], atol=1e-9)


def test_translation_invariance_and_rotation_equivariance(bonded):
    atoms = rattled_cell(seed=3)
    reference = results(bonded, atoms)
    shifted = atoms.copy()
    shifted.positions += [0.37, -1.2, 2.9]
    assert np.allclose(results(bonded, shifted)["polarizability"], reference["polarizability"], atol=1e-10)
    # the energy depends on bond vectors only, so the field exerts no net force: Σ_I Z*_I = 0 exactly
    assert np.abs(reference["born_effective_charges"].sum(axis=0)).max() < 1e-8
    assert np.abs(reference["forces"].sum(axis=0)).max() < 1e-9
    rotation = Rotation.from_euler("zyx", [0.4, -1.1, 0.7]).as_matrix()
    turned = atoms.copy()
    turned.set_cell(atoms.cell.array @ rotation.T, scale_atoms=True)
    result = results(bonded, turned, field=rotation @ FIELD)
    assert result["energy"] == pytest.approx(reference["energy"], abs=1e-9)
    assert np.allclose(result["forces"], reference["forces"] @ rotation.T, atol=1e-8)
    assert np.allclose(result["dipole"], rotation @ reference["dipole"], atol=1e-8)
    assert np.allclose(result["polarizability"], rotation @ reference["polarizability"] @ rotation.T, atol=1e-9)
    born = np.einsum("ab,Ibc,dc->Iad", rotation, reference["born_effective_charges"], rotation)
    assert np.allclose(result["born_effective_charges"], born, atol=1e-8)


def test_forces_stress_dipole_born_charges_alpha_and_raman_are_derivatives(bonded):
    atoms = rattled_cell(seed=4)
    reference = results(bonded, atoms)
    step = 1e-4

    def energy(structure: Atoms, field=FIELD) -> float:
        return float(results(bonded, structure, field=field, names=["energy"])["energy"])

    for atom, axis in [(0, 0), (1, 2)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[atom, axis] += step
        minus.positions[atom, axis] -= step
        assert -(energy(plus) - energy(minus)) / (2 * step) == pytest.approx(reference["forces"][atom, axis], abs=1e-6)
    strain = np.zeros((3, 3))
    strain[0, 1] = strain[1, 0] = step
    plus, minus = atoms.copy(), atoms.copy()
    plus.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    minus.set_cell(atoms.cell.array @ (np.eye(3) - strain), scale_atoms=True)
    stress_xy = (energy(plus) - energy(minus)) / (2 * step) / 2 / atoms.get_volume()
    assert stress_xy == pytest.approx(reference["stress"][5], abs=1e-7)
    for axis in range(3):
        shift = np.zeros(3)
        shift[axis] = 1e-4
        dipole = -(energy(atoms, FIELD + shift) - energy(atoms, FIELD - shift)) / 2e-4
        assert dipole == pytest.approx(reference["dipole"][axis], abs=1e-6)
        pair = [results(bonded, atoms, field=FIELD + sign * shift, names=["forces", "dipole"]) for sign in (1, -1)]
        born = (pair[0]["forces"] - pair[1]["forces"]) / 2e-4  # Z*_{I,a,b} = ∂F_{I,b}/∂ε_a
        assert np.allclose(born, reference["born_effective_charges"][:, axis, :], atol=1e-6)
        alpha = (pair[0]["dipole"] - pair[1]["dipole"]) / 2e-4  # α_{b,a} = ∂D_b/∂ε_a
        assert np.allclose(alpha, reference["polarizability"][:, axis], atol=1e-6)
    # Raman tensor R_{I,c,ab} = ∂α_ab/∂R_{I,c}
    for atom, axis in [(0, 1), (1, 0)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[atom, axis] += step
        minus.positions[atom, axis] -= step
        alphas = [results(bonded, moved, names=["polarizability"])["polarizability"] for moved in (plus, minus)]
        assert np.allclose((alphas[0] - alphas[1]) / (2 * step), reference["raman_tensors"][atom, axis], atol=1e-5)


def test_ideal_zinc_blende_moves_no_charge_in_a_field(bonded):
    """Every atom's bonds cancel (x = 0): by the T_d symmetry no charge can move linearly with ε."""
    atoms = bulk("AlAs", "zincblende", a=5.6)
    charges = [results(bonded, atoms, field=sign * FIELD, names=["charges"])["charges"] for sign in (1, 0, -1)]
    assert np.abs(charges[0] - charges[2]).max() < 1e-9  # odd part in ε vanishes
    plain = crystal_model()
    moved = [results(plain, atoms, field=sign * FIELD, names=["charges"])["charges"] for sign in (1, -1)]
    assert np.abs(moved[0] - moved[1]).max() > 1e-6  # with positions the field moves charge: the test can fail


def test_bond_midpoint_coordinates_of_a_bonded_pair_reproduce_its_dipole():
    vectors = torch.tensor([[2.4, 0.3, -0.1], [-2.4, -0.3, 0.1]], dtype=torch.float64)  # r_receiver - r_sender
    coordinates = bond_midpoint_coordinates(vectors, torch.tensor([0, 1]), 2, 2.9, 3.4)
    scale = 1.0 / (1.0 + BOND_WEIGHT_FLOOR)
    assert torch.allclose(coordinates[0] - coordinates[1], vectors[0] * scale)
    lengths = torch.linspace(2.0, 4.0, 201, dtype=torch.float64)
    weights = bond_switch(lengths, 2.9, 3.4)
    assert bool((weights[lengths <= 2.9] == 1).all()) and bool((weights[lengths >= 3.4] == 0).all())
    assert bool((weights[1:] <= weights[:-1]).all())


def test_open_boundaries_are_unchanged():
    molecule = Atoms("AlAs", positions=[[0, 0, 0], [2.5, 0.2, -0.1]])
    a = results(crystal_model(), molecule, names=["energy", "dipole", "polarizability"])
    b = results(crystal_model(**BONDS), molecule, names=["energy", "dipole", "polarizability"])
    for name in a:
        assert np.allclose(a[name], b[name], atol=1e-12), name


@pytest.mark.parametrize(("options", "message"), [
    ({"field_coupling": "bonds"}, "field_coupling"),
    ({"field_coupling": "bond_midpoints"}, r"field_coupling_bond_range: \[r_on, r_off\]"),
    ({"field_coupling": "bond_midpoints", "field_coupling_bond_range": [3.4, 2.9]}, "0 < r_on < r_off"),
    ({"field_coupling": "bond_midpoints", "field_coupling_bond_range": [2.9, 9.0]}, "r_max"),
    ({"field_coupling_bond_range": [2.9, 3.4]}, "only used with field_coupling: bond_midpoints"),
])
def test_bad_field_coupling_options_are_clear_errors(options, message):
    with pytest.raises(ValueError, match=message):
        crystal_model(**options)


def test_deployed_module_uses_the_same_coupling(bonded):
    atoms = rattled_cell(seed=6)
    calc = FixedPointCalculator(bonded, electric_field=FIELD, scf_tolerance=1e-10)
    atoms.calc = calc
    deployed = deploy(bonded, SCFSettings(scf_tolerance=1e-10), kspace="ewald")
    for probe in (atoms, other_images(atoms)):
        result = evaluate_atoms(deployed, probe, tuple(FIELD))
        assert abs(result["energy"] - atoms.get_potential_energy()) < 1e-9
        assert np.abs(result["forces"] - atoms.get_forces()).max() < 1e-8
        assert np.abs(result["stress"] - atoms.get_stress()).max() < 1e-9
        assert np.abs(result["dipole"] - atoms.get_dipole_moment()).max() < 1e-8
