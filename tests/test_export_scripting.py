"""Issue G groundwork: every local piece of the model that the LAMMPS export will run compiles
with TorchScript and computes the same numbers as the eager module, on the inputs the model gives
it. (The electrostatics are exported separately, split into per-rank structure factors and
potentials: lammps_plugin/README.md, "Next steps".)"""

from __future__ import annotations

import pytest
import torch
from ase.build import molecule

from fpscf import build_model
from fpscf.data import atoms_to_graph, collate
from fpscf.data.graph import edge_vectors

CALLED_PIECES = ("local_energy", "local_charges", "local_higher", "update", "field_readout")


def _outputs_close(a, b) -> bool:
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_outputs_close(x, y) for x, y in zip(a, b))
    return torch.allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("update", [
    {"type": "OneBodyVariableUpdate", "nonlinearity_cls": "MLPNonLinearity"},
    {"type": "ManyBodyUpdate", "nonlinearity_cls": "MLPNonLinearity"},
])
def test_scripted_local_pieces_compute_what_the_eager_pieces_compute(update):
    model = build_model([1, 8], r_max=4.0, num_channels=8, fixedpoint_update_config=update, seed=3)
    atoms = molecule("H2O2")
    atoms.rattle(0.05, seed=1)
    atoms.info["external_field"] = [0.02, -0.01, 0.03]
    graph = collate([atoms_to_graph(atoms, 4.0, species=[1, 8])])

    encoder = torch.jit.script(model.encoder)
    vectors = edge_vectors(graph, graph.positions, graph.cell)
    species = model.species_index(graph.atomic_numbers)
    assert _outputs_close(encoder(species, vectors, graph.edge_index), model.encoder(species, vectors, graph.edge_index))
    assert _outputs_close(encoder.edge_embedding(vectors), model.encoder.edge_embedding(vectors))

    captured: dict[str, tuple] = {}

    def capture(name):
        def hook(module, args, output):
            captured.setdefault(name, (args, output))
        return hook

    handles = [getattr(model, name).register_forward_hook(capture(name)) for name in CALLED_PIECES if getattr(model, name) is not None]
    model(graph)
    for handle in handles:
        handle.remove()
    assert {"update", "field_readout", "local_energy", "local_charges"} <= set(captured)
    for name, (args, output) in captured.items():
        scripted = torch.jit.script(getattr(model, name))
        assert _outputs_close(scripted(*args), output), name


def test_structure_factor_summed_over_ranks_gives_each_rank_the_whole_systems_potential():
    """The all-reduce design of the periodic electrostatics, with the TorchScript-compiled
    functions the export runs: each 'rank' sums the structure factor over its own atoms only; the
    sum over ranks (MPI_Allreduce) then gives every rank's atoms the potential features that the
    eager code computes for the whole periodic system."""
    from fpscf.electrostatics.reciprocal import (
        half_space_miller_indices,
        prepare_reciprocal,
        reciprocal_potential_features,
        structure_factor,
    )

    generator = torch.Generator().manual_seed(0)
    cell = torch.tensor([[7.0, 0.0, 0.0], [1.0, 6.5, 0.0], [0.5, -0.7, 8.0]], dtype=torch.float64)
    positions = torch.rand(24, 3, generator=generator, dtype=torch.float64) @ cell
    multipoles = torch.randn(24, 4, generator=generator, dtype=torch.float64) * 0.3
    multipoles[:, 0] -= multipoles[:, 0].mean()
    miller = half_space_miller_indices(cell, k_cutoff=4.0)
    widths = torch.tensor([1.0, 2.0], dtype=torch.float64)

    whole = prepare_reciprocal(positions, cell, miller, 1.0, widths, None, 14.399645)
    expected = reciprocal_potential_features(whole, *structure_factor(whole, multipoles), receiver_max_l=1)
    prepare_s, factor_s = torch.jit.script(prepare_reciprocal), torch.jit.script(structure_factor)
    features_s = torch.jit.script(reciprocal_potential_features)

    def geometry(rows):
        return prepare_s(positions[rows], cell, miller, 1.0, widths, None, 14.399645)

    ranks = [torch.arange(0, 24, 3), torch.arange(1, 24, 3), torch.arange(2, 24, 3)]
    partial = [factor_s(geometry(rows), multipoles[rows]) for rows in ranks]
    own = features_s(geometry(ranks[0]), partial[0][0], partial[0][1], 1)
    assert not torch.allclose(own, expected[ranks[0]], atol=1e-3), "one rank's atoms alone are not the system"
    real = sum(part[0] for part in partial)  # the all-reduce
    imag = sum(part[1] for part in partial)
    for rows in ranks:
        features = features_s(geometry(rows), real, imag, 1)
        assert torch.allclose(features, expected[rows], rtol=0, atol=1e-12)
