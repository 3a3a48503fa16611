"""Symmetry, smoothness, differentiability and export properties of the equivariant encoder (fpscf.nn)."""

import math

import pytest
import torch
from e3nn import o3

from fpscf.nn import (
    MLP,
    EncoderConfig,
    EquivariantEncoder,
    InteractionBlock,
    IrrepsReadout,
    RadialEmbedding,
    ScalarReadout,
    SphericalConvolution,
    default_dtype,
)

DTYPE = torch.float64
#: Equivariance tolerance in float64 (features are O(1)).
TOL = 1e-10
R_MAX = 4.0


@pytest.fixture(autouse=True)
def float64_single_thread():
    """Float64 default dtype (e3nn builds Clebsch-Gordan constants and Wigner D matrices in it) and one
    intra-op thread (these systems are tiny; avoids thread barriers stalling on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with default_dtype(DTYPE):
        yield
    torch.set_num_threads(threads)


def brute_force_edges(positions: torch.Tensor, r_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered pairs i != j closer than r_max (open boundaries).

    Returns ``edge_index (2, E)`` (sender, receiver) and ``edge_vectors = r_receiver - r_sender``.
    """
    n = positions.shape[0]
    sender, receiver = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    vectors = positions[receiver] - positions[sender]
    mask = (sender != receiver) & (vectors.norm(dim=-1) < r_max)
    edge_index = torch.stack([sender[mask], receiver[mask]])
    return edge_index, positions[edge_index[1]] - positions[edge_index[0]]


def water() -> tuple[torch.Tensor, torch.Tensor]:
    """Species index (O=0, H=1) and positions in Å of one water molecule."""
    positions = torch.tensor(
        [[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]], dtype=DTYPE
    )
    return torch.tensor([0, 1, 1]), positions


