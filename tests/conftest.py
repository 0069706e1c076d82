"""Shared fixtures: fake installed plugin distributions, and the CLIs run in-process; a format check."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import hypothesis  # noqa: F401
import numpy as np
import pytest

if TYPE_CHECKING:
    from core import DataFormat

# hypothesis is imported (and its modules assertion-rewritten) before any test runs: after FFCV's
# numba threads have run, CPython 3.11.7's ast.parse can fail with "AST constructor recursion
# depth mismatch" (a CPython 3.11 bug), which hit hypothesis's late import in pytest's summary.
# wandb and mlflow are imported early for the same reason: pydantic parses their source
# (ast.parse) when their settings classes are defined, at import.
for _early in ("wandb", "mlflow"):
    with contextlib.suppress(ImportError):
        importlib.import_module(_early)
ROOT = Path(__file__).resolve().parents[1]
# configs/quickstart.yaml's test accuracy on the CPU after 8 of its 20 epochs (the cosine schedule fitted to 8), in RAM and through FFCV
# alike (2026-11-30: `core-train --config configs/quickstart.yaml --set trainer.max_epochs=8`)
QUICKSTART_ACCURACY_8_EPOCHS = 0.9526
BIN = Path(sys.executable).parent


@pytest.fixture
def make_plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """Install a one-module plugin distribution into a folder on sys.path (and PYTHONPATH).

    ``make_plugin_dist("broken", "raise ImportError('no numba')")`` makes a distribution
    ``broken`` 0.1 whose module ``broken_plugin`` is the entry point ``broken``.
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))

    def make(name: str, source: str, version: str = "0.1") -> Path:
        module = f"{name}_plugin"
        monkeypatch.delitem(sys.modules, module, raising=False)  # forgotten again at teardown
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[core.plugins]\n{name} = {module}\n")
        return site

    yield make
    for path in site.glob("*_plugin.py"):
        sys.modules.pop(path.stem, None)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a run YAML (output_dir inside tmp_path) and return its path."""

    def write(text: str, name: str = "run.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).replace("OUTPUT_DIR", str(tmp_path / "runs")))
        return path

    return write


SMALL_RUN = """
    name: small
    output_dir: OUTPUT_DIR
    seed: 3
    data:
      format: {digits: {image_size: 8}}
      transforms: [pixelnorm]
      batch_size: 128
    model: {simple_cnn: {conv1: 8, conv2: 8, fc_hidden: 16}}
    trainer: {max_epochs: 2, accelerator: cpu, enable_progress_bar: false, enable_model_summary: false}
"""


MAINS = {"core-train": "core.cli.train", "core-data": "core.cli.data", "core-plugins": "core.cli.plugins"}


def run_main(script: str, *args: object) -> subprocess.CompletedProcess:
    """Run a console script's ``main`` in this process, from the repository root, with what it
    prints captured as text: the same code as ``run_cli`` without an interpreter's start-up
    (5 to 10 s for a core-train that trains, on 2 cores). A run directory it trains in stays
    locked until pytest ends, so later runs in it must be in this process too. What must be
    seen as a user sees it (the quickstart, the terminal's output), runs that need another
    environment (DDP, an installed third-party package) and FFCV keep a fresh process
    (``run_cli``)."""
    main = importlib.import_module(MAINS[script]).main
    out, err, cwd = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(arg) for arg in args])
    finally:
        os.chdir(cwd)
    return subprocess.CompletedProcess([script, *map(str, args)], code, out.getvalue(), err.getvalue())


def run_cli(script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run an installed console script as a user would; output captured as text."""
    return subprocess.run(
        [str(BIN / script), *map(str, args)], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, **(env or {})}, timeout=timeout,
    )


def assert_labels_match_open(fmt: DataFormat, heads: list[str]) -> None:
    """``fmt.labels(split)`` holds what ``fmt.open(split)`` gives, for every split and head:
    the same labels in the same order, int64."""
    from core import SPLITS

    for split in SPLITS:
        labels, opened = fmt.labels(split), fmt.open(split).fields
        assert labels is not None and sorted(labels) == sorted(heads), (split, labels)
        for head in heads:
            assert labels[head].dtype == np.asarray(opened[head]).dtype == np.int64, (split, head)
            assert np.array_equal(labels[head], opened[head]), (split, head)
