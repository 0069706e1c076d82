"""Analysis ``experiment``: evaluate a trained model on the test split once per value of one
device-stage transform option (e.g. ``stimulus_contrast.stimulus_contrast`` over 0.2 ... 1.0).

Every value is validated and its transform built when the run is resolved, before anything
runs. Results go to ``experiment.csv`` (value, timestep, head, accuracy) and
``experiment.png`` (:mod:`plugins.experiment.figure`). The stimulus window is read from the
device-stage transform that has an ``on()`` method returning a (T,) boolean vector (the
``stimulus_timing`` schedules do).
"""

from __future__ import annotations

import csv
import inspect
import io
import re
from pathlib import Path
from typing import Any

from core.config import component
from core.errors import ConfigError, choices_text, did_you_mean
from core.files import write_atomic
from core.kinds import Analysis, Step, Transform, layouts
from core.resolve import ResolvedRun, check

STEP_METRIC = re.compile(r"^test/(?P<head>.+)_acc_step(?P<t>\d+)$")


class ExperimentSweep(Analysis):
    """The model tested once per value of one option of a device-stage transform."""

    files = ("experiment.csv", "experiment.png")

    def __init__(self, parameter: str, values: list[Any]) -> None:
        """``parameter``: ``<transform>.<option>``, an option of a device-stage transform listed in
        ``data.transforms``. ``values``: the values to test (at least one); each is validated as
        that option of that transform."""
        if not values:
            raise ConfigError("values", "is empty: the sweep needs at least one value", fix="e.g. values: [0.2, 1.0]")
        self.parameter = parameter
        self.values = list(values)
        self.position = -1  # index into the run's device-stage steps, set by plan
        self.transforms: list[Transform] = []

    def plan(self, resolved: ResolvedRun) -> None:
        """Check ``parameter`` against the run's transforms and build one transform per value."""
        if getattr(resolved.model, "predicts_responses", False):
            raise ConfigError("", "measures each label head's test accuracy, and this run's model predicts neural "
                              "responses (it has no accuracy to sweep)", fix="remove the experiment section; compare "
                              "response models with core-train sweep, or their predictions (core-train predict)")
        name, _, option = self.parameter.partition(".")
        listed = [step.name for step in resolved.steps]
        if not option or name not in listed:
            raise ConfigError("parameter", f"'{self.parameter}' must be <transform>.<option> naming a transform "
                              f"of data.transforms{did_you_mean(name, listed)}", fix=f"the run's transforms: {choices_text(listed)}")
        step_index = listed.index(name)
        step = resolved.steps[step_index]
        if step not in resolved.device:
            raise ConfigError("parameter", f"'{name}' runs at preparation; a sweep can vary only device-stage transforms")
        _, options = component(resolved.config.data.transforms[step_index], step.path)
        known = [p for p in inspect.signature(resolved.registry.get("transform", name, step.path).resolve()).parameters
                 if p != "self"]
        if option not in known:
            raise ConfigError("parameter", f"transform '{name}' has no option '{option}'{did_you_mean(option, known)}",
                              fix=f"its options are: {', '.join(known)}")
        ordered = resolved.prepare + resolved.device
        before = layouts(resolved.meta.layout, ordered, resolved.meta.name)[ordered.index(step)]
        self.transforms = []
        for i, value in enumerate(self.values):
            try:  # an error names the value in the YAML (values.<i>), not the transform spec built from it
                built = check(resolved.registry, "transform", {name: {**options, option: value}}, "values").build()
            except ConfigError as exc:
                raise ConfigError(f"values.{i}", exc.message, exc.fix) from None
            built.output_layout(before)
            self.transforms.append(built)
        self.position = resolved.device.index(step)

    def run(self, module: Any, datamodule: Any, run_dir: Path, trainer: dict[str, Any]) -> dict[str, float]:
        """Test ``module`` once per value; write ``experiment.csv`` and ``.png``; return the best
        accuracy over time steps per value and head (every step is in ``experiment.csv``)."""
        peaks: dict[str, float] = {}
        for r in self.test(module, datamodule, run_dir, trainer):
            key = f"experiment {r['head']} peak accuracy @ {self.parameter}={r['value']}"
            peaks[key] = max(peaks.get(key, 0.0), r["accuracy"])
        return peaks

    def test(self, module: Any, datamodule: Any, run_dir: Path, trainer: dict[str, Any]) -> list[dict[str, Any]]:
        """Test ``module`` once per value; write and return the rows of ``experiment.csv``."""
        import lightning

        from plugins.experiment.figure import plot

        keep = {k: v for k, v in trainer.items() if k in ("accelerator", "devices", "precision", "strategy", "num_nodes")}
        tester = lightning.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                   enable_model_summary=False, use_distributed_sampler=False, **keep)
        original = datamodule.device[self.position]
        rows: list[dict[str, Any]] = []
        windows: list[list[bool] | None] = []  # per value: a sweep may move the stimulus (e.g. its duration)
        try:
            for value, transform in zip(self.values, self.transforms):
                datamodule.device[self.position] = Step(original.path, original.name, transform)
                windows.append(stimulus_window(datamodule.device))
                rows += _rows(value, tester.test(module, datamodule=datamodule, verbose=False)[0])
        finally:
            datamodule.device[self.position] = original
        if tester.is_global_zero:
            run_dir.mkdir(parents=True, exist_ok=True)
            _write(rows, run_dir / "experiment.csv")
            plot(rows, self.parameter, run_dir / "experiment.png", windows, dict(getattr(module, "heads", {})))
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
