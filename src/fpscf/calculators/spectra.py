"""IR and Raman spectra: normal modes of molecules, Γ phonons with LO–TO splitting of crystals.

Everything comes from one fpscf model through :class:`~fpscf.calculators.FixedPointCalculator`:
the exact Hessian (molecules) or phonopy's finite displacements (crystals), and the exact Born
charges Z*, polarizability α and Raman tensors R at the structure, all under the same applied
field ε (V/Å). Units and signs follow docs/physics.md, Units and signs.

Normal modes. ``D_{Ib,Jc} = H_{Ib,Jc}/√(m_I m_J)`` eV/(Å² amu) is the mass-weighted Hessian
(molecules: exact, with rigid translations and rotations projected out; crystals: phonopy's
dynamical matrix at Γ, with the non-analytical term along a q direction if one is given). Its
orthonormal eigenvectors ``e_k`` (3N components ``e_{k,Ib}``) are the mass-weighted modes, its
eigenvalues λ_k give ``ν̃_k = √λ_k/(2πc)`` cm⁻¹ (negative for λ_k < 0: imaginary modes), and
``u_{k,Ib} = e_{k,Ib}/√m_I`` Å/√amu are the Cartesian displacements per unit normal coordinate.

Intensities (per mode k; Z*_{I,ab} = ∂D_a/∂R_{I,b} e, R_{I,c,ab} = ∂α_ab/∂R_{I,c} e·Å/V):

- dipole derivative ``D'_{k,a} = Σ_{I,b} Z*_{I,ab} u_{k,Ib}`` e/√amu; IR intensity
  ``I_k = |D'_k|²`` e²/amu, and ``I_k × 974.88`` km/mol (``N_A/(12 ε0 c²) |∂D/∂Q|²``, the
  integrated molar absorption coefficient; :data:`fpscf.units.IR_INTENSITY_KM_PER_MOL`).
- polarizability derivative ``α'_{k,ab} = Σ_{I,c} R_{I,c,ab} u_{k,Ic} / (4π ε0)`` Å³/√amu
  (α in e·Å²/V times k_e = 1/(4π ε0) = 14.3996 eV·Å/e² is α in Å³); invariants
  ``a = tr α'/3`` and ``γ² = ½[(α'xx−α'yy)² + (α'yy−α'zz)² + (α'zz−α'xx)² + 6(α'xy² + α'yz² + α'zx²)]``;
  Raman activity ``S_k = 45 a² + 7 γ²`` Å⁴/amu; depolarisation ratio (linearly polarised light)
  ``ρ_k = 3γ²/(45 a² + 4γ²)`` (NaN for a mode with S_k = 0).
- broadened spectra: ``Σ_k I_k L(ν̃ − ν̃_k)`` with the area-normalised Lorentzian
  ``L(x) = (w/2π)/(x² + (w/2)²)``, w the full width at half maximum (cm⁻¹), over modes with
  ν̃_k > 0 that are not rigid (molecules) or acoustic (crystals).

Crystals: phonopy with the input cell as primitive cell (``primitive_matrix="P"``: give a
primitive cell for symmetry labels; a conventional cell gives the Γ modes of that cell),
supercell forces from the calculator (±displacements), phonopy's translational sum rule on the
force constants when the calculator's ``acoustic_sum_rule`` is on, and ``nac_params`` (Gonze–Lee)
from the model's Born charges and ε∞, symmetrised by phonopy's ``symmetrize_borns_and_epsilon``
when no field is applied. Under a field the crystal's symmetry is lower than its space group, so
phonopy runs without symmetry (``is_symmetry=False``: every atom displaced, tensors used as they
come) and symmetry labels are ``"-"``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from ase import Atoms

from fpscf.errors import FpscfError
from fpscf.units import COULOMB_CONSTANT, IR_INTENSITY_KM_PER_MOL, WAVENUMBER_PER_SQRT_EV_A2_AMU

Progress = Callable[[str], None] | None

#: Units of every quantity written by :func:`write_spectra` (also in summary.json).
UNITS = {
    "frequency": "cm^-1 (imaginary modes as negative numbers)",
    "ir_intensity": "e^2/amu (|dD/dQ|^2, Q the mass-weighted normal coordinate)",
    "ir_intensity_km_per_mol": "km/mol (= e^2/amu x %.4f)" % IR_INTENSITY_KM_PER_MOL,
    "raman_activity": "Angstrom^4/amu (45 a^2 + 7 gamma^2 of dalpha/dQ in Angstrom^3/sqrt(amu))",
    "depolarization_ratio": "1 (3 gamma^2/(45 a^2 + 4 gamma^2), linearly polarised light)",
    "spectrum_ir": "(e^2/amu)/cm^-1 (Lorentzian-broadened IR intensity)",
    "spectrum_raman": "(Angstrom^4/amu)/cm^-1 (Lorentzian-broadened Raman activity)",
    "field": "V/Angstrom",
    "born_effective_charges": "e",
    "polarizability": "e Angstrom^2/V",
    "raman_tensors": "e Angstrom/V, [atom, c, a, b] = dalpha_ab/dR_c",
}


class SpectraError(FpscfError, ValueError):
    """A structure or option the spectra workflow cannot use (message says what to change)."""


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NormalModes:
    """Modes sorted by eigenvalue.

    frequencies (M,) cm⁻¹ (imaginary as negative); eigenvectors (M, N, 3) mass-weighted and
    orthonormal (``Σ_{I,b} e_{k,Ib} e_{l,Ib} = δ_kl``); masses (N,) amu; rigid (M,) True for rigid
    translations/rotations (molecules) or acoustic modes (crystals); symmetry (M,) irreps labels
    or ``"-"``.
    """

    frequencies: np.ndarray
    eigenvectors: np.ndarray
    masses: np.ndarray
    rigid: np.ndarray
    symmetry: tuple[str, ...]

    @property
    def displacements(self) -> np.ndarray:
        """Cartesian displacements per unit normal coordinate ``u_k = e_k/√m`` (M, N, 3) Å/√amu."""
        return self.eigenvectors / np.sqrt(self.masses)[None, :, None]

    @property
    def eigenvalues(self) -> np.ndarray:
        """λ_k (M,) eV/(Å² amu), from the frequencies."""
        return np.sign(self.frequencies) * (self.frequencies / WAVENUMBER_PER_SQRT_EV_A2_AMU) ** 2


@dataclass(frozen=True)
class ModeIntensities:
    """IR and Raman quantities of each mode (see the module docstring for the formulas).

    dipole_derivatives (M,3) e/√amu; polarizability_derivatives (M,3,3) Å³/√amu;
    ir_intensity (M,) e²/amu; ir_intensity_km_per_mol (M,); raman_activity (M,) Å⁴/amu;
    depolarization_ratio (M,) (NaN where the activity is zero).
    """

    dipole_derivatives: np.ndarray
    polarizability_derivatives: np.ndarray
    ir_intensity: np.ndarray
    ir_intensity_km_per_mol: np.ndarray
    raman_activity: np.ndarray
    depolarization_ratio: np.ndarray


@dataclass
class Spectra:
    """Result of :func:`molecule_spectra` or :func:`crystal_spectra`.

    kind ``"molecule"`` or ``"crystal"``; field (3,) V/Å used for every evaluation;
    born_effective_charges (N,3,3) e and dielectric_tensor (3,3) as used (crystals: symmetrised
    when no field is applied); polarizability (3,3) e·Å²/V; raman_tensors (N,3,3,3) e·Å/V;
    max_force (eV/Å) at the structure (modes of a structure that is not at a minimum of the
    enthalpy are not meaningful). Crystals also carry the phonopy object (``phonon``, with force
    constants and ``nac_params``), the supercell, the q direction (reduced reciprocal
    coordinates, None: the analytic Γ modes, i.e. no non-analytical term), the Γ frequencies
    without the non-analytical term, and the band structure when asked for.
    """

    kind: str
    atoms: Atoms
    modes: NormalModes
    intensities: ModeIntensities
    field: np.ndarray
    acoustic_sum_rule: bool
    born_effective_charges: np.ndarray
    polarizability: np.ndarray
    raman_tensors: np.ndarray
    max_force: float
    point_group: str = "-"
    dielectric_tensor: np.ndarray | None = None
    supercell: tuple[int, int, int] | None = None
    q_direction: np.ndarray | None = None
    frequencies_without_nac: np.ndarray | None = None
    born_symmetrised: bool = False
    phonon: Any = None
    bands: dict[str, Any] | None = None
    timings: dict[str, float] = dataclass_field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Modes and intensities (plain numpy)
# --------------------------------------------------------------------------------------------


def frequencies_from_eigenvalues(eigenvalues: np.ndarray) -> np.ndarray:
    """ν̃ = sign(λ)·√|λ|/(2πc) cm⁻¹ from eigenvalues λ of a mass-weighted Hessian, eV/(Å² amu)."""
    eigenvalues = np.asarray(eigenvalues, float)
    return np.sign(eigenvalues) * np.sqrt(np.abs(eigenvalues)) * WAVENUMBER_PER_SQRT_EV_A2_AMU


def rigid_body_basis(masses: np.ndarray, positions: np.ndarray, tolerance: float = 1e-6) -> np.ndarray:
    """Orthonormal basis (3N, k) of rigid translations and rotations in mass-weighted coordinates.

    Translations ``√m_I ê_a``, rotations ``√m_I (ê_a × (R_I − R_com))``; k = 6, 5 for a linear
    molecule (singular values below ``tolerance`` × the largest are dropped), 3 for one atom.
    masses (N,) amu, positions (N,3) Å.
    """
    masses = np.asarray(masses, float)
    positions = np.asarray(positions, float)
    sqrt_m = np.sqrt(masses)
    relative = positions - masses @ positions / masses.sum()
    vectors = []
    for a in range(3):
        translation = np.zeros_like(positions)
        translation[:, a] = sqrt_m
        vectors.append(translation.ravel())
    for a in range(3):
        vectors.append((np.cross(np.eye(3)[a], relative) * sqrt_m[:, None]).ravel())
    u, s, _ = np.linalg.svd(np.stack(vectors, axis=1), full_matrices=False)
    return u[:, s > tolerance * s.max()]


def mass_weighted(hessian: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """``D = H/√(m_I m_J)`` (3N,3N) eV/(Å² amu) from H (3N,3N) eV/Å², symmetrised."""
    inv_sqrt = np.repeat(1.0 / np.sqrt(np.asarray(masses, float)), 3)
    matrix = hessian * inv_sqrt[:, None] * inv_sqrt[None, :]
    return 0.5 * (matrix + matrix.T)


def molecule_normal_modes(hessian: np.ndarray, masses: np.ndarray, positions: np.ndarray) -> NormalModes:
    """Normal modes of a molecule with rigid translations and rotations projected out (Eckart).

    The mass-weighted Hessian is diagonalised in the orthogonal complement of
    :func:`rigid_body_basis`; the k rigid modes are that basis with frequency exactly 0.
    hessian (3N,3N) eV/Å², masses (N,) amu, positions (N,3) Å.
    """
    n_atoms = len(masses)
    dynamical = mass_weighted(np.asarray(hessian, float), masses)
    rigid_basis = rigid_body_basis(masses, positions)
    full, _ = np.linalg.qr(np.concatenate([rigid_basis, np.eye(3 * n_atoms)], axis=1))
    complement = full[:, rigid_basis.shape[1] : 3 * n_atoms]
    values, vectors = np.linalg.eigh(complement.T @ dynamical @ complement)
    eigenvalues = np.concatenate([np.zeros(rigid_basis.shape[1]), values])
    eigenvectors = np.concatenate([rigid_basis, complement @ vectors], axis=1).T
    rigid = np.arange(len(eigenvalues)) < rigid_basis.shape[1]
    order = np.argsort(eigenvalues, kind="stable")
    return NormalModes(
        frequencies=frequencies_from_eigenvalues(eigenvalues[order]),
        eigenvectors=eigenvectors[order].reshape(-1, n_atoms, 3),
        masses=np.asarray(masses, float),
        rigid=rigid[order],
        symmetry=("-",) * len(order),
    )


def raman_invariants(tensors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic mean ``a = tr T/3`` and anisotropy ``γ²`` of symmetric tensors T (..., 3, 3):
    ``γ² = ½[(Txx−Tyy)² + (Tyy−Tzz)² + (Tzz−Txx)² + 6(Txy² + Tyz² + Tzx²)]``."""
    t = 0.5 * (tensors + np.swapaxes(tensors, -1, -2))
    xx, yy, zz = t[..., 0, 0], t[..., 1, 1], t[..., 2, 2]
    mean = (xx + yy + zz) / 3.0
    gamma2 = 0.5 * ((xx - yy) ** 2 + (yy - zz) ** 2 + (zz - xx) ** 2) + 3.0 * (
        t[..., 0, 1] ** 2 + t[..., 1, 2] ** 2 + t[..., 2, 0] ** 2
    )
    return mean, gamma2


