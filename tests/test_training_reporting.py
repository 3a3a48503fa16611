"""Training reports: atomic files, the progress line, the metrics log and its plots."""

from __future__ import annotations

import csv
import io
import json
import math
import os

import numpy as np
import pytest

from fpscf.training.reporting import (
    CSV_COLUMNS,
    MetricRecord,
    MetricsLog,
    ProgressBar,
    atomic_savefig,
    atomic_write_bytes,
    atomic_write_text,
    plot_parity,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path) -> None:
    data = path.read_bytes()
    assert len(data) > len(PNG_SIGNATURE)
    assert data[:8] == PNG_SIGNATURE


def _two_stage_log() -> MetricsLog:
    """Stage 'warmup' epochs 1-2 (train + valid), stage 'unroll' epochs 3-4; 'forces' has no
    valid record in 'unroll', 'charges' only appears in 'unroll'."""
    log = MetricsLog()
    for epoch, stage in [(1, "warmup"), (2, "warmup"), (3, "unroll"), (4, "unroll")]:
        scale = 1.0 / epoch
        train_loss, valid_loss = 0.5 * scale, 0.7 * scale
        log.add(MetricRecord(epoch, stage, "train", "energy", 0.1234 * scale, 0.0567 * scale, 10,
                             train_loss))
        log.add(MetricRecord(epoch, stage, "train", "forces", 0.321 * scale, 0.2 * scale, 300))
        log.add(MetricRecord(epoch, stage, "valid", "energy", 0.2 * scale, 0.1 * scale, 4,
                             valid_loss))
        if stage == "warmup":
            log.add(MetricRecord(epoch, stage, "valid", "forces", 0.4 * scale, 0.3 * scale, 120))
        else:
            log.add(MetricRecord(epoch, stage, "train", "charges", 0.01 * scale, 0.008 * scale, 30))
    return log


# --- atomic writes ----------------------------------------------------------------------------


def test_atomic_writes_replace_existing_files_and_leave_no_temporaries(tmp_path):
    text_path, bytes_path = tmp_path / "report.txt", tmp_path / "blob.bin"
    text_path.write_text("old")
    bytes_path.write_bytes(b"old")
    atomic_write_text(text_path, "new text é\n")
    atomic_write_bytes(bytes_path, b"\x00\x01new")
    assert text_path.read_bytes() == "new text é\n".encode()
    assert bytes_path.read_bytes() == b"\x00\x01new"
    atomic_write_text(str(tmp_path / "fresh.txt"), "fresh")  # str paths and new files
    assert (tmp_path / "fresh.txt").read_text() == "fresh"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob.bin", "fresh.txt", "report.txt"]


def test_atomic_write_gives_new_files_normal_permissions_and_keeps_existing_ones(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    new = tmp_path / "new.txt"
    atomic_write_text(new, "x")
    assert new.stat().st_mode & 0o777 == 0o666 & ~umask
    kept = tmp_path / "kept.txt"
    kept.write_text("x")
    kept.chmod(0o640)
    atomic_write_text(kept, "y")
    assert kept.stat().st_mode & 0o777 == 0o640


def test_failing_writer_leaves_old_file_intact_and_no_temporaries(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("old content")

    with pytest.raises(UnicodeEncodeError):  # fails while producing the bytes
        atomic_write_text(path, "half written \ud800")

    class BrokenFigure:
        def savefig(self, stream, **kwargs):
            stream.write(b"\x89PNG partial")
            raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError, match="renderer crashed"):
        atomic_savefig(BrokenFigure(), path)

    assert path.read_text() == "old content"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_atomic_write_into_missing_directory_names_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write_text(tmp_path / "missing" / "a.txt", "x")


def test_atomic_savefig_writes_png(tmp_path):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 2))
    figure.subplots().plot([0, 1], [1, 0])
    atomic_savefig(figure, tmp_path / "figure.png")
    _assert_png(tmp_path / "figure.png")
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


# --- progress bar -----------------------------------------------------------------------------


