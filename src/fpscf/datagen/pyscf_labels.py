"""Reference labels for molecules and clusters from PySCF (closed-shell Kohn–Sham DFT or HF).

Everything returned is in fpscf units (docs/physics.md, Units and signs): Å, eV, e, V/Å. A uniform applied field
ε (V/Å) has the potential φ(r) = −ε·r, so

* every electron (charge −1) gets ``+ε·r`` added to the one-electron (core) Hamiltonian,
* every nucleus A gets the energy ``−Z_A ε·R_A`` and the force ``+Z_A ε``,

and the total energy is the electric enthalpy ``E(ε) = U − ε·D`` with the dipole
``D = Σ_A Z_A R_A − ∫ρ_e(r) r dr`` about the Cartesian origin of the ``ase.Atoms`` object
(``ρ_e`` is the electron number density; for charged structures D depends on that origin).
Forces in a field include the derivative of the field integrals ``<μ|r|ν>`` with respect to the
nuclear positions (the basis functions move with the atoms), so they are exact derivatives of the
energy; for DFT the grid response is included too (``DFTSettings.grid_response``).

Charges and atomic dipoles are Hirshfeld partitions of the SCF density with spherically averaged,
fractional-occupation free neutral atoms computed at the same level (functional and basis)
as the promolecule; see :func:`hirshfeld_multipoles`.

Polarizability α and Born effective charges Z* come from central finite differences in the field
(``±DFTSettings.field_step`` along x, y, z about the structure's own field): ``α_ab = ∂D_b/∂ε_a``
(symmetrised) and ``Z*_{I,ab} = ∂F_{I,b}/∂ε_a``.

Only closed-shell (even electron count) structures are supported. PySCF is an optional dependency
(the ``data`` extra); it is imported lazily so this module can be imported without it.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms

from fpscf.units import ATOMIC_UNIT_FIELD, BOHR, HARTREE

#: Energy of one hartree in eV divided by one bohr in Å: atomic unit of force in eV/Å.
_FORCE_AU = HARTREE / BOHR


@dataclass(frozen=True)
class DFTSettings:
    """Level of theory and numerical settings of the PySCF reference calculations.

    Attributes:
        xc: exchange–correlation functional in PySCF/libxc notation (``"b3lyp"``, ``"pbe0"``...);
            ``"hf"`` runs restricted Hartree–Fock.
        basis: Gaussian basis set name known to PySCF (use diffuse functions for response
            properties, e.g. ``"aug-cc-pvdz"`` or ``"def2-svpd"``). Elements that need an ECP in this
            basis (e.g. def2 for Z > 36) get it automatically.
        conv_tol: SCF energy convergence, hartree.
        conv_tol_grad: SCF orbital-gradient convergence (atomic units); the density, dipole and
            forces are converged to about this order. Finite differences in the field divide by
            ``field_step``, so keep it small.
        grid_level: PySCF DFT integration grid level (0–9).
        grid_response: include the grid (weight) derivative in DFT forces, making the forces exact
            derivatives of the energy on the moving grid.
        field_step: finite-field step for α and Z*, V/Å.
        max_memory_mb: PySCF memory limit, MB.
        threads: OpenMP threads for PySCF; None keeps the current setting.
        verbose: PySCF verbosity (0 silent, 4 per-cycle SCF output).
        max_cycle: maximum DIIS iterations (if DIIS fails, a second-order solver and a second
            DIIS run of at least 50 iterations are tried before giving up).
        density_fit: density fitting of the Coulomb and exchange integrals (RI-JK with PySCF's
            default JK-fit auxiliary basis for the orbital basis): several times faster for
            clusters, errors of ~1e-5 Eh in energies and consistent analytic forces.
    """

    xc: str = "b3lyp"
    basis: str = "aug-cc-pvdz"
    conv_tol: float = 1e-10
    conv_tol_grad: float = 1e-7
    grid_level: int = 3
    grid_response: bool = True
    field_step: float = 0.01
    max_memory_mb: int = 4000
    threads: int | None = None
    verbose: int = 0
    max_cycle: int = 100
    density_fit: bool = True

    @property
    def is_hf(self) -> bool:
        """True when the method is Hartree–Fock (no grid, no functional)."""
        return self.xc.strip().lower() in ("hf", "rhf")

    @property
    def level_of_theory(self) -> str:
        """Conventional spelling ``"<XC>/<basis>"``, e.g. ``"B3LYP/aug-cc-pVDZ"``."""
        return f"{'HF' if self.is_hf else self.xc.upper()}/{_basis_display_name(self.basis)}"


def _basis_display_name(basis: str) -> str:
    """``aug-cc-pvdz`` -> ``aug-cc-pVDZ``, ``def2-svpd`` -> ``def2-SVPD``, ``6-31g*`` -> ``6-31G*``."""
    name = basis.strip()
    low = name.lower()
    cc = re.fullmatch(r"((?:[a-z]+-)*)cc-p(w?)(c?)v([dtq56])z(.*)", low)
    if cc:
        prefix, w, core, zeta, rest = cc.groups()
        return f"{prefix}cc-p{w}{core.upper()}V{zeta.upper()}Z{rest}"
    if low.startswith("def2-"):
        return "def2-" + name[5:].upper()
    if re.fullmatch(r"[0-9][0-9+\-*()a-z,]*", low):  # Pople basis sets
        return low.upper().replace("(D", "(d").replace("(2D", "(2d").replace(",P)", ",p)")
    return name


# --------------------------------------------------------------------------------------------
# Structure input and the PySCF molecule
# --------------------------------------------------------------------------------------------


def _total_charge(atoms: Atoms) -> int:
    """Integer total charge (e) from ``atoms.info["total_charge"]``, default 0."""
    raw = atoms.info.get("total_charge", 0)
    charge = float(np.asarray(raw).reshape(()))
    if not np.isfinite(charge) or abs(charge - round(charge)) > 1e-8:
        raise ValueError(
            f"atoms.info['total_charge'] = {raw!r}: a molecular DFT label needs an integer "
            "total charge (in e)."
        )
    return int(round(charge))


def _external_field(atoms: Atoms, field: Any = None) -> np.ndarray:
    """Applied field (3,) in V/Å: ``field`` if given, else ``atoms.info["external_field"]`` or 0."""
    raw = atoms.info.get("external_field") if field is None else field
    if raw is None:
        return np.zeros(3)
    value = np.asarray(raw, dtype=float)
    if value.shape != (3,) or not np.all(np.isfinite(value)):
        raise ValueError(f"external field must be 3 finite numbers in V/Å, got {raw!r}.")
    return value.copy()


def _check_basis(symbols: list[str], basis: str) -> dict[str, str]:
    """Check that ``basis`` covers every element; return the ECP map (element -> basis name)."""
    from pyscf import gto

    ecp = {}
    for symbol in sorted(set(symbols)):
        try:
            with warnings.catch_warnings():  # PySCF suggests basis-set-exchange; we explain below
                warnings.simplefilter("ignore", UserWarning)
                shells = gto.basis.load(basis, symbol)
        except Exception as err:  # pyscf raises BasisNotFoundError, KeyError, RuntimeError...
            raise ValueError(
                f"basis '{basis}' has no functions for element {symbol} (PySCF: {err}). Choose a "
                "basis that covers every element of the structure."
            ) from None
        if not shells:
            raise ValueError(f"basis '{basis}' has no functions for element {symbol}.")
        try:
            if gto.basis.load_ecp(basis, symbol):
                ecp[symbol] = basis
        except Exception:
            pass  # no ECP for this element in this basis: all-electron
    return ecp


def build_mole(atoms: Atoms, settings: DFTSettings = DFTSettings(), charge: int | None = None):
    """PySCF ``Mole`` of a closed-shell structure (positions in Å, origin = Cartesian origin).

    Args:
        atoms: the structure; periodic cells are not supported (the cell is ignored).
        settings: basis, memory and verbosity.
        charge: total charge in e; by default ``atoms.info["total_charge"]`` (0 if absent).

    Raises:
        ValueError: an element not covered by the basis, an empty structure, or an odd number of
            electrons (open-shell structures are not supported).
    """
    from pyscf import gto

    if len(atoms) == 0:
        raise ValueError("cannot label an empty structure.")
    if np.any(atoms.pbc):
        raise ValueError("PySCF labels are for molecules and clusters: atoms.pbc must be False.")
    charge = _total_charge(atoms) if charge is None else int(charge)
    num_electrons = int(np.sum(atoms.numbers)) - charge
    if num_electrons % 2 != 0:
        raise ValueError(
            f"odd number of electrons ({num_electrons}, total charge {charge}): open-shell "
            "structures are not supported by fpscf's PySCF labeller (closed-shell restricted "
            "DFT only). Change atoms.info['total_charge'] or the composition."
        )
    symbols = atoms.get_chemical_symbols()
    ecp = _check_basis(symbols, settings.basis)
    mol = gto.Mole()
    positions_bohr = np.asarray(atoms.positions, dtype=float) / BOHR  # fpscf's Å -> bohr
    mol.atom = [[s, tuple(float(x) for x in p)] for s, p in zip(symbols, positions_bohr)]
    mol.unit = "Bohr"
    mol.basis = settings.basis
    mol.ecp = ecp
    mol.charge = charge
    mol.spin = 0
    mol.verbose = settings.verbose
    mol.max_memory = settings.max_memory_mb
    mol.symmetry = False
    mol.cart = False
    mol.build(parse_arg=False, dump_input=False)
    if mol.nelectron <= 0:
        raise ValueError(f"structure has {mol.nelectron} electrons (total charge {charge}).")
    return mol


def _with_threads(settings: DFTSettings):
    from contextlib import nullcontext

    from pyscf import lib

    return nullcontext() if settings.threads is None else lib.with_omp_threads(settings.threads)


def _make_scf(mol, settings: DFTSettings, field_au: np.ndarray):
    """Restricted SCF object with the uniform field (atomic units) in hcore and the nuclear energy."""
    from pyscf import dft, scf

    if settings.is_hf:
        mf = scf.RHF(mol)
    else:
        mf = dft.RKS(mol, xc=settings.xc)
        mf.grids.level = settings.grid_level
    if settings.density_fit:
        mf = mf.density_fit()
    mf.conv_tol = settings.conv_tol
    mf.conv_tol_grad = settings.conv_tol_grad
    mf.max_cycle = settings.max_cycle
    mf.verbose = settings.verbose
    mf.max_memory = settings.max_memory_mb
    if np.any(field_au != 0):
        with mol.with_common_orig((0.0, 0.0, 0.0)):
            r_ints = mol.intor_symmetric("int1e_r", comp=3)  # <μ|r|ν>, bohr
        h_field = np.einsum("x,xij->ij", field_au, r_ints)  # electrons: +ε·r
        h_total = mf.get_hcore(mol) + h_field  # kinetic + nuclear (+ ECP) + field
        e_nuc_field = -float(np.dot(mol.atom_charges(), mol.atom_coords() @ field_au))
        e_nuc = mol.energy_nuc() + e_nuc_field
        mf.get_hcore = lambda *args, **kwargs: h_total
        mf.energy_nuc = lambda *args, **kwargs: e_nuc
    return mf


def _make_gradients(mf, settings: DFTSettings, field_au: np.ndarray):
    """Nuclear-gradient object including the field's basis-function and nuclear terms."""
    grad = mf.nuc_grad_method()
    if not settings.is_hf:
        grad.grid_response = settings.grid_response
    if np.any(field_au != 0):
        mol = mf.mol
        with mol.with_common_orig((0.0, 0.0, 0.0)):
            # irp[i, j][ν, μ] = <ν| r_i ∂_j |μ>, so <∂_j μ| r_i |ν> = irp[i, j].T (real orbitals).
            irp = mol.intor("int1e_irp", comp=9).reshape(3, 3, mol.nao, mol.nao)
        # Gradient-object convention: get_hcore()[j] = −<∂_j μ|h|ν> (rows μ on the moving atom).
        field_deriv = -np.einsum("i,ijnm->jmn", field_au, irp)
        base_get_hcore = grad.get_hcore
        base_grad_nuc = grad.grad_nuc
        nuclear_field_grad = -np.outer(mol.atom_charges(), field_au)  # d(−Z_A ε·R_A)/dR_A

        def get_hcore(mol=None):
            return base_get_hcore(mol) + field_deriv

        def grad_nuc(mol=None, atmlst=None):
            g = base_grad_nuc(mol, atmlst)
            rows = nuclear_field_grad if atmlst is None else nuclear_field_grad[atmlst]
            return g + rows

        grad.get_hcore = get_hcore
        grad.grad_nuc = grad_nuc
    return grad


