"""Magnetisation curve of the trained model against the analytic reference, on a 4-atom cluster not
in the training set, B along z from 0 to 200 T; and the time-reversal check E(m) − E(−m) at B = 0
for constrained moments. Writes magnetisation.png and magnetisation.json next to this script.
Usage: python examples/magnetic_spin_model/curve.py [model file, default run/best.fpscf]"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from fpscf import FixedPointCalculator, load_model
from fpscf.atomic_files import atomic_write_text
from fpscf.datagen.spin_model import PARAMAGNET, random_cluster

FIELDS = np.linspace(0.0, 200.0, 9)  # T


def magnetisation_curve(model, atoms) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """M (len(FIELDS), 3) μ_B of the model and of the reference, B along z."""
    fitted, reference = [], []
    for b in FIELDS:
        field = np.array([0.0, 0.0, b])
        probe = atoms.copy()
        calc = FixedPointCalculator(model, magnetic_field=field)
        probe.calc = calc
        fitted.append(calc.get_property("magnetic_moment", probe))
        reference.append(PARAMAGNET.label(atoms, field)["magnetic_moment"])
    return np.array(fitted), np.array(reference)


def time_reversal_asymmetry(model, atoms, moments: np.ndarray) -> float:  # noqa: ANN001
    """E(m) − E(−m) (eV) for constrained moments (N, 3) μ_B at B = 0."""
    energies = []
    for sign in (1.0, -1.0):
        probe = atoms.copy()
        probe.set_initial_magnetic_moments(sign * moments)
        probe.calc = FixedPointCalculator(model, fix_moments=True)
        energies.append(probe.get_potential_energy())
    return energies[0] - energies[1]


def main(model_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = load_model(str(model_path))
    atoms = random_cluster(np.random.default_rng(123), 4)
    fitted, reference = magnetisation_curve(model, atoms)
    asymmetry = time_reversal_asymmetry(model, atoms, np.random.default_rng(7).normal(scale=0.8, size=(4, 3)))
    error = np.abs(fitted - reference).max()
    here = Path(__file__).parent
    summary = {
        "fields_T": FIELDS.tolist(), "M_model_muB": fitted[:, 2].tolist(), "M_reference_muB": reference[:, 2].tolist(),
        "max_abs_error_muB": float(error), "max_error_fraction_of_M_at_200T": float(error / reference[-1, 2]),
        "time_reversal_E(m)-E(-m)_eV": float(asymmetry),
    }
    atomic_write_text(here / "magnetisation.json", json.dumps(summary, indent=1) + "\n")
    figure, axis = plt.subplots(figsize=(5, 3.6))
    axis.plot(FIELDS, reference[:, 2], "k-", label="Heisenberg + Landau + Zeeman (reference)")
    axis.plot(FIELDS, fitted[:, 2], "o", color="tab:red", label="fpscf, trained")
    axis.set_xlabel("B (T)")
    axis.set_ylabel("M along B (μB), 4-atom Fe cluster")
    axis.set_title(f"max |ΔM| = {error:.3f} μB ({100 * error / reference[-1, 2]:.1f} % of M(200 T))", fontsize=9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(here / "magnetisation.png", dpi=120)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "run" / "best.fpscf")
