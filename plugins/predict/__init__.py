"""Command ``predict`` of ``core-train``: every sample's outputs on a split (and, with
``--record``, the activations of named modules) from a checkpoint, written to HDF5."""

from core import hookimpl


@hookimpl
def core_commands() -> dict[str, str]:
    return {"predict": "plugins.predict.command:Predict"}