def mode_intensities(modes: NormalModes, born_effective_charges: np.ndarray, raman_tensors: np.ndarray) -> ModeIntensities:
    """IR intensities and Raman activities of each mode.

    born_effective_charges (N,3,3) e, ``[I, a, b] = ∂D_a/∂R_{I,b}``; raman_tensors (N,3,3,3)
    e·Å/V, ``[I, c, a, b] = ∂α_ab/∂R_{I,c}``. Formulas and units in the module docstring.
    """
    u = modes.displacements
    dipole = np.einsum("Iab,kIb->ka", born_effective_charges, u)
    alpha = np.einsum("Icab,kIc->kab", raman_tensors, u) * COULOMB_CONSTANT  # e·Å²/V -> Å³
    ir = (dipole**2).sum(-1)
    mean, gamma2 = raman_invariants(alpha)
    activity = 45.0 * mean**2 + 7.0 * gamma2
    denominator = 45.0 * mean**2 + 4.0 * gamma2
    tiny = 1e-12 * max(float(np.abs(denominator).max(initial=0.0)), 1e-300)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(denominator > tiny, 3.0 * gamma2 / np.where(denominator > tiny, denominator, 1.0), np.nan)
    return ModeIntensities(
        dipole_derivatives=dipole,
        polarizability_derivatives=alpha,
        ir_intensity=ir,
        ir_intensity_km_per_mol=ir * IR_INTENSITY_KM_PER_MOL,
        raman_activity=activity,
        depolarization_ratio=ratio,
    )


