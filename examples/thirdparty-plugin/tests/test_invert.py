"""The plugin's own tests, written with core-train's kit only: ``core.testing`` and the
fixtures of its pytest plugin (core_registry, tiny_dataset, run_config)."""

import pytest
import torch

from core import ConfigError
from core.testing import build, check_component


def test_invert_flips_and_scales_a_batch_of_the_tiny_dataset(core_registry, tiny_dataset):
    stim = torch.from_numpy(tiny_dataset.open("train").fields["stim"]).float()
    invert = build("transform", "invert", {"gain": 2.0}, registry=core_registry)
    assert torch.equal(invert({"stim": stim})["stim"], -2.0 * stim)


def test_a_misspelt_option_is_the_config_error_a_run_gives(core_registry):
    with pytest.raises(ConfigError, match=r"at data.transforms.0.invert.gian: transform 'invert' has no option 'gian' "
                                          r"\(did you mean 'gain'\?\)"):
        check_component("transform", "invert", {"gian": 2.0}, registry=core_registry)


def test_a_gain_below_zero_is_refused_at_its_yaml_path(core_registry):
    with pytest.raises(ConfigError, match=r"at data.transforms.0.invert: transform 'invert': gain must be above 0"):
        build("transform", "invert", {"gain": -1}, registry=core_registry)


def test_invert_trains_in_a_run(run_config):
    metrics = run_config({
        "data": {"format": "tiny", "transforms": ["pixelnorm", {"invert": {"gain": 0.5}}], "batch_size": 8},
        "model": {"simple_cnn": {"conv1": 4, "conv2": 4, "fc_hidden": 8}},
    })
    assert metrics["step"] == 2 and 0 <= metrics["test/label_acc"] <= 1
