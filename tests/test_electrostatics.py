"""Electrostatics of Gaussian multipoles checked against physics: limits, invariances, derivatives."""

from __future__ import annotations

import math

import pytest
import torch
from e3nn import o3

from fpscf.electrostatics.applied_field import applied_field_features, total_dipole
from fpscf.electrostatics.gaussian_multipoles import (
    ElectrostaticsConfig,
    GaussianMultipoleElectrostatics,
)
from fpscf.electrostatics.multipoles import multipole_irreps
from fpscf.rotations import irreps_rotation_matrix
from fpscf.units import COULOMB_CONSTANT

DTYPE = torch.float64
NACL_MADELUNG = 1.747564594633182


def make(l_max=2, feature_max_l=2, sigma=1.0, widths=(0.8, 1.6), **kw) -> GaussianMultipoleElectrostatics:
    return GaussianMultipoleElectrostatics(
        ElectrostaticsConfig(
            multipole_max_l=l_max,
            smearing_width=sigma,
            receiver_widths=widths,
            feature_max_l=feature_max_l,
            kspace_cutoff_factor=kw.pop("kspace_cutoff_factor", 8.0),
            **kw,
        )
    )


def evaluate(es, positions, multipoles, cell=None, mode="open"):
    """Return (energy, potential projections) of one structure."""
    n = positions.shape[0]
    batch = torch.zeros(n, dtype=torch.long)
    cell = torch.zeros(1, 3, 3, dtype=DTYPE) if cell is None else cell.reshape(1, 3, 3)
    geometry = es.prepare(positions, cell, batch, [mode])
    potential = es.potential(geometry, multipoles)
    return es.hartree_energy(multipoles, potential, batch, 1)[0], potential


