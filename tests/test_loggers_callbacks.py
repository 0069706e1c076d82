"""Loggers (``logging:``) and callbacks (``callbacks:``) from the config: what each built-in
logger writes (csv, tensorboard, wandb offline, mlflow file store) with the run's
description as hyperparameters, early stopping, the learning rate in metrics.csv, the
heartbeat's lines, stochastic weight averaging, the defaults and their graceful
degradation, and the errors naming the YAML path."""

from __future__ import annotations

import csv
import logging
import re
import sys

import pytest
import yaml

from core import ConfigError
from core.config import parse_config
from core.registry import Registry
from core.resolve import resolve
from core.run import build_trainer, prepare_run_dir

SMALL_CNN = {"simple_cnn": {"conv1": 4, "conv2": 4, "fc_hidden": 8}}
TRAINER = {"max_epochs": 2, "accelerator": "cpu", "enable_progress_bar": False, "enable_model_summary": False,
           "limit_train_batches": 3, "limit_val_batches": 1, "num_sanity_val_steps": 0, "log_every_n_steps": 1}
STAMP = re.compile(r"^heartbeat \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} \+\d+\.\d{3}s rank 0 (\w+) epoch \d+ step \d+")


@pytest.fixture(scope="module")
def registry():
    return Registry.load()


def config_of(tmp_path, **run):
    raw = {"name": "lc", "output_dir": str(tmp_path / "runs"), "model": SMALL_CNN, "trainer": dict(TRAINER),
           "data": {"format": {"digits": {"image_size": 8}}, "transforms": ["pixelnorm"], "batch_size": 128}}
    return parse_config({**raw, **run})


def fit(tmp_path, registry, **run):
    config = config_of(tmp_path, **run)
    resolved = resolve(config, registry)
    run_dir = prepare_run_dir(config, resume=False, overwrite=False, registry=registry)
    trainer, datamodule, module, _ = build_trainer(resolved, run_dir)
    trainer.fit(module, datamodule=datamodule)
    return trainer, run_dir


