"""``core-train experiment --config run.yaml [--checkpoint PATH]``: the run's experiment sweep
on a checkpoint (default: the run's best), no training.

Imports nothing heavy: ``core-train`` builds every command when it starts.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from core.errors import ConfigError
from core.kinds import Command

if TYPE_CHECKING:
    from core.config import RunConfig
    from core.registry import Registry


class Experiment(Command):
    """Loads the checkpoint ``--checkpoint`` names into the run's model and runs the config's
    ``experiment:`` sweep, writing ``experiment.csv`` and ``experiment.png`` into the run
    directory; prints each value's peak accuracy."""

    help = "run the config's experiment: sweep on a checkpoint (default best), no training"
    takes_checkpoint = True

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--experiment-only", action="store_true", help=argparse.SUPPRESS)  # its former flag

    def check(self, args: argparse.Namespace, chosen: bool) -> None:
        if args.experiment_only:
            raise ConfigError("--experiment-only", "is now the command core-train experiment",
                              fix="core-train experiment --config run.yaml [--checkpoint PATH]")

    def run(self, args: argparse.Namespace, config: RunConfig, registry: Registry) -> int:
        from core.cli.train import prepare

        resolved = prepare(args, config, registry)
        if resolved is None:
            return 0
        from core.evaluate import trained_modules
        from core.report import print_test_results
        from core.run import run_dir_of
        from plugins.experiment.sweep import ExperimentSweep

        sweep = next((a for a in resolved.analyses if isinstance(a, ExperimentSweep)), None)
        if sweep is None:
            raise ConfigError("experiment", "core-train experiment runs the config's experiment section, and it has none",
                              fix="add experiment: {parameter: <transform>.<option>, values: [...]}")
        run_dir = run_dir_of(config)
        datamodule, module, checkpoint = trained_modules(resolved, run_dir, args.checkpoint)
        print(f"checkpoint: {checkpoint}")
        print_test_results(sweep.run(module, datamodule, run_dir, config.trainer), run_dir, ordered=True)  # 8 before 16
        return 0
