"""Liquid-water boxes and the clusters cut from them; close-contact scans (no DFT)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.geometry import find_mic

from fpscf.cli import main
from fpscf.data import read_extxyz
from fpscf.datagen.close_contacts import DEFAULT_SCANS, RANGES, sample_close_contacts
from fpscf.datagen.liquid import assign_molecules, cut_cluster, sample_liquid_clusters, water_box

AMU_PER_A3_IN_G_PER_CM3 = 1.66053906660
RANDOM = dict(sampling_method="random", snapshots_per_box=2, clusters_per_snapshot=3, charged_fraction=1.0)


def _density(box: Atoms) -> float:
    return box.get_masses().sum() * AMU_PER_A3_IN_G_PER_CM3 / box.get_volume()


def _mic_distances(box: Atoms) -> np.ndarray:
    vectors = (box.positions[:, None] - box.positions[None]).reshape(-1, 3)
    return find_mic(vectors, box.cell, box.pbc)[1].reshape(len(box), len(box))


def _molecule_of(structure: Atoms) -> np.ndarray:
    """Molecule index per atom (molecules listed O first, then their H)."""
    return np.cumsum(structure.numbers == 8) - 1


@pytest.mark.parametrize("ion, n_h, charge", [(None, 32, 0), ("hydronium", 33, 1), ("hydroxide", 31, -1)])
def test_box_has_the_density_composition_and_no_overlaps(ion, n_h, charge):
    box = water_box(16, seed=4, ion=ion)
    assert box.pbc.all() and np.allclose(box.cell.array, np.eye(3) * box.cell.lengths()[0])
    assert abs(_density(box) - 1.0) < 1e-9
    assert (box.numbers == 8).sum() == 16 and (box.numbers == 1).sum() == n_h
    assert box.info["total_charge"] == charge
    distances = _mic_distances(box)
    molecule = _molecule_of(box)
    intermolecular = molecule[:, None] != molecule[None, :]
    assert distances[intermolecular].min() >= 1.5 - 1e-9
    oxygens = np.flatnonzero(box.numbers == 8)
    oo = distances[np.ix_(oxygens, oxygens)][np.triu_indices(16, k=1)]
    assert oo.min() >= 2.5 - 1e-9
    species = sorted(len(h) for _, h in assign_molecules(box))
    assert sum(s - 2 for s in species) == charge and set(species) <= {1, 2, 3}
    assert abs(_density(water_box(32, seed=0, density=0.9)) - 0.9) < 1e-9


def test_clusters_are_whole_molecules_around_the_centre_and_carry_the_right_charge():
    box = water_box(16, seed=2, ion="hydroxide")
    box.positions += np.array([3.1, -2.7, 5.3])  # split molecules across the boundary
    box.wrap()
    molecules = assign_molecules(box)
    distances = _mic_distances(box)
    split = [o for o, hs in molecules if np.any(np.linalg.norm(box.positions[hs] - box.positions[o], axis=1) > 1.5)]
    assert split, "the test needs molecules split across the periodic boundary"
    for centre in range(len(molecules)):
        cluster = cut_cluster(box, centre, shell_radius=3.4, min_molecules=4, max_molecules=7)
        assert not cluster.pbc.any() and not cluster.cell.any()
        assert np.linalg.norm(cluster.get_center_of_mass()) < 1e-9
        own = [len(hs) for _, hs in assign_molecules(cluster)]
        assert 4 <= len(own) <= 7
        # whole molecules: every H within a bond of its O, as in the box
        for o, hs in assign_molecules(cluster):
            assert np.all(np.linalg.norm(cluster.positions[hs] - cluster.positions[o], axis=1) < 1.2)
        # the central molecule comes first, with its own H count, and the O–O distances to it
        # are the box's minimum-image ones
        centre_o, centre_h = molecules[centre]
        assert cluster.numbers[0] == 8 and own[0] == len(centre_h)
        cluster_oxygens = np.flatnonzero(cluster.numbers == 8)
        from_centre = np.sort(np.linalg.norm(cluster.positions[cluster_oxygens] - cluster.positions[0], axis=1))
        box_oxygens = [o for o, _ in molecules]
        expected = np.sort(distances[centre_o, box_oxygens])[: len(own)]
        assert np.allclose(from_centre, expected, atol=1e-9)
        # charge and electron count
        assert cluster.info["total_charge"] == sum(n - 2 for n in own)
        assert (cluster.numbers.sum() - cluster.info["total_charge"]) % 2 == 0
        intermolecular = _molecule_of(cluster)[:, None] != _molecule_of(cluster)[None, :]
        assert cluster.get_all_distances()[intermolecular].min() > 1.4
    ion = next(j for j, (_, hs) in enumerate(molecules) if len(hs) == 1)
    around_ion = cut_cluster(box, ion)
    assert around_ion.info["total_charge"] == -1 and around_ion.info["composition"].startswith("hydroxide_")
    with pytest.raises(ValueError, match="half the narrowest width"):
        cut_cluster(box, 0, shell_radius=5.0)


def test_liquid_sampling_is_seeded_and_has_the_keys_of_water_py():
    clusters = sample_liquid_clusters(14, 3, field_fraction=0.5, max_field=0.05, **RANDOM)
    again = sample_liquid_clusters(14, 3, field_fraction=0.5, max_field=0.05, **RANDOM)
    prefix = sample_liquid_clusters(5, 3, field_fraction=0.5, max_field=0.05, **RANDOM)
    other = sample_liquid_clusters(14, 4, field_fraction=0.5, max_field=0.05, **RANDOM)
    for a, b in zip(clusters, again):
        assert np.array_equal(a.positions, b.positions) and a.info["composition"] == b.info["composition"]
        assert np.array_equal(a.info["external_field"], b.info["external_field"])
    for a, b in zip(clusters, prefix):
        assert np.array_equal(a.positions, b.positions)
    assert not all(len(a) == len(b) and np.allclose(a.positions, b.positions) for a, b in zip(clusters, other))
    assert [c.info["sample_id"] for c in clusters] == list(range(14))
    fields = np.array([c.info["external_field"] for c in clusters])
    assert 5 <= np.count_nonzero(np.linalg.norm(fields, axis=1)) <= 9
    assert np.linalg.norm(fields, axis=1).max() <= 0.05 + 1e-12
    for cluster in clusters:
        info = cluster.info
        assert isinstance(info["total_charge"], int) and info["temperature_K"] in (300.0, 350.0, 400.0)
        assert info["trajectory"] == info["sample_id"] // 6 and info["external_field"].shape == (3,)
        n_o, n_h = (cluster.numbers == 8).sum(), (cluster.numbers == 1).sum()
        assert n_h == 2 * n_o + info["total_charge"] and 4 <= n_o <= 7
    # every box is charged (charged_fraction 1): the first cluster of each snapshot is the ion's
    assert all(clusters[i].info["total_charge"] != 0 for i in (0, 3, 6, 9, 12))
    assert {clusters[0].info["total_charge"], clusters[6].info["total_charge"]} == {-1, 1}


def test_box_snapshots_are_cached_and_reused(tmp_path):
    first = sample_liquid_clusters(6, 5, cache_dir=tmp_path, **RANDOM)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["box_0000.json", "box_0000.xyz"]
    again = sample_liquid_clusters(6, 5, cache_dir=tmp_path, **RANDOM)
    assert all(np.allclose(a.positions, b.positions, atol=1e-6) for a, b in zip(first, again))  # file precision
    hotter = sample_liquid_clusters(6, 5, cache_dir=tmp_path, temperatures=(500.0,), **RANDOM)
    assert json.loads((tmp_path / "box_0000.json").read_text())["temperature_K"] == 500.0
    assert not np.allclose(hotter[1].positions, first[1].positions)


@pytest.mark.slow
def test_liquid_clusters_from_xtb_md():
    pytest.importorskip("tblite")
    clusters = sample_liquid_clusters(4, 0, box_molecules=16, equilibration_fs=5.0, snapshot_spacing_fs=5.0,
                                      snapshots_per_box=2, clusters_per_snapshot=2, charged_fraction=1.0)
    assert len(clusters) == 4 and clusters[0].info["total_charge"] != 0
    for cluster in clusters:
        assert 4 <= (cluster.numbers == 8).sum() <= 7
        assert cluster.get_all_distances()[np.triu_indices(len(cluster), k=1)].min() > 0.7


def _groups(atoms: Atoms) -> np.ndarray:
    """Molecule per atom; the shared proton of an "oho" structure (the last atom) is its own."""
    molecule = _molecule_of(atoms)
    if atoms.info["scan"] == "oho":
        molecule[-1] = molecule.max() + 1
    return molecule


def test_close_contact_scans_hit_the_distances_and_nothing_is_closer_than_intended():
    structures = sample_close_contacts(100, 7)
    assert {a.info["scan"] for a in structures} == set(DEFAULT_SCANS)
    floors = {"hh": 1.5, "oo": 1.5, "oh": 1.5, "oho": 1.2, "ion_pair": 1.2}
    for atoms in structures:
        scan, pairs = atoms.info["scan"], atoms.info["contact_atoms"].reshape(-1, 2)
        i, j = pairs[0]
        distance = atoms.get_distance(i, j)
        assert abs(distance - atoms.info["contact_distance"]) < 1e-9
        kinds = "".join(sorted(atoms.get_chemical_symbols()[k] for k in (i, j)))
        assert kinds == {"hh": "HH", "oo": "OO", "oh": "HO", "oho": "OO", "ion_pair": "OO"}[scan]
        low, high = RANGES[scan][0], RANGES[scan][-1]
        assert low - 1e-12 <= distance <= high + 1e-12
        if scan == "oh":
            assert distance <= 0.85 or distance >= 1.05
        molecule = _groups(atoms)
        assert (molecule[i] == molecule[j]) == (scan == "oh")
        distances = atoms.get_all_distances()
        other = molecule[:, None] != molecule[None, :]
        for a, b in pairs:
            other[a, b] = other[b, a] = False
        assert not other.any() or distances[other].min() >= floors[scan] - 1e-9, (scan, atoms.info["sample_id"])
        for m in np.unique(molecule):
            hydrogens = np.flatnonzero((molecule == m) & (atoms.numbers == 1))
            if len(hydrogens) > 1:
                assert distances[np.ix_(hydrogens, hydrogens)][np.triu_indices(len(hydrogens), k=1)].min() >= 1.1
        assert not atoms.pbc.any() and np.linalg.norm(atoms.get_center_of_mass()) < 1e-9
        assert atoms.numbers.sum() - atoms.info["total_charge"] == 10 * (atoms.numbers == 8).sum()
        if scan == "hh":  # the H···H is the shortest intermolecular distance
            assert distances[molecule[:, None] != molecule[None, :]].min() == pytest.approx(distance)
    hh = sorted(a.info["contact_distance"] for a in structures if a.info["scan"] == "hh")
    assert hh[0] < 0.7 and hh[-1] > 1.1  # the scan covers its range
    again = sample_close_contacts(30, 7)
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(structures, again))
    charges = {a.info["composition"]: a.info["total_charge"] for a in structures}
    assert charges["hydronium_1water"] == 1 and charges["hydroxide_1water"] == -1
    assert charges["hydronium_hydroxide"] == 0


def test_bend_scan_folds_and_opens_one_molecule_and_keeps_the_default_sample():
    structures = sample_close_contacts(24, 3, scans=["bend"])
    folded = opened = 0
    angles = []
    for atoms in structures:
        (i, j), = atoms.info["contact_atoms"].reshape(-1, 2)
        distance = atoms.get_distance(i, j)
        assert abs(distance - atoms.info["contact_distance"]) < 1e-9
        assert atoms.numbers[i] == atoms.numbers[j] == 1
        low_f, high_f, low_o, high_o = RANGES["bend"]
        assert low_f - 1e-12 <= distance <= high_f + 1e-12 or low_o - 1e-12 <= distance <= high_o + 1e-12
        folded, opened = folded + (distance <= high_f), opened + (distance >= low_o)
        molecule = _groups(atoms)
        oxygen = np.flatnonzero((molecule == molecule[i]) & (atoms.numbers == 8))[0]
        assert molecule[i] == molecule[j] and 0.93 - 1e-9 <= atoms.get_distance(oxygen, i) <= 1.0 + 1e-9
        angles.append(atoms.get_angle(i, oxygen, j))
        distances = atoms.get_all_distances()
        other = molecule[:, None] != molecule[None, :]
        assert not other.any() or distances[other].min() >= 1.5  # the dimer stays a dimer
    assert folded == opened == 12
    assert min(angles) < 45 and max(angles) > 150
    default = sample_close_contacts(25, 0)
    assert "bend" not in {a.info["scan"] for a in default}  # data sets of the default scans are unchanged


def test_cli_liquid_and_close_contacts_label_and_resume(tmp_path, capsys):
    pytest.importorskip("tblite")
    out = tmp_path / "contacts"
    args = ["data", "close-contacts", "--out", str(out), "--n", "3", "--method", "xtb", "--threads", "1"]
    assert main(args) == 0
    frames = read_extxyz(out / "data.xyz")
    assert {a.info["scan"] for a in frames} == {"hh", "oo", "oh"} and all(a.get_forces().shape == (len(a), 3) for a in frames)
    assert main(args) == 0  # resumes: nothing left to label
    assert json.loads((out / "manifest.json").read_text())["counts"]["reused"] == 3
    liquid = tmp_path / "liquid"
    assert main(["data", "liquid", "--out", str(liquid), "--n", "2", "--method", "xtb", "--sampling", "random",
                 "--threads", "1"]) == 0
    frames = read_extxyz(liquid / "data.xyz")
    assert len(frames) == 2 and all(4 <= (a.numbers == 8).sum() <= 7 for a in frames)
    assert json.loads((liquid / "sampling.json").read_text())["sampling_method"] == "random"
    assert (liquid / "boxes" / "box_0000.xyz").is_file()
    assert main(["data", "liquid", "--out", str(liquid), "--n", "2", "--method", "xtb", "--xc", "pbe"]) == 2
    assert "--basis and --xc are for --method dft" in capsys.readouterr().err
