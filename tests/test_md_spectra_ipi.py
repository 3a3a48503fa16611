"""i-PI drives fpscf through the socket client: the beads move under the model's forces in the field,
and the model's dipole reaches i-PI as extras (written per bead, read back and bead-averaged)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow,  # about 15 s on an idle machine: i-PI's start and 2 x 13 model evaluations
              pytest.mark.skipif(importlib.util.find_spec("ipi") is None or shutil.which("i-pi") is None,
                                 reason="needs i-PI (pip install ipi)")]


def test_ipi_trpmd_runs_on_fpscf_in_a_field_and_receives_the_dipole(tmp_path):
    import torch
    from ase.io import read

    from fpscf import FixedPointCalculator
    from fpscf.md_spectra.ipi import bead_average, read_ipi_extras

    out = tmp_path / "run"
    field = ["0", "0", "0.05"]
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples/md_spectra/ipi/run_ipi.py"), "--steps", "12", "--beads", "2",
         "--field", *field, "--out", str(out), "--correlation-time", "1"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert completed.returncode == 0, completed.stdout + completed.stderr
    steps, dipoles = read_ipi_extras(out / "water.dipole_0")
    assert steps.tolist() == list(range(13)) and dipoles.shape == (13, 3)
    torch.set_num_threads(1)
    start = read(ROOT / "examples/md_spectra/ipi/water.xyz")
    start.pbc = False
    in_field = FixedPointCalculator(model="water-b3lyp", electric_field=[0.0, 0.0, 0.05], scf_tolerance=1e-8)
    no_field = FixedPointCalculator(model="water-b3lyp", scf_tolerance=1e-8)
    expected = in_field.get_properties(["dipole"], start)["dipole"]
    # step 0: every bead at the start geometry, evaluated in the field (differs from the zero-field dipole)
    np.testing.assert_allclose(dipoles[0], expected, atol=1e-6)
    assert np.abs(no_field.get_properties(["dipole"], start)["dipole"] - expected).max() > 1e-3
    _, average = bead_average(sorted(out.glob("water.dipole_*")))
    assert average.shape == (13, 3) and np.abs(average[1:] - dipoles[1:]).max() > 0  # beads differ after step 0
    assert (out / "spectra" / "summary.json").is_file()