def test_progress_bar_on_non_tty_writes_one_final_line_with_counts_and_values():
    stream = io.StringIO()
    bar = ProgressBar(50, "[stage unroll] epoch 12/110", stream=stream)
    for _ in range(30):
        bar.update(1, loss=1.234e-3, lr=0.5)
    assert stream.getvalue() == ""  # not a TTY: nothing until close
    bar.close()
    bar.close()  # idempotent
    output = stream.getvalue()
    assert output.endswith("\n") and output.count("\n") == 1 and "\r" not in output
    assert "[stage unroll] epoch 12/110" in output
    assert "30/50 batches" in output
    assert "loss=1.23e-03" in output and "lr=0.5" in output
    assert "it/s" in output or "s/it" in output


class _FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_tty_redraws_in_place_and_ends_with_newline():
    stream = _FakeTerminal()
    bar = ProgressBar(3, "epoch 1/2", stream=stream)
    bar.min_interval = 0.0
    with bar:
        for value in (3.0, 2.0, 1.0):
            bar.update(loss=value)
    output = stream.getvalue()
    assert output.count("\r") >= 3
    assert output.endswith("\n") and output.count("\n") == 1
    final_line = output.rstrip("\n").split("\r")[-1]
    assert "3/3 batches" in final_line and "loss=1" in final_line
    assert "█" * ProgressBar.width in final_line


def test_disabled_progress_bar_writes_nothing():
    stream = _FakeTerminal()
    bar = ProgressBar(10, "epoch 1/1", stream=stream, enabled=False)
    bar.update(5, loss=1.0)
    bar.close()
    assert stream.getvalue() == ""


def test_progress_bar_rejects_negative_total():
    with pytest.raises(ValueError, match="total"):
        ProgressBar(-1, "x", stream=io.StringIO())


# --- metrics log ------------------------------------------------------------------------------


def test_metrics_log_round_trips_through_list_csv_and_json(tmp_path):
    log = _two_stage_log()
    log.add(MetricRecord(5, "unroll", "valid", "stress", math.nan, math.inf, 0, None))

    again = MetricsLog.from_list(log.to_list())
    assert len(again.records()) == len(log.records())
    for a, b in zip(again.records(), log.records()):
        assert a.epoch == b.epoch and a.stage == b.stage and a.split == b.split
        assert a.property == b.property and a.count == b.count and a.loss == b.loss
        np.testing.assert_equal([a.rmse, a.mae], [b.rmse, b.mae])  # NaN == NaN here

    log.write(tmp_path / "out")
    directory = tmp_path / "out"
    assert sorted(p.name for p in directory.iterdir()) == ["metrics.csv", "metrics.json"]

    with open(directory / "metrics.csv", newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == list(CSV_COLUMNS)
    assert len(rows) == len(log.records()) + 1
    first = log.records()[0]
    assert float(rows[1][4]) == first.rmse  # repr precision: exact float round trip
    assert float(rows[1][7]) == first.loss
    assert rows[2][7] == ""  # no loss
    from_csv = MetricsLog.from_list(dict(zip(rows[0], row)) for row in rows[1:])
    assert [r.rmse for r in from_csv.records()[:-1]] == [r.rmse for r in log.records()[:-1]]

    text = (directory / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)  # strict JSON
    assert data[-1]["rmse"] is None and data[-1]["mae"] is None and data[-1]["loss"] is None
    from_json = MetricsLog.from_list(data)
    assert math.isnan(from_json.records()[-1].rmse)
    assert [r.mae for r in from_json.records()[:-1]] == [r.mae for r in log.records()[:-1]]


def test_from_list_names_missing_columns():
    with pytest.raises(ValueError, match="rmse"):
        MetricsLog.from_list([{"epoch": 1, "stage": "s", "split": "train", "property": "energy"}])


def test_latest_returns_last_epoch_of_stage_and_split():
    log = _two_stage_log()
    train = log.latest("warmup", "train")
    assert set(train) == {"energy", "forces"}
    assert train["energy"].epoch == 2 and train["energy"].rmse == pytest.approx(0.1234 / 2)
    valid = log.latest("unroll", "valid")
    assert set(valid) == {"energy"} and valid["energy"].epoch == 4
    assert log.latest("nonexistent", "train") == {}


def test_stage_table_shows_last_epoch_numbers_and_dashes_for_missing():
    log = _two_stage_log()
    table = log.stage_table("unroll", units={"energy": "eV", "forces": "eV/Å"})
    lines = table.splitlines()
    assert lines[0].split() == [
        "property", "unit", "train", "RMSE", "train", "MAE", "valid", "RMSE", "valid", "MAE"
    ]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"energy", "forces", "charges"}
    assert rows["energy"] == ["energy", "eV", f"{0.1234 / 4:.4g}", f"{0.0567 / 4:.4g}",
                              f"{0.2 / 4:.4g}", f"{0.1 / 4:.4g}"]
    assert rows["forces"][1] == "eV/Å" and rows["forces"][4:] == ["-", "-"]  # no valid forces
    assert rows["charges"][1] == "-"  # no unit given
    assert f"{0.321 / 4:.4g}" in rows["forces"]


