"""Subcommands of core-train from plugins (kind ``command``): help, flags, dispatch, failures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from core.cli import train as train_cli
from core.cli.plugins import main as plugins_main
from tests.conftest import ROOT, SMALL_RUN, run_cli

GREET = """
    import argparse

    from core import Command, ConfigError, hookimpl


    class Greet(Command):
        help = "print a greeting for the run"

        def add_arguments(self, group: argparse._ArgumentGroup) -> None:
            group.add_argument("--greeting", default="", help="the words")

        def check(self, args: argparse.Namespace, chosen: bool) -> None:
            if args.greeting and not chosen:
                raise ConfigError("--greeting", "--greeting goes with core-train greet")

        def run(self, args, config, registry) -> int:
            print(f"{args.greeting or 'hello'} {config.name}, {len(registry.components['model'])} models")
            return 0


    @hookimpl
    def core_commands():
        return {"greet": Greet, "broken": "greet_plugin:Missing"}
"""


def test_help_lists_every_command_and_each_commands_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        train_cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("fit", "validate", "test", "predict", "sweep"):
        assert f"\n  {command} " in out, out
    for flag in ("--split", "--record", "--output", "--grid", "--checkpoint"):
        assert flag in out


def test_a_third_party_command_runs_with_its_flags_and_checks_their_use(capsys, write_config, make_plugin_dist):
    make_plugin_dist("greet", GREET)
    path = str(write_config(SMALL_RUN))
    assert train_cli.main(["greet", "--config", path, "--greeting", "hi"]) == 0
    captured = capsys.readouterr()
    assert "hi small, " in captured.out
    assert "WARNING: core-train broken is unavailable" in captured.err and "greet_plugin:Missing" in captured.err
    assert train_cli.main(["fit", "--config", path, "--greeting", "hi"]) == 2
    assert "config error at --greeting: --greeting goes with core-train greet" in capsys.readouterr().err
    assert train_cli.main(["broken", "--config", path]) == 2
    assert "core-train broken failed to load: see the warning above" in capsys.readouterr().err
    assert plugins_main(["show", "greet"]) == 0
    assert "command greet: plugin greet (greet 0.1)" in capsys.readouterr().out


def test_a_command_of_a_disabled_plugin_says_why_it_is_missing(capsys, write_config):
    path = str(write_config(SMALL_RUN))
    assert train_cli.main(["predict", "--config", path, "--set", "plugins.disable=[predict]"]) == 2
    err = capsys.readouterr().err
    assert "config error at command: no command named 'predict'" in err
    assert "plugin 'predict' (core-train 0.1.0) is disabled by plugins.disable" in err


def test_core_plugins_lists_the_built_in_commands_and_building_them_imports_no_torch():
    listing = run_cli("core-plugins", "--json")
    rows = {row["plugin"]: row["components"] for row in json.loads(listing.stdout)["plugins"]}
    assert rows["predict"] == {"command": ["predict"]} and rows["sweep"] == {"command": ["sweep"]}
    for command in ([], ["predict"], ["sweep", "--grid", "optim.lr=1e-3,3e-3"]):
        code = ("import sys\nfrom core.cli import train\n"
                f"train.main({command} + ['--config', 'configs/quickstart.yaml', '--print-config'])\n"
                "print(sorted(m for m in ('torch', 'lightning', 'h5py') if m in sys.modules))\n")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
        assert run.stdout.splitlines()[-1] == "[]", (command, run.stdout)


CLASH = GREET.replace("greeting", "record").replace('return {"greet": Greet, "broken": "greet_plugin:Missing"}',
                                                            'return {"greet": Greet, "abstract": Command}')


def test_a_command_that_cannot_be_built_or_whose_flags_clash_is_left_out_and_the_others_run(capsys, write_config,
                                                                                          make_plugin_dist):
    make_plugin_dist("greet", CLASH)  # --record is predict's; Command itself has no run()
    path = str(write_config(SMALL_RUN))
    assert train_cli.main(["--config", path, "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "conflicting option string: --record" in err  # the one of greet and predict found second is left out
    assert "core-train abstract is unavailable" in err and "Traceback" not in err


def test_a_mistyped_command_names_the_close_one(capsys, write_config):
    assert train_cli.main(["tets", "--config", str(write_config(SMALL_RUN))]) == 2
    err = capsys.readouterr().err
    assert "config error at command: no command named 'tets' (did you mean 'test'?)" in err
    assert "fit, validate, test, experiment, predict, sweep" in err


def test_a_sweep_refuses_the_flags_of_a_single_run(capsys, write_config):
    path = str(write_config(SMALL_RUN))
    for flag in ("--resume", "--overwrite"):
        assert train_cli.main(["sweep", "--config", path, "--grid", "optim.lr=1e-3,3e-3", flag]) == 2
        assert f"config error at {flag}: core-train sweep does not take {flag}" in capsys.readouterr().err
    # the sweep's own flag with the sweep not loaded: the plugin is named, not argparse's usage block
    disabled = ["--set", "plugins.disable=[sweep]", "--grid", "optim.lr=1e-3,3e-3"]
    assert train_cli.main(["sweep", "--config", path, *disabled]) == 2
    assert "plugin 'sweep' (core-train 0.1.0) is disabled by plugins.disable" in capsys.readouterr().err


def test_evaluations_refuse_training_flags_and_predict_s_flags_go_with_predict(capsys, write_config, tmp_path):
    path = str(write_config(SMALL_RUN))
    for command in ("test", "validate", "predict"):
        assert train_cli.main([command, "--config", path, "--resume"]) == 2  # it trains nothing: not silently ignored
        assert f"config error at --resume: core-train {command} evaluates a trained run and does not take --resume" \
               in capsys.readouterr().err
    assert train_cli.main(["test", "--config", path, "--split", "val"]) == 2  # it tested the test split before
    assert "--split, --record and --output go with core-train predict" in capsys.readouterr().err
    assert train_cli.main(["predict", "--config", path, "--output", str(tmp_path)]) == 2
    assert f"config error at --output: {tmp_path} is a folder; --output names the HDF5 file" in capsys.readouterr().err
