"""Samplers ``random`` (a fresh permutation every epoch) and ``sequential``."""

from core import hookimpl


@hookimpl
def core_samplers() -> dict[str, str]:
    return {"random": "plugins.samplers.order:RandomOrder", "sequential": "plugins.samplers.order:SequentialOrder"}
