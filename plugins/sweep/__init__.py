"""Command ``sweep`` of ``core-train``: one run per combination of ``--grid`` values, each
trained and tested in its own run directory, then compared in ``sweep.csv`` and ``sweep.png``."""

from core import hookimpl


@hookimpl
def core_commands() -> dict[str, str]:
    return {"sweep": "plugins.sweep.command:Sweep"}