def lorentzian_spectrum(frequencies: np.ndarray, weights: np.ndarray, grid: np.ndarray, width: float) -> np.ndarray:
    """``Σ_k w_k (Γ/2π)/((ν̃ − ν̃_k)² + (Γ/2)²)`` on ``grid`` (cm⁻¹); Γ = width the FWHM (cm⁻¹).

    Each line has area w_k, so the result is in (unit of w)/cm⁻¹."""
    if width <= 0:
        raise SpectraError(f"the line width must be positive (cm^-1), got {width}")
    half = 0.5 * width
    shape = (half / math.pi) / ((np.asarray(grid)[:, None] - np.asarray(frequencies)[None, :]) ** 2 + half**2)
    return shape @ np.asarray(weights, float)


# --------------------------------------------------------------------------------------------
# Workflows
# --------------------------------------------------------------------------------------------


def compute_spectra(atoms: Atoms, calculator: Any, **options: Any) -> Spectra:
    """:func:`crystal_spectra` for a fully periodic structure, :func:`molecule_spectra` for a
    non-periodic one; a partly periodic one (slab, wire) is an error."""
    if atoms.pbc.all():
        return crystal_spectra(atoms, calculator, **options)
    if not atoms.pbc.any():
        crystal_only = {"supercell", "q_direction", "bands", "displacement", "band_points"} & set(options)
        if crystal_only:
            raise SpectraError(f"options {sorted(crystal_only)} are for crystals (periodic structures)")
        return molecule_spectra(atoms, calculator, **options)
    raise SpectraError(
        f"spectra are for molecules (pbc all False) or crystals (pbc all True); this structure has "
        f"pbc={atoms.pbc.tolist()}"
    )


def relax_molecule(
    atoms: Atoms,
    calculator: Any,
    fmax: float = 1e-3,
    steps: int = 1000,
    field: Sequence[float] | None = None,
    progress: Progress = None,
) -> Atoms:
    """A copy of a molecule relaxed with ASE's BFGS to max |F| ≤ ``fmax`` eV/Å (in the field
    ``field`` V/Å, default ``atoms.info['external_field']`` or the calculator's), without the
    calculator attached. Normal modes are only meaningful at a stationary point.

    Raises:
        SpectraError: the structure is periodic, or BFGS did not reach ``fmax`` within ``steps``.
    """
    from ase.optimize import BFGS

    _require_species(atoms, calculator)
    if atoms.pbc.any():
        raise SpectraError(f"relax_molecule needs a non-periodic structure (pbc={atoms.pbc.tolist()})")
    if not fmax > 0:
        raise SpectraError(f"fmax must be positive (eV/Å), got {fmax}")
    probe, _ = _with_field(atoms, field, calculator)
    probe.calc = calculator
    say = progress or (lambda message: None)
    start = time.perf_counter()
    optimizer = BFGS(probe, logfile=None, maxstep=0.1)
    converged = optimizer.run(fmax=fmax, steps=steps)
    force = float(np.linalg.norm(probe.get_forces(), axis=1).max())
    if not converged:
        raise SpectraError(
            f"relaxation did not reach max |F| = {fmax} eV/Å in {steps} BFGS steps (max |F| = {force:.2e} eV/Å); "
            f"start from a better structure or allow more steps"
        )
    say(f"relaxed in {optimizer.nsteps} BFGS steps ({time.perf_counter() - start:.1f} s): "
        f"energy {probe.get_potential_energy():.6f} eV, max |F| {force:.1e} eV/Å")
    relaxed = atoms.copy()
    relaxed.positions = probe.positions
    return relaxed