def _run_scf(mf, dm0=None):
    """Converge ``mf`` with DIIS; if that fails, get close with the second-order (Newton) solver
    and polish with DIIS from there (SOSCF alone can stall just above tight ``conv_tol_grad``)."""
    mf.kernel(dm0=dm0)
    if mf.converged:
        return mf
    second_order = mf.newton()
    second_order.max_cycle = 50
    second_order.conv_tol = max(mf.conv_tol, 1e-8)
    second_order.conv_tol_grad = max(mf.conv_tol_grad, 1e-5)
    second_order.kernel(mf.mo_coeff, mf.mo_occ)
    max_cycle = mf.max_cycle
    mf.max_cycle = max(max_cycle, 50)
    try:
        mf.kernel(dm0=second_order.make_rdm1())
    finally:
        mf.max_cycle = max_cycle
    if not mf.converged:
        raise RuntimeError(
            f"PySCF SCF did not converge (DIIS, then second-order solver and DIIS) for a "
            f"{mf.mol.natm}-atom structure ({mf.mol.nelectron} electrons); labels would be "
            "unreliable. Check the geometry, or raise DFTSettings.max_cycle."
        )
    return mf


def _dipole_au(mol, dm: np.ndarray) -> np.ndarray:
    """D = Σ_A Z_A R_A − ∫ρ_e r about the origin, in e·bohr."""
    with mol.with_common_orig((0.0, 0.0, 0.0)):
        r_ints = mol.intor_symmetric("int1e_r", comp=3)
    electronic = np.einsum("xij,ji->x", r_ints, dm).real
    return mol.atom_charges() @ mol.atom_coords() - electronic


