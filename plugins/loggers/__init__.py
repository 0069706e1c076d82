"""Loggers ``csv`` (``metrics.csv``), ``tensorboard``, ``wandb`` and ``mlflow``: where a run's
metrics and hyperparameters go (``logging:``; default ``[csv, tensorboard]``).

Each factory is called as ``factory(run_dir, **options)`` and returns a Lightning logger.
This module imports only ``core``; the optional packages (tensorboard, wandb, mlflow) are
looked for when a run uses their logger, whose module then raises ``PluginUnavailable``
with the install command if the package is missing.
"""

from core import hookimpl


@hookimpl
def core_loggers() -> dict[str, str]:
    return {
        "csv": "core.metrics_log:RunLogger",
        "tensorboard": "plugins.loggers.tensorboard_logger:tensorboard",
        "wandb": "plugins.loggers.wandb_logger:wandb",
        "mlflow": "plugins.loggers.mlflow_logger:mlflow",
    }
