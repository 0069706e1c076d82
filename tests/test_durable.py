"""Nothing lost: a run stopped by SIGTERM mid-epoch or at an epoch's end resumes to the
uninterrupted run's weights and metrics.csv, checkpoints are written atomically, one
process per run directory."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning
import pytest
import torch

import core.run
from core.cli.train import main as core_train
from core.durable import AtomicCheckpointIO, RunCheckpoint, RunLock
from core.files import write_atomic
from core.errors import ConfigError
from tests.conftest import BIN, run_cli


def _benchmark():
    # benchmarks/ is not a package: load the kill campaign by its path; its run is ours too
    spec = importlib.util.spec_from_file_location("kill_resume", Path(__file__).parents[1] / "benchmarks" / "kill_resume.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _benchmark()


class SignalAt(lightning.Callback):
    """Sends this process a signal after training step ``step`` (as a scheduler or Ctrl-C would)."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("full")
    config = bench.write_config(folder, epochs=3)
    assert core_train(["fit", "--config", str(config)]) == 0
    run_dir = folder / "runs" / "kill"
    return _weights(run_dir / "checkpoints" / "last.ckpt"), sorted((run_dir / "metrics.csv").read_text().splitlines())


class SignalInSanityCheck(lightning.Callback):
    """Sends this process a signal while Lightning's sanity check runs, before training."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def on_sanity_check_end(self, trainer, *args) -> None:
        os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize(("signaller", "signum", "stopped"), [
    (SignalAt(17, signal.SIGTERM), signal.SIGTERM, "epoch 1, step 17"),
    (SignalAt(12, signal.SIGINT), signal.SIGINT, "epoch 0, step 12"),
    (SignalInSanityCheck(signal.SIGTERM), signal.SIGTERM, "epoch 0, step 1"),  # after the first batch
], ids=["sigterm-mid-epoch", "sigint-at-epoch-end", "sigterm-in-the-sanity-check"])
def test_a_stopped_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, capsys, uninterrupted, signaller,
                                                           signum, stopped):
    config = bench.write_config(tmp_path, epochs=3)
    build = core.run.build_trainer
    monkeypatch.setattr(core.run, "build_trainer", lambda r, d, extra=(): build(r, d, [*extra, signaller]))
    assert core_train(["fit", "--config", str(config)]) == 128 + signum
    err = capsys.readouterr().err
    assert f"stopped by {signal.Signals(signum).name} at {stopped};" in err and "continue with: core-train" in err
    monkeypatch.setattr(core.run, "build_trainer", build)
    assert core_train(["fit", "--config", str(config), "--resume"]) == 0
    run_dir = tmp_path / "runs" / "kill"
    weights, rows = uninterrupted
    resumed = _weights(run_dir / "checkpoints" / "last.ckpt")
    assert all(torch.equal(weights[k], resumed[k]) for k in weights)  # bitwise: order, augmentations, optimizer
    assert sorted((run_dir / "metrics.csv").read_text().splitlines()) == rows  # no row lost or repeated


class SignalInTest(lightning.Callback):
    """Sends this process ``signum`` (SIGTERM) while the test runs, after training."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        self.signum = signum

    def on_test_batch_start(self, trainer, *args) -> None:
        os.kill(os.getpid(), self.signum)


class SignalAfterTraining(lightning.Callback):
    """Sends this process SIGTERM after the last batch, before the test (curves.png drawn)."""

    def on_train_end(self, trainer, *args) -> None:
        os.kill(os.getpid(), signal.SIGTERM)