def dft_energy_forces(
    atoms: Atoms,
    settings: DFTSettings = DFTSettings(),
    field: Any = None,
    *,
    forces: bool = True,
    dm0: np.ndarray | None = None,
) -> dict[str, Any]:
    """Energy, forces and dipole of one closed-shell structure in a uniform field.

    Args:
        atoms: the structure (positions in Å); total charge from ``atoms.info["total_charge"]``.
        settings: level of theory and numerical settings.
        field: applied field (3,) in V/Å; None takes ``atoms.info["external_field"]`` (default 0).
        forces: compute forces (skip for energy/dipole-only calculations).
        dm0: initial AO density matrix (e.g. the zero-field ``"dm"`` of a previous call on the
            same structure and settings).

    Returns:
        ``{"energy": float eV (electric enthalpy U − ε·D), "forces": (N, 3) eV/Å (absent if
        ``forces=False``), "dipole": (3,) e·Å, "field": (3,) V/Å, "mf": the converged PySCF SCF
        object (its ``mol``, ``grids``, ``e_tot`` in hartree; the field is in its ``get_hcore`` and
        ``energy_nuc``), "dm": (nao, nao) converged AO density matrix (electrons), "mol": the
        PySCF molecule}``.

    Raises:
        ValueError: odd electron count (open shell), element not covered by the basis.
        RuntimeError: the SCF did not converge.
    """
    field_vpa = _external_field(atoms, field)
    field_au = field_vpa / ATOMIC_UNIT_FIELD
    mol = build_mole(atoms, settings)
    with _with_threads(settings):
        mf = _make_scf(mol, settings, field_au)
        _run_scf(mf, dm0)
        dm = mf.make_rdm1()
        result: dict[str, Any] = {
            "energy": float(mf.e_tot) * HARTREE,
            "dipole": _dipole_au(mol, dm) * BOHR,
            "field": field_vpa,
            "mf": mf,
            "dm": dm,
            "mol": mol,
        }
        if forces:
            grad = _make_gradients(mf, settings, field_au)
            grad.verbose = settings.verbose
            result["forces"] = -np.asarray(grad.kernel()) * _FORCE_AU
    return result


