"""Callbacks ``early_stopping``, ``lr_monitor`` (on by default), ``heartbeat`` and
``stochastic_weight_averaging`` for ``callbacks:``; each factory takes the callback's options
and returns a Lightning callback. Imports only ``core``."""

from core import hookimpl


@hookimpl
def core_callbacks() -> dict[str, str]:
    return {
        "early_stopping": "plugins.callbacks.standard:EarlyStopping",
        "lr_monitor": "plugins.callbacks.standard:LearningRateMonitor",
        "stochastic_weight_averaging": "plugins.callbacks.standard:StochasticWeightAveraging",
        "heartbeat": "plugins.callbacks.heartbeat:Heartbeat",
    }
