"""The README's main job (`fpscf demo`): IR and Raman spectra of water and the water dimer with the
shipped model, written as tables, plots and JSON."""

from __future__ import annotations

import csv
import json

import numpy as np

from fpscf.cli import main


def test_demo_writes_spectra_of_water_and_the_dimer_at_their_minima(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--field", "0.02"]) == 0
    output = capsys.readouterr().out
    assert "shipped model 'water-b3lyp'" in output and "relaxed in" in output
    for name, n_modes in (("water", 3), ("water_dimer", 12)):
        for file in ("modes.csv", "spectrum.csv", "spectrum.png", "summary.json"):
            assert (out / name / file).is_file(), f"{name}/{file} missing"
        with open(out / name / "modes.csv") as handle:
            modes = list(csv.DictReader(handle))
        assert len(modes) == n_modes
        frequencies = np.array([float(row["frequency_cm-1"]) for row in modes])
        assert np.all(frequencies > 0), f"{name}: imaginary modes at the relaxed minimum: {frequencies}"
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["max_force_eV_per_A"] < 1e-3
    # Water: bend near 1600 cm⁻¹, two O–H stretches near 3800 cm⁻¹ (B3LYP/aug-cc-pVDZ: 1600, 3800, 3900).
    with open(out / "water" / "modes.csv") as handle:
        water = [float(row["frequency_cm-1"]) for row in csv.DictReader(handle)]
    assert 1400 < water[0] < 1800 and 3500 < water[1] < water[2] < 4200
    assert "water molecule in a field of 0.02 V/Å" in output
    # AlAs with the shipped crystal model: TO and LO near DFPT's 359 and 397 cm⁻¹, bands written.
    for file in ("modes.csv", "spectrum.png", "summary.json", "BORN", "band.yaml", "bands.png"):
        assert (out / "alas" / file).is_file(), f"alas/{file} missing"
    with open(out / "alas" / "modes.csv") as handle:
        optical = sorted(float(row["frequency_cm-1"]) for row in csv.DictReader(handle) if row["acoustic"] == "0")
    assert 320 < optical[0] <= optical[1] < optical[2] < 440 and optical[2] - optical[0] > 10
