"""The experiment sweep: a run's ``experiment:`` section evaluates the trained model on the
test split once per value of one device-stage transform option (analysis ``experiment``),
after the run's test or from a checkpoint (command ``core-train experiment``)."""

from core import hookimpl


@hookimpl
def core_analyses() -> dict[str, str]:
    return {"experiment": "plugins.experiment.sweep:ExperimentSweep"}


@hookimpl
def core_commands() -> dict[str, str]:
    return {"experiment": "plugins.experiment.command:Experiment"}