def rows_of(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def refused(tmp_path, registry, **run) -> str:
    with pytest.raises(ConfigError) as err:
        resolve(config_of(tmp_path, **run), registry)
    return str(err.value)


def test_every_built_in_logger_writes_the_metrics_and_the_run_description(tmp_path, registry, monkeypatch):
    pytest.importorskip("tensorboard")
    wandb = pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    import lightning
    import torch
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for key in ("CONFIG", "CACHE", "DATA"):  # nothing outside tmp_path, no network
        monkeypatch.setenv(f"WANDB_{key}_DIR", str(tmp_path / f"wandb_{key.lower()}"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # the logger sets it for its file store
    try:
        _, run_dir = fit(tmp_path, registry, logging=["csv", "tensorboard", {"wandb": {"project": "test"}}, "mlflow"],
                         callbacks=[{"lr_monitor": {"logging_interval": "step"}}, {"heartbeat": {"file": "beats.log"}}])
    finally:
        wandb.finish()
    versions = {"torch": str(torch.__version__), "lightning": lightning.__version__}

    # csv: metrics.csv with the learning rate of every logged step (and its epoch), hparams.yaml
    rows = rows_of(run_dir / "metrics.csv")
    lrs = [(r["epoch"], float(r["lr-AdamW"])) for r in rows if r.get("lr-AdamW")]
    assert len(lrs) == 6 and {lr for _, lr in lrs} == {1e-3} and {e for e, _ in lrs} == {"0", "1"}
    assert [r["epoch"] for r in rows if r.get("val/digit_acc")] == ["0", "1"]
    hparams = yaml.safe_load((run_dir / "hparams.yaml").read_text())
    assert hparams["config"]["name"] == "lc" and hparams["config"]["model"] == SMALL_CNN
    assert {k: hparams["versions"][k] for k in versions} == versions
    assert hparams["plugins"]["loggers"] == hparams["plugins"]["simple_cnn"] == "core-train 0.1.0"

    # tensorboard: an event file in <run_dir>/tensorboard with the scalars
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert {"val/digit_acc", "train/loss_step", "lr-AdamW"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("val/digit_acc")) == 2
    assert yaml.safe_load((run_dir / "tensorboard" / "hparams.yaml").read_text())["versions"]["torch"] == versions["torch"]

    # wandb: an offline run inside the run directory, holding the metrics and the config
    (offline,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    data = offline.read_bytes()
    for text in ("val/digit_acc", "lr-AdamW", "simple_cnn", versions["torch"], versions["lightning"]):
        assert text.encode() in data, text

    # mlflow: a file store in <run_dir>/mlruns, a run named after the run with metrics and params
    client = MlflowClient(tracking_uri=f"file:{run_dir / 'mlruns'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.run_name == "lc" and run.info.status == "FINISHED"
    assert {"val/digit_acc", "val/loss", "train/loss_step", "lr-AdamW"} <= set(run.data.metrics)
    assert len(client.get_metric_history(run.info.run_id, "val/digit_acc")) == 2
    params = run.data.params
    assert params["versions/torch"] == versions["torch"] and params["versions/lightning"] == versions["lightning"]
    assert params["config/name"] == "lc" and params["config/model/simple_cnn/conv1"] == "4"
    assert params["plugins/callbacks"] == "core-train 0.1.0"

    # heartbeat: one timestamped line per hook, appended to a file in the run directory
    lines = (run_dir / "beats.log").read_text().splitlines()
    hooks = [STAMP.match(line).group(1) for line in lines]
    assert hooks[:4] == ["setup", "on_fit_start", "on_train_start", "on_train_epoch_start"]
    assert hooks[-1] == "teardown"
    for hook in ("on_train_batch_start", "on_before_backward", "on_before_optimizer_step", "on_train_batch_end",
                 "on_validation_epoch_end", "on_save_checkpoint", "on_train_end"):
        assert hook in hooks, hook
    assert hooks.count("on_train_batch_start") == 6
    assert lines[4].endswith("on_train_batch_start epoch 0 step 0 batch 0")


def test_early_stopping_stops_the_run_and_lr_monitor_needs_no_logger(tmp_path, registry):
    trainer, run_dir = fit(tmp_path, registry, logging=[], trainer={**TRAINER, "max_epochs": 10},
                           callbacks=["lr_monitor", {"early_stopping": {"patience": 1, "min_delta": 10.0}}])
    (stopper,) = [c for c in trainer.callbacks if type(c).__name__ == "EarlyStopping"]
    assert stopper.monitor == "val/digit_acc" and stopper.mode == "max"  # the module's monitor
    assert stopper.stopped_epoch == 1 and trainer.current_epoch == 2  # of 10
    assert not (run_dir / "metrics.csv").exists()  # logging: [] writes nothing


@pytest.mark.parametrize("run, message", [
    ({"callbacks": [{"early_stopping": {"monitor": "val/digit_ac"}}]},
     "config error at callbacks.0.early_stopping.monitor: validation logs no metric 'val/digit_ac' (did you mean "
     "'val/digit_acc'?)"),
    ({"checkpoint": {"monitor": "val/los", "mode": "min"}}, "config error at checkpoint.monitor: validation logs no "
     "metric 'val/los' (did you mean 'val/loss'?)"),
])
def test_a_monitor_typo_is_refused_before_the_first_epoch_trains(tmp_path, registry, run, message):
    trainer = {**TRAINER, "num_sanity_val_steps": 1}
    with pytest.raises(ConfigError) as err:
        fit(tmp_path, registry, logging=["csv"], trainer=trainer, **run)
    assert str(err.value).startswith(message) and "'val/acc_best', 'val/digit_acc'" in str(err.value)
    assert not (tmp_path / "runs" / "lc" / "metrics.csv").exists()  # no epoch trained
    fit(tmp_path, registry, logging=[], trainer=trainer, checkpoint={"monitor": "val/acc_best", "mode": "max"})


def test_mlflow_values_it_refuses_are_one_message_at_the_logger_s_path(tmp_path, registry):
    pytest.importorskip("mlflow")
    for options, message in (({"tracking_uri": "bogus://x"}, "MLflow refuses tracking_uri 'bogus://x'"),
                             ({"experiment_name": " "}, "experiment_name is empty")):
        with pytest.raises(ConfigError, match=f"config error at logging.1.mlflow: logger 'mlflow': {message}"):
            fit(tmp_path, registry, logging=["csv", {"mlflow": options}])  # tracebacks from MLflow before


def test_tensorboard_writes_into_the_run_directory_whatever_its_name(tmp_path, registry, monkeypatch):
    monkeypatch.setenv("CORE_TEST_ELSEWHERE", str(tmp_path / "elsewhere"))
    fit(tmp_path, registry, name="$CORE_TEST_ELSEWHERE", logging=["tensorboard"], trainer={**TRAINER, "max_epochs": 1})
    assert list((tmp_path / "runs" / "$CORE_TEST_ELSEWHERE" / "tensorboard").glob("events.out.tfevents.*"))
    assert not (tmp_path / "elsewhere").exists()  # Lightning's logger expanded the variable


def test_a_per_dataset_metric_the_sanity_check_did_not_reach_is_not_refused():
    from types import SimpleNamespace

    from core.run import CheckMonitors

    trainer = SimpleNamespace(callback_metrics={"val/corr": 0.1, "val/s0/corr": 0.1, "val/s0/loss": 0.2})
    module = SimpleNamespace(best_key="val/corr_best")
    CheckMonitors({"checkpoint.monitor": "val/s2/corr"}, ["s0", "s1", "s2"]).on_sanity_check_end(trainer, module)
    with pytest.raises(ConfigError, match="(?s)'val/s3/corr' .*fix: monitor one it logs: .*'val/s2/loss'"):
        CheckMonitors({"checkpoint.monitor": "val/s3/corr"}, ["s0", "s1", "s2"]).on_sanity_check_end(trainer, module)


def test_the_epoch_summary_shows_val_values_only_on_epochs_that_validated(tmp_path, registry, capsys):
    fit(tmp_path, registry, logging=[], trainer={**TRAINER, "max_epochs": 3, "check_val_every_n_epoch": 2})
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [("val/loss" in line) for line in lines] == [False, True, False], lines  # not epoch 1's values again


def test_swa_averages_and_the_heartbeat_goes_to_the_core_logger(tmp_path, registry, caplog):
    import torch

    caplog.set_level(logging.INFO, logger="core")
    trainer, run_dir = fit(tmp_path, registry, logging=["csv"], trainer={**TRAINER, "max_epochs": 3}, callbacks=[
        {"stochastic_weight_averaging": {"swa_lrs": 0.01, "swa_epoch_start": 1, "annealing_epochs": 1}},
        {"heartbeat": {"every_n_batches": 2}}])
    (swa,) = [c for c in trainer.callbacks if type(c).__name__ == "StochasticWeightAveraging"]
    assert int(swa.n_averaged) >= 2  # from epoch 1 of 0..2
    averaged = dict(swa._average_model.named_parameters())
    for name, weight in trainer.lightning_module.named_parameters():  # the model took the average at the end
        assert torch.equal(weight.detach().cpu(), averaged[name].detach().cpu()), name
    assert "lr-AdamW" not in rows_of(run_dir / "metrics.csv")[0]  # callbacks: replaces the default [lr_monitor]
    lines = [r.getMessage() for r in caplog.records if r.name == "core" and r.getMessage().startswith("heartbeat ")]
    assert all(STAMP.match(line) for line in lines) and lines
    starts = [line.rsplit(" ", 1)[1] for line in lines if " on_train_batch_start " in line and " epoch 0 " in line]
    assert starts == ["0", "2"]  # every second batch of 3


def test_defaults_are_listed_and_an_unavailable_default_logger_is_skipped(tmp_path, registry, monkeypatch, caplog):
    rows = [u.row() for u in resolve(config_of(tmp_path), registry).used]
    assert [(r["kind"], r["name"], r["yaml"], r["plugin"]) for r in rows if r["kind"] in ("logger", "callback")] == [
        ("logger", "csv", "logging.0", "loggers"), ("logger", "tensorboard", "logging.1", "loggers"),
        ("callback", "lr_monitor", "callbacks.0", "callbacks"), ("callback", "epoch_summary", "(standard)", "callbacks"),
        ("callback", "curves", "(standard)", "callbacks")]  # TRAINER turns the progress bar and the summary off

    for module in ("tensorboard", "tensorboardX"):  # as if neither were installed
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.delitem(sys.modules, "plugins.loggers.tensorboard_logger", raising=False)
    fresh = Registry.load()
    resolved = resolve(config_of(tmp_path), fresh)
    assert [c.used.name for c in resolved.loggers] == ["csv"]
    (warning,) = [r for r in caplog.records if r.name == "core" and r.levelno == logging.WARNING]
    assert "the default logger 'tensorboard' is skipped" in warning.getMessage()
    assert "pip install 'core-train[tensorboard]'" in warning.getMessage()

    caplog.clear()  # the default list written out (a saved config.yaml) is still the default
    assert [c.used.name for c in resolve(config_of(tmp_path, logging=["csv", "tensorboard"]), fresh).loggers] == ["csv"]
    assert "the default logger 'tensorboard' is skipped" in caplog.text
    text = refused(tmp_path, fresh, logging=["tensorboard"])  # chosen: an error
    assert text.startswith("config error at logging.0: logger 'tensorboard' of plugin 'loggers' (core-train 0.1.0) "
                           "is unavailable: neither tensorboard nor tensorboardX is installed")
    assert "pip install 'core-train[tensorboard]'" in text


@pytest.mark.parametrize("run, expected", [
    ({"logging": ["csv", "tensorbord"]},
     "config error at logging.1: no logger named 'tensorbord' (did you mean 'tensorboard'?)"),
    ({"logging": [{"mlflow": {"tracking_url": "file:x"}}]},
     "config error at logging.0.mlflow.tracking_url: logger 'mlflow' has no option 'tracking_url' (did you mean "
     "'tracking_uri'?)"),
    ({"logging": ["csv", "csv"]}, "config error at logging.1: logger 'csv' is listed twice (also at logging.0)"),
    ({"callbacks": ["lr_monitor", "early_stoping"]},
     "config error at callbacks.1: no callback named 'early_stoping' (did you mean 'early_stopping'?)"),
    ({"callbacks": ["lr_monitor", {"early_stopping": {"patiense": 2}}]},
     "config error at callbacks.1.early_stopping.patiense: callback 'early_stopping' has no option 'patiense' "
     "(did you mean 'patience'?)"),
    ({"callbacks": [{"early_stopping": {"mode": "up"}}]},
     "config error at callbacks.0.early_stopping.mode: 'up' is not valid for option 'mode'"),
    ({"callbacks": [{"lr_monitor": {"logging_interval": "batch"}}]},
     "config error at callbacks.0.lr_monitor.logging_interval: 'batch' is not valid"),
    ({"callbacks": ["stochastic_weight_averaging"]},
     "config error at callbacks.0.stochastic_weight_averaging.swa_lrs: callback 'stochastic_weight_averaging' needs option 'swa_lrs'"),
    ({"callbacks": [{"stochastic_weight_averaging": {"swa_lrs": -1}}]},
     "config error at callbacks.0.stochastic_weight_averaging: callback 'stochastic_weight_averaging': "),
    ({"callbacks": [{"heartbeat": {"every_n_batches": 0}}]},
     "config error at callbacks.0.heartbeat: callback 'heartbeat': every_n_batches must be >= 1, not 0"),
    ({"trainer": {"logger": False}},
     "config error at trainer.logger: 'logger' is set by core-train itself\n  fix: remove trainer.logger and list the "
     "loggers under the top-level key logging:"),
    ({"trainer": {"callbacks": []}},
     "config error at trainer.callbacks: 'callbacks' is set by core-train itself\n  fix: remove trainer.callbacks and "
     "list them under the top-level key callbacks:"),
], ids=["logger-name", "logger-option", "logger-twice", "callback-name", "callback-option", "callback-value",
        "lr-interval", "swa-needs-lrs", "swa-refuses", "heartbeat-refuses", "trainer-logger", "trainer-callbacks"])
def test_config_errors_name_the_yaml_path(tmp_path, registry, run, expected):
    assert refused(tmp_path, registry, **run).startswith(expected)


def test_per_step_callbacks_add_no_host_sync(tmp_path, registry):
    from core.testing import count_training_syncs

    config = config_of(tmp_path, trainer={**TRAINER, "max_epochs": 1, "limit_train_batches": 12, "log_every_n_steps": 4},
                       data={"format": {"digits": {}}, "transforms": ["pixelnorm"], "batch_size": 32},
                       callbacks=[{"lr_monitor": {"logging_interval": "step"}}, {"heartbeat": {"file": "beats.log"}},
                                  {"early_stopping": {"patience": 5}}])
    trainer, datamodule, module, _ = build_trainer(resolve(config, registry), tmp_path / "runs" / "lc")
    with count_training_syncs() as syncs:
        trainer.fit(module, datamodule=datamodule)
    # as without them (tests/test_host_syncs.py): every 4th step the logged loss and the
    # non-finite-loss check are read, nothing else
    assert syncs.steps == 12 and dict(syncs.counts) == {"item": 2 * 12 // 4}, syncs.counts


def test_standard_callbacks_come_from_the_plugin_by_name_and_follow_their_switches(tmp_path, registry):
    from core.run import standard_callbacks

    def names(config, plugins=registry):
        return [type(c).__name__ for c in standard_callbacks(resolve(config, plugins))]

    everything = dict(TRAINER, enable_progress_bar=True, enable_model_summary=True)
    assert names(config_of(tmp_path, trainer=everything)) == ["EpochSummary", "Curves", "IntervalProgressBar",
                                                             "ParameterSummary"]
    assert names(config_of(tmp_path)) == ["EpochSummary", "Curves"]  # both switches off in TRAINER
    assert names(config_of(tmp_path, callbacks=["curves"])) == ["EpochSummary"]  # listed: not added twice
    used = [(u.name, u.path, u.row()["plugin"]) for u in resolve(config_of(tmp_path, callbacks=["curves"]), registry).used
            if u.kind == "callback"]  # the rows of plugins.json and of the dry-run table
    assert used == [("curves", "callbacks.0", "callbacks"), ("epoch_summary", "(standard)", "callbacks")]
    assert names(config_of(tmp_path, callbacks=[]), Registry.load(disable=["callbacks"])) == []


def test_a_listed_standard_callback_is_refused_when_its_switch_is_off_and_takes_only_its_options(tmp_path, registry):
    with pytest.raises(ConfigError) as err:
        resolve(config_of(tmp_path, callbacks=["progress_bar"]), registry)  # TRAINER turns the bar off
    assert ("config error at callbacks.0: callback 'progress_bar' is listed, but trainer.enable_progress_bar is false"
            in str(err.value))
    with pytest.raises(ConfigError, match="callbacks.0.model_summary.max_dpth"):
        resolve(config_of(tmp_path, callbacks=[{"model_summary": {"max_dpth": 2}}]), registry)
    from core.run import standard_callbacks

    listed = resolve(config_of(tmp_path, trainer=dict(TRAINER, enable_model_summary=True),
                               callbacks=[{"model_summary": {"max_depth": 2}}]), registry)
    assert standard_callbacks(listed, ("model_summary",)) == []  # the trainer builds the listed one
    assert [c._max_depth for c in standard_callbacks(listed, ("model_summary",), listed_too=True)] == [2]
