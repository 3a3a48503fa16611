"""The magnetic channel (issue H): symmetry of B and moments as axial vectors, exact derivatives
against finite differences of converged energies, constrained moments, spin_on and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from fpscf import build_model
from fpscf.calculators.fixed_point import FixedPointCalculator
from fpscf.data.graph import atoms_to_graph
from fpscf.units import BOHR_MAGNETON

R_MAX = 4.0
FIELD_B = np.array([3.0, -20.0, 50.0])  # T
FIELD_E = np.array([0.05, 0.0, -0.02])  # V/Å


def _model(kind: str, **options):
    return build_model([8, 26], magnetic_moments=kind, r_max=R_MAX, num_channels=8, seed=3, **options)


def _cluster(kind: str = "noncollinear") -> Atoms:
    positions = np.array([[0.0, 0.0, 0.0], [2.2, 0.1, 0.0], [0.1, 2.3, 0.2], [1.1, 1.2, 1.9], [2.4, 2.0, 1.4]])
    atoms = Atoms("Fe4O", positions=positions)
    rng = np.random.default_rng(1)
    if kind == "noncollinear":
        atoms.set_initial_magnetic_moments(rng.normal(size=(5, 3)))
    else:
        atoms.set_initial_magnetic_moments([1.0, 1.2, 0.8, 1.0, 0.1])
    return atoms


def _calc(model, **kwargs) -> FixedPointCalculator:
    kwargs.setdefault("magnetic_field", FIELD_B)
    kwargs.setdefault("electric_field", FIELD_E)
    return FixedPointCalculator(model, scf_tolerance=1e-11, **kwargs)


def _properties(model, atoms: Atoms, names: list[str], **kwargs) -> dict:
    atoms = atoms.copy()
    calc = _calc(model, **kwargs)
    atoms.calc = calc
    return calc.get_properties(names, atoms)


def _rotation(seed: int, proper: bool) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.linalg.det(q))
    return q if proper else -q


@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "rotoinversion"])
def test_b_and_moments_rotate_as_axial_vectors_and_the_electric_field_as_a_polar_one(proper):
    model = _model("noncollinear")
    atoms = _cluster()
    names = ["energy", "forces", "dipole", "magmoms", "magnetic_moment", "magnetic_susceptibility", "magnetoelectric_tensor"]
    reference = _properties(model, atoms, names)
    rotation = _rotation(0, proper)
    axial = np.linalg.det(rotation) * rotation
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ rotation.T
    rotated.set_initial_magnetic_moments(atoms.get_initial_magnetic_moments() @ axial.T)
    result = _properties(model, rotated, names, magnetic_field=axial @ FIELD_B, electric_field=rotation @ FIELD_E)
    assert abs(result["energy"] - reference["energy"]) < 1e-9
    assert np.allclose(result["forces"], reference["forces"] @ rotation.T, atol=1e-8)
    assert np.allclose(result["dipole"], rotation @ reference["dipole"], atol=1e-8)
    assert np.allclose(result["magmoms"], reference["magmoms"] @ axial.T, atol=1e-7)
    assert np.allclose(result["magnetic_moment"], axial @ reference["magnetic_moment"], atol=1e-7)
    chi = reference["magnetic_susceptibility"]
    assert np.allclose(result["magnetic_susceptibility"], axial @ chi @ axial.T, atol=1e-6 * np.abs(chi).max())
    me = reference["magnetoelectric_tensor"]  # [a, b] = −∂²E/∂ε_a∂B_b: polar × axial
    assert np.allclose(result["magnetoelectric_tensor"], rotation @ me @ axial.T, atol=1e-6 * np.abs(me).max())


def test_inversion_flips_the_electric_field_and_not_b_and_the_model_can_tell_the_difference():
    model = _model("noncollinear")
    atoms = _cluster()
    reference = _properties(model, atoms, ["energy", "magmoms"])
    inverted = atoms.copy()
    inverted.positions = -atoms.positions
    right = _properties(model, inverted, ["energy", "magmoms"], electric_field=-FIELD_E)  # B, m unchanged
    assert abs(right["energy"] - reference["energy"]) < 1e-9
    assert np.allclose(right["magmoms"], reference["magmoms"], atol=1e-7)
    # treating B and the moments as polar vectors (flipping them too) is a different state
    wrong_atoms = inverted.copy()
    wrong_atoms.set_initial_magnetic_moments(-atoms.get_initial_magnetic_moments())
    wrong = _properties(model, wrong_atoms, ["energy"], electric_field=-FIELD_E, magnetic_field=-FIELD_B)
    assert abs(wrong["energy"] - reference["energy"]) > 1e-5


def test_translation_and_permutation_invariance_of_the_moments():
    model = _model("noncollinear")
    atoms = _cluster()
    reference = _properties(model, atoms, ["energy", "magmoms", "magnetic_moment"])
    order = np.array([3, 0, 4, 2, 1])
    moved = atoms[order]
    moved.positions += np.array([0.7, -1.3, 2.1])
    result = _properties(model, moved, ["energy", "magmoms", "magnetic_moment"])
    # a uniform field adds −ε·Q·t = 0 for a neutral density under translation
    assert abs(result["energy"] - reference["energy"]) < 1e-8
    assert np.allclose(result["magmoms"], reference["magmoms"][order], atol=1e-7)
    assert np.allclose(result["magnetic_moment"], reference["magnetic_moment"], atol=1e-7)


@pytest.mark.parametrize("kind", ["noncollinear", "collinear"])
def test_magnetic_moment_and_susceptibility_equal_finite_differences_of_converged_energies(kind):
    model = _model(kind)
    atoms = _cluster(kind)
    exact = _properties(model, atoms, ["magnetic_moment", "magnetic_susceptibility", "magnetoelectric_tensor"])
    assert np.abs(exact["magnetic_susceptibility"]).max() > 0

    def energy(field_b, field_e=FIELD_E):
        return _properties(model, atoms, ["energy"], magnetic_field=field_b, electric_field=field_e)["energy"]

    step = 0.1  # T (the Zeeman energy of 0.1 T is 6e-6 eV per μ_B)
    e0 = energy(FIELD_B)
    for a in range(3):
        da = np.eye(3)[a] * step
        plus, minus = energy(FIELD_B + da), energy(FIELD_B - da)
        moment = -(plus - minus) / (2 * step) / BOHR_MAGNETON
        assert abs(moment - exact["magnetic_moment"][a]) < 1e-5
        chi_aa = -(plus - 2 * e0 + minus) / step**2
        assert abs(chi_aa - exact["magnetic_susceptibility"][a, a]) < 1e-3 * np.abs(exact["magnetic_susceptibility"]).max()
    # off-diagonal and the magnetoelectric tensor from central differences of M
    for b in range(3):
        db = np.eye(3)[b] * step
        plus = _properties(model, atoms, ["magnetic_moment"], magnetic_field=FIELD_B + db)["magnetic_moment"]
        minus = _properties(model, atoms, ["magnetic_moment"], magnetic_field=FIELD_B - db)["magnetic_moment"]
        column = BOHR_MAGNETON * (plus - minus) / (2 * step)
        assert np.allclose(column, exact["magnetic_susceptibility"][b], atol=1e-4 * np.abs(exact["magnetic_susceptibility"]).max())
    if kind == "noncollinear":
        assert np.abs(exact["magnetoelectric_tensor"]).max() > 0
    h = 1e-3  # V/Å
    for a in range(3):
        da = np.eye(3)[a] * h
        plus = _properties(model, atoms, ["magnetic_moment"], electric_field=FIELD_E + da)["magnetic_moment"]
        minus = _properties(model, atoms, ["magnetic_moment"], electric_field=FIELD_E - da)["magnetic_moment"]
        row = BOHR_MAGNETON * (plus - minus) / (2 * h)
        scale = max(np.abs(exact["magnetoelectric_tensor"]).max(), 1e-12)
        assert np.allclose(row, exact["magnetoelectric_tensor"][a], atol=1e-4 * scale + 1e-14)


def test_collinear_moments_follow_the_field_direction():
    model = _model("collinear")
    atoms = _cluster("collinear")
    along = _properties(model, atoms, ["energy", "magmoms", "magnetic_moment"])
    rotation = _rotation(5, True)
    turned = _properties(model, atoms, ["energy", "magmoms", "magnetic_moment"], magnetic_field=rotation @ FIELD_B)
    # without spin-orbit coupling only |B| matters; M points along B
    assert abs(turned["energy"] - along["energy"]) < 1e-9
    assert np.allclose(turned["magmoms"], along["magmoms"], atol=1e-8)
    unit = FIELD_B / np.linalg.norm(FIELD_B)
    assert np.allclose(along["magnetic_moment"], along["magmoms"].sum() * unit, atol=1e-7)


def test_forces_and_dipole_of_a_magnetic_model_equal_finite_differences():
    model = _model("noncollinear")
    atoms = _cluster()
    exact = _properties(model, atoms, ["forces", "dipole"])
    h = 1e-4
    for atom, axis in [(0, 0), (3, 2), (4, 1)]:
        displaced = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * h
            displaced.append(_properties(model, moved, ["energy"])["energy"])
        assert abs(-(displaced[0] - displaced[1]) / (2 * h) - exact["forces"][atom, axis]) < 1e-6
    h = 1e-3
    for a in range(3):
        da = np.eye(3)[a] * h
        plus = _properties(model, atoms, ["energy"], electric_field=FIELD_E + da)["energy"]
        minus = _properties(model, atoms, ["energy"], electric_field=FIELD_E - da)["energy"]
        assert abs(-(plus - minus) / (2 * h) - exact["dipole"][a]) < 1e-6


def test_magnetic_forces_of_constrained_moments_equal_finite_differences_and_vanish_when_relaxed():
    model = _model("noncollinear")
    atoms = _cluster()
    relaxed = _properties(model, atoms, ["magnetic_forces", "magmoms"])
    assert np.abs(relaxed["magnetic_forces"]).max() < 1e-8
    fixed = _properties(model, atoms, ["energy", "magnetic_forces", "magmoms"], fix_moments=True)
    assert np.allclose(fixed["magmoms"], atoms.get_initial_magnetic_moments())
    assert np.abs(fixed["magnetic_forces"]).max() > 1e-4
    h = 1e-4
    start = atoms.get_initial_magnetic_moments()
    for atom, axis in [(0, 0), (2, 1), (4, 2)]:
        values = []
        for sign in (1, -1):
            moved = atoms.copy()
            moments = start.copy()
            moments[atom, axis] += sign * h
            moved.set_initial_magnetic_moments(moments)
            values.append(_properties(model, moved, ["energy"], fix_moments=True)["energy"])
        assert abs(-(values[0] - values[1]) / (2 * h) - fixed["magnetic_forces"][atom, axis]) < 1e-8
    # the relaxed state is a stationary point: its energy is below nearby constrained states here
    probe = atoms.copy()
    probe.set_initial_magnetic_moments(relaxed["magmoms"])
    again = _properties(model, probe, ["energy", "magnetic_forces"], fix_moments=True)
    assert np.abs(again["magnetic_forces"]).max() < 1e-6


def test_spin_off_structures_have_zero_moments_and_spin_on_embedding_is_an_input():
    model = _model("noncollinear")
    atoms = _cluster()
    atoms.info["spin_on"] = False
    off = _properties(model, atoms, ["magmoms", "magnetic_moment", "magnetic_susceptibility"])
    assert np.all(off["magmoms"] == 0)
    assert np.abs(off["magnetic_moment"]).max() < 1e-12
    embedded = build_model([8, 26], r_max=R_MAX, num_channels=8, spin_on_embedding=True)
    plain = atoms.copy()
    del plain.arrays["initial_magmoms"]
    energies = []
    for flag in (True, False):
        plain.info["spin_on"] = flag
        calc = FixedPointCalculator(embedded)
        plain.calc = calc
        energies.append(plain.get_potential_energy())
    assert abs(energies[0] - energies[1]) > 1e-4


def test_graph_carries_initial_moments_and_spin_on_through_batching():
    from fpscf.data.graph import collate, graph_to_atoms, unbatch

    atoms = _cluster()
    atoms.info["spin_on"] = True
    other = _cluster("collinear")
    graphs = [atoms_to_graph(atoms, R_MAX), atoms_to_graph(other, R_MAX), atoms_to_graph(Atoms("O", positions=[[0, 0, 0]]), R_MAX)]
    batch = collate(graphs)
    assert batch.initial_magmoms.shape == (11, 3)
    assert batch.spin_on.tolist() == [True, True, True]
    assert np.allclose(batch.initial_magmoms[5:10, 2].numpy(), other.get_initial_magnetic_moments())
    back = unbatch(batch)
    assert torch.equal(back[0].initial_magmoms, graphs[0].initial_magmoms)
    restored = graph_to_atoms(graphs[0])[0]
    assert np.allclose(restored.arrays["initial_noncollinear_magmoms"], atoms.get_initial_magnetic_moments())
    bad = atoms.copy()
    bad.arrays["initial_noncollinear_magmoms"] = np.zeros((5, 2))
    with pytest.raises(ValueError, match="initial_noncollinear_magmoms"):
        atoms_to_graph(bad, R_MAX)


def test_magnetic_model_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="magnetic_moments.*collinear"):
        build_model([26], magnetic_moments="vector")
    collinear = _model("collinear")
    with pytest.raises(ValueError, match="collinear moments.*shape \\(N,\\)"):
        _properties(collinear, _cluster("noncollinear"), ["energy"])
    plain = build_model([8, 26], r_max=R_MAX, num_channels=8)
    with pytest.raises(ValueError, match="magnetic_moments: collinear or noncollinear"):
        _properties(plain, _cluster(), ["magnetic_moment"])
    with pytest.raises(ValueError, match="magnetic_field must be 3"):
        FixedPointCalculator(plain, magnetic_field=[1.0, 2.0])
    atoms = _cluster()
    del atoms.arrays["initial_magmoms"]
    with pytest.raises(ValueError, match="set_initial_magnetic_moments"):
        _properties(_model("noncollinear"), atoms, ["energy"], fix_moments=True)
    from fpscf.export.deployed import ExportError, check_exportable

    with pytest.raises(ExportError, match="magnetic"):
        check_exportable(_model("noncollinear"))


def test_magnetic_model_saves_and_loads(tmp_path):
    from fpscf import load_model

    model = _model("noncollinear", spin_on_embedding=True)
    path = tmp_path / "magnetic.fpscf"
    model.save(str(path))
    loaded = load_model(str(path))
    assert loaded.config.magnetic_moments == "noncollinear"
    atoms = _cluster()
    a = _properties(model, atoms, ["energy", "magmoms"])
    b = _properties(loaded, atoms, ["energy", "magmoms"])
    assert abs(a["energy"] - b["energy"]) < 1e-12
    assert np.allclose(a["magmoms"], b["magmoms"], atol=1e-9)


def test_polarizability_and_born_charges_of_a_magnetic_model_equal_finite_differences_of_the_dipole():
    model = _model("noncollinear")
    atoms = _cluster()
    exact = _properties(model, atoms, ["polarizability", "born_effective_charges"])
    h = 1e-3
    for a in range(3):
        da = np.eye(3)[a] * h
        plus = _properties(model, atoms, ["dipole"], electric_field=FIELD_E + da)["dipole"]
        minus = _properties(model, atoms, ["dipole"], electric_field=FIELD_E - da)["dipole"]
        assert np.allclose((plus - minus) / (2 * h), exact["polarizability"][a], atol=1e-6)
    h = 1e-4
    for atom, axis in [(1, 0), (4, 2)]:
        dipoles = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * h
            dipoles.append(_properties(model, moved, ["dipole"])["dipole"])
        assert np.allclose((dipoles[0] - dipoles[1]) / (2 * h), exact["born_effective_charges"][atom, :, axis], atol=1e-6)


def test_periodic_magnetic_crystal_forces_and_stress_equal_finite_differences():
    from ase.build import bulk

    model = _model("noncollinear")
    atoms = bulk("Fe", "bcc", a=2.87, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.05, seed=2)
    atoms.arrays.pop("initial_magmoms")
    atoms.set_initial_magnetic_moments(np.array([0.2, 0.1, 1.5]) + np.random.default_rng(4).normal(scale=0.2, size=(4, 3)))
    exact = _properties(model, atoms, ["energy", "forces", "stress", "magnetic_moment"])
    h = 1e-4
    moved = []
    for sign in (1, -1):
        probe = atoms.copy()
        probe.positions[2, 1] += sign * h
        moved.append(_properties(model, probe, ["energy"])["energy"])
    assert abs(-(moved[0] - moved[1]) / (2 * h) - exact["forces"][2, 1]) < 1e-6
    strained = []
    for sign in (1, -1):
        probe = atoms.copy()
        deformation = np.eye(3)
        deformation[0, 2] = deformation[2, 0] = sign * h / 2
        probe.set_cell(atoms.cell.array @ deformation, scale_atoms=True)
        strained.append(_properties(model, probe, ["energy"])["energy"])
    numeric = (strained[0] - strained[1]) / (2 * h) / atoms.get_volume()
    assert abs(numeric - exact["stress"][4]) < 1e-7  # Voigt xz


def _two_moments(field_tesla: float):
    from fpscf.scf.magnetic import MagneticTerms

    z = torch.zeros(2, dtype=torch.float64)
    zeeman = torch.tensor([[0.0, 0.0, field_tesla]] * 2, dtype=torch.float64) * BOHR_MAGNETON
    return MagneticTerms(
        quadratic=torch.full((2,), -0.04, dtype=torch.float64), quartic=torch.full((2,), 0.01, dtype=torch.float64),
        anisotropy=z, axis=torch.zeros(2, 3, dtype=torch.float64), bias=torch.zeros(2, 3, dtype=torch.float64),
        linear_me=z, exchange=torch.tensor([0.01, 0.01], dtype=torch.float64), spin_current=torch.zeros(2, dtype=torch.float64),
        bond=torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]], dtype=torch.float64), local_field=torch.zeros(2, 3, dtype=torch.float64),
        zeeman=zeeman, edge_index=torch.tensor([[0, 1], [1, 0]]),
    )


def test_moment_minimiser_reaches_the_analytic_ferromagnet_and_reports_failure_with_its_history():
    from fpscf.scf.magnetic import minimise_moments
    from fpscf.scf.settings import SCFSettings
    from fpscf.scf.solver import SCFConvergenceError

    terms = _two_moments(50.0)
    start = torch.tensor([[1.0, 0.2, 0.1], [-0.3, 1.0, 0.4]], dtype=torch.float64)
    active = torch.tensor([True, True])
    result = minimise_moments(terms, start, active, SCFSettings(scf_tolerance=1e-12))
    # parallel moments along B with 2α s + 4β s³ = J s + μ_B B (exchange field of the other moment)
    s = result.solution[0, 2]
    assert torch.allclose(result.solution, torch.stack([torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64), s.expand(2)], 1), atol=1e-9)
    assert abs(float(2 * -0.04 * s + 4 * 0.01 * s**3 - 0.01 * s - BOHR_MAGNETON * 50.0)) < 1e-11
    with pytest.raises(SCFConvergenceError, match="moment SCF did not converge after 2 steps.*Residual history"):
        minimise_moments(terms, start, active, SCFSettings(scf_tolerance=1e-14, max_scf_steps=2))
