"""Callback ``curves``: plots a run's ``metrics.csv`` into ``curves.png``: one panel per metric family that has data.

Families, in this order (a metric belongs to the first that matches it):

- ``loss``: ``train/loss_epoch``, ``val/loss`` and their parts: per head (``val/digit_loss``),
  per dataset (``val/session_00/loss``);
- ``accuracy``: ``<stage>/<head>_acc``, ``<stage>/<head>_top5``, and with several heads their
  weighted mean ``<stage>/acc``; not the per-time-step ``_acc_step<t>``;
- ``correlation``: ``<stage>/corr`` and per dataset ``<stage>/<dataset>/corr`` (response models);
- ``learning rate``: ``lr-*`` (Lightning's ``LearningRateMonitor``), on a log scale when it
  spans more than a factor of ten.

Per epoch on the x axis (integer ticks); a metric logged several times in an epoch (the
learning rate of a per-step schedule) is spread evenly over that epoch. The aggregate series
(``val/loss``, ``val/corr``) are drawn thick with markers, the parts (per dataset, per head)
thin; training is dashed, validation solid; a test value is a grey dotted horizontal line.
Running bests (``val/acc_best``, ``val/corr_best``) and per-step training losses are left
out. Each panel's legend sits below it, off the data.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from core.files import replaced
from core.metrics_log import METRICS, read_epoch_metrics

FAMILIES: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    # (title, y label, pattern on the metric's name after its stage)
    ("loss", "loss", re.compile(r"^(loss(_epoch)?|.+_loss|.+/loss)$")),
    ("accuracy", "accuracy", re.compile(r"^(acc|.+_acc|.+_top\d+)$")),
    ("correlation", "correlation (mean over neurons)", re.compile(r"^(corr|.+/corr)$")),
    ("learning rate", "learning rate", re.compile(r"^lr-.+$")),
)
STAGES = ("train", "val", "test")
LEFT_OUT = re.compile(r"(_step$|_step\d+$|_best$)")


def split_metric(key: str) -> tuple[str | None, str]:
    """``("val", "session_00/corr")`` for ``val/session_00/corr``; ``(None, "lr-AdamW")``."""
    stage, _, rest = key.partition("/")
    return (stage, rest) if stage in STAGES and rest else (None, key)


def family_of(key: str) -> str | None:
    """The title of the panel ``key`` is drawn in, or None if it is not drawn."""
    stage, name = split_metric(key)
    if LEFT_OUT.search(name):
        return None
    for title, _, pattern in FAMILIES:
        if pattern.match(name) and (stage is not None) != (title == "learning rate"):
            return title
    return None


def is_aggregate(key: str) -> bool:
    """A run-wide series (``val/loss``, ``val/corr``, ``train/loss_epoch``, a head's accuracy,
    the learning rate) rather than one part of it (a dataset's or a head's loss)."""
    stage, name = split_metric(key)
    if stage is None:
        return True
    if "/" in name:  # per dataset
        return False
    return name in ("loss", "loss_epoch", "corr") or not name.endswith("_loss")


def _part(key: str) -> str:
    """What a series measures, whatever the stage: ``loss`` for ``train/loss_epoch`` and ``val/loss``."""
    name = split_metric(key)[1]
    return name[: -len("_epoch")] if name.endswith("_epoch") else name


def spread(points: list[tuple[int, float]]) -> tuple[list[float], list[float]]:
    """x (epochs) and y of a series; n values logged in one epoch sit at epoch + i/n."""
    by_epoch: dict[int, list[float]] = {}
    for epoch, value in points:
        by_epoch.setdefault(epoch, []).append(value)
    xs, ys = [], []
    for epoch in sorted(by_epoch):
        values = by_epoch[epoch]
        xs += [epoch + i / len(values) for i in range(len(values))]
        ys += values
    return xs, ys


def curves_figure(series: dict[str, list[tuple[int, float]]]) -> Any:
    """The figure of ``curves.png`` (None when no family has data): one panel per family,
    titled with the family's name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels: dict[str, list[str]] = {}
    for key in sorted(series):
        family = family_of(key)
        if family is not None:
            panels.setdefault(family, []).append(key)
    titles = [title for title, _, _ in FAMILIES if any(split_metric(k)[0] != "test" for k in panels.get(title, ()))]
    if not titles:
        return None
    columns = 2 if len(titles) == 4 else len(titles)
    rows = -(-len(titles) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 4.6 * rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, title in zip(axes.flat, titles):
        keys = sorted(panels[title], key=lambda k: split_metric(k)[0] == "test")  # test lines last in the legend
        parts = sorted({_part(k) for k in keys})  # one colour per part, shared by its stages
        for key in keys:
            stage = split_metric(key)[0]
            colour = colours[parts.index(_part(key)) % len(colours)]
            if stage == "test":
                if is_aggregate(key):
                    value = series[key][-1][1]
                    ax.axhline(value, linestyle=":", color="grey", linewidth=1.2, label=f"{key} = {value:.3g}")
                continue
            thick = is_aggregate(key)
            ax.plot(*spread(series[key]), color=colour, linestyle="--" if stage == "train" else "-",
                    linewidth=2.0 if thick else 0.8, alpha=1.0 if thick else 0.7,
                    marker="o" if thick and len(series[key]) < 60 else None, markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(next(label for t, label, _ in FAMILIES if t == title))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if title == "learning rate":
            values = [v for k in keys for _, v in series[k]]
            if min(values) > 0 and max(values) > 10 * min(values):
                ax.set_yscale("log")
        ax.grid(alpha=0.3)
        n = len(ax.get_legend_handles_labels()[1])
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2 if n > 3 else 1, fontsize="small",
                  frameon=False)
    for ax in list(axes.flat)[len(titles):]:
        ax.remove()
    fig.tight_layout()
    return fig


def plot_curves(metrics_csv: Path, out: Path) -> Path | None:
    """Write ``out`` from ``metrics_csv``; nothing (None) when the file is missing or holds no
    epoch metrics (e.g. ``fast_dev_run``)."""
    if not Path(metrics_csv).is_file():
        return None
    fig = curves_figure(read_epoch_metrics(metrics_csv))
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    with replaced(out) as partial:
        fig.savefig(partial, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out


class Curves(Callback):
    """Draws ``curves.png`` in the run directory from its ``metrics.csv`` when training ends and
    again when testing ends (the test values as dotted lines); on by default in every run."""

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if not trainer.is_global_zero or stage not in ("fit", "test"):
            return
        for logger in trainer.loggers:  # rows still held by a logger reach the file first
            logger.save()
        run_dir = Path(trainer.default_root_dir)
        plot_curves(run_dir / METRICS, run_dir / "curves.png")
