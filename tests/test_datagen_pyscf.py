"""PySCF reference labels: forces, dipoles, Born charges and polarizabilities against finite
differences and PySCF's analytic response, Hirshfeld sum rules, and the label format."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("pyscf")

from ase import Atoms  # noqa: E402
from ase.build import molecule  # noqa: E402

from fpscf.data.labels import read_properties  # noqa: E402
from fpscf.datagen.pyscf_labels import (  # noqa: E402
    DFTSettings,
    dft_energy_forces,
    hirshfeld_multipoles,
    label_structure,
)
from fpscf.units import ATOMIC_UNIT_POLARIZABILITY, VACUUM_PERMITTIVITY  # noqa: E402

# Cheap but complete level for the default tests (one thread: the test machine is shared and
# OpenMP threads contending for busy cores are much slower than one).
CHEAP = DFTSettings(xc="b3lyp", basis="6-31g", grid_level=1, threads=1)
FIELD = np.array([0.1, -0.2, 0.3])  # V/Å


def water() -> Atoms:
    """A slightly distorted water molecule away from the origin."""
    atoms = molecule("H2O")
    atoms.positions += [0.3, -0.2, 0.4]
    atoms.positions[1] += [0.02, 0.03, -0.01]
    return atoms


@pytest.fixture(scope="module")
def labelled_water() -> Atoms:
    return label_structure(water(), CHEAP, response=True)


@pytest.fixture(scope="module")
def water_in_field() -> dict:
    atoms = water()
    atoms.info["external_field"] = FIELD
    return {"atoms": atoms, "result": dft_energy_forces(atoms, CHEAP)}


def _displaced(atoms: Atoms, atom: int, axis: int, step: float) -> Atoms:
    moved = atoms.copy()
    moved.positions[atom, axis] += step
    return moved


def test_forces_in_field_equal_minus_energy_gradient(water_in_field):
    atoms, result = water_in_field["atoms"], water_in_field["result"]
    step = 1e-3  # Å
    for atom, axis in [(0, 2), (1, 0), (2, 1)]:
        energies = [
            dft_energy_forces(_displaced(atoms, atom, axis, sign * step), CHEAP,
                              forces=False, dm0=result["dm"])["energy"]
            for sign in (1, -1)
        ]
        numeric = -(energies[0] - energies[1]) / (2 * step)
        assert result["forces"][atom, axis] == pytest.approx(numeric, abs=1e-4)
    # The field pushes the nuclei with Z ε and the electrons with −N ε: net force on a neutral
    # molecule is zero.
    np.testing.assert_allclose(result["forces"].sum(axis=0), 0.0, atol=1e-4)


def test_dipole_equals_minus_field_derivative_of_energy(water_in_field):
    atoms, result = water_in_field["atoms"], water_in_field["result"]
    step = 1e-3  # V/Å
    numeric = np.zeros(3)
    for axis in range(3):
        shift = np.zeros(3)
        shift[axis] = step
        plus = dft_energy_forces(atoms, CHEAP, field=FIELD + shift, forces=False,
                                 dm0=result["dm"])
        minus = dft_energy_forces(atoms, CHEAP, field=FIELD - shift, forces=False,
                                  dm0=result["dm"])
        numeric[axis] = -(plus["energy"] - minus["energy"]) / (2 * step)
    np.testing.assert_allclose(result["dipole"], numeric, atol=1e-5)


def test_born_charges_from_field_equal_dipole_derivative_wrt_positions(labelled_water):
    born = labelled_water.arrays["born_effective_charges"].reshape(-1, 3, 3)
    atoms = water()
    reference = dft_energy_forces(atoms, CHEAP, forces=False)
    step = 1e-3  # Å
    from_dipole = np.zeros_like(born)  # Z*[I, a, b] = ∂D_a/∂R_{I,b}
    for atom in range(len(atoms)):
        for axis in range(3):
            dipoles = [
                dft_energy_forces(_displaced(atoms, atom, axis, sign * step), CHEAP,
                                  forces=False, dm0=reference["dm"])["dipole"]
                for sign in (1, -1)
            ]
            from_dipole[atom, :, axis] = (dipoles[0] - dipoles[1]) / (2 * step)
    relative = np.abs(born - from_dipole).max() / np.abs(born).max()
    assert relative < 1e-3
    # Acoustic sum rule for a neutral molecule.
    np.testing.assert_allclose(born.sum(axis=0), 0.0, atol=2e-3)


@pytest.mark.filterwarnings("ignore:Module .* is under testing:UserWarning")
def test_finite_field_polarizability_matches_pyscf_analytic(labelled_water):
    from pyscf.prop.polarizability.rhf import Polarizability

    alpha = labelled_water.info["polarizability"]
    np.testing.assert_allclose(alpha, alpha.T, atol=1e-12)
    mf = dft_energy_forces(water(), CHEAP, forces=False)["mf"]
    solver = Polarizability(mf)
    solver.conv_tol = 1e-10
    solver.max_cycle_cphf = 100
    analytic = solver.polarizability() * ATOMIC_UNIT_POLARIZABILITY
    scale = np.abs(analytic).max()
    assert np.abs(alpha - analytic).max() / scale < 1e-2


def test_hirshfeld_charges_and_dipoles_reproduce_total_charge_and_dipole(labelled_water):
    multipoles = labelled_water.arrays["atomic_multipoles"]
    charges = labelled_water.arrays["charges"]
    np.testing.assert_array_equal(charges, multipoles[:, 0])
    assert charges.sum() == pytest.approx(0.0, abs=1e-3)
    reconstructed = (charges[:, None] * labelled_water.positions + multipoles[:, 1:]).sum(axis=0)
    np.testing.assert_allclose(reconstructed, labelled_water.info["dipole"], atol=1e-3)
    symbols = labelled_water.get_chemical_symbols()
    assert charges[symbols.index("O")] < 0
    assert all(q > 0 for q, s in zip(charges, symbols) if s == "H")


def test_hirshfeld_charges_sum_to_minus_one_for_hydroxide():
    hydroxide = Atoms("OH", positions=[[0.1, 0.2, -0.3], [0.1, 0.2, 0.67]])
    hydroxide.info["total_charge"] = -1
    result = dft_energy_forces(hydroxide, CHEAP)
    from_mf = hirshfeld_multipoles(hydroxide, result["mf"], CHEAP)
    assert from_mf[:, 0].sum() == pytest.approx(-1.0, abs=1e-3)
    reconstructed = (from_mf[:, :1] * hydroxide.positions + from_mf[:, 1:]).sum(axis=0)
    np.testing.assert_allclose(reconstructed, result["dipole"], atol=1e-3)
    # A bare density matrix gives the same partition (on a grid of the same level).
    from_dm = hirshfeld_multipoles(hydroxide, result["dm"], CHEAP)
    np.testing.assert_allclose(from_dm, from_mf, atol=1e-10)


def test_labelled_structure_has_documented_keys_shapes_and_units(labelled_water):
    atoms = labelled_water
    n = len(atoms)
    assert atoms.calc is None
    assert isinstance(atoms.info["energy"], float)
    assert atoms.info["dipole"].shape == (3,)
    assert atoms.info["total_charge"] == 0.0
    np.testing.assert_array_equal(atoms.info["external_field"], np.zeros(3))
    assert atoms.info["polarizability"].shape == (3, 3)
    assert atoms.info["level_of_theory"] == "B3LYP/6-31G"
    assert atoms.arrays["forces"].shape == (n, 3)
    assert atoms.arrays["charges"].shape == (n,)
    assert atoms.arrays["atomic_multipoles"].shape == (n, 4)
    assert atoms.arrays["born_effective_charges"].shape == (n, 9)
    props = read_properties(atoms)
    for name in ("energy", "forces", "dipole", "charges", "atomic_multipoles",
                 "polarizability", "born_effective_charges"):
        assert name in props.labels
    # Water's dipole points from O towards the H atoms (≈ 0.4 e·Å) and α is positive definite.
    oxygen = atoms.positions[0]
    hydrogen_centre = atoms.positions[1:].mean(axis=0)
    assert np.dot(atoms.info["dipole"], hydrogen_centre - oxygen) > 0
    assert np.all(np.linalg.eigvalsh(atoms.info["polarizability"]) > 0)


def test_scf_falls_back_to_second_order_solver_when_diis_stops_early(water_in_field):
    stopped_early = dataclasses.replace(CHEAP, max_cycle=2)
    fallback = dft_energy_forces(water_in_field["atoms"], stopped_early)
    assert fallback["mf"].converged
    assert fallback["energy"] == pytest.approx(water_in_field["result"]["energy"], abs=1e-6)
    np.testing.assert_allclose(fallback["forces"], water_in_field["result"]["forces"], atol=1e-5)


def test_level_of_theory_spelling():
    assert DFTSettings().level_of_theory == "B3LYP/aug-cc-pVDZ"
    assert DFTSettings(xc="pbe0", basis="def2-svpd").level_of_theory == "PBE0/def2-SVPD"
    assert DFTSettings(xc="hf", basis="6-31g*").level_of_theory == "HF/6-31G*"


def test_odd_electron_count_is_rejected_as_open_shell():
    radical = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]])
    with pytest.raises(ValueError, match="open-shell"):
        label_structure(radical, CHEAP)


def test_element_missing_from_basis_is_rejected():
    with pytest.raises(ValueError, match="basis '6-31g' has no functions for element Xe"):
        dft_energy_forces(Atoms("Xe2", positions=[[0, 0, 0], [0, 0, 4.0]]), CHEAP)


@pytest.mark.slow
def test_water_isotropic_polarizability_at_reference_level_is_physical():
    labelled = label_structure(molecule("H2O"), DFTSettings(), response=True)
    alpha = labelled.info["polarizability"]
    volume = np.trace(alpha) / 3 / (4 * np.pi * VACUUM_PERMITTIVITY)  # Å³
    assert 1.4 < volume < 1.5  # experiment 1.45 Å³
    born = labelled.arrays["born_effective_charges"].reshape(-1, 3, 3)
    np.testing.assert_allclose(born.sum(axis=0), 0.0, atol=2e-3)
    charges = labelled.arrays["charges"]
    assert charges.sum() == pytest.approx(0.0, abs=1e-4)