# --------------------------------------------------------------------------------------------
# Hirshfeld partition
# --------------------------------------------------------------------------------------------

_FREE_ATOM_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
_RADIAL_GRID = np.concatenate([[0.0], np.geomspace(1e-5, 20.0, 1200)])  # bohr
_SPHERE_DIRECTIONS = np.array(
    [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]]
    + [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)],
    dtype=float,
)
_SPHERE_DIRECTIONS /= np.linalg.norm(_SPHERE_DIRECTIONS, axis=1, keepdims=True)


def free_atom_log_density(symbol: str, settings: DFTSettings) -> tuple[np.ndarray, np.ndarray]:
    """Radial table ``(r, log ρ(r))`` of a free neutral atom (r in bohr, ρ in electrons/bohr³).

    The atom is a spherically averaged, fractional-occupation restricted calculation at the
    same functional and basis (PySCF's ``atom_ks.get_atm_nrks`` / ``atom_hf.get_atm_nrhf``, as used
    for its atomic initial guess); the density is further averaged over 14 directions. Cached per
    element, functional and basis.
    """
    key = (symbol, settings.xc.strip().lower(), settings.basis.strip().lower())
    if key in _FREE_ATOM_CACHE:
        return _FREE_ATOM_CACHE[key]
    from ase.data import atomic_numbers
    from pyscf import gto
    from pyscf.dft import numint
    from pyscf.scf import atom_hf, atom_ks

    ecp = _check_basis([symbol], settings.basis)
    atom = gto.Mole()
    atom.atom = [[symbol, (0.0, 0.0, 0.0)]]
    atom.basis = settings.basis
    atom.ecp = ecp
    atom.charge = 0
    atom.verbose = 0
    atom.max_memory = settings.max_memory_mb
    atom.spin = atomic_numbers[symbol] % 2  # the atomic solver below is spin-averaged anyway
    atom.build(parse_arg=False, dump_input=False)
    with _with_threads(settings), warnings.catch_warnings():
        # PySCF's atomic solver calls its own deprecated linear-dependency helper.
        warnings.simplefilter("ignore", DeprecationWarning)
        if settings.is_hf:
            results = atom_hf.get_atm_nrhf(atom)
        else:
            results = atom_ks.get_atm_nrks(atom, xc=settings.xc)
        _, _, mo_coeff, mo_occ = next(iter(results.values()))
        occupied = mo_occ > 0
        orbitals = mo_coeff[:, occupied]
        points = (_RADIAL_GRID[:, None, None] * _SPHERE_DIRECTIONS[None]).reshape(-1, 3)
        ao = numint.eval_ao(atom, points, deriv=0)
        psi = ao @ orbitals
        rho = (psi**2) @ mo_occ[occupied]  # sum of non-negative terms: positive
    rho = rho.reshape(len(_RADIAL_GRID), len(_SPHERE_DIRECTIONS)).mean(axis=1)
    log_rho = np.log(np.maximum(rho, 1e-300))
    table = (_RADIAL_GRID.copy(), log_rho)
    _FREE_ATOM_CACHE[key] = table
    return table


