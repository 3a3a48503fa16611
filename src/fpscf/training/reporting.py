"""Training reports: a progress line, the metrics log, learning-curve and parity plots.

Everything a user opens (``metrics.csv``, ``metrics.json``, PNG figures) is written atomically:
the content goes to a temporary file in the target directory, which then replaces the target
with ``os.replace``. A reader never sees a half-written file, and a writer that fails leaves the
previous file untouched.

Plots use :class:`matplotlib.figure.Figure` directly (no ``pyplot``, no global figure state, no
display backend), so they work headless and from any thread.

Metric values carry the units of their property (eV, eV/Å, e, ...); the caller passes the unit
strings, this module does not convert anything.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

from fpscf.atomic_files import atomic_write, atomic_write_bytes, atomic_write_text  # noqa: F401 (re-exported)

METRICS_CSV = "metrics.csv"
METRICS_JSON = "metrics.json"
CSV_COLUMNS: tuple[str, ...] = (
    "epoch", "stage", "split", "property", "rmse", "mae", "count", "loss"
)
SPLITS: tuple[str, ...] = ("train", "valid")

#: At most this many points are drawn per parity subplot (statistics always use every point).
PARITY_MAX_POINTS = 200_000


# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------


def atomic_savefig(figure: Any, path: str | os.PathLike[str], **savefig_kwargs: Any) -> None:
    """Save a matplotlib ``figure`` to ``path`` atomically.

    The format follows the suffix of ``path`` (``.png`` by default, also when there is no
    suffix); extra keyword arguments go to ``figure.savefig`` (e.g. ``dpi=150``).
    """
    suffix = Path(path).suffix.lstrip(".").lower()
    savefig_kwargs.setdefault("format", suffix or "png")
    atomic_write(path, lambda stream: figure.savefig(stream, **savefig_kwargs))


# --------------------------------------------------------------------------------------------
# Progress line
# --------------------------------------------------------------------------------------------


def _format_value(value: float) -> str:
    """Three significant digits: ``0.123``, ``12.3``, ``1.23e-03``, ``4.56e+05``, ``nan``."""
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0.0:
        return "0"
    if 1e-2 <= abs(value) < 1e4:
        return f"{value:.3g}"
    return f"{value:.2e}"


def _is_tty(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):  # closed or detached stream
        return False


def _can_encode(stream: IO[str], text: str) -> bool:
    encoding = getattr(stream, "encoding", None)
    if not encoding:  # StringIO and friends hold str, anything goes
        return True
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


class ProgressBar:
    """One progress line on a stream (default ``sys.stderr``), redrawn in place with ``'\\r'``::

        [stage unroll] epoch 12/110 |██████······| 30/50 batches  loss=1.23e-03  2.1 it/s

    ``description`` is everything before the bar (the trainer passes stage and epoch). On a
    terminal the line is redrawn at most every :attr:`min_interval` seconds (and always when
    the count reaches ``total``); on any other stream (log file, pipe, ``StringIO``) nothing is
    written until :meth:`close`, which writes the final line once, so logs hold one line per
    epoch. ``enabled=False`` writes nothing at all.

    Usable as a context manager (``close`` on exit).
    """

    width: int = 12
    min_interval: float = 0.1

    def __init__(
        self,
        total: int,
        description: str,
        stream: IO[str] | None = None,
        enabled: bool = True,
        unit: str = "batches",
    ) -> None:
        if isinstance(total, bool) or not isinstance(total, (int, np.integer)) or total < 0:
            raise ValueError(f"ProgressBar total must be an integer >= 0, got {total!r}")
        self.total = int(total)
        self.description = str(description)
        self.unit = unit
        self.enabled = bool(enabled)
        self.stream = stream if stream is not None else sys.stderr
        self.count = 0
        self.values: dict[str, float] = {}
        self._tty = self.enabled and _is_tty(self.stream)
        fill, empty = "█", "·"
        if self.enabled and not _can_encode(self.stream, fill + empty):
            fill, empty = "#", "."
        self._fill, self._empty = fill, empty
        self._start = time.perf_counter()
        self._last_draw = -math.inf
        self._drawn_length = 0
        self._closed = False

    def update(self, n: int = 1, **values: float) -> None:
        """Advance by ``n`` steps and set the shown ``values`` (``name=value``, 3 significant
        digits; a value stays shown until it is updated)."""
        if self._closed:
            raise RuntimeError(f"ProgressBar {self.description!r} is closed; create a new one")
        self.count += int(n)
        for name, value in values.items():
            self.values[name] = float(value)
        if not self._tty:
            return
        now = time.perf_counter()
        if now - self._last_draw >= self.min_interval or self.count >= self.total:
            self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line with ``'\\n'``. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        if self._tty:
            self._draw(time.perf_counter())
            self.stream.write("\n")
        else:
            self.stream.write(self.render() + "\n")
        self.stream.flush()

    def render(self, now: float | None = None) -> str:
        """The progress line as it would be drawn now (no ``'\\r'``, no newline)."""
        now = time.perf_counter() if now is None else now
        fraction = min(1.0, self.count / self.total) if self.total > 0 else 1.0
        filled = int(round(fraction * self.width))
        bar = self._fill * filled + self._empty * (self.width - filled)
        parts = [f"{self.description} |{bar}| {self.count}/{self.total} {self.unit}"]
        parts += [f"{name}={_format_value(value)}" for name, value in self.values.items()]
        elapsed = now - self._start
        if self.count > 0 and elapsed > 0:
            rate = self.count / elapsed
            if rate >= 100.0:
                parts.append(f"{rate:.0f} it/s")
            elif rate >= 1.0:
                parts.append(f"{rate:.1f} it/s")
            else:
                parts.append(f"{1.0 / rate:.1f} s/it")
        return "  ".join(parts)

    def _draw(self, now: float) -> None:
        line = self.render(now)
        columns = shutil.get_terminal_size((120, 24)).columns
        if columns > 1:
            line = line[: columns - 1]  # a wrapped line cannot be redrawn with '\r'
        padding = " " * max(0, self._drawn_length - len(line))
        self.stream.write("\r" + line + padding)
        self.stream.flush()
        self._drawn_length = len(line)
        self._last_draw = now

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


@dataclass
class MetricRecord:
    """Error of one property on one split at the end of one epoch.

    ``rmse`` and ``mae`` are in the unit of the property (eV, eV/Å, ...), over ``count``
    values; ``loss`` is the (dimensionless, weighted) training loss of that split, if known.
    """

    epoch: int
    stage: str
    split: str  # "train" | "valid"
    property: str
    rmse: float
    mae: float
    count: int
    loss: float | None = None


def _optional_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    return float(value)


def _record_from_row(row: Mapping[str, Any], index: int) -> MetricRecord:
    missing = [name for name in CSV_COLUMNS if name != "loss" and name not in row]
    if missing:
        raise ValueError(
            f"metrics row {index} lacks {missing}; expected keys {list(CSV_COLUMNS)} "
            f"(as written by MetricsLog.to_list), got {sorted(row)}"
        )
    rmse, mae = _optional_float(row["rmse"]), _optional_float(row["mae"])
    return MetricRecord(
        epoch=int(row["epoch"]),
        stage=str(row["stage"]),
        split=str(row["split"]),
        property=str(row["property"]),
        rmse=math.nan if rmse is None else rmse,  # JSON stores NaN as null
        mae=math.nan if mae is None else mae,
        count=int(row["count"]),
        loss=_optional_float(row.get("loss")),
    )


def _json_safe(value: Any) -> Any:
    """NaN and ±inf become ``None`` (JSON ``null``); everything else is unchanged."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _csv_field(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest string that reads back to the same float
    return str(value)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


