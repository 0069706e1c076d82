"""Experiment sweeps: evaluate a trained model on the test split once per value of one
device-stage transform option (e.g. ``stimulus_contrast.stimulus_contrast`` over 0.2 ... 1.0).

Every value is validated and its transform built before anything runs. Results go to
``experiment.csv`` (value, timestep, head, accuracy) and ``experiment.png`` (accuracy over
time steps, one line per value, one panel per head).
"""

from __future__ import annotations

import csv
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import component
from core.errors import ConfigError, choices_text, did_you_mean
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
    try:
        for value, transform in zip(sweep.values, sweep.transforms):
            datamodule.device[sweep.position] = Step(original.path, original.name, transform)
            results = trainer.test(module, datamodule=datamodule, verbose=False)[0]
            rows += _rows(value, results)
    finally:
        datamodule.device[sweep.position] = original
    if trainer.is_global_zero:
        _write(rows, run_dir / "experiment.csv")
        _plot(rows, sweep.parameter, run_dir / "experiment.png")
    return rows


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
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["value", "timestep", "head", "accuracy"])
        writer.writeheader()
        writer.writerows(rows)


def _plot(rows: list[dict[str, Any]], parameter: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = sorted({r["head"] for r in rows})
    fig, axes = plt.subplots(1, len(heads), figsize=(6 * len(heads), 4), squeeze=False)
    for ax, head in zip(axes[0], heads):
        for value in dict.fromkeys(r["value"] for r in rows):
            points = [(r["timestep"], r["accuracy"]) for r in rows if r["head"] == head and r["value"] == value]
            ax.plot(*zip(*points), marker="o", label=f"{value}")
        ax.set_xlabel("time step")
        ax.set_ylabel(f"test accuracy ({head})")
        ax.set_ylim(0, 1.02)
        ax.legend(title=parameter, fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
