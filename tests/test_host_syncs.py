"""No host synchronisation per training step: the counter itself, every built-in device
transform and storage finish, and whole training loops (one head, two heads, a recurrent
model with stim_on, responses from several sessions) with the progress bar on."""

from __future__ import annotations

import pytest
import torch

from core import DEVICE, Layout
from core.config import parse_config
from core.registry import Registry
from core.resolve import resolve
from core.run import build_trainer
from core.testing import HostSyncs, count_training_syncs
from tests.conftest import run_main


def test_the_counter_sees_each_kind_of_host_sync():
    x = torch.arange(6.0)
    with HostSyncs() as syncs:
        x.sum().item()
        bool(x[0])
        x.tolist()
        x.nonzero()
        x.unique()
        x[x > 2]
        x.masked_select(x > 2)
        x.repeat_interleave(torch.tensor([1, 1, 1, 1, 1, 1]))
    assert syncs.counts == {"item": 2, "tolist": 1, "nonzero": 1, "unique": 1, "boolean mask indexing": 1,
                            "masked_select": 1, "repeat_interleave": 1}
    with HostSyncs() as syncs:  # shapes, gathers, where and arithmetic do not wait
        torch.where(x > 2, x, 0).index_select(0, torch.tensor([1, 2])).sum() / len(x)
        x.repeat_interleave(torch.tensor([1, 1, 1, 1, 1, 1]), output_size=6)
    assert syncs.total == 0, syncs.counts


def _batch(transform_name: str) -> dict[str, torch.Tensor]:
    return {"stim": torch.rand(16, 3, 12, 12), "digit": torch.randint(0, 10, (16,)), "contrast": torch.rand(16)}


def test_every_built_in_device_transform_and_storage_finish_waits_for_nothing():
    registry = Registry.load()
    device_transforms = []
    for name, found in registry.components["transform"].items():
        transform = found.resolve()()
        if DEVICE not in transform.stages:
            continue
        device_transforms.append(name)
        batch = _batch(name)
        if getattr(transform, "learns", False):  # learned from the training split before the first step
            transform.output_layout(Layout(tuple(batch["stim"].shape[1:]), "CHW"))
            transform.fit([batch["stim"]], None)
        with HostSyncs() as syncs:
            transform(batch)
        assert syncs.total == 0, (name, syncs.counts)
    assert {"pixelnorm", "normalize", "random_flip", "random_translate", "repeat", "stimulus_duration", "stimulus_interval",
            "stimulus_contrast"} <= set(device_transforms)
    for name, found in registry.components["storage"].items():
        with HostSyncs() as syncs:
            found.resolve()().finish({"stim": torch.zeros(4, 3, 8, 8, dtype=torch.uint8)}, torch.bfloat16)
        assert syncs.total == 0, (name, syncs.counts)


def _fit_counting(tmp_path, run: dict) -> tuple[int, float, dict]:
    base = {"name": "syncs", "output_dir": str(tmp_path / "runs"),
            "trainer": {"max_epochs": 2, "accelerator": "cpu", "limit_train_batches": 6, "limit_val_batches": 1,
                        "num_sanity_val_steps": 0, "enable_model_summary": False}}
    config = parse_config({**base, **run})
    resolved = resolve(config, Registry.load())
    trainer, datamodule, module, _ = build_trainer(resolved, tmp_path / "runs" / "syncs")
    with count_training_syncs() as syncs:
        trainer.fit(module, datamodule=datamodule)
    return syncs.steps, syncs.per_step, dict(syncs.counts)


DIGITS = {"digits": {"image_size": 12, "channels": 3, "heads": ["digit", "parity"]}}
SMALL_CNN = {"simple_cnn": {"conv1": 4, "conv2": 4, "fc_hidden": 8}}


@pytest.mark.parametrize("run", [
    pytest.param({"data": {"format": {"digits": {"image_size": 12, "channels": 3}}, "batch_size": 32,
                           "transforms": ["pixelnorm", "random_flip", {"random_translate": {"pixels": 2}}]},
                  "model": SMALL_CNN}, id="one-head-flip-translate"),
    pytest.param({"data": {"format": DIGITS, "batch_size": 32, "transforms": ["pixelnorm", "random_flip"]},
                  "model": SMALL_CNN, "loss_weights": {"digit": 1.0, "parity": 0.5}}, id="two-heads"),
    pytest.param({"data": {"format": {"digits": {}}, "batch_size": 32,
                           "transforms": ["pixelnorm", {"stimulus_duration": {"n_timesteps": 6, "stimulus_duration": 3}}]},
                  "model": {"recurrent_cnn": {"conv1": 4, "conv2": 4, "hidden_size": 8}}}, id="recurrent-stim-on"),
])
def test_a_training_step_waits_for_nothing(tmp_path, run):
    steps, per_step, counts = _fit_counting(tmp_path, run)
    assert steps == 12
    assert per_step == 0, counts


def test_responses_from_several_sessions_wait_for_nothing(tmp_path):
    done = run_main("core-data", "make-sessions", "--option", "sessions=2", "--option", "trials=200",
                   "--option", "size=12", "--option", "neurons=8", str(tmp_path / "sessions"))
    assert done.returncode == 0, done.stderr
    run = {"data": {"transforms": ["pixelnorm"], "batch_size": 32, "sampler": {"contrast_weighted": {"ramp_steps": 4}}},
           "datasets": [{"name": f"s{i}", "format": {"hdf5": {"paths": str(tmp_path / f"sessions/session_0{i}.h5")}}}
                        for i in range(2)],
           "model": {"shared_core_readout": {"channels": 4, "layers": 1}}}
    steps, per_step, counts = _fit_counting(tmp_path, run)
    assert steps == 12 and per_step == 0, counts


def test_values_are_read_at_the_logging_interval_only(tmp_path):
    run = {"data": {"format": {"digits": {}}, "batch_size": 32, "transforms": ["pixelnorm"]}, "model": SMALL_CNN}
    run["trainer"] = {"max_epochs": 1, "accelerator": "cpu", "limit_train_batches": 12, "limit_val_batches": 1,
                      "num_sanity_val_steps": 0, "log_every_n_steps": 4, "enable_model_summary": False}
    steps, per_step, counts = _fit_counting(tmp_path, run)
    # every 4th step: the logger reads train/loss, the progress bar reads it once more, and the
    # non-finite check reads whether a step went bad (one value)
    assert steps == 12 and counts == {"item": 3 * 12 // 4}, counts