def _interp_log_density(table: tuple[np.ndarray, np.ndarray], r: np.ndarray) -> np.ndarray:
    """log ρ(r) from a radial table, continued linearly (exponential decay) beyond its end."""
    grid, log_rho = table
    values = np.interp(r, grid, log_rho)
    slope = (log_rho[-1] - log_rho[-2]) / (grid[-1] - grid[-2])
    beyond = r > grid[-1]
    values[beyond] = log_rho[-1] + slope * (r[beyond] - grid[-1])
    return values


def _integration_grid(mf_or_mol, settings: DFTSettings):
    """The SCF object's DFT grid, or a new grid at ``settings.grid_level`` for HF / a bare mol."""
    from pyscf import dft

    grids = getattr(mf_or_mol, "grids", None)
    if grids is not None:
        if grids.coords is None:
            grids.build(with_non0tab=True)
        return grids
    mol = getattr(mf_or_mol, "mol", mf_or_mol)
    grids = dft.gen_grid.Grids(mol)
    grids.level = settings.grid_level
    grids.build(with_non0tab=True)
    return grids


def hirshfeld_multipoles(
    atoms: Atoms,
    density: Any,
    settings: DFTSettings = DFTSettings(),
    block_size: int = 20000,
) -> np.ndarray:
    """Hirshfeld charges and atomic dipoles ``[q_A, d_x, d_y, d_z]`` (N, 4) in e and e·Å.

    ``q_A = Z_A − ∫ w_A ρ_e`` and ``d_A = −∫ w_A ρ_e (r − R_A)`` with the stockholder weights
    ``w_A(r) = ρ_A^free(|r − R_A|) / Σ_B ρ_B^free(|r − R_B|)`` of spherically averaged free neutral
    atoms at the same level (:func:`free_atom_log_density`). Integrals run over the SCF's DFT grid,
    so ``Σ_A q_A`` equals the total charge and ``Σ_A (q_A R_A + d_A)`` equals the dipole D up to
    the grid's integration error. Z_A is the (ECP-effective) nuclear charge.

    Args:
        atoms: the structure the density belongs to.
        density: a converged PySCF SCF object (``dft_energy_forces(...)["mf"]``; its grid is used)
            or an AO density matrix (nao, nao) for ``build_mole(atoms, settings)`` (a grid at
            ``settings.grid_level`` is built).
        settings: level of theory of the free atoms (and basis / grid for a bare density matrix).
        block_size: grid points per block (memory).
    """
    from pyscf.dft import numint

    if isinstance(density, np.ndarray):
        mol = build_mole(atoms, settings)
        dm = density
        grids = _integration_grid(mol, settings)
    else:
        mol = density.mol
        dm = density.make_rdm1()
        grids = _integration_grid(density, settings)
    if dm.shape != (mol.nao, mol.nao):
        raise ValueError(f"density matrix has shape {dm.shape}, expected {(mol.nao, mol.nao)}.")
    symbols = [mol.atom_pure_symbol(i) for i in range(mol.natm)]
    tables = [free_atom_log_density(s, settings) for s in symbols]
    centres = mol.atom_coords()  # bohr
    populations = np.zeros(mol.natm)
    first_moments = np.zeros((mol.natm, 3))
    with _with_threads(settings):
        for start in range(0, len(grids.weights), block_size):
            coords = grids.coords[start:start + block_size]
            weights = grids.weights[start:start + block_size]
            ao = numint.eval_ao(mol, coords, deriv=0)
            rho = numint.eval_rho(mol, ao, dm, xctype="LDA", hermi=1)
            offsets = coords[None, :, :] - centres[:, None, :]  # (N, G, 3)
            distances = np.linalg.norm(offsets, axis=2)
            log_free = np.stack([_interp_log_density(t, d) for t, d in zip(tables, distances)])
            log_free -= log_free.max(axis=0, keepdims=True)
            share = np.exp(log_free)
            share /= share.sum(axis=0, keepdims=True)  # Hirshfeld weights w_A(r)
            density_share = share * (rho * weights)[None, :]  # (N, G) electrons per point
            populations += density_share.sum(axis=1)
            first_moments += np.einsum("ag,agx->ax", density_share, offsets)
    charges = mol.atom_charges() - populations
    dipoles = -first_moments * BOHR
    return np.concatenate([charges[:, None], dipoles], axis=1)


