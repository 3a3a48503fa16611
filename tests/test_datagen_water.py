"""Water structure sampling (seeded, physical, mixed as documented) and the resumable data runner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms

pytest.importorskip("tblite")

from fpscf.cli import main  # noqa: E402
from fpscf.data import load_dataset, read_extxyz  # noqa: E402
from fpscf.datagen.runner import generate_dataset  # noqa: E402
from fpscf.datagen.water import label_xtb, sample_water_structures  # noqa: E402

SMALL = dict(max_molecules=3, charged_fraction=0.5, field_fraction=0.0, snapshots_per_trajectory=2)


def _same(a: list[Atoms], b: list[Atoms]) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(x.numbers, y.numbers) and np.array_equal(x.positions, y.positions)
        and np.array_equal(x.info["external_field"], y.info["external_field"])
        and x.info["total_charge"] == y.info["total_charge"]
        for x, y in zip(a, b)
    )


def _min_distance(atoms: Atoms) -> float:
    if len(atoms) < 2:
        return np.inf
    d = atoms.get_all_distances()
    return float(d[np.triu_indices(len(atoms), k=1)].min())


@pytest.fixture(scope="module")
def xtb_structures() -> list[Atoms]:
    """Four small xTB-sampled structures without fields (monomers to trimers, some ions)."""
    return sample_water_structures(4, 5, **SMALL)


def test_same_seed_gives_identical_structures_and_other_seeds_differ(xtb_structures):
    again = sample_water_structures(4, 5, **SMALL)
    assert _same(xtb_structures, again)
    other = sample_water_structures(4, 6, **SMALL)
    assert not _same(xtb_structures, other)
    # a larger sample extends a smaller one
    assert _same(sample_water_structures(3, 5, **SMALL), xtb_structures[:3])
    assert [a.info["sample_id"] for a in xtb_structures] == [0, 1, 2, 3]


def test_xtb_structures_are_physical_closed_shell_clusters():
    structures = sample_water_structures(12, 2, max_molecules=8, charged_fraction=0.5)
    for atoms in structures:
        assert _min_distance(atoms) > 0.7
        assert atoms.info["total_charge"] in (-1, 0, 1)
        assert (atoms.numbers.sum() - atoms.info["total_charge"]) % 2 == 0
        assert not atoms.pbc.any()
        assert np.linalg.norm(atoms.get_center_of_mass()) < 1e-8
        oxygens, hydrogens = (atoms.numbers == 8).sum(), (atoms.numbers == 1).sum()
        assert hydrogens == 2 * oxygens + atoms.info["total_charge"]


def test_charged_species_and_field_fractions_follow_the_arguments():
    n = 400
    structures = sample_water_structures(n, 11, method="random", max_field=0.05)
    charges = np.array([a.info["total_charge"] for a in structures])
    assert 0.10 < np.mean(charges != 0) < 0.20
    assert (charges == -1).sum() > 10 and (charges == 1).sum() > 10
    fields = np.array([a.info["external_field"] for a in structures])
    magnitudes = np.linalg.norm(fields, axis=1)
    assert abs(np.mean(magnitudes > 0) - 0.3) < 0.02
    assert magnitudes.max() <= 0.05 + 1e-12
    sizes = np.array([(a.numbers == 8).sum() for a in structures])
    assert sizes.min() == 1 and sizes.max() == 8
    assert np.mean(sizes == 1) > np.mean(sizes == 8)  # more weight on small clusters
    assert all(_min_distance(a) > 0.7 for a in structures)
    none = sample_water_structures(40, 11, method="random", charged_fraction=0.0, field_fraction=0.0)
    assert all(a.info["total_charge"] == 0 and not np.any(a.info["external_field"]) for a in none)


def test_xtb_labels_are_zero_field_eV_and_forces_are_minus_energy_gradient(xtb_structures):
    atoms = xtb_structures[0]
    labelled = label_xtb(atoms)
    assert labelled.info["energy"] < -100  # eV (water is about -138 eV in GFN2-xTB)
    assert abs(labelled.arrays["charges"].sum() - atoms.info["total_charge"]) < 1e-6
    step = 1e-4
    energies = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[0, 2] += sign * step
        energies.append(label_xtb(moved).info["energy"])
    assert labelled.arrays["forces"][0, 2] == pytest.approx(-(energies[0] - energies[1]) / (2 * step),
                                                            abs=1e-4)
    with_field = atoms.copy()
    with_field.info["external_field"] = np.array([0.0, 0.0, 0.05])
    with pytest.raises(ValueError, match="zero-field only"):
        label_xtb(with_field)
    ignored = label_xtb(with_field, ignore_field=True)
    assert not np.any(ignored.info["external_field"])
    with pytest.raises(ValueError, match="zero-field only"):
        generate_dataset([with_field], "unused", method="xtb")


def test_runner_writes_loadable_data_and_a_restart_recomputes_only_missing_parts(
    xtb_structures, tmp_path
):
    out = tmp_path / "run"
    path = generate_dataset(xtb_structures, out, method="xtb", workers=2, progress=False)
    graphs = load_dataset(path, r_max=4.0)
    assert len(graphs) == 4
    frames = read_extxyz(path)
    assert [a.info["sample_id"] for a in frames] == [0, 1, 2, 3]
    for frame, atoms in zip(frames, xtb_structures):
        assert frame.get_potential_energy() < 0
        assert frame.get_forces().shape == (len(atoms), 3)
        assert frame.get_dipole_moment().shape == (3,)
        assert frame.info["total_charge"] == atoms.info["total_charge"]
    first = path.read_bytes()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "xtb" and manifest["counts"]["labelled"] == 4
    assert json.loads((out / "failed.json").read_text()) == []

    # simulate a crash: the merged file and one finished part are lost
    path.unlink()
    (out / "parts" / "000002.xyz").unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "parts").glob("*.xyz")}
    generate_dataset(xtb_structures, out, method="xtb", workers=1, progress=False)
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["computed_this_run"] == 1 and counts["reused"] == 3
    assert {n: (out / "parts" / n).stat().st_mtime_ns for n in kept} == kept
    assert path.read_bytes() == first

    # a different data set in the same directory is refused before anything runs
    other = sample_water_structures(4, 6, **SMALL)
    with pytest.raises(ValueError, match="different structure"):
        generate_dataset(other, out, method="xtb", progress=False)


def test_a_failing_structure_is_listed_in_failed_json_and_the_rest_finish(xtb_structures, tmp_path):
    broken = Atoms("OHH", positions=[[0, 0, 0], [0, 0, 0], [0, 0.9, 0.3]])  # atoms on top of each other
    broken.info.update(sample_id=7, total_charge=0, external_field=np.zeros(3))
    structures = [*xtb_structures[:2], broken]
    path = generate_dataset(structures, tmp_path, method="xtb", progress=False)
    failed = json.loads((tmp_path / "failed.json").read_text())
    assert [entry["sample_id"] for entry in failed] == [7]
    assert "close" in failed[0]["error"].lower()
    assert [a.info["sample_id"] for a in read_extxyz(path)] == [0, 1]
    assert json.loads((tmp_path / "manifest.json").read_text())["failed_sample_ids"] == [7]


def test_cli_data_water_xtb_writes_a_labelled_data_set(tmp_path, capsys):
    assert main(["data", "water", "--method", "xtb", "--n", "3", "--out", str(tmp_path)]) == 0
    assert str(tmp_path / "data.xyz") in capsys.readouterr().out
    frames = read_extxyz(tmp_path / "data.xyz")
    assert len(frames) == 3 and all("forces" in a.calc.results for a in frames)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["command_line"] and manifest["metadata"]["sampling"]["n"] == 3
    assert main(["data", "water", "--method", "xtb", "--n", "3", "--out", str(tmp_path),
                 "--xc", "pbe"]) == 2
    assert "--xc" in capsys.readouterr().err


@pytest.mark.slow
def test_runner_dft_labels_with_response_subset(tmp_path):
    pytest.importorskip("pyscf")
    from fpscf.datagen.pyscf_labels import DFTSettings

    (monomer,) = sample_water_structures(1, 0, max_molecules=1, charged_fraction=0.0,
                                         field_fraction=0.0)
    with_field = monomer.copy()
    with_field.info.update(sample_id=99, external_field=np.array([0.0, 0.02, 0.0]))
    path = generate_dataset(
        [monomer, with_field], tmp_path, method="dft", response_fraction=1.0,
        settings=DFTSettings(xc="hf", basis="sto-3g"), progress=False,
    )
    frames = read_extxyz(path)
    assert len(frames) == 2
    assert all(np.asarray(a.info["polarizability"]).size == 9 for a in frames)
    assert np.allclose(frames[1].info["external_field"], [0.0, 0.02, 0.0])
    assert json.loads((tmp_path / "manifest.json").read_text())["counts"]["with_response"] == 2
