"""Accuracy of the shipped water model against B3LYP/aug-cc-pVDZ, and its model card.

    python examples/water_model/report.py [--model PATH] [--run examples/water_model/run]

1. Held-out test structures (``data/test.xyz``: whole MD trajectories never seen in training,
   see ``split.py``): RMSE and MAE of energies, forces, dipoles, Hirshfeld charges and atomic
   dipoles, polarizabilities and Born effective charges, beside the spread (standard deviation)
   of the DFT values; parity plots in ``report_parity.png``.
2. Harmonic vibrations of the water molecule and the water dimer: the DFT reference of
   ``dft_reference.py`` (``dft_reference.json``, each system at its DFT minimum) against the
   model at the model's own minimum (relaxed from the DFT geometry): frequencies, IR intensities,
   Raman activities, the polarizability and the Born charges, side by side (``report_spectra.png``).

Writes ``report.md`` and ``report.json`` here and, with ``--model-card``, the model card
(``src/fpscf/models/water_b3lyp.md``) from the report, the training config and the run's metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from ase import Atoms

from fpscf import FixedPointCalculator
from fpscf.atomic_files import atomic_write_text
from fpscf.calculators.spectra import molecule_normal_modes, molecule_spectra, mode_intensities, relax_molecule
from fpscf.data.extxyz import read_extxyz
from fpscf.data.labels import read_properties
from fpscf.model_io import read_header
from fpscf.units import COULOMB_CONSTANT

HERE = Path(__file__).resolve().parent

#: Test-set properties: label name, unit, scale from the package's unit to the reported one.
PROPERTIES = {
    "energy_per_atom": ("meV/atom", 1000.0),
    "forces": ("meV/Å", 1000.0),
    "dipole": ("me·Å", 1000.0),
    "charges": ("me", 1000.0),
    "atomic_dipoles": ("me·Å", 1000.0),
    "polarizability": ("Å³", COULOMB_CONSTANT),
    "born_effective_charges": ("me", 1000.0),
}


# --------------------------------------------------------------------------------------------
# Test set
# --------------------------------------------------------------------------------------------


def evaluate_test_set(calculator: FixedPointCalculator, path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Reference and predicted values of every property (flattened, package units) over ``path``."""
    pairs: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {name: ([], []) for name in PROPERTIES}
    frames = read_extxyz(path)
    for index, atoms in enumerate(frames):
        labels = read_properties(atoms, index=index).labels
        probe = Atoms(atoms.numbers, atoms.positions, info={
            "external_field": np.asarray(labels.get("external_field", atoms.info.get("external_field", np.zeros(3)))),
            "total_charge": float(atoms.info.get("total_charge", 0.0)),
        })
        names = ["energy", "forces", "dipole", "atomic_multipoles"]
        response = "polarizability" in labels
        if response:
            names += ["polarizability", "born_effective_charges"]
        calculator.reset()
        predicted = calculator.get_properties(names, probe)
        n_atoms = len(atoms)

        def add(name: str, reference: Any, value: Any) -> None:
            pairs[name][0].append(np.ravel(reference))
            pairs[name][1].append(np.ravel(value))

        add("energy_per_atom", labels["energy"] / n_atoms, predicted["energy"] / n_atoms)
        add("forces", labels["forces"], predicted["forces"])
        add("dipole", labels["dipole"], predicted["dipole"])
        add("charges", labels["atomic_multipoles"][:, 0], predicted["atomic_multipoles"][:, 0])
        add("atomic_dipoles", labels["atomic_multipoles"][:, 1:4], predicted["atomic_multipoles"][:, 1:4])
        if response:
            add("polarizability", labels["polarizability"], predicted["polarizability"])
            add("born_effective_charges", labels["born_effective_charges"], predicted["born_effective_charges"])
        print(f"  test structure {index + 1}/{len(frames)} ({n_atoms} atoms{', α and Z*' if response else ''})",
              flush=True)
    return {
        name: {"reference": np.concatenate(ref) * PROPERTIES[name][1], "predicted": np.concatenate(pred) * PROPERTIES[name][1]}
        for name, (ref, pred) in pairs.items() if ref
    }


