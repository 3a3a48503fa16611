"""Reference labels for periodic crystals from Quantum ESPRESSO (pw.x and ph.x, Debian's packages).

pw.x gives the energy, forces and stress of a cell; ph.x at Γ (density-functional perturbation
theory, ``epsil`` and ``lraman``; no phonons, ``trans = .false.``) gives the electronic dielectric
tensor ε∞, the Born effective charges and the Raman tensors. Everything returned is converted to
fpscf's units and conventions (docs/physics.md, Units and signs):

* energy Ry → eV, forces Ry/bohr → eV/Å, stress: pw.x prints −(1/Ω)∂E/∂η (positive under
  compression), fpscf and ASE use +(1/Ω)∂E/∂η in eV/Å³ (ASE's reader already flips it);
* ε∞ is kept as ``dielectric_tensor`` and converted to the cell's polarizability
  ``α = ε0 Ω (ε∞ − 1)`` (e·Å²/V), the label the model is trained on;
* Born charges: ph.x prints ``Z_{α, sβ} = ∂F_{sβ}/∂E_α`` ("d Force / dE", rows = field
  direction), which is fpscf's ``Z*[I, a, b] = ∂F_{I,b}/∂ε_a`` as it stands;
* Raman tensors: ph.x computes ``∂ε_ab/∂u_{I,c}`` (bohr⁻¹; the "au^-1" block) and prints it as
  ``Ω/(4π) ∂ε_ab/∂u_{I,c}`` in Å² (the "A^2" block, = Ω ∂χ/∂u with χ = (ε−1)/4π in Gaussian
  units). fpscf's Raman tensor is ``∂α_ab/∂R_{I,c} = ε0 Ω ∂ε_ab/∂R_{I,c}`` in e·Å/V, so it is
  ``4π ε0`` times the Å² block, indexed ``[I, c, a, b]``.

The electrons are spin-unpolarised, insulating (fixed occupations): what ph.x's ``epsil`` needs.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read, write

from fpscf.units import BOHR, VACUUM_PERMITTIVITY

#: Where Debian's quantum-espresso-data installs its pseudopotentials.
DEBIAN_PSEUDO_DIR = "/usr/share/espresso/pseudo"
#: The install hint shown when pw.x or ph.x is missing.
QE_INSTALL_HINT = "install Quantum ESPRESSO: apt-get install quantum-espresso quantum-espresso-data"
_NUMBER = r"[-+]?\d*\.\d+(?:[EeDd][-+]?\d+)?"


@dataclass(frozen=True)
class QESettings:
    """Numerical settings of the Quantum ESPRESSO reference calculations.

    Attributes:
        pseudopotentials: element → UPF file in ``pseudo_dir`` (default: the LDA norm-conserving
            Al and As potentials of quantum-espresso-data; ph.x's Raman tensors need LDA and
            norm-conserving potentials).
        pseudo_dir: directory of the UPF files.
        ecutwfc: plane-wave cutoff of the wavefunctions, Ry.
        kspacing: largest spacing of the Monkhorst–Pack mesh, 1/Å (reciprocal vectors
            including 2π): ``n_i = ceil(|b_i| / kspacing)`` (3×3×3 for the 8-atom AlAs cell).
        shifted_mesh: shift the mesh by half a step (Monkhorst–Pack offsets (1, 1, 1), the default:
            dielectric and Raman tensors of insulators converge faster) or centre it on Γ.
        conv_thr: pw.x SCF convergence, Ry.
        tr2_ph: ph.x self-consistency threshold.
        raman: compute Raman tensors in response runs (second-order response, about twice the cost).
        mpi_command: prefix that runs pw.x/ph.x in parallel, e.g. ``("mpirun.openmpi", "-np", "2")``;
            empty runs them serially (OpenMP threads from the environment).
        keep_files: keep each structure's QE inputs and outputs (in the run's ``work/``).
    """

    pseudopotentials: dict = field(default_factory=lambda: {"Al": "Al.pz-vbc.UPF", "As": "As.pz-bhs.UPF"})
    pseudo_dir: str = DEBIAN_PSEUDO_DIR
    ecutwfc: float = 30.0
    kspacing: float = 0.4
    shifted_mesh: bool = True
    conv_thr: float = 1e-10
    tr2_ph: float = 1e-16
    raman: bool = True
    mpi_command: tuple[str, ...] = ()
    keep_files: bool = False

    def __post_init__(self) -> None:
        if not self.ecutwfc > 0 or not self.kspacing > 0:
            raise ValueError(f"ecutwfc and kspacing must be > 0, got {self.ecutwfc!r}, {self.kspacing!r}")
        for element, name in self.pseudopotentials.items():
            if not (Path(self.pseudo_dir) / name).is_file():
                raise ValueError(
                    f"pseudopotential {name} for {element} is not in {self.pseudo_dir}; {QE_INSTALL_HINT}, or set "
                    "QESettings(pseudo_dir=..., pseudopotentials={...})"
                )


def require_quantum_espresso() -> None:
    """Raise a FileNotFoundError naming the install step if pw.x or ph.x is not on PATH."""
    missing = [name for name in ("pw.x", "ph.x") if shutil.which(name) is None]
    if missing:
        raise FileNotFoundError(f"{' and '.join(missing)} not found on PATH; {QE_INSTALL_HINT}")


def kpoint_mesh(cell: np.ndarray, kspacing: float) -> tuple[int, int, int]:
    """Monkhorst–Pack mesh with spacing ≤ ``kspacing`` (1/Å, 2π included) for rows-as-vectors ``cell`` (Å)."""
    reciprocal = 2 * math.pi * np.linalg.inv(cell).T
    return tuple(max(1, math.ceil(float(np.linalg.norm(b)) / kspacing - 1e-9)) for b in reciprocal)


def label_structure(atoms: Atoms, settings: QESettings | None = None, response: bool = False, workdir: str | None = None) -> Atoms:
    """Label one periodic, neutral, insulating cell with pw.x (and with ``response``, ph.x at Γ).

    Returns:
        A copy of ``atoms`` without a calculator with ``info``: ``energy`` (eV), ``stress`` (3, 3)
        eV/Å³, ``level_of_theory`` and, with ``response``, ``dielectric_tensor`` (3, 3),
        ``polarizability`` (3, 3) e·Å²/V; ``arrays``: ``forces`` (N, 3) eV/Å and, with
        ``response``, ``born_effective_charges`` (N, 9) e (row-major ``[a, b]``) and with
        ``settings.raman`` ``raman_tensors`` (N, 27) e·Å/V (row-major ``[c, a, b]``).

    Raises:
        ValueError: not periodic in all directions, a charge or field is set, or an element
            without a pseudopotential. RuntimeError: pw.x or ph.x failed (the message has the end
            of its output).
    """
    require_quantum_espresso()
    settings = settings or QESettings()
    if not atoms.pbc.all():
        raise ValueError("Quantum ESPRESSO labels need a cell periodic in all directions (atoms.pbc all True)")
    if float(atoms.info.get("total_charge", 0.0)) != 0.0 or np.any(np.asarray(atoms.info.get("external_field", np.zeros(3))) != 0):
        raise ValueError("Quantum ESPRESSO labels are for neutral cells without an applied field; remove total_charge/external_field")
    unknown = sorted(set(atoms.get_chemical_symbols()) - set(settings.pseudopotentials))
    if unknown:
        raise ValueError(f"no pseudopotential for {unknown}; add them to QESettings.pseudopotentials")
    directory = Path(tempfile.mkdtemp(prefix="qe_", dir=workdir))
    try:
        labelled = _run_pw(atoms, settings, directory)
        if response:
            _add_response(labelled, settings, directory)
    finally:
        if not settings.keep_files:
            shutil.rmtree(directory, ignore_errors=True)
    return labelled


def _run(program: str, input_text: str, directory: Path, settings: QESettings) -> str:
    stem = program.split(".")[0]
    (directory / f"{stem}.in").write_text(input_text)
    command = [*settings.mpi_command, program, "-in", f"{stem}.in"]
    with open(directory / f"{stem}.out", "w") as output:
        process = subprocess.run(command, cwd=directory, stdout=output, stderr=subprocess.STDOUT)
    text = (directory / f"{stem}.out").read_text(errors="replace")
    if process.returncode != 0 or "JOB DONE" not in text:
        tail = "\n".join(text.splitlines()[-25:])
        raise RuntimeError(f"{program} failed (exit {process.returncode}) in {directory}; end of its output:\n{tail}")
    return text


def _run_pw(atoms: Atoms, settings: QESettings, directory: Path) -> Atoms:
    input_data = {
        "control": {"calculation": "scf", "prefix": "fpscf", "outdir": "./tmp", "pseudo_dir": settings.pseudo_dir,
                    "tprnfor": True, "tstress": True},
        "system": {"ecutwfc": settings.ecutwfc, "occupations": "fixed"},
        "electrons": {"conv_thr": settings.conv_thr},
    }
    species = sorted(set(atoms.get_chemical_symbols()))
    pseudos = {element: settings.pseudopotentials[element] for element in species}
    cell = atoms.copy()
    cell.calc = None
    write(directory / "pw.in", cell, format="espresso-in", input_data=input_data, pseudopotentials=pseudos,
          kpts=kpoint_mesh(atoms.cell.array, settings.kspacing), koffset=(1, 1, 1) if settings.shifted_mesh else (0, 0, 0))
    _run("pw.x", (directory / "pw.in").read_text(), directory, settings)
    result = read(directory / "pw.out", format="espresso-out")
    labelled = atoms.copy()
    labelled.calc = None
    labelled.info["energy"] = float(result.get_potential_energy())
    labelled.arrays["forces"] = np.asarray(result.get_forces(), dtype=float)
    labelled.info["stress"] = np.asarray(result.get_stress(voigt=False), dtype=float)
    labelled.info["level_of_theory"] = f"LDA/PW {settings.ecutwfc:g} Ry (Quantum ESPRESSO)"
    return labelled


def _add_response(labelled: Atoms, settings: QESettings, directory: Path) -> None:
    ph_input = (
        "dielectric response at Gamma\n&inputph\n"
        f"  prefix='fpscf', outdir='./tmp', tr2_ph={settings.tr2_ph:.1e}, epsil=.true., trans=.false.,\n"
        f"  lraman={'.true.' if settings.raman else '.false.'}, fildyn='dyn'\n/\n0.0 0.0 0.0\n"
    )
    text = _run("ph.x", ph_input, directory, settings)
    n_atoms = len(labelled)
    epsilon = parse_dielectric_tensor(text)
    volume = labelled.get_volume()
    labelled.info["dielectric_tensor"] = epsilon
    labelled.info["polarizability"] = VACUUM_PERMITTIVITY * volume * (epsilon - np.eye(3))
    labelled.arrays["born_effective_charges"] = parse_born_charges(text, n_atoms).reshape(n_atoms, 9)
    if settings.raman:
        labelled.arrays["raman_tensors"] = raman_from_angstrom2(parse_raman_angstrom2(text, n_atoms)).reshape(n_atoms, 27)


def dfpt_gamma_reference(
    atoms: Atoms, settings: QESettings | None = None, q_direction: tuple[float, float, float] = (1.0, 0.0, 0.0),
    workdir: str | None = None,
) -> dict[str, np.ndarray]:
    """DFPT reference at Γ for validating a model: pw.x, ph.x with phonons, ε∞, Born
    charges (and Raman tensors with ``settings.raman``), then dynmat.x with the crystal acoustic sum
    rule and the non-analytical term along ``q_direction`` (so the polar modes along it are LO).

    Returns ``frequencies`` (3N,) cm⁻¹ (ascending; LO along q_direction), ``ir_intensities`` and
    ``raman_activities`` (dynmat.x's units: (D/Å)²/amu and Å⁴/amu), ``dielectric_tensor`` (3, 3),
    ``born_effective_charges`` (N, 3, 3) e and ``raman_tensors`` (N, 3, 3, 3) e·Å/V (fpscf units)."""
    require_quantum_espresso()
    if shutil.which("dynmat.x") is None:
        raise FileNotFoundError(f"dynmat.x not found on PATH; {QE_INSTALL_HINT}")
    settings = settings or QESettings()
    directory = Path(tempfile.mkdtemp(prefix="qe_dfpt_", dir=workdir))
    try:
        _run_pw(atoms, settings, directory)
        ph_input = (
            "phonons and dielectric response at Gamma\n&inputph\n"
            f"  prefix='fpscf', outdir='./tmp', tr2_ph={settings.tr2_ph:.1e}, epsil=.true., trans=.true.,\n"
            f"  lraman={'.true.' if settings.raman else '.false.'}, fildyn='dyn'\n/\n0.0 0.0 0.0\n"
        )
        text = _run("ph.x", ph_input, directory, settings)
        q = ", ".join(f"q({k + 1})={float(v):.6f}" for k, v in enumerate(q_direction))
        modes = _run("dynmat.x", f"&input fildyn='dyn', asr='crystal', {q} /\n", directory, settings)
    finally:
        if not settings.keep_files:
            shutil.rmtree(directory, ignore_errors=True)
    n_atoms = len(atoms)
    rows = re.findall(r"^\s*\d+\s+(" + _NUMBER + r")\s+" + _NUMBER + r"\s+(" + _NUMBER + r")\s+(" + _NUMBER + r")", modes.split("# mode")[-1], re.M)
    if len(rows) < 3 * n_atoms:
        raise RuntimeError(f"dynmat.x output has {len(rows)} modes, expected {3 * n_atoms}")
    table = np.array(rows[: 3 * n_atoms], dtype=float)
    reference = {
        "frequencies": table[:, 0], "ir_intensities": table[:, 1], "raman_activities": table[:, 2],
        "dielectric_tensor": parse_dielectric_tensor(text), "born_effective_charges": parse_born_charges(text, n_atoms),
    }
    if settings.raman:
        reference["raman_tensors"] = raman_from_angstrom2(parse_raman_angstrom2(text, n_atoms))
    return reference


def dfpt_phonons_at_q(
    atoms: Atoms, q_reduced: tuple[float, float, float], settings: QESettings | None = None, workdir: str | None = None,
) -> np.ndarray:
    """DFPT phonon frequencies (3N,) cm⁻¹, ascending, of a periodic cell at one wavevector q ≠ 0
    (pw.x then ph.x with ``trans``), to set DFPT points on a model's band structure.

    q_reduced: q in reduced coordinates of the cell's reciprocal lattice (phonopy's convention),
    converted here to ph.x's Cartesian units of 2π/alat with the alat pw.x reports. At q = 0 use
    :func:`dfpt_gamma_reference` instead (it needs ε∞ and Z* for the non-analytical term)."""
    require_quantum_espresso()
    q_reduced = np.asarray(q_reduced, dtype=float)
    if q_reduced.shape != (3,) or not np.any(q_reduced):
        raise ValueError(f"q_reduced must be three numbers, not all zero (use dfpt_gamma_reference at Γ), got {q_reduced.tolist()}")
    settings = settings or QESettings()
    directory = Path(tempfile.mkdtemp(prefix="qe_phq_", dir=workdir))
    try:
        _run_pw(atoms, settings, directory)
        alat = parse_alat_angstrom((directory / "pw.out").read_text(errors="replace"))
        q_cartesian = ph_q_coordinates(q_reduced, atoms.cell.array, alat)
        ph_input = (
            "phonons at one q\n&inputph\n"
            f"  prefix='fpscf', outdir='./tmp', tr2_ph={settings.tr2_ph:.1e}, fildyn='dyn'\n/\n"
            + " ".join(f"{v:.10f}" for v in q_cartesian) + "\n"
        )
        text = _run("ph.x", ph_input, directory, settings)
    finally:
        if not settings.keep_files:
            shutil.rmtree(directory, ignore_errors=True)
    return parse_phonon_frequencies(text, len(atoms))


def ph_q_coordinates(q_reduced: np.ndarray, cell: np.ndarray, alat: float) -> np.ndarray:
    """ph.x's q (Cartesian, units of 2π/alat) of q in reduced coordinates of the reciprocal lattice
    of ``cell`` (rows, Å); alat in Å."""
    return np.asarray(q_reduced, dtype=float) @ np.linalg.inv(cell).T * alat


def parse_alat_angstrom(pw_output: str) -> float:
    """pw.x's lattice parameter alat (Å): ph.x reads q in units of 2π/alat."""
    match = re.search(r"lattice parameter \(alat\)\s*=\s*(" + _NUMBER + r")\s*a\.u\.", pw_output)
    if match is None:
        raise RuntimeError("pw.x output has no 'lattice parameter (alat)' line")
    return float(match.group(1)) * BOHR


