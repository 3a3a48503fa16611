"""The model card of the shipped water model, written from the model file's header, the training
config, the run's metrics and the accuracy report (called by ``report.py --model-card``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from fpscf.atomic_files import atomic_write_text
from fpscf.model_io import load_model, read_header
from fpscf.models import shipped_model_path
from fpscf.training.reporting import MetricsLog

#: Validation metrics reported on the card: metrics.json property → (label, unit, scale).
VALIDATION = {
    "energy_per_atom": ("energy", "meV/atom", 1000.0),
    "forces": ("forces", "meV/Å", 1000.0),
    "dipole_per_atom": ("dipole / atom", "me·Å", 1000.0),
    "atomic_multipoles": ("Hirshfeld q and d", "me·Åˡ", 1000.0),
    "polarizability": ("polarizability", "e·Å²/V", 1.0),
    "born_effective_charges": ("Born charges", "me", 1000.0),
}


def _final_validation(run: Path) -> tuple[str, dict[str, float]]:
    log = MetricsLog.from_list(json.loads((run / "metrics.json").read_text()))
    stage = log.records()[-1].stage
    return stage, {name: record.rmse for name, record in log.latest(stage, "valid").items() if record.rmse == record.rmse}


def write_model_card(path: Path, model: str | None, config_path: Path, run: Path, report: dict[str, Any]) -> None:
    """Write the Markdown model card to ``path`` (atomically)."""
    model_file = Path(model) if model else shipped_model_path()
    header = read_header(model_file)
    hyper = header["hyperparameters"]
    config = yaml.safe_load(config_path.read_text())
    data_sets = []
    for name in ("water_b3lyp", "water_b3lyp_response"):
        manifest_path = Path("data") / name / "manifest.json"
        if manifest_path.exists():
            counts = json.loads(manifest_path.read_text())["counts"]
            data_sets.append(f"`data/{name}` ({counts['labelled']} structures, {counts['with_response']} with α and Z*, "
                             f"{counts['with_field']} in a field)")
    stage, validation = _final_validation(run)
    n_parameters = sum(p.numel() for p in load_model(model_file).parameters())
    lines = [
        "# Model card: `water-b3lyp`",
        "",
        "The default model of fpscf (`FixedPointCalculator()` with no model). A fixed-point SCF model of water, "
        "hydroxide and hydronium in open boundaries, under uniform electric fields.",
        "",
        "## Data and level of theory",
        "",
        "- Reference: PySCF B3LYP/aug-cc-pVDZ with RI-JK density fitting, forces with grid response; "
        "Hirshfeld charges and atomic dipoles; polarizability α and Born charges Z* by finite fields.",
        f"- Structures: {' and '.join(data_sets) or 'see data/README.md'}. Water monomers, clusters of 2–8 "
        "molecules, OH⁻ and H₃O⁺ (alone and with 1–5 waters), sampled by GFN2-xTB Langevin MD at 300–600 K, "
        "about 30 % under random uniform fields up to 0.1 V/Å; α and Z* for 30 % of the structures with at "
        "most 10 atoms, and for every structure of the second set (monomers and dimers, added because the "
        "Raman activities need the geometry dependence of α). Commands: `data/README.md`.",
        f"- Split by whole MD trajectories (`examples/water_model/split.py`): {report['test_set']}",
        "",
        "## Architecture",
        "",
        f"- {n_parameters} parameters; file `{model_file.name}` "
        f"({model_file.stat().st_size / 1e6:.2f} MB, safetensors + plain-data header).",
        f"- Cutoff {hyper['r_max']} Å, {hyper['num_channels']} channels, max_L {hyper['max_L']}, "
        f"{hyper['num_interactions']} interactions, correlation {hyper['correlation']}; atomic multipoles up to "
        f"l = {hyper['atomic_multipoles_max_l']} (Gaussian width {hyper['atomic_multipoles_smearing_width']} Å); "
        f"update {hyper['fixedpoint_update_config']}; field readout {hyper['field_readout_config']['type']}.",
        "- Open boundaries only: the model was trained on clusters; periodic water is an extrapolation "
        "(its electrostatics run, its accuracy is unknown).",
        "",
        "## Training",
        "",
        "Exact config: `src/fpscf/models/water_b3lyp.yaml` (a copy of `examples/water_model/config.yaml`); "
        "reproduce with the commands in `examples/water_model/README.md`.",
        "",
        "| stage | epochs | mode | lr (→ final) | losses (weights) |",
        "|---|---|---|---|---|",
    ]
    for stage_config in config["train_schedule"].values():
        losses = ", ".join(f"{k} {v:g}" for k, v in stage_config["loss"].items())
        lines.append(
            f"| {stage_config['name']} | {stage_config['start']}–{stage_config['end']} | "
            f"{stage_config['fixed_point_training_options']['mode']} | {stage_config['lr']:g}"
            f"{' → %g' % stage_config['final_lr'] if stage_config.get('final_lr') else ''} | {losses} |"
        )
    lines += ["", f"## Validation errors (RMSE, last epoch of stage `{stage}`)", "", "| property | RMSE |", "|---|---|"]
    for name, (label, unit, scale) in VALIDATION.items():
        if name in validation:
            lines.append(f"| {label} | {validation[name] * scale:.3g} {unit} |")
    lines += ["", "## Test errors (held-out trajectories)", "", "| property | RMSE | MAE | std of DFT values |", "|---|---|---|---|"]
    for name, row in report["test_errors"].items():
        lines.append(f"| {name} | {row['rmse']:.3g} {row['unit']} | {row['mae']:.3g} | {row['reference_std']:.3g} |")
    lines += ["", "## Vibrations against the same DFT level", ""]
    for name, entry in report["vibrations"].items():
        deltas = [row["model_cm-1"] - row["dft_cm-1"] for row in entry["modes"]]
        worst = max(deltas, key=abs) if deltas else float("nan")
        lines.append(
            f"- {name}: frequencies within {abs(worst):.0f} cm⁻¹ of DFT (largest deviation {worst:+.0f} cm⁻¹); "
            f"mean α {entry['model_mean_polarizability']:.3f} Å³ (DFT {entry['dft_mean_polarizability']:.3f} Å³)."
        )
    monomer = report["vibrations"].get("monomer")
    if monomer:
        lines += ["", "Water molecule (each method at its own minimum):", "",
                  "| DFT cm⁻¹ | model cm⁻¹ | DFT IR km/mol | model IR km/mol | DFT Raman Å⁴/amu | model Raman Å⁴/amu |",
                  "|---|---|---|---|---|---|"]
        for row in monomer["modes"]:
            lines.append(f"| {row['dft_cm-1']:.0f} | {row['model_cm-1']:.0f} | {row['dft_ir_km/mol']:.1f} | "
                         f"{row['model_ir_km/mol']:.1f} | {row['dft_raman_A4/amu']:.1f} | {row['model_raman_A4/amu']:.1f} |")
    lines += ["", "Full tables and plots: `examples/water_model/report.md`.", "",
              "## Limits", "",
              "- Elements H and O only; total charge −1, 0 or +1; fields up to 0.1 V/Å.",
              "- Trained on a small data set (a few hundred structures): expect errors of the size above, larger "
              "for configurations far from 300–600 K cluster MD (bond breaking, other than proton transfer "
              "seen in the charged clusters).",
              "- Charged species (OH⁻, H₃O⁺) had too few MD trajectories to hold one out: they are in training "
              "only, and their accuracy is not tested.",
              "- Raman activities are the weakest property: the anisotropic part of ∂α/∂R (which carries the "
              "Raman activity of antisymmetric stretches) is much too small, and the dimer's intermolecular "
              "modes (below 300 cm⁻¹) are off by up to ~80 cm⁻¹; see the tables in the report.",
              ""]
    atomic_write_text(path, "\n".join(lines))
