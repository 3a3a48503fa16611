"""DFPT reference of ideal AlAs at the data's level (LDA, 30 Ry, shifted 8×8×8 mesh, a = 5.595 Å):
Γ phonons with the LO along [100] (dynmat.x, crystal ASR, non-analytical term), ε∞, Born charges
and Raman tensors in fpscf units. Writes dfpt_reference.json next to this script (~3 min).
Usage: python examples/alas/dfpt_reference.py"""

from __future__ import annotations

import json
from pathlib import Path

from ase.build import bulk

from fpscf.atomic_files import atomic_write_text
from fpscf.datagen.crystal import LDA_LATTICE_CONSTANTS
from fpscf.datagen.qe_labels import QESettings, dfpt_gamma_reference

KSPACING = 0.25  # as make_data.sh's response cells


def main() -> None:
    atoms = bulk("AlAs", "zincblende", a=LDA_LATTICE_CONSTANTS["AlAs"])
    reference = dfpt_gamma_reference(atoms, QESettings(kspacing=KSPACING))
    frequencies = sorted(reference["frequencies"].tolist())
    summary = {
        "level_of_theory": "LDA/PW 30 Ry (Quantum ESPRESSO 6.7, Al.pz-vbc, As.pz-bhs), shifted 8x8x8 mesh",
        "lattice_constant_A": LDA_LATTICE_CONSTANTS["AlAs"],
        "frequencies_cm-1": frequencies,
        "TO_cm-1": frequencies[3], "LO_cm-1": frequencies[5], "LO_TO_splitting_cm-1": frequencies[5] - frequencies[3],
        **{name: reference[name].tolist() for name in ("dielectric_tensor", "born_effective_charges", "raman_tensors")},
        "units": {"born_effective_charges": "e, [I, a, b] = dF_Ib/deps_a", "raman_tensors": "e*A/V, [I, c, a, b] = dalpha_ab/dR_Ic"},
    }
    path = Path(__file__).parent / "dfpt_reference.json"
    atomic_write_text(path, json.dumps(summary, indent=1) + "\n")
    print(f"TO {frequencies[3]:.1f} cm-1, LO {frequencies[5]:.1f} cm-1, eps {reference['dielectric_tensor'][0, 0]:.3f}, "
          f"Z*(Al) {reference['born_effective_charges'][0, 0, 0]:.3f}; wrote {path}")


if __name__ == "__main__":
    main()
