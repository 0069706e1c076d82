"""Samplers ``random`` (a fresh permutation every epoch), ``sequential`` and ``class_balanced``."""

from core import hookimpl


@hookimpl
def core_samplers() -> dict[str, str]:
    return {"random": "plugins.samplers.order:RandomOrder", "sequential": "plugins.samplers.order:SequentialOrder",
            "class_balanced": "plugins.samplers.balanced:ClassBalanced"}
