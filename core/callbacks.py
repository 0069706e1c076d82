"""Lightning callbacks of every run."""

from __future__ import annotations

import sys
from typing import Any

from lightning.pytorch.callbacks import Callback, RichModelSummary


class FlushLogs(Callback):
    """Every logger writes what it holds before a checkpoint is written, so no logged row is
    older than the checkpoint yet missing from disk (a resume keeps rows up to its checkpoint)."""

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        for logger in trainer.loggers:
            logger.save()


class EpochSummary(Callback):
    """One line per epoch beside the progress bar: the epoch's losses and evaluation metrics
    (per dataset for response models), e.g. ``epoch 3 | train/loss 0.41 | val/corr 0.31 | ...``."""

    # at the train epoch's end: after the epoch's validation (whose epoch-end metrics the module
    # logs after the callbacks' on_validation_epoch_end) and the train metrics' aggregation
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        # the module logs its training means after the callbacks' on_train_epoch_end: take them from it
        means = pl_module.train_means.means() if hasattr(pl_module, "train_means") else {}
        metrics = {**trainer.callback_metrics, **means}
        keys = sorted(k for k in metrics if (k.startswith("val/") or k == "train/loss_epoch") and "_step" not in k)
        line = " | ".join([f"epoch {trainer.current_epoch}"] + [f"{k.replace('_epoch', '')} {float(metrics[k]):.4g}"
                                                               for k in keys])
        bar = trainer.progress_bar_callback
        (bar.print if bar is not None and hasattr(bar, "print") else print)(line)


class ParameterSummary(RichModelSummary):
    """Lightning's model summary with the parameter columns and totals only (no mode, FLOPs,
    size or module counts); added by ``core.run.build_trainer`` when
    ``trainer.enable_model_summary`` is true (Lightning's default summary is then not added)."""

    COLUMNS = (" ", "Name", "Type", "Params", "Params per Device")

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int, **kwargs: Any) -> None:
        from lightning.pytorch.utilities.model_summary.model_summary import get_human_readable_count
        from rich import get_console
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data if name in ParameterSummary.COLUMNS]
        table = Table(header_style="bold magenta")
        for name, _ in columns:
            table.add_column(name, justify="right" if name.startswith("Params") else "left", no_wrap=name == "Name",
                             style="dim" if name == " " else None)
        for row in zip(*(values for _, values in columns)):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        counts = [get_human_readable_count(int(n)).strip() for n in
                  (total_parameters, trainable_parameters, total_parameters - trainable_parameters)]
        console.print(f"parameters: {counts[0]} total, {counts[1]} trainable, {counts[2]} non-trainable",
                      highlight=False)


class LogHyperparams(Callback):
    """Gives every logger the run's description once at the start of each fit: the resolved
    config, the plugins' versions and the library versions (``core.run.run_hparams``)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        for logger in trainer.loggers:
            logger.log_hyperparams(self.params)
