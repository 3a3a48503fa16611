"""Physical constants and unit conventions of fpscf (one place, see docs/physics.md, Units and signs).

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

# SI values (CODATA 2018) for the vibrational-spectroscopy conversions below.
_ELEMENTARY_CHARGE_SI = 1.602176634e-19  # C
_ATOMIC_MASS_SI = 1.66053906660e-27  # kg
_SPEED_OF_LIGHT_SI = 299792458.0  # m/s
_AVOGADRO_SI = 6.02214076e23  # 1/mol
_VACUUM_PERMITTIVITY_SI = 8.8541878128e-12  # F/m
#: Wavenumber (cm⁻¹) of an eigenvalue λ = 1 eV/(Å² amu) of the mass-weighted Hessian:
#: ν̃ = sqrt(λ)/(2π c), ≈ 521.47 cm⁻¹.
WAVENUMBER_PER_SQRT_EV_A2_AMU: float = (
    (_ELEMENTARY_CHARGE_SI * 1e20 / _ATOMIC_MASS_SI) ** 0.5 / (2 * 3.141592653589793 * _SPEED_OF_LIGHT_SI * 100)
)
#: IR intensity (integrated molar absorption coefficient) in km/mol of |∂D/∂Q|² = 1 e²/amu:
#: A = N_A/(12 ε0 c²) |∂D/∂Q|² (SI), ≈ 974.88 km/mol.
IR_INTENSITY_KM_PER_MOL: float = (
    _AVOGADRO_SI / (12 * _VACUUM_PERMITTIVITY_SI * _SPEED_OF_LIGHT_SI**2)
    * _ELEMENTARY_CHARGE_SI**2 / _ATOMIC_MASS_SI / 1e3
)

# Constants for molecular dynamics analysis (thermal factors, IR from dipole time series).
#: Boltzmann constant k_B in eV/K (CODATA 2018).
BOLTZMANN: float = 8.617333262e-5
#: Speed of light in Å/fs (exact), for time correlation functions in fs: ω (rad/fs) = 2π c ν̃.
SPEED_OF_LIGHT_A_PER_FS: float = _SPEED_OF_LIGHT_SI * 1e10 / 1e15
#: Debye in e·Å (1 D = 1e-21 C·m²/s / c).
DEBYE: float = 1e-21 / _SPEED_OF_LIGHT_SI / _ELEMENTARY_CHARGE_SI * 1e10
#: A polarization of 1 e/Å² in μC/cm².
POLARIZATION_MICROCOULOMB_PER_CM2: float = _ELEMENTARY_CHARGE_SI * 1e6 / 1e-16
#: Avogadro constant N_A in 1/mol (exact, SI 2019).
AVOGADRO: float = _AVOGADRO_SI
#: Energy of a photon of wavenumber 1 cm⁻¹, h c, in eV (h = 6.62607015e-34 J s, exact).
EV_PER_WAVENUMBER: float = 6.62607015e-34 * _SPEED_OF_LIGHT_SI * 100 / _ELEMENTARY_CHARGE_SI
#: 1 amu·Å²/fs² (mass times velocity squared in MD units) in eV, ≈ 103.6427.
EV_PER_AMU_A2_PER_FS2: float = _ATOMIC_MASS_SI * 1e-20 / 1e-30 / _ELEMENTARY_CHARGE_SI
