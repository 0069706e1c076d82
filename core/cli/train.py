"""``core-train [fit|validate|test|COMMAND] --config run.yaml``: train or evaluate a model
described by one YAML file.

Without a subcommand the run is trained and its best checkpoint tested (``fit`` alone
trains). ``validate`` and ``test`` load a checkpoint (``--checkpoint PATH``, ``best`` or
``last`` of the run directory; default ``best``) and write nothing into the run's metrics.
The other subcommands come from plugins (hook ``core_commands``; ``core-plugins`` lists
them), with their own flags.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from core.cli import cli

if TYPE_CHECKING:
    from core.config import RunConfig
    from core.kinds import Command
    from core.registry import Registry
    from core.resolve import ResolvedRun

OWN = {"fit": "train the run (the default trains, then tests)", "validate": "evaluate a checkpoint on the validation split",
       "test": "evaluate a checkpoint on the test split"}
log = logging.getLogger("core")


def parser(commands: Mapping[str, Command]) -> argparse.ArgumentParser:
    """core-train's own flags, and each command's in a group of its own."""
    verbs = {**OWN, **{name: command.help for name, command in commands.items()}}
    width = max(map(len, verbs))
    epilog = "commands:\n" + "\n".join(f"  {name.ljust(width)}  {text}" for name, text in verbs.items())
    p = argparse.ArgumentParser(prog="core-train", description=__doc__, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", metavar="{" + ",".join(verbs) + "}",
                   help=f"{', '.join(verbs)} (default: fit, then test)")
    _own_flags(p, _evaluators(commands))
    for name, command in commands.items():
        command.add_arguments(p.add_argument_group(name, command.help))
    return p


def _own_flags(p: argparse.ArgumentParser, evaluators: list[str]) -> argparse.ArgumentParser:
    p.add_argument("--config", required=True, help="the run's YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a config key, e.g. --set data.batch_size=32 (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--dry-run", action="store_true", help="resolve and validate everything, load no data")
    p.add_argument("--resume", action="store_true", help="continue the run from its checkpoints/last.ckpt")
    p.add_argument("--overwrite", action="store_true", help="start again in a run directory that holds a run")
    p.add_argument("--checkpoint", metavar="PATH", help=f"{'/'.join(evaluators)}: the "
                   "checkpoint (a path, or best / last of the run directory; default best)")
    return p


@cli
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    config, registry = _load(argv)
    commands = _commands(registry)
    flags = parser(commands)
    args, unknown = flags.parse_known_args(argv)
    command = _command(args.command, commands, registry)  # first: a flag of a command not loaded is named with it
    if unknown:
        flags.error(f"unrecognized arguments: {' '.join(unknown)}")
    _check_flags(args, commands)
    args.restores = args.resume or args.command in _evaluators(commands)  # weights from the run's checkpoint
    if command is not None:
        return command.run(args, config, registry)
    return _run(args, config, registry)


def _load(argv: list[str]) -> tuple[RunConfig | None, Registry]:
    """The run's config and the plugins it selects, read before the command line is parsed:
    the commands and their flags come from those plugins (without ``--config``: every plugin)."""
    from core.config import load_config
    from core.registry import Registry

    early = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    early.add_argument("--config")
    early.add_argument("--set", dest="overrides", action="append", default=[])
    try:
        known = early.parse_known_args(argv)[0]
    except argparse.ArgumentError:  # e.g. --config without a value: the full parser says so
        known = argparse.Namespace(config=None)
    if known.config is None:
        return None, Registry.load()
    config = load_config(known.config, known.overrides)
    return config, Registry.of_run(config)


def _commands(registry: Registry) -> dict[str, Command]:
    """The plugins' commands; one that cannot load is left out with a warning (the others still run)."""
    found = {}
    flags = _own_flags(argparse.ArgumentParser(), [])  # the flags so far: a command's must not clash with them
    for name, component in registry.components["command"].items():
        if name in OWN:
            log.warning("%s provides the command '%s', which is core-train's own: left out", component.plugin.origin, name)
            continue
        try:
            command = component.resolve()()
            command.add_arguments(argparse.ArgumentParser(add_help=False, parents=[flags]).add_argument_group(name))
        except Exception as exc:  # noqa: BLE001 (a plugin's bug, a clashing flag, or PluginUnavailable)
            log.warning("core-train %s is unavailable: %s", name, exc)
            continue
        command.add_arguments(flags.add_argument_group(name))
        found[name] = command
    return found


