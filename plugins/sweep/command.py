"""``core-train sweep --config run.yaml --grid KEY.PATH=V1,V2 [--grid ...]``.

Imports nothing heavy: ``core-train`` builds every command when it starts; the sweep itself
(:mod:`plugins.sweep.grid`) and Lightning load only when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ConfigError
from core.kinds import Command

if TYPE_CHECKING:
    from core.config import RunConfig
    from core.registry import Registry


class Sweep(Command):
    """Trains and tests one run per combination of the ``--grid KEY.PATH=V1,V2`` values
    (repeatable; each run a run directory ``<output_dir>/<name>-sweep/<name>-NNN``), then
    writes ``sweep.csv`` and ``sweep.png``; started again, it skips finished runs and
    resumes interrupted ones."""

    help = "one run per combination of the --grid values, then sweep.csv and sweep.png"

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--grid", action="append", default=[], metavar="KEY.PATH=V1,V2",
                           help="the values of one key (repeatable; every combination is a run)")

    def check(self, args: argparse.Namespace, chosen: bool) -> None:
        if bool(args.grid) != chosen:
            raise ConfigError("--grid", "core-train sweep and --grid go together",
                              fix="core-train sweep --config run.yaml --grid optim.lr=1e-3,3e-3")

    def run(self, args: argparse.Namespace, config: RunConfig, registry: Registry) -> int:
        """Every combination's config is checked before the first run starts; each run loads
        the plugins its own config selects (``registry`` is the base config's)."""
        import lightning

        from core.config import load_config
        from core.memory import check_fits
        from core.paths import check_output_dir
        from core.registry import Registry
        from core.resolve import check_accelerator, resolve
        from core.run import fit_and_test, prepare_run_dir
        from plugins.sweep.grid import combinations, parse_grid, run_sweep_grid

        axes = parse_grid(args.grid)
        for values in combinations(axes):
            check_accelerator(load_config(args.config, args.overrides + [f"{k}={v}" for k, v in values.items()]).trainer)
        check_output_dir(config.model_copy(update={"name": f"{config.name}-sweep"}))  # the sweep's folder

        def train(overrides: list[str], run_dir: Path, resume: bool) -> dict[str, float]:
            run = load_config(args.config, args.overrides + overrides)
            plugins = run.plugins
            lightning.seed_everything(run.seed, workers=True, verbose=False)
            resolved = resolve(run, Registry.load(disable=plugins.disable, only=plugins.only, require=plugins.require))
            check_fits(resolved.memory)
            return fit_and_test(resolved, prepare_run_dir(run, resume=resume, overwrite=not resume), resume=resume)

        folder = run_sweep_grid(config, axes, train)
        print(f"sweep: {folder / 'sweep.csv'}, {folder / 'sweep.png'}")
        return 0
