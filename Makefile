# The two setup commands of the README. PIP installs into the active Python (3.10–3.12).
PYTHON ?= python3
PIP_INSTALL = $(PYTHON) -m pip install --quiet --root-user-action=ignore --constraint constraints.txt

.PHONY: demo test test-all install bench

install:
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -e .

demo: install
	$(PYTHON) -m fpscf.cli demo

test:
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -e ".[test]"
	$(PYTHON) -m pytest -q

test-all:
	$(PYTHON) -m pytest -q -m ""

bench:
	$(PYTHON) benchmarks/electrostatics.py
	$(PYTHON) benchmarks/scf.py