def _command(name: str | None, commands: Mapping[str, Command], registry: Registry) -> Command | None:
    """The plugin command ``name`` (None for core-train's own); a name no loaded plugin provides
    is an error that names the plugins that may (disabled, not selected, failed)."""
    from core.errors import ConfigError, PluginError, did_you_mean

    if name is None or name in OWN:
        return None
    if name not in commands:
        if name not in registry.components["command"]:  # a typo: name the close verb, core-train's or a plugin's
            verbs = [*OWN, *commands]
            hint = did_you_mean(name, verbs)
            if hint:
                raise ConfigError("command", f"no command named '{name}'{hint}", fix=f"the commands: {', '.join(verbs)}")
        registry.get("command", name, "command")
        raise PluginError(f"core-train {name} failed to load: see the warning above")
    return commands[name]


def _evaluators(commands: Mapping[str, Command]) -> list[str]:
    return ["validate", "test", *(name for name, command in commands.items() if command.takes_checkpoint)]


def _check_flags(args: argparse.Namespace, commands: Mapping[str, Command]) -> None:
    """Flags that only make sense together (or with one subcommand); each command checks its own."""
    from core.errors import ConfigError

    evaluators = _evaluators(commands)
    if args.checkpoint and args.command not in evaluators:
        raise ConfigError("", f"--checkpoint names what {', '.join(evaluators[:-1])} or {evaluators[-1]} evaluates",
                          fix="continue training with --resume; evaluate with core-train test --checkpoint PATH")
    given = next((flag for flag in ("--resume", "--overwrite") if getattr(args, flag[2:])), None)
    if given and args.command in evaluators:  # an evaluation trains nothing: the flag would be ignored
        raise ConfigError(given, f"core-train {args.command} evaluates a trained run and does not take {given}",
                          fix=f"train with core-train --config ... {given}, then run core-train {args.command}")
    for name, command in commands.items():
        command.check(args, args.command == name)


def prepare(args: argparse.Namespace, config: RunConfig, registry: Registry) -> ResolvedRun | None:
    """What training and every evaluation of the run share: ``--print-config``, resolving
    the config, ``--dry-run``, the accelerator and memory checks. Returns the resolved run,
    or None when a flag has done all there is to do (exit 0). A command that evaluates the
    run (``predict``) calls it first::

        resolved = prepare(args, config, registry)
        if resolved is None:
            return 0
    """
    from core.config import to_yaml
    from core.errors import ConfigError
    from core.resolve import check_accelerator, check_section_names, resolve

    if args.print_config:  # resolving checks the plugins' sections; this prints without resolving
        check_section_names(config, registry)
        sys.stdout.write(to_yaml(config))
        return None
    if not args.dry_run:
        import lightning

        lightning.seed_everything(config.seed, workers=True, verbose=False)
    from core.kinds import restoring

    with restoring(getattr(args, "restores", False)):
        resolved = resolve(config, registry)
    if args.dry_run:
        from core.report import print_dry_run

        print_dry_run(resolved)
        try:  # the machine a config is checked on often lacks the GPU it will train on: a warning only
            check_accelerator(config.trainer)
        except ConfigError as exc:
            log.warning("%s\n  (a run on this machine stops with this error)", exc)
        return None

    from core.memory import check_fits

    check_accelerator(config.trainer)
    check_fits(resolved.memory)
    return resolved


def _run(args: argparse.Namespace, config: RunConfig, registry: Registry) -> int:
    """Train (and test) the run, or validate / test a checkpoint of it."""
    resolved = prepare(args, config, registry)
    if resolved is None:
        return 0
    from core.report import print_run_summary
    from core.run import fit_and_test, prepare_run_dir, run_dir_of

    if args.command in ("validate", "test"):
        return _evaluate(args, resolved, run_dir_of(config))
    from core.paths import check_output_dir

    check_output_dir(config)
    run_dir = prepare_run_dir(config, resume=args.resume, overwrite=args.overwrite, registry=registry)
    results = fit_and_test(resolved, run_dir, resume=args.resume, test=args.command != "fit")
    print_run_summary(results, run_dir)
    return 0


def _evaluate(args: argparse.Namespace, resolved: ResolvedRun, run_dir: Path) -> int:
    from core.evaluate import checkpoint_path, evaluate
    from core.report import print_test_results

    print(f"checkpoint: {checkpoint_path(run_dir, args.checkpoint)}")
    print_test_results(evaluate(resolved, args.command, run_dir, args.checkpoint), run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
