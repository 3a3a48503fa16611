"""Active learning (fpscf.active_learning): MD stops at the first sign of trouble and says why,
selection picks diverse frames and cuts whole-molecule clusters around the flagged atoms, the loop
resumes without relabelling and grows its history, and config errors are one line."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.build import molecule
from ase.calculators.calculator import Calculator, all_changes

from fpscf import NonFiniteResultError, build_model
from fpscf.active_learning.clusters import cluster_around
from fpscf.active_learning.config import load_active_learning_config
from fpscf.active_learning.explore import MDSettings, StopCriteria, explore
from fpscf.active_learning.label import model_labeller
from fpscf.active_learning.loop import ActiveLearning
from fpscf.active_learning.select import SelectionSettings, flag_atoms, pick_frames, score_frames, select_structures
from fpscf.active_learning.trajectory import FrameRecord, Trajectory, read_trajectory
from fpscf.cli import main
from fpscf.data.extxyz import write_extxyz
from fpscf.datagen.liquid import assign_molecules, water_box
from fpscf.datagen.synthetic import TEACHER_ARCHITECTURE, teacher_structures
from fpscf.model_io import save_model


def water_trimer() -> Atoms:
    atoms = molecule("H2O")
    for shift in ([2.9, 0.0, 0.0], [0.0, 2.9, 0.3]):
        other = molecule("H2O")
        other.positions += shift
        atoms += other
    return atoms


class ScriptedCalculator(Calculator):
    """Harmonic springs to the start positions (k eV/Å²) with scripted SCF steps; raises
    NonFiniteResultError at call ``fail_at`` (1-based; one call per MD step)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, reference: np.ndarray, scf_steps=(), fail_at: int | None = None, k: float = 5.0):
        super().__init__()
        self.reference, self.scf_steps, self.fail_at, self.k, self.calls = reference, list(scf_steps), fail_at, k, 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        if self.calls == self.fail_at:
            raise NonFiniteResultError("planted: the energy is not finite (nan)")
        displacement = self.atoms.positions - self.reference
        self.results = {"energy": 0.5 * self.k * float((displacement**2).sum()), "forces": -self.k * displacement,
                        "scf_steps": self.scf_steps[self.calls - 1] if self.calls <= len(self.scf_steps) else 6}


