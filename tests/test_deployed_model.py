"""The deployed model (issue G) in Python: the TorchScript module LAMMPS runs equals the ASE
calculator on the same structures, periodic and open, with and without a field; its per-atom
virials add up; warm starts, charged systems, SCF failures and unexportable models behave."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from fpscf import FixedPointCalculator, build_model
from fpscf.datagen.water import water_dimer
from fpscf.export import ExportError, deploy, export_model, read_export_header
from fpscf.export.testing import evaluate_atoms
from fpscf.scf.settings import SCFSettings

FIELD = (0.05, -0.02, 0.08)  # V/Å
ONE_BODY = {"type": "OneBodyVariableUpdate", "nonlinearity_cls": "MLPNonLinearity"}


@pytest.fixture(scope="module")
def model():
    return build_model([1, 8], r_max=4.0, num_channels=8, num_interactions=2, atomic_multipoles_max_l=1,
                       fixedpoint_update_config=ONE_BODY, seed=3)


@pytest.fixture(scope="module")
def deployed(model):
    """The model's own periodic sums (the particle mesh), so agreement is to rounding."""
    return deploy(model, SCFSettings(scf_tolerance=1e-10))


@pytest.fixture(scope="module")
def direct(model):
    """Direct k-sums, the reference of the particle mesh."""
    return deploy(model, SCFSettings(scf_tolerance=1e-10), kspace="ewald")


def structure(periodic: bool) -> Atoms:
    atoms = water_dimer()
    atoms.rattle(0.05, seed=2)
    if periodic:
        atoms.set_cell([[7.0, 0.0, 0.0], [0.5, 7.5, 0.0], [-0.4, 0.3, 8.0]])
        atoms.pbc = True
        atoms.center()
    return atoms


@pytest.mark.parametrize("field", [(0.0, 0.0, 0.0), FIELD], ids=["no-field", "field"])
@pytest.mark.parametrize("periodic", [False, True], ids=["open", "periodic"])
def test_deployed_model_equals_the_ase_calculator(model, deployed, periodic, field):
    atoms = structure(periodic)
    calc = FixedPointCalculator(model, electric_field=field, scf_tolerance=1e-10)
    atoms.calc = calc
    result = evaluate_atoms(deployed, atoms, field)
    assert abs(result["energy"] - atoms.get_potential_energy()) < 1e-9
    assert np.abs(result["forces"] - atoms.get_forces()).max() < 1e-8
    assert np.abs(result["energies"] - calc.get_property("energies", atoms)).max() < 1e-9
    assert np.abs(result["charges"] - calc.get_property("charges", atoms)).max() < 1e-10
    assert np.abs(result["dipole"] - atoms.get_dipole_moment()).max() < 1e-8  # D = -dE/dε (adjoint rtol 1e-10)
    if periodic:
        assert np.abs(result["stress"] - atoms.get_stress()).max() < 1e-10
    assert 1 < result["scf_steps"] < 60


def test_per_atom_virials_add_up_to_the_virial(model, deployed):
    atoms = structure(periodic=True)
    atoms.calc = FixedPointCalculator(model, electric_field=FIELD, scf_tolerance=1e-10)
    virial = -atoms.get_stress(voigt=False) * atoms.get_volume()
    result = evaluate_atoms(deployed, atoms, FIELD)  # ghost virials folded onto their atoms
    w = result["virials"].sum(axis=0)  # xx yy zz xy xz yz
    assert np.allclose(w, [virial[0, 0], virial[1, 1], virial[2, 2], virial[0, 1], virial[0, 2], virial[1, 2]],
                       atol=1e-9)
    assert np.abs(result["virials"]).max() > 1e-3