def random_system(n, l_max, seed, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    positions = torch.randn(n, 3, generator=g, dtype=DTYPE) * scale
    multipoles = 0.3 * torch.randn(n, (l_max + 1) ** 2, generator=g, dtype=DTYPE)
    multipoles[:, 0] -= multipoles[:, 0].mean()
    return positions, multipoles


def test_nacl_madelung_constant_in_point_charge_limit():
    from ase.build import bulk

    a = 5.64
    atoms = bulk("NaCl", "rocksalt", a=a, cubic=True)
    es = make(l_max=0, feature_max_l=0, sigma=0.15, widths=(0.15,))
    charges = torch.tensor([1.0 if z == 11 else -1.0 for z in atoms.numbers], dtype=DTYPE)[:, None]
    energy, _ = evaluate(
        es, torch.tensor(atoms.positions), charges, torch.tensor(atoms.cell.array), "periodic"
    )
    madelung = -float(energy) / (len(atoms) / 2) * (a / 2) / COULOMB_CONSTANT
    assert madelung == pytest.approx(NACL_MADELUNG, abs=1e-9)


@pytest.mark.parametrize("l_max", [0, 1, 2])
def test_periodic_box_approaches_open_boundary_with_dipole_correction(l_max):
    """Tin-foil Ewald = vacuum sum − 2πk_e D²/(3Ω) + O(L⁻⁵) for an isolated molecule in a box."""
    es = make(l_max=l_max, sigma=0.8, widths=(0.6, 1.5))
    positions, multipoles = random_system(5, l_max, seed=l_max)
    e_open, _ = evaluate(es, positions, multipoles)
    dipole = total_dipole(positions, multipoles, torch.zeros(5, dtype=torch.long), 1)[0]
    residuals = []
    for length in (16.0, 24.0):
        cell = torch.eye(3, dtype=DTYPE) * length
        e_box, _ = evaluate(es, positions + length / 2, multipoles, cell, "periodic")
        correction = -2 * math.pi * COULOMB_CONSTANT * float(dipole @ dipole) / (3 * length**3)
        residuals.append(abs(float(e_box - e_open) - correction))
        assert abs(float(e_box - e_open)) > 5 * residuals[-1]  # the correction is the leading term
    assert residuals[1] < residuals[0] * (16 / 24) ** 4  # the rest decays at least as L^-4


def cubic_group() -> torch.Tensor:
    """The 48 signed permutation matrices (O_h)."""
    import itertools

    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = torch.zeros(3, 3, dtype=DTYPE)
            for row, (col, sign) in enumerate(zip(perm, signs)):
                m[row, col] = sign
            mats.append(m)
    return torch.stack(mats)


@pytest.mark.parametrize("l_max", [0, 1, 2])
def test_reciprocal_sum_equals_direct_lattice_sum(l_max):
    """Cubic cell whose content has O_h symmetry: no net charge, dipole or quadrupole, so the real-space
    sum over image cells converges absolutely and must equal the reciprocal-space (Ewald) result."""
    from fpscf.electrostatics.multipoles import split_multipoles
    from fpscf.electrostatics.open_boundary import pair_potential_derivatives, prepare_pairs

    g = torch.Generator().manual_seed(7)
    length = 9.0
    seeds = torch.randn(2, 3, generator=g, dtype=DTYPE) * 0.3 + torch.tensor([1.0, 0.6, 0.3])
    coeffs = 0.2 * torch.randn(2, (l_max + 1) ** 2, generator=g, dtype=DTYPE)
    coeffs[:, 0] = torch.tensor([0.5, -0.5])
    irreps = multipole_irreps(l_max)
    group = cubic_group()
    positions = torch.cat([seeds @ m.T for m in group]) + length / 2
    multipoles = torch.cat([coeffs @ irreps_rotation_matrix(irreps, m).T for m in group])
    cell = torch.eye(3, dtype=DTYPE) * length
    es = make(l_max=l_max, feature_max_l=l_max, sigma=0.7, widths=(0.7,))
    e_periodic, _ = evaluate(es, positions, multipoles, cell, "periodic")

    n = positions.shape[0]
    reach = 2
    rng = torch.arange(-reach, reach + 1, dtype=DTYPE)
    shifts = torch.cartesian_prod(rng, rng, rng) @ cell
    all_positions = (positions[None] + shifts[:, None]).reshape(-1, 3)
    all_multipoles = multipoles.repeat(shifts.shape[0], 1)
    home = int(((shifts.norm(dim=1) == 0).nonzero()).item()) * n
    receivers = (torch.arange(n) + home).repeat_interleave(all_positions.shape[0])
    sources = torch.arange(all_positions.shape[0]).repeat(n)
    keep = receivers != sources
    pairs = torch.stack([receivers[keep], sources[keep]])
    geometry = prepare_pairs(all_positions, pairs, es.interaction_widths[:1], es.radial_order, COULOMB_CONSTANT)
    q, d, theta = split_multipoles(all_multipoles, es.quadrupole_matrices)
    v0, v1, v2 = pair_potential_derivatives(geometry, q, d, theta, l_max, all_positions.shape[0])
    potential = es._to_features(v0, v1, v2)[home : home + n]
    e_direct = 0.5 * (multipoles * potential[:, 0]).sum()
    assert float(e_periodic) == pytest.approx(float(e_direct), abs=1e-7, rel=1e-8)


@pytest.mark.parametrize("mode", ["open", "periodic"])
def test_energy_and_features_invariant_under_translation_and_permutation(mode):
    es = make()
    positions, multipoles = random_system(6, 2, seed=3)
    cell = torch.tensor([[7.0, 0.2, 0.0], [0.0, 6.5, 0.3], [0.1, 0.0, 7.5]], dtype=DTYPE)
    kw = dict(cell=cell if mode == "periodic" else None, mode=mode)
    energy, features = evaluate(es, positions, multipoles, **kw)
    shift = torch.tensor([0.37, -1.2, 2.5], dtype=DTYPE)
    energy_t, features_t = evaluate(es, positions + shift, multipoles, **kw)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(1))
    energy_p, features_p = evaluate(es, positions[perm], multipoles[perm], **kw)
    assert float(energy_t) == pytest.approx(float(energy), abs=1e-11)
    assert float(energy_p) == pytest.approx(float(energy), abs=1e-11)
    torch.testing.assert_close(features_p, features[perm], rtol=0, atol=1e-10)
    if mode == "open":
        torch.testing.assert_close(features_t, features, rtol=0, atol=1e-10)
    else:  # periodic: the potential's zero is fixed by the mean, so it is also translation-invariant
        torch.testing.assert_close(features_t, features, rtol=0, atol=1e-9)


