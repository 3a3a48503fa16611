"""The documentation builds with MkDocs in strict mode (every warning, broken link or anchor, link
outside the repository or reference to internal notes is an error: docs/hooks.py), and the README
keeps to the same rules."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_documentation_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    cli = (tmp_path / "cli" / "index.html").read_text()
    assert "fpscf eval" in cli and "--scf-tolerance" in cli  # generated from the parser
    card = (tmp_path / "models" / "water-b3lyp" / "index.html").read_text()
    assert "Model card" in card


def test_readme_is_short_and_links_only_inside_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert len(readme) < 6000
    assert not re.search(r"\]\((?:https?:|//|\.\./)", readme)
    assert not re.search(r"DESIGN\.md|\b[Ii]ssues? [A-Z]\b", readme)
    for target in re.findall(r"\]\(([^)#]+)", readme):
        assert (ROOT / target).exists(), target
    assert "make demo" in readme and "make test" in readme
