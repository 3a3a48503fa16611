"""``fpscf eval MODEL DATA.xyz --out DIR``: predictions, per-property errors against the labels the file
has, parity plots, and the field and total charge read per structure.

The labels are the model's own predictions (computed here with each structure's field and charge)
plus offsets chosen by hand, so the errors are known exactly: energy offsets −0.1 and +0.2 eV on
structures 0 and 1 (none on 2) give RMSE √((0.1² + 0.2²)/2) and MAE 0.15 eV; a force offset of
0.01 eV/Å on every component of structure 0 gives RMSE = MAE = 0.01 eV/Å; dipole offsets (0.03, 0,
−0.04) on structure 1 and (0, 0, 0) on structure 2 give RMSE √((0.03² + 0.04²)/6) and MAE 0.07/6.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from fpscf import FixedPointCalculator
from fpscf.cli import main
from fpscf.data.extxyz import read_extxyz, write_extxyz


def _structures() -> list[Atoms]:
    """Water, water in a field of 0.05 V/Å along z, and OH⁻ (total charge −1)."""
    water = molecule("H2O")
    in_field = molecule("H2O")
    in_field.rattle(0.02, seed=1)
    in_field.info["external_field"] = [0.0, 0.0, 0.05]
    hydroxide = Atoms("OH", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 0.97]])
    hydroxide.info["total_charge"] = -1.0
    return [water, in_field, hydroxide]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """The data file, and the predictions of each structure in its own field and charge."""
    calculator = FixedPointCalculator("water-b3lyp", scf_tolerance=1e-10)
    frames, truth = [], []
    for atoms in _structures():
        results = calculator.get_properties(["energy", "forces", "dipole", "charges"], atoms)
        truth.append({name: np.copy(value) for name, value in results.items()})
        frames.append(atoms.copy())
    frames[0].info["REF_energy"] = truth[0]["energy"] - 0.1
    frames[1].info["REF_energy"] = truth[1]["energy"] + 0.2
    frames[0].arrays["REF_forces"] = truth[0]["forces"] + 0.01
    frames[1].info["REF_dipole"] = truth[1]["dipole"] + np.array([0.03, 0.0, -0.04])
    frames[2].info["REF_dipole"] = truth[2]["dipole"]
    path = tmp_path_factory.mktemp("eval") / "data.xyz"
    write_extxyz(path, frames)
    return path, truth


def test_eval_errors_equal_hand_computed_errors(labelled, tmp_path, capsys):
    path, truth = labelled
    out = tmp_path / "out"
    code = main(["eval", "water-b3lyp", str(path), "--out", str(out), "--scf-tolerance", "1e-10",
                 "--key", "energy=REF_energy", "--key", "forces=REF_forces", "--key", "dipole=REF_dipole"])
    assert code == 0
    errors = json.loads((out / "errors.json").read_text())["errors"]
    assert set(errors) == {"energy", "energy_per_atom", "forces", "dipole"}
    assert errors["energy"]["rmse"] == pytest.approx(math.sqrt((0.1**2 + 0.2**2) / 2), abs=1e-7)
    assert errors["energy"]["mae"] == pytest.approx(0.15, abs=1e-7)
    assert errors["energy"]["structures"] == 2
    assert errors["energy_per_atom"]["mae"] == pytest.approx((0.1 / 3 + 0.2 / 3) / 2, abs=1e-7)
    assert errors["forces"]["rmse"] == pytest.approx(0.01, abs=1e-6)  # 8-decimal extxyz columns
    assert errors["forces"]["mae"] == pytest.approx(0.01, abs=1e-6)
    assert errors["forces"]["values"] == 9
    assert errors["dipole"]["rmse"] == pytest.approx(math.sqrt((0.03**2 + 0.04**2) / 6), abs=1e-7)
    assert errors["dipole"]["mae"] == pytest.approx(0.07 / 6, abs=1e-7)
    table = (out / "errors.txt").read_text()
    assert "energy" in table and "RMSE" in table and "MAE" in table
    captured = capsys.readouterr()
    assert table.strip() in captured.out
    assert "3/3 structures" in captured.err and "thread" in captured.err  # progress and the thread count
    assert (out / "parity.png").stat().st_size > 10_000


def test_eval_reads_field_and_charge_per_structure(labelled, tmp_path):
    """The predictions written equal the calculator's in each structure's own field and total charge
    (water in 0.05 V/Å, OH⁻ at −1 e: charges summing to −1), to the 1e-8 Å of the positions written."""
    path, truth = labelled
    out = tmp_path / "out"
    assert main(["eval", "water-b3lyp", str(path), "--out", str(out), "--scf-tolerance", "1e-10", "--no-plots"]) == 0
    predicted = read_extxyz(out / "predictions.xyz")
    for atoms, expected in zip(predicted, truth):
        assert atoms.info["fpscf_energy"] == pytest.approx(float(expected["energy"]), abs=1e-7)
        np.testing.assert_allclose(atoms.arrays["fpscf_forces"], expected["forces"], atol=1e-6)
        np.testing.assert_allclose(atoms.info["fpscf_dipole"], expected["dipole"], atol=1e-6)
    assert predicted[2].arrays["fpscf_charges"].sum() == pytest.approx(-1.0, abs=1e-6)
    assert predicted[1].info["external_field"] == pytest.approx([0.0, 0.0, 0.05])
    assert not (out / "parity.png").exists()
    assert json.loads((out / "errors.json").read_text())["errors"] == {}  # no label under the plain names


def test_eval_bad_key_is_one_line(tmp_path, capsys):
    assert main(["eval", "water-b3lyp", str(tmp_path / "missing.xyz"), "--key", "energyy=E"]) == 2
    assert "PROPERTY=KEY" in capsys.readouterr().err
