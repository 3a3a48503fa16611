"""Quantum ESPRESSO labels (issue I): parsing and unit conversion of ph.x output (always), and, where
pw.x and ph.x are installed, forces, stress and Raman tensors against finite differences of QE's
own energies and dielectric tensors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from fpscf.datagen.crystal import sample_crystal_structures
from fpscf.datagen.qe_labels import (
    QE_INSTALL_HINT,
    kpoint_mesh,
    parse_alat_angstrom,
    parse_born_charges,
    parse_dielectric_tensor,
    parse_phonon_frequencies,
    ph_q_coordinates,
    parse_raman_angstrom2,
    raman_from_angstrom2,
    raman_from_inverse_bohr,
)
from fpscf.units import BOHR

PH_OUTPUT = Path(__file__).parent / "data" / "qe" / "alas_ph_gamma.out"
PH_OUTPUT_X = Path(__file__).parent / "data" / "qe" / "alas_ph_X.out"  # examples/alas/dfpt_bands.py
HAVE_QE = shutil.which("pw.x") is not None and shutil.which("ph.x") is not None
needs_qe = pytest.mark.skipif(not HAVE_QE, reason=f"Quantum ESPRESSO not installed: {QE_INSTALL_HINT}")


def test_ph_output_is_parsed_into_fpscf_conventions():
    text = PH_OUTPUT.read_text()
    epsilon = parse_dielectric_tensor(text)
    assert np.allclose(epsilon, 9.311927889 * np.eye(3))
    born = parse_born_charges(text, 2)
    assert born[0, 0, 0] == pytest.approx(2.13111) and born[1, 2, 2] == pytest.approx(-2.19432)
    raman_a2 = parse_raman_angstrom2(text, 2)
    assert raman_a2[0, 0, 1, 2] == pytest.approx(-6.22788657144) and raman_a2[1, 2, 0, 1] == pytest.approx(6.28628471169)
    assert np.allclose(raman_a2, raman_a2.transpose(0, 1, 3, 2))  # symmetric in the field indices
    # the printed Å² block is Ω/(4π) times the au^-1 block dε/du (−0.965695897 bohr⁻¹ for Al, c = x, ab = yz)
    volume = bulk("AlAs", "zincblende", a=10.50 * BOHR).get_volume()
    assert raman_from_angstrom2(raman_a2)[0, 0, 1, 2] == pytest.approx(raman_from_inverse_bohr(-0.965695897, volume), rel=1e-7)


def test_phonons_at_x_are_parsed_from_ph_output():
    """ph.x at X of AlAs (a = 5.595 Å): the frequency block, not the symmetry summary, and alat, the
    unit of ph.x's q: the reduced X point (½, 0, ½) of ASE's primitive cell is (0, 1/√2, 0) 2π/alat."""
    text = PH_OUTPUT_X.read_text()
    frequencies = parse_phonon_frequencies(text, 2)
    assert np.allclose(frequencies, [95.453685, 95.453685, 214.034228, 331.564306, 331.564306, 391.003394])
    alat = parse_alat_angstrom(text)
    assert alat == pytest.approx(7.4763 * BOHR)
    cell = bulk("AlAs", "zincblende", a=5.595).cell.array
    assert np.allclose(ph_q_coordinates([0.5, 0.0, 0.5], cell, alat), [0.0, 0.7071113, 0.0], atol=1e-6)
    with pytest.raises(RuntimeError, match="phonon frequencies"):
        parse_phonon_frequencies(text, 4)


def test_kpoint_mesh_and_crystal_sampler():
    cell = bulk("AlAs", "zincblende", a=5.595, cubic=True).cell.array
    assert kpoint_mesh(cell, 0.4) == (3, 3, 3)
    structures = sample_crystal_structures(4, seed=1)
    assert len(structures[0]) == 8 and structures[0].info["rattle"] == 0.0
    assert all(s.info["sample_id"] == k for k, s in enumerate(structures))
    assert not np.allclose(structures[1].cell.array, structures[0].cell.array)
    with pytest.raises(ValueError, match="lattice_constant"):
        sample_crystal_structures(2, 0, formula="GaN")


def _cell(seed: int):
    atoms = bulk("AlAs", "zincblende", a=5.595)
    atoms.positions += np.random.default_rng(seed).normal(scale=0.04, size=atoms.positions.shape)
    return atoms


def _settings(**changes):
    from fpscf.datagen.qe_labels import QESettings

    changes.setdefault("kspacing", 0.5)
    changes.setdefault("ecutwfc", 20.0)
    return QESettings(**changes)


@needs_qe
def test_pw_forces_and_stress_are_derivatives_of_the_pw_energy():
    from fpscf.datagen.qe_labels import label_structure

    atoms = _cell(0)
    reference = label_structure(atoms, _settings())
    h = 0.005
    energies = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[0, 1] += sign * h
        energies.append(label_structure(moved, _settings()).info["energy"])
    assert -(energies[0] - energies[1]) / (2 * h) == pytest.approx(reference.arrays["forces"][0, 1], abs=2e-3)
    # pw.x stress is analytic at a fixed plane-wave cutoff (finite differences of E(η) would add the
    # Pulay stress of a changing basis), so check its sign convention: ASE's, + under tension
    for factor, sign in ((0.97, -1.0), (1.03, 1.0)):
        scaled = atoms.copy()
        scaled.set_cell(atoms.cell.array * factor, scale_atoms=True)
        assert np.sign(np.trace(label_structure(scaled, _settings()).info["stress"])) == sign


@pytest.mark.slow  # about 3 minutes: three ph.x runs on a converged k-mesh
@needs_qe
def test_raman_tensor_equals_the_finite_difference_of_the_dft_polarizability():
    from fpscf.datagen.qe_labels import label_structure

    # a converged k-mesh (7×7×7, shifted): on 4×4×4 the DFPT Raman tensor and the finite difference
    # of the DFPT ε∞ differ by 25 % (mesh error), on 7×7×7 by 1.4 %
    atoms = bulk("AlAs", "zincblende", a=5.595)
    dense = {"kspacing": 0.3, "shifted_mesh": True}
    labelled = label_structure(atoms, _settings(**dense), response=True)
    raman = labelled.arrays["raman_tensors"].reshape(2, 3, 3, 3)
    h = 0.01
    alphas = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[0, 0] += sign * h
        alphas.append(label_structure(moved, _settings(raman=False, **dense), response=True).info["polarizability"])
    numeric = (alphas[0] - alphas[1]) / (2 * h)  # ∂α_ab/∂R_{Al,x}, e·Å/V
    assert abs(numeric[1, 2]) > 0.1
    assert np.allclose(numeric, raman[0, 0], atol=0.04 * abs(numeric[1, 2]))
    born = labelled.arrays["born_effective_charges"].reshape(2, 3, 3)
    assert born[0, 0, 0] > 1.5 and abs(np.trace(born.sum(0))) / 3 < 0.15  # Al cation; acoustic sum rule to QE's accuracy
    epsilon = labelled.info["dielectric_tensor"]
    assert np.allclose(labelled.info["polarizability"], 0.0055263494 * atoms.get_volume() * (epsilon - np.eye(3)))


@needs_qe
def test_dfpt_gamma_reference_gives_to_and_lo_phonons_of_alas():
    from fpscf.datagen.qe_labels import dfpt_gamma_reference

    reference = dfpt_gamma_reference(bulk("AlAs", "zincblende", a=10.50 * BOHR), _settings(ecutwfc=24.0, shifted_mesh=True))
    frequencies = reference["frequencies"]
    assert np.abs(frequencies[:3]).max() < 1.0  # acoustic sum rule imposed by dynmat.x
    transverse, longitudinal = frequencies[3], frequencies[5]
    assert frequencies[4] == pytest.approx(transverse)
    # LDA at this (QE example) lattice constant: TO 367 cm⁻¹, LO 405 cm⁻¹ (experiment: 361, 402)
    assert transverse == pytest.approx(367.4, abs=1.0) and longitudinal == pytest.approx(405.0, abs=1.0)
    assert reference["dielectric_tensor"][0, 0] == pytest.approx(9.31, abs=0.01)
    assert reference["raman_tensors"].shape == (2, 3, 3, 3)