# --------------------------------------------------------------------------------------------
# Labelling
# --------------------------------------------------------------------------------------------


def field_response(
    atoms: Atoms,
    settings: DFTSettings = DFTSettings(),
    field: Any = None,
    dm0: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Polarizability and Born effective charges by central finite differences in the field.

    Six SCFs at ``field ± h e_a`` (h = ``settings.field_step`` V/Å, a = x, y, z), each started from
    ``dm0`` (the density at ``field``) and converged to ``settings.conv_tol``/``conv_tol_grad``.

    Returns:
        ``{"polarizability": (3, 3) e·Å²/V, α_ab = ∂D_b/∂ε_a symmetrised,
        "born_effective_charges": (N, 3, 3) e, Z*[I, a, b] = ∂F_{I,b}/∂ε_a}``.
    """
    base = _external_field(atoms, field)
    step = float(settings.field_step)
    if not step > 0:
        raise ValueError(f"field_step must be positive (V/Å), got {settings.field_step}.")
    dipole_derivative = np.zeros((3, 3))
    born = np.zeros((len(atoms), 3, 3))
    for a in range(3):
        shift = np.zeros(3)
        shift[a] = step
        plus = dft_energy_forces(atoms, settings, field=base + shift, dm0=dm0)
        minus = dft_energy_forces(atoms, settings, field=base - shift, dm0=dm0)
        dipole_derivative[a] = (plus["dipole"] - minus["dipole"]) / (2 * step)
        born[:, a, :] = (plus["forces"] - minus["forces"]) / (2 * step)
    polarizability = 0.5 * (dipole_derivative + dipole_derivative.T)
    return {"polarizability": polarizability, "born_effective_charges": born}


def label_structure(
    atoms: Atoms, settings: DFTSettings = DFTSettings(), response: bool = False
) -> Atoms:
    """Label one closed-shell molecule or cluster with PySCF.

    The total charge is ``atoms.info["total_charge"]`` (default 0) and the applied field
    ``atoms.info["external_field"]`` (V/Å, default 0).

    Returns:
        A copy of ``atoms`` without a calculator, with
        ``info``: ``energy`` (eV, electric enthalpy), ``dipole`` (3,) e·Å, ``total_charge`` (e),
        ``external_field`` (3,) V/Å, ``level_of_theory`` (e.g. ``"B3LYP/aug-cc-pVDZ"``) and, with
        ``response=True``, ``polarizability`` (3, 3) e·Å²/V;
        ``arrays``: ``forces`` (N, 3) eV/Å, ``charges`` (N,) e (Hirshfeld),
        ``atomic_multipoles`` (N, 4) ``[q, d_x, d_y, d_z]`` in e, e·Å (Hirshfeld) and, with
        ``response=True``, ``born_effective_charges`` (N, 9) e, flattened row-major (index 3a + b,
        ``Z*[I, a, b] = ∂F_{I,b}/∂ε_a``). Stale ``polarizability`` / ``born_effective_charges``
        labels of the input are removed when ``response=False``.

    Raises:
        ValueError: odd electron count (open shell is not supported), element not in the basis.
    """
    field = _external_field(atoms)
    charge = _total_charge(atoms)
    result = dft_energy_forces(atoms, settings, field=field)
    multipoles = hirshfeld_multipoles(atoms, result["mf"], settings)
    labelled = atoms.copy()
    labelled.calc = None
    for key in ("polarizability", "born_effective_charges"):
        labelled.info.pop(key, None)
        labelled.arrays.pop(key, None)
    labelled.info["energy"] = result["energy"]
    labelled.info["dipole"] = np.asarray(result["dipole"], dtype=float)
    labelled.info["total_charge"] = float(charge)
    labelled.info["external_field"] = field
    labelled.info["level_of_theory"] = settings.level_of_theory
    labelled.arrays["forces"] = np.asarray(result["forces"], dtype=float)
    labelled.arrays["charges"] = multipoles[:, 0].copy()
    labelled.arrays["atomic_multipoles"] = multipoles
    if response:
        derivatives = field_response(atoms, settings, field=field, dm0=result["dm"])
        labelled.info["polarizability"] = derivatives["polarizability"]
        labelled.arrays["born_effective_charges"] = derivatives["born_effective_charges"].reshape(
            len(atoms), 9
        )
    return labelled


__all__ = [
    "DFTSettings",
    "build_mole",
    "dft_energy_forces",
    "field_response",
    "free_atom_log_density",
    "hirshfeld_multipoles",
    "label_structure",
]
