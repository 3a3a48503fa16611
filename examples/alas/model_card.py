"""The model card of the shipped AlAs model (``alas-lda``), written from the model file's header,
the training config, the run's metrics and the DFPT report (called by ``report.py --model-card``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from fpscf.atomic_files import atomic_write_text
from fpscf.data.extxyz import read_extxyz
from fpscf.model_io import load_model, read_header
from fpscf.training.reporting import MetricsLog

HERE = Path(__file__).parent
#: Validation metrics on the card: metrics.json property → (label, unit, scale).
VALIDATION = {
    "energy_per_atom": ("energy", "meV/atom", 1000.0),
    "forces": ("forces", "meV/Å", 1000.0),
    "stress": ("stress", "meV/Å³", 1000.0),
    "polarizability": ("cell polarizability", "e·Å²/V", 1.0),
    "born_effective_charges": ("Born charges", "me", 1000.0),
}


def _final_validation(run: Path) -> tuple[str, dict[str, float]]:
    log = MetricsLog.from_list(json.loads((run / "metrics.json").read_text()))
    stage = log.records()[-1].stage
    return stage, {name: record.rmse for name, record in log.latest(stage, "valid").items() if record.rmse == record.rmse}


def _counts() -> str:
    parts = []
    for name in ("train", "valid", "test"):
        path = HERE / "data" / f"{name}.xyz"
        if path.is_file():
            frames = read_extxyz(path)
            response = sum("polarizability" in atoms.info or "dielectric_tensor" in (atoms.calc.results if atoms.calc else {}) for atoms in frames)
            parts.append(f"{name} {len(frames)} ({response} with ε∞ and Z*)")
    return ", ".join(parts)


def write_model_card(path: Path, model_file: Path, config_path: Path, run: Path, report: dict[str, Any]) -> None:
    """Write the Markdown model card to ``path`` (atomically)."""
    header = read_header(model_file)
    hyper = header["hyperparameters"]
    config = yaml.safe_load(config_path.read_text())
    stage, validation = _final_validation(run)
    n_parameters = sum(p.numel() for p in load_model(model_file).parameters())
    lines = [
        "# Model card: `alas-lda`",
        "",
        "A fixed-point SCF model of crystalline AlAs (zinc blende) at the LDA level, for phonons, LO–TO "
        "splitting, IR and Raman spectra (`fpscf spectra`, phonopy) and MD under a field (ASE, LAMMPS). "
        "Load it with `FixedPointCalculator(model=\"alas-lda\")`.",
        "",
        "## Data and level of theory",
        "",
        "- Reference: Quantum ESPRESSO 6.7 (Debian), LDA (Perdew–Zunger), norm-conserving `Al.pz-vbc` and "
        "`As.pz-bhs`, 30 Ry. Energies, forces and stress from pw.x; ε∞ (trained as the cell polarizability "
        "α = ε0 Ω (ε∞ − 1)) and Born charges from ph.x at Γ (DFPT). Commands: `examples/alas/make_data.sh`.",
        "- Structures: 120 cubic 8-atom cells (shifted 4×4×4 k-mesh), rattled by 0.01–0.08 Å and strained by up "
        "to ±2 % around the LDA lattice constant 5.595 Å, with energy, forces, stress; 60 rattled/strained 2-atom "
        "cells (shifted 7×7×7) that add ε∞ and Z*. Split (`examples/alas/split.py`, a seeded tenth of each set "
        f"for validation and another for the test set; the ideal cells are in the test set, so the DFPT comparison below is on a structure training never saw): {_counts()}.",
        "",
        "## Architecture",
        "",
        f"- {n_parameters} parameters; file `{model_file.name}` ({model_file.stat().st_size / 1e6:.2f} MB, "
        "safetensors + plain-data header).",
        f"- Cutoff {hyper['r_max']} Å, {hyper['num_channels']} channels, max_L {hyper['max_L']}, "
        f"{hyper['num_interactions']} interactions, correlation {hyper['correlation']}; atomic multipoles up to "
        f"l = {hyper['atomic_multipoles_max_l']} (Gaussian width {hyper['atomic_multipoles_smearing_width']} Å), "
        f"periodic electrostatics (Ewald/PME); update {hyper['fixedpoint_update_config']}; field readout "
        f"{hyper['field_readout_config']['type']}.",
        "",
        "## Training",
        "",
        "Exact config: `src/fpscf/models/alas_lda.yaml` (a copy of `examples/alas/config.yaml`); reproduce with "
        "the commands in `examples/alas/README.md`.",
        "",
        "| stage | epochs | mode | lr (→ final) | losses (weights) |",
        "|---|---|---|---|---|",
    ]
    for stage_config in config["train_schedule"].values():
        losses = ", ".join(f"{k} {v:g}" for k, v in stage_config["loss"].items())
        final = f" → {stage_config['final_lr']:g}" if stage_config.get("final_lr") else ""
        lines.append(f"| {stage_config['name']} | {stage_config['start']}–{stage_config['end']} | "
                     f"{stage_config['fixed_point_training_options']['mode']} | {stage_config['lr']:g}{final} | {losses} |")
    lines += ["", f"## Validation errors (RMSE, last epoch of stage `{stage}`)", "", "| property | RMSE |", "|---|---|"]
    lines += [f"| {label} | {validation[name] * scale:.3g} {unit} |" for name, (label, unit, scale) in VALIDATION.items() if name in validation]
    lines += ["", "## Test errors (held-out structures)", "", "| property | RMSE | MAE | std of DFT values |", "|---|---|---|---|"]
    lines += [f"| {name} | {row['rmse']:.3g} {row['unit']} | {row['mae']:.3g} | {row['reference_std']:.3g} |"
              for name, row in report["test_errors"].items()]
    lines += ["", "## Against DFPT at the same level (ideal crystal, a = 5.595 Å)", "",
              "| quantity | model | DFPT | relative |", "|---|---|---|---|"]
    lines += [f"| {name} | {row['model']:.4g} | {row['dfpt']:.4g} | "
              f"{'' if row['relative'] is None else format(100 * row['relative'], '+.1f') + ' %'} |"
              for name, row in report["gamma"].items()]
    if report.get("zone_boundary"):
        lines += ["", "Zone boundary, phonopy bands with the non-analytical correction against ph.x:", ""]
        lines += [f"- {label}: model {', '.join(f'{f:.0f}' for f in row['model_cm-1'])} cm⁻¹, DFPT "
                  f"{', '.join(f'{f:.0f}' for f in row['dfpt_cm-1'])} cm⁻¹ (largest difference {row['largest_difference_cm-1']:.0f} cm⁻¹)."
                  for label, row in report["zone_boundary"].items()]
    lines += ["", "Full report, spectra and band plots: `examples/alas/report/report.md`.", "",
              "## Limits", "",
              "- Elements Al and As, neutral, zinc-blende AlAs near its LDA lattice constant (±2 % strain, "
              "thermal rattling up to ~0.08 Å, i.e. a few hundred K); other phases, surfaces, defects and "
              "melts are outside the data.",
              "- LDA, with its known errors: the lattice constant is 1.2 % below experiment (5.661 Å) and ε∞ is overestimated "
              "(LDA gives 9.1, experiment ~8.2); the model inherits them.",
              "- Raman tensors: this model's vanish (|∂α_yz/∂x| about 1e-4 e·Å/V against DFPT's 0.47), so its Raman "
              "activities are zero: do not use them. Raman tensors were not trained (no labels: ph.x with `lraman` "
              "took over 13 min per rattled 8-atom cell here, and 3 min for the ideal 2-atom cell with all its symmetry); they can only come from the geometry dependence of the "
              "learned α, and the rattled cells' α varies by about 0.02 e·Å²/V through the Raman tensor, below the α "
              "error of 0.07. The response is also a scalar polarizability per atom (linear update), anisotropic only "
              "through the weak coupling of 2 Å-wide dipoles. IR intensities, ε∞, Z* and the LO–TO splitting are "
              "reliable (table above).",
              "- Acoustic branches are too stiff at the zone boundary (TA 129 against 95 cm⁻¹ at X, 95 against 71 at "
              "L); optical branches are within 12 cm⁻¹ of DFPT, Γ within 1 cm⁻¹.",
              "- ε∞ and Z* were learned from 2-atom cells only; the 8-atom cells carry energies, forces and stress.",
              "- Fields: the training data have no applied field; the response to a field is the learned linear "
              "response (α, Z*) and its geometry dependence. Keep fields well below the band-gap breakdown "
              "(≲ 0.05 V/Å).",
              ""]
    atomic_write_text(path, "\n".join(lines))
