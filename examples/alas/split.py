"""Split the AlAs reference data (make_data.sh) into data/train.xyz, data/valid.xyz and
data/test.xyz: a seeded tenth of the rattled cells and of the response cells each for validation and
for the held-out test set of the report. The ideal cells (sample 0) go to the test set too: the
report's DFPT comparison is made on the ideal crystal, which training never sees. Five test
structures (three 8-atom cells, two response cells) also go to tests/data/alas_lda_test_subset.xyz
for the shipped model's test.
Usage: python examples/alas/split.py"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fpscf.data.extxyz import read_extxyz, write_extxyz

HERE = Path(__file__).parent


def main(seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    splits: dict[str, list] = {"train": [], "valid": [], "test": []}
    subset = []
    for name, count in (("cells", 3), ("response", 2)):
        frames = read_extxyz(HERE / "data" / name / "data.xyz")
        order = [k for k in rng.permutation(len(frames)) if frames[k].info.get("sample_id") != 0]
        tenth = max(1, len(frames) // 10)
        held = {"valid": set(order[:tenth]), "test": set(order[tenth : 2 * tenth])}
        for k, atoms in enumerate(frames):
            ideal = frames[k].info.get("sample_id") == 0
            split = "valid" if k in held["valid"] else "test" if k in held["test"] or ideal else "train"
            splits[split].append(atoms)
        subset += [frames[k] for k in order[tenth : tenth + count]]
    for split, frames in splits.items():
        write_extxyz(HERE / "data" / f"{split}.xyz", frames)
        print(f"{split}: {len(frames)} structures")
    write_extxyz(HERE.parents[1] / "tests" / "data" / "alas_lda_test_subset.xyz", subset)


if __name__ == "__main__":
    main()
