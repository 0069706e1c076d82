"""Experiment sweeps: evaluate a trained model on the test split once per value of one
device-stage transform option (e.g. ``stimulus_contrast.stimulus_contrast`` over 0.2 ... 1.0).

Every value is validated and its transform built before anything runs. Results go to
``experiment.csv`` (value, timestep, head, accuracy) and ``experiment.png`` (accuracy over
time steps, one line per value, one panel per head; the steps where the stimulus is shown are
shaded, and chance, 1 / the head's classes, is a dashed line). The stimulus window is read from
the device-stage transform that has an ``on()`` method returning a (T,) boolean vector (the
``stimulus_timing`` schedules do).
"""

from __future__ import annotations

import csv
import inspect
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import component
from core.errors import ConfigError, choices_text, did_you_mean
from core.files import replaced, write_atomic
from core.kinds import Step, Transform, layouts
from core.resolve import ResolvedRun, check

STEP_METRIC = re.compile(r"^test/(?P<head>.+)_acc_step(?P<t>\d+)$")


@dataclass
class Sweep:
    position: int  # index into the run's device-stage steps
    parameter: str
    values: list[Any]
    transforms: list[Transform]


def plan_sweep(resolved: ResolvedRun) -> Sweep:
    """Check ``experiment`` against the run's transforms and build one transform per value."""
    section = resolved.config.experiment
    assert section is not None
    name, _, option = section.parameter.partition(".")
    listed = [step.name for step in resolved.steps]
    if not option or name not in listed:
        raise ConfigError("experiment.parameter", f"'{section.parameter}' must be <transform>.<option> naming a transform "
                          f"of data.transforms{did_you_mean(name, listed)}", fix=f"the run's transforms: {choices_text(listed)}")
    step_index = listed.index(name)
    step = resolved.steps[step_index]
    if step not in resolved.device:
        raise ConfigError("experiment.parameter", f"'{name}' runs at preparation; a sweep can vary only device-stage transforms")
    spec = resolved.config.data.transforms[step_index]
    _, options = component(spec, step.path)
    factory = resolved.registry.get("transform", name, step.path).resolve()
    known = [p for p in inspect.signature(factory).parameters if p != "self"]
    if option not in known:
        raise ConfigError("experiment.parameter", f"transform '{name}' has no option '{option}'{did_you_mean(option, known)}",
                          fix=f"its options are: {', '.join(known)}")
    ordered = resolved.prepare + resolved.device
    before = layouts(resolved.meta.layout, ordered, resolved.meta.name)[ordered.index(step)]
    transforms = []
    for i, value in enumerate(section.values):
        built = check(resolved.registry, "transform", {name: {**options, option: value}}, f"experiment.values.{i}").build()
        built.output_layout(before)
        transforms.append(built)
    return Sweep(resolved.device.index(step), section.parameter, list(section.values), transforms)


def run_sweep(sweep: Sweep, module: Any, datamodule: Any, trainer_options: dict[str, Any], run_dir: Path) -> list[dict[str, Any]]:
    """Test ``module`` once per value; write and return the rows of ``experiment.csv``."""
    import lightning

    keep = {k: v for k, v in trainer_options.items() if k in ("accelerator", "devices", "precision", "strategy", "num_nodes")}
    trainer = lightning.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, use_distributed_sampler=False, **keep)
    original = datamodule.device[sweep.position]
    rows: list[dict[str, Any]] = []
    windows: list[list[bool] | None] = []  # per value: a sweep may move the stimulus (e.g. its duration)
    try:
        for value, transform in zip(sweep.values, sweep.transforms):
            datamodule.device[sweep.position] = Step(original.path, original.name, transform)
            windows.append(stimulus_window(datamodule.device))
            results = trainer.test(module, datamodule=datamodule, verbose=False)[0]
            rows += _rows(value, results)
    finally:
        datamodule.device[sweep.position] = original
    if trainer.is_global_zero:
        _write(rows, run_dir / "experiment.csv")
        _plot(rows, sweep.parameter, run_dir / "experiment.png", windows, dict(getattr(module, "heads", {})))
    return rows