def test_a_sigterm_after_training_is_a_stop_not_a_success(tmp_path, monkeypatch, capsys):
    """Lightning's own stop on SIGTERM outside training is a SystemExit with status 0: a
    scheduler would count a run preempted in its test as done, its results never written."""
    import core.evaluate

    config = bench.write_config(tmp_path, epochs=1)
    build, evaluator = core.run.build_trainer, core.evaluate.evaluator
    monkeypatch.setattr(core.run, "build_trainer", lambda r, d, extra=(): build(r, d, [*extra, SignalInTest()]))
    assert core_train(["--config", str(config)]) == 143
    err = capsys.readouterr().err
    assert "stopped by SIGTERM at epoch 1, step 12; saved" in err and "--resume" in err, err[-2000:]
    monkeypatch.setattr(core.run, "build_trainer", lambda r, d, extra=(): build(r, d, [*extra, SignalAfterTraining()]))
    assert core_train(["--config", str(config), "--overwrite"]) == 143  # the test reset the flag: exit 0 before
    assert "stopped by SIGTERM at epoch 1, step 12; saved" in capsys.readouterr().err
    monkeypatch.setattr(core.run, "build_trainer", build)
    assert core_train(["--config", str(config), "--resume"]) == 0  # training is done: it tests again
    assert "test/digit_acc = " in capsys.readouterr().out
    monkeypatch.setattr(core.evaluate, "evaluator", lambda r, callbacks=(): evaluator(r, [*callbacks, SignalInTest()]))
    assert core_train(["test", "--config", str(config)]) == 143
    assert "stopped by SIGTERM before the command finished" in capsys.readouterr().err
    # Ctrl-C in the test: Lightning's sys.exit(1) becomes the stop that says how to finish the run
    monkeypatch.setattr(core.run, "build_trainer", lambda r, d, extra=(): build(r, d, [*extra, SignalInTest(signal.SIGINT)]))
    try:
        assert core_train(["--config", str(config), "--overwrite"]) == 130
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores further Ctrl-Cs
    assert "stopped by SIGINT at epoch 1, step 12; saved" in capsys.readouterr().err


def test_a_resume_keeps_to_what_the_run_was_and_what_it_holds(tmp_path, capsys):
    config = bench.write_config(tmp_path, epochs=2)
    run_dir = tmp_path / "runs" / "kill"
    (run_dir / "predictions").mkdir(parents=True)  # an earlier run's output: --overwrite removes it
    (run_dir / "predictions" / "test.h5").write_text("old")
    assert core_train(["fit", "--config", str(config), "--overwrite"]) == 0 and not (run_dir / "predictions").exists()
    kept = (run_dir / "config.yaml").read_text(), (run_dir / "metrics.csv").read_text()
    capsys.readouterr()
    # fewer epochs than trained: one message before anything is rewritten (Lightning's traceback came after)
    assert core_train(["fit", "--config", str(config), "--set", "trainer.max_epochs=0", "--resume"]) == 2
    assert "config error at trainer.max_epochs: --resume continues a run whose checkpoint is at epoch 1, past " \
           "max_epochs 0" in capsys.readouterr().err
    assert ((run_dir / "config.yaml").read_text(), (run_dir / "metrics.csv").read_text()) == kept
    # more best checkpoints kept after a resume: best is the recorded one, not the stale best.ckpt
    more = ["--set", "trainer.max_epochs=4", "--set", "checkpoint.save_top_k=3"]
    assert core_train(["fit", "--config", str(config), *more, "--resume"]) == 0
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert core_train(["test", "--config", str(config), *more]) == 0
    assert "checkpoints/best-00" in capsys.readouterr().out
    # a checkpoint that does not fit the model asked for: one message
    assert core_train(["test", "--config", str(config), *more, "--set", "model.simple_cnn.conv1=6"]) == 2
    assert "does not fit this run's model" in capsys.readouterr().err
    # a moved run remembers its best checkpoints: Lightning forgot them (a 4th kept of 3; a worse best.ckpt)
    moved = tmp_path / "moved"
    core.run.HELD.pop(run_dir.resolve()).release()  # as if moved after its process ended
    shutil.move(tmp_path / "runs", moved)
    further = ["--set", "trainer.max_epochs=5", "--set", "checkpoint.save_top_k=3", "--set", f"output_dir={moved}"]
    assert core_train(["fit", "--config", str(config), *further, "--resume"]) == 0
    assert len(list((moved / "kill" / "checkpoints").glob("best*.ckpt"))) == 3


def test_a_moved_run_s_checkpoint_state_is_read_as_its_new_folder_s(tmp_path):
    callback = RunCheckpoint(dirpath=tmp_path / "new", monitor="val/acc", mode="max", save_top_k=2)
    old = "/elsewhere/run/checkpoints"
    callback.load_state_dict({"dirpath": old, "best_model_path": f"{old}/best-001.ckpt", "best_model_score": 0.9,
                              "best_k_models": {f"{old}/best-000.ckpt": 0.8, f"{old}/best-001.ckpt": 0.9},
                              "kth_best_model_path": f"{old}/best-000.ckpt", "kth_value": 0.8, "last_model_path": ""})
    new = str(tmp_path / "new")
    assert callback.best_model_path == f"{new}/best-001.ckpt" and callback.best_model_score == 0.9
    assert callback.best_k_models == {f"{new}/best-000.ckpt": 0.8, f"{new}/best-001.ckpt": 0.9}
    assert callback.kth_best_model_path == f"{new}/best-000.ckpt"
    assert callback.state_key.startswith("ModelCheckpoint{")  # checkpoints written before read the same


