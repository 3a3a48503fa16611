"""Write data/train.xyz and data/valid.xyz for the training example: 40 water monomers and dimers
labelled by a random fpscf "teacher" model (fpscf.datagen.synthetic), so the example runs
anywhere in minutes (one line per structure shows the progress). Usage: python examples/training/make_data.py"""

from __future__ import annotations

from pathlib import Path

from fpscf.data.extxyz import write_extxyz
from fpscf.datagen.synthetic import teacher_structures
from fpscf.threads import configure_threads


def main(n: int = 40, seed: int = 0) -> None:
    print(f"labelling {n} structures with a random teacher model (SCF to 1e-10; torch: "
          f"{configure_threads().describe()})", flush=True)
    structures = teacher_structures(n, seed, progress=lambda line: print("  " + line, flush=True))
    out = Path(__file__).parent / "data"
    n_train = int(0.8 * n)
    write_extxyz(out / "train.xyz", structures[:n_train])
    write_extxyz(out / "valid.xyz", structures[n_train:])
    print(f"wrote {out}/train.xyz ({n_train}) and valid.xyz ({n - n_train})")


if __name__ == "__main__":
    main()
