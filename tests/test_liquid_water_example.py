"""The liquid-water MD example (examples/liquid_water/md.py, analyse.py).

Fast: the analysis on synthetic data (ideal-gas RDF, IR of a dipole at known frequencies, NVE drift
of a known slope, segments joined after a restart, whole molecules across the box edge, logs of
unfinished runs). Slow: md.py through every phase on an 8-molecule box with a few steps per phase,
an extension of nvt from its restart file, a failure recorded by a phase, then analyse.py.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fpscf.units import SPEED_OF_LIGHT_A_PER_FS

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "liquid_water"


def load_script(name: str):  # noqa: ANN201
    spec = importlib.util.spec_from_file_location(f"liquid_water_{name}", EXAMPLE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


analyse = load_script("analyse")


def test_rdf_of_an_ideal_gas_is_one():
    rng = np.random.default_rng(0)
    box = np.full(3, 12.4)
    frames = [rng.random((64, 3)) * box for _ in range(400)]
    r, g = analyse.radial_distribution(frames, [box] * len(frames), r_max=6.2, bin_width=0.1)
    beyond = r > 2.0  # enough pairs per bin for a 3 % check
    assert abs(g[beyond].mean() - 1.0) < 0.01
    assert np.all(np.abs(g[beyond] - 1.0) < 0.12)


def test_rdf_first_peak_of_a_lattice_is_its_spacing():
    spacing = 3.1
    grid = np.stack(np.meshgrid(*[np.arange(4) * spacing] * 3, indexing="ij"), -1).reshape(-1, 3)
    r, g = analyse.radial_distribution([grid], [np.full(3, 4 * spacing)], r_max=6.2, bin_width=0.02)
    position, height = analyse.first_peak(r, g, window=(2.5, 3.5))
    assert abs(position - spacing) < 0.02 and height > 10.0


def test_ir_spectrum_of_an_oscillating_dipole_peaks_at_its_frequencies():
    dt_fs = 1.0
    t = np.arange(20000) * dt_fs
    rng = np.random.default_rng(1)
    dipole = np.zeros((len(t), 3))
    for wavenumber, axis in ((650.0, 0), (1640.0, 1), (3400.0, 2)):
        omega = 2 * np.pi * SPEED_OF_LIGHT_A_PER_FS * wavenumber * 1e-8  # rad/fs
        dipole[:, axis] = 0.1 * np.cos(omega * t + rng.uniform(0, 2 * np.pi))
    wavenumbers, absorption, _ = analyse.ir_absorption(dipole, dt_fs, 300.0, 1915.0, correlation_fs=2000.0)
    maxima = analyse.band_maxima(wavenumbers, absorption)
    resolution = 1.0 / (2 * SPEED_OF_LIGHT_A_PER_FS * 2000.0 * 1e-8)  # ≈ 8 cm⁻¹
    assert abs(maxima["libration"] - 650.0) <= resolution
    assert abs(maxima["bend"] - 1640.0) <= resolution
    assert abs(maxima["stretch"] - 3400.0) <= resolution


def test_ir_absorption_scales_as_derivative_squared_over_volume_and_temperature():
    t = np.arange(4000.0)
    omega = 2 * np.pi * SPEED_OF_LIGHT_A_PER_FS * 1600.0 * 1e-8
    dipole = np.zeros((len(t), 3))
    dipole[:, 2] = 0.05 * np.sin(omega * t)
    _, reference, _ = analyse.ir_absorption(dipole, 1.0, 300.0, 1000.0)
    _, doubled, _ = analyse.ir_absorption(2 * dipole, 1.0, 600.0, 2000.0)
    np.testing.assert_allclose(doubled, reference * 4 / 2 / 2, rtol=1e-12)


def test_drift_fit_recovers_a_known_slope():
    time_ps = np.linspace(0.0, 5.0, 501)
    atoms, slope = 192, 0.0384  # eV/ps = 0.2 meV/atom/ps
    energy = -1000.0 + slope * time_ps + np.random.default_rng(2).normal(0.0, 1e-3, len(time_ps))
    assert abs(analyse.drift_per_atom(time_ps, energy, atoms) - 0.2) < 0.005


def test_segments_resumed_from_a_restart_replace_the_steps_they_rerun():
    first = (np.arange(0, 60, 10), np.arange(0, 60, 10) * 1.0)  # interrupted after step 50
    second = (np.arange(40, 100, 10), np.arange(40, 100, 10) * 2.0)  # resumed from the restart at 40
    steps, values = analyse.stitch([first, second], [0, 40])
    np.testing.assert_array_equal(steps, np.arange(0, 100, 10))
    np.testing.assert_array_equal(values, np.r_[np.arange(0, 40, 10) * 1.0, np.arange(40, 100, 10) * 2.0])


def test_molecular_dipole_is_the_same_for_a_molecule_split_by_the_box_edge():
    box = np.full(3, 10.0)
    water = np.array([[0.0, 0.0, 0.0], [0.757, 0.586, 0.0], [-0.757, 0.586, 0.0]])
    charges = np.array([-0.8, 0.4, 0.4])
    types = np.array([1, 2, 2])
    whole = analyse.Frame(0, box, types, water + 5.0, charges)
    split = analyse.Frame(0, box, types, np.mod(water + np.array([0.2, 9.9, 5.0]), box), charges)
    expected = (charges[:, None] * water).sum(0)
    for frame in (whole, split):
        dipoles, molecule_charges = analyse.molecular_dipoles(frame)
        np.testing.assert_allclose(dipoles[0], expected, atol=1e-12)
        np.testing.assert_allclose(molecule_charges, [0.0], atol=1e-12)
    atomic = np.array([[0.0, 0.0, 0.1], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(analyse.molecular_dipoles(split, atomic)[0][0], expected + [0.0, 0.0, 0.1], atol=1e-12)


def test_thermo_of_an_unfinished_run_is_read_up_to_its_last_complete_row(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("LAMMPS\n   Step          Time           Temp\n         0  0 300\n"
                   "WARNING: something\n        10  0.005 310\n        20  0.01\n")
    thermo = analyse.read_thermo(log)
    np.testing.assert_array_equal(thermo["Step"], [0, 10])
    np.testing.assert_array_equal(thermo["Temp"], [300, 310])
    assert analyse.read_loop_time(log) is None


def test_dump_reader_sorts_atoms_and_skips_a_truncated_frame(tmp_path):
    frame = ("ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n2\nITEM: BOX BOUNDS pp pp pp\n0 10\n0 10\n0 10\n"
             "ITEM: ATOMS id type x y z q\n2 2 1 2 3 0.4\n1 1 4 5 6 -0.4\n")
    path = tmp_path / "traj.lammpstrj"
    path.write_text(frame.format(step=0) + frame.format(step=20)[:-20])
    frames = list(analyse.read_dump(path))
    assert [f.step for f in frames] == [0]
    np.testing.assert_array_equal(frames[0].types, [1, 2])
    np.testing.assert_array_equal(frames[0].charges, [-0.4, 0.4])


@pytest.mark.slow  # about 3 minutes on 2 busy cores: 9 LAMMPS runs of a few steps each
def test_md_runs_every_phase_continues_and_records_a_failure(tmp_path, plugin):  # noqa: F811
    md = load_script("md")
    out = tmp_path / "md"
    common = ["--model", "water-b3lyp", "--out", str(out), "--molecules", "8", "--minimize-steps", "3",
              "--equilibrate-ps", "0.002", "--chunk-ps", "0.002", "--restart-ps", "0.001", "--nve-ps", "0.002",
              "--field-ps", "0.002", "--fields", "0.05", "--thermo-every", "2", "--dump-every", "2"]
    md.main(common + ["--nvt-ps", "0.002"])
    status = {p: json.loads((out / p / "status.json").read_text()) for p in
              ("minimize", "equilibrate", "nvt", "nve", "field_005")}
    assert all(s["state"] == "done" for s in status.values()), {p: s["state"] for p, s in status.items()}
    assert status["nvt"]["steps_done"] == 4 and status["field_005"]["started_from"]["restart"] == "nvt.4.restart"

    md.main(common + ["--nvt-ps", "0.004"])  # a longer nvt continues from its restart file at step 4
    nvt = json.loads((out / "nvt" / "status.json").read_text())
    assert nvt["state"] == "done" and nvt["steps_done"] == 8
    assert [s["start_step"] for s in nvt["segments"]] == [0, 4] and nvt["segments"][1]["restart"] == "nvt.4.restart"

    with pytest.raises(SystemExit, match="other settings"):
        md.main(common + ["--seed", "1"])

    md.main(common + ["--nvt-ps", "0.004", "--nve-ps", "0.004", "--max-temperature", "1"])  # nve resumes, is "too hot"
    nve = json.loads((out / "nve" / "status.json").read_text())
    assert nve["state"] == "failed" and "halt" in nve["message"].lower()
    assert nve["failed_at_ps"] is not None and nve["failed_at_ps"] >= 0.002

    analyse.main(["--run", str(out), "--dipole-frames", "0", "--no-plots"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["phases"]["nvt"]["simulated_ps"] == pytest.approx(0.004)
    assert summary["phases"]["nve"]["state"] == "failed" and summary["phases"]["nve"]["failed_at_ps"] >= 0.002
    assert summary["phases"]["nvt"]["mean_scf_steps"] > 0 and summary["phases"]["nvt"]["ms_per_atom_step"] > 0
    assert summary["rdf_OO"]["frames"] == 5 and "polarisation" in summary["phases"]["field_005"]
    assert summary["simulated_ps_total"] == pytest.approx(0.002 + 0.004 + summary["phases"]["nve"]["simulated_ps"] + 0.002)


from test_lammps_plugin_build import plugin  # noqa: E402, F401  (session fixture: builds or skips)
