"""Long steps print progress: the synthetic training data (examples/training/make_data.py) one line
per structure, fpscf eval about ten lines (tests/test_eval_cli.py)."""

from __future__ import annotations


def test_teacher_data_reports_progress_per_structure():
    """examples/training/make_data.py prints one line per labelled structure through this callback."""
    from fpscf.datagen.synthetic import teacher_structures

    lines: list[str] = []
    teacher_structures(2, seed=0, progress=lines.append)
    assert [line.split()[0] for line in lines] == ["1/2", "2/2"]
    assert all("SCF steps" in line and line.endswith(" s)") for line in lines)