def test_warm_start_from_the_returned_state_converges_at_once(deployed):
    atoms = structure(periodic=True)
    cold = evaluate_atoms(deployed, atoms, FIELD)
    warm = evaluate_atoms(deployed, atoms, FIELD, state=cold["state"])
    assert warm["scf_steps"] == 1 and cold["scf_steps"] > 5
    assert warm["adjoint_steps"] < cold["adjoint_steps"]  # the adjoint λ is warm-started too
    assert abs(warm["energy"] - cold["energy"]) < 1e-9
    # a partial state (one atom new, NaN row) still works and converges to the same answer
    partial = cold["state"].copy()
    partial[3] = np.nan
    mixed = evaluate_atoms(deployed, atoms, FIELD, state=partial)
    assert abs(mixed["energy"] - cold["energy"]) < 1e-9 and mixed["scf_steps"] <= cold["scf_steps"]


def test_charged_system_keeps_its_total_charge(model):
    charged = deploy(model, SCFSettings(scf_tolerance=1e-10), total_charge=1.0, kspace="ewald")
    atoms = structure(periodic=False)
    result = evaluate_atoms(charged, atoms, FIELD)
    assert abs(result["charges"].sum() - 1.0) < 1e-8
    atoms.calc = FixedPointCalculator(model, electric_field=FIELD, total_charge=1.0, scf_tolerance=1e-10)
    assert abs(result["energy"] - atoms.get_potential_energy()) < 1e-9
    assert np.abs(result["forces"] - atoms.get_forces()).max() < 1e-8


def test_non_converging_scf_is_a_clear_error_with_its_residual_history(model):
    stingy = deploy(model, SCFSettings(scf_tolerance=1e-12, max_scf_steps=3), kspace="ewald")
    with pytest.raises(torch.jit.Error, match=r"SCF did not converge after 3 steps .*Residual history .*\[\d\.\d+e-?\d+, "):
        evaluate_atoms(stingy, structure(periodic=True), FIELD)


def test_mixed_boundaries_are_refused(deployed):
    atoms = structure(periodic=True)
    atoms.pbc = [True, True, False]
    with pytest.raises(torch.jit.Error, match="periodic in all directions .* or in none"):
        evaluate_atoms(deployed, atoms, FIELD)


@pytest.mark.parametrize(("options", "message"), [
    ({"fixedpoint_update_config": {"type": "ManyBodyUpdate"}}, "ManyBodyUpdate"),
    ({"fixedpoint_update_config": ONE_BODY, "field_readout_config": {"type": "ManyBodyChargesReadout"}},
     "reads neighbours"),
], ids=["many-body-update", "many-body-readout"])
def test_unexportable_models_are_named(options, message):
    model = build_model([1, 8], r_max=3.0, num_channels=4, seed=0, **options)
    with pytest.raises(ExportError, match=message):
        deploy(model)


def test_ewald_split_model_exports_with_the_particle_mesh_and_equals_the_calculator():
    """The Ewald split only speeds up the Python sums: the export sums the same potential on the mesh."""
    split = build_model([1, 8], r_max=4.0, num_channels=8, num_interactions=2, fixedpoint_update_config=ONE_BODY,
                        ewald_split_width=2.0, seed=3)
    module = deploy(split, SCFSettings(scf_tolerance=1e-10))
    assert module.kspace == "pme"
    atoms = structure(periodic=True)
    atoms.calc = FixedPointCalculator(split, electric_field=FIELD, scf_tolerance=1e-10)
    result = evaluate_atoms(module, atoms, FIELD)
    assert abs(result["energy"] - atoms.get_potential_energy()) / len(atoms) < 1e-6
    assert np.abs(result["forces"] - atoms.get_forces()).max() < 1e-5