def error_table(pairs: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, float]]:
    """RMSE, MAE, the standard deviation of the reference values and the count, per property."""
    table = {}
    for name, values in pairs.items():
        error = values["predicted"] - values["reference"]
        table[name] = {
            "unit": PROPERTIES[name][0],
            "rmse": float(np.sqrt(np.mean(error**2))),
            "mae": float(np.mean(np.abs(error))),
            "reference_std": float(np.std(values["reference"])),
            "count": int(error.size),
        }
    return table


def plot_parity(pairs: dict[str, dict[str, np.ndarray]], path: Path, label: str = "water-b3lyp") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(pairs)
    columns = 4
    rows = (len(names) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.8 * rows))
    for axis, name in zip(np.ravel(axes), names):
        reference, predicted = pairs[name]["reference"], pairs[name]["predicted"]
        shift = float(reference.mean()) if name == "energy_per_atom" else 0.0  # readable ticks; RMSE unchanged
        reference, predicted = reference - shift, predicted - shift
        low, high = float(min(reference.min(), predicted.min())), float(max(reference.max(), predicted.max()))
        axis.plot([low, high], [low, high], color="0.6", lw=1)
        axis.scatter(reference, predicted, s=6, alpha=0.6)
        rmse = float(np.sqrt(np.mean((predicted - reference) ** 2)))
        axis.set_title(f"{name}\nRMSE {rmse:.3g} {PROPERTIES[name][0]}", fontsize=9)
        offset = f", from the mean {shift:.0f}" if shift else ""
        axis.set_xlabel(f"B3LYP/aug-cc-pVDZ ({PROPERTIES[name][0]}{offset})", fontsize=8)
        axis.set_ylabel("model", fontsize=8)
    for axis in np.ravel(axes)[len(names):]:
        axis.axis("off")
    figure.suptitle(f"{label}: held-out test structures")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# --------------------------------------------------------------------------------------------
# Vibrations
# --------------------------------------------------------------------------------------------


def dft_vibrations(system: dict[str, Any]) -> dict[str, Any]:
    """Frequencies (cm⁻¹), IR intensities (km/mol), Raman activities (Å⁴/amu) of the DFT
    reference, recomputed from its Hessian and tensors with the same code as the model's."""
    atoms = Atoms(system["symbols"], positions=system["positions"])
    modes = molecule_normal_modes(np.asarray(system["hessian"]), atoms.get_masses(), atoms.positions)
    intensities = mode_intensities(modes, np.asarray(system["born_effective_charges"]), np.asarray(system["raman_tensors"]))
    keep = ~modes.rigid
    return {
        "atoms": atoms,
        "eigenvectors": modes.eigenvectors[keep].reshape(int(keep.sum()), -1),
        "frequencies": modes.frequencies[keep],
        "ir": intensities.ir_intensity_km_per_mol[keep],
        "raman": intensities.raman_activity[keep],
        "polarizability": np.asarray(system["polarizability"]) * COULOMB_CONSTANT,
        "born_effective_charges": np.asarray(system["born_effective_charges"]),
    }


def model_vibrations(calculator: FixedPointCalculator, start: Atoms) -> dict[str, Any]:
    """The same quantities for the model at its own minimum, relaxed from ``start``."""
    relaxed = relax_molecule(start, calculator, fmax=1e-4, progress=lambda line: print("  " + line, flush=True))
    spectra = molecule_spectra(relaxed, calculator, symmetry_labels=False)
    keep = ~spectra.modes.rigid
    displacement = relaxed.positions - start.positions
    displacement -= displacement.mean(axis=0)
    return {
        "atoms": relaxed,
        "eigenvectors": spectra.modes.eigenvectors[keep].reshape(int(keep.sum()), -1),
        "frequencies": spectra.modes.frequencies[keep],
        "ir": spectra.intensities.ir_intensity_km_per_mol[keep],
        "raman": spectra.intensities.raman_activity[keep],
        "polarizability": spectra.polarizability * COULOMB_CONSTANT,
        "born_effective_charges": spectra.born_effective_charges,
        "rmsd_from_dft_geometry": float(np.sqrt((displacement**2).sum(axis=1).mean())),
    }


