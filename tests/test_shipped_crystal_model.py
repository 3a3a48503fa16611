"""The shipped crystal model ``alas-lda`` (issue I): it loads by name with its card and config,
reproduces held-out LDA structures (a committed subset of its test set) within the errors its card
states, gives the DFPT Γ phonons, LO–TO splitting, ε∞ and Born charges of AlAs, and its response
does not depend on how the crystal's cell is chosen."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.build import bulk
from ase.stress import full_3x3_to_voigt_6_stress

from fpscf import FixedPointCalculator
from fpscf.calculators.spectra import WAVENUMBER_PER_SQRT_EV_A2_AMU, crystal_spectra
from fpscf.data.extxyz import read_extxyz
from fpscf.data.labels import read_properties
from fpscf.model_io import read_header
from fpscf.models import SHIPPED_MODELS, model_card, shipped_model_path, training_config_path
from fpscf.units import VACUUM_PERMITTIVITY

ROOT = Path(__file__).resolve().parents[1]
SUBSET = Path(__file__).with_name("data") / "alas_lda_test_subset.xyz"
REFERENCE = json.loads((ROOT / "examples" / "alas" / "dfpt_reference.json").read_text())
NAME = "alas-lda"


@pytest.fixture(scope="module")
def calculator() -> FixedPointCalculator:
    return FixedPointCalculator(model=NAME, scf_tolerance=1e-9, acoustic_sum_rule=True)


def ideal(cubic: bool = False) -> Atoms:
    return bulk("AlAs", "zincblende", a=REFERENCE["lattice_constant_A"], cubic=cubic)


def test_loads_by_name_with_its_card_and_config():
    assert SHIPPED_MODELS[NAME] == "alas_lda"
    path = shipped_model_path(NAME)
    assert path.stat().st_size < 5e6
    hyper = read_header(path)["hyperparameters"]
    assert hyper["atomic_numbers"] == [13, 33]
    assert hyper["field_coupling"] == "bond_midpoints"
    card = model_card(NAME)
    for needed in ("Quantum ESPRESSO", "LDA", "Test errors", "Validation errors", "DFPT", "Limits"):
        assert needed in card, needed
    config = yaml.safe_load(training_config_path(NAME).read_text())
    assert config == yaml.safe_load((ROOT / "examples" / "alas" / "config.yaml").read_text())
    for key, value in config["model"].items():
        if value != "average":  # estimated from the data, stored as numbers
            assert hyper[key] == value, key


def test_reproduces_held_out_lda_structures(calculator):
    """Five structures of the held-out test set (never trained on): three 8-atom cells with
    energy, forces and stress, two 2-atom cells with ε∞ and Born charges as well."""
    errors: dict[str, list[np.ndarray]] = {"energy": [], "forces": [], "stress": [], "epsilon": [], "born": []}
    frames = read_extxyz(SUBSET)
    assert len(frames) == 5
    for index, atoms in enumerate(frames):
        labels = read_properties(atoms, index=index).labels
        probe = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=True)
        names = ["energy", "forces", "stress"] + (["polarizability", "born_effective_charges"] if "polarizability" in labels else [])
        calculator.reset()
        result = calculator.get_properties(names, probe)
        errors["energy"].append(np.atleast_1d(result["energy"] - labels["energy"]) / len(atoms))
        errors["forces"].append((result["forces"] - labels["forces"]).ravel())
        errors["stress"].append(result["stress"] - full_3x3_to_voigt_6_stress(labels["stress"].reshape(3, 3)))
        if "polarizability" in labels:
            volume = probe.get_volume()
            epsilon = [1 + np.trace(alpha) / 3 / (VACUUM_PERMITTIVITY * volume) for alpha in (result["polarizability"], labels["polarizability"])]
            errors["epsilon"].append(np.atleast_1d((epsilon[0] - epsilon[1]) / epsilon[1]))
            errors["born"].append((result["born_effective_charges"] - labels["born_effective_charges"]).ravel())
    rmse = {name: float(np.sqrt(np.mean(np.concatenate(values) ** 2))) for name, values in errors.items()}
    assert len(errors["born"]) == 2
    assert rmse["energy"] < LIMITS["energy"], rmse  # eV/atom
    assert rmse["forces"] < LIMITS["forces"], rmse  # eV/Å; DFT force RMS of the set ≈ 0.66 eV/Å
    assert rmse["stress"] < LIMITS["stress"], rmse  # eV/Å³
    assert rmse["epsilon"] < LIMITS["epsilon"], rmse  # relative
    assert rmse["born"] < LIMITS["born"], rmse  # e; Z*(Al) = 2.16 e


def test_gamma_phonons_lo_to_splitting_and_dielectric_response_against_dfpt(calculator):
    """Γ phonons need no supercell (the Γ force constants are exact in the primitive cell); the
    LO–TO splitting follows from Z* and ε∞ through phonopy's non-analytical term."""
    atoms = ideal()
    q_along_x = atoms.cell.array @ np.array([1.0, 0.0, 0.0])
    spectra = crystal_spectra(atoms, calculator, supercell=(1, 1, 1), q_direction=q_along_x)
    transverse = float(np.max(spectra.frequencies_without_nac))
    longitudinal = float(np.max(spectra.modes.frequencies))
    epsilon = float(np.trace(spectra.dielectric_tensor) / 3)
    born = float(spectra.born_effective_charges[0, 0, 0])
    assert transverse == pytest.approx(REFERENCE["TO_cm-1"], rel=LIMITS["phonon_relative"])
    assert longitudinal == pytest.approx(REFERENCE["LO_cm-1"], rel=LIMITS["phonon_relative"])
    assert epsilon == pytest.approx(float(np.trace(REFERENCE["dielectric_tensor"]) / 3), rel=LIMITS["epsilon"])
    assert born == pytest.approx(REFERENCE["born_effective_charges"][0][0][0], abs=LIMITS["born_ideal"])
    # ω_LO² − ω_TO² = Z*² e² / (ε0 ε∞ Ω μ): the closed form of the non-analytical term for two atoms
    masses = atoms.get_masses()
    reduced_mass = masses[0] * masses[1] / masses.sum()
    splitting = born**2 / (VACUUM_PERMITTIVITY * epsilon * atoms.get_volume() * reduced_mass)  # eV/(Å² amu)
    assert longitudinal**2 - transverse**2 == pytest.approx(splitting * WAVENUMBER_PER_SQRT_EV_A2_AMU**2, rel=1e-3)


