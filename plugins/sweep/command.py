"""``core-train sweep --config run.yaml --grid KEY.PATH=V1,V2 [--grid ...]``.

Imports nothing heavy: ``core-train`` builds every command when it starts; the sweep itself
(:mod:`plugins.sweep.grid`) and Lightning load only when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
        flag = next((f for f, given in (("--resume", args.resume), ("--overwrite", args.overwrite)) if given), None)
        if chosen and flag:
            raise ConfigError(flag, f"core-train sweep does not take {flag}",
                              fix="run the same sweep again: finished runs are kept, interrupted ones resume; "
                                  "start afresh by removing <output_dir>/<name>-sweep")

    def run(self, args: argparse.Namespace, config: RunConfig, registry: Registry) -> int:
        """Every combination is resolved and checked (accelerator, memory) before the first run
        starts, as the run it will be (name ``<name>-NNN`` in ``<output_dir>/<name>-sweep``);
        ``--dry-run`` and ``--print-config`` show each and train nothing (``--print-config``
        imports no torch). Each run loads the plugins its own config selects."""
        from core.cli.train import prepare
        from core.config import load_config
        from core.registry import Registry
        from plugins.sweep.grid import check_kept, combinations, parse_grid, run_overrides

        axes = parse_grid(args.grid)
        for index, values in enumerate(combinations(axes)):
            if args.dry_run or args.print_config:
                separator = "---\n" if index and args.print_config else ""  # one YAML document per run
                print(f"{separator}# sweep run {index:03d}: " + ", ".join(f"{k}={v}" for k, v in values.items()),
                      flush=True)
            run = load_config(args.config, args.overrides + run_overrides(config, index, values))
            prepare(args, run, Registry.of_run(run))
            check_kept(run)
        if args.dry_run or args.print_config:
            return 0
        return _train(args, config, axes)


def _train(args: argparse.Namespace, config: RunConfig, axes: dict[str, list[Any]]) -> int:
    import lightning

    from core.config import load_config
    from core.errors import Stopped
    from core.paths import check_output_dir
    from core.registry import Registry
    from core.resolve import resolve
    from core.run import fit_and_test, prepare_run_dir
    from plugins.sweep.grid import run_sweep_grid

    check_output_dir(config.model_copy(update={"name": f"{config.name}-sweep"}))  # the sweep's folder

    def train(overrides: list[str], run_dir: Path, resume: bool) -> dict[str, float]:
        run = load_config(args.config, args.overrides + overrides)
        lightning.seed_everything(run.seed, workers=True, verbose=False)
        registry = Registry.of_run(run)
        resolved = resolve(run, registry)
        return fit_and_test(resolved, prepare_run_dir(run, resume=resume, overwrite=not resume, registry=registry),
                            resume=resume)

    try:
        folder = run_sweep_grid(config, axes, train)
    except Stopped as stop:  # the sweep, started again, resumes this run and keeps the finished ones
        raise Stopped(stop.signum, stop.checkpoint, stop.epoch, stop.step,
                      resume="the same core-train sweep command (finished runs are kept, this one resumes)") from None
    print(f"sweep: {folder / 'sweep.csv'}, {folder / 'sweep.png'}")
    return 0