@pytest.mark.parametrize("mode", ["open", "periodic"])
def test_field_features_rotate_as_their_irreps(mode):
    es = make()
    positions, multipoles = random_system(6, 2, seed=4)
    cell = torch.tensor([[7.0, 0.2, 0.0], [0.0, 6.5, 0.3], [0.1, 0.0, 7.5]], dtype=DTYPE)
    torch.manual_seed(5)
    rotation = o3.rand_matrix(dtype=DTYPE)
    irreps = multipole_irreps(2)
    D = irreps_rotation_matrix(irreps, rotation)
    kw = dict(cell=cell if mode == "periodic" else None, mode=mode)
    energy, features = evaluate(es, positions, multipoles, **kw)
    kw_rot = dict(cell=cell @ rotation.T if mode == "periodic" else None, mode=mode)
    energy_r, features_r = evaluate(es, positions @ rotation.T, multipoles @ D.T, **kw_rot)
    assert float(energy_r) == pytest.approx(float(energy), abs=1e-10)
    torch.testing.assert_close(features_r, features @ D.T, rtol=0, atol=1e-9)


@pytest.mark.parametrize("mode", ["open", "periodic"])
def test_energy_channel_is_the_gradient_of_the_energy_with_self_interaction(mode):
    """∂E_H/∂p_i = f_i,0 when each Gaussian's self-energy is kept (the energy is ½ pᵀ J p)."""
    es = make(include_self_interaction=True)
    positions, multipoles = random_system(5, 2, seed=6)
    multipoles.requires_grad_(True)
    cell = torch.eye(3, dtype=DTYPE) * 8.0
    energy, features = evaluate(es, positions, multipoles, cell if mode == "periodic" else None, mode)
    (grad,) = torch.autograd.grad(energy, multipoles)
    torch.testing.assert_close(grad, features[:, 0, :9], rtol=1e-10, atol=1e-12)


def test_feature_gradient_and_hessian_channels_are_derivatives_of_the_potential():
    """f_1 = ∇f_0 and f_2 = ½ M:∇∇f_0 at a receiver that carries no density itself."""
    es = make(feature_max_l=2)
    positions, multipoles = random_system(5, 2, seed=8)
    multipoles[0] = 0.0
    h = 1e-4

    def f_at(r0):
        pos = positions.clone()
        pos[0] = r0
        return evaluate(es, pos, multipoles)[1][0]  # (W, 9)

    r0 = positions[0].clone()
    grad_fd = torch.stack(
        [(f_at(r0 + h * e)[:, 0] - f_at(r0 - h * e)[:, 0]) / (2 * h) for e in torch.eye(3, dtype=DTYPE)],
        dim=-1,
    )
    torch.testing.assert_close(f_at(r0)[:, 1:4], grad_fd, rtol=1e-6, atol=1e-8)
    hess_fd = torch.stack(
        [(f_at(r0 + h * e)[:, 1:4] - f_at(r0 - h * e)[:, 1:4]) / (2 * h) for e in torch.eye(3, dtype=DTYPE)],
        dim=-1,
    )
    expected = 0.5 * torch.einsum("wab,mab->wm", hess_fd, es.quadrupole_matrices)
    torch.testing.assert_close(f_at(r0)[:, 4:9], expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("mode", ["open", "periodic", "slab"])
def test_position_gradients_match_finite_differences(mode):
    es = make(include_field_self_interaction=True)
    positions, multipoles = random_system(5, 2, seed=9)
    cell = torch.tensor([[7.0, 0.2, 0.0], [0.0, 6.5, 0.0], [0.0, 0.0, 25.0]], dtype=DTYPE)
    if mode == "slab":
        positions[:, 2] += 12.0
    weights = torch.randn(5, 3, 9, generator=torch.Generator().manual_seed(2), dtype=DTYPE)

    def scalar(pos):
        energy, features = evaluate(es, pos, multipoles, None if mode == "open" else cell, mode)
        return energy + (weights * features).sum()

    pos = positions.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(scalar(pos), pos)
    h = 1e-5
    fd = torch.zeros_like(positions)
    for i in range(5):
        for a in range(3):
            plus, minus = positions.clone(), positions.clone()
            plus[i, a] += h
            minus[i, a] -= h
            fd[i, a] = (scalar(plus) - scalar(minus)) / (2 * h)
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-7)


