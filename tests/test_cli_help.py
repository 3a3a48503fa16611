"""The command line's help is fast and says what the commands do and their real defaults."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

from fpscf.cli import DFT_DEFAULTS, QE_DEFAULTS, build_parser


def _subcommand(name: str):
    parser = build_parser()
    return next(action for action in parser._subparsers._group_actions)._name_parser_map[name]  # noqa: SLF001


def test_help_imports_no_torch():
    """``fpscf --help`` builds every subcommand's parser without loading torch, e3nn or ASE."""
    code = ("import sys\nfrom fpscf.cli import build_parser\nbuild_parser().format_help()\n"
            "print(sorted(m for m in ('torch', 'e3nn', 'ase') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    help_text = subprocess.run([sys.executable, "-m", "fpscf.cli", "--help"], capture_output=True, text=True, check=True)
    assert "eval" in help_text.stdout and "OMP_NUM_THREADS" in help_text.stdout


def test_help_shows_the_defaults_of_the_settings_it_names():
    from fpscf.datagen.pyscf_labels import DFTSettings
    from fpscf.datagen.qe_labels import QESettings

    assert DFT_DEFAULTS == {k: getattr(DFTSettings(), k) for k in DFT_DEFAULTS}
    assert QE_DEFAULTS == {k: getattr(QESettings(), k) for k in QE_DEFAULTS}
    water = _subcommand("data")._subparsers._group_actions[0]._name_parser_map["water"]  # noqa: SLF001
    assert "DFTSettings" not in water.format_help() and "aug-cc-pvdz" in water.format_help()
    assert dataclasses.is_dataclass(QESettings)


def test_demo_help_names_every_part_and_its_width_matches_spectra():
    demo, spectra = _subcommand("demo"), _subcommand("spectra")
    text = " ".join(demo.format_help().split())
    assert "AlAs" in text and "field" in text
    assert demo.get_default("width") == spectra.get_default("width") == 10.0


def test_plugin_build_uses_every_core_by_default():
    assert _subcommand("build-lammps-plugin").get_default("jobs") == (os.cpu_count() or 1)