def parse_phonon_frequencies(text: str, n_atoms: int) -> np.ndarray:
    """The last block of ph.x's ``freq (  k) = ... [THz] = ... [cm-1]`` lines: (3N,) cm⁻¹, ascending."""
    values = re.findall(r"freq \(\s*\d+\)\s*=\s*" + _NUMBER + r"\s*\[THz\]\s*=\s*(" + _NUMBER + r")\s*\[cm-1\]", text)
    if len(values) < 3 * n_atoms:
        raise RuntimeError(f"ph.x output has {len(values)} phonon frequencies, expected {3 * n_atoms}")
    return np.sort(np.array(values[-3 * n_atoms:], dtype=float))


def parse_dielectric_tensor(text: str) -> np.ndarray:
    """ε∞ (3, 3) from ph.x output (the DFPT value, not the finite-difference one of a Raman run)."""
    match = re.search(r"Dielectric constant in cartesian axis\s*\n\s*\n((?:\s*\(.*\)\s*\n){3})", text)
    if match is None:
        raise RuntimeError("ph.x output has no 'Dielectric constant in cartesian axis' block")
    return np.array([[float(v) for v in re.findall(_NUMBER, line)] for line in match.group(1).strip().splitlines()])


def parse_born_charges(text: str, n_atoms: int) -> np.ndarray:
    """Born charges (N, 3, 3) e, ``[I, a, b] = ∂F_{I,b}/∂E_a`` (ph.x's "d Force / dE" block)."""
    start = text.find("Effective charges (d Force / dE) in cartesian axis")
    if start < 0:
        raise RuntimeError("ph.x output has no 'Effective charges (d Force / dE)' block")
    rows = re.findall(r"E[xyz]\s+\(\s*(" + _NUMBER + r")\s+(" + _NUMBER + r")\s+(" + _NUMBER + r")\s*\)", text[start:])
    if len(rows) < 3 * n_atoms:
        raise RuntimeError(f"ph.x output has {len(rows)} Born-charge rows, expected {3 * n_atoms}")
    return np.array(rows[: 3 * n_atoms], dtype=float).reshape(n_atoms, 3, 3)


