"""Several levels of theory: data at two levels that differ by a known per-element shift and energy
scale are both recovered by the level heads of one model; the calculator and the export take the
level."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import yaml
from ase.build import molecule

from fpscf import FixedPointCalculator, build_model
from fpscf.data import atoms_to_graph, collate
from fpscf.data.extxyz import write_extxyz
from fpscf.datagen.synthetic import TEACHER_ARCHITECTURE, teacher_structures
from fpscf.errors import InputError
from fpscf.nn.levels import select_level
from fpscf.training.config import FixedPointOptions, SCFOptions, load_config
from fpscf.training.forward import predict
from fpscf.training.losses import compute_losses
from fpscf.training.trainer import Trainer

SCALE = 1.25  # level 1 = 1.25 × level 0 + per-element shifts
SHIFT = {1: -0.4, 8: 1.7}  # eV per atom of H and O
OPTIONS = FixedPointOptions("implicit", SCFOptions(num_scf_steps=200, mixing_parameter=0.5, scf_tolerance=1e-10))


def _two_levels(structures: list) -> list:
    """Each structure at level 0 and, relabelled, at level 1 (E' = a E + Σ c_Z, F' = a F)."""
    frames = []
    for atoms in structures:
        frames.append(atoms.copy())
        other = atoms.copy()
        other.info["level"] = 1
        other.info["energy"] = SCALE * atoms.info["energy"] + sum(SHIFT[int(z)] for z in atoms.numbers)
        other.arrays["forces"] = SCALE * atoms.arrays["forces"]
        frames.append(other)
    return frames


def _other_compositions() -> list:
    """H2, O2 and H2O2 labelled by the teacher: with water alone only 2 c_H + c_O is defined."""
    calculator = FixedPointCalculator(build_model([1, 8], seed=101, **TEACHER_ARCHITECTURE), scf_tolerance=1e-10)
    structures = []
    for k, name in enumerate(("H2", "O2", "H2O2")):
        atoms = molecule(name)
        atoms.rattle(0.03, seed=k)
        calculator.calculate(atoms, ["energy"])
        atoms.info["energy"] = calculator.results["energy"]
        atoms.arrays["forces"] = calculator.results["forces"]
        atoms.arrays["atomic_multipoles"] = calculator.results["atomic_multipoles"]
        atoms.calc = None
        structures.append(atoms)
    return structures


@pytest.fixture(scope="module")
def frames():
    return _two_levels(teacher_structures(5, seed=3) + _other_compositions())


def test_the_heads_recover_a_known_shift_and_scale_of_the_second_level(frames):
    """The teacher's own weights as the shared model (level 0 exact): fitting the heads alone on
    both levels' energies and forces gives back the scale and the shifts."""
    teacher = build_model([1, 8], seed=101, **TEACHER_ARCHITECTURE)
    model = build_model([1, 8], seed=0, num_levels=2, **TEACHER_ARCHITECTURE)
    missing, unexpected = model.load_state_dict(teacher.state_dict(), strict=False)
    assert set(missing) == {"level_heads.log_scale", "level_heads.energy_shift"} and not unexpected
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith("level_heads."))
    batch = collate([atoms_to_graph(atoms, TEACHER_ARCHITECTURE["r_max"], species=[1, 8]) for atoms in frames])
    weights = {"energy_per_atom": 1.0, "forces": 1.0}
    heads = [model.level_heads.log_scale, model.level_heads.energy_shift]
    optimizer = torch.optim.LBFGS(heads, lr=1.0, max_iter=50, tolerance_grad=1e-14, tolerance_change=1e-16,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        total, _ = compute_losses(predict(model, batch, OPTIONS, set(weights), training=True), batch, weights)
        total.backward()
        return total

    for _ in range(3):
        optimizer.step(closure)
    assert float(model.level_heads.scales()[1].detach()) == pytest.approx(SCALE, abs=1e-6)
    shifts = model.level_heads.shifts()[1].detach()
    assert shifts.tolist() == pytest.approx([SHIFT[1], SHIFT[8]], abs=1e-5)
    out = predict(model, batch, OPTIONS, set(weights), training=False)
    reference = batch.labels["energy"]
    assert torch.allclose(out["energy"].detach(), reference, atol=1e-5)  # both levels reproduced
    assert torch.allclose(out["forces"].detach(), batch.labels["forces"], atol=1e-5)


def test_training_on_two_levels_and_the_calculator_and_export_take_the_level(frames, tmp_path, capsys):
    write_extxyz(tmp_path / "train.xyz", frames[:12])
    write_extxyz(tmp_path / "valid.xyz", frames[12:])
    # seed 101: the teacher's weights to start, whose SCF converges; a small learning rate keeps them near
    config = {"train_file": "train.xyz", "valid_file": "valid.xyz", "output_dir": "run", "batch_size": 4, "seed": 101,
              "progress": False, "plot": False, "model": dict(TEACHER_ARCHITECTURE, num_levels=2, atomic_energies="average"),
              "train_schedule": {0: {"name": "direct", "start": 0, "end": 1, "lr": 1e-4,
                                     "loss": {"energy_per_atom": 1.0, "forces": 1.0, "atomic_multipoles": 10.0},
                                     "fixed_point_training_options": {"mode": "direct"}}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = Trainer(load_config(tmp_path / "config.yaml")).run()
    from fpscf import load_model

    model = load_model(result.final_model)
    assert model.config.num_levels == 2
    # Per-level least squares start the heads near the known shifts (the scale is learnt).
    assert float(model.level_heads.scales()[1].detach()) != 1.0
    atoms = molecule("H2O")
    zero = FixedPointCalculator(model, scf_tolerance=1e-10)
    one = FixedPointCalculator(model, scf_tolerance=1e-10, level=1)
    atoms.calc = zero
    e0, f0 = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = one
    e1, f1 = atoms.get_potential_energy(), atoms.get_forces()
    scale, shifts = float(model.level_heads.scales()[1].detach()), model.level_heads.shifts()[1].detach().tolist()
    reference = model.atomic_energies.tolist()
    expected = scale * (e0 - 2 * reference[0] - reference[1]) + 2 * (reference[0] + shifts[0]) + reference[1] + shifts[1]
    assert e1 == pytest.approx(expected, abs=1e-8)
    assert np.allclose(f1, scale * f0, atol=1e-8)  # every derivative is the level's
    with pytest.raises(InputError, match=r"level must be an integer in 0..1"):
        FixedPointCalculator(model, level=2)
    # The export takes a level whose head is atomic energies only (scale 1); others are refused.
    from fpscf.cli import main

    assert main(["export", str(result.final_model), "-o", str(tmp_path / "m.lmp")]) == 2
    assert "choose the one to export with --level L (0..1)" in capsys.readouterr().err
    assert main(["export", str(result.final_model), "-o", str(tmp_path / "m.lmp"), "--level", "1"]) == 2
    assert "scales the model's energy" in capsys.readouterr().err
    with pytest.raises(ValueError, match="scales the model's energy"):
        select_level(model, 1)
    shifted = copy.deepcopy(model)
    with torch.no_grad():
        shifted.level_heads.log_scale.zero_()
    single = select_level(shifted, 1)
    assert single.config.num_levels == 1 and single.level_heads is None
    atoms.calc = FixedPointCalculator(single, scf_tolerance=1e-10)
    e_single = atoms.get_potential_energy()
    atoms.calc = FixedPointCalculator(shifted, scf_tolerance=1e-10, level=1)
    assert e_single == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