def test_md_stops_at_a_planted_non_finite_result_records_why_and_is_not_rerun(tmp_path):
    start = water_trimer()
    start.info["total_charge"] = 1  # carried to every frame (the scripted calculator ignores it)
    made = []

    def factory():
        made.append(ScriptedCalculator(start.positions.copy(), fail_at=6))
        return made[-1]

    md = MDSettings(steps=20, timestep_fs=0.5, trajectories=1)
    (run,) = explore([start], None, md, StopCriteria(), tmp_path, calculator_factory=factory)
    assert run.stop_reason == "non_finite" and "planted" in run.stop_detail
    assert run.steps_run == 5 and run.time_to_failure_fs == pytest.approx(2.5) and not run.stable
    with open(tmp_path / "traj_000.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3, 4, 5]
    assert [r["status"] for r in rows] == ["ok"] * 5 + ["non_finite"]
    summary = json.loads((tmp_path / "traj_000.json").read_text())
    assert summary["stop_reason"] == "non_finite" and summary["time_to_failure_fs"] == pytest.approx(2.5)
    again = read_trajectory(tmp_path, "traj_000")
    assert len(again.frames) == 6 and again.frames[-1].info["al_status"] == "non_finite"
    assert "model_forces" in again.frames[0].arrays and "model_forces" not in again.frames[-1].arrays
    assert all(frame.info["total_charge"] == 1 for frame in again.frames)
    # the failing geometry is the one the calculator was asked about last
    assert np.allclose(again.frames[-1].positions, made[0].atoms.positions, atol=1e-6)
    (rerun,) = explore([start], None, md, StopCriteria(), tmp_path, calculator_factory=factory)
    assert len(made) == 1 and rerun.stop_reason == "non_finite"


@pytest.mark.parametrize(
    "stop, scf_steps, reason, step",
    [
        (StopCriteria(max_force=1e-6), (), "max_force", 1),  # no force at the start
        (StopCriteria(scf_spike_factor=3.0, scf_spike_min_steps=10), (6, 6, 7, 6, 30), "scf_spike", 4),
        (StopCriteria(min_distance=5.0), (), "min_distance", 0),
    ],
)
def test_md_stops_at_force_scf_spike_and_close_contact_thresholds(tmp_path, stop, scf_steps, reason, step):
    start = water_trimer()
    (run,) = explore([start], None, MDSettings(steps=10, trajectories=1), stop, tmp_path,
                     calculator_factory=lambda: ScriptedCalculator(start.positions.copy(), scf_steps))
    assert (run.stop_reason, run.steps_run) == (reason, step)
    assert run.records[-1].status == reason


def synthetic_run(name: str, steps: int, stop_at: int | None) -> Trajectory:
    """A trajectory of rattled trimers whose forces grow towards a stop at ``stop_at``."""
    base, frames, records = water_trimer(), [], []
    rng = np.random.default_rng(len(name))
    pattern = rng.normal(size=(len(base), 3))
    last = stop_at if stop_at is not None else steps
    for step in range(last + 1):
        frame = base.copy()
        frame.positions += rng.normal(scale=0.02, size=frame.positions.shape)
        frame.arrays["model_forces"] = pattern * (1.0 + step)
        frame.info.update(total_charge=0, external_field=np.zeros(3))
        frames.append(frame)
        records.append(FrameRecord(step, 0.5 * step, 0.0, float(np.linalg.norm(frame.arrays["model_forces"], axis=1).max()),
                                   0, 6, 300.0, status="ok" if step != stop_at else "max_force"))
    return Trajectory(name, frames, records, steps, last, 0.5, None if stop_at is None else "max_force")


def test_selection_picks_diverse_frames_just_before_trouble():
    runs = [synthetic_run("traj_000", 60, 40), synthetic_run("traj_001", 60, None)]
    settings = SelectionSettings(frames=4, min_separation_steps=8, trouble_window_steps=10)
    scores = [s for run in runs for s in score_frames(run, settings)]
    picked = pick_frames(scores, settings.frames, settings.min_separation_steps)
    assert len(picked) == 4
    assert picked[0].trajectory == "traj_000" and picked[0].step == 40  # the frame where it blew up
    for a in picked:
        for b in picked:
            if a is not b and a.trajectory == b.trajectory:
                assert abs(a.step - b.step) >= 8
    clusters, records = select_structures(runs, settings, iteration=3, source="iter_003/")
    assert len(records) == 4 and clusters
    assert clusters[0].info["source"] == "iter_003/traj_000:step=40" and clusters[0].info["al_iteration"] == 3


def test_committee_force_spread_is_zero_for_identical_members_and_flags_the_most_uncertain_atom():
    from fpscf.active_learning.select import COMMITTEE_FAILURE_TERM, committee_force_std

    one, other = (build_model([1, 8], r_max=3.5, num_channels=8, num_interactions=1, seed=s) for s in (0, 1))
    frames = [water_trimer(), water_trimer()]
    frames[1].positions += np.random.default_rng(0).normal(scale=0.05, size=frames[1].positions.shape)
    same = committee_force_std(frames, [one, one])
    assert all(np.allclose(spread, 0.0, atol=1e-9) for spread in same)
    spreads = committee_force_std(frames, [one, other], stride=1)
    assert spreads[1].shape == (9,) and spreads[1].max() > 0
    reason, atoms = flag_atoms(frames[1], committee_std=spreads[1])[0]
    assert reason == "committee" and atoms == [int(np.argmax(spreads[1]))]
    run = Trajectory("traj_000", frames, [FrameRecord(k, 0.5 * k, 0.0, 1.0, 0, 6, 300.0) for k in range(2)], 2, 1, 0.5)
    broken = [spreads[0], np.full(9, np.inf)]  # a member that failed on the second frame
    scores = score_frames(run, SelectionSettings(committee_force_scale=0.1), broken)
    assert scores[0].terms["committee"] == pytest.approx(spreads[0].max() / 0.1)
    assert scores[1].terms["committee"] == COMMITTEE_FAILURE_TERM


def test_a_close_contact_outside_the_training_domain_is_a_frame_violation_and_the_flagged_pair():
    from fpscf.active_learning.explore import frame_violations
    from fpscf.active_learning.select import closest_pair
    from fpscf.domain import TrainingDomain

    domain = TrainingDomain.from_structures([water_trimer()])
    frame = water_trimer()[:6]  # a dimer ...
    frame.positions[3:6] += frame.positions[1] - frame.positions[5] + [0.0, 0.9, 0.0]  # ... with H1···H5 at 0.9 Å
    assert np.isclose(frame.get_distance(1, 5), 0.9)
    assert "distance:H-H" in frame_violations(frame, domain)
    assert closest_pair(frame, domain)[:2] == (1, 5)
    assert not frame_violations(water_trimer(), domain) and closest_pair(water_trimer(), domain)[2] >= 1.0


def assert_whole_molecules_around(frame: Atoms, cluster: Atoms, flagged: list[int]) -> None:
    parents = list(cluster.arrays["al_parent_index"])
    assert set(flagged) <= set(parents)
    assert not cluster.pbc.any() and np.allclose(cluster.get_center_of_mass(), 0.0, atol=1e-8)
    for o, hydrogens in assign_molecules(frame):
        if o in parents:  # every molecule in the cluster is whole, with its bonds as in the frame
            assert set(hydrogens) <= set(parents)
            for h in hydrogens:
                bond = cluster.positions[parents.index(h)] - cluster.positions[parents.index(o)]
                assert np.linalg.norm(bond) == pytest.approx(frame.get_distance(o, h, mic=True), abs=1e-8)
        else:
            assert not set(hydrogens) & set(parents)
    charge = sum(len(hs) - 2 for o, hs in assign_molecules(frame) if o in parents)
    assert cluster.info["total_charge"] == charge


@pytest.mark.parametrize("ion", [None, "hydronium"])
def test_clusters_cut_from_a_periodic_box_hold_the_flagged_atoms_and_whole_molecules(ion):
    box = water_box(12, seed=2, ion=ion)
    box.positions += 4.0  # molecules straddle the cell boundary
    box.wrap()
    box.arrays["model_forces"] = np.random.default_rng(0).normal(size=(len(box), 3))
    box.info["external_field"] = np.array([0.0, 0.0, 0.02])
    groups = flag_atoms(box)
    assert [reason for reason, _ in groups] == ["closest_pair", "max_force"]
    for reason, flagged in groups:
        cluster = cluster_around(box, flagged, shell_radius=3.2, min_molecules=3, max_molecules=5)
        assert 3 <= len(cluster) // 3 <= 5 and cluster.info["external_field"][2] == 0.02
        assert_whole_molecules_around(box, cluster, flagged)
    ion_h = [h for o, hs in assign_molecules(box) if len(hs) == 3 for h in hs][:1] if ion else [1]
    charged = cluster_around(box, ion_h, max_molecules=4)
    assert charged.info["total_charge"] == (1 if ion else 0)
    assert charged.info["composition"] == ("hydronium_3water" if ion else "water_4")


# --------------------------------------------------------------------------------------------- loop


@pytest.fixture(scope="module")
def loop_files(tmp_path_factory):
    """Base data labelled by a random teacher, the teacher and a student model, a training config."""
    directory = tmp_path_factory.mktemp("al")
    structures = teacher_structures(8, seed=0)
    write_extxyz(directory / "train.xyz", structures[:6])
    write_extxyz(directory / "valid.xyz", structures[6:])
    save_model(build_model([1, 8], seed=101, **TEACHER_ARCHITECTURE), directory / "teacher.fpscf")
    save_model(build_model([1, 8], seed=0, **TEACHER_ARCHITECTURE), directory / "student.fpscf")
    write_extxyz(directory / "start.xyz", [water_trimer()])
    training = {
        "train_file": "train.xyz", "valid_file": "valid.xyz", "output_dir": "unused", "batch_size": 4,
        "progress": False, "plot": False, "model": dict(TEACHER_ARCHITECTURE),
        "train_schedule": {0: {"start": 0, "end": 0, "lr": 0.002, "fixed_point_training_options": {"mode": "direct"},
                               "loss": {"atomic_multipoles": 100.0, "energy_per_atom": 10.0, "forces": 10.0}}},
    }
    (directory / "train.yaml").write_text(yaml.safe_dump(training))
    return directory


def write_al_config(directory, name: str, **changes) -> str:
    config = {
        "work_dir": f"work_{name}", "model": "student.fpscf", "start_structures": ["start.xyz"],
        "max_iterations": 1, "stable_runs_to_stop": 50,
        "md": {"temperature_K": 300.0, "timestep_fs": 0.1, "steps": 4, "trajectories": 1, "seed": 1},
        "stop": {"max_temperature_factor": 50.0, "max_force": 1000.0},
        "selection": {"frames": 2, "min_separation_steps": 1, "clusters_per_frame": 1, "min_molecules": 1,
                      "max_molecules": 2},
        "labelling": {"method": "model", "model": "teacher.fpscf"},
        "training": {"config": "train.yaml"},
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            config[section][field] = value
        else:
            config[section] = value
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_an_interrupted_iteration_resumes_without_relabelling_and_the_history_grows(loop_files, monkeypatch, capsys):
    import fpscf.active_learning.loop as loop

    config = load_active_learning_config(write_al_config(loop_files, "resume"))
    teacher = model_labeller(loop_files / "teacher.fpscf")
    calls = []
    label_one = teacher.label_one
    teacher.label_one = lambda atoms: calls.append(atoms.info["sample_id"]) or label_one(atoms)

    def broken_training(*args, **kwargs):
        raise KeyboardInterrupt("killed during training")

    monkeypatch.setattr(loop, "retrain", broken_training)
    with pytest.raises(KeyboardInterrupt):
        ActiveLearning(config, labeller=teacher, log=lambda line: None).run()
    work = loop_files / "work_resume"
    labelled = json.loads((work / "iter_001" / "labelled.json").read_text())["labelled"]
    assert labelled == len(calls) >= 2 and len(set(calls)) == len(calls)
    assert not (work / "history.json").exists()

    monkeypatch.undo()
    lines = []
    history = ActiveLearning(config, labeller=teacher, log=lines.append).run()
    assert len(calls) == labelled  # nothing labelled twice
    assert [entry["iteration"] for entry in history] == [1]
    summary = json.loads((work / "iter_001" / "summary.json").read_text())
    assert summary["model_out"].endswith("iter_001/train/best.fpscf")
    assert summary["training"]["structures"] == 6 + labelled
    assert len(summary["evaluation"]["runs"]) == 1 and summary["selection"]["clusters"] == labelled
    assert summary["evaluation"]["runs"][0]["static_domain_violations"] == []  # the new model carries a domain
    assert any("select:" in line for line in lines) and any("evaluate:" in line for line in lines)

    # the CLI continues the same work directory for a second iteration (labels from the teacher file)
    assert main(["active-learn", "--config", str(loop_files / "resume.yaml"), "--max-iterations", "2"]) == 0
    history = json.loads((work / "history.json").read_text())
    assert [entry["iteration"] for entry in history] == [1, 2]
    assert history[1]["model_in"] == summary["model_out"]
    assert history[1]["explore"]["directory"].endswith("iter_001/evaluate")  # the evaluation runs are reused
    assert "iteration 2:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"md__temprature_K": 300.0}, "md.temprature_K: unknown md key 'temprature_K'. Did you mean 'temperature_K'?"),
        ({"md__steps": -5}, "md.steps = -5 is not valid: expected a number > 0"),
        ({"labelling__method": "dtf"}, "labelling.method = 'dtf' is not valid. Did you mean 'dft'?"),
        ({"training": {"config": "missing.yaml"}}, "training.config = 'missing.yaml': file not found"),
        ({"training": {"config": "train.yaml", "train_schedule": {0: {"start": 0, "end": 1, "lr": 0.1}}}},
         "training.train_schedule.0.loss: required stage key is missing"),
        ({"max_iteration": 3}, "Did you mean 'max_iterations'?"),
    ],
)
def test_config_errors_are_one_line_naming_the_key(loop_files, capsys, changes, expected):
    path = write_al_config(loop_files, "bad", **changes)
    assert main(["active-learn", "--config", path]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("fpscf active-learn: error: in ")
    assert expected in error


def test_the_liquid_water_example_config_is_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    config = load_active_learning_config(root / "examples" / "liquid_water" / "active_learning.yaml")
    liquid = root / "examples" / "liquid_water"
    assert Path(config.model).is_file() and Path(config.model).parent.parent == liquid  # a liquid-water model
    assert len(config.start_structures) >= 2 and all(Path(p).is_file() for p in config.start_structures)
    assert config.labelling.method == "dft" and config.selection.max_molecules <= 7
    assert config.training.train_file == str(liquid / "data" / "train.xyz")