def molecule_spectra(
    atoms: Atoms,
    calculator: Any,
    field: Sequence[float] | None = None,
    symmetry_labels: bool = True,
    symprec: float = 1e-3,
    progress: Progress = None,
) -> Spectra:
    """Γ-only normal modes, IR intensities and Raman activities of a molecule.

    One SCF and one set of derivative passes give the exact Hessian (3N backward passes of the
    forces), Born charges, α and Raman tensors. atoms: non-periodic; calculator: a
    :class:`~fpscf.calculators.FixedPointCalculator` (its ``acoustic_sum_rule`` applies to Z* and
    R); field (3,) V/Å, default ``atoms.info['external_field']`` or the calculator's field.
    Symmetry labels come from phonopy's irreps of the molecule in a large cubic box, in its
    principal-axes frame (so the point group found is the largest subgroup of the molecule's
    that maps that box onto itself), and only without a field; otherwise ``"-"``.
    """
    _require_species(atoms, calculator)
    if atoms.pbc.any():
        raise SpectraError(f"molecule_spectra needs a non-periodic structure (pbc={atoms.pbc.tolist()})")
    probe, field_used = _with_field(atoms, field, calculator)
    say = progress or (lambda message: None)
    n_atoms = len(atoms)
    say(f"Hessian, Born charges, polarizability and Raman tensors: one SCF, {3 * n_atoms} backward passes "
        f"of the forces and 3 of the dipole ({n_atoms} atoms) ...")
    start = time.perf_counter()
    calculator.reset()
    results = calculator.get_properties(
        ["forces", "hessian", "born_effective_charges", "polarizability", "raman_tensors"], probe
    )
    elapsed = time.perf_counter() - start
    say(f"  done in {elapsed:.2f} s (SCF steps {calculator.results.get('scf_steps', '?')})")
    masses = atoms.get_masses()
    modes = molecule_normal_modes(results["hessian"], masses, atoms.positions)
    point_group = "-"
    if symmetry_labels and not np.any(field_used):
        labels, point_group = _molecule_symmetry_labels(atoms, modes, symprec)
        modes = _with_labels(modes, labels)
    return Spectra(
        kind="molecule",
        atoms=atoms.copy(),
        modes=modes,
        intensities=mode_intensities(modes, results["born_effective_charges"], results["raman_tensors"]),
        field=field_used,
        acoustic_sum_rule=bool(getattr(calculator, "acoustic_sum_rule", False)),
        born_effective_charges=np.array(results["born_effective_charges"]),
        polarizability=np.array(results["polarizability"]),
        raman_tensors=np.array(results["raman_tensors"]),
        max_force=float(np.linalg.norm(results["forces"], axis=1).max()),
        point_group=point_group,
        timings={"response_and_hessian_s": elapsed},
    )