def plot_spectra(comparisons: dict[str, tuple[dict[str, Any], dict[str, Any]]], path: Path,
                 model_label: str = "water-b3lyp") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, len(comparisons), figsize=(6 * len(comparisons), 6.5), squeeze=False)
    for column, (name, (dft, model)) in enumerate(comparisons.items()):
        for row, (key, label) in enumerate((("ir", "IR intensity (km/mol)"), ("raman", "Raman activity (Å⁴/amu)"))):
            axis = axes[row, column]
            axis.vlines(dft["frequencies"] - 8, 0, dft[key], color="k", lw=2.5, label="B3LYP/aug-cc-pVDZ")
            axis.vlines(model["frequencies"] + 8, 0, model[key], color="tab:red", lw=2.5, label=f"{model_label} model")
            axis.set_xlabel("frequency (cm⁻¹)")
            axis.set_ylabel(label)
            axis.set_title(f"{name}: {label.split(' (')[0]}")
            axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def vibration_table(dft: dict[str, Any], model: dict[str, Any]) -> list[dict[str, float]]:
    """DFT modes in frequency order, each matched to the model mode whose mass-weighted eigenvector
    overlaps it most (one-to-one assignment; both minima share atom order and orientation, since the
    model was relaxed from the DFT geometry), so the same vibration is compared even where the two
    order their modes differently."""
    from scipy.optimize import linear_sum_assignment

    overlap = np.abs(dft["eigenvectors"] @ model["eigenvectors"].T)
    rows, columns = linear_sum_assignment(-overlap)
    match = dict(zip(rows.tolist(), columns.tolist()))
    table = []
    for k in range(len(dft["frequencies"])):
        m = match[k]
        table.append({
            "dft_cm-1": float(dft["frequencies"][k]), "model_cm-1": float(model["frequencies"][m]),
            "overlap": float(overlap[k, m]),
            "dft_ir_km/mol": float(dft["ir"][k]), "model_ir_km/mol": float(model["ir"][m]),
            "dft_raman_A4/amu": float(dft["raman"][k]), "model_raman_A4/amu": float(model["raman"][m]),
        })
    return table


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def markdown_report(errors: dict[str, dict[str, float]], vibrations: dict[str, Any], model_path: str, test_info: str,
                    label: str = "water-b3lyp") -> str:
    lines = [
        f"# {label}: accuracy against B3LYP/aug-cc-pVDZ",
        "",
        f"Regenerated by `python examples/water_model/report.py` (model `{model_path}`).",
        "",
        "## Held-out test structures",
        "",
        test_info,
        "",
        "| property | unit | RMSE | MAE | std of DFT values | values |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in errors.items():
        lines.append(f"| {name} | {row['unit']} | {row['rmse']:.3g} | {row['mae']:.3g} | {row['reference_std']:.3g} | {row['count']} |")
    lines += ["", "Parity plots: `report_parity.png`.", "", "## Harmonic vibrations", "",
              "DFT: finite differences of analytic forces, dipoles and polarizabilities at the DFT minimum "
              "(`dft_reference.py`). Model: exact Hessian, Born charges and Raman tensors through the SCF at "
              "the model's own minimum, relaxed from the DFT geometry. Same normal-mode code for both.", ""]
    for name, entry in vibrations.items():
        lines += [f"### {name}", "",
                  f"Model minimum vs DFT minimum: RMSD {entry['rmsd_from_dft_geometry']:.3f} Å. "
                  f"Mean polarizability: DFT {entry['dft_mean_polarizability']:.3f} Å³, model "
                  f"{entry['model_mean_polarizability']:.3f} Å³. Born charges at the respective minima: RMS difference "
                  f"{entry['born_rms_difference']:.3f} e (RMS of DFT values {entry['born_rms_dft']:.3f} e).", "",
                  "Model modes are matched to DFT modes by the overlap of their mass-weighted eigenvectors (|e·e'|, 1 = same motion).", "",
                  "| mode | DFT cm⁻¹ | model cm⁻¹ | Δ cm⁻¹ | overlap | DFT IR km/mol | model IR km/mol | DFT Raman Å⁴/amu | model Raman Å⁴/amu |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for k, row in enumerate(entry["modes"], start=1):
            lines.append(
                f"| {k} | {row['dft_cm-1']:.1f} | {row['model_cm-1']:.1f} | {row['model_cm-1'] - row['dft_cm-1']:+.1f} | {row['overlap']:.2f} | "
                f"{row['dft_ir_km/mol']:.1f} | {row['model_ir_km/mol']:.1f} | {row['dft_raman_A4/amu']:.2f} | "
                f"{row['model_raman_A4/amu']:.2f} |"
            )
        lines.append("")
    lines += ["Spectra side by side: `report_spectra.png`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file (default: the shipped water model)")
    parser.add_argument("--label", default=None,
                        help="name of the model in titles and legends (default: water-b3lyp, or the model file's path)")
    parser.add_argument("--test", type=Path, default=HERE / "data" / "test.xyz")
    parser.add_argument("--dft", type=Path, default=HERE / "dft_reference.json")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--model-card", type=Path, default=None, help="also write the model card here")
    parser.add_argument("--run", type=Path, default=HERE / "run", help="training run (metrics.json) for the card")
    parser.add_argument("--config", type=Path, default=HERE / "config.yaml", help="training config for the card")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    calculator = FixedPointCalculator(model=args.model, scf_tolerance=1e-8, acoustic_sum_rule=False)
    model_path = args.model or "water-b3lyp (shipped)"
    label = args.label or ("water-b3lyp" if args.model is None else str(args.model))
    print(f"test set {args.test}", flush=True)
    pairs = evaluate_test_set(calculator, args.test)
    errors = error_table(pairs)
    plot_parity(pairs, args.out / "report_parity.png", label)
    split = json.loads((args.test.parent / "split.json").read_text()) if (args.test.parent / "split.json").exists() else None
    test_info = (
        f"{split['counts']['test']['structures']} structures from {len(split['groups']['test'])} MD trajectories "
        f"held out whole ({', '.join(split['groups']['test'])}); {split['counts']['test']['with_polarizability']} "
        f"of them with α and Z*." if split else f"structures of {args.test}."
    )

    from dft_reference import load_dft_reference  # examples/water_model/dft_reference.py (beside this script)

    reference = load_dft_reference(args.dft)
    vibrations: dict[str, Any] = {}
    comparisons = {}
    for name, system in reference["systems"].items() if "systems" in reference else reference.items():
        if not isinstance(system, dict) or "hessian" not in system:
            continue
        print(f"{name}: model minimum and vibrations", flush=True)
        dft = dft_vibrations(system)
        model = model_vibrations(calculator, dft["atoms"])
        comparisons[name] = (dft, model)
        born_difference = model["born_effective_charges"] - dft["born_effective_charges"]
        vibrations[name] = {
            "rmsd_from_dft_geometry": model["rmsd_from_dft_geometry"],
            "dft_mean_polarizability": float(np.trace(dft["polarizability"]) / 3),
            "model_mean_polarizability": float(np.trace(model["polarizability"]) / 3),
            "dft_polarizability": dft["polarizability"].tolist(),
            "model_polarizability": model["polarizability"].tolist(),
            "born_rms_difference": float(np.sqrt(np.mean(born_difference**2))),
            "born_rms_dft": float(np.sqrt(np.mean(dft["born_effective_charges"] ** 2))),
            "modes": vibration_table(dft, model),
        }
    plot_spectra(comparisons, args.out / "report_spectra.png", label)

    report = {"model": str(model_path), "test_errors": errors, "test_set": test_info, "vibrations": vibrations,
              "seconds": time.perf_counter() - start}
    atomic_write_text(args.out / "report.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(args.out / "report.md", markdown_report(errors, vibrations, str(model_path), test_info, label))
    print(f"wrote {args.out / 'report.md'}, report.json, report_parity.png, report_spectra.png "
          f"({time.perf_counter() - start:.0f} s)")
    if args.model_card:
        from model_card import write_model_card  # examples/water_model/model_card.py

        write_model_card(args.model_card, args.model, args.config, args.run, report)
        print(f"wrote {args.model_card}")


if __name__ == "__main__":
    main()
