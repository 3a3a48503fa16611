"""B3LYP/aug-cc-pVDZ harmonic vibrational reference of the water monomer and the water dimer.

Run it from the repository root::

    python examples/water_model/dft_reference.py            # monomer, then dimer
    python examples/water_model/dft_reference.py --systems monomer --threads 2

Level of theory: the package default :class:`fpscf.datagen.pyscf_labels.DFTSettings` (B3LYP,
aug-cc-pVDZ, RI-JK density fitting, grid level 3 with grid response, SCF ``conv_tol`` 1e-10 Eh and
``conv_tol_grad`` 1e-7), PySCF driven through :func:`fpscf.datagen.pyscf_labels.dft_energy_forces`.

For each system the script

1. builds the start geometry (monomer: ``ase.build.molecule("H2O")``; dimer: a trans-linear
   hydrogen-bonded pair with O–O = 2.9 Å, pre-relaxed with GFN2-xTB from tblite),
2. relaxes it at the DFT level with ASE's BFGS to max |F| ≤ 2e-3 eV/Å,
3. displaces every atom by ±0.005 Å along x, y, z and computes, at the relaxed geometry and at
   each displaced one, the energy, forces, dipole and the analytic (CPHF, density-fitted response)
   polarizability α of PySCF's ``pyscf.prop.polarizability``,
4. builds by central differences the Hessian ``H[3I+b, 3J+c] = ∂²E/∂R_{I,b}∂R_{J,c}`` (eV/Å²,
   symmetrised), the Born charges ``Z*[I, a, b] = ∂D_a/∂R_{I,b}`` (e) and the Raman tensors
   ``R[I, c, a, b] = ∂α_ab/∂R_{I,c}`` (e·Å/V),
5. gets the normal modes, IR intensities and Raman activities with
   :func:`fpscf.calculators.spectra.molecule_normal_modes` and
   :func:`fpscf.calculators.spectra.mode_intensities` (ASE's standard isotopic masses),
6. for the monomer only, compares α and Z* with the finite-field values of
   :func:`fpscf.datagen.pyscf_labels.field_response` (Z* = ∂F/∂ε there, six SCFs).

Output (units of docs/physics.md, Units and signs: Å, eV, e, V/Å):

* ``examples/water_model/dft_reference.json``: one entry per system (see :func:`system_entry`)
  and ``metadata``; read it with :func:`load_dft_reference`.
* ``examples/water_model/dft_cache/<system>/<label>_<hash>.json``: every single-point result
  (energy, forces, dipole, α when computed), keyed by a hash of the geometry and the settings and
  written atomically, so a rerun after an interruption recomputes nothing already done.

PySCF runs with ``--threads`` OpenMP threads (default 1). Measured wall time on one thread of a
busy 2-core machine: 42 s for the monomer (26 single points) and 9 min for the dimer (69 single
points: 32 BFGS steps, the reference α, 36 displacements); a rerun from the cache takes seconds.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy / PySCF load their thread pools

import argparse
import dataclasses
import glob
import hashlib
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import molecule
from ase.calculators.calculator import Calculator, all_changes
from ase.optimize import BFGS

from fpscf.atomic_files import atomic_write_text
from fpscf.calculators.spectra import mode_intensities, molecule_normal_modes
from fpscf.datagen.pyscf_labels import DFTSettings, dft_energy_forces, field_response
from fpscf.units import ATOMIC_UNIT_POLARIZABILITY, COULOMB_CONSTANT

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "dft_reference.json"
DEFAULT_CACHE = HERE / "dft_cache"

#: Finite-difference displacement of the Hessian, Born charges and Raman tensors, Å.
DISPLACEMENT_STEP = 0.005
#: Force convergence of the DFT relaxation, eV/Å.
RELAX_FMAX = 2e-3
#: Maximum number of BFGS steps of the DFT relaxation.
RELAX_MAX_STEPS = 300
#: Force convergence of the GFN2-xTB pre-relaxation of the dimer, eV/Å.
XTB_FMAX = 1e-2
#: CPHF residual tolerance and iteration limit of the analytic polarizability.
CPHF_CONV_TOL = 1e-10
CPHF_MAX_CYCLE = 50

SYSTEMS = ("monomer", "dimer")

UNITS = {
    "positions": "Angstrom",
    "masses": "amu",
    "energy": "eV",
    "forces": "eV/Angstrom",
    "dipole": "e Angstrom (about the Cartesian origin; the systems are neutral)",
    "polarizability": "e Angstrom^2/V (alpha_ab = -d2E/deps_a deps_b); x 14.399645 gives Angstrom^3",
    "hessian": "eV/Angstrom^2, [3I+b, 3J+c] = d2E/dR_Ib dR_Jc (symmetrised)",
    "born_effective_charges": "e, [I, a, b] = dD_a/dR_Ib",
    "raman_tensors": "e Angstrom/V, [I, c, a, b] = dalpha_ab/dR_Ic",
    "frequencies": "cm^-1 (vibrations only; imaginary as negative)",
    "mode_eigenvectors": "1, mass-weighted orthonormal eigenvectors [k, I, b] of the vibrations",
    "ir_intensities": "km/mol",
    "ir_intensities_e2_per_amu": "e^2/amu (|dD/dQ|^2)",
    "raman_activities": "Angstrom^4/amu (45 a^2 + 7 gamma^2)",
    "depolarization_ratios": "1 (3 gamma^2/(45 a^2 + 4 gamma^2), NaN stored as null)",
}


# --------------------------------------------------------------------------------------------
# Start geometries
# --------------------------------------------------------------------------------------------


def monomer_start() -> Atoms:
    """Water monomer from ASE's G2 set (positions in Å, in the yz plane)."""
    return molecule("H2O")