def test_export_writes_a_torchscript_file_with_a_plain_data_header(model, tmp_path, capsys):
    from fpscf.cli import main

    model_file = tmp_path / "model.fpscf"
    model.save(str(model_file))
    output = tmp_path / "model.lmp"
    assert main(["export", str(model_file), "-o", str(output), "--scf-tolerance", "1e-8", "--charge", "-1"]) == 0
    header = read_export_header(output)
    assert header["species"] == ["H", "O"] and header["r_max"] == 4.0 and header["state_size"] == 10
    assert header["scf_tolerance"] == 1e-8 and header["total_charge"] == -1.0
    assert header["kspace"] == "pme" and header["mesh_spacing"] > 0  # auto: the mesh, for l <= 1
    loaded = torch.jit.load(str(output))
    assert loaded.total_charge == -1.0 and loaded.scf_tolerance == 1e-8
    atoms = molecule("H2O")
    atoms.calc = FixedPointCalculator(model, scf_tolerance=1e-8, total_charge=-1.0)
    assert abs(evaluate_atoms(loaded, atoms)["energy"] - atoms.get_potential_energy()) < 1e-6

    assert main(["export", str(tmp_path / "missing.fpscf"), "-o", str(tmp_path / "x.lmp")]) == 2
    assert "missing.fpscf" in capsys.readouterr().err
    assert not (tmp_path / "x.lmp").exists()
    with zipfile.ZipFile(tmp_path / "foreign.zip", "w") as archive:
        archive.writestr("data.txt", json.dumps({}))
    with pytest.raises(ValueError, match="not an fpscf export"):
        read_export_header(tmp_path / "foreign.zip")
    (tmp_path / "junk.lmp").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a TorchScript archive"):
        read_export_header(tmp_path / "junk.lmp")


@pytest.mark.parametrize("field", [(0.0, 0.0, 0.0), FIELD], ids=["no-field", "field"])
def test_particle_mesh_agrees_with_the_direct_k_sum(model, deployed, direct, field):
    mesh = deployed
    assert mesh.kspace == "pme" and direct.kspace == "ewald"
    reference = direct
    atoms = structure(periodic=True).repeat((2, 1, 1))
    direct, pme = evaluate_atoms(reference, atoms, field), evaluate_atoms(mesh, atoms, field)
    assert abs(pme["energy"] - direct["energy"]) / len(atoms) < 1e-7
    assert np.abs(pme["forces"] - direct["forces"]).max() < 1e-6
    assert np.abs(pme["stress"] - direct["stress"]).max() < 1e-8
    assert np.abs(pme["charges"] - direct["charges"]).max() < 1e-7
    # later calls run TorchScript's optimised graphs: the mesh's FFT derivatives must survive them
    moved = atoms.copy()
    moved.positions[0] += 0.02
    for _ in range(2):
        again = evaluate_atoms(mesh, moved, field, state=pme["state"])
    assert np.abs(again["forces"] - evaluate_atoms(reference, moved, field)["forces"]).max() < 1e-6
    coarse = evaluate_atoms(deploy(model, SCFSettings(scf_tolerance=1e-10), kspace="pme", mesh_spacing=1.2, spline_order=4),
                            atoms, field)
    assert abs(coarse["energy"] - direct["energy"]) > 10 * abs(pme["energy"] - direct["energy"])  # the mesh matters


def test_particle_mesh_options_are_checked():
    quadrupoles = build_model([1, 8], r_max=3.0, num_channels=4, atomic_multipoles_max_l=2, max_L=2, seed=0,
                              fixedpoint_update_config=ONE_BODY)
    with pytest.raises(ExportError, match="up to l = 1"):
        deploy(quadrupoles, kspace="pme")
    small = build_model([1, 8], r_max=3.0, num_channels=4, seed=0, fixedpoint_update_config=ONE_BODY)
    with pytest.raises(ExportError, match="kspace must be one of"):
        deploy(small, kspace="fft")
    with pytest.raises(ExportError, match="spline_order must be"):
        deploy(small, kspace="pme", spline_order=5)
    with pytest.raises(ExportError, match="mesh_spacing must be > 0"):
        deploy(small, kspace="pme", mesh_spacing=0.0)


