"""The README's main job (`fpscf demo`) runs and reports converged, charge-neutral results."""

from __future__ import annotations

from fpscf.cli import main


def test_demo_runs_and_reports_energies_and_neutral_box(capsys):
    assert main(["demo", "--box-molecules", "2", "--field", "0.02"]) == 0
    output = capsys.readouterr().out
    assert "water molecule" in output and "periodic water box, 6 atoms" in output
    assert "SCF steps" in output and "stress" in output
    total_charge = float(output.split("total charge")[1].split()[0])
    assert abs(total_charge) < 1e-8
