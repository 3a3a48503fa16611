"""Training, validation and test sets of the liquid-water model: the cluster data of `water-b3lyp`
(its own split, unchanged) plus the condensed-phase data (close-contact scans, H–O–H bend scans,
clusters cut from liquid boxes and from the MD failures found by active learning), all
B3LYP/aug-cc-pVDZ.

    python examples/liquid_water/make_training_set.py            # writes examples/liquid_water/data/

New structures are split by group (a close-contact scan type and composition; a liquid box), one
group in ten for validation, seeded. Close contacts and bends carry DFT forces up to ~60 eV/Å and energies eV
above the minimum: their loss weights are scaled down (``forces_weight = min(1, (F_ref / max|F|)²)``,
``energy_weight`` 0.1) so that they teach the wall without drowning the near-equilibrium
data, whose accuracy the model card reports. Missing sources are skipped with a note (the liquid
clusters are labelled in the background and grow over time: rerun to include what is done).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read

from fpscf.atomic_files import atomic_write_text
from fpscf.data.extxyz import write_extxyz

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
#: Force scale (eV/Å) above which a structure's force loss weight falls as (F_REF / max|F|)².
F_REF = 5.0
#: Energy-per-atom loss weight of close-contact structures (their energies are eV above equilibrium).
CLOSE_CONTACT_ENERGY_WEIGHT = 0.1
#: Sources of scans far from equilibrium (close contacts, H–O–H bends) that get that weight.
SCANNED_SOURCES = ("water_close_contacts", "water_bends")


def condensed_sources() -> dict[str, Path]:
    return {
        "water_close_contacts": ROOT / "data/water_close_contacts",
        "water_bends": ROOT / "data/water_bends",
        "water_liquid_clusters": ROOT / "data/water_liquid_clusters",
        # clusters cut around the failures of run_bounded in 64-water MD (fpscf active-learn, one iteration)
        "water_md_failures": HERE / "run_active_learning_bounded/iter_001/labels",
        # clusters cut around run_v2's LAMMPS failures (proton transfer) by fpscf active-learn, iteration 1
        "water_md_failures_v2": HERE / "run_active_learning/iter_001/labels",
    }


def read_source(directory: Path) -> list[Atoms]:
    """Finished structures of a labelling run: data.xyz when complete, else its parts/."""
    if (directory / "data.xyz").is_file():
        return read(directory / "data.xyz", ":")
    parts = sorted((directory / "parts").glob("*.xyz")) if (directory / "parts").is_dir() else []
    return [atoms for path in parts for atoms in read(path, ":")]


def group_of(atoms: Atoms, source: str) -> str:
    if "trajectory" in atoms.info:
        return f"{source}:{atoms.info.get('composition')}/{atoms.info['trajectory']}"
    return f"{source}:{atoms.info.get('scan', '')}/{atoms.info.get('composition')}/{int(atoms.info['sample_id']) % 10}"


def weigh(atoms: Atoms, source: str) -> Atoms:
    forces = atoms.get_forces()
    largest = float(np.abs(forces).max()) if len(forces) else 0.0
    atoms.info["forces_weight"] = float(min(1.0, (F_REF / largest) ** 2)) if largest > 0 else 1.0
    if source in SCANNED_SOURCES:
        atoms.info["energy_weight"] = CLOSE_CONTACT_ENERGY_WEIGHT
    atoms.info["data_source"] = source
    return atoms


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "data")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    base = ROOT / "examples/water_model/data"
    sets = {name: read(base / f"{name}.xyz", ":") for name in ("train", "valid", "test")}
    for atoms in sets["train"] + sets["valid"] + sets["test"]:
        atoms.info["data_source"] = "water_b3lyp"
    rng = np.random.default_rng(args.seed)
    counts: dict[str, dict[str, int]] = {}
    for source, directory in condensed_sources().items():
        structures = [weigh(atoms, source) for atoms in read_source(directory)]
        if not structures:
            print(f"{source}: nothing labelled yet in {directory}; skipped")
            continue
        groups = sorted({group_of(atoms, source) for atoms in structures})
        held = {groups[i] for i in rng.permutation(len(groups))[: max(1, len(groups) // 10)]}
        train = [a for a in structures if group_of(a, source) not in held]
        valid = [a for a in structures if group_of(a, source) in held]
        sets["train"] += train
        sets["valid"] += valid
        counts[source] = {"train": len(train), "valid": len(valid), "groups": len(groups)}
        print(f"{source}: {len(train)} train, {len(valid)} valid ({len(groups)} groups)")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, structures in sets.items():
        write_extxyz(args.out / f"{name}.xyz", structures)
        print(f"{name:5s}: {len(structures)} structures")
    summary = {"seed": args.seed, "force_reference_eV_per_A": F_REF, "sources": counts,
               "sizes": {name: len(s) for name, s in sets.items()}}
    atomic_write_text(args.out / "split.json", json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
