"""Physical constants and unit conventions of fpscf (one place, see DESIGN.md section 1).

Lengths are in Å, energies in eV, charges in e, electric fields in V/Å,
magnetic fields in T and magnetic moments in Bohr magnetons.
"""

from __future__ import annotations

#: Coulomb constant k_e = 1/(4π ε0) in eV·Å/e².
COULOMB_CONSTANT: float = 14.399645
#: Vacuum permittivity ε0 in e/(V·Å).
VACUUM_PERMITTIVITY: float = 0.0055263494
#: Bohr magneton μ_B in eV/T (Zeeman energy −B·M with M in μ_B).
BOHR_MAGNETON: float = 5.7883818060e-5
#: Hartree energy in eV (CODATA 2018).
HARTREE: float = 27.211386245988
#: Bohr radius in Å (CODATA 2018).
BOHR: float = 0.529177210903
#: Atomic unit of polarizability (e²a0²/Eh) expressed in e·Å²/V.
ATOMIC_UNIT_POLARIZABILITY: float = BOHR**2 / HARTREE
#: Atomic unit of electric field (Eh/(e a0)) in V/Å.
ATOMIC_UNIT_FIELD: float = HARTREE / BOHR
#: Smallest interatomic distance accepted in input structures, in Å.
MIN_INTERATOMIC_DISTANCE: float = 0.1