def test_response_does_not_depend_on_the_choice_of_cell(calculator):
    """The primitive cell with As at (¼,¼,¼)a, the same with As moved by a lattice vector, and the
    conventional 8-atom cell: one ε∞ and one set of Born charges."""
    primitive = ideal()
    moved = primitive.copy()
    moved.positions[1] += primitive.cell[0] - primitive.cell[2]
    conventional = ideal(cubic=True)
    values = []
    for atoms in (primitive, moved, conventional):
        calculator.reset()
        result = calculator.get_properties(["polarizability", "born_effective_charges"], atoms)
        epsilon = 1 + np.trace(result["polarizability"]) / 3 / (VACUUM_PERMITTIVITY * atoms.get_volume())
        values.append((epsilon, result["born_effective_charges"][0, 0, 0]))
    assert np.allclose(values, values[0], rtol=1e-7, atol=1e-9)


def test_other_elements_are_a_clear_error(calculator):
    gaas = bulk("GaAs", "zincblende", a=5.65)
    gaas.calc = calculator
    with pytest.raises(ValueError, match="Ga"):
        gaas.get_potential_energy()


#: Bounds at two to three times the errors measured on the committed model (subset RMSE: energy 2.1 meV/atom,
#: forces 18 meV/Å, stress 0.57 meV/Å³, ε∞ 2.0 %, Z* 0.039 e; ideal crystal: TO and LO 0.2 %, Z*(Al) +0.013 e).
LIMITS = {
    "energy": 0.005, "forces": 0.05, "stress": 0.0015, "epsilon": 0.05, "born": 0.08, "born_ideal": 0.05, "phonon_relative": 0.02,
}
