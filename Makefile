# The two setup commands of the README. PIP installs into the active Python (3.10–3.12).
PYTHON ?= python3
PIP_INSTALL = $(PYTHON) -m pip install --quiet --root-user-action=ignore --constraint constraints.txt

.PHONY: demo test test-all install bench qe

install:
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -e .

demo: install
	$(PYTHON) -m fpscf.cli demo

# Quantum ESPRESSO (pw.x, ph.x) for the crystal reference data (issue I): installed from Debian's
# packages where apt-get can (root, as in CI); elsewhere its tests skip with the install hint.
qe:
	@if command -v pw.x >/dev/null && command -v ph.x >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq quantum-espresso quantum-espresso-data >/dev/null; \
	else echo "Quantum ESPRESSO not installed (apt-get install quantum-espresso quantum-espresso-data): its tests are skipped"; fi

test: qe
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -e ".[test]"
	$(PYTHON) -m pytest -q

test-all:
	$(PYTHON) -m pytest -q -m ""

bench:
	$(PYTHON) benchmarks/electrostatics.py
	$(PYTHON) benchmarks/scf.py
