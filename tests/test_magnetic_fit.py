"""A magnetic model trained with `fpscf train` on an analytic spin model (Heisenberg exchange +
Landau on-site + Zeeman, :mod:`fpscf.datagen.spin_model`, generated here) reproduces the
reference's magnetisation curve, and with time-reversal augmentation its energy is even in the
moments at B = 0."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from fpscf import FixedPointCalculator, load_model
from fpscf.data.extxyz import write_extxyz
from fpscf.datagen.spin_model import HeisenbergZeeman, random_cluster, spin_dataset
from fpscf.training.trainer import train

# A paramagnet near its critical point: M(B) is linear at low field and saturates at high field.
REFERENCE = HeisenbergZeeman(exchange=0.002, quadratic=0.004, quartic=0.01)
FIELDS = [0.0, 25.0, 50.0, 100.0, 150.0, 200.0]  # T


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    directory = tmp_path_factory.mktemp("spin")
    structures = spin_dataset(REFERENCE, 60, seed=0)  # half relaxed in fields ≤ 200 T, half constrained at B = 0
    np.random.default_rng(5).shuffle(structures)
    write_extxyz(directory / "train.xyz", structures[:51])
    write_extxyz(directory / "valid.xyz", structures[51:])
    config = {
        "train_file": "train.xyz", "valid_file": "valid.xyz", "output_dir": "run", "seed": 1, "batch_size": 8,
        "progress": False, "plot": False, "time_reversal_augmentation": True,
        "model": dict(r_max=4.0, num_channels=8, max_L=1, num_interactions=1, magnetic_moments="noncollinear",
                      atomic_energies={26: 0.0}),
        "train_schedule": {0: {
            "name": "fit", "start": 0, "end": 29, "lr": 0.01, "final_lr": 0.001,
            "loss": {"energy_per_atom": 100.0, "forces": 100.0, "magmoms": 10.0, "magnetic_moment_per_atom": 10.0,
                     "noncollinear_magnetic_forces": 1000.0},
            "fixed_point_training_options": {"mode": "implicit", "scf": {"num_scf_steps": 100, "mixing_parameter": 0.5, "scf_tolerance": 1e-8}},
        }},
    }
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    result = train(directory / "config.yaml")
    return load_model(str(result.best_model)), result.metrics


def _moment(model, atoms, field):
    atoms = atoms.copy()
    calc = FixedPointCalculator(model, magnetic_field=field)
    atoms.calc = calc
    return calc.get_property("magnetic_moment", atoms)


def test_trained_model_reproduces_the_magnetisation_curve_of_the_spin_model(trained):
    model, metrics = trained
    atoms = random_cluster(np.random.default_rng(123), 4)  # not in the training set
    fitted = np.array([_moment(model, atoms, [0.0, 0.0, b]) for b in FIELDS])
    reference = np.array([REFERENCE.label(atoms, np.array([0.0, 0.0, b]))["magnetic_moment"] for b in FIELDS])
    saturation = reference[-1, 2]
    assert np.abs(fitted - reference).max() < 0.03 * saturation  # measured 1 %
    # the shape: the low-field slope relative to the high-field moment (linear → saturating)
    assert fitted[1, 2] / fitted[-1, 2] == pytest.approx(reference[1, 2] / reference[-1, 2], rel=0.06)
    assert metrics["magmoms"] < 0.02 and metrics["noncollinear_magnetic_forces"] < 0.005


def test_time_reversal_augmented_model_is_even_in_the_moments_at_zero_field(trained):
    model, metrics = trained
    atoms = random_cluster(np.random.default_rng(321), 4)
    moments = np.random.default_rng(7).normal(scale=0.8, size=(4, 3))
    energies = []
    for sign in (1.0, -1.0):
        probe = atoms.copy()
        probe.set_initial_magnetic_moments(sign * moments)
        probe.calc = FixedPointCalculator(model, fix_moments=True)
        energies.append(probe.get_potential_energy())
    # within the trained tolerance (validation energy RMSE per atom × N), in fact far below it
    tolerance = metrics["energy_per_atom"] * len(atoms)
    assert abs(energies[0] - energies[1]) < 0.01 * tolerance
