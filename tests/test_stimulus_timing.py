"""Timing schedules built on the device, the recurrent model's losses."""

import csv

import numpy as np
import pytest
import torch

from core import ConfigError, DatasetMeta, Layout
from core.cli.train import main as core_train
from core.config import OptimSection, parse_config
from core.module import MultiHeadClassifier
from core.registry import Registry
from core.resolve import resolve
from plugins.recurrent_cnn.model import RecurrentCNN
from plugins.stimulus_timing.schedules import Repeat, StimulusContrast, StimulusDuration, StimulusInterval
from tests.conftest import run_cli, run_main


def host_reference(stim: np.ndarray, on: list[bool], contrast: float, void: float) -> np.ndarray:
    """What the replaced loaders did: fill a (B, T, C, H, W) buffer on the host."""
    out = np.full((len(stim), len(on), *stim.shape[1:]), void, dtype=np.float32)
    for t, shown in enumerate(on):
        if shown:
            out[:, t] = void + contrast * (stim - void)
    return out


SCHEDULES = [
    (Repeat(n_timesteps=4), [1, 1, 1, 1]),
    (StimulusDuration(n_timesteps=7, stimulus_duration=3, intro_duration=2), [0, 0, 1, 1, 1, 0, 0]),
    (StimulusInterval(n_timesteps=10, stimulus_duration=2, intro_duration=1, interval_duration=3), [0, 1, 1, 0, 0, 0, 1, 1, 0, 0]),
    (StimulusContrast(n_timesteps=6, stimulus_duration=2, intro_duration=1, stimulus_contrast=0.3, void_value=0.5),
     [0, 1, 1, 0, 0, 0]),
]


@pytest.mark.parametrize("schedule, on", SCHEDULES)
def test_schedules_match_the_host_reference(schedule, on):
    stim = torch.randn(5, 3, 4, 4)
    labels = torch.tensor([3, 1, 4, 1, 5])
    out = schedule({"stim": stim, "digit": labels, "weight": torch.ones(5)})
    expected = host_reference(stim.numpy(), [bool(x) for x in on], schedule.contrast, schedule.void_value)
    np.testing.assert_allclose(out["stim"].numpy(), expected, rtol=1e-6)
    assert out["stim"].shape == (5, len(on), 3, 4, 4)
    assert out["stim_on"].tolist() == [[bool(x) for x in on]] * 5
    assert out["digit"].shape == (5, len(on))
    assert out["digit"].tolist() == [[int(v) if x else -1 for x in on] for v in labels]
    assert out["weight"].shape == (5,)  # float fields are not labels
    assert schedule.output_layout(Layout((3, 4, 4), "CHW")) == Layout((len(on), 3, 4, 4), "TCHW")


def test_void_label_option_and_no_shared_buffers():
    schedule = StimulusDuration(n_timesteps=5, stimulus_duration=2, intro_duration=1, void_label=-100)
    first = schedule({"stim": torch.ones(2, 1, 2, 2), "digit": torch.tensor([7, 8])})
    held = first["stim"].clone()
    second = schedule({"stim": torch.full((2, 1, 2, 2), 9.0), "digit": torch.tensor([1, 2])})
    assert first["digit"][0].tolist() == [-100, 7, 7, -100, -100]
    assert torch.equal(first["stim"], held)  # a later batch did not overwrite the earlier one
    assert first["stim"].data_ptr() != second["stim"].data_ptr()
    second["stim_on"][0, 0] = True
    assert not first["stim_on"][0, 0]


@pytest.mark.parametrize("factory, message", [
    (lambda: StimulusDuration(n_timesteps=10, stimulus_duration=0), "stimulus_duration must be at least 1, not 0"),
    (lambda: StimulusDuration(n_timesteps=10, intro_duration=-1), "intro_duration must be at least 0, not -1"),
    (lambda: Repeat(n_timesteps=0), "n_timesteps must be at least 1, not 0"),
    (lambda: StimulusInterval(n_timesteps=10, interval_duration=0), "interval_duration must be at least 1, not 0"),
    (lambda: StimulusContrast(stimulus_contrast=1.5), "stimulus_contrast must be in [0, 1], not 1.5"),
    (lambda: StimulusDuration(n_timesteps=10, stimulus_duration=9, intro_duration=2),
     "the schedule does not fit: intro_duration 2 + stimulus_duration 9 = 11 steps > n_timesteps 10"),
    (lambda: StimulusInterval(n_timesteps=12, stimulus_duration=4, intro_duration=1, interval_duration=4),
     "intro_duration 1 + stimulus_duration 4 + interval_duration 4 + second_stimulus_duration 4 = 13 steps > n_timesteps 12"),
])
def test_bad_schedules_are_value_errors_naming_the_numbers(factory, message):
    with pytest.raises(ValueError, match=message.replace("[", "\\[").replace("+", "\\+")):
        factory()


