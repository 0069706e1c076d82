"""core-train fit|validate|test|predict, the notebook API, checkpoint choices, and Lightning's
fast_dev_run / limit / overfit options end to end."""

from __future__ import annotations

import csv
import textwrap

import h5py
import pytest
import torch
import yaml

import core
import core.run
from core.cli.train import main as core_train
from core.config import parse_config
from core.errors import ConfigError, Stopped
from core.module import MultiHeadClassifier

RUN = """
    name: two_heads
    output_dir: {out}
    seed: 1
    data:
      format: {{digits: {{heads: [digit, parity]}}}}
      transforms: [pixelnorm]
      batch_size: 128
    loss_weights: {{digit: 1.0, parity: 0.5}}
    model: {{simple_cnn: {{conv1: 8, conv2: 8, fc_hidden: 16}}}}
    trainer: {{max_epochs: 3, accelerator: cpu, enable_progress_bar: false, enable_model_summary: false}}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small two-head run, fitted (not tested)."""
    folder = tmp_path_factory.mktemp("evaluate")
    config = folder / "run.yaml"
    config.write_text(textwrap.dedent(RUN.format(out=folder / "runs")))
    assert core_train(["fit", "--config", str(config)]) == 0
    return config, folder / "runs" / "two_heads"


def test_fit_alone_trains_and_tests_nothing_and_best_follows_the_weighted_mean_accuracy(trained):
    config, run_dir = trained
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    rows = (run_dir / "metrics.csv").read_text()
    assert "test/" not in rows.splitlines()[0] and "val/acc," in rows.splitlines()[0] + ","
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]
    assert any("'monitor': 'val/acc'" in key for key in state)


