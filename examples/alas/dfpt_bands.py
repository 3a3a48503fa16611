"""DFPT phonons of ideal AlAs at the zone-boundary points X and L, at the level of dfpt_reference.py
(LDA, 30 Ry, shifted 8×8×8 mesh, a = 5.595 Å): the points report.py puts on the model's phonopy
band structure. Writes dfpt_bands.json next to this script (~15 min on one core) and keeps the ph.x
output of X in tests/data/qe/alas_ph_X.out for the parser test.
Usage: python examples/alas/dfpt_bands.py"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from ase.build import bulk

from fpscf.atomic_files import atomic_write_text
from fpscf.datagen.crystal import LDA_LATTICE_CONSTANTS
from fpscf.datagen.qe_labels import QESettings, dfpt_phonons_at_q

KSPACING = 0.25  # as dfpt_reference.py
#: Special points of the fcc primitive cell of ase.build.bulk, reduced reciprocal coordinates.
POINTS = {"X": (0.5, 0.0, 0.5), "L": (0.5, 0.5, 0.5)}


def main() -> None:
    here = Path(__file__).parent
    atoms = bulk("AlAs", "zincblende", a=LDA_LATTICE_CONSTANTS["AlAs"])
    points = {}
    for label, q in POINTS.items():
        workdir = Path(tempfile.mkdtemp(prefix="dfpt_bands_"))
        try:
            frequencies = dfpt_phonons_at_q(atoms, q, QESettings(kspacing=KSPACING, keep_files=True), workdir=str(workdir))
            if label == "X":
                shutil.copy(next(workdir.glob("qe_phq_*/ph.out")), here.parents[1] / "tests" / "data" / "qe" / "alas_ph_X.out")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        points[label] = {"q_reduced": list(q), "frequencies_cm-1": [round(float(f), 3) for f in frequencies]}
        print(f"{label} {q}: {', '.join(f'{f:.1f}' for f in frequencies)} cm-1", flush=True)
    summary = {
        "level_of_theory": "LDA/PW 30 Ry (Quantum ESPRESSO 6.7, Al.pz-vbc, As.pz-bhs), shifted 8x8x8 mesh",
        "lattice_constant_A": LDA_LATTICE_CONSTANTS["AlAs"],
        "cell": atoms.cell.array.tolist(),
        "points": points,
    }
    atomic_write_text(here / "dfpt_bands.json", json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
