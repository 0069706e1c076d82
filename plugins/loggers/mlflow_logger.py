"""Logger ``mlflow``: Lightning's MLFlowLogger; by default a file store in ``<run_dir>/mlruns``."""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from core import PluginUnavailable

if find_spec("mlflow") is None:
    raise PluginUnavailable("mlflow is not installed; install it with: pip install 'core-train[mlflow]'")


def mlflow(
    run_dir: Path,
    experiment_name: str = "core-train",
    tracking_uri: str | None = None,
    tags: dict[str, str] | None = None,
    run_id: str | None = None,
    log_model: bool = False,
    artifact_location: str | None = None,
) -> Any:
    """An MLflow run named after the run directory, in ``experiment_name``.

    ``experiment_name``: the MLflow experiment that holds the run (created if missing).
    ``tracking_uri``: a server (``http://host:5000``) or a store (``file:/path/mlruns``);
    default ``$MLFLOW_TRACKING_URI``, else the file store ``file:<run_dir>/mlruns`` (for a file
    store, MLflow 3's ``MLFLOW_ALLOW_FILE_STORE`` is set to true unless already set).
    ``tags``: ``{name: value}`` tags set on the MLflow run.
    ``run_id``: the id of an existing MLflow run to continue (a resumed run otherwise starts a
    new one).
    ``log_model``: upload the checkpoints as artifacts at the end of training.
    ``artifact_location``: where the experiment keeps its artifacts, used only when this run
    creates the experiment (by default MLflow's place for the tracking store)."""
    from lightning.pytorch.loggers import MLFlowLogger

    if not experiment_name.strip():
        raise ValueError("experiment_name is empty; name the MLflow experiment (default core-train)")
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"file:{Path(run_dir).resolve() / 'mlruns'}"
    if urlparse(uri).scheme in ("", "file"):
        # MLflow 3.x keeps the file store only behind this switch (its default is now a database);
        # the run directory's own store needs no server and no database
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        return MLFlowLogger(experiment_name=experiment_name, run_name=Path(run_dir).name, tracking_uri=uri,
                            tags=dict(tags) if tags else None, log_model=log_model, run_id=run_id,
                            artifact_location=artifact_location)
    except Exception as exc:  # noqa: BLE001 (MLflow's own exception types: one message at this logger's YAML path)
        raise ValueError(f"MLflow refuses tracking_uri {uri!r}: {type(exc).__name__}: {exc}") from None
