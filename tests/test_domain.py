"""The training domain (issue J, DESIGN.md section 8): a model file records the ranges of its
training data; the calculator warns once per kind when a structure leaves them and stops with a
clear one-line error on a non-finite or absurd result; the shipped models carry their domain with
their weights unchanged; the deployed (LAMMPS) model reports how far a structure is from it."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from fpscf import FixedPointCalculator, NonFiniteResultError, OutOfDomainWarning, TrainingDomain, build_model
from fpscf.data.extxyz import read_extxyz
from fpscf.model_io import load_model, model_digest, read_header, save_model, write_training_domain
from fpscf.models import shipped_model_path

ROOT = Path(__file__).resolve().parents[1]
ONE_BODY = {"type": "OneBodyVariableUpdate", "nonlinearity_cls": "MLPNonLinearity"}
#: model_digest of the shipped files before their training domain was recorded (weights and hyperparameters).
SHIPPED_DIGESTS = {
    "water-b3lyp": "fed2b9a572bc4180446513d96aca3d4aaf45cf9b704387df97a913ed08d5d3f5",
    "alas-lda": "e87200ee3af38957b1eee8571238ab48972e186bedda525b88faf1b0b6e771e8",
}
SHIPPED_TRAINING_FILES = {
    "water-b3lyp": ROOT / "examples" / "water_model" / "data" / "train.xyz",
    "alas-lda": ROOT / "examples" / "alas" / "data" / "train.xyz",
}


def hand_made_set() -> list[Atoms]:
    """Three structures whose ranges are easy to write down (see the test below)."""
    molecule_ = Atoms("OH2", positions=[[0, 0, 0], [1.0, 0, 0], [0, 1.2, 0]],
                      info={"external_field": [0.0, 0.0, 0.05], "total_charge": 0.0})
    molecule_.arrays["charges"] = np.array([-0.8, 0.4, 0.35])
    crystal = Atoms("OH", positions=[[0, 0, 0], [1.2, 0, 0]], cell=np.eye(3) * 2.5, pbc=True,
                    info={"external_field": [0.06, 0.08, 0.0], "total_charge": -1.0})
    crystal.arrays["atomic_multipoles"] = np.array([[-1.1, 0, 0, 0], [0.1, 0, 0, 0]])  # charges from the l = 0 column
    far = Atoms("NO", positions=[[0, 0, 0], [7.0, 0, 0]])  # N–O never within the 6 Å search
    return [molecule_, crystal, far]


@pytest.fixture(scope="module")
def small_model():
    return build_model([1, 8], r_max=4.0, num_channels=8, num_interactions=2, atomic_multipoles_max_l=1,
                       fixedpoint_update_config=ONE_BODY, seed=3)


def water_domain(**changes) -> TrainingDomain:
    """A domain for H and O whose water molecule (ASE's H2O: O–H 0.97 Å, H–H 1.53 Å) lies inside."""
    values = dict(elements=["H", "O"], min_distances={"H-H": 1.4, "H-O": 0.9, "O-O": 2.4}, max_field=0.1,
                  total_charge_range=(0.0, 0.0), open=True, periodic=False, num_structures=10)
    values.update(changes)
    return TrainingDomain(**values)


def squeezed_water(distance: float) -> Atoms:
    atoms = molecule("H2O")
    bond = atoms.positions[1] - atoms.positions[0]
    atoms.positions[1] = atoms.positions[0] + distance * bond / np.linalg.norm(bond)
    return atoms


def domain_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, OutOfDomainWarning)]


# ---------------------------------------------------------------------------------------------- the domain
def test_domain_of_a_hand_made_set_is_what_one_computes_by_hand():
    domain = TrainingDomain.from_structures(hand_made_set())
    assert domain.elements == ["H", "N", "O"]
    minima = domain.min_distances
    assert minima["H-O"] == pytest.approx(1.0)  # molecule 1.0 and 1.2; crystal 1.2 and the image 1.3
    assert minima["H-H"] == pytest.approx(np.hypot(1.0, 1.2))  # molecule 1.562 < crystal self-image 2.5
    assert minima["O-O"] == pytest.approx(2.5)  # the periodic self-image of the crystal's O
    assert minima["N-O"] is None and minima["N-N"] is None and minima["H-N"] is None
    assert domain.max_field == pytest.approx(0.1)
    assert domain.total_charge_range == (-1.0, 0.0)
    assert domain.max_atomic_charges == pytest.approx({"H": 0.4, "O": 1.1})
    assert domain.periodic and domain.open and not domain.response_labels
    assert domain.num_structures == 3


