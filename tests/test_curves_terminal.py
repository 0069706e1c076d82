"""What a run shows: curves.png panels per metric family, the terminal filters and the final
summary of core-train."""

from __future__ import annotations

import logging
import textwrap
import warnings
from pathlib import Path

import pytest

from core.metrics_log import read_epoch_metrics
from plugins.callbacks.curves import curves_figure, plot_curves
from core.terminal import LIGHTNING_LOGGERS, quiet_terminal
from tests.conftest import SMALL_RUN, run_cli

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _csv(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).strip() + "\n")
    return path


def _panels(metrics_csv: Path) -> dict[str, dict[str, float]]:
    """``{panel title: {legend label: line width}}`` of the curves figure."""
    fig = curves_figure(read_epoch_metrics(metrics_csv))
    try:
        fig.canvas.draw()
        panels = {}
        for ax in fig.axes:
            panels[ax.get_title()] = {line.get_label(): line.get_linewidth() for line in ax.get_lines()}
            assert ax.get_xlabel() == "epoch" and ax.get_ylabel()
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
            legend = ax.get_legend()  # below the panel, off the data
            assert legend is not None and not legend.get_window_extent().overlaps(ax.get_window_extent())
        return panels
    finally:
        plt.close(fig)


CLASSIFICATION = """
    epoch,step,lr-AdamW,test/digit_acc,test/loss,train/digit_acc,train/digit_loss,train/loss_epoch,train/loss_step,val/acc_best,val/digit_acc,val/digit_acc_step0,val/digit_loss,val/loss,val/acc
    0,0,0.003,,,,,,,,,,,,
    0,4,,,,,,,2.2,,,,,,
    0,5,0.0029,,,,,,,,,,,,
    0,9,,,,,,,,0.3,0.3,0.2,2.1,2.1,0.3
    0,9,,,,0.25,2.15,2.15,,,,,,,
    1,10,0.002,,,,,,,,,,,,
    1,15,0.0015,,,,,,,,,,,,
    1,19,,,,,,,,0.5,0.5,0.4,1.8,1.8,0.5
    1,19,,,,0.6,1.7,1.7,,,,,,,
    2,20,,0.47,1.85,,,,,,,,,,
"""

RESPONSES = """
    epoch,step,test/corr,test/loss,test/session_00/corr,train/loss_epoch,train/session_00/loss,train/session_01/loss,val/corr,val/corr_best,val/loss,val/session_00/corr,val/session_00/loss,val/session_01/corr,val/session_01/loss
    0,3,,,,,,,0.09,0.09,0.96,0.10,0.97,0.08,0.95
    0,3,,,,0.97,0.98,0.96,,,,,,,
    1,7,,,,,,,0.29,0.29,0.86,0.34,0.85,0.25,0.88
    1,7,,,,0.24,0.3,0.2,,,,,,,
    2,8,0.18,0.86,0.16,,,,,,,,,,
"""


def test_curves_of_a_classifier(tmp_path: Path) -> None:
    panels = _panels(_csv(tmp_path / "metrics.csv", CLASSIFICATION))
    assert list(panels) == ["loss", "accuracy", "learning rate"]
    loss, accuracy = panels["loss"], panels["accuracy"]
    assert {"train/loss_epoch", "val/loss", "train/digit_loss", "val/digit_loss", "test/loss = 1.85"} == set(loss)
    assert loss["val/digit_loss"] < loss["val/loss"]  # a head's part drawn thinner than the total
    # no running best (val/acc_best), no per-step accuracy (val/digit_acc_step0)
    assert {"train/digit_acc", "val/digit_acc", "val/acc", "test/digit_acc = 0.47"} == set(accuracy)
    assert set(panels["learning rate"]) == {"lr-AdamW"}
    out = plot_curves(tmp_path / "metrics.csv", tmp_path / "curves.png")
    assert out is not None and out.stat().st_size > 0


def test_curves_of_a_response_model(tmp_path: Path) -> None:
    """The sessions_multi run: no accuracy panel (nothing logged for it), the correlations drawn."""
    panels = _panels(_csv(tmp_path / "metrics.csv", RESPONSES))
    assert list(panels) == ["loss", "correlation"]
    corr = panels["correlation"]
    assert {"val/corr", "val/session_00/corr", "val/session_01/corr", "test/corr = 0.18"} == set(corr)
    assert corr["val/session_00/corr"] < corr["val/corr"]  # per dataset: thinner
    assert panels["loss"]["train/session_01/loss"] < panels["loss"]["train/loss_epoch"]


def test_curves_without_epoch_metrics(tmp_path: Path) -> None:
    assert plot_curves(tmp_path / "missing.csv", tmp_path / "curves.png") is None  # fast_dev_run writes no CSV
    _csv(tmp_path / "metrics.csv", "epoch,step,test/loss\n0,1,0.5")
    assert plot_curves(tmp_path / "metrics.csv", tmp_path / "curves.png") is None
    assert not (tmp_path / "curves.png").exists()


def test_quiet_terminal_filters_only_while_it_holds() -> None:
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    logger = logging.getLogger(LIGHTNING_LOGGERS[0])
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            filters_before = list(warnings.filters)
            with quiet_terminal():
                logger.info("GPU available: False, used: False")
                logger.info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
                logger.info("Restored all states from the checkpoint at runs/x/checkpoints/last.ckpt")
                warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning)
                warnings.warn("The 'train_dataloader' does not have many workers which may be a bottleneck.",
                              PossibleUserWarning)
                warnings.warn("The number of training batches (4) is smaller than the logging interval "
                              "Trainer(log_every_n_steps=50).", PossibleUserWarning)
                warnings.warn("GPU available but not used.", PossibleUserWarning)
            logger.info("GPU available: False, used: False")
            warnings.warn("The 'val_dataloader' does not have many workers", PossibleUserWarning)
            assert warnings.filters == filters_before
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert seen == ["Restored all states from the checkpoint at runs/x/checkpoints/last.ckpt",
                    "GPU available: False, used: False"]
    assert [str(w.message) for w in caught] == ["GPU available but not used.",
                                                 "The 'val_dataloader' does not have many workers"]


FILTERED = ("GPU available:", "TPU available:", "HPU available", "💡 Tip", "LeafSpec", "does not have many workers",
            "smaller than the logging interval", "FLOPs", "Modules in train mode", "Trainer already configured",
            "estimate number of stepping batches", "`Trainer.fit` stopped")


def test_core_train_prints_no_noise_and_a_final_summary(write_config) -> None:
    """A real run (10 training batches, under the default logging interval of 50): none of the
    filtered lines, a parameter-only model summary, the final summary."""
    config = write_config(SMALL_RUN.replace("enable_model_summary: false", "enable_model_summary: true"))
    result = run_cli("core-train", "--config", config)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert not [line for line in output.splitlines() if any(text in line for text in FILTERED)], output
    assert "Params" in result.stdout and "parameters: " in result.stdout and "Mode" not in result.stdout
    assert "test/digit_acc = " in result.stdout
    run_dir = Path(config).parent / "runs" / "small"
    summary = result.stdout[result.stdout.index("test/digit_acc = "):]
    assert "best epoch: " in summary and "(epochs 0 to 1), val/digit_acc = " in summary, summary
    assert f"run directory: {run_dir}" in summary and "wall time: " in summary
    assert (run_dir / "curves.png").is_file()

    # trainer.enable_model_summary: false leaving the table out: test_loggers_callbacks.py::test_standard_callbacks_*