def crystal_spectra(
    atoms: Atoms,
    calculator: Any,
    supercell: Sequence[int] = (1, 1, 1),
    field: Sequence[float] | None = None,
    q_direction: Sequence[float] | None = None,
    bands: bool = False,
    displacement: float = 0.01,
    band_points: int = 51,
    symprec: float = 1e-5,
    progress: Progress = None,
) -> Spectra:
    """Γ phonons (phonopy), LO–TO splitting, IR intensities and Raman activities of a crystal.

    supercell: diagonal supercell (a, b, c) for the force constants; displacement (Å) of
    phonopy's ± finite displacements; q_direction (3,) in reduced coordinates of the reciprocal
    lattice (phonopy's convention): the Γ modes with the non-analytical term for q → 0 along it
    (LO–TO split); None gives the analytic Γ modes (transverse-optic frequencies only, like
    phonopy at q = 0). bands: also the band structure along ASE's special-point path of the cell
    (``band_points`` per segment). field, calculator, progress: as in :func:`molecule_spectra`.
    """
    from phonopy import Phonopy
    from phonopy.interface.calculator import get_calculator_physical_units
    from phonopy.structure.symmetry import symmetrize_borns_and_epsilon

    _require_species(atoms, calculator)
    if not atoms.pbc.all():
        raise SpectraError(f"crystal_spectra needs a fully periodic structure (pbc={atoms.pbc.tolist()})")
    repeats = [int(n) for n in supercell]
    if len(repeats) != 3 or min(repeats) < 1:
        raise SpectraError(f"supercell must be three positive integers, got {list(supercell)}")
    cells_per_axis = (repeats[0], repeats[1], repeats[2])
    if q_direction is not None:
        q_direction = np.asarray(q_direction, float)
        if q_direction.shape != (3,) or not np.any(q_direction):
            raise SpectraError(f"q_direction must be three numbers, not all zero, got {q_direction.tolist()}")
    probe, field_used = _with_field(atoms, field, calculator)
    symmetric = not np.any(field_used)
    say = progress or (lambda message: None)
    phonon = Phonopy(
        _phonopy_atoms(atoms), supercell_matrix=np.diag(cells_per_axis), primitive_matrix="P",
        symprec=symprec, is_symmetry=symmetric,
    )
    phonon.generate_displacements(distance=displacement, is_plusminus=True)
    cells = phonon.supercells_with_displacements
    info = {"external_field": field_used.tolist()}
    if "total_charge" in atoms.info:
        info["total_charge"] = float(atoms.info["total_charge"]) * int(np.prod(cells_per_axis))
    say(f"phonopy: {len(cells)} displaced supercells of {len(cells[0])} atoms "
        f"({'symmetry used' if symmetric else 'no symmetry: a field is applied'}), displacement {displacement} Å")
    start = time.perf_counter()
    forces = []
    calculator.reset()
    for index, cell in enumerate(cells, start=1):
        tick = time.perf_counter()
        displaced = Atoms(cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True, info=dict(info))
        forces.append(np.array(calculator.get_properties(["forces"], displaced)["forces"]))
        say(f"  supercell {index}/{len(cells)}: {time.perf_counter() - tick:.2f} s, "
            f"SCF steps {calculator.results.get('scf_steps', '?')}")
    displacement_time = time.perf_counter() - start
    phonon.forces = np.array(forces)
    phonon.produce_force_constants(show_drift=False)
    asr = bool(getattr(calculator, "acoustic_sum_rule", False))
    if asr:
        phonon.symmetrize_force_constants(show_drift=False)

    say("Born charges, ε∞, polarizability and Raman tensors of the cell ...")
    start = time.perf_counter()
    calculator.reset()
    results = calculator.get_properties(
        ["forces", "born_effective_charges", "polarizability", "dielectric_tensor", "raman_tensors"], probe
    )
    response_time = time.perf_counter() - start
    born = np.array(results["born_effective_charges"])
    epsilon = np.array(results["dielectric_tensor"])
    if symmetric:
        born, epsilon = symmetrize_borns_and_epsilon(born, epsilon, phonon.unitcell, symprec=symprec)
    if np.linalg.eigvalsh(0.5 * (epsilon + epsilon.T)).min() <= 0:
        raise SpectraError(
            f"the model's dielectric tensor ε∞ = 1 + α/(ε0 Ω) is not positive definite (eigenvalues "
            f"{np.round(np.linalg.eigvalsh(0.5 * (epsilon + epsilon.T)), 4).tolist()}): the model is unstable "
            "in a field here, so no non-analytical (LO–TO) correction is possible; use a trained model"
        )
    phonon.nac_params = {
        "born": np.ascontiguousarray(born),
        "dielectric": np.ascontiguousarray(epsilon),
        "factor": get_calculator_physical_units(None).nac_factor,  # e²/(4π ε0) in eV·Å, phonopy's value
    }

    modes = phonon_gamma_modes(phonon, q_direction, symmetry_labels=symmetric)
    analytic = modes if q_direction is None else phonon_gamma_modes(phonon, None, symmetry_labels=False)
    point_group = phonon.primitive_symmetry.pointgroup_symbol if symmetric else "-"
    band_data = _band_structure(phonon, atoms, band_points) if bands else None
    return Spectra(
        kind="crystal",
        atoms=atoms.copy(),
        modes=modes,
        intensities=mode_intensities(modes, born, np.array(results["raman_tensors"])),
        field=field_used,
        acoustic_sum_rule=asr,
        born_effective_charges=born,
        polarizability=np.array(results["polarizability"]),
        raman_tensors=np.array(results["raman_tensors"]),
        max_force=float(np.linalg.norm(results["forces"], axis=1).max()),
        point_group=point_group,
        dielectric_tensor=epsilon,
        supercell=cells_per_axis,
        q_direction=q_direction,
        frequencies_without_nac=analytic.frequencies,
        born_symmetrised=symmetric,
        phonon=phonon,
        bands=band_data,
        timings={"displacements_s": displacement_time, "response_s": response_time},
    )


def phonon_gamma_modes(phonon: Any, q_direction: Sequence[float] | None = None, symmetry_labels: bool = True) -> NormalModes:
    """Γ modes from phonopy's dynamical matrix (its ``nac_params`` included).

    q_direction (3,), reduced reciprocal coordinates: the non-analytical term for q → 0 along it
    (LO–TO splitting); None: no non-analytical term (analytic Γ modes). The real symmetric
    matrix is diagonalised here so that the eigenvectors are real; the three modes with the
    largest weight on rigid translations are flagged as acoustic. Labels from phonopy's irreps of
    the analytic modes (the split LO and TO modes keep the label of the mode they come from;
    ``"-"`` where phonopy has none, e.g. for a non-primitive cell).
    """
    phonon.run_qpoints([[0.0, 0.0, 0.0]], with_dynamical_matrices=True, nac_q_direction=q_direction)
    matrix = np.asarray(phonon.qpoints.dynamical_matrices[0])
    matrix = 0.5 * (matrix + matrix.conj().T).real
    values, vectors = np.linalg.eigh(matrix)
    masses = np.asarray(phonon.primitive.masses, float)
    n_atoms = len(masses)
    eigenvectors = vectors.T.reshape(-1, n_atoms, 3)
    translations = np.sqrt(masses / masses.sum())
    weight = (np.einsum("kIa,I->ka", eigenvectors, translations) ** 2).sum(-1)
    rigid = np.zeros(len(values), bool)
    rigid[np.argsort(-weight)[:3]] = True
    modes = NormalModes(frequencies_from_eigenvalues(values), eigenvectors, masses, rigid, ("-",) * len(values))
    if symmetry_labels:
        if q_direction is None:
            modes = _with_labels(modes, _phonopy_labels(phonon, modes, None))
        else:  # labels of the analytic modes, carried over to the LO/TO-split ones by overlap
            analytic = phonon_gamma_modes(phonon, None, symmetry_labels=True)
            modes = _with_labels(modes, _transfer_labels(analytic, modes))
    return modes


def _transfer_labels(source: NormalModes, target: NormalModes) -> list[str]:
    """Each target mode gets the label whose source modes carry most of its weight (> 1/2)."""
    overlap = np.einsum("kIa,jIa->kj", target.eigenvectors, source.eigenvectors) ** 2
    labels = []
    for row in overlap:
        weights: dict[str, float] = {}
        for weight, label in zip(row, source.symmetry):
            weights[label] = weights.get(label, 0.0) + weight
        best = max(weights, key=weights.__getitem__)
        labels.append(best if weights[best] > 0.5 else "-")
    return labels