def test_domain_round_trips_through_json_and_the_model_file(small_model, tmp_path):
    domain = TrainingDomain.from_structures(hand_made_set())
    assert TrainingDomain.from_dict(json.loads(json.dumps(domain.to_dict()))) == domain
    model = build_model([1, 8], r_max=4.0, num_channels=8, num_interactions=1, seed=1)
    model.training_domain = domain
    save_model(model, tmp_path / "with.fpscf")
    assert load_model(tmp_path / "with.fpscf").training_domain == domain
    write_training_domain(tmp_path / "with.fpscf", None, tmp_path / "without.fpscf")
    assert "training_domain" not in read_header(tmp_path / "without.fpscf")
    assert load_model(tmp_path / "without.fpscf").training_domain is None  # older files: no domain, no checks
    assert model_digest(tmp_path / "with.fpscf") == model_digest(tmp_path / "without.fpscf")


def test_check_gives_one_line_per_violation_with_the_value_and_the_training_range():
    domain = TrainingDomain.from_structures(hand_made_set())
    inside = Atoms("OH2", positions=[[0, 0, 0], [1.0, 0, 0], [0, 1.2, 0]])
    assert domain.check(inside, [0.0, 0.0, 0.1], 0.0) == []
    squeezed = Atoms("OH2", positions=[[0, 0, 0], [0.85, 0, 0], [0, 1.0, 0]])
    lines = domain.check(squeezed, [0.0, 0.0, 10.0], 2.0)
    assert len(lines) == 4, lines
    assert "H–H distance 1.31 Å is below the shortest in training (1.56 Å" in lines[0]
    assert "H–O distance 0.85 Å is below the shortest in training (1.00 Å" in lines[1]
    assert "field 10 V/Å exceeds the largest in training (0.1 V/Å" in lines[2]
    assert "total charge 2 e is outside the training range (-1 to 0 e)" in lines[3]
    assert domain.check(Atoms("OH", positions=[[0, 0, 0], [0.95, 0, 0]])) == []  # within 0.9 x 1.0 Å
    never = domain.check(Atoms("NO", positions=[[0, 0, 0], [3.0, 0, 0]]))
    assert never == ["N–O distance 3.00 Å: the training data never had this pair closer than 6.00 Å"]
    assert "element C is not in the training data" in domain.check(Atoms("CO", positions=[[0, 0, 0], [3, 0, 0]]))[0]
    charges = domain.charge_violations([8, 1, 1], [-0.9, 0.7, 0.2])
    assert [v.kind for v in charges] == ["charge:H"] and "charge +0.70 e on H (atom 1)" in charges[0].message


def test_field_allowance_for_linear_response_labels():
    domain = water_domain(max_field=0.0, response_labels=True)
    water = molecule("H2O")
    assert domain.check(water, [0.0, 0.0, 0.05]) == []
    assert "linear-response range" in domain.check(water, [0.0, 0.0, 0.06])[0]
    without_response = water_domain(max_field=0.0).check(water, [0.0, 0.0, 0.01])
    assert without_response == ["field 0.01 V/Å exceeds the largest in training (0 V/Å; warned above 1.5×)"]


# ---------------------------------------------------------------------------------------------- calculator
def test_calculator_warns_once_over_an_md_like_loop_with_a_squeezed_bond(small_model):
    small_model.training_domain = water_domain()
    calc = FixedPointCalculator(small_model)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for step in range(5):
            atoms = squeezed_water(0.70 + 0.01 * step)
            atoms.calc = calc
            assert np.isfinite(atoms.get_potential_energy())
    messages = domain_warnings(record)
    assert len(messages) == 1, messages
    assert "H–O distance 0.70 Å is below the shortest in training (0.90 Å" in messages[0]
    assert "H2O" in messages[0] and "check the structure" in messages[0]


def test_calculator_warns_once_for_a_field_far_beyond_the_training_fields(small_model):
    small_model.training_domain = water_domain()
    calc = FixedPointCalculator(small_model, electric_field=[0.0, 0.0, 10.0])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for step in range(5):
            atoms = molecule("H2O")
            atoms.rattle(0.01, seed=step)
            atoms.calc = calc
            atoms.get_potential_energy()
    messages = domain_warnings(record)
    assert len(messages) == 1, messages
    assert "field 10 V/Å exceeds the largest in training (0.1 V/Å" in messages[0]


