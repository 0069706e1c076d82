"""Plots a run's ``metrics.csv`` into ``curves.png``: loss and per-head accuracy per epoch."""

from __future__ import annotations

import csv
from pathlib import Path


def read_epoch_metrics(metrics_csv: Path) -> dict[str, list[tuple[int, float]]]:
    """``{metric: [(epoch, value), ...]}`` for every non-empty cell of Lightning's CSV log."""
    series: dict[str, list[tuple[int, float]]] = {}
    with open(metrics_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            if not row.get("epoch"):
                continue
            epoch = int(float(row["epoch"]))
            for key, value in row.items():
                if key not in ("epoch", "step") and value not in ("", None):
                    series.setdefault(key, []).append((epoch, float(value)))
    return series


def plot_curves(metrics_csv: Path, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_epoch_metrics(metrics_csv)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("train/loss_epoch", "val/loss"):
        if key in series:
            ax_loss.plot(*zip(*series[key]), marker="o", label=key)
    for key in sorted(k for k in series if k.endswith("_acc") and not k.startswith("test/")):
        ax_acc.plot(*zip(*series[key]), marker="o", label=key)
    for key in sorted(k for k in series if k.startswith("test/") and k.endswith("_acc")):
        ax_acc.axhline(series[key][-1][1], linestyle="--", color="grey", label=f"{key} = {series[key][-1][1]:.3f}")
    for ax, title in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        if ax.lines:
            ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