# --------------------------------------------------------------------------------------------
# Output files
# --------------------------------------------------------------------------------------------


def spectrum_grid(spectra: Spectra, width: float) -> np.ndarray:
    """Wavenumbers (cm⁻¹) for the broadened spectra: 0 to 10 widths past the highest mode,
    step min(1, width/10)."""
    active = _spectral_modes(spectra)
    top = float(spectra.modes.frequencies[active].max(initial=0.0))
    step = min(1.0, width / 10.0)
    return np.arange(0.0, max(top + 10.0 * width, 100.0) + step / 2, step)


def write_spectra(spectra: Spectra, out: str | Path, width: float = 10.0, model: str = "<in-memory model>") -> list[Path]:
    """Write modes.csv, spectrum.csv, spectrum.png, summary.json (and for crystals phonopy.yaml,
    BORN, and band.yaml + bands.png when bands were computed) to ``out``, each atomically.
    width: Lorentzian FWHM in cm⁻¹. Returns the paths written."""
    from fpscf.atomic_files import atomic_path, atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def text(name: str, content: str) -> None:
        atomic_write_text(out / name, content)
        written.append(out / name)

    modes, intensities = spectra.modes, spectra.intensities
    listed = np.nonzero(~modes.rigid)[0] if spectra.kind == "molecule" else np.arange(len(modes.frequencies))
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["index", "frequency_cm-1", "ir_intensity", "raman_activity", "depolarization_ratio",
                     "symmetry", "ir_intensity_km_per_mol", "acoustic"])
    for number, k in enumerate(listed, start=1):
        writer.writerow([
            number, f"{modes.frequencies[k]:.6f}", f"{intensities.ir_intensity[k]:.8e}",
            f"{intensities.raman_activity[k]:.8e}", f"{intensities.depolarization_ratio[k]:.6f}",
            modes.symmetry[k], f"{intensities.ir_intensity_km_per_mol[k]:.6e}", int(bool(modes.rigid[k])),
        ])
    text("modes.csv", table.getvalue())

    grid = spectrum_grid(spectra, width)
    active = _spectral_modes(spectra)
    ir = lorentzian_spectrum(modes.frequencies[active], intensities.ir_intensity[active], grid, width)
    raman = lorentzian_spectrum(modes.frequencies[active], intensities.raman_activity[active], grid, width)
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["frequency_cm-1", "ir_intensity", "raman_activity"])
    for row in zip(grid, ir, raman):
        writer.writerow([f"{row[0]:.4f}", f"{row[1]:.8e}", f"{row[2]:.8e}"])
    text("spectrum.csv", table.getvalue())

    _plot_spectrum(spectra, grid, ir, raman, active, width, out / "spectrum.png")
    written.append(out / "spectrum.png")

    if spectra.kind == "crystal":
        phonon = spectra.phonon
        with atomic_path(out / "phonopy.yaml") as temporary:
            phonon.save(temporary, settings={"force_constants": True})
        written.append(out / "phonopy.yaml")
        text("BORN", _born_text(spectra))
        if spectra.bands is not None:
            with atomic_path(out / "band.yaml") as temporary:
                phonon.write_yaml_band_structure(filename=temporary)
            written.append(out / "band.yaml")
            _plot_bands(spectra.bands, out / "bands.png")
            written.append(out / "bands.png")
    files = [path.name for path in written] + ["summary.json"]
    text("summary.json", json.dumps(_summary(spectra, model, width, files), indent=2) + "\n")
    return written


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _require_species(atoms: Atoms, calculator: Any) -> None:
    from ase.data import chemical_symbols

    model = getattr(calculator, "model", None)
    known = getattr(model, "atomic_numbers", None)
    if known is None:
        return
    unknown = sorted(set(int(z) for z in atoms.numbers) - set(int(z) for z in known))
    if unknown:
        names = ", ".join(chemical_symbols[z] for z in unknown)
        have = ", ".join(chemical_symbols[int(z)] for z in known)
        raise SpectraError(f"the structure has element(s) {names} that the model does not know (model elements: {have})")


def _with_field(atoms: Atoms, field: Sequence[float] | None, calculator: Any) -> tuple[Atoms, np.ndarray]:
    """A copy of atoms whose info holds the field used for every evaluation, and that field."""
    if field is None:
        field = atoms.info.get("external_field", getattr(calculator, "electric_field", np.zeros(3)))
    value = np.asarray(field, float).reshape(-1)
    if value.shape != (3,) or not np.all(np.isfinite(value)):
        raise SpectraError(f"the field must be three finite numbers (V/Å), got {np.asarray(field).tolist()}")
    probe = atoms.copy()
    probe.calc = None
    probe.info["external_field"] = value.tolist()
    return probe, value


def _phonopy_atoms(atoms: Atoms) -> Any:
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(), cell=atoms.cell.array,
        scaled_positions=atoms.get_scaled_positions(), masses=atoms.get_masses(),
    )


def _with_labels(modes: NormalModes, labels: Sequence[str]) -> NormalModes:
    return NormalModes(modes.frequencies, modes.eigenvectors, modes.masses, modes.rigid, tuple(labels))