def dimer_guess(oo_distance: float = 2.9) -> Atoms:
    """Trans-linear hydrogen-bonded water dimer (Cs, mirror plane xy), positions in Å.

    Donor O at the origin with its bonded H on the +x axis, acceptor O at ``(oo_distance, 0, 0)``
    with its bisector tilted 57° from the O–O axis, away from the donor's free H.
    """
    r_oh, hoh = 0.97, math.radians(104.5)
    donor = [
        ("O", (0.0, 0.0, 0.0)),
        ("H", (r_oh, 0.0, 0.0)),
        ("H", (r_oh * math.cos(hoh), r_oh * math.sin(hoh), 0.0)),
    ]
    tilt = math.radians(57.0)
    bisector = np.array([math.cos(tilt), -math.sin(tilt), 0.0])
    acceptor_o = np.array([oo_distance, 0.0, 0.0])
    half = hoh / 2
    acceptor = [("O", tuple(acceptor_o))] + [
        ("H", tuple(acceptor_o + r_oh * (math.cos(half) * bisector + sign * math.sin(half) * np.array([0, 0, 1.0]))))
        for sign in (1.0, -1.0)
    ]
    symbols = [s for s, _ in donor + acceptor]
    positions = [p for _, p in donor + acceptor]
    return Atoms(symbols, positions=positions)


