"""Validation report of an AlAs model against DFPT at the same level (issue I).

Compares, for ideal AlAs at the LDA lattice constant, the model's Γ phonons (phonopy, with the
non-analytical term: TO, LO, LO–TO splitting), ε∞, Born charges, Raman tensor and the optical
mode's IR intensity and Raman activity with ``dfpt_reference.json`` (ph.x + dynmat.x); and the
model's errors on the held-out structures of ``data/test.xyz`` (energy, forces, stress, α, Z*).
Writes report.md, report.json, the spectra and the phonon bands (with NAC) into ``report/``.
Usage: python examples/alas/report.py [model file, default run/best.fpscf]"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from ase.build import bulk

from fpscf import FixedPointCalculator, load_model
from fpscf.atomic_files import atomic_write_text
from fpscf.calculators.spectra import crystal_spectra, write_spectra
from fpscf.data.extxyz import read_extxyz
from fpscf.units import VACUUM_PERMITTIVITY

HERE = Path(__file__).parent


def gamma_comparison(model, reference: dict, out: Path) -> dict:  # noqa: ANN001
    """Model against DFPT for the ideal cell: phonons, ε∞, Z*, Raman tensors."""
    atoms = bulk("AlAs", "zincblende", a=reference["lattice_constant_A"])
    calc = FixedPointCalculator(model, scf_tolerance=1e-9, acoustic_sum_rule=True)
    spectra = crystal_spectra(atoms, calc, supercell=(3, 3, 3), q_direction=(1.0, 0.0, 0.0), bands=True)
    write_spectra(spectra, out, model="AlAs model")
    optical = np.flatnonzero(~spectra.modes.rigid)
    frequencies = np.sort(spectra.modes.frequencies[optical])
    transverse = float(np.sort(spectra.frequencies_without_nac)[-1])
    longitudinal = float(frequencies[-1])
    volume = atoms.get_volume()
    epsilon = 1.0 + spectra.polarizability / (VACUUM_PERMITTIVITY * volume)
    ref_raman = np.asarray(reference["raman_tensors"])
    rows = {
        "TO (cm-1)": (transverse, reference["TO_cm-1"]),
        "LO (cm-1)": (longitudinal, reference["LO_cm-1"]),
        "LO-TO splitting (cm-1)": (longitudinal - transverse, reference["LO_TO_splitting_cm-1"]),
        "eps_inf": (float(np.trace(epsilon) / 3), float(np.trace(reference["dielectric_tensor"]) / 3)),
        "Z*(Al) (e)": (float(spectra.born_effective_charges[0, 0, 0]), reference["born_effective_charges"][0][0][0]),
        "Z*(As) (e)": (float(spectra.born_effective_charges[1, 0, 0]), reference["born_effective_charges"][1][0][0]),
        "Raman dalpha_yz/dR_Al,x (e*A/V)": (float(spectra.raman_tensors[0, 0, 1, 2]), float(ref_raman[0, 0, 1, 2])),
        "Raman dalpha_yz/dR_As,x (e*A/V)": (float(spectra.raman_tensors[1, 0, 1, 2]), float(ref_raman[1, 0, 1, 2])),
    }
    return {name: {"model": m, "dfpt": d, "difference": m - d} for name, (m, d) in rows.items()}


def test_set_errors(model, path: Path) -> dict:  # noqa: ANN001
    """RMSE of the model on held-out structures (energy per atom, forces, stress, α, Z*)."""
    errors: dict[str, list[np.ndarray]] = {name: [] for name in ("energy_per_atom", "forces", "stress", "polarizability", "born_effective_charges")}
    for atoms in read_extxyz(path):
        reference = atoms.calc.results if atoms.calc is not None else {}
        probe = atoms.copy()
        calc = FixedPointCalculator(model, scf_tolerance=1e-8)
        probe.calc = calc
        names = ["energy", "forces", "stress"]
        if "polarizability" in atoms.info:
            names += ["polarizability", "born_effective_charges"]
        result = calc.get_properties(names, probe)
        errors["energy_per_atom"].append(np.atleast_1d((result["energy"] - reference.get("energy", atoms.info.get("energy"))) / len(atoms)))
        errors["forces"].append((result["forces"] - reference.get("forces", atoms.arrays.get("forces"))).ravel())
        stress = reference.get("stress", atoms.info.get("stress"))
        errors["stress"].append((result["stress"] - np.asarray(stress).reshape(-1)[:6] if np.size(stress) == 6 else
                                 result["stress"] - _voigt(np.asarray(stress).reshape(3, 3))).ravel())
        if "polarizability" in atoms.info:
            errors["polarizability"].append((result["polarizability"] - np.asarray(atoms.info["polarizability"]).reshape(3, 3)).ravel())
            errors["born_effective_charges"].append((result["born_effective_charges"] - atoms.arrays["born_effective_charges"].reshape(-1, 3, 3)).ravel())
    return {name: float(np.sqrt(np.mean(np.concatenate(values) ** 2))) for name, values in errors.items() if values}


def _voigt(tensor: np.ndarray) -> np.ndarray:
    return np.array([tensor[0, 0], tensor[1, 1], tensor[2, 2], tensor[1, 2], tensor[0, 2], tensor[0, 1]])


def main(model_path: Path) -> None:
    model = load_model(str(model_path))
    reference = json.loads((HERE / "dfpt_reference.json").read_text())
    out = HERE / "report"
    out.mkdir(exist_ok=True)
    gamma = gamma_comparison(model, reference, out)
    test_path = HERE / "data" / "test.xyz"
    errors = test_set_errors(model, test_path) if test_path.is_file() else {}
    atomic_write_text(out / "report.json", json.dumps({"model": str(model_path), "gamma": gamma, "test_rmse": errors}, indent=1) + "\n")
    lines = [
        "# AlAs model against DFPT (LDA, same level as the training data)", "",
        f"Model: `{model_path}`. Reference: `dfpt_reference.json` ({reference['level_of_theory']}).", "",
        "| quantity | model | DFPT | model − DFPT |", "|---|---|---|---|",
        *[f"| {name} | {row['model']:.4g} | {row['dfpt']:.4g} | {row['difference']:+.3g} |" for name, row in gamma.items()],
        "", "Held-out structures (`data/test.xyz`), RMSE:", "",
        "| property | RMSE |", "|---|---|",
        *[f"| {name} | {value:.4g} |" for name, value in errors.items()],
        "", "Spectra, modes and the phonon bands with the non-analytical correction: this directory.",
    ]
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "run" / "best.fpscf")