def test_early_stopping_s_end_survives_a_resume_and_last_ckpt_every_epoch(tmp_path):
    config = bench.write_config(tmp_path, epochs=4)
    stop = ["--set", "callbacks=[{early_stopping: {patience: 1, min_delta: 10.0}}]"]
    last = tmp_path / "runs" / "kill" / "checkpoints" / "last.ckpt"
    assert core_train(["fit", "--config", str(config), *stop]) == 0
    ended = torch.load(last, map_location="cpu", weights_only=True)
    assert ended["epoch"] == 1  # early stopping ended it after epoch 1 of 4
    assert core_train(["fit", "--config", str(config), *stop, "--resume"]) == 0
    resumed = torch.load(last, map_location="cpu", weights_only=True)
    assert resumed["epoch"] == 1 and all(torch.equal(ended["state_dict"][k], resumed["state_dict"][k])
                                         for k in ended["state_dict"])  # it stays ended: no epoch trained
    sparse = ["--set", "trainer.max_epochs=3", "--set", "trainer.check_val_every_n_epoch=2", "--overwrite"]
    assert core_train(["fit", "--config", str(config), *sparse]) == 0
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 2  # written after epoch 2 too


def test_atomic_writes_leave_the_old_file_until_the_new_one_is_complete(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    write_atomic(target, b"old")

    def crash(*args, **kwargs):
        raise OSError("killed while writing")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, target)
    assert target.read_bytes() == b"old"  # the previous good checkpoint survives
    monkeypatch.undo()
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(2)}}, target)
    assert torch.equal(torch.load(target, weights_only=True)["state_dict"]["w"], torch.ones(2))


def test_a_second_process_on_a_running_run_is_refused_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from core.durable import RunLock
        lock = RunLock(Path({str(tmp_path)!r})).acquire()
        print("held", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=f"is in use by process {holder.pid} on "):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    RunLock(tmp_path).acquire().release()  # the lock goes with its process


def test_resume_refuses_what_it_cannot_honour_and_stretches_the_schedule_to_a_longer_run(tmp_path, capsys):
    config = bench.write_config(tmp_path, epochs=3)
    assert core_train(["fit", "--config", str(config), "--set", "trainer.max_epochs=1"]) == 0
    run_dir = tmp_path / "runs" / "kill"
    before = (run_dir / "config.yaml").read_text()
    assert core_train(["fit", "--config", str(config), "--resume", "--set", "optim.lr=0.1", "--set", "seed=5"]) == 2
    err = capsys.readouterr().err
    assert "--resume continues the run as it was trained; these keys changed:" in err
    assert "optim.lr: 0.003 -> 0.1" in err and "seed: 2 -> 5" in err
    assert (run_dir / "config.yaml").read_text() == before  # a refused resume changes nothing
    assert core_train(["fit", "--config", str(config), "--resume", "--set", "trainer.max_epochs=3"]) == 0
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    lrs = [float(r.split(",")[header.index("lr-AdamW")]) for r in rows[1:] if r.split(",")[header.index("lr-AdamW")]]
    assert lrs == pytest.approx([0.003, 0.00225, 0.00075])  # cosine over 3 epochs, not back up from 0
    assert "# resumed " in (run_dir / "config.yaml").read_text()
    assert "trainer.max_epochs 1 -> 3" in (run_dir / "config.yaml").read_text()