def resolved(*transforms, model="recurrent_cnn", **extra):
    config = parse_config({"name": "r", "data": {"format": "digits", "transforms": list(transforms)}, "model": model, **extra})
    return resolve(config, Registry.load())


def test_a_time_axis_before_a_transform_that_expects_none_is_a_config_error():
    with pytest.raises(ConfigError, match="data.transforms.2: transform 'stimulus_duration' .* builds the time axis, but the stim already has one"):
        resolved("pixelnorm", "repeat", "stimulus_duration")
    with pytest.raises(ConfigError, match="config error at model.simple_cnn: model 'simple_cnn': simple_cnn takes images \\(C, H, W\\)"):
        resolved("pixelnorm", "repeat", model="simple_cnn")
    with pytest.raises(ConfigError, match="recurrent_cnn takes presentations over time"):
        resolved("pixelnorm")
    with pytest.raises(ConfigError, match="config error at data.transforms.1.stimulus_duration: transform 'stimulus_duration': the schedule does not fit"):
        resolved("pixelnorm", {"stimulus_duration": {"n_timesteps": 5, "stimulus_duration": 5, "intro_duration": 1}})


def test_recurrent_cnn_reads_out_every_step_and_loss_on_selects_steps():
    meta = DatasetMeta("d", (6, 1, 8, 8), {"digit": 10}, {}, stim_axes="TCHW")
    batch = StimulusDuration(n_timesteps=6, stimulus_duration=2, intro_duration=1)(
        {"stim": torch.randn(4, 1, 8, 8), "digit": torch.tensor([1, 2, 3, 4])})
    for loss_on, steps in (("stimulus", 2), ("all", 6), ("last", 1)):
        model = RecurrentCNN(meta, conv1=4, conv2=4, hidden_size=8, recurrence="rnn", loss_on=loss_on)
        logits = model(batch)["digit"]
        assert logits.shape == (4, 6, 10)
        module = MultiHeadClassifier(model, {"digit": 10}, {"digit": 1.0}, OptimSection())
        module.log = lambda *a, **k: None
        target, counted = module._over_time(logits, batch["digit"], batch["stim_on"], "val/digit", per_step=False)
        assert counted.shape == (4, 6) and int(counted.sum()) == 4 * steps
        assert sorted(set(target[counted].tolist())) == [1, 2, 3, 4]  # the sample's label, also on void steps
        # weighting the counted steps by 1 and the rest by 0 is the loss over the counted steps alone
        loss, acc = module._head(logits, batch["digit"], batch["stim_on"], "train/digit", evaluating=False)
        expected = torch.nn.functional.cross_entropy(logits[counted], target[counted])
        torch.testing.assert_close(loss, expected)
        torch.testing.assert_close(acc, (logits[counted].argmax(-1) == target[counted]).float().mean())


def test_duration_and_interval_configs_train(tmp_path):
    for name in ("stimulus_duration", "stimulus_interval"):
        result = run_main("core-train", "--config", f"configs/{name}.yaml", "--set", f"output_dir={tmp_path}",
                         "--set", "trainer.max_epochs=1", "--set", "trainer.limit_train_batches=3", "--set",
                         "trainer.limit_val_batches=2", "--set", "trainer.limit_test_batches=2", "--set",
                         "trainer.enable_progress_bar=false")
        assert result.returncode == 0, result.stderr
        header = (tmp_path / name / "metrics.csv").read_text().splitlines()[0]
        assert "val/digit_acc_step0" in header and "test/digit_acc" in header
