"""Split the water reference data into train / validation / test sets by whole MD trajectories.

Structures sampled from one MD trajectory are correlated, so a random split by structure would
leak test information into training. Here each (data set, composition, trajectory) group goes to
exactly one set: for every composition with at least ``--min-groups-test`` trajectories, one (seeded,
random) trajectory is held out for testing, and for every composition with at least
``--min-groups-valid`` trajectories one more is kept for validation; the rest is training data.

    python examples/water_model/split.py data/water_b3lyp/data.xyz data/water_b3lyp_response/data.xyz \
        --out examples/water_model/data

writes ``train.xyz``, ``valid.xyz``, ``test.xyz`` and ``split.json`` (the groups of each set).
The input may also be the ``parts/`` directory of an unfinished run (for trials).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read

from fpscf.atomic_files import atomic_write_text
from fpscf.data.extxyz import write_extxyz

Group = tuple[str, str, int]


def read_structures(source: Path) -> list[Atoms]:
    """All structures of an extxyz file, or of every ``*.xyz`` in a directory (sorted by name)."""
    files = sorted(source.glob("*.xyz")) if source.is_dir() else [source]
    if not files:
        raise SystemExit(f"no .xyz files in {source}")
    return [atoms for path in files for atoms in read(path, ":")]


def group_of(atoms: Atoms, source: str) -> Group:
    """The (data set, composition, trajectory) group of a sampled structure."""
    try:
        return source, str(atoms.info["composition"]), int(atoms.info["trajectory"])
    except KeyError as error:
        raise SystemExit(f"structure without {error.args[0]!r} in info: expected output of `fpscf data water`") from None


def _source_name(source: Path) -> str:
    """The data set's directory name (``data/water_b3lyp/data.xyz`` → ``water_b3lyp``)."""
    directory = source if source.is_dir() else source.parent
    return directory.parent.name if directory.name == "parts" else directory.name


def split_groups(groups: list[Group], seed: int, min_groups_test: int, min_groups_valid: int) -> dict[str, list[Group]]:
    """Assign every group to "train", "valid" or "test" (one test and one validation trajectory per
    composition that has enough trajectories), reproducibly for a given seed."""
    by_composition: dict[tuple[str, str], list[Group]] = defaultdict(list)
    for group in sorted(set(groups)):
        by_composition[group[:2]].append(group)
    rng = np.random.default_rng(seed)
    sets: dict[str, list[Group]] = {"train": [], "valid": [], "test": []}
    for composition in sorted(by_composition):
        members = list(by_composition[composition])
        order = rng.permutation(len(members))
        members = [members[i] for i in order]
        if len(members) >= min_groups_test:
            sets["test"].append(members.pop())
        if len(members) + 1 >= min_groups_valid and len(members) >= 2:
            sets["valid"].append(members.pop())
        sets["train"].extend(members)
    return sets


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", type=Path, nargs="+",
                        help="data.xyz of `fpscf data water` runs, or their parts/ directories")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-groups-test", type=int, default=4)
    parser.add_argument("--min-groups-valid", type=int, default=5)
    args = parser.parse_args(argv)

    labelled = [
        (atoms, group_of(atoms, _source_name(source))) for source in args.sources for atoms in read_structures(source)
    ]
    sets = split_groups([group for _, group in labelled], args.seed, args.min_groups_test, args.min_groups_valid)
    membership = {group: name for name, groups in sets.items() for group in groups}
    args.out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in sets:
        chosen = [atoms for atoms, group in labelled if membership[group] == name]
        write_extxyz(args.out / f"{name}.xyz", chosen)
        counts[name] = {
            "structures": len(chosen),
            "with_polarizability": sum("polarizability" in a.info for a in chosen),
        }
    summary = {
        "sources": [str(source) for source in args.sources],
        "seed": args.seed,
        "counts": counts,
        "groups": {name: [f"{d}:{c}/{t}" for d, c, t in groups] for name, groups in sets.items()},
    }
    atomic_write_text(args.out / "split.json", json.dumps(summary, indent=1) + "\n")
    for name, count in counts.items():
        print(f"{name:5s}: {count['structures']:4d} structures ({count['with_polarizability']} with α and Z*)")


if __name__ == "__main__":
    main()
