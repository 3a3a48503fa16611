"""Validation report of an AlAs model against DFPT at the same level.

For ideal AlAs at the LDA lattice constant, the model's Γ phonons from phonopy with the
non-analytical term (TO, LO, LO–TO splitting), ε∞, Born charges, Raman tensor, and the IR and Raman
intensities of the optical modes, against ``dfpt_reference.json`` (ph.x + dynmat.x); its phonopy
band structure with the non-analytical correction, with the DFPT frequencies at Γ, X and L
(``dfpt_bands.json``) on it; and its errors on the held-out structures of ``data/test.xyz``.
The crystal workflow is the one of ``fpscf spectra`` (``crystal_spectra`` and ``write_spectra``:
modes.csv, spectrum.csv/png, phonopy.yaml, BORN, band.yaml, bands.png in ``report/``).

Usage: python examples/alas/report.py [model, default run/best.fpscf] [--model-card PATH]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.stress import full_3x3_to_voigt_6_stress

from fpscf import FixedPointCalculator, load_model
from fpscf.atomic_files import atomic_path, atomic_write_text
from fpscf.calculators.spectra import (
    NormalModes, Spectra, crystal_spectra, lorentzian_spectrum, mode_intensities, write_spectra,
)
from fpscf.data.extxyz import read_extxyz
from fpscf.data.labels import read_properties
from fpscf.units import VACUUM_PERMITTIVITY

HERE = Path(__file__).parent
SUPERCELL = (4, 4, 4)  # of the 2-atom cell: 128 atoms, images 15.8 Å apart (model receptive field 10 Å)
#: Units of the held-out errors: property → (unit, scale from fpscf units).
TEST_UNITS = {
    "energy_per_atom": ("meV/atom", 1000.0), "forces": ("meV/Å", 1000.0), "stress": ("meV/Å³", 1000.0),
    "polarizability": ("e·Å²/V", 1.0), "dielectric_constant": ("", 1.0), "born_effective_charges": ("e", 1.0),
}


def ideal_crystal(reference: dict) -> Atoms:
    return bulk("AlAs", "zincblende", a=reference["lattice_constant_A"])


def q_direction_along_x(atoms: Atoms) -> np.ndarray:
    """Reduced reciprocal coordinates (phonopy's convention) of q ∥ x, as dynmat.x's q = (1, 0, 0),
    scaled to a largest component of 1 (only the direction matters)."""
    reduced = atoms.cell.array @ np.array([1.0, 0.0, 0.0])
    return reduced / np.abs(reduced).max()


def dfpt_modes(reference: dict, atoms: Atoms) -> tuple[NormalModes, Any]:
    """DFPT Γ modes of the two-atom cell with their IR and Raman intensities, computed with the
    same formulas as the model's (``mode_intensities``) from the DFPT Z* and Raman tensors. The
    eigenvectors are fixed by symmetry: three acoustic, the optical TO pair ⊥ x and the LO ∥ x."""
    masses = atoms.get_masses()
    acoustic = np.sqrt(masses / masses.sum())
    optical = np.array([np.sqrt(masses[1]), -np.sqrt(masses[0])]) / np.sqrt(masses.sum())
    vectors, frequencies = [], []
    for weights, directions, frequency in [(acoustic, (0, 1, 2), 0.0), (optical, (1, 2), reference["TO_cm-1"]),
                                           (optical, (0,), reference["LO_cm-1"])]:
        for axis in directions:
            vector = np.zeros((2, 3))
            vector[:, axis] = weights
            vectors.append(vector)
            frequencies.append(frequency)
    modes = NormalModes(frequencies=np.array(frequencies), eigenvectors=np.array(vectors), masses=masses,
                        rigid=np.array([True] * 3 + [False] * 3), symmetry=("-",) * 6)
    born = np.asarray(reference["born_effective_charges"])
    return modes, mode_intensities(modes, born, np.asarray(reference["raman_tensors"]))


def _optical_sums(frequencies: np.ndarray, rigid: np.ndarray, ir: np.ndarray, raman: np.ndarray, longitudinal: float) -> dict:
    """IR intensity and Raman activity summed over the TO pair and of the LO (degenerate modes mix)."""
    optical = np.flatnonzero(~rigid)
    lo = optical[np.argmin(np.abs(frequencies[optical] - longitudinal))]
    to = [k for k in optical if k != lo]
    return {"ir_to": float(ir[to].sum()), "ir_lo": float(ir[lo]), "raman_to": float(raman[to].sum()), "raman_lo": float(raman[lo])}


def gamma_comparison(spectra: Spectra, reference: dict, atoms: Atoms) -> tuple[dict, Any]:
    """Model against DFPT for the ideal cell: Γ phonons, ε∞, Z*, Raman tensors, intensities."""
    optical = np.flatnonzero(~spectra.modes.rigid)
    transverse = float(np.sort(spectra.frequencies_without_nac)[-1])
    longitudinal = float(np.sort(spectra.modes.frequencies[optical])[-1])
    model_sums = _optical_sums(spectra.modes.frequencies, spectra.modes.rigid, spectra.intensities.ir_intensity_km_per_mol,
                               spectra.intensities.raman_activity, longitudinal)
    modes, intensities = dfpt_modes(reference, atoms)
    dfpt_sums = _optical_sums(modes.frequencies, modes.rigid, intensities.ir_intensity_km_per_mol,
                              intensities.raman_activity, reference["LO_cm-1"])
    model_raman, ref_raman = spectra.raman_tensors, np.asarray(reference["raman_tensors"])
    rows = {
        "TO (cm⁻¹)": (transverse, reference["TO_cm-1"]),
        "LO (cm⁻¹)": (longitudinal, reference["LO_cm-1"]),
        "LO–TO splitting (cm⁻¹)": (longitudinal - transverse, reference["LO_TO_splitting_cm-1"]),
        "ε∞": (float(np.trace(spectra.dielectric_tensor) / 3), float(np.trace(reference["dielectric_tensor"]) / 3)),
        "Z*(Al) (e)": (float(spectra.born_effective_charges[0, 0, 0]), reference["born_effective_charges"][0][0][0]),
        "Z*(As) (e)": (float(spectra.born_effective_charges[1, 0, 0]), reference["born_effective_charges"][1][0][0]),
        "∂α_yz/∂x(Al) (e·Å/V)": (float(model_raman[0, 0, 1, 2]), float(ref_raman[0, 0, 1, 2])),
        "∂α_yz/∂x(As) (e·Å/V)": (float(model_raman[1, 0, 1, 2]), float(ref_raman[1, 0, 1, 2])),
        "IR intensity, TO pair (km/mol)": (model_sums["ir_to"], dfpt_sums["ir_to"]),
        "Raman activity, TO pair (Å⁴/amu)": (model_sums["raman_to"], dfpt_sums["raman_to"]),
        "Raman activity, LO (Å⁴/amu)": (model_sums["raman_lo"], dfpt_sums["raman_lo"]),
    }
    table = {name: {"model": m, "dfpt": d, "difference": m - d, "relative": (m - d) / d if d else None} for name, (m, d) in rows.items()}
    return table, (modes, intensities)


def zone_boundary_comparison(spectra: Spectra, bands_reference: dict) -> dict:
    """Model phonon frequencies (phonopy, with the non-analytical correction) at the DFPT q points."""
    from phonopy.physical_units import get_physical_units

    to_cm = get_physical_units().THzToCm
    rows = {}
    for label, point in bands_reference["points"].items():
        spectra.phonon.run_qpoints([point["q_reduced"]])
        model = np.sort(spectra.phonon.qpoints.frequencies[0] * to_cm)
        dfpt = np.asarray(point["frequencies_cm-1"])
        rows[label] = {"q_reduced": point["q_reduced"], "model_cm-1": model.tolist(), "dfpt_cm-1": dfpt.tolist(),
                       "largest_difference_cm-1": float(np.max(np.abs(model - dfpt)))}
    return rows


def test_set_errors(model: Any, path: Path) -> dict:
    """RMSE and MAE of the model on held-out structures, with the spread (std) of the DFT values."""
    pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {name: [] for name in TEST_UNITS}
    calc = FixedPointCalculator(model, scf_tolerance=1e-8)
    for index, atoms in enumerate(read_extxyz(path)):
        labels = read_properties(atoms, index=index).labels
        probe = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=True)
        names = ["energy", "forces", "stress"] + (["polarizability", "born_effective_charges"] if "polarizability" in labels else [])
        calc.reset()
        result = calc.get_properties(names, probe)
        pairs["energy_per_atom"].append((np.atleast_1d(result["energy"] / len(atoms)), np.atleast_1d(labels["energy"] / len(atoms))))
        pairs["forces"].append((result["forces"].ravel(), labels["forces"].ravel()))
        pairs["stress"].append((result["stress"], full_3x3_to_voigt_6_stress(labels["stress"].reshape(3, 3))))
        if "polarizability" in labels:
            pairs["polarizability"].append((result["polarizability"].ravel(), labels["polarizability"].ravel()))
            volume = probe.get_volume()
            pairs["dielectric_constant"].append((np.atleast_1d(_mean_dielectric_constant(result["polarizability"], volume)),
                                                 np.atleast_1d(_mean_dielectric_constant(labels["polarizability"], volume))))
            pairs["born_effective_charges"].append((result["born_effective_charges"].ravel(), labels["born_effective_charges"].ravel()))
    table = {}
    for name, values in pairs.items():
        if not values:
            continue
        predicted = np.concatenate([p for p, _ in values])
        reference = np.concatenate([r for _, r in values])
        unit, scale = TEST_UNITS[name]
        table[name] = {"rmse": float(np.sqrt(np.mean((predicted - reference) ** 2))) * scale,
                       "mae": float(np.mean(np.abs(predicted - reference))) * scale,
                       "reference_std": float(np.std(reference)) * scale, "unit": unit, "count": len(values)}
    return table


def _mean_dielectric_constant(polarizability: np.ndarray, volume: float) -> float:
    """tr ε∞/3 from the cell polarizability (e·Å²/V) and volume (Å³): ε∞ = 1 + α/(ε0 Ω)."""
    return float(np.trace(np.asarray(polarizability).reshape(3, 3)) / 3 / (VACUUM_PERMITTIVITY * volume) + 1.0)


def plot_spectra_against_dfpt(spectra: Spectra, dfpt: tuple[NormalModes, Any], path: Path, width: float = 10.0) -> None:
    """IR and Raman spectra of the model and of DFPT (same Lorentzian width), side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(250.0, 500.0, 1001)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, kind, unit in [(axes[0], "ir", "km/mol"), (axes[1], "raman", "Å⁴/amu")]:
        for label, (modes, intensities), style in [("model", (spectra.modes, spectra.intensities), "-"), ("DFPT", dfpt, "--")]:
            active = ~modes.rigid
            weights = intensities.ir_intensity_km_per_mol if kind == "ir" else intensities.raman_activity
            axis.plot(grid, lorentzian_spectrum(modes.frequencies[active], weights[active], grid, width), style, label=label)
        axis.set_xlabel("wavenumber (cm⁻¹)")
        axis.set_ylabel(f"{'IR intensity' if kind == 'ir' else 'Raman activity'} ({unit} per cm⁻¹)")
        axis.set_title(f"AlAs at Γ, q ∥ x: {'IR' if kind == 'ir' else 'Raman'}")
        axis.legend()
    figure.tight_layout()
    with atomic_path(path) as target:
        figure.savefig(target, dpi=120, format="png")
    plt.close(figure)


def plot_bands_against_dfpt(spectra: Spectra, reference: dict, bands_reference: dict | None, path: Path) -> None:
    """The model's phonopy bands (with the non-analytical correction) and the DFPT points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bands = spectra.bands
    figure, axis = plt.subplots(figsize=(8, 4.5))
    ticks: dict[float, str] = {}
    for distances, frequencies, (start, stop) in zip(bands["distances"], bands["frequencies_cm-1"], bands["segments"]):
        axis.plot(distances, frequencies, color="C0", lw=1)
        for position, label in ((float(distances[0]), start), (float(distances[-1]), stop)):
            if ticks.get(position, label) != label:  # a break in the path: "K|U"
                label = f"{ticks[position]}|{label}"
            ticks[position] = label
    dfpt_points = {"G": reference["frequencies_cm-1"]}
    if bands_reference:
        dfpt_points.update({label: point["frequencies_cm-1"] for label, point in bands_reference["points"].items()})
    first = True
    for position, tick in ticks.items():
        for label in set(tick.split("|")) & set(dfpt_points):
            frequencies = dfpt_points[label]
            axis.plot([position] * len(frequencies), frequencies, "o", mfc="none", color="C3", label="DFPT (ph.x)" if first else None)
            first = False
    axis.set_xticks(list(ticks))
    axis.set_xticklabels([tick.replace("G", "Γ") for tick in ticks.values()])
    for position in ticks:
        axis.axvline(position, color="0.8", lw=0.5)
    axis.set_xlim(0, max(ticks))
    axis.set_ylabel("frequency (cm⁻¹)")
    axis.set_title("AlAs phonons: model (phonopy, non-analytical correction) and DFPT")
    axis.plot([], [], color="C0", label="model")
    axis.legend(loc="lower right")
    figure.tight_layout()
    with atomic_path(path) as target:
        figure.savefig(target, dpi=120, format="png")
    plt.close(figure)


def _percent(relative: float | None) -> str:
    return "" if relative is None else f"{100 * relative:+.1f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", type=Path, default=HERE / "run" / "best.fpscf")
    parser.add_argument("--model-card", type=Path, help="also write the model card (Markdown) to this path")
    args = parser.parse_args()
    model = load_model(str(args.model))
    reference = json.loads((HERE / "dfpt_reference.json").read_text())
    bands_path = HERE / "dfpt_bands.json"
    bands_reference = json.loads(bands_path.read_text()) if bands_path.is_file() else None
    out = HERE / "report"
    out.mkdir(exist_ok=True)

    atoms = ideal_crystal(reference)
    calc = FixedPointCalculator(model, scf_tolerance=1e-9, acoustic_sum_rule=True)
    q_direction = q_direction_along_x(atoms)
    spectra = crystal_spectra(atoms, calc, supercell=SUPERCELL, q_direction=q_direction, bands=True, progress=print)
    write_spectra(spectra, out, model=str(args.model))
    gamma, dfpt = gamma_comparison(spectra, reference, atoms)
    zone = zone_boundary_comparison(spectra, bands_reference) if bands_reference else {}
    plot_spectra_against_dfpt(spectra, dfpt, out / "spectra_vs_dfpt.png")
    plot_bands_against_dfpt(spectra, reference, bands_reference, out / "bands_vs_dfpt.png")
    test_path = HERE / "data" / "test.xyz"
    errors = test_set_errors(model, test_path) if test_path.is_file() else {}
    summary = {"model": str(args.model), "supercell": list(SUPERCELL), "q_direction_reduced": q_direction.tolist(),
               "gamma": gamma, "zone_boundary": zone, "test_errors": errors}
    atomic_write_text(out / "report.json", json.dumps(summary, indent=1) + "\n")
    command = (f"fpscf spectra alas.xyz --model {args.model.name} --supercell {' '.join(map(str, SUPERCELL))} "
               f"--q-direction {' '.join(f'{v:g}' for v in q_direction)} --bands --out report")
    lines = [
        "# AlAs model against DFPT (LDA, the level of the training data)", "",
        f"Model: `{args.model.name}`. Reference: `dfpt_reference.json` and `dfpt_bands.json` ({reference['level_of_theory']}; "
        "ph.x at Γ with ε∞, Z* and Raman tensors, dynmat.x with the crystal acoustic sum rule and the non-analytical term "
        "along x). The model side is the workflow of", "", f"    {command}", "",
        f"(phonopy on a {'×'.join(map(str, SUPERCELL))} supercell of the 2-atom cell, acoustic sum rules on, the LO along x). "
        "DFPT IR intensities and Raman activities are computed with the model's formulas from the DFPT Z* and Raman "
        "tensors and the symmetry-fixed Γ eigenvectors; sums over the degenerate TO pair.", "",
        "## Ideal crystal at Γ", "",
        "| quantity | model | DFPT | model − DFPT | relative |", "|---|---|---|---|---|",
        *[f"| {name} | {row['model']:.4g} | {row['dfpt']:.4g} | {row['difference']:+.3g} | {_percent(row['relative'])} |"
          for name, row in gamma.items()],
    ]
    if zone:
        lines += ["", "## Zone boundary (phonopy bands with the non-analytical correction)", "",
                  "| q | model (cm⁻¹) | DFPT (cm⁻¹) | largest difference |", "|---|---|---|---|",
                  *[f"| {label} | {', '.join(f'{f:.0f}' for f in row['model_cm-1'])} | "
                    f"{', '.join(f'{f:.0f}' for f in row['dfpt_cm-1'])} | {row['largest_difference_cm-1']:.0f} cm⁻¹ |"
                    for label, row in zone.items()]]
    if errors:
        lines += ["", "## Held-out structures (`data/test.xyz`, never used in training)", "",
                  "| property | RMSE | MAE | std of DFT values | structures |", "|---|---|---|---|---|",
                  *[f"| {name} | {row['rmse']:.3g} {row['unit']} | {row['mae']:.3g} | {row['reference_std']:.3g} | {row['count']} |"
                    for name, row in errors.items()]]
    lines += ["", "Figures: `spectra_vs_dfpt.png` (IR and Raman, model and DFPT), `bands_vs_dfpt.png` (bands with the "
              "DFPT points), `spectrum.png` and `bands.png` (as `fpscf spectra` writes them); tables: `modes.csv`, "
              "`report.json`; phonopy files: `phonopy.yaml`, `BORN`, `band.yaml`."]
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.model_card:
        from model_card import write_model_card

        write_model_card(args.model_card, args.model, HERE / "config.yaml", HERE / "run", summary)


if __name__ == "__main__":
    main()