def test_no_warning_inside_the_domain_of_the_shipped_model():
    atoms = read_extxyz(SHIPPED_TRAINING_FILES["water-b3lyp"], index="0")[0]
    probe = Atoms(atoms.numbers, atoms.positions, info={key: atoms.info[key] for key in ("external_field", "total_charge")})
    probe.calc = FixedPointCalculator()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        probe.get_forces()
    assert domain_warnings(record) == []


def test_a_model_without_a_domain_says_nothing(small_model):
    small_model.training_domain = None
    atoms = squeezed_water(0.7)
    atoms.calc = FixedPointCalculator(small_model, electric_field=[0.0, 0.0, 5.0])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        atoms.get_potential_energy()
    assert domain_warnings(record) == []


def test_non_finite_energy_is_a_one_line_error_and_fills_no_results():
    broken = build_model([1, 8], r_max=4.0, num_channels=8, num_interactions=2, atomic_multipoles_max_l=1,
                         fixedpoint_update_config=ONE_BODY, seed=3)
    with torch.no_grad():
        next(broken.local_energy.parameters()).fill_(float("inf"))
    atoms = squeezed_water(0.8)
    calc = FixedPointCalculator(broken)
    atoms.calc = calc
    for _ in range(2):  # not cached: asking again raises again
        with pytest.raises(NonFiniteResultError) as error:
            atoms.get_potential_energy()
        message = str(error.value)
        assert "\n" not in message
        assert "energy is not finite" in message and "H2O" in message
        assert "shortest interatomic distance 0.800 Å (H–O)" in message and "atoms too close" in message
        assert calc.results == {}


def test_absurd_energy_per_atom_is_an_error():
    absurd = build_model([1, 8], r_max=4.0, num_channels=8, num_interactions=1, seed=4)
    with torch.no_grad():
        absurd.atomic_energies.fill_(-1e3)  # references are subtracted: this alone is fine
    atoms = molecule("H2O")
    atoms.calc = FixedPointCalculator(absurd)
    energy = atoms.get_potential_energy()
    assert np.isfinite(energy)
    with torch.no_grad():
        for parameter in absurd.local_energy.parameters():
            parameter.mul_(1e9)
    atoms.calc = FixedPointCalculator(absurd)
    with pytest.raises(NonFiniteResultError, match=r"eV per atom above the isolated-atom references"):
        atoms.get_potential_energy()


# ---------------------------------------------------------------------------------------------- shipped models
@pytest.mark.parametrize("name", sorted(SHIPPED_DIGESTS))
def test_shipped_models_record_their_domain_with_their_weights_unchanged(name, tmp_path):
    path = shipped_model_path(name)
    assert model_digest(path) == SHIPPED_DIGESTS[name]  # tensors and hyperparameters bit for bit as before
    model = load_model(path)
    assert model.training_domain == TrainingDomain.from_files([SHIPPED_TRAINING_FILES[name]])
    stripped = write_training_domain(path, None, tmp_path / "stripped.fpscf")
    without = load_model(stripped)
    if name == "alas-lda":
        from ase.build import bulk

        atoms = bulk("AlAs", "zincblende", a=5.6)
        atoms.rattle(0.02, seed=1)
    else:
        atoms = molecule("H2O")
    results = []
    for candidate in (model, without):
        atoms.calc = FixedPointCalculator(candidate, scf_tolerance=1e-10)
        results.append((atoms.get_potential_energy(), atoms.get_forces()))
    assert abs(results[0][0] - results[1][0]) < 1e-12
    assert np.abs(results[0][1] - results[1][1]).max() < 1e-12


def test_shipped_water_model_domain_values():
    domain = load_model(shipped_model_path("water-b3lyp")).training_domain
    assert domain.elements == ["H", "O"] and domain.open and not domain.periodic
    assert 0.85 < domain.min_distances["H-O"] < 0.92 and domain.max_field == pytest.approx(0.0942, abs=1e-3)
    assert domain.total_charge_range == (-1.0, 1.0) and domain.response_labels