def test_a_damaged_last_checkpoint_is_named_with_the_intact_best_one(tmp_path, capsys):
    config = bench.write_config(tmp_path, epochs=3)
    assert core_train(["fit", "--config", str(config), "--set", "trainer.max_epochs=1"]) == 0
    last = tmp_path / "runs" / "kill" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:100])
    assert core_train(["fit", "--config", str(config), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"config error at --resume: {last} cannot be resumed from" in err and "best.ckpt is intact" in err


def test_a_non_finite_loss_stops_training_naming_epoch_step_and_dataset(tmp_path, monkeypatch, capsys):
    config = bench.write_config(tmp_path, epochs=3)
    from core.module import MultiHeadClassifier

    forward = MultiHeadClassifier.forward

    def poisoned(self, batch):  # as a sample of NaN pixels would
        out = forward(self, batch)
        return {k: v * float("nan") for k, v in out.items()} if self.training and self.global_step == 5 else out

    monkeypatch.setattr(MultiHeadClassifier, "forward", poisoned)
    assert core_train(["fit", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "training stopped: the loss is not finite (nan or inf) at epoch 0, step 5 on dataset 'digits'" in err


def test_a_run_killed_right_after_a_checkpoint_resumes_to_the_uninterrupted_result(tmp_path):
    """kill -9 just after the third checkpoint write, in a real core-train process, then
    ``core-train --resume``. Checkpoints every 4 steps of 12-step epochs: the step-8 one must
    hold the row logged at step 7, and none may be taken after an epoch's last batch (the third
    write is then the epoch's best.ckpt). Every run is a fresh process, as a user's would be:
    this process's torch (threads, libraries other tests loaded) may round differently."""
    reference = bench.start(bench.write_config(tmp_path / "full", epochs=2))  # both at once: the suite's time
    config = bench.write_config(tmp_path / "killed", epochs=2)
    assert bench.fit(config, die_after=3) == -signal.SIGKILL
    assert reference.wait() == 0
    assert (tmp_path / "killed" / "saves.log").read_text().splitlines()[-1] == "best.ckpt epoch 0 step 12"
    assert bench.resume(config) == 0
    assert bench.outcome(tmp_path / "killed" / "runs" / "kill", tmp_path / "full" / "runs" / "kill") == (True, True)

def test_pretrained_that_is_not_a_checkpoint_is_one_message(tmp_path):
    from plugins.shared_core_readout.model import SharedCoreReadout
    from core import DatasetMeta

    meta = DatasetMeta("s", (1, 8, 8), {}, {"train": 4}, fields={"responses": ((3,), "float32")})
    broken = tmp_path / "core.ckpt"
    broken.write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match=f"pretrained: {broken} is not a readable checkpoint"):
        SharedCoreReadout(meta, {"s": meta}, pretrained=str(broken))


def test_the_curriculum_resumes_bitwise_too(tmp_path, monkeypatch):
    from tests.conftest import run_main

    assert run_main("core-data", "make-sessions", "--option", "sessions=2", "--option", "trials=300", "--option",
                   "size=12", "--option", "neurons=6", str(tmp_path / "s")).returncode == 0
    config = tmp_path / "run.yaml"
    config.write_text(textwrap.dedent(f"""
        name: cur
        output_dir: {tmp_path / 'runs'}
        data: {{transforms: [pixelnorm, random_flip], batch_size: 32, sampler: {{contrast_weighted: {{ramp_steps: 20}}}},
                interleave: proportional}}
        datasets:
          - {{name: a, format: {{hdf5: {{paths: {tmp_path}/s/session_00.h5}}}}}}
          - {{name: b, format: {{hdf5: {{paths: {tmp_path}/s/session_01.h5}}}}}}
        model: {{shared_core_readout: {{channels: 4, layers: 1}}}}
        trainer: {{max_epochs: 2, accelerator: cpu, enable_progress_bar: false, enable_model_summary: false}}
    """))
    assert core_train(["fit", "--config", str(config)]) == 0
    last = tmp_path / "runs" / "cur" / "checkpoints" / "last.ckpt"
    full = _weights(last)
    build = core.run.build_trainer
    monkeypatch.setattr(core.run, "build_trainer", lambda r, d, extra=(): build(r, d, [*extra, SignalAt(17, signal.SIGTERM)]))
    assert core_train(["fit", "--config", str(config), "--overwrite"]) == 143
    monkeypatch.setattr(core.run, "build_trainer", build)
    assert core_train(["fit", "--config", str(config), "--resume"]) == 0
    resumed = _weights(last)
    assert all(torch.equal(full[k], resumed[k]) for k in full)


SIGTERM_AT = """
    import json
    import os
    import signal

    import lightning
    from core import hookimpl

    class SigtermAt(lightning.Callback):
        def __init__(self, step: int) -> None:
            self.step = step

        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step == self.step:  # every rank, as a scheduler signals every task
                os.kill(os.getpid(), signal.SIGTERM)

    class CountSyncs(lightning.Callback):  # this rank's host waits over its steps, to RECORD_DIR/rank<N>.json

        def on_train_start(self, trainer, pl_module) -> None:
            from core.testing import count_training_syncs

            self.counting = count_training_syncs()
            self.syncs = self.counting.__enter__()

        def on_train_end(self, trainer, pl_module) -> None:
            self.counting.__exit__(None, None, None)
            with open(os.path.join(os.environ["RECORD_DIR"], f"rank{trainer.global_rank}.json"), "w") as out:
                json.dump({"steps": self.syncs.steps, "counts": dict(self.syncs.counts)}, out)

    @hookimpl
    def core_callbacks():
        return {"sigterm_at": SigtermAt, "count_syncs": CountSyncs}
"""


def test_a_ddp_run_stopped_by_sigterm_resumes_to_the_uninterrupted_result(tmp_path, make_plugin_dist):
    """Two DDP processes on the CPU, stopped mid-epoch by SIGTERM (a preempted job), then
    ``--resume``: the same final weights and metrics rows as a run never stopped. The run
    never stopped also counts each rank's host waits: only at the logging interval."""
    make_plugin_dist("sigterm", SIGTERM_AT)
    record = tmp_path / "record"
    record.mkdir()
    runs = {}
    for name in ("full", "stopped"):
        runs[name] = tmp_path / f"{name}.yaml"
        runs[name].write_text(textwrap.dedent(f"""
            name: {name}
            output_dir: {tmp_path / 'runs'}
            seed: 3
            data: {{format: {{digits: {{image_size: 8}}}}, transforms: [pixelnorm, random_flip], batch_size: 64}}
            model: {{simple_cnn: {{conv1: 4, conv2: 4, fc_hidden: 8, dropout: 0.2}}}}
            logging: [csv]
            trainer: {{max_epochs: 2, accelerator: cpu, strategy: ddp, devices: 2, log_every_n_steps: 3,
                      enable_progress_bar: false, enable_model_summary: false}}
        """))
    with open(tmp_path / "full.log", "w") as log:  # beside the stopped one: the suite's time
        full = subprocess.Popen([str(BIN / "core-train"), "fit", "--config", str(runs["full"]), "--set",
                                 "callbacks=[lr_monitor, count_syncs]"], stdout=log, stderr=log,
                                env={**os.environ, "RECORD_DIR": str(record)})
    stopped = run_cli("core-train", "fit", "--config", runs["stopped"], "--set",
                      "callbacks=[lr_monitor, {sigterm_at: {step: 4}}]")
    assert full.wait() == 0, (tmp_path / "full.log").read_text()[-3000:]
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    # the ranks agree at the next logging interval (log_every_n_steps: 3); one message, from rank 0
    assert stopped.stderr.count("stopped by SIGTERM at epoch 0, step 6;") == 1, stopped.stderr[-3000:]
    resumed = run_cli("core-train", "fit", "--config", runs["stopped"], "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert bench.outcome(tmp_path / "runs" / "stopped", tmp_path / "runs" / "full") == (True, True)
    # 18 steps a rank: at each of the 6 logging steps the loss and the non-finite check are read,
    # and at 4 of them (not an epoch's last batch) the ranks agree whether to stop. Lightning's
    # own SIGTERM broadcast would read a value at every step (18 more)
    for rank in (0, 1):
        assert json.loads((record / f"rank{rank}.json").read_text()) == {"steps": 18, "counts": {"item": 16}}


def test_the_accelerator_random_state_is_the_devices_own(monkeypatch):
    """Under DDP rank 0's checkpoint is every rank's resume: the CUDA generator state saved is
    that of the device in use (each rank restores it into its own device), not every device's
    as rank 0's process sees them (the others untouched there). Checked with torch.cuda stood in
    for, on the CPU; a checkpoint of an earlier core-train (every device's) still loads."""
    from core.durable import RandomState

    current, calls = torch.tensor([7], dtype=torch.uint8), []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": current)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("every device's state saved"))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": calls.append(("own", state)))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: calls.append(("all", states)))
    state = RandomState().state_dict()
    assert state["cuda"] is current
    RandomState().load_state_dict(state)
    RandomState().load_state_dict({**state, "cuda": [current, current]})
    assert calls == [("own", current), ("all", [current, current])]
