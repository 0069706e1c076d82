"""``core-train --config run.yaml``: train and test a model described by one YAML file."""

from __future__ import annotations

import argparse
import sys

from core.cli import cli


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="core-train", description=__doc__)
    p.add_argument("--config", required=True, help="the run's YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a config key, e.g. --set data.batch_size=32 (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--dry-run", action="store_true", help="resolve and validate everything, load no data")
    p.add_argument("--resume", action="store_true", help="continue the run from its checkpoints/last.ckpt")
    p.add_argument("--overwrite", action="store_true", help="start again in a run directory that holds a run")
    p.add_argument("--checkpoint", metavar="PATH", help="with --experiment-only: the checkpoint to evaluate")
    p.add_argument("--experiment-only", action="store_true", help="run the config's experiment sweep from --checkpoint, no training")
    return p


@cli
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from core.config import load_config, to_yaml

    if args.experiment_only != bool(args.checkpoint):
        from core.errors import ConfigError

        raise ConfigError("", "--checkpoint and --experiment-only go together",
                          fix="evaluate a checkpoint with both; continue training with --resume")
    config = load_config(args.config, args.overrides)
    if args.print_config:
        sys.stdout.write(to_yaml(config))
        return 0

    from core.registry import Registry
    from core.resolve import resolve

    plugins = config.plugins
    registry = Registry.load(disable=plugins.disable, only=plugins.only, require=plugins.require)
    if not args.dry_run:
        import lightning

        lightning.seed_everything(config.seed, workers=True, verbose=False)
    resolved = resolve(config, registry)
    sweep = None
    if config.experiment is not None:
        from core.experiment import plan_sweep

        sweep = plan_sweep(resolved)
    if args.dry_run:
        from core.report import print_dry_run

        print_dry_run(resolved)
        return 0

    from core.memory import check_fits
    from core.report import print_test_results
    from core.run import experiment_only, fit_and_test, prepare_run_dir, run_dir_of

    check_fits(resolved.memory)
    if args.experiment_only:
        print_test_results(experiment_only(resolved, sweep, args.checkpoint), run_dir_of(config))
        return 0
    run_dir = prepare_run_dir(config, resume=args.resume, overwrite=args.overwrite)
    results = fit_and_test(resolved, run_dir, resume=args.resume, sweep=sweep)
    print_test_results(results, run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