def test_test_and_validate_a_checkpoint_without_touching_the_runs_metrics(trained, capsys):
    config, run_dir = trained
    before = (run_dir / "metrics.csv").read_text()
    assert core_train(["test", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert "WARNING" not in err  # the run's own config
    assert "test/digit_acc" in out and "test/parity_acc" in out and "test/acc" in out and "test/digit_top5" in out
    assert "test/parity_top5" not in out and "test/digit_loss" in out
    assert core_train(["validate", "--config", str(config), "--checkpoint", "last", "--set", "data.batch_size=64"]) == 0
    out, err = capsys.readouterr()
    assert "val/digit_acc" in out and "WARNING" not in err  # the batch size changes no result
    # another model option or other data than trained with (a YAML edited since): said, not silent
    assert core_train(["validate", "--config", str(config), "--set", "model.simple_cnn.dropout=0.3"]) == 0
    assert "was trained with another config (model.simple_cnn.dropout: None -> 0.3)" in capsys.readouterr().err
    assert (run_dir / "metrics.csv").read_text() == before


def test_predict_writes_every_sample_with_recorded_activations(trained):
    config, run_dir = trained
    record = "features.0,features.0.1,heads.parity"  # features.0.1: a BatchNorm that an in-place ReLU follows
    assert core_train(["predict", "--config", str(config), "--split", "val", "--record", record]) == 0
    with h5py.File(run_dir / "predictions" / "val.h5") as f:
        group = f["digits"]
        n = len(group["index"])
        assert n == 180 and list(group["index"][:3]) == [0, 1, 2] and f.attrs["split"] == "val"
        assert group["digit/logits"].shape == (n, 10) and group["parity/predicted"].shape == (n,)
        assert group["record/features.0"].shape == (n, 8, 4, 4) and group["record/heads.parity"].shape == (n, 2)
        assert (group["record/features.0.1"][:] < 0).any()  # the BatchNorm's own output, not the ReLU's after it
        assert (group["digit/predicted"][:] == group["digit/logits"][:].argmax(1)).all()
        labels, predicted = group["digit/label"][:], group["digit/predicted"][:]
        per_class = [(predicted[labels == k] == k).mean() for k in range(10)]
        assert group["digit/per_class_accuracy"][:] == pytest.approx(per_class, abs=1e-6)
    assert not list((run_dir / "predictions").glob(".*partial"))


def test_a_wrong_record_name_or_checkpoint_is_one_clear_message(trained, tmp_path, capsys):
    config, run_dir = trained
    assert core_train(["predict", "--config", str(config), "--record", "features.9"]) == 2
    assert "config error at --record: the model has no module 'features.9'" in capsys.readouterr().err
    assert core_train(["predict", "--config", str(config), "--record", "heads"]) == 2  # wrote no record before
    assert "config error at --record: the model's forward pass does not call 'heads'" in capsys.readouterr().err
    assert not list((run_dir / "predictions").glob(".*partial"))
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"")
    assert core_train(["test", "--config", str(config), "--checkpoint", str(broken)]) == 2
    assert f"{broken} is not a readable core-train checkpoint" in capsys.readouterr().err
    assert core_train(["fit", "--config", str(config), "--checkpoint", "best"]) == 2
    assert core_train(["test", "--config", str(config), "--record", "x"]) == 2


def test_the_notebook_api_and_load_from_checkpoint_give_the_same_outputs(trained):
    config, run_dir = trained
    run = core.load_run(run_dir)
    assert run.config.name == "two_heads" and run.checkpoint.name == "best.ckpt" and not run.module.training
    run.datamodule.setup("test")
    batch = run.datamodule.on_after_batch_transfer(next(iter(run.datamodule.test_dataloader())), 0)
    with torch.no_grad():
        outputs = run.module(batch)
        again = MultiHeadClassifier.load_from_checkpoint(run_dir / "checkpoints" / "best.ckpt").eval()(batch)
    assert set(outputs) == {"digit", "parity"}
    torch.testing.assert_close(outputs["digit"], again["digit"])


def test_checkpoint_options_keep_several_and_best_finds_the_best(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(textwrap.dedent(RUN.format(out=tmp_path / "runs"))
                      + "checkpoint: {monitor: val/loss, mode: min, save_top_k: 2}\n")
    assert core_train(["fit", "--config", str(config)]) == 0
    kept = sorted(p.name for p in (tmp_path / "runs/two_heads/checkpoints").glob("best-*.ckpt"))
    assert len(kept) == 2
    from core.evaluate import checkpoint_path

    assert checkpoint_path(tmp_path / "runs/two_heads", "best").name in kept


@pytest.mark.parametrize("option", ["trainer.fast_dev_run=true", "trainer.limit_train_batches=2",
                                    "trainer.overfit_batches=2"])
def test_lightnings_debugging_options_run_end_to_end(tmp_path, option, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(textwrap.dedent(RUN.format(out=tmp_path / "runs")))
    assert core_train(["--config", str(config), "--set", option, "--set", "trainer.max_epochs=2"]) == 0
    assert "test/digit_acc" in capsys.readouterr().out


def test_a_sweep_runs_each_combination_compares_them_and_resumes(tmp_path, capsys, monkeypatch):
    config = tmp_path / "run.yaml"
    config.write_text(textwrap.dedent(RUN.format(out=tmp_path / "runs")))
    args = ["sweep", "--config", str(config), "--set", "trainer.max_epochs=1", "--grid", "optim.lr=0.001,0.01"]
    assert core_train(args) == 0
    folder = tmp_path / "runs" / "two_heads-sweep"
    rows = list(csv.DictReader(open(folder / "sweep.csv")))
    assert [(r["run"], r["optim.lr"], r["monitor"]) for r in rows] == [("two_heads-000", "0.001", "val/acc"),
                                                                       ("two_heads-001", "0.01", "val/acc")]
    assert all(float(r["test/digit_acc"]) >= 0 and r["best_epoch"] == "0" for r in rows)
    assert (folder / "sweep.png").stat().st_size > 0
    first = (folder / "two_heads-000" / "result.json").stat().st_mtime_ns
    (folder / "two_heads-001" / "result.json").unlink()  # as if killed after its last checkpoint
    (folder / "sweep.csv").unlink()
    assert core_train(args) == 0
    assert (folder / "two_heads-000" / "result.json").stat().st_mtime_ns == first  # finished: not run again
    assert len(list(csv.DictReader(open(folder / "sweep.csv")))) == 2
    capsys.readouterr()
    assert core_train(["sweep", "--config", str(config), "--grid", "optim.lr"]) == 2
    assert "config error at --grid: 'optim.lr' is not of the form key.path=value,value" in capsys.readouterr().err
    assert core_train(["sweep", "--config", str(config), "--grid", "optim.lr=fast"]) == 2
    assert "optim.lr: 'fast' is not valid" in capsys.readouterr().err

    def preempted(resolved, run_dir, resume, test=True):
        raise Stopped(15, run_dir / "checkpoints" / "last.ckpt", 0, 3)

    assert core_train(args[:-1] + ["optim.lr=0.001,0.003"]) == 2  # run 001 was made with 0.01
    err = capsys.readouterr().err
    assert f"config error at --grid: {folder / 'two_heads-001'} holds run two_heads-001 of this sweep made with " \
           "another config (optim.lr 0.01 -> 0.003)" in err and f"remove {folder} or give the sweep another" in err
    monkeypatch.setattr(core.run, "fit_and_test", preempted)  # a run of the sweep stopped by SIGTERM
    assert core_train(args[:-1] + ["optim.lr=0.001,0.01,0.003"]) == 143
    assert "continue with: the same core-train sweep command (finished runs are kept" in capsys.readouterr().err


def test_a_sweep_checks_every_combination_first_and_its_dry_run_trains_nothing(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(textwrap.dedent(RUN.format(out=tmp_path / "runs")))
    base = ["sweep", "--config", str(config), "--grid", "data.batch_size=32,64"]
    assert core_train([*base, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "# sweep run 000: data.batch_size=32" in out and "# sweep run 001: data.batch_size=64" in out
    assert not (tmp_path / "runs").exists()
    assert core_train([*base, "--print-config"]) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [(d["name"], d["data"]["batch_size"]) for d in documents] == [("two_heads-000", 32), ("two_heads-001", 64)]
    # the second combination is refused before the first one trains
    assert core_train(["sweep", "--config", str(config), "--grid", "data.batch_size=32,0"]) == 2
    assert "data.batch_size" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_grid_values_may_be_lists_and_mappings_and_the_sweep_s_own_keys_are_refused():
    from plugins.sweep.grid import parse_grid, run_overrides

    axes = parse_grid(["data.transforms=[pixelnorm, random_flip],[pixelnorm]", "model={simple_cnn: {conv1: 8}},resnet",
                       "optim.lr=1e-3,0.01", "seed=2024-01-01"])
    assert axes["data.transforms"] == [["pixelnorm", "random_flip"], ["pixelnorm"]]
    assert axes["model"] == [{"simple_cnn": {"conv1": 8}}, "resnet"] and axes["optim.lr"][1] == 0.01
    assert run_overrides(parse_config({"name": "g", "data": {"format": "digits"}, "model": "simple_cnn"}), 0,
                         {"seed": axes["seed"][0]})[0] == 'seed="2024-01-01"'  # a YAML date: no traceback
    for key in ("name", "output_dir"):
        with pytest.raises(ConfigError, match=f"config error at --grid: '{key}' is set by the sweep"):
            parse_grid([f"{key}=a,b"])


def test_a_run_without_validation_is_evaluated_on_its_final_weights(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(textwrap.dedent(RUN.format(out=tmp_path / "runs")).replace("max_epochs: 3", "max_epochs: 1, "
                                                                                 "limit_val_batches: 0"))
    assert core_train(["--config", str(config)]) == 0
    trained = capsys.readouterr().out
    assert "best epoch: none" in trained  # no validation: nothing chosen, the final weights tested
    assert core_train(["test", "--config", str(config)]) == 0  # "no checkpoint at .../best.ckpt" before
    out = capsys.readouterr().out
    assert "checkpoints/last.ckpt" in out
    line = next(l for l in out.splitlines() if l.startswith("test/digit_acc"))
    assert line in trained
