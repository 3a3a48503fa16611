"""A density response that cannot run away (issue J): every atom's hardness stays above the
self-Coulomb of its Gaussian multipoles, so the multipole energy is strictly convex for any
geometry; the learnt terms are flat inside the core radius; adversarial geometries converge with
bounded charges and a repulsive energy, for random (untrained) models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from fpscf import FixedPointCalculator, build_model
from fpscf.datagen.water import water_dimer
from fpscf.nn.radial import core_clamped
from fpscf.scf.bounds import AUTO_HARDNESS_MARGIN, self_coulomb_hardness

SEEDS = (0, 1, 2)


def small_model(seed: int, **options):
    return build_model([1, 8], r_max=4.0, num_channels=8, seed=seed, **options)


def coulomb_matrix(model, atoms: Atoms) -> torch.Tensor:
    """J (N·K, N·K) eV per multipole²: the potential on each multipole of unit multipoles elsewhere
    (the model's Hartree kernel, without self-interaction)."""
    electrostatics = model.electrostatics
    positions = torch.tensor(atoms.positions)
    geometry = electrostatics.prepare(positions, torch.zeros(1, 3, 3, dtype=torch.float64),
                                      torch.zeros(len(atoms), dtype=torch.long), ["open"])
    n, k = len(atoms), model.num_coefficients
    columns = []
    for index in range(n * k):
        unit = torch.zeros(n * k, dtype=torch.float64)
        unit[index] = 1.0
        columns.append(electrostatics.potential(geometry, unit.reshape(n, k))[:, 0, :k].reshape(-1))
    return torch.stack(columns, dim=1)


def test_auto_hardness_is_a_margin_above_the_gaussian_self_coulomb():
    model = small_model(0)
    sigma = model.config.atomic_multipoles_smearing_width
    coulomb = 14.399645
    analytic = [coulomb / (np.sqrt(np.pi) * sigma), coulomb / (6 * np.sqrt(np.pi) * sigma**3)]
    np.testing.assert_allclose(self_coulomb_hardness(model.electrostatics, 1), analytic, rtol=1e-12)
    np.testing.assert_allclose(model.minimum_hardness, [AUTO_HARDNESS_MARGIN * s for s in analytic], rtol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_compliance_is_bounded_for_any_node_features(seed):
    model = small_model(seed)
    embedding = model.update.embedding
    scalars = 50.0 * torch.randn(2000, model.num_scalars, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    response, _ = embedding.response(scalars)
    compliance = -(response / model.feature_norms[:, : response.shape[-1]]).sum(1)
    assert bool((compliance > 0).all())
    limits = torch.tensor([1.0 / k for k in model.minimum_hardness], dtype=torch.float64)
    assert bool((compliance <= limits * (1 + 1e-12)).all())
    assert float((compliance / limits).max()) > 0.5  # the bound is reached, not vacuous
    unbounded = small_model(seed, minimum_hardness=None).update.embedding.response(scalars)[0]
    assert float((-(unbounded / model.feature_norms[:, :2]).sum(1) / limits).max()) > 1.0


@pytest.mark.parametrize("separation", [0.5, 0.2])
def test_multipole_energy_is_convex_at_close_contact(separation):
    """Hessian of the electrostatic + readout energy in the multipoles, K + J, is positive definite
    with the hardness floor (J + S ⪰ 0 for Gaussians; K ≥ κ_min > S), and is not without it."""
    model = small_model(0)
    atoms = Atoms("OHH", positions=[[0, 0, 0], [separation, 0, 0], [0, 0.3, 0.2]])
    coulomb = coulomb_matrix(model, atoms)
    k = model.num_coefficients
    self_block = torch.tensor([self_coulomb_hardness(model.electrostatics, 1)[0]] + [self_coulomb_hardness(model.electrostatics, 1)[1]] * 3)
    full = coulomb + torch.diag(self_block.repeat(len(atoms))).to(coulomb.dtype)
    eigenvalues = torch.linalg.eigvalsh(0.5 * (full + full.T))
    assert float(eigenvalues.min()) > -1e-6 * float(eigenvalues.max())  # a real density: J_full ⪰ 0 (to rounding)
    hardness = torch.tensor([model.minimum_hardness[0]] + [model.minimum_hardness[1]] * 3, dtype=torch.float64)
    floor = coulomb + torch.diag(hardness.repeat(len(atoms)))
    assert float(torch.linalg.eigvalsh(0.5 * (floor + floor.T)).min()) > 0.0
    weak = coulomb + torch.diag(0.5 * self_block.repeat(len(atoms))).to(coulomb.dtype)
    assert float(torch.linalg.eigvalsh(0.5 * (weak + weak.T)).min()) < 0.0  # too soft an atom: no bound


def test_learnt_radial_functions_are_flat_inside_the_core():
    r = torch.linspace(0.05, 0.4, 8, dtype=torch.float64)
    clamped = core_clamped(r, 0.6)
    assert float((clamped - 0.6).abs().max()) < 1e-3
    far = torch.tensor([0.97, 1.5, 3.0], dtype=torch.float64)
    assert float((core_clamped(far, 0.6) - far).abs().max()) < 5e-5
    assert torch.equal(core_clamped(r, 0.0), r)


def proton_between_oxygens() -> Atoms:
    return Atoms("OHHHOH", positions=[
        [0, 0, 0], [-0.3, 0.9, 0], [1.2, 0.05, 0.0], [2.4, 0.0, 0.1], [2.4, 0.0, 0.0], [2.7, 0.9, 0.1],
    ])


def ion_pair_at_contact() -> Atoms:
    """H₃O⁺ and OH⁻ with O–O 2.3 Å, a hydronium H pointing at the hydroxide O."""
    hydronium = [[0, 0, 0], [0.98, 0, 0], [-0.33, 0.92, 0], [-0.33, -0.46, 0.8]]
    hydroxide = [[2.3, 0.0, 0.0], [2.6, 0.0, 0.93]]
    return Atoms("OHHHOH", positions=hydronium + hydroxide)


def squeezed_pair(separation: float) -> Atoms:
    """Two waters with an intermolecular O···H of ``separation`` Å."""
    atoms = water_dimer()
    oxygen, hydrogen = 0, 4
    shift = atoms.positions[oxygen] - atoms.positions[hydrogen]
    shift *= 1.0 - separation / np.linalg.norm(shift)
    atoms.positions[3:] += shift
    return atoms


ADVERSARIAL = {
    "proton between oxygens": proton_between_oxygens,
    "H3O+/OH- at contact": ion_pair_at_contact,
    "O-H at 0.5 A": lambda: squeezed_pair(0.5),
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
@pytest.mark.parametrize("seed", SEEDS)
def test_adversarial_geometries_converge_with_bounded_charges(name, seed):
    atoms = ADVERSARIAL[name]()
    atoms.calc = FixedPointCalculator(small_model(seed), max_scf_steps=100)
    energy = atoms.get_potential_energy()
    multipoles = atoms.calc.results["atomic_multipoles"]
    assert np.isfinite(energy)
    assert np.abs(multipoles[:, 0]).max() < 1.5  # e
    assert np.linalg.norm(multipoles[:, 1:4], axis=1).max() < 1.5  # e·Å
    assert atoms.calc.results["scf_steps"] < 40


@pytest.mark.parametrize("seed", SEEDS)
def test_a_contact_pushed_closer_costs_energy(seed):
    model = small_model(seed)
    energies = []
    for separation in (0.7, 0.5, 0.35):
        atoms = squeezed_pair(separation)
        atoms.calc = FixedPointCalculator(model)
        energies.append(atoms.get_potential_energy())
    assert np.all(np.diff(energies) > 0.5), energies


def test_local_multipoles_are_bounded_whatever_the_network_returns():
    from fpscf.nn.bounds import LocalMultipoleBound

    bound = LocalMultipoleBound(4.0)
    raw = 30.0 * torch.randn(500, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = bound(raw)
    assert float(out[:, 0].abs().max()) <= 4.0
    assert float(torch.linalg.norm(out[:, 1:4], dim=1).max()) <= 4.0 + 1e-12
    small = 0.05 * raw / 30.0  # ordinary values pass through, to |x|³/(3B²)
    norms = torch.cat([small[:, :1].abs(), torch.linalg.norm(small[:, 1:4], dim=1, keepdim=True).expand(-1, 3)], dim=1)
    assert bool(((bound(small) - small).abs() <= small.abs() * norms**2 / (3 * 4.0**2) * 1.01 + 1e-15).all())
    rotation = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))[0]
    rotated = torch.cat([raw[:, :1], raw[:, 1:4] @ rotation.T], dim=1)
    expected = torch.cat([out[:, :1], out[:, 1:4] @ rotation.T], dim=1)
    assert float((bound(rotated) - expected).abs().max()) < 1e-12  # equivariant: each l block keeps its direction


@pytest.mark.parametrize("seed", SEEDS)
def test_a_squeezed_molecule_in_a_crowd_keeps_bounded_local_charges(seed):
    """An oxygen with both hydrogens at 0.6 Å and two more at 1.65 Å (the geometry where a trained
    model without the bound returned −4.15 e): with local_multipole_bound the local charges and
    dipoles stay within bound × the element's density scale."""
    from fpscf.data.graph import atoms_to_graph

    model = small_model(seed, atom_density_scaling={1: 0.16, 8: 0.32})
    angle = np.radians(104.5)
    atoms = Atoms("OHHHH", positions=[[0, 0, 0], [0.6, 0, 0], [0.6 * np.cos(angle), 0.6 * np.sin(angle), 0],
                                      [-1.1, -1.2, 0.3], [0.2, -0.9, -1.4]])
    with torch.no_grad():  # make the local-charge network extreme
        for parameter in model.local_charges.parameters():
            parameter.mul_(40.0)
    out = model(atoms_to_graph(atoms, r_max=4.0, species=model.atomic_numbers))
    local = out["local_multipoles"].detach()
    scale = torch.tensor([0.32, 0.16, 0.16, 0.16, 0.16], dtype=torch.float64)
    assert bool((local[:, 0].abs() <= 4.0 * scale + 1e-12).all())
    assert bool((torch.linalg.norm(local[:, 1:4], dim=1) <= 4.0 * scale + 1e-12).all())
