"""The magnetic example (examples/magnetic_spin_model): a model trained with `fpscf train` on an
analytic spin model (Heisenberg exchange + Landau on-site + Zeeman, generated here) reproduces
the reference's magnetisation curve, and with time-reversal augmentation its energy is even in
the moments at B = 0."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from fpscf import load_model
from fpscf.datagen.spin_model import random_cluster
from fpscf.training.trainer import train

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "magnetic_spin_model"


def _script(name: str):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(f"magnetic_example_{name}", EXAMPLE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    directory = tmp_path_factory.mktemp("spin")
    _script("make_data").main(directory / "data")
    shutil.copy(EXAMPLE / "config.yaml", directory / "config.yaml")
    result = train(directory / "config.yaml", ["--progress=false", "--plot=false"])
    return load_model(str(result.best_model)), result.metrics


def test_trained_model_reproduces_the_magnetisation_curve_of_the_spin_model(trained):
    model, metrics = trained
    curve = _script("curve")
    atoms = random_cluster(np.random.default_rng(123), 4)  # not in the training set
    fitted, reference = curve.magnetisation_curve(model, atoms)
    saturation = reference[-1, 2]
    assert np.abs(fitted - reference).max() < 0.03 * saturation  # measured 1.1 %
    # the shape: the low-field moment relative to the high-field one (linear → saturating)
    assert fitted[1, 2] / fitted[-1, 2] == pytest.approx(reference[1, 2] / reference[-1, 2], rel=0.06)
    assert metrics["magmoms"] < 0.02 and metrics["noncollinear_magnetic_forces"] < 0.005


def test_time_reversal_augmented_model_is_even_in_the_moments_at_zero_field(trained):
    model, metrics = trained
    atoms = random_cluster(np.random.default_rng(321), 4)
    moments = np.random.default_rng(7).normal(scale=0.8, size=(4, 3))
    asymmetry = _script("curve").time_reversal_asymmetry(model, atoms, moments)
    # within the trained tolerance (validation energy RMSE per atom × N), in fact far below it
    assert abs(asymmetry) < 0.01 * metrics["energy_per_atom"] * len(atoms)
