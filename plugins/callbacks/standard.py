"""Lightning's EarlyStopping, LearningRateMonitor and StochasticWeightAveraging with the options
a run gives in YAML, fitted to core-train's runs (the module's monitor, ``metrics.csv`` rows)."""

from __future__ import annotations

from typing import Any, Literal

from lightning.pytorch import callbacks
from lightning.pytorch.utilities.exceptions import MisconfigurationException


class EarlyStopping(callbacks.EarlyStopping):
    """Stops training when ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` validation checks. ``monitor`` defaults to the metric the best checkpoint
    follows (``pl_module.monitor``: ``val/<first head>_acc``, or ``val/corr`` for responses);
    ``mode`` defaults to ``max`` for that one, else to ``min`` for a name containing ``loss``
    and ``max`` otherwise.

    ``monitor``: the logged metric to watch, as named in ``metrics.csv`` (``val/loss``,
    ``val/digit_acc``; default: the metric the best checkpoint follows).
    ``mode``: ``max`` when a larger value is better, ``min`` when a smaller one is (default:
    ``min`` for a ``monitor`` whose name contains ``loss``, else ``max``).
    ``patience``: how many validation checks in a row without improvement stop training (>= 0).
    ``min_delta``: the least change of ``monitor``, in its own units, that counts as an
    improvement (>= 0)."""

    def __init__(self, monitor: str | None = None, mode: Literal["min", "max"] | None = None, patience: int = 3,
                 min_delta: float = 0.0) -> None:
        if patience < 0:
            raise ValueError(f"patience must be >= 0, not {patience}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, not {min_delta} (mode sets the direction)")
        if mode is None:
            mode = "max" if monitor is None or "loss" not in monitor else "min"
        self.monitor_given = monitor
        super().__init__(monitor=monitor or "", mode=mode, patience=patience, min_delta=min_delta)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.monitor_given is None:  # set before a checkpoint's callback states are restored (same state_key)
            self.monitor = pl_module.monitor
        super().setup(trainer, pl_module, stage)


class LearningRateMonitor(callbacks.LearningRateMonitor):
    """Logs each optimizer's learning rate (``lr-AdamW``, ...) once per epoch or at every
    logging interval (``trainer.log_every_n_steps``); the rate is a Python float, so reading it
    makes the host wait for nothing. Rows carry their epoch, so ``--resume`` trims them with
    the others. Does nothing in a run without loggers (``logging: []``).

    ``logging_interval``: ``epoch`` logs once per epoch, ``step`` every
    ``trainer.log_every_n_steps`` steps.
    ``log_momentum``: also log each optimizer's momentum (Adam's first beta) as
    ``lr-<optimizer>-momentum``.
    ``log_weight_decay``: also log each optimizer's weight decay as
    ``lr-<optimizer>-weight_decay``."""

    def __init__(self, logging_interval: Literal["epoch", "step"] = "epoch", log_momentum: bool = False,
                 log_weight_decay: bool = False) -> None:
        super().__init__(logging_interval=logging_interval, log_momentum=log_momentum,
                         log_weight_decay=log_weight_decay)

    def on_train_start(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:  # Lightning's monitor refuses a trainer without loggers
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_epoch_start(trainer, *args, **kwargs)

    def _extract_stats(self, trainer: Any, interval: str) -> dict[str, float]:
        stats = super()._extract_stats(trainer, interval)
        if stats:  # metrics.csv rows without an epoch would survive core.metrics_log.truncate_after on --resume
            stats["epoch"] = trainer.current_epoch
        return stats


class StochasticWeightAveraging(callbacks.StochasticWeightAveraging):
    """Averages the weights of the last epochs (``torch.optim.swa_utils``): from
    ``swa_epoch_start`` (an epoch, or a fraction of ``max_epochs``) the learning rate is annealed
    to ``swa_lrs`` over ``annealing_epochs`` and the average is kept on the CPU; at the end of
    training the model takes the averaged weights (with BatchNorm, one extra epoch recomputes
    its statistics).

    ``swa_lrs``: the learning rate held while averaging, above 0 (a list: one per parameter
    group of the optimizer).
    ``swa_epoch_start``: the first averaged epoch, an integer counted from 1 or a float in
    [0, 1] read as that fraction of ``max_epochs``.
    ``annealing_epochs``: epochs over which the learning rate moves from its value to
    ``swa_lrs``.
    ``annealing_strategy``: how the learning rate moves to ``swa_lrs`` over the annealing
    epochs, ``cos`` (along a cosine) or ``linear``."""

    def __init__(self, swa_lrs: float | list[float], swa_epoch_start: int | float = 0.8, annealing_epochs: int = 10,
                 annealing_strategy: Literal["cos", "linear"] = "cos") -> None:
        try:
            super().__init__(swa_lrs=swa_lrs, swa_epoch_start=swa_epoch_start, annealing_epochs=annealing_epochs,
                             annealing_strategy=annealing_strategy)
        except MisconfigurationException as exc:  # an option out of range: a config error at the YAML path
            raise ValueError(str(exc)) from None
