"""The analytic Heisenberg + Zeeman reference (issue H groundwork): its symmetries and derivatives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import molecule

from fpscf.datagen.spin_model import HeisenbergZeeman
from fpscf.units import BOHR_MAGNETON

MODEL = HeisenbergZeeman()
FIELD = np.array([3.0, -2.0, 5.0])  # T


def cluster():
    atoms = molecule("CH4")
    atoms.positions *= 1.3
    return atoms


def _energy(positions, moments, field):
    return float(MODEL.energy(torch.tensor(positions), torch.tensor(moments), torch.tensor(field)))


def test_energy_is_invariant_under_rotations_and_inversion_with_axial_moments_and_field():
    rng = np.random.default_rng(0)
    positions = cluster().positions
    moments = rng.normal(size=positions.shape)
    reference = _energy(positions, moments, FIELD)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    for rotation in (q * np.sign(np.linalg.det(q)), -q * np.sign(np.linalg.det(q))):  # proper, improper
        axial = np.linalg.det(rotation) * rotation  # axial vectors do not change sign under inversion
        rotated = _energy(positions @ rotation.T, moments @ axial.T, FIELD @ axial.T)
        assert abs(rotated - reference) < 1e-12
    # (this energy has only scalar products of m and B, so it cannot tell axial from polar vectors;
    # the fpscf model's magnetic channel, which also sees ε and positions, must: issue H)
    # time reversal: flipping every moment and B leaves E unchanged
    assert abs(_energy(positions, -moments, -FIELD) - reference) < 1e-12


def test_labels_are_derivatives_of_the_relaxed_energy():
    atoms = cluster()
    labels = MODEL.label(atoms, FIELD)
    h = 1e-3  # T

    def relaxed(field):
        moments = MODEL.relax(torch.tensor(atoms.positions), torch.tensor(field))
        return _energy(atoms.positions, moments.numpy(), field)

    for k in range(3):
        step = np.zeros(3)
        step[k] = h
        numeric = -(relaxed(FIELD + step) - relaxed(FIELD - step)) / (2 * h) / BOHR_MAGNETON
        assert abs(numeric - labels["magnetic_moment"][k]) < 1e-6
        numeric_chi = -(relaxed(FIELD + step) - 2 * relaxed(FIELD) + relaxed(FIELD - step)) / h**2
        assert abs(numeric_chi - labels["magnetic_susceptibility"][k, k]) < 1e-3 * abs(labels["magnetic_susceptibility"][k, k]) + 1e-10
    assert np.allclose(labels["magnetic_moment"], labels["magmoms"].sum(axis=0), atol=1e-10)
    h = 1e-5  # Å
    for atom, k in [(0, 0), (2, 1)]:
        moved = atoms.positions.copy()
        moved[atom, k] += h
        plus = MODEL.label(atoms.__class__(atoms.symbols, positions=moved), FIELD)["energy"]
        moved[atom, k] -= 2 * h
        minus = MODEL.label(atoms.__class__(atoms.symbols, positions=moved), FIELD)["energy"]
        assert abs(-(plus - minus) / (2 * h) - labels["forces"][atom, k]) < 1e-7


def test_magnetisation_follows_the_field_and_saturates():
    atoms = cluster()
    weak = MODEL.label(atoms, [0.0, 0.0, 1.0])["magnetic_moment"][2]
    strong = MODEL.label(atoms, [0.0, 0.0, 1000.0])["magnetic_moment"][2]
    opposite = MODEL.label(atoms, [0.0, 0.0, -1.0])["magnetic_moment"][2]
    assert weak > 0 and strong > weak and abs(opposite + weak) < 1e-9
    chi = MODEL.label(atoms, [0.0, 0.0, 1.0])["magnetic_susceptibility"]
    assert np.allclose(chi, chi.T, atol=1e-12) and np.all(np.linalg.eigvalsh(chi) > 0)


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="cutoff and quartic must be > 0"):
        HeisenbergZeeman(quartic=0.0)