def dimer_start(cache_dir: Path) -> Atoms:
    """:func:`dimer_guess` relaxed with GFN2-xTB (tblite) to ``XTB_FMAX``; cached in
    ``cache_dir/xtb_prerelax.json``. Positions in Å."""
    path = cache_dir / "xtb_prerelax.json"
    if path.exists():
        data = json.loads(path.read_text())
        return Atoms(data["symbols"], positions=data["positions"])
    from tblite.ase import TBLite

    atoms = dimer_guess()
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    start = time.perf_counter()
    optimizer = BFGS(atoms, logfile=None)
    optimizer.run(fmax=XTB_FMAX, steps=500)
    oo = atoms.get_distance(0, 3)
    print(f"[dimer] GFN2-xTB pre-relaxation: {optimizer.nsteps} steps, O-O {oo:.3f} A, "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    _write_json(path, {"symbols": atoms.get_chemical_symbols(), "positions": atoms.positions.tolist(),
                       "method": "GFN2-xTB (tblite), ASE BFGS", "fmax_eV_per_A": XTB_FMAX})
    return Atoms(atoms.get_chemical_symbols(), positions=atoms.positions)


# --------------------------------------------------------------------------------------------
# Cached single points
# --------------------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1, allow_nan=False) + "\n")


def _settings_signature(settings: DFTSettings) -> dict[str, Any]:
    """Settings that change the numbers (threads, memory and verbosity do not)."""
    data = dataclasses.asdict(settings)
    for key in ("threads", "max_memory_mb", "verbose"):
        data.pop(key)
    return data


class SinglePointCache:
    """DFT single points of one system, cached in ``directory/<label>_<hash>.json``.

    The hash covers the symbols, the positions (rounded to 1e-10 Å) and the settings signature, so
    a geometry is computed once whatever label it is asked for with. Each entry holds
    ``energy`` (eV), ``forces`` (N, 3) eV/Å, ``dipole`` (3,) e·Å and, once asked for,
    ``polarizability`` (3, 3) e·Å²/V.
    """

    def __init__(self, system: str, directory: Path, settings: DFTSettings) -> None:
        self.system = system
        self.directory = directory
        self.settings = settings
        self.dm0: np.ndarray | None = None  # last converged AO density matrix (SCF start guess)
        self.computed = 0
        self.reused = 0

    def key(self, atoms: Atoms) -> str:
        """Hash (16 hex digits) of symbols, positions and settings."""
        payload = json.dumps({
            "symbols": atoms.get_chemical_symbols(),
            "positions": [f"{x:.10f}" for x in np.asarray(atoms.positions, float).ravel()],
            "settings": _settings_signature(self.settings),
        }, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def _find(self, digest: str) -> Path | None:
        matches = sorted(glob.glob(str(self.directory / f"*_{digest}.json")))
        return Path(matches[0]) if matches else None

    def compute(self, atoms: Atoms, label: str, polarizability: bool = False) -> tuple[dict[str, Any], bool]:
        """Energy, forces, dipole (and α if asked) at ``atoms``; returns (entry, from_cache).

        Arrays come back as numpy arrays. A cached entry without α is completed by one more SCF
        (started from the last density) and the CPHF solve, and rewritten.
        """
        digest = self.key(atoms)
        path = self._find(digest)
        if path is not None:
            entry = json.loads(path.read_text())
            if not polarizability or "polarizability" in entry:
                self.reused += 1
                return _arrays(entry), True
        else:
            path = self.directory / f"{label}_{digest}.json"
        result = dft_energy_forces(atoms, self.settings, field=np.zeros(3), dm0=self.dm0)
        self.dm0 = result["dm"]
        entry = {
            "label": path.stem.rsplit("_", 1)[0],
            "symbols": atoms.get_chemical_symbols(),
            "positions": np.asarray(atoms.positions, float).tolist(),
            "energy": float(result["energy"]),
            "forces": np.asarray(result["forces"], float).tolist(),
            "dipole": np.asarray(result["dipole"], float).tolist(),
            "level_of_theory": self.settings.level_of_theory,
            "settings": _settings_signature(self.settings),
            "units": {"energy": "eV", "forces": "eV/Angstrom", "dipole": "e Angstrom",
                      "polarizability": "e Angstrom^2/V"},
        }
        if polarizability:
            entry["polarizability"] = analytic_polarizability(result["mf"], self.settings).tolist()
        _write_json(path, entry)
        self.computed += 1
        return _arrays(entry), False


def _arrays(entry: dict[str, Any]) -> dict[str, Any]:
    """Entry with its numeric lists as float arrays."""
    out = dict(entry)
    for key in ("positions", "forces", "dipole", "polarizability"):
        if key in out:
            out[key] = np.asarray(out[key], float)
    return out


def analytic_polarizability(mf: Any, settings: DFTSettings) -> np.ndarray:
    """Static α (3, 3) in e·Å²/V of a converged zero-field PySCF SCF object.

    Coupled-perturbed KS with PySCF's ``pyscf.prop.polarizability`` on the same (density-fitted)
    SCF object, i.e. the response of the RI-JK Hamiltonian, matching finite-field differences of
    :func:`dft_energy_forces` dipoles (checked on the monomer, see ``checks`` in the output).
    Atomic units (e²a0²/Eh) times BOHR²/HARTREE give e·Å²/V.
    """
    from pyscf import lib

    with warnings.catch_warnings():  # pyscf.prop modules warn "under testing" on import
        warnings.simplefilter("ignore", UserWarning)
        from pyscf.prop.polarizability.rhf import Polarizability

    solver = Polarizability(mf)
    solver.conv_tol = CPHF_CONV_TOL
    solver.max_cycle_cphf = CPHF_MAX_CYCLE
    solver.verbose = 0
    threads = settings.threads or lib.num_threads()
    with lib.with_omp_threads(threads):
        alpha_au = np.asarray(solver.polarizability(), float)
    return 0.5 * (alpha_au + alpha_au.T) * ATOMIC_UNIT_POLARIZABILITY


class CachedDFTCalculator(Calculator):
    """ASE calculator (energy eV, forces eV/Å, dipole e·Å) on a :class:`SinglePointCache`;
    prints one line per relaxation step."""

    implemented_properties = ["energy", "forces", "dipole"]

    def __init__(self, cache: SinglePointCache) -> None:
        super().__init__()
        self.cache = cache
        self.step = 0

    def calculate(self, atoms: Atoms | None = None, properties: list[str] | None = None,
                  system_changes: list[str] = all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        start = time.perf_counter()
        entry, cached = self.cache.compute(self.atoms, f"relax{self.step:03d}")
        fmax = float(np.linalg.norm(entry["forces"], axis=1).max())
        print(f"[{self.cache.system}] relax step {self.step:3d}: E = {entry['energy']:.8f} eV, "
              f"max|F| = {fmax:.2e} eV/A ({'cached' if cached else f'{time.perf_counter() - start:.1f} s'})",
              flush=True)
        self.step += 1
        self.results = {"energy": entry["energy"], "forces": entry["forces"], "dipole": entry["dipole"]}


# --------------------------------------------------------------------------------------------
# The workflow
# --------------------------------------------------------------------------------------------


def relax(atoms: Atoms, cache: SinglePointCache) -> Atoms:
    """DFT relaxation with ASE BFGS to ``RELAX_FMAX`` eV/Å (replayed from the cache on a rerun)."""
    atoms = atoms.copy()
    atoms.calc = CachedDFTCalculator(cache)
    optimizer = BFGS(atoms, logfile=None)
    converged = optimizer.run(fmax=RELAX_FMAX, steps=RELAX_MAX_STEPS)
    if not converged:
        raise RuntimeError(f"[{cache.system}] BFGS did not reach fmax {RELAX_FMAX} eV/A in {RELAX_MAX_STEPS} steps")
    relaxed = Atoms(atoms.get_chemical_symbols(), positions=atoms.positions.copy())
    print(f"[{cache.system}] relaxed in {optimizer.nsteps} BFGS steps", flush=True)
    return relaxed


def finite_differences(atoms: Atoms, cache: SinglePointCache, step: float = DISPLACEMENT_STEP) -> dict[str, Any]:
    """Hessian, Born charges and Raman tensors by central differences of ±``step`` Å displacements.

    Returns ``{"reference": entry at ``atoms`` (with α), "hessian": (3N, 3N) eV/Å² symmetrised,
    "hessian_asymmetry": max |H − Hᵀ| before symmetrising (eV/Å²), "born_effective_charges":
    (N, 3, 3) e, "raman_tensors": (N, 3, 3, 3) e·Å/V}``.
    """
    start = time.perf_counter()
    reference, cached = cache.compute(atoms, "reference", polarizability=True)
    print(f"[{cache.system}] reference point (with alpha) "
          f"{'cached' if cached else f'done in {time.perf_counter() - start:.1f} s'}", flush=True)
    n_atoms = len(atoms)
    hessian = np.zeros((3 * n_atoms, 3 * n_atoms))
    born = np.zeros((n_atoms, 3, 3))
    raman = np.zeros((n_atoms, 3, 3, 3))
    total = 6 * n_atoms
    done = 0
    for atom in range(n_atoms):
        for axis in range(3):
            points = []
            for sign, name in ((1.0, "plus"), (-1.0, "minus")):
                displaced = atoms.copy()
                displaced.positions[atom, axis] += sign * step
                start = time.perf_counter()
                point, cached = cache.compute(displaced, f"disp_a{atom}_{'xyz'[axis]}_{name}", polarizability=True)
                done += 1
                print(f"[{cache.system}] displacement {done}/{total} "
                      f"{'cached' if cached else f'done in {time.perf_counter() - start:.1f} s'}", flush=True)
                points.append(point)
            plus, minus = points
            hessian[3 * atom + axis] = -(plus["forces"] - minus["forces"]).ravel() / (2 * step)
            born[atom, :, axis] = (plus["dipole"] - minus["dipole"]) / (2 * step)
            raman[atom, axis] = (plus["polarizability"] - minus["polarizability"]) / (2 * step)
    asymmetry = float(np.abs(hessian - hessian.T).max())
    return {
        "reference": reference,
        "hessian": 0.5 * (hessian + hessian.T),
        "hessian_asymmetry": asymmetry,
        "born_effective_charges": born,
        "raman_tensors": raman,
    }


def field_check(atoms: Atoms, cache_dir: Path, settings: DFTSettings, reference: dict[str, Any],
                born: np.ndarray) -> dict[str, float]:
    """Compare the analytic α and Z* = ∂D/∂R with finite-field values (Z* = ∂F/∂ε, α = ∂D/∂ε)
    of :func:`field_response` at ``atoms`` (six SCFs, cached in ``cache_dir/field_response.json``)."""
    path = cache_dir / "field_response.json"
    digest = SinglePointCache("check", cache_dir, settings).key(atoms)
    data = json.loads(path.read_text()) if path.exists() else {}
    if data.get("hash") != digest:
        start = time.perf_counter()
        response = field_response(atoms, settings, field=np.zeros(3))
        data = {"hash": digest, "field_step_V_per_A": settings.field_step,
                "polarizability": response["polarizability"].tolist(),
                "born_effective_charges": response["born_effective_charges"].tolist()}
        _write_json(path, data)
        print(f"[check] finite-field alpha and Z* done in {time.perf_counter() - start:.1f} s", flush=True)
    alpha_ff = np.asarray(data["polarizability"])
    born_ff = np.asarray(data["born_effective_charges"])
    alpha = reference["polarizability"]
    return {
        "alpha_analytic_vs_finite_field_max_rel": float(np.abs(alpha - alpha_ff).max() / np.abs(alpha).max()),
        "born_dD_dR_vs_dF_deps_max_abs_e": float(np.abs(born - born_ff).max()),
        "born_dD_dR_vs_dF_deps_max_rel": float(np.abs(born - born_ff).max() / np.abs(born).max()),
        "finite_field_step_V_per_A": float(data["field_step_V_per_A"]),
    }


def _nan_to_none(values: np.ndarray) -> list[Any]:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, float)]


def system_entry(atoms: Atoms, fd: dict[str, Any]) -> dict[str, Any]:
    """JSON entry of one system: the relaxed structure, its response tensors and the spectrum.

    Keys: symbols, positions (N,3) Å, masses (N,) amu, energy eV, forces (N,3) eV/Å, max_force,
    dipole (3,) e·Å, polarizability (3,3) e·Å²/V, polarizability_isotropic_A3, hessian (3N,3N) eV/Å²,
    born_effective_charges (N,3,3) e, raman_tensors (N,3,3,3) e·Å/V, and per vibration (M = 3N−6):
    frequencies cm⁻¹, mode_eigenvectors (M,N,3), ir_intensities km/mol, ir_intensities_e2_per_amu,
    raman_activities Å⁴/amu, depolarization_ratios; checks (sum rules, FD quality). :func:`run`
    adds wall_time_s, single_points_computed and single_points_from_cache of the run that wrote
    the entry (a rerun from the cache reports seconds and 0 computed).
    """
    reference = fd["reference"]
    masses = atoms.get_masses()
    modes = molecule_normal_modes(fd["hessian"], masses, atoms.positions)
    intensities = mode_intensities(modes, fd["born_effective_charges"], fd["raman_tensors"])
    vib = ~modes.rigid
    # Unprojected eigenvalues: the 6 smallest |ν| measure how well the FD Hessian keeps the rigid
    # translations and rotations free (grid and finite-difference noise).
    from fpscf.calculators.spectra import frequencies_from_eigenvalues, mass_weighted

    raw = np.sort(frequencies_from_eigenvalues(np.linalg.eigvalsh(mass_weighted(fd["hessian"], masses))))
    raw_rigid = raw[np.argsort(np.abs(raw))[:6]]
    alpha = reference["polarizability"]
    return {
        "symbols": atoms.get_chemical_symbols(),
        "positions": atoms.positions.tolist(),
        "masses": masses.tolist(),
        "energy": float(reference["energy"]),
        "forces": reference["forces"].tolist(),
        "max_force": float(np.linalg.norm(reference["forces"], axis=1).max()),
        "dipole": reference["dipole"].tolist(),
        "polarizability": alpha.tolist(),
        "polarizability_isotropic_A3": float(np.trace(alpha) / 3 * COULOMB_CONSTANT),
        "hessian": fd["hessian"].tolist(),
        "born_effective_charges": fd["born_effective_charges"].tolist(),
        "raman_tensors": fd["raman_tensors"].tolist(),
        "frequencies": modes.frequencies[vib].tolist(),
        "mode_eigenvectors": modes.eigenvectors[vib].tolist(),
        "ir_intensities": intensities.ir_intensity_km_per_mol[vib].tolist(),
        "ir_intensities_e2_per_amu": intensities.ir_intensity[vib].tolist(),
        "raman_activities": intensities.raman_activity[vib].tolist(),
        "depolarization_ratios": _nan_to_none(intensities.depolarization_ratio[vib]),
        "checks": {
            "born_acoustic_sum_max_abs_e": float(np.abs(fd["born_effective_charges"].sum(0)).max()),
            "raman_translation_sum_max_abs": float(np.abs(fd["raman_tensors"].sum(0)).max()),
            "hessian_asymmetry_max_abs_eV_per_A2": fd["hessian_asymmetry"],
            "hessian_translation_sum_max_abs_eV_per_A2": float(
                np.abs(fd["hessian"].reshape(len(atoms), 3, len(atoms), 3).sum(0)).max()),
            "unprojected_rigid_mode_frequencies_cm-1": raw_rigid.tolist(),
        },
    }


def run(systems: list[str], output: Path, cache_root: Path, settings: DFTSettings) -> dict[str, Any]:
    """Compute the requested systems (order kept) and write ``output``; entries of systems not
    requested are kept from an existing ``output``."""
    import pyscf

    result: dict[str, Any] = json.loads(output.read_text()) if output.exists() else {}
    for system in systems:
        start = time.perf_counter()
        cache_dir = cache_root / system
        cache = SinglePointCache(system, cache_dir, settings)
        initial = monomer_start() if system == "monomer" else dimer_start(cache_dir)
        relaxed = relax(initial, cache)
        fd = finite_differences(relaxed, cache)
        entry = system_entry(relaxed, fd)
        if system == "monomer":
            entry["checks"].update(field_check(relaxed, cache_dir, settings, fd["reference"],
                                               fd["born_effective_charges"]))
        elapsed = time.perf_counter() - start
        entry["wall_time_s"] = elapsed
        entry["single_points_computed"] = cache.computed
        entry["single_points_from_cache"] = cache.reused
        result[system] = entry
        print(f"[{system}] done in {elapsed:.1f} s ({cache.computed} single points computed, "
              f"{cache.reused} from cache)", flush=True)
        print_table(system, entry)
    result["metadata"] = {
        "level_of_theory": settings.level_of_theory,
        "density_fitting": "RI-JK (PySCF default JK-fit auxiliary basis)" if settings.density_fit else "none",
        "settings": _settings_signature(settings),
        "pyscf_version": pyscf.__version__,
        "polarizability_method": "analytic CPHF/CPKS (pyscf.prop.polarizability on the density-fitted RKS object)",
        "relaxation": f"ASE BFGS to max|F| <= {RELAX_FMAX} eV/A (dimer start: GFN2-xTB pre-relaxed trans-linear)",
        "displacement_step_A": DISPLACEMENT_STEP,
        "finite_differences": "central, +/- step along x, y, z of every atom",
        "masses": "ASE standard atomic masses",
        "units": UNITS,
    }
    _write_json(output, result)
    print(f"wrote {output}", flush=True)
    return result


def print_table(system: str, entry: dict[str, Any]) -> None:
    """Frequencies, IR intensities and Raman activities of one system entry."""
    print(f"[{system}] E = {entry['energy']:.6f} eV, alpha_iso = {entry['polarizability_isotropic_A3']:.4f} A^3")
    print(f"  {'mode':>4} {'freq/cm-1':>10} {'IR/km mol-1':>12} {'Raman/A4 amu-1':>15} {'depol':>7}")
    for k, (f, ir, ra, rho) in enumerate(zip(entry["frequencies"], entry["ir_intensities"],
                                             entry["raman_activities"], entry["depolarization_ratios"])):
        print(f"  {k + 1:4d} {f:10.1f} {ir:12.2f} {ra:15.3f} {'nan' if rho is None else f'{rho:.3f}':>7}")
    print(f"  checks: {json.dumps(entry['checks'])}", flush=True)


# --------------------------------------------------------------------------------------------
# Reading the reference
# --------------------------------------------------------------------------------------------

_ARRAY_KEYS = ("positions", "masses", "forces", "dipole", "polarizability", "hessian", "born_effective_charges",
               "raman_tensors", "frequencies", "mode_eigenvectors", "ir_intensities",
               "ir_intensities_e2_per_amu", "raman_activities", "depolarization_ratios")


def load_dft_reference(path: str | os.PathLike[str] = DEFAULT_OUTPUT) -> dict[str, Any]:
    """Read ``dft_reference.json``: ``{"monomer": {...}, "dimer": {...}, "metadata": {...}}``.

    Numeric entries of each system come back as float numpy arrays with the shapes and units of
    :func:`system_entry` (missing depolarisation ratios as NaN); ``symbols`` stays a list, scalars
    stay floats, ``checks`` and ``metadata`` stay as read.
    """
    data = json.loads(Path(path).read_text())
    out: dict[str, Any] = {}
    for name, entry in data.items():
        if name == "metadata":
            out[name] = entry
            continue
        system = dict(entry)
        for key in _ARRAY_KEYS:
            if key in system:
                system[key] = np.asarray([np.nan if v is None else v for v in system[key]]
                                         if key == "depolarization_ratios" else system[key], dtype=float)
        out[name] = system
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads for PySCF (default 1)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    settings = DFTSettings(threads=args.threads)
    start = time.perf_counter()
    run(args.systems, args.output, args.cache, settings)
    print(f"total wall time {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