# --- plots ------------------------------------------------------------------------------------


def test_learning_curves_png_is_written_for_multi_stage_log_with_nan(tmp_path):
    log = _two_stage_log()
    log.add(MetricRecord(4, "unroll", "valid", "forces", math.nan, math.nan, 0))
    log.add(MetricRecord(4, "unroll", "valid", "stress", math.nan, math.nan, 0))  # only NaN
    for epoch in (3, 4):  # trainer-style loss row: no errors, only a loss
        log.add(MetricRecord(epoch, "unroll", "train", "loss", math.nan, math.nan, 5, 1.0 / epoch))
    assert log._stage_offsets() == {"warmup": 0, "unroll": 0}  # run-wide epochs: no shift
    path = tmp_path / "learning_curves.png"
    log.plot_learning_curves(path)
    _assert_png(path)
    assert [p.name for p in tmp_path.iterdir()] == ["learning_curves.png"]


def test_learning_curves_png_is_written_for_single_epoch_restarted_stages_and_empty_log(
    tmp_path,
):
    single = MetricsLog([MetricRecord(1, "only", "train", "energy", 0.1, 0.05, 3)])
    single.plot_learning_curves(tmp_path / "single.png", units={"energy": "eV"})
    _assert_png(tmp_path / "single.png")

    restarted = MetricsLog([
        MetricRecord(epoch, stage, "train", "energy", 1.0 / (epoch + 1), 0.5, 3)
        for stage in ("a", "b") for epoch in (1, 2)
    ])
    assert restarted._stage_offsets() == {"a": 0, "b": 2}
    restarted.plot_learning_curves(tmp_path / "restarted.png")
    _assert_png(tmp_path / "restarted.png")

    MetricsLog().plot_learning_curves(tmp_path / "empty.png")
    _assert_png(tmp_path / "empty.png")


def test_parity_png_is_written_for_any_shapes_nan_and_empty_arrays(tmp_path):
    rng = np.random.default_rng(0)
    forces = rng.normal(size=(7, 3))
    energy = np.array([1.5])  # a single value
    charges = rng.normal(size=5)
    charges_predicted = charges + 0.01
    charges_predicted[2] = np.nan
    predictions = {
        "forces": (forces, forces + rng.normal(scale=0.1, size=forces.shape)),
        "energy": (energy, energy + 0.2),
        "charges": (charges, charges_predicted),
        "stress": (np.empty((0, 3, 3)), np.empty((0, 3, 3))),  # skipped
    }
    path = tmp_path / "parity.png"
    plot_parity(path, predictions, units={"forces": "eV/Å", "energy": "eV"}, title="valid")
    _assert_png(path)

    plot_parity(tmp_path / "nothing.png", {"stress": (np.empty(0), np.empty(0))})
    _assert_png(tmp_path / "nothing.png")


def test_parity_rejects_reference_and_prediction_of_different_size(tmp_path):
    with pytest.raises(ValueError, match="same size"):
        plot_parity(tmp_path / "p.png", {"energy": (np.zeros(3), np.zeros(4))})
    assert list(tmp_path.iterdir()) == []
