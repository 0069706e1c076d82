"""A CSV logger that keeps a resumed run's history in one ``metrics.csv``.

Lightning's CSVLogger deletes an existing ``metrics.csv`` when it starts. On ``--resume``
we keep the rows up to the checkpoint's epoch (the epochs the checkpoint contains) and
append from there, so a killed and resumed run has one complete, duplicate-free history.
"""

from __future__ import annotations

import csv
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

METRICS = "metrics.csv"


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if path.is_file():
            with open(path, newline="") as handle:
                self.metrics_keys = list(csv.DictReader(handle).fieldnames or [])


class RunLogger(CSVLogger):
    """Writes ``<run_dir>/metrics.csv`` (no version sub-folders)."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir, name="", version="")

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._experiment = _AppendingWriter(self.log_dir)
        return self._experiment


def truncate_after(run_dir: Path, last_epoch: int) -> None:
    """Drop rows logged after ``last_epoch`` (work a killed run did past its checkpoint)."""
    path = run_dir / METRICS
    if not path.is_file():
        return
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames or [], list(reader)
    kept = [row for row in rows if not row.get("epoch") or int(float(row["epoch"])) <= last_epoch]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