def test_second_derivatives_are_consistent():
    """Double backward through the open and periodic sums (gradgradcheck on a tiny system)."""
    es_open = make(l_max=2, feature_max_l=2)
    es_per = make(l_max=2, feature_max_l=1, sigma=1.5, widths=(1.5,), kspace_cutoff_factor=5.0)
    positions, multipoles = random_system(3, 2, seed=10)
    cell = torch.eye(3, dtype=DTYPE) * 6.0

    for es, mode, c in ((es_open, "open", None), (es_per, "periodic", cell)):
        def fn(pos, mp):
            energy, features = evaluate(es, pos, mp, c, mode)
            return energy + features.sum()

        assert torch.autograd.gradgradcheck(
            fn, (positions.clone().requires_grad_(True), multipoles.clone().requires_grad_(True)), atol=1e-5, rtol=1e-4
        )


@pytest.mark.parametrize("mode", ["periodic", "slab"])
def test_stress_from_cell_derivative_matches_strained_cells(mode):
    es = make()
    positions, multipoles = random_system(5, 2, seed=11)
    cell = torch.tensor([[7.0, 0.4, 0.0], [0.3, 6.5, 0.0], [0.0, 0.0, 8.0 if mode == "periodic" else 24.0]], dtype=DTYPE)
    positions = positions + 3.0

    def energy_at(strain):
        deform = torch.eye(3, dtype=DTYPE) + strain
        return evaluate(es, positions @ deform, multipoles, cell @ deform, mode)[0]

    strain = torch.zeros(3, 3, dtype=DTYPE, requires_grad=True)
    (grad,) = torch.autograd.grad(energy_at(strain), strain)
    h = 1e-6
    fd = torch.zeros(3, 3, dtype=DTYPE)
    for a in range(3):
        for b in range(3):
            e = torch.zeros(3, 3, dtype=DTYPE)
            e[a, b] = h
            fd[a, b] = (energy_at(e) - energy_at(-e)) / (2 * h)
    torch.testing.assert_close(grad, fd, rtol=1e-5, atol=1e-7)


def test_slab_energy_does_not_depend_on_vacuum_size():
    es = make(l_max=1, feature_max_l=1, sigma=1.0, widths=(1.0,))
    positions, multipoles = random_system(6, 1, seed=12)
    multipoles[0, 0] += 0.4  # charged slab: Ballenegger terms must handle it
    energies = []
    for vacuum in (30.0, 45.0):
        cell = torch.tensor([[6.0, 0.0, 0.0], [1.0, 6.0, 0.0], [0.0, 0.0, vacuum]], dtype=DTYPE)
        shifted = positions + torch.tensor([0.0, 0.0, vacuum / 2])
        energies.append(float(evaluate(es, shifted, multipoles, cell, "slab")[0]))
        periodic = float(evaluate(es, shifted, multipoles, cell, "periodic")[0])
    assert abs(energies[0] - energies[1]) < 2e-3 * abs(energies[0] - periodic) + 1e-4


def test_applied_field_energy_is_minus_field_dot_dipole():
    positions, multipoles = random_system(4, 2, seed=13)
    field = torch.tensor([0.03, -0.05, 0.02], dtype=DTYPE)
    features = applied_field_features(positions, field.expand(4, 3), receiver_max_l=2)
    energy = (multipoles * features[:, 0]).sum()
    dipole = total_dipole(positions, multipoles, torch.zeros(4, dtype=torch.long), 1)[0]
    assert float(energy) == pytest.approx(float(-field @ dipole), abs=1e-14)


@pytest.mark.parametrize("l_max,feature_max_l", [(0, 1), (1, 2), (2, 2)])
def test_nvalchemi_backend_matches_pure_torch(l_max, feature_max_l):
    positions, multipoles = random_system(6, l_max, seed=14, scale=2.0)
    cell = torch.tensor([[8.0, 0.3, 0.0], [0.0, 7.5, 0.4], [0.2, 0.0, 8.5]], dtype=DTYPE)
    results = []
    for backend in ("torch", "nvalchemi"):
        es = make(l_max=l_max, feature_max_l=feature_max_l, backend=backend)
        pos = positions.clone().requires_grad_(True)
        energy, features = evaluate(es, pos, multipoles, cell, "periodic")
        (force,) = torch.autograd.grad(energy + features.sum(), pos)
        results.append((energy, features, force))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="multipole l_max must be 0, 1 or 2"):
        make(l_max=3)
    with pytest.raises(ValueError, match="field_feature_widths"):
        make(widths=())
    with pytest.raises(ValueError, match="backend must be one of"):
        make(backend="fft")