# ---------------------------------------------------------------------------------------------- training
def test_fpscf_train_records_the_domain_of_its_training_split(tmp_path):
    import yaml

    from fpscf.data.extxyz import write_extxyz
    from fpscf.datagen.synthetic import TEACHER_ARCHITECTURE, teacher_structures
    from fpscf.training.config import load_config
    from fpscf.training.trainer import Trainer

    structures = teacher_structures(6, seed=0)
    write_extxyz(tmp_path / "train.xyz", structures[:4])
    write_extxyz(tmp_path / "valid.xyz", structures[4:])
    config = {
        "train_file": "train.xyz", "valid_file": "valid.xyz", "output_dir": "run", "seed": 1, "batch_size": 2,
        "progress": False, "plot": False, "model": dict(TEACHER_ARCHITECTURE),
        "train_schedule": {0: {"name": "direct", "start": 0, "end": 0, "lr": 0.01, "loss": {"energy_per_atom": 1.0},
                               "fixed_point_training_options": {"mode": "direct"}}},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = Trainer(load_config(tmp_path / "config.yaml")).run()
    expected = TrainingDomain.from_structures(read_extxyz(tmp_path / "train.xyz"))
    assert expected.num_structures == 4
    for path in (result.best_model, result.final_model):
        assert load_model(path).training_domain == expected


# ---------------------------------------------------------------------------------------------- deployed model
def test_deployed_model_reports_its_distance_from_the_domain(small_model, tmp_path):
    from fpscf.export import deploy, export_model, read_export_header
    from fpscf.export.testing import evaluate_atoms

    small_model.training_domain = water_domain(max_atomic_charges={"H": 1e-3})
    deployed = deploy(small_model)
    assert deployed.has_training_domain and deployed.domain_field_limit == pytest.approx(0.15)
    atoms = squeezed_water(0.7)
    result = evaluate_atoms(deployed, atoms)
    ratio, distance, first, second, charge_ratio, charge, charge_species = result["domain"]
    assert ratio == pytest.approx(0.7 / 0.9) and distance == pytest.approx(0.7)
    assert {int(first), int(second)} == {0, 1}  # species H (0) and O (1)
    h_charges = result["charges"][1:]
    worst = np.argmax(np.abs(h_charges))
    assert int(charge_species) == 0 and charge == pytest.approx(h_charges[worst])
    assert charge_ratio == pytest.approx(abs(h_charges[worst]) / 1e-3)
    references = small_model.atomic_energies.numpy()[[1, 0, 0]]
    assert result["binding_energy"][0] == pytest.approx(result["energy"] - references.sum(), abs=1e-9)
    header = read_export_header(export_model(small_model, tmp_path / "small.lmp"))
    assert TrainingDomain.from_dict(header["training_domain"]) == small_model.training_domain
    small_model.training_domain = None
    plain = evaluate_atoms(deploy(small_model), atoms)["domain"]
    assert np.isinf(plain[0]) and plain[4] == 0.0


# ---------------------------------------------------------------------------------------------- command line
def test_cli_domain_shows_and_records_a_domain(tmp_path):
    from fpscf.cli import main

    model = build_model([1, 8], r_max=4.0, num_channels=8, num_interactions=1, seed=1)
    save_model(model, tmp_path / "m.fpscf")
    from fpscf.data.extxyz import write_extxyz

    write_extxyz(tmp_path / "train.xyz", [s for s in hand_made_set() if "N" not in s.get_chemical_symbols()])
    assert main(["domain", str(tmp_path / "m.fpscf")]) == 0
    assert main(["domain", str(tmp_path / "m.fpscf"), "--train", str(tmp_path / "train.xyz")]) == 0
    assert load_model(tmp_path / "m.fpscf").training_domain.num_structures == 2


def test_cli_spectra_with_a_broken_model_fails_cleanly_without_output(tmp_path):
    broken = build_model([1, 8], r_max=4.0, num_channels=8, num_interactions=1, seed=1)
    with torch.no_grad():
        next(broken.local_energy.parameters()).fill_(float("nan"))
    save_model(broken, tmp_path / "broken.fpscf")
    water = molecule("H2O")
    water.write(tmp_path / "water.xyz")
    run = subprocess.run([sys.executable, "-m", "fpscf.cli", "spectra", str(tmp_path / "water.xyz"), "--model",
                          str(tmp_path / "broken.fpscf"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "fpscf spectra: error:" in run.stderr and "non-finite value(s)" in run.stderr  # refused at load (issue N)
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()
