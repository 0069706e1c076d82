"""``core-train [fit|validate|test|predict] --config run.yaml``: train, evaluate or predict
with a model described by one YAML file.

Without a subcommand the run is trained and its best checkpoint tested (``fit`` alone
trains). ``validate``, ``test`` and ``predict`` load a checkpoint (``--checkpoint PATH``,
``best`` or ``last`` of the run directory; default ``best``) and write nothing into the
run's metrics; ``predict`` writes per-sample outputs to HDF5 (default
``<run>/predictions/<split>.h5``). ``sweep`` trains one run per combination of the
``--grid`` values and compares them (``<output_dir>/<name>-sweep/sweep.csv``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.cli import cli

COMMANDS = ("fit", "validate", "test", "predict", "sweep")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="core-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", choices=COMMANDS,
                   help="fit, validate, test, predict or sweep (default: fit, then test)")
    p.add_argument("--config", required=True, help="the run's YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a config key, e.g. --set data.batch_size=32 (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--dry-run", action="store_true", help="resolve and validate everything, load no data")
    p.add_argument("--resume", action="store_true", help="continue the run from its checkpoints/last.ckpt")
    p.add_argument("--overwrite", action="store_true", help="start again in a run directory that holds a run")
    p.add_argument("--checkpoint", metavar="PATH", help="validate/test/predict/--experiment-only: the checkpoint "
                   "(a path, or best / last of the run directory; default best)")
    p.add_argument("--experiment-only", action="store_true", help="run the config's experiment sweep from --checkpoint, no training")
    p.add_argument("--split", choices=("train", "val", "test"), default="test", help="predict: the split (default test)")
    p.add_argument("--record", default="", metavar="NAME,...", help="predict: also write these modules' activations")
    p.add_argument("--output", metavar="FILE", help="predict: the HDF5 file (default <run>/predictions/<split>.h5)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY.PATH=V1,V2",
                   help="sweep: the values of one key (repeatable; every combination is a run)")
    return p


@cli
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from core.config import load_config, to_yaml

    _check_flags(args)
    config = load_config(args.config, args.overrides)
    if args.command == "sweep":
        return _sweep(args, config)
    if args.print_config:
        sys.stdout.write(to_yaml(config))
        return 0
    return _run(args, config)


def _check_flags(args: argparse.Namespace) -> None:
    """Flags that only make sense together (or with one subcommand)."""
    from core.errors import ConfigError

    if args.experiment_only and not args.checkpoint:
        raise ConfigError("", "--experiment-only evaluates a checkpoint: give it with --checkpoint",
                          fix="evaluate a checkpoint with both; continue training with --resume")
    if args.checkpoint and not (args.experiment_only or args.command in ("validate", "test", "predict")):
        raise ConfigError("", "--checkpoint names what validate, test, predict or --experiment-only evaluates",
                          fix="continue training with --resume; evaluate with core-train test --checkpoint PATH")
    if (args.record or args.output) and args.command != "predict":
        raise ConfigError("", "--record and --output go with core-train predict", fix="core-train predict --config ... --record NAME")
    if bool(args.grid) != (args.command == "sweep"):
        raise ConfigError("--grid", "core-train sweep and --grid go together",
                          fix="core-train sweep --config run.yaml --grid optim.lr=1e-3,3e-3")


def _run(args: argparse.Namespace, config: object) -> int:
    """Resolve the config, then dry-run, evaluate, or train (and test) it."""
    from core.errors import ConfigError
    from core.registry import Registry
    from core.resolve import check_accelerator, resolve

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
        try:  # the machine a config is checked on often lacks the GPU it will train on: a warning only
            check_accelerator(config.trainer)
        except ConfigError as exc:
            import logging

            logging.getLogger("core").warning("%s\n  (a run on this machine stops with this error)", exc)
        return 0

    from core.memory import check_fits
    from core.report import print_run_summary, print_test_results
    from core.run import experiment_only, fit_and_test, prepare_run_dir, run_dir_of

    check_accelerator(config.trainer)
    check_fits(resolved.memory)
    if args.experiment_only:
        print_test_results(experiment_only(resolved, sweep, args.checkpoint), run_dir_of(config))
        return 0
    if args.command in ("validate", "test", "predict"):
        return _evaluate(args, resolved, run_dir_of(config))
    from core.paths import check_output_dir

    check_output_dir(config)
    run_dir = prepare_run_dir(config, resume=args.resume, overwrite=args.overwrite)
    results = fit_and_test(resolved, run_dir, resume=args.resume, sweep=sweep, test=args.command != "fit")
    print_run_summary(results, run_dir)
    return 0


def _sweep(args: argparse.Namespace, config: object) -> int:
    """Every combination's config is checked before the first run starts."""
    import lightning

    from core.config import load_config
    from core.memory import check_fits
    from core.paths import check_output_dir
    from core.registry import Registry
    from core.resolve import check_accelerator, resolve
    from core.run import fit_and_test, prepare_run_dir
    from core.sweep import combinations, parse_grid, run_sweep_grid

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


def _evaluate(args: argparse.Namespace, resolved: object, run_dir: Path) -> int:
    from core.evaluate import checkpoint_path, evaluate, predict
    from core.report import print_test_results

    if args.command == "predict":
        record = [name.strip() for name in args.record.split(",") if name.strip()]
        path = predict(resolved, run_dir, args.checkpoint, args.split, record, Path(args.output) if args.output else None)
        print(f"predictions: {path}")
        return 0
    print(f"checkpoint: {checkpoint_path(run_dir, args.checkpoint)}")
    print_test_results(evaluate(resolved, args.command, run_dir, args.checkpoint), run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