class MetricsLog:
    """All metrics of a run; written as ``metrics.csv`` and ``metrics.json`` in an output directory.

    Records are kept in the order they were added. ``metrics.json`` is a list of objects with
    the keys of :data:`CSV_COLUMNS`, NaN/inf written as ``null``; ``metrics.csv`` has the same
    columns, floats at full precision (``repr``), an empty ``loss`` field for "no loss".
    """

    def __init__(self, records: list[MetricRecord] | None = None) -> None:
        self._records: list[MetricRecord] = []
        if records is not None:
            self.extend(records)

    def add(self, record: MetricRecord) -> None:
        if not isinstance(record, MetricRecord):
            raise TypeError(f"MetricsLog.add expects a MetricRecord, got {type(record).__name__}")
        self._records.append(record)

    def extend(self, records: Iterable[MetricRecord]) -> None:
        for record in records:
            self.add(record)

    def records(self) -> list[MetricRecord]:
        """A copy of the list of records, in the order they were added."""
        return list(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def to_list(self) -> list[dict]:
        """Plain dicts (one per record) for checkpoints; floats are kept as they are (NaN too)."""
        return [dataclasses.asdict(record) for record in self._records]

    @classmethod
    def from_list(cls, rows: Iterable[Mapping[str, Any]]) -> MetricsLog:
        """Inverse of :meth:`to_list`; also reads the rows of ``metrics.json`` (null → NaN).

        Raises:
            ValueError: a row lacks one of the columns.
        """
        return cls([_record_from_row(row, index) for index, row in enumerate(rows)])

    def write(self, directory: str | os.PathLike[str]) -> None:
        """Write ``metrics.csv`` and ``metrics.json`` into ``directory`` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        rows = self.to_list()

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow([_csv_field(row[name]) for name in CSV_COLUMNS])
        atomic_write_text(directory / METRICS_CSV, buffer.getvalue())

        safe_rows = [{name: _json_safe(row[name]) for name in CSV_COLUMNS} for row in rows]
        text = json.dumps(safe_rows, indent=1, allow_nan=False)
        atomic_write_text(directory / METRICS_JSON, text + "\n")

    def latest(self, stage: str, split: str) -> dict[str, MetricRecord]:
        """Property → record with the highest epoch of that stage and split (later wins a tie)."""
        result: dict[str, MetricRecord] = {}
        for record in self._records:
            if record.stage != stage or record.split != split:
                continue
            previous = result.get(record.property)
            if previous is None or record.epoch >= previous.epoch:
                result[record.property] = record
        return result

    def stage_table(self, stage: str, units: Mapping[str, str] | None = None) -> str:
        """Plain-text table of the last epoch of ``stage``, one row per property.

        Columns: property, unit, train RMSE, train MAE, valid RMSE, valid MAE (4 significant
        digits); a missing value or unit is shown as ``-``. Train and valid each come from
        their own last recorded epoch of the stage.
        """
        units = units or {}
        train, valid = self.latest(stage, "train"), self.latest(stage, "valid")
        properties = _unique(r.property for r in self._records if r.stage == stage)

        def number(record: MetricRecord | None, name: str) -> str:
            if record is None:
                return "-"
            value = getattr(record, name)
            if record.property == "loss" and name == "rmse" and record.loss is not None:
                value = record.loss  # the weighted total loss is shown in the first column
            return "-" if value is None or not math.isfinite(value) else f"{value:.4g}"

        header = ["property", "unit", "train RMSE", "train MAE", "valid RMSE", "valid MAE"]
        rows = [header]
        for prop in properties:
            t, v = train.get(prop), valid.get(prop)
            rows.append([
                prop,
                units.get(prop) or "-",
                number(t, "rmse"),
                number(t, "mae"),
                number(v, "rmse"),
                number(v, "mae"),
            ])
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]

        def line(row: list[str]) -> str:
            cells = [
                cell.ljust(width) if i < 2 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths))
            ]
            return "  ".join(cells).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([line(rows[0]), rule, *(line(row) for row in rows[1:])])

    def _stage_offsets(self) -> dict[str, int]:
        """Epoch offset per stage so that stages follow each other on one x axis.

        Stages whose epochs already continue the previous stage (a run-wide epoch counter)
        get offset 0; stages that restart their epoch counter are shifted past the previous one.
        """
        offsets: dict[str, int] = {}
        previous_end: int | None = None
        for stage in _unique(r.stage for r in self._records):
            epochs = [r.epoch for r in self._records if r.stage == stage]
            start = min(epochs)
            offset = 0 if previous_end is None or start > previous_end else previous_end + 1 - start
            offsets[stage] = offset
            previous_end = max(epochs) + offset
        return offsets

    def plot_learning_curves(
        self, path: str | os.PathLike[str], units: Mapping[str, str] | None = None
    ) -> None:
        """Write a PNG: one subplot per property, RMSE against epoch (log y), train and valid.

        A property whose records have no finite RMSE but a loss (the trainer's ``"loss"`` row)
        shows the loss instead. ``units`` (property → unit) only labels the y axes.

        Epochs are counted from 1, as the progress bar and the stage tables count them.
        Dotted vertical lines mark where each stage starts, labelled with the stage name. If a
        stage restarts its epoch count, its epochs are shifted to follow the previous stage.
        NaN values leave gaps; a property without a finite positive RMSE gets a linear axis.
        An empty log gives a figure that says so.
        """
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        units = units or {}
        properties = _unique(r.property for r in self._records)
        if not properties:
            figure = Figure(figsize=(4.0, 2.5))
            figure.text(0.5, 0.5, "no metrics recorded yet", ha="center", va="center")
            atomic_savefig(figure, path)
            return

        offsets = self._stage_offsets()
        stage_starts = {
            stage: min(r.epoch for r in self._records if r.stage == stage) + offset + 1
            for stage, offset in offsets.items()
        }
        shifted = any(offsets.values())

        ncols = min(3, len(properties))
        nrows = math.ceil(len(properties) / ncols)
        figure = Figure(figsize=(4.5 * ncols, 3.3 * nrows), layout="constrained")
        axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in axes[len(properties):]:
            ax.set_visible(False)

        for ax, prop in zip(axes, properties):
            mine = [r for r in self._records if r.property == prop]
            # a row without errors but with a loss (e.g. the trainer's "loss" row): plot the loss
            quantity = "rmse"
            if not any(math.isfinite(r.rmse) for r in mine) and any(
                r.loss is not None and math.isfinite(r.loss) for r in mine
            ):
                quantity = "loss"
            positive = False
            for split, style in zip(SPLITS, ("-", "--")):
                points: dict[int, float] = {}
                for r in mine:
                    if r.split == split:
                        value = getattr(r, quantity)
                        points[r.epoch + offsets[r.stage] + 1] = math.nan if value is None else value
                if not points:
                    continue
                x = np.array(sorted(points))
                y = np.array([points[i] for i in x], dtype=float)
                positive |= bool(np.any(np.isfinite(y) & (y > 0)))
                marker = "o" if len(x) <= 50 else None
                ax.plot(x, y, style, marker=marker, markersize=3, label=split)
            if positive:
                ax.set_yscale("log")
            for stage, start in stage_starts.items():
                ax.axvline(start - 0.5, linestyle=":", color="0.45", linewidth=1.0)
                ax.text(start - 0.5, 0.98, f" {stage}", transform=ax.get_xaxis_transform(),
                        rotation=90, ha="left", va="top", fontsize=7, color="0.35")
            unit = units.get(prop)
            ax.set_title(prop)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch (stages in sequence)" if shifted else "epoch")
            if quantity == "loss":
                ax.set_ylabel("loss")
            else:
                ax.set_ylabel(f"RMSE ({unit})" if unit else "RMSE")
            ax.grid(True, which="major", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
        atomic_savefig(figure, path, dpi=110, bbox_inches="tight")


# --------------------------------------------------------------------------------------------
# Parity plot
# --------------------------------------------------------------------------------------------


def _as_flat_array(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor, without importing torch here
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=float).ravel()


def plot_parity(
    path: str | os.PathLike[str],
    predictions: Mapping[str, tuple[Any, Any]],
    units: Mapping[str, str] | None = None,
    title: str = "",
) -> None:
    """Write a PNG with one square parity subplot per property.

    Args:
        path: output file.
        predictions: property → ``(reference, prediction)``; arrays of any (equal) size, in
            the unit of the property; they are flattened. Pairs where either value is NaN/inf
            are left out; properties with no finite pair are skipped.
        units: property → unit string, shown on the axes and in the subplot title.
        title: figure title.

    The subplot title gives RMSE and MAE over all finite pairs; at most
    :data:`PARITY_MAX_POINTS` points (a fixed random subset) are drawn.

    Raises:
        ValueError: reference and prediction of a property differ in size.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    units = units or {}
    panels: list[tuple[str, np.ndarray, np.ndarray]] = []
    for prop, pair in predictions.items():
        reference, predicted = (_as_flat_array(a) for a in pair)
        if reference.size != predicted.size:
            raise ValueError(
                f"parity plot of {prop!r}: reference has {reference.size} values but prediction "
                f"has {predicted.size}; pass (reference, prediction) of the same size"
            )
        finite = np.isfinite(reference) & np.isfinite(predicted)
        if finite.any():
            panels.append((prop, reference[finite], predicted[finite]))

    if not panels:
        figure = Figure(figsize=(4.0, 2.5))
        figure.text(0.5, 0.5, "no finite values to plot", ha="center", va="center")
        if title:
            figure.suptitle(title)
        atomic_savefig(figure, path)
        return

    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    height = 4.0 * nrows + (0.4 if title else 0.0)
    figure = Figure(figsize=(4.0 * ncols, height), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    rng = np.random.default_rng(0)

    for ax, (prop, reference, predicted) in zip(axes, panels):
        error = predicted - reference
        rmse = float(np.sqrt(np.mean(error**2)))
        mae = float(np.mean(np.abs(error)))
        shown_x, shown_y = reference, predicted
        if reference.size > PARITY_MAX_POINTS:
            keep = rng.choice(reference.size, PARITY_MAX_POINTS, replace=False)
            shown_x, shown_y = reference[keep], predicted[keep]
        low = float(min(reference.min(), predicted.min()))
        high = float(max(reference.max(), predicted.max()))
        margin = 0.05 * (high - low) if high > low else max(abs(high), 1.0) * 0.05
        low, high = low - margin, high + margin
        alpha = 0.8 if shown_x.size < 1000 else 0.3
        size = 6 if shown_x.size < 100 else 3
        ax.plot(shown_x, shown_y, ".", markersize=size, alpha=alpha, rasterized=True)
        ax.plot([low, high], [low, high], "-", color="0.3", linewidth=1.0)
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal", adjustable="box")
        for axis in (ax.xaxis, ax.yaxis):  # at most 5 ticks: long labels (-693.42 eV/atom) do not collide
            axis.set_major_locator(MaxNLocator(nbins=4))
        unit = units.get(prop)
        suffix = f" {unit}" if unit else ""
        ax.set_title(f"{prop} (n={reference.size})\nRMSE {rmse:.3g}{suffix}, MAE {mae:.3g}{suffix}",
                     fontsize=9)
        bracket = f" ({unit})" if unit else ""
        ax.set_xlabel(f"reference{bracket}")
        ax.set_ylabel(f"prediction{bracket}")
        ax.grid(True, alpha=0.3)
    if title:
        figure.suptitle(title)
    atomic_savefig(figure, path, dpi=110, bbox_inches="tight")


__all__ = [
    "CSV_COLUMNS",
    "METRICS_CSV",
    "METRICS_JSON",
    "MetricRecord",
    "MetricsLog",
    "ProgressBar",
    "atomic_savefig",
    "atomic_write_bytes",
    "atomic_write_text",
    "plot_parity",
]