def random_cluster(n: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n atoms of 3 species in a 6 Å box, no pair closer than 0.9 Å."""
    generator = torch.Generator().manual_seed(seed)
    positions = torch.zeros(0, 3, dtype=DTYPE)
    while positions.shape[0] < n:
        trial = torch.rand(1, 3, generator=generator, dtype=DTYPE) * 6.0
        if positions.shape[0] == 0 or torch.cdist(trial, positions).min() > 0.9:
            positions = torch.cat([positions, trial])
    species = torch.randint(0, 3, (n,), generator=generator)
    return species, positions


def build_encoder(seed: int = 0, **overrides) -> EquivariantEncoder:
    settings = dict(num_species=3, r_max=R_MAX, num_channels=8, max_L=2, sh_max_l=3, correlation=3)
    settings.update(overrides)
    torch.manual_seed(seed)
    with default_dtype(DTYPE):  # Clebsch-Gordan constants in float64
        return EquivariantEncoder(EncoderConfig(**settings))


@pytest.fixture(scope="module")
def encoder() -> EquivariantEncoder:
    return build_encoder()  # built in float64 whatever the default dtype


SYSTEMS = {"water": water, "cluster": random_cluster}


def run(encoder, species, positions):
    edge_index, vectors = brute_force_edges(positions, encoder.r_max)
    return encoder(species, vectors, edge_index)


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_features_rotate_with_wigner_d_of_rotation(encoder, system):
    species, positions = SYSTEMS[system]()
    reference = run(encoder, species, positions)
    torch.manual_seed(1)
    for _ in range(3):
        rotation = o3.rand_matrix(dtype=DTYPE)
        rotated = run(encoder, species, positions @ rotation.T)
        for irreps, feats, feats_rot in zip(encoder.irreps_out, reference, rotated):
            expected = feats @ irreps.D_from_matrix(rotation).T
            assert (feats_rot - expected).abs().max() < TOL
            assert feats.abs().max() > 1e-3  # not trivially zero


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_scalar_features_invariant_under_rotation(encoder, system):
    species, positions = SYSTEMS[system]()
    rotation = o3.rand_matrix(dtype=DTYPE)
    for irreps, feats, feats_rot in zip(
        encoder.irreps_out, run(encoder, species, positions), run(encoder, species, positions @ rotation.T)
    ):
        scalars = torch.cat([feats[:, s] for s, (_, ir) in zip(irreps.slices(), irreps) if ir == o3.Irrep("0e")], 1)
        scalars_rot = torch.cat(
            [feats_rot[:, s] for s, (_, ir) in zip(irreps.slices(), irreps) if ir == o3.Irrep("0e")], 1
        )
        assert (scalars - scalars_rot).abs().max() < TOL


def test_odd_parity_features_flip_under_inversion_and_improper_rotations(encoder):
    species, positions = random_cluster()
    reference = run(encoder, species, positions)
    inversion = -torch.eye(3, dtype=DTYPE)
    improper = -o3.rand_matrix(dtype=DTYPE)
    for matrix in (inversion, improper):
        assert torch.det(matrix) < 0
        transformed = run(encoder, species, positions @ matrix.T)
        for irreps, feats, feats_t in zip(encoder.irreps_out, reference, transformed):
            expected = feats @ irreps.D_from_matrix(matrix).T
            assert (feats_t - expected).abs().max() < TOL
    # explicitly: 1o channels change sign under inversion, 0e and 2e do not
    inverted = run(encoder, species, -positions)
    irreps = encoder.irreps_out[-1]
    for s, (_, ir) in zip(irreps.slices(), irreps):
        assert torch.allclose(inverted[-1][:, s], ir.p * reference[-1][:, s], atol=TOL, rtol=0.0)


def test_permuting_atoms_permutes_features(encoder):
    species, positions = random_cluster()
    permutation = torch.randperm(len(species), generator=torch.Generator().manual_seed(3))
    reference = run(encoder, species, positions)
    permuted = run(encoder, species[permutation], positions[permutation])
    for feats, feats_p in zip(reference, permuted):
        assert (feats[permutation] - feats_p).abs().max() < TOL


def test_edge_order_does_not_matter(encoder):
    species, positions = random_cluster()
    edge_index, vectors = brute_force_edges(positions, encoder.r_max)
    order = torch.randperm(edge_index.shape[1], generator=torch.Generator().manual_seed(4))
    for a, b in zip(encoder(species, vectors, edge_index), encoder(species, vectors[order], edge_index[:, order])):
        assert (a - b).abs().max() < TOL


def test_edges_beyond_cutoff_contribute_exactly_zero(encoder):
    species, positions = random_cluster()
    n = len(species)
    sender, receiver = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    mask = sender != receiver
    all_pairs = torch.stack([sender[mask], receiver[mask]])
    all_vectors = positions[all_pairs[1]] - positions[all_pairs[0]]
    assert (all_vectors.norm(dim=-1) >= R_MAX).any()
    for a, b in zip(run(encoder, species, positions), encoder(species, all_vectors, all_pairs)):
        assert torch.equal(a, b)


def two_clusters_at_distance(distance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A water molecule and an atom placed at ``distance`` Å from the O along x."""
    species, positions = water()
    extra = torch.tensor([[distance, 0.0, 0.1173]], dtype=DTYPE)
    return torch.cat([species, torch.tensor([2])]), torch.cat([positions, extra])


def test_edge_just_inside_cutoff_contributes_nothing_and_has_zero_slope(encoder):
    delta = 1e-3  # Å inside the cutoff
    species, positions = two_clusters_at_distance(R_MAX - delta)
    edge_index, vectors = brute_force_edges(positions, R_MAX)
    vectors = vectors.clone().requires_grad_(True)
    outputs = encoder(species, vectors, edge_index)
    # the only edges of length ~R_MAX are O<->extra; drop them and compare
    long_edges = vectors.detach().norm(dim=-1) > R_MAX - 2 * delta
    assert long_edges.sum() == 2
    without = encoder(species, vectors.detach()[~long_edges], edge_index[:, ~long_edges])
    for a, b in zip(outputs, without):
        assert (a.detach() - b).abs().max() < 1e-9
    energy = sum(o.square().sum() for o in outputs)
    (gradient,) = torch.autograd.grad(energy, vectors)
    assert gradient[long_edges].abs().max() < 1e-7
    assert gradient[~long_edges].abs().max() > 1e-3


def test_energy_like_scalar_continuous_when_atom_crosses_cutoff(encoder):
    torch.manual_seed(5)
    with default_dtype(DTYPE):
        readout = ScalarReadout(encoder.irreps_out[-1], hidden=16)

    def energy(distance: float) -> torch.Tensor:
        species, positions = two_clusters_at_distance(distance)
        return readout(run(encoder, species, positions)[-1]).sum()

    for delta in (1e-3, 1e-4):
        assert abs(energy(R_MAX - delta) - energy(R_MAX + delta)) < 1e-8
    assert abs(energy(R_MAX - 0.5) - energy(R_MAX + 0.5)) > 1e-6  # the atom does interact inside


def test_radial_embedding_and_slope_vanish_at_cutoff():
    with default_dtype(DTYPE):
        radial = RadialEmbedding(R_MAX, num_basis=8, polynomial_cutoff_p=5)
    r = torch.tensor([[R_MAX - 1e-4], [R_MAX], [R_MAX + 0.3]], dtype=DTYPE, requires_grad=True)
    values = radial(r)
    assert values[0].abs().max() < 1e-12 and torch.equal(values[1:], torch.zeros_like(values[1:]))
    (slope,) = torch.autograd.grad(values.sum(), r, create_graph=True)
    assert slope.abs().max() < 1e-8
    (curvature,) = torch.autograd.grad(slope.sum(), r)
    assert curvature.abs().max() < 1e-4


def test_edge_spherical_harmonics_l1_is_sqrt3_times_unit_vector_xyz(encoder):
    vectors = torch.tensor([[1.0, 2.0, -0.5], [0.0, 0.0, 3.0]], dtype=DTYPE)
    edge_sh, edge_radial = encoder.edge_embedding(vectors)
    unit = vectors / vectors.norm(dim=-1, keepdim=True)
    assert torch.allclose(edge_sh[:, 1:4], math.sqrt(3.0) * unit, atol=1e-14)
    assert edge_sh.shape == (2, encoder.sh_irreps.dim) and edge_radial.shape == (2, encoder.config.num_bessel)


def test_torchscript_encoder_gives_eager_outputs(encoder):
    scripted = torch.jit.script(encoder)
    species, positions = random_cluster()
    edge_index, vectors = brute_force_edges(positions, R_MAX)
    for a, b in zip(encoder(species, vectors, edge_index), scripted(species, vectors, edge_index)):
        assert torch.allclose(a, b, atol=1e-12, rtol=0.0)
    sh, radial = encoder.edge_embedding(vectors)
    sh_s, radial_s = scripted.edge_embedding(vectors)
    assert torch.equal(sh, sh_s) and torch.equal(radial, radial_s)
    # and forces through the scripted module agree with eager ones
    v1 = vectors.clone().requires_grad_(True)
    v2 = vectors.clone().requires_grad_(True)
    (g1,) = torch.autograd.grad(encoder(species, v1, edge_index)[-1].sum(), v1)
    (g2,) = torch.autograd.grad(scripted(species, v2, edge_index)[-1].sum(), v2)
    assert torch.allclose(g1, g2, atol=1e-12, rtol=0.0)


def test_scripted_encoder_round_trips_through_save_and_load(encoder, tmp_path):
    path = tmp_path / "encoder.pt"
    torch.jit.save(torch.jit.script(encoder), str(path))
    loaded = torch.jit.load(str(path))
    species, positions = water()
    edge_index, vectors = brute_force_edges(positions, R_MAX)
    for a, b in zip(encoder(species, vectors, edge_index), loaded(species, vectors, edge_index)):
        assert torch.allclose(a, b, atol=1e-12, rtol=0.0)


def test_mixed_second_derivatives_run_through_autograd(encoder):
    species, positions = random_cluster(8, seed=2)
    edge_index, vectors = brute_force_edges(positions, R_MAX)
    vectors = vectors.clone().requires_grad_(True)
    outputs = encoder(species, vectors, edge_index)
    energy = sum(o.square().sum() for o in outputs)
    (gradient,) = torch.autograd.grad(energy, vectors, create_graph=True)
    probe = torch.randn_like(gradient)
    (hessian_vector,) = torch.autograd.grad((gradient * probe).sum(), vectors)
    assert torch.isfinite(hessian_vector).all() and hessian_vector.abs().max() > 0
    # and the Hessian-vector product matches a finite difference of gradients
    eps = 1e-6

    def grad_at(v):
        v = v.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(sum(o.square().sum() for o in encoder(species, v, edge_index)), v)
        return g

    finite_difference = (grad_at(vectors + eps * probe) - grad_at(vectors - eps * probe)) / (2 * eps)
    assert torch.allclose(hessian_vector, finite_difference, atol=1e-6, rtol=1e-6)


def test_gradgradcheck_of_tiny_encoder():
    small = build_encoder(num_channels=2, max_L=1, sh_max_l=2, correlation=2, num_bessel=3, radial_mlp_hidden=4)
    species, positions = water()
    edge_index, vectors = brute_force_edges(positions, R_MAX)
    vectors = vectors.clone().requires_grad_(True)

    def f(v):
        return tuple(small(species, v, edge_index))

    assert torch.autograd.gradcheck(f, (vectors,))
    assert torch.autograd.gradgradcheck(f, (vectors,))


def test_seeded_build_is_reproducible():
    a, b = build_encoder(seed=7), build_encoder(seed=7)
    for (name_a, p_a), (name_b, p_b) in zip(a.state_dict().items(), b.state_dict().items()):
        assert name_a == name_b and torch.equal(p_a, p_b)
    species, positions = random_cluster()
    for x, y in zip(run(a, species, positions), run(b, species, positions)):
        assert torch.equal(x, y)
    c = build_encoder(seed=8)
    assert not torch.equal(run(a, species, positions)[-1], run(c, species, positions)[-1])


def test_float32_follows_input_dtype_and_stays_equivariant():
    torch.manual_seed(0)
    with default_dtype(torch.float32):
        encoder32 = EquivariantEncoder(EncoderConfig(num_species=3, r_max=R_MAX, num_channels=8))
    species, positions = random_cluster()
    positions = positions.float()
    rotation = o3.rand_matrix(dtype=DTYPE)  # D matrices in float64, applied in float32
    assert all(p.dtype == torch.float32 for p in encoder32.parameters())
    reference = run(encoder32, species, positions)
    rotated = run(encoder32, species, positions @ rotation.float().T)
    for irreps, feats, feats_rot in zip(encoder32.irreps_out, reference, rotated):
        assert feats.dtype == torch.float32
        d = irreps.D_from_matrix(rotation).float()
        assert (feats_rot - feats @ d.T).abs().max() < 1e-4


@pytest.mark.parametrize("correlation", [1, 2])
def test_output_shapes_and_irreps_follow_config(correlation):
    config = EncoderConfig(
        num_species=2, r_max=3.0, num_channels=4, max_L=1, num_interactions=3, correlation=correlation
    )
    with default_dtype(DTYPE):
        encoder = EquivariantEncoder(config)
    assert [str(i) for i in encoder.irreps_out] == ["4x0e+4x1o"] * 3
    species, positions = water()
    species = species.clamp(max=1)
    outputs = run(encoder, species, positions)
    assert len(outputs) == 3 and all(o.shape == (3, 16) for o in outputs)
    rotation = -o3.rand_matrix(dtype=DTYPE)
    for irreps, feats, feats_rot in zip(encoder.irreps_out, outputs, run(encoder, species, positions @ rotation.T)):
        assert (feats_rot - feats @ irreps.D_from_matrix(rotation).T).abs().max() < TOL


def test_convolution_equals_e3nn_tensor_product_summed_over_receivers():
    torch.manual_seed(0)
    irreps_in = o3.Irreps("4x0e+4x1o+4x1e+4x2e")
    sh_irreps = o3.Irreps.spherical_harmonics(3)
    targets = [o3.Irrep(ir) for ir in ["0e", "1o", "1e", "2e", "2o", "3o"]]
    with default_dtype(DTYPE):
        conv = SphericalConvolution(irreps_in, sh_irreps, targets)
        tp = o3.TensorProduct(
            irreps_in, sh_irreps, conv.irreps_out, conv.instructions, shared_weights=False, internal_weights=False
        )
    n, e = 5, 17
    x = torch.randn(n, irreps_in.dim, dtype=DTYPE)
    edge_sh = o3.spherical_harmonics(sh_irreps, torch.randn(e, 3, dtype=DTYPE), True, "component")
    edge_index = torch.randint(0, n, (2, e))
    weights = torch.randn(e, conv.weight_numel, dtype=DTYPE)
    ours = conv(x, edge_sh, weights, edge_index)
    e3nn_weights = weights.view(e, conv.mul, conv.num_paths).transpose(1, 2).reshape(e, -1)
    reference = torch.zeros(n, conv.irreps_out.dim, dtype=DTYPE).index_add(
        0, edge_index[1], tp(x[edge_index[0]], edge_sh, e3nn_weights)
    )
    assert (ours - reference).abs().max() < 1e-12


def test_interaction_block_reruns_on_field_modified_features(encoder):
    """A block taking features plus extra (e.g. axial 1e field-embedding) channels is equivariant."""
    config = encoder.config
    irreps_in = encoder.irreps_out[0] + o3.Irreps("3x0e+2x1e")
    torch.manual_seed(2)
    with default_dtype(DTYPE):
        block = InteractionBlock(irreps_in, encoder.irreps_out[0], config)
    species, positions = random_cluster()
    edge_index, vectors = brute_force_edges(positions, R_MAX)
    feats = torch.randn(len(species), irreps_in.dim, dtype=DTYPE)
    for matrix in (o3.rand_matrix(dtype=DTYPE), -o3.rand_matrix(dtype=DTYPE)):
        sh, radial = encoder.edge_embedding(vectors)
        sh_t, radial_t = encoder.edge_embedding(vectors @ matrix.T)
        out = block(feats, sh, radial, edge_index)
        out_t = block(feats @ irreps_in.D_from_matrix(matrix).T, sh_t, radial_t, edge_index)
        assert (out_t - out @ block.irreps_out.D_from_matrix(matrix).T).abs().max() < TOL
    scripted = torch.jit.script(block)
    assert torch.allclose(scripted(feats, sh, radial, edge_index), block(feats, sh, radial, edge_index), atol=1e-12)


def test_interaction_block_rejects_inputs_without_scalars():
    config = EncoderConfig(num_species=1, r_max=3.0, num_channels=4)
    with pytest.raises(ValueError, match="no scalars"):
        InteractionBlock(o3.Irreps("4x1o"), config.node_irreps, config)


def test_readouts_are_invariant_and_equivariant(encoder):
    torch.manual_seed(0)
    irreps = encoder.irreps_out[-1]
    with default_dtype(DTYPE):
        scalar = ScalarReadout(irreps, hidden=16, num_outputs=2)
        multipoles = IrrepsReadout(irreps, o3.Irreps("0e+1o+2e"), bias=True)
    species, positions = random_cluster()
    rotation = -o3.rand_matrix(dtype=DTYPE)
    feats = run(encoder, species, positions)[-1]
    feats_rot = run(encoder, species, positions @ rotation.T)[-1]
    assert scalar(feats).shape == (len(species), 2)
    assert (scalar(feats) - scalar(feats_rot)).abs().max() < TOL
    d = multipoles.irreps_out.D_from_matrix(rotation)
    assert (multipoles(feats_rot) - multipoles(feats) @ d.T).abs().max() < TOL
    for module in (scalar, multipoles):
        torch.jit.script(module)


def test_irreps_readout_rejects_unreachable_outputs():
    with pytest.raises(ValueError, match="2e"):
        IrrepsReadout(o3.Irreps("4x0e+4x1o"), o3.Irreps("0e+1o+2e"))


def test_mlp_maps_zero_to_zero_without_bias():
    mlp = MLP([3, 5, 5, 2], bias=False)
    assert torch.equal(mlp(torch.zeros(4, 3)), torch.zeros(4, 2))
    torch.jit.script(mlp)


@pytest.mark.parametrize(
    "field, value", [("num_species", 0), ("r_max", -1.0), ("correlation", 0), ("avg_num_neighbors", 0.0)]
)
def test_config_rejects_invalid_values(field, value):
    settings = dict(num_species=2, r_max=4.0)
    settings[field] = value
    with pytest.raises(ValueError, match=field):
        EncoderConfig(**settings)
