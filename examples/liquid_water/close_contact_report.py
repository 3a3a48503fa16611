"""Close contacts, model against B3LYP/aug-cc-pVDZ: the probes where `water-b3lyp` failed in the liquid.

    python examples/liquid_water/close_contact_report.py --model examples/liquid_water/run/best.fpscf

For every held-out close-contact structure (``examples/liquid_water/data/valid.xyz`` with
``data_source = water_close_contacts``: H···H 0.6–1.2 Å, O–O 1.6–2.5 Å, squeezed O–H, O–H–O, ion
pairs) and for the same structures with the contact opened (the second molecule moved away along the
contact until it is 3 Å away, so each pair gives a contact energy ``E(contact) − E(open)`` that the
atomic reference energies cancel from), this evaluates the model and, for comparison, the shipped
`water-b3lyp`, and writes ``close_contacts.json`` and ``close_contacts.png`` (parity of the energies
and of the forces) next to this script. The DFT contact energy needs the DFT energy of the opened
structure: it is computed with PySCF at the data's level (cached in ``close_contact_dft.json``).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read

from fpscf import FixedPointCalculator
from fpscf.atomic_files import atomic_write_text

HERE = Path(__file__).resolve().parent
OPEN_DISTANCE = 3.0  # Å between the contact atoms in the opened structure


def opened(atoms: Atoms) -> Atoms | None:
    """The structure with the group holding the second contact atom moved away along the contact
    until the two contact atoms are OPEN_DISTANCE apart; None without contact information."""
    contact = atoms.info.get("contact_atoms")
    if contact is None:
        return None
    first, second = (int(v) for v in np.ravel(contact)[:2])
    groups = molecule_groups(atoms)
    moving = next(group for group in groups if second in group)
    if first in moving:
        return None  # an intramolecular contact (squeezed O-H): nothing to open
    direction = atoms.positions[second] - atoms.positions[first]
    distance = float(np.linalg.norm(direction))
    result = atoms.copy()
    result.positions[moving] += direction / distance * (OPEN_DISTANCE - distance)
    return result


def molecule_groups(atoms: Atoms) -> list[list[int]]:
    """Each O with the H atoms nearer to it than to any other O (Å)."""
    oxygens = [i for i, z in enumerate(atoms.numbers) if z == 8]
    groups: dict[int, list[int]] = {o: [o] for o in oxygens}
    for i, z in enumerate(atoms.numbers):
        if z == 1:
            nearest = min(oxygens, key=lambda o: np.linalg.norm(atoms.positions[i] - atoms.positions[o]))
            groups[nearest].append(i)
    return list(groups.values())


def model_energy_forces(model: str, atoms: Atoms) -> tuple[float, np.ndarray]:
    structure = atoms.copy()
    structure.calc = FixedPointCalculator(model, max_scf_steps=300)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return structure.get_potential_energy(), structure.get_forces()
    except Exception as error:  # noqa: BLE001  (a failed evaluation is a result here)
        print(f"  {model}: {type(error).__name__}: {str(error)[:120]}")
        return float("nan"), np.full((len(atoms), 3), np.nan)


def dft_energy(atoms: Atoms, cache: dict[str, float], key: str) -> float:
    if key not in cache:
        from fpscf.datagen.pyscf_labels import DFTSettings, dft_energy_forces

        cache[key] = float(dft_energy_forces(atoms, DFTSettings(), forces=False)["energy"])
    return cache[key]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(HERE / "run/best.fpscf"))
    parser.add_argument("--baseline", default="water-b3lyp")
    parser.add_argument("--data", default=str(HERE / "data/valid.xyz"))
    args = parser.parse_args(argv)
    structures = [a for a in read(args.data, ":") if a.info.get("data_source") == "water_close_contacts"]
    cache_path = HERE / "close_contact_dft.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    rows = []
    for atoms in structures:
        sample = f"{atoms.info['scan']}/{atoms.info['sample_id']}"
        row = {"sample": sample, "scan": atoms.info["scan"], "contact_distance": float(atoms.info["contact_distance"])}
        reference_forces = atoms.get_forces()
        partner = opened(atoms)
        row["dft_energy"] = atoms.get_potential_energy()
        if partner is not None:
            try:
                row["dft_contact_energy"] = row["dft_energy"] - dft_energy(partner, cache, sample)
            except RuntimeError as error:  # an opened structure whose SCF does not converge: no contact energy
                print(f"  {sample}: opened structure skipped ({str(error)[:80]})")
                partner = None
            atomic_write_text(cache_path, json.dumps(cache, indent=1) + "\n")
        for name, model in (("model", args.model), ("baseline", args.baseline)):
            energy, forces = model_energy_forces(model, atoms)
            row[f"{name}_energy_error"] = energy - row["dft_energy"]
            row[f"{name}_force_rmse"] = float(np.sqrt(np.mean((forces - reference_forces) ** 2)))
            if partner is not None:
                row[f"{name}_contact_energy"] = energy - model_energy_forces(model, partner)[0]
        rows.append(row)
        shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
        print(shown, flush=True)
    summary = summarise(rows)
    atomic_write_text(HERE / "close_contacts.json", json.dumps({"summary": summary, "structures": rows}, indent=1) + "\n")
    plot(rows, HERE / "close_contacts.png")
    print(json.dumps(summary, indent=1))


def summarise(rows: list[dict]) -> dict:
    """Per scan and overall: MAE of the contact energies (eV), force RMSE (eV/Å), wrong-sign count."""
    out = {}
    for scan in sorted({r["scan"] for r in rows}) + ["all"]:
        chosen = [r for r in rows if scan in ("all", r["scan"])]
        entry = {"structures": len(chosen)}
        for name in ("model", "baseline"):
            pairs = [(r[f"{name}_contact_energy"], r["dft_contact_energy"]) for r in chosen if "dft_contact_energy" in r]
            if pairs:
                values = np.array(pairs)
                entry[f"{name}_contact_energy_mae_eV"] = float(np.nanmean(np.abs(values[:, 0] - values[:, 1])))
                entry[f"{name}_attractive_where_dft_repulsive"] = int(np.sum((values[:, 0] < 0) & (values[:, 1] > 0.5)))
            entry[f"{name}_force_rmse_eV_per_A"] = float(np.sqrt(np.nanmean([r[f"{name}_force_rmse"] ** 2 for r in chosen])))
        out[scan] = entry
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 5))
    chosen = [r for r in rows if "dft_contact_energy" in r]
    for name, marker, label in (("model", "o", "liquid-water model"), ("baseline", "x", "water-b3lyp (shipped)")):
        axis.scatter([r["dft_contact_energy"] for r in chosen], [r[f"{name}_contact_energy"] for r in chosen],
                     marker=marker, label=label)
    values = [v for r in chosen for v in (r["dft_contact_energy"], r["model_contact_energy"], r["baseline_contact_energy"])
              if np.isfinite(v)]
    if values:
        low, high = min(values + [0.0]) - 0.5, max(values) + 0.5  # every point shown
        axis.plot([low, high], [low, high], "k-", lw=0.8)
        axis.set_xlim(low, high)
        axis.set_ylim(low, high)
    axis.axhline(0, color="grey", lw=0.5)
    axis.set_xlabel("B3LYP contact energy E(contact) − E(opened), eV")
    axis.set_ylabel("model contact energy, eV")
    axis.set_title("Held-out close contacts")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
