"""``core-train sweep`` (:mod:`plugins.sweep.command`): one run per combination of ``--grid``
values, then a comparison.

``--grid optim.lr=1e-3,3e-3 --grid model.simple_cnn.conv1=16,32`` gives four runs, each a
normal run directory ``<output_dir>/<name>-sweep/<name>-NNN`` (the config with that
combination set, as ``--set`` would), trained and tested one after another. Each finished
run leaves ``result.json`` (its values and metrics, written atomically); the sweep then
writes ``sweep.csv`` (one row per run: the values, the best validation value of the run's
monitor and its epoch, the final epoch's metrics, the test metrics) and ``sweep.png``.
Started again, a sweep skips finished runs, resumes a run that has a checkpoint and
starts the others: an interrupted sweep loses at most the epoch in progress.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from core.config import RunConfig
from core.files import replaced, write_atomic
from core.errors import ConfigError, short_repr


def parse_grid(grids: list[str]) -> dict[str, list[Any]]:
    """``["a.b=1,2", ...]`` as ``{"a.b": [1, 2]}``; each value parsed as YAML (as ``--set``
    does), a list or mapping written in brackets or braces: ``data.transforms=[a, b],[a]``."""
    from core.config import load_yaml

    axes: dict[str, list[Any]] = {}
    for grid in grids:
        key, sep, values = grid.partition("=")
        if not sep or not key or not values:
            raise ConfigError("--grid", f"'{grid}' is not of the form key.path=value,value", fix="e.g. --grid optim.lr=1e-3,3e-3")
        if key in axes:
            raise ConfigError("--grid", f"'{key}' is given twice", fix="list all its values in one --grid")
        if key.split(".")[0] in ("name", "output_dir"):
            raise ConfigError("--grid", f"'{key}' is set by the sweep: its runs are <output_dir>/<name>-sweep/<name>-NNN",
                              fix="run one sweep per name or output_dir (--set name=...)")
        axes[key] = []
        for value in _split_values(values):
            try:
                axes[key].append(load_yaml(value, f"--grid {key}"))
            except yaml.YAMLError:  # kept as text, as --set does
                axes[key].append(value)
    if not axes:
        raise ConfigError("--grid", "a sweep needs at least one --grid", fix="e.g. --grid optim.lr=1e-3,3e-3")
    return axes


def _split_values(values: str) -> list[str]:
    """``a,[b, c],{d: e}`` as ``["a", "[b, c]", "{d: e}"]``: a comma in brackets, braces or quotes does not split."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(values):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(values[start:i])
            start = i + 1
    return [*parts, values[start:]]


def combinations(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def sweep_folder(base: RunConfig) -> Path:
    return Path(base.output_dir) / f"{base.name}-sweep"


def run_overrides(base: RunConfig, index: int, values: dict[str, Any]) -> list[str]:
    """Run ``index`` of the sweep as ``--set`` overrides: its combination (each value as JSON,
    which YAML reads back as it was), its name and the sweep's folder as its ``output_dir``."""
    return [*(f"{key}={json.dumps(value, default=str)}" for key, value in values.items()),  # a YAML date: text
            f"name={base.name}-{index:03d}", f"output_dir={sweep_folder(base)}"]


def check_kept(run: RunConfig) -> None:
    """A run the sweep's folder holds already (finished, or interrupted and to be resumed) must
    have been made with ``run``'s config: a sweep started again after its grid or its YAML
    changed would otherwise report the old run's results under the new values."""
    from core.resume import changed_keys

    saved = Path(run.output_dir) / run.name / "config.yaml"  # (core.run would import Lightning)
    if not saved.is_file():
        return
    changes = changed_keys(yaml.safe_load(saved.read_text()) or {}, run.model_dump(mode="json"))
    if changes:
        listed = ", ".join(f"{key} {short_repr(before)} -> {short_repr(after)}" for key, before, after in changes[:3])
        raise ConfigError("--grid", f"{saved.parent} holds run {run.name} of this sweep made with another config "
                          f"({listed}{', ...' if len(changes) > 3 else ''}); started again, a sweep keeps its finished "
                          "runs and resumes the others", fix=f"to sweep the new values, remove {saved.parent.parent} "
                          "or give the sweep another name (--set name=...)")


def run_sweep_grid(base: RunConfig, axes: dict[str, list[Any]], train: Callable[[list[str], Path, bool], dict[str, float]]
                   ) -> Path:
    """Run every combination (``train(overrides, run_dir, resume)`` trains and tests one run)
    and write the comparison; return the sweep folder."""
    folder = sweep_folder(base)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, values in enumerate(combinations(axes)):
        name = f"{base.name}-{index:03d}"
        run_dir, done = folder / name, folder / name / "result.json"
        if not done.is_file():
            overrides = run_overrides(base, index, values)
            resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
            test = train(overrides, run_dir, resume)
            write_atomic(done, json.dumps({"run": name, "values": values, "test": test}, indent=2) + "\n")
        rows.append(_row(json.loads(done.read_text()), run_dir))
    write_atomic(folder / "sweep.csv", _csv(rows))
    _plot(rows, list(axes), folder / "sweep.png")
    return folder


def _row(result: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    from core.metrics_log import read_epoch_metrics

    row: dict[str, Any] = {"run": result["run"], **result["values"]}
    series = read_epoch_metrics(run_dir / "metrics.csv") if (run_dir / "metrics.csv").is_file() else {}
    monitor = _monitor(run_dir)
    if monitor in series:
        mode = _mode(run_dir)
        epoch, value = (max if mode == "max" else min)(series[monitor], key=lambda point: point[1])
        row |= {"monitor": monitor, "best": value, "best_epoch": epoch}
    for key, points in sorted(series.items()):
        if not key.startswith("test/") and "_acc_step" not in key and not key.endswith("_step"):
            row[f"final {key}"] = points[-1][1]
    return row | {k: v for k, v in sorted(result["test"].items())}


def _monitor(run_dir: Path) -> str:
    """The metric the run's best checkpoint followed (from its checkpoint callback's state)."""
    import torch

    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        for key in torch.load(last, map_location="cpu", weights_only=True).get("callbacks", {}):
            if key.startswith("ModelCheckpoint") and "'monitor': '" in key:
                return key.split("'monitor': '")[1].split("'")[0]
    return ""


def _mode(run_dir: Path) -> str:
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").is_file() else {}
    return str((config.get("checkpoint") or {}).get("mode", "max"))


def _csv(rows: list[dict[str, Any]]) -> str:
    import io

    fields = list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _plot(rows: list[dict[str, Any]], keys: list[str], out: Path) -> None:
    """The best monitored value of each run, labelled by its values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["\n".join(f"{k.split('.')[-1]}={row[k]}" for k in keys) for row in rows]
    best = [row.get("best", float("nan")) for row in rows]
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(rows)), 4))
    ax.bar(range(len(rows)), best, color="tab:blue")
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel(f"best {rows[0].get('monitor', 'monitor')}" if rows else "best")
    ax.set_title(f"sweep over {', '.join(keys)}")
    fig.tight_layout()
    with replaced(out) as partial:
        fig.savefig(partial, dpi=120, format="png")
    plt.close(fig)
