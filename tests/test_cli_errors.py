"""Every user-caused error reaches the user as one message (exit 2), never a traceback."""

import pytest

from core.cli import plugins as plugins_cli
from core.cli import train as train_cli
from tests.conftest import SMALL_RUN


def fails(capsys, argv, *expected):
    code = train_cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert "error: " in err
    for text in expected:
        assert text in err, err
    return err


def test_unknown_component_name(capsys, write_config):
    path = write_config(SMALL_RUN)
    fails(capsys, ["--config", str(path), "--set", "data.transforms=[pixelnrom]", "--dry-run"],
          "config error at data.transforms.0: no transform named 'pixelnrom' (did you mean 'pixelnorm'?)",
          "available transforms: 'fftwhitening', 'normalize', 'pixelnorm', 'random_flip'")


def test_misspelt_option(capsys, write_config):
    path = write_config(SMALL_RUN)
    fails(capsys, ["--config", str(path), "--set", "model.simple_cnn.conv3=4", "--dry-run"],
          "config error at model.simple_cnn.conv3: model 'simple_cnn' has no option 'conv3' (did you mean 'conv2'?)")


def test_wrong_option_type(capsys, write_config):
    path = write_config(SMALL_RUN)
    fails(capsys, ["--config", str(path), "--set", "data.format.digits.image_size=large", "--dry-run"],
          "config error at data.format.digits.image_size: 'large' is not valid for option 'image_size' of format 'digits': expected int")


def test_invalid_option_combination_from_a_factory(capsys, write_config):
    path = write_config(SMALL_RUN)
    fails(capsys, ["--config", str(path), "--set", "data.format.digits.image_size=4", "--dry-run"],
          "config error at data.format.digits: format 'digits': image_size 4 is below the native 8 pixels")


def test_yaml_syntax_error(capsys, write_config):
    path = write_config("name: x\ndata: {format: digits\nmodel: simple_cnn\n")
    fails(capsys, ["--config", str(path)], "YAML syntax error", "line 3")


def test_missing_config_file(capsys, tmp_path):
    fails(capsys, ["--config", str(tmp_path / "absent.yaml")], "absent.yaml' does not exist")


def test_disabled_plugin_named_in_the_run(capsys, write_config):
    path = write_config(SMALL_RUN)
    fails(capsys, ["--config", str(path), "--set", "plugins.disable=[pixelnorm]", "--dry-run"],
          "no transform named 'pixelnorm'", "plugin 'pixelnorm' (core-train 0.1.0) is disabled by plugins.disable")


def test_conflicting_names(capsys, write_config, make_plugin_dist):
    make_plugin_dist("rival", """
        from core import hookimpl

        @hookimpl
        def core_models():
            return {"simple_cnn": "rival_plugin:Model"}
    """)
    fails(capsys, ["--config", str(write_config(SMALL_RUN)), "--dry-run"],
          "two plugins provide the model 'simple_cnn'", "(rival 0.1)", "(core-train 0.1.0)")


def test_plugin_that_raises_on_import(capsys, write_config, make_plugin_dist):
    make_plugin_dist("warps", "raise ImportError('needs numba')\n")
    path = write_config(SMALL_RUN)
    # a run that does not need it still resolves, with a warning
    assert train_cli.main(["--config", str(path), "--dry-run"]) == 0
    assert "WARNING: plugin 'warps' (warps 0.1) failed to import: ImportError: needs numba" in capsys.readouterr().err
    # a run that names one of its components fails with the import error
    fails(capsys, ["--config", str(path), "--set", "data.transforms=[warp]", "--dry-run"],
          "no transform named 'warp'", "plugin 'warps' (warps 0.1) failed to import, it may provide 'warp': ImportError: needs numba")
    assert plugins_cli.main([]) == 0
    out = capsys.readouterr().out
    assert "warps" in out and "failed" in out and "needs numba" in out


def test_resume_with_no_checkpoint(capsys, write_config):
    path = write_config(SMALL_RUN)
    fails(capsys, ["--config", str(path), "--resume"], "--resume: no checkpoint at", "start the run without --resume")


def test_unknown_loss_weight_head_and_managed_trainer_key(capsys, write_config):
    path = write_config(SMALL_RUN)
    fails(capsys, ["--config", str(path), "--set", "loss_weights.digits=2", "--dry-run"],
          "config error at loss_weights.digits: the dataset has no head 'digits' (did you mean 'digit'?)")
    fails(capsys, ["--config", str(path), "--set", "trainer.callbacks=[]", "--dry-run"],
          "config error at trainer.callbacks: 'callbacks' is set by core-train itself")
    fails(capsys, ["--config", str(path), "--set", "trainer.max_epoch=3", "--dry-run"],
          "config error at trainer.max_epoch: lightning.Trainer has no option 'max_epoch' (did you mean 'max_epochs'?)")


def test_print_config_shows_the_resolved_config(capsys, write_config):
    path = write_config(SMALL_RUN)
    assert train_cli.main(["--config", str(path), "--print-config", "--set", "data.batch_size=7"]) == 0
    out = capsys.readouterr().out
    assert "batch_size: 7" in out and "storage: uint8" in out and "optimizer: adamw" in out


def test_dry_run_prints_the_component_table(capsys, write_config):
    assert train_cli.main(["--config", str(write_config(SMALL_RUN)), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for text in ("kind", "plugin", "distribution", "simple_cnn", "core-train", "pixelnorm (device)", "no data loaded"):
        assert text in out, out


@pytest.mark.parametrize("argv", [["--config"], ["--bogus"]])
def test_argument_errors_exit_with_usage(argv):
    with pytest.raises(SystemExit) as exc:
        train_cli.main(argv)
    assert exc.value.code == 2


def test_uint8_with_a_prepare_only_transform(capsys, write_config):
    path = write_config(SMALL_RUN)
    fails(capsys, ["--config", str(path), "--set", "data.transforms=[pixelnorm, fftwhitening]", "--dry-run"],
          "config error at data.transforms.1: dataset 'digits' has transform 'fftwhitening', which runs only at preparation",
          "fix: use data.storage: bfloat16")


def test_transform_that_cannot_take_the_input_layout(capsys, write_config):
    path = write_config(SMALL_RUN)
    fails(capsys, ["--config", str(path), "--set", "data.storage=bfloat16", "--set", "data.transforms=[temporal_basis]",
                   "--dry-run"],
          "config error at data.transforms.0: transform 'temporal_basis' of dataset 'digits': temporal_basis filters a "
          "time axis, but the stim has none: axes CHW")


def test_plan_that_does_not_fit_stops_before_loading(capsys, write_config):
    path = write_config(SMALL_RUN)
    args = ["--config", str(path), "--set", "data.storage=float32", "--set", "data.memory_budget=200KB"]
    assert train_cli.main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "memory plan for dataset 'digits' (195.3 KiB of RAM (data.memory_budget) available)" in out
    assert "does not fit" in out
    fails(capsys, args, "config error at data.storage: dataset 'digits' needs", "as float32, more than the 195.3 KiB",
          "fix: use data.storage: uint8")
    assert not (path.parent / "runs" / "small").exists()  # stopped before the run directory, before loading


def test_trainer_hint_leaves_out_managed_keys(capsys, write_config):
    err = fails(capsys, ["--config", str(write_config(SMALL_RUN)), "--set", "trainer.max_epoch=3", "--dry-run"], "max_epochs")
    assert "callbacks" not in err.split("its options are:")[1]