def test_particle_mesh_forces_stress_and_dipole_are_derivatives_of_its_energy(model):
    """The mesh energy is an approximation of the direct sum; its forces, stress and dipole must
    still be its exact derivatives (central differences of converged energies)."""
    mesh = deploy(model, SCFSettings(scf_tolerance=1e-11), kspace="pme")
    atoms = structure(periodic=True)
    reference = evaluate_atoms(mesh, atoms, FIELD)

    def energy(positions=None, strain=None, field=FIELD) -> float:
        moved = atoms.copy()
        if positions is not None:
            moved.positions = positions
        if strain is not None:
            moved.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
        return float(evaluate_atoms(mesh, moved, field)["energy"])

    h = 1e-4
    for atom, k in [(0, 0), (4, 2)]:
        step = np.zeros_like(atoms.positions)
        step[atom, k] = h
        numeric = -(energy(atoms.positions + step) - energy(atoms.positions - step)) / (2 * h)
        assert abs(numeric - reference["forces"][atom, k]) < 1e-5
    for voigt, (a, b) in [(0, (0, 0)), (5, (0, 1))]:
        strain = np.zeros((3, 3))
        strain[a, b] = strain[b, a] = h
        numeric = (energy(strain=strain) - energy(strain=-strain)) / (2 * h) / atoms.get_volume()
        assert abs(numeric / (1 if a == b else 2) - reference["stress"][voigt]) < 1e-6
    for k in range(3):
        step = np.zeros(3)
        step[k] = h
        numeric = -(energy(field=np.add(FIELD, step)) - energy(field=np.subtract(FIELD, step))) / (2 * h)
        assert abs(numeric - reference["dipole"][k]) < 1e-5


def test_shipped_model_exports(tmp_path):
    path = export_model("water-b3lyp", tmp_path / "water.lmp")
    header = read_export_header(path)
    assert header["source_model"] == "water-b3lyp" and header["species"] == ["H", "O"]


BLOCKING_OPTIONS = {  # option that keeps a model out of LAMMPS -> the words the export's message names
    "fixedpoint_update_config": "ManyBodyUpdate",
    "field_readout_config": "reads neighbours",
    "electrostatic_pbc_method": "slab",
    "magnetic_moments": "magnetic_moments",
    "spin_on_embedding": "spin_on_embedding",
}


@pytest.mark.slow
@pytest.mark.parametrize(("option", "value"), [
    ("fixedpoint_update_config", {"type": "OneBodyVariableUpdate", "nonlinearity_cls": "NoNonLinearity"}),
    ("fixedpoint_update_config", {"type": "ManyBodyUpdate"}),
    *[("field_readout_config", {"type": name}) for name in
      ("NullFieldReadout", "StrictQuadraticFieldEnergyReadout", "OneBodyMLPFieldReadout", "ManyBodyChargesReadout",
       "ManyBodyChargesFieldReadout")],
    ("atomic_multipoles_max_l", 2),  # (l = 0 and field_feature_max_l = 2 fail in build_model itself today)
    *[("electrostatic_pbc_method", name) for name in ("realspace", "pbc", "slab")],
    ("electrostatics_backend", "nvalchemi"), ("ewald_split_width", 2.0), ("kspace_method", "ewald"),
    ("field_coupling", "bond_midpoints"), ("short_range_repulsion", "none"), ("use_linear_local_charges", True),
    ("magnetic_moments", "collinear"), ("spin_on_embedding", True),
])
def test_every_model_option_exports_or_is_refused_by_name(option, value):
    """Each model option build_model accepts either exports (a TorchScript module that evaluates a
    structure) or is refused by one ExportError naming the option that blocks it."""
    options = {"fixedpoint_update_config": ONE_BODY, option: value}
    if option == "field_coupling":
        options["field_coupling_bond_range"] = [1.0, 1.5]
    if option == "atomic_multipoles_max_l" and value == 2:
        options["max_L"] = 2
    model = build_model([1, 8], r_max=3.0, num_channels=4, seed=0, **options)
    blocked = BLOCKING_OPTIONS.get(option)
    if blocked is not None and (option != "fixedpoint_update_config" or value["type"] == "ManyBodyUpdate") and \
            (option != "field_readout_config" or value["type"].startswith("ManyBody")) and \
            (option != "electrostatic_pbc_method" or value == "slab"):
        with pytest.raises(ExportError, match=blocked):
            deploy(model)
        return
    module = deploy(model, SCFSettings(scf_tolerance=1e-8))
    periodic = model.config.electrostatic_pbc_method != "realspace"
    result = evaluate_atoms(module, structure(periodic), FIELD)
    assert np.isfinite(result["energy"]) and np.isfinite(result["forces"]).all()