def _phonopy_labels(phonon: Any, modes: NormalModes, q_direction: Any, rotation: np.ndarray | None = None) -> list[str]:
    """Irreps labels of phonopy at Γ, matched to ``modes`` by eigenvector overlap with each
    degenerate set (rotation (3,3): the frame of phonopy's cell relative to the modes')."""
    from phonopy.phonon.irreps import IrRepLabels

    labels = ["-"] * len(modes.frequencies)
    try:
        irreps = phonon.run_irreps([0.0, 0.0, 0.0], nac_q_direction=q_direction, degeneracy_tolerance=1e-4)
        names = IrRepLabels(
            irreps.characters, irreps.conventional_rotations, phonon.primitive_symmetry.pointgroup_symbol, False
        ).irrep_labels
    except (RuntimeError, ValueError, KeyError, AssertionError):
        return labels
    if names is None:
        return labels
    vectors = modes.eigenvectors if rotation is None else modes.eigenvectors @ rotation.T
    vectors = vectors.reshape(len(labels), -1)
    phonopy_vectors = np.asarray(irreps.eigenvectors)
    for band_set, name in zip(irreps.band_indices, names):
        if name is None:
            continue
        block = phonopy_vectors[:, list(band_set)]
        overlap = (np.abs(vectors.conj() @ block) ** 2).sum(-1)
        for k in np.nonzero(overlap > 0.5)[0]:
            labels[k] = str(name)
    return labels


def _molecule_symmetry_labels(atoms: Atoms, modes: NormalModes, symprec: float) -> tuple[list[str], str]:
    """Irreps labels of the vibrations from phonopy: the molecule in its principal-axes frame at
    the centre of a cubic box with 10 Å of vacuum, the (projected) Hessian as force constants of
    a 1×1×1 supercell. Rigid modes and anything phonopy cannot label get ``"-"``."""
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    masses = modes.masses
    n_atoms = len(masses)
    centred = atoms.positions - masses @ atoms.positions / masses.sum()
    inertia = (masses[:, None, None] * ((centred**2).sum(-1)[:, None, None] * np.eye(3) - centred[:, :, None] * centred[:, None, :])).sum(0)
    _, axes = np.linalg.eigh(inertia)
    rotation = axes.T  # rows: principal axes; r' = rotation @ r
    if np.linalg.det(rotation) < 0:
        rotation[2] *= -1
    side = float(np.ptp(centred @ rotation.T, axis=0).max()) + 10.0
    positions = centred @ rotation.T + side / 2
    # Projected mass-weighted Hessian (vibrations only), back in Cartesian form, rotated.
    vib = modes.eigenvectors[~modes.rigid].reshape(-1, 3 * n_atoms)
    values = modes.eigenvalues[~modes.rigid]
    dynamical = vib.T @ (values[:, None] * vib)
    sqrt_m = np.repeat(np.sqrt(masses), 3)
    cartesian = (dynamical * sqrt_m[:, None] * sqrt_m[None, :]).reshape(n_atoms, 3, n_atoms, 3)
    force_constants = np.einsum("ab,IbJc,dc->IJad", rotation, cartesian, rotation)
    try:
        box = PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=np.eye(3) * side,
                           positions=positions, masses=masses)
        phonon = Phonopy(box, supercell_matrix=np.eye(3, dtype=int), primitive_matrix="P", symprec=symprec)
        phonon.force_constants = np.ascontiguousarray(force_constants)
        point_group = str(phonon.primitive_symmetry.pointgroup_symbol).strip()
    except (RuntimeError, ValueError):
        return ["-"] * len(modes.frequencies), "-"
    labels = _phonopy_labels(phonon, modes, None, rotation=rotation)
    return [("-" if rigid else label) for label, rigid in zip(labels, modes.rigid)], point_group


def _spectral_modes(spectra: Spectra) -> np.ndarray:
    """Indices of the modes that make lines: real (ν̃ > 0), not rigid or acoustic."""
    return np.nonzero((~spectra.modes.rigid) & (spectra.modes.frequencies > 0))[0]


def _band_structure(phonon: Any, atoms: Atoms, points: int) -> dict[str, Any]:
    """Phonon bands along ASE's special-point path of the cell (reduced coordinates of the
    cell's reciprocal lattice, which is phonopy's primitive lattice here)."""
    from ase.dft.kpoints import parse_path_string

    path = atoms.cell.bandpath(npoints=0)
    special = path.special_points
    segments, connections, ends = [], [], []
    for branch in parse_path_string(path.path):
        for start, stop in zip(branch[:-1], branch[1:]):
            segments.append(np.linspace(special[start], special[stop], points))
            connections.append(True)
            ends.append((start, stop))
        connections[-1] = False
    from phonopy.physical_units import get_physical_units

    result = phonon.run_band_structure(segments, path_connections=connections)
    to_cm = get_physical_units().THzToCm
    return {
        "distances": [np.asarray(d) for d in result.distances],
        "frequencies_cm-1": [np.asarray(f) * to_cm for f in result.frequencies],
        "segments": ends,
        "connections": connections,
        "path": path.path,
    }


def _born_text(spectra: Spectra) -> str:
    """BORN in phonopy's format: without a field phonopy's own writer (symmetry-independent
    atoms); under a field every atom (read it with phonopy's ``--nosym``)."""
    if spectra.born_symmetrised:
        from phonopy.file_IO import get_BORN_lines

        lines = get_BORN_lines(spectra.phonon.unitcell, spectra.born_effective_charges, spectra.dielectric_tensor)
    else:
        lines = [f"# epsilon and Z* of atoms {' '.join(str(i + 1) for i in range(len(spectra.atoms)))} "
                 f"(field {spectra.field.tolist()} V/A: no symmetry, use phonopy --nosym)"]
        lines.append(("%13.8f " * 9) % tuple(np.asarray(spectra.dielectric_tensor).ravel()))
        lines += [("%13.8f " * 9) % tuple(z.ravel()) for z in spectra.born_effective_charges]
    return "\n".join(lines) + "\n"


