"""Split the AlAs reference data (make_data.sh) into data/train.xyz, data/valid.xyz and
data/test.xyz: a seeded tenth of the rattled cells and of the response cells each for validation and
for the held-out test set of the report; the ideal cells (sample 0) stay in training.
Usage: python examples/alas/split.py"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fpscf.data.extxyz import read_extxyz, write_extxyz

HERE = Path(__file__).parent


def main(seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    splits: dict[str, list] = {"train": [], "valid": [], "test": []}
    for name in ("cells", "response"):
        frames = read_extxyz(HERE / "data" / name / "data.xyz")
        order = [k for k in rng.permutation(len(frames)) if frames[k].info.get("sample_id") != 0]
        tenth = max(1, len(frames) // 10)
        held = {"valid": set(order[:tenth]), "test": set(order[tenth : 2 * tenth])}
        for k, atoms in enumerate(frames):
            split = "valid" if k in held["valid"] else "test" if k in held["test"] else "train"
            splits[split].append(atoms)
    for split, frames in splits.items():
        write_extxyz(HERE / "data" / f"{split}.xyz", frames)
        print(f"{split}: {len(frames)} structures")


if __name__ == "__main__":
    main()