def parse_raman_angstrom2(text: str, n_atoms: int) -> np.ndarray:
    """ph.x's Raman tensor in Å² as ``[I, c, a, b]`` = Ω/(4π) ∂ε_ab/∂u_{I,c} (the "A^2" block; each
    printed line holds one column b of the symmetric tensor)."""
    start = text.find("Raman tensor (A^2)")
    if start < 0:
        raise RuntimeError("ph.x output has no 'Raman tensor (A^2)' block (run with lraman)")
    tensor = np.zeros((n_atoms, 3, 3, 3))
    blocks = re.findall(r"atom #\s*(\d+)\s+pol\.\s*(\d+)\s*\n((?:\s*" + _NUMBER + r"\s+" + _NUMBER + r"\s+" + _NUMBER + r"\s*\n){3})", text[start:])
    if len(blocks) < 3 * n_atoms:
        raise RuntimeError(f"ph.x output has {len(blocks)} Raman blocks, expected {3 * n_atoms}")
    for atom, direction, body in blocks[: 3 * n_atoms]:
        columns = np.array([[float(v.replace("D", "E")) for v in re.findall(_NUMBER, line)] for line in body.strip().splitlines()])
        tensor[int(atom) - 1, int(direction) - 1] = columns.T
    return tensor


def raman_from_angstrom2(tensor: np.ndarray) -> np.ndarray:
    """fpscf Raman tensors ``∂α_ab/∂R_{I,c}`` (e·Å/V) from ph.x's Å² tensors: ``4π ε0`` times them
    (α = ε0 Ω (ε − 1), and the Å² tensor is Ω ∂ε/∂u / (4π))."""
    return 4 * math.pi * VACUUM_PERMITTIVITY * np.asarray(tensor)


def raman_from_inverse_bohr(tensor: np.ndarray, volume: float) -> np.ndarray:
    """The same from ph.x's ``∂ε_ab/∂u_{I,c}`` in bohr⁻¹ (the "au^-1" block) and the cell volume (Å³)."""
    return VACUUM_PERMITTIVITY * volume * np.asarray(tensor) / BOHR


__all__ = [
    "QESettings", "QE_INSTALL_HINT", "dfpt_gamma_reference", "dfpt_phonons_at_q", "kpoint_mesh", "label_structure", "parse_alat_angstrom",
    "parse_born_charges", "parse_dielectric_tensor", "parse_phonon_frequencies", "ph_q_coordinates",
    "parse_raman_angstrom2", "raman_from_angstrom2", "raman_from_inverse_bohr", "require_quantum_espresso",
]
