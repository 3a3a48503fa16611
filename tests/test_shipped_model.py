"""The shipped default model: it loads without arguments, carries its card and config, and
reproduces held-out B3LYP/aug-cc-pVDZ structures (a tiny committed subset of its test set) to the
accuracy its model card states; the trajectory split it was trained with never leaks a trajectory."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.build import molecule

from fpscf import FixedPointCalculator
from fpscf.data.extxyz import read_extxyz
from fpscf.data.labels import read_properties
from fpscf.model_io import read_header
from fpscf.models import DEFAULT_MODEL, SHIPPED_MODELS, model_card, shipped_model_path, training_config_path
from fpscf.units import COULOMB_CONSTANT

ROOT = Path(__file__).resolve().parents[1]
SUBSET = Path(__file__).with_name("data") / "water_b3lyp_test_subset.xyz"


@pytest.fixture(scope="module")
def calculator() -> FixedPointCalculator:
    return FixedPointCalculator(scf_tolerance=1e-8)


def test_default_model_loads_without_arguments_and_by_name(calculator):
    assert SHIPPED_MODELS[DEFAULT_MODEL] == "water_b3lyp"
    path = shipped_model_path()
    assert path.stat().st_size < 5e6, "shipped models must stay a few MB at most"
    assert read_header(path)["hyperparameters"]["atomic_numbers"] == [1, 8]
    by_name = FixedPointCalculator(model="water-b3lyp", scf_tolerance=1e-8)
    water = molecule("H2O")
    water.calc = calculator
    energy = water.get_potential_energy()
    water.calc = by_name
    assert water.get_potential_energy() == pytest.approx(energy, abs=1e-9)
    with pytest.raises(ValueError, match="shipped models"):
        shipped_model_path("no-such-model")


def test_model_card_and_config_describe_the_shipped_weights():
    card = model_card()
    for needed in ("B3LYP/aug-cc-pVDZ", "Test errors", "Validation errors", "Vibrations", "Limits"):
        assert needed in card
    config = yaml.safe_load(training_config_path().read_text())
    hyper = read_header(shipped_model_path())["hyperparameters"]
    for key, value in config["model"].items():
        if value != "average":  # estimated from the training data, stored as numbers in the file
            assert hyper[key] == value, key
    assert config == yaml.safe_load((ROOT / "examples" / "water_model" / "config.yaml").read_text())


def test_shipped_model_reproduces_held_out_dft_structures(calculator):
    """Errors on held-out structures stay within the card's test errors (with a margin for the
    small sample): the model learned B3LYP, not noise."""
    frames = read_extxyz(SUBSET)
    force_errors, dipole_errors, alpha_errors, born_errors = [], [], [], []
    for index, atoms in enumerate(frames):
        labels = read_properties(atoms, index=index).labels
        probe = Atoms(atoms.numbers, atoms.positions, info={
            "external_field": atoms.info.get("external_field", np.zeros(3)), "total_charge": atoms.info.get("total_charge", 0)})
        names = ["energy", "forces", "dipole"]
        if "polarizability" in labels:
            names += ["polarizability", "born_effective_charges"]
        calculator.reset()
        result = calculator.get_properties(names, probe)
        force_errors.append((result["forces"] - labels["forces"]).ravel())
        dipole_errors.append(result["dipole"] - labels["dipole"])
        if "polarizability" in labels:
            alpha_errors.append(np.trace(result["polarizability"] - labels["polarizability"]) / np.trace(labels["polarizability"]))
            born_errors.append((result["born_effective_charges"] - labels["born_effective_charges"]).ravel())
    assert alpha_errors, "the subset must hold structures with α and Z*"
    force_rmse = float(np.sqrt(np.mean(np.concatenate(force_errors) ** 2)))
    dipole_rmse = float(np.sqrt(np.mean(np.concatenate(dipole_errors) ** 2)))
    born_rmse = float(np.sqrt(np.mean(np.concatenate(born_errors) ** 2)))
    alpha_relative = float(np.max(np.abs(alpha_errors)))
    assert force_rmse < 0.15, force_rmse  # eV/Å; DFT forces in the set have a spread of ~1 eV/Å
    assert dipole_rmse < 0.05, dipole_rmse  # e·Å; |D| of a water molecule is 0.39 e·Å
    assert born_rmse < 0.1, born_rmse  # e
    assert alpha_relative < 0.15, alpha_relative  # mean polarizability, relative


def test_water_polarizability_and_dipole_are_close_to_b3lyp(calculator):
    """The DFT minimum of the water molecule (examples/water_model/dft_reference.json): B3LYP/aug-cc-pVDZ
    gives |D| = 0.386 e·Å and mean α = 1.404 Å³."""
    import json

    reference = json.loads((ROOT / "examples" / "water_model" / "dft_reference.json").read_text())["monomer"]
    water = Atoms(reference["symbols"], positions=reference["positions"])
    water.calc = calculator
    result = calculator.get_properties(["dipole", "polarizability"], water)
    assert np.linalg.norm(result["dipole"]) == pytest.approx(np.linalg.norm(reference["dipole"]), rel=0.1)
    mean_alpha = np.trace(result["polarizability"]) / 3 * COULOMB_CONSTANT
    assert mean_alpha == pytest.approx(reference["polarizability_isotropic_A3"], rel=0.15)


def test_unknown_element_with_the_default_model_is_a_clear_error(calculator):
    salt = Atoms("NaCl", positions=[[0, 0, 0], [2.8, 0, 0]])
    salt.calc = calculator
    with pytest.raises(ValueError, match="Na"):
        salt.get_potential_energy()


def _load_split_module():
    spec = importlib.util.spec_from_file_location("water_split", ROOT / "examples" / "water_model" / "split.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trajectory_split_keeps_every_trajectory_in_one_set():
    split = _load_split_module()
    groups = [("set", f"water_{k}", t) for k in (1, 2, 3) for t in range(k * 3)] + [("set", "hydroxide", 0)]
    sets = split.split_groups(groups, seed=0, min_groups_test=4, min_groups_valid=5)
    assigned = [g for name in sets for g in sets[name]]
    assert sorted(assigned) == sorted(set(groups)), "every trajectory in exactly one set"
    assert {g[1] for g in sets["test"]} == {"water_2", "water_3"}  # compositions with ≥ 4 trajectories
    assert {g[1] for g in sets["valid"]} == {"water_2", "water_3"}  # ≥ 5 trajectories
    assert sets == split.split_groups(groups, seed=0, min_groups_test=4, min_groups_valid=5)