@pytest.mark.parametrize("l_max", [0, 1, 2])
@pytest.mark.parametrize("mode", ["periodic", "slab"])
def test_ewald_split_equals_direct_reciprocal_sum(l_max, mode):
    """Real-space (Φ_s − Φ_√(s²+a²)) pairs + damped reciprocal sum = the direct k-space sum."""
    positions, multipoles = random_system(12, l_max, seed=5, scale=2.5)
    cell = torch.tensor([[8.0, 0.3, 0.0], [0.0, 7.5, 0.4], [0.2, 0.0, 8.5]], dtype=DTYPE)
    if mode == "slab":
        cell[2] = torch.tensor([0.0, 0.0, 30.0])
    energy, features = evaluate(make(l_max=l_max), positions, multipoles, cell, mode)
    for split in (1.0, 2.5):
        energy_s, features_s = evaluate(make(l_max=l_max, ewald_split_width=split), positions, multipoles, cell, mode)
        assert float(energy_s) == pytest.approx(float(energy), abs=1e-11)
        torch.testing.assert_close(features_s, features, rtol=0, atol=1e-10)


def test_ewald_split_stress_matches_strained_cells():
    es = make(ewald_split_width=1.5)
    positions, multipoles = random_system(6, 2, seed=15)
    cell = torch.tensor([[7.0, 0.4, 0.0], [0.3, 6.5, 0.0], [0.0, 0.2, 8.0]], dtype=DTYPE)

    def energy_at(strain):
        deform = torch.eye(3, dtype=DTYPE) + strain
        return evaluate(es, positions @ deform, multipoles, cell @ deform, "periodic")[0]

    strain = torch.zeros(3, 3, dtype=DTYPE, requires_grad=True)
    (grad,) = torch.autograd.grad(energy_at(strain), strain)
    h = 1e-6
    for a, b in [(0, 0), (0, 1), (2, 1)]:
        e = torch.zeros(3, 3, dtype=DTYPE)
        e[a, b] = h
        fd = (energy_at(e) - energy_at(-e)) / (2 * h)
        assert float(grad[a, b]) == pytest.approx(float(fd), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("l_max", [0, 1])
@pytest.mark.parametrize("mode", ["periodic", "slab"])
def test_particle_mesh_equals_direct_reciprocal_sum(l_max, mode):
    """The smooth particle mesh (the default of periodic models, O(N log N)) reproduces the direct
    k-sum (the reference) for charges and dipoles, energy, features and forces."""
    positions, multipoles = random_system(12, l_max, seed=7, scale=2.5)
    cell = torch.tensor([[8.0, 0.3, 0.0], [0.0, 7.5, 0.4], [0.2, 0.0, 8.5]], dtype=DTYPE)
    if mode == "slab":
        cell[2] = torch.tensor([0.0, 0.0, 30.0])
    results = []
    for method in ("ewald", "pme"):
        moving = positions.clone().requires_grad_(True)
        es = make(l_max=l_max, feature_max_l=1, kspace_method=method)
        assert es.config.periodic_method == method
        energy, features = evaluate(es, moving, multipoles, cell, mode)
        (gradient,) = torch.autograd.grad(energy, moving)
        results.append((float(energy.detach()), features.detach(), gradient))
    (e_direct, f_direct, g_direct), (e_mesh, f_mesh, g_mesh) = results
    assert e_mesh == pytest.approx(e_direct, rel=1e-7, abs=1e-9)
    torch.testing.assert_close(f_mesh, f_direct, rtol=0, atol=1e-6)  # V, V/Å
    torch.testing.assert_close(g_mesh, g_direct, rtol=0, atol=1e-6)  # eV/Å


def test_auto_periodic_method_is_the_mesh_where_it_applies():
    assert make(l_max=1, feature_max_l=1, kspace_method="auto").config.periodic_method == "pme"
    assert make(l_max=2, feature_max_l=1, kspace_method="auto").config.periodic_method == "ewald"
    assert make(l_max=1, feature_max_l=1, kspace_method="auto", ewald_split_width=2.0).config.periodic_method == "ewald"
    with pytest.raises(ValueError, match="handles multipoles and field features up to l = 1"):
        make(l_max=2, feature_max_l=2, kspace_method="pme")
