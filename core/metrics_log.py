"""A CSV logger that keeps a resumed run's history in one ``metrics.csv``.

Lightning's CSVLogger deletes an existing ``metrics.csv`` when it starts. On ``--resume``
we keep the rows up to the checkpoint's epoch (the epochs the checkpoint contains) and
append from there, so a killed and resumed run has one complete, duplicate-free history.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from core.files import write_atomic

METRICS = "metrics.csv"


class _AppendingWriter(ExperimentWriter):
    """Keeps an existing ``metrics.csv`` (a resumed run appends to it) and writes every save
    atomically: the whole file under a temporary name, then moved into place, so a kill
    leaves the previous complete file, never a truncated one."""

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if path.is_file():
            self.metrics_keys = _read(path)[0]

    def save(self) -> None:
        if not self.metrics:
            return
        path = Path(self.metrics_file_path)
        fields, rows = _read(path) if path.is_file() else ([], [])
        self._record_new_keys()
        self.metrics_keys = sorted(set(self.metrics_keys) | set(fields))
        _write(path, self.metrics_keys, rows + self.metrics)
        self.metrics = []


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def read_epoch_metrics(metrics_csv: Path) -> dict[str, list[tuple[int, float]]]:
    """``{metric: [(epoch, value), ...]}`` for every non-empty cell of the rows that have an epoch."""
    series: dict[str, list[tuple[int, float]]] = {}
    for row in _read(metrics_csv)[1]:
        if row.get("epoch"):
            for key, value in row.items():
                if key not in ("epoch", "step") and value not in ("", None):
                    series.setdefault(key, []).append((int(float(row["epoch"])), float(value)))
    return series


def _write(path: Path, fields: list[str], rows: list[dict[str, object]]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, out.getvalue())


class RunLogger(CSVLogger):
    """Writes ``<run_dir>/metrics.csv`` (no version sub-folders)."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir, name="", version="")

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._experiment = _AppendingWriter(self.log_dir)
        return self._experiment


def truncate_after(run_dir: Path, checkpoint: dict) -> None:
    """Drop the rows logged after ``checkpoint`` was written (work a stopped run did past it):
    those of later epochs, and those of its own epoch logged at a later step (a checkpoint
    taken within an epoch). Lightning logs with ``_batches_that_stepped``, saved in it."""
    path = run_dir / METRICS
    if not path.is_file():
        return
    epoch = int(checkpoint["epoch"])
    loop = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.state_dict", {})
    last_step = int(loop.get("_batches_that_stepped", checkpoint.get("global_step", 0)))
    fields, rows = _read(path)

    def before(row: dict[str, str]) -> bool:
        if not row.get("epoch"):
            return True
        row_epoch = int(float(row["epoch"]))
        return row_epoch < epoch or (row_epoch == epoch and (not row.get("step") or int(float(row["step"])) <= last_step))

    _write(path, fields, [row for row in rows if before(row)])
