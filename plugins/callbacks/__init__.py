"""Callbacks ``early_stopping``, ``lr_monitor`` (on by default), ``heartbeat`` and
``stochastic_weight_averaging`` for ``callbacks:``; each factory takes the callback's options
and returns a Lightning callback. ``progress_bar``, ``epoch_summary``, ``model_summary`` and
``curves`` are what every run shows and writes (``core.config.STANDARD_CALLBACKS``): a run gets
them without listing them. Imports only ``core``."""

from core import hookimpl


@hookimpl
def core_callbacks() -> dict[str, str]:
    return {
        "early_stopping": "plugins.callbacks.standard:EarlyStopping",
        "lr_monitor": "plugins.callbacks.standard:LearningRateMonitor",
        "stochastic_weight_averaging": "plugins.callbacks.standard:StochasticWeightAveraging",
        "heartbeat": "plugins.callbacks.heartbeat:Heartbeat",
        "progress_bar": "plugins.callbacks.terminal:IntervalProgressBar",
        "epoch_summary": "plugins.callbacks.terminal:EpochSummary",
        "model_summary": "plugins.callbacks.terminal:ParameterSummary",
        "curves": "plugins.callbacks.curves:Curves",
    }