def _plot_spectrum(spectra: Spectra, grid: np.ndarray, ir: np.ndarray, raman: np.ndarray, active: np.ndarray,
                   width: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fpscf.training.reporting import atomic_savefig

    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7, 6))
    frequencies = spectra.modes.frequencies[active]
    for axis, curve, sticks, label in (
        (top, ir, spectra.intensities.ir_intensity[active], "IR intensity (e²/amu per cm⁻¹)"),
        (bottom, raman, spectra.intensities.raman_activity[active], "Raman activity (Å⁴/amu per cm⁻¹)"),
    ):
        axis.plot(grid, curve, color="C0")
        scale = curve.max() / sticks.max() if sticks.size and sticks.max() > 0 else 0.0
        axis.vlines(frequencies, 0, sticks * scale, color="C1", lw=0.8, label="modes (scaled)")
        axis.set_ylabel(label)
        axis.set_ylim(bottom=0)
    bottom.set_xlabel("wavenumber (cm⁻¹)")
    field = ", ".join(f"{v:g}" for v in spectra.field)
    top.set_title(f"{spectra.atoms.get_chemical_formula()} ({spectra.kind}), field ({field}) V/Å, "
                  f"Lorentzian FWHM {width:g} cm⁻¹", fontsize=9)
    top.legend(fontsize=8)
    figure.tight_layout()
    atomic_savefig(figure, path, dpi=120)
    plt.close(figure)


def _unit_cartesian_q(spectra: Any) -> list[float]:
    """The q → 0 direction of the non-analytical term as a Cartesian unit vector (reduced coordinates
    times the reciprocal cell of the structure)."""
    q = np.asarray(spectra.q_direction, float) @ spectra.atoms.cell.reciprocal()
    return (q / np.linalg.norm(q)).round(12).tolist()


def _plot_bands(bands: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fpscf.training.reporting import atomic_savefig

    figure, axis = plt.subplots(figsize=(7, 4.5))
    ticks, names = [], []
    for distances, frequencies, (start, stop), connected in zip(
        bands["distances"], bands["frequencies_cm-1"], bands["segments"], bands["connections"]
    ):
        axis.plot(distances, frequencies, color="C0", lw=1.0)
        for position, name in ((distances[0], start), (distances[-1], stop)):
            name = "Γ" if name == "G" else name
            if ticks and abs(ticks[-1] - position) < 1e-9:
                if names[-1] != name:
                    names[-1] = f"{names[-1]}|{name}"
                continue
            ticks.append(position)
            names.append(name)
    for tick in ticks:
        axis.axvline(tick, color="0.7", lw=0.6)
    axis.axhline(0.0, color="0.5", lw=0.6)
    axis.set_xticks(ticks, names)
    axis.set_xlim(ticks[0], ticks[-1])
    axis.set_ylabel("frequency (cm⁻¹)")
    axis.set_title(f"phonon bands, path {bands['path'].replace('G', 'Γ')} (with the non-analytical correction)",
                   fontsize=9)
    figure.tight_layout()
    atomic_savefig(figure, path, dpi=120)
    plt.close(figure)


def _summary(spectra: Spectra, model: str, width: float, files: list[str]) -> dict[str, Any]:
    modes = spectra.modes
    data: dict[str, Any] = {
        "kind": spectra.kind,
        "model": model,
        "formula": spectra.atoms.get_chemical_formula(),
        "n_atoms": len(spectra.atoms),
        "field_V_per_A": spectra.field.tolist(),
        "acoustic_sum_rule": spectra.acoustic_sum_rule,
        "supercell": list(spectra.supercell) if spectra.supercell else None,
        "q_direction_reduced": None if spectra.q_direction is None else spectra.q_direction.tolist(),
        # the same direction as a Cartesian unit vector (q_reduced @ reciprocal cell), to read it at a glance
        "q_direction_cartesian": None if spectra.q_direction is None else _unit_cartesian_q(spectra),
        "point_group": spectra.point_group,
        "symmetry_labels": ("phonopy irreps" if any(label != "-" for label in modes.symmetry) else
                            "none (a field is applied, the cell is not primitive, or phonopy found no labels)"),
        "lorentzian_fwhm_cm-1": width,
        "max_force_eV_per_A": spectra.max_force,
        "n_modes": int(len(modes.frequencies)),
        "n_rigid_or_acoustic": int(modes.rigid.sum()),
        "n_imaginary": int(((modes.frequencies < 0) & ~modes.rigid).sum()),
        "frequencies_cm-1": modes.frequencies.tolist(),
        "polarizability_e_A2_per_V": spectra.polarizability.tolist(),
        "born_effective_charges_e": spectra.born_effective_charges.tolist(),
        "units": UNITS,
        "formulas": {
            "ir_intensity": "|sum_{I,b} Z*_{I,ab} e_{k,Ib}/sqrt(m_I)|^2",
            "raman_tensor_of_mode": "alpha'_k,ab = sum_{I,c} R_{I,c,ab} e_{k,Ic}/sqrt(m_I) / (4 pi eps0)",
            "raman_activity": "45 a^2 + 7 gamma^2",
            "depolarization_ratio": "3 gamma^2/(45 a^2 + 4 gamma^2)",
            "lorentzian": "(w/2pi)/((nu-nu_k)^2 + (w/2)^2), w = FWHM",
        },
        "timings_s": spectra.timings,
        "files": files,
    }
    if spectra.kind == "molecule":
        data["modes_listed"] = "vibrations only (rigid translations and rotations projected out)"
    else:
        data["modes_listed"] = "all Gamma modes of the cell (acoustic ones flagged)"
        data["dielectric_tensor"] = spectra.dielectric_tensor.tolist()
        data["born_charges_symmetrised"] = spectra.born_symmetrised
        data["nac"] = "phonopy nac_params (Gonze-Lee) from the model's Born charges and dielectric tensor"
        data["frequencies_without_nac_cm-1"] = spectra.frequencies_without_nac.tolist()
        data["phonopy_cell"] = "input cell used as primitive cell (primitive_matrix 'P')"
    if spectra.max_force > 1e-2:
        data["warning"] = (f"max |F| = {spectra.max_force:.3g} eV/A: the structure is not at a minimum of the "
                           "enthalpy in this field; relax it first for meaningful modes")
    return data
