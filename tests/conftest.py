"""Test selection: checks that need an external program or a long build are marked ``heavy``.

``make test`` (plain ``pytest``) runs neither ``heavy`` nor ``slow`` tests; ``make test-heavy`` runs
both (CI runs the two targets). Heavy here means: the LAMMPS plugin (compiled once, 1-4 min, then
LAMMPS runs), Quantum ESPRESSO (pw.x and ph.x; installed with apt-get by ``make test-heavy``) or
PySCF DFT calculations (tens of seconds each).
"""

from __future__ import annotations

import pytest

#: Fixtures that build the LAMMPS plugin or run DFT: a test that uses one is heavy.
HEAVY_FIXTURES = frozenset({"plugin", "water_in_field", "labelled_water"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        needs_qe = any("Quantum ESPRESSO" in str(mark.kwargs.get("reason", "")) for mark in item.iter_markers("skipif"))
        if needs_qe or HEAVY_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.heavy)