def stimulus_window(steps: list[Step]) -> list[bool] | None:
    """Where the stimulus is shown, per time step: the ``on()`` of the first device transform
    that has one (a presentation schedule); None if none has."""
    for step in steps:
        on = getattr(step.transform, "on", None)
        if callable(on):
            return [bool(x) for x in on()]
    return None


def _rows(value: Any, results: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for key, accuracy in results.items():
        match = STEP_METRIC.match(key)
        if match:
            rows.append({"value": value, "timestep": int(match["t"]), "head": match["head"], "accuracy": float(accuracy)})
    if not rows:  # a model without a time axis: one row per head
        rows = [{"value": value, "timestep": 0, "head": key[5:-4], "accuracy": float(acc)}
                for key, acc in results.items() if key.startswith("test/") and key.endswith("_acc")]
    return sorted(rows, key=lambda r: (r["head"], r["timestep"]))


def _write(rows: list[dict[str, Any]], path: Path) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["value", "timestep", "head", "accuracy"])
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, out.getvalue())


def _spans(window: list[bool]) -> list[tuple[int, int]]:
    """``[(first, last), ...]`` of each run of shown steps."""
    spans: list[tuple[int, int]] = []
    for t, shown in enumerate(window):
        if shown and spans and spans[-1][1] == t - 1:
            spans[-1] = (spans[-1][0], t)
        elif shown:
            spans.append((t, t))
    return spans


def experiment_figure(rows: list[dict[str, Any]], parameter: str, windows: list[list[bool] | None] | None = None,
                      classes: dict[str, int] | None = None) -> Any:
    """The figure of ``experiment.png``: one panel per head, accuracy over time steps, one line
    per value; ``windows`` (one per value, in the order of first appearance in ``rows``) shades
    the stimulus steps (grey when every value shows it at the same steps, else in each value's
    colour); ``classes`` (``{head: n}``) draws chance at 1 / n."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    heads = sorted({r["head"] for r in rows})
    values = list(dict.fromkeys(r["value"] for r in rows))
    known = [w for w in windows or [] if w is not None and any(w)]
    shared = known[0] if known and len(known) == len(values) and all(w == known[0] for w in known) else None
    fig, axes = plt.subplots(1, len(heads), figsize=(6.5 * len(heads), 4), squeeze=False)
    for ax, head in zip(axes[0], heads):
        for i, value in enumerate(values):
            points = [(r["timestep"], r["accuracy"]) for r in rows if r["head"] == head and r["value"] == value]
            (line,) = ax.plot(*zip(*points), marker="o", markersize=3, label=f"{value}")
            window = windows[i] if windows and i < len(windows) else None
            if shared is None and window is not None:
                for j, (first, last) in enumerate(_spans(window)):
                    ax.axvspan(first - 0.5, last + 0.5, color=line.get_color(), alpha=0.08, linewidth=0,
                               label=f"{value}: stimulus shown" if j == 0 else None)
        if shared is not None:
            for j, (first, last) in enumerate(_spans(shared)):
                ax.axvspan(first - 0.5, last + 0.5, color="grey", alpha=0.18, linewidth=0,
                           label="stimulus shown" if j == 0 else None)
        n = (classes or {}).get(head)
        if n:
            ax.axhline(1 / n, linestyle="--", color="black", linewidth=1, label=f"chance (1/{n})")
        ax.set_title(head)
        ax.set_xlabel("time step")
        ax.set_ylabel(f"test accuracy ({head})")
        ax.set_ylim(0, 1.02)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(title=parameter, fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def _plot(rows: list[dict[str, Any]], parameter: str, path: Path, windows: list[list[bool] | None] | None = None,
          classes: dict[str, int] | None = None) -> None:
    import matplotlib.pyplot as plt

    fig = experiment_figure(rows, parameter, windows, classes)
    with replaced(path) as partial:
        fig.savefig(partial, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
