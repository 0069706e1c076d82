"""The ``normalize`` transform: per-channel values, ``auto`` learned and kept in the run directory,
fused with the uint8 finish, no host synchronisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core import ConfigError, Layout, Step
from core.config import parse_config
from core.data import DatasetParts
from core.fitting import learn
from core.host_syncs import HostSyncs
from core.materialise import ChunkedStorage
from core.registry import Registry
from core.resolve import resolve
from plugins.digits.format import Digits
from plugins.normalize.transform import Normalize
from plugins.samplers.order import RandomOrder
from plugins.uint8_pixelnorm.storage import Uint8Storage

MEAN, STD = [0.5, 0.25, 0.75], [0.2, 0.5, 0.1]


class Float32(ChunkedStorage):
    torch_dtype = torch.float32


def pixels(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))


def unread():
    raise AssertionError("the training split was read again")
    yield


def test_given_values_are_torchvisions_convention_per_channel():
    x = pixels(4, 3, 5, 5)
    norm = Normalize(mean=MEAN, std=STD)
    norm.output_layout(Layout((3, 5, 5), "CHW"))
    out = norm({"stim": x.float()})["stim"]
    expected = (x.float() / 255 - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    assert torch.allclose(out, expected, atol=1e-5)


def test_the_channel_axis_of_frames_over_time():
    x = pixels(2, 4, 3, 5, 5).float()  # (B, T, C, H, W)
    norm = Normalize(mean=MEAN, std=STD)
    norm.output_layout(Layout((4, 3, 5, 5), "TCHW"))
    out = norm({"stim": x})["stim"]
    assert torch.allclose(out[:, :, 1], (x[:, :, 1] / 255 - 0.25) / 0.5, atol=1e-5)


def test_fused_uint8_finish_equals_the_cast_then_normalize_and_syncs_nothing():
    x = pixels(8, 3, 6, 6)
    fused, plain = Normalize(mean=MEAN, std=STD), Normalize(mean=MEAN, std=STD)
    storage = Uint8Storage()
    storage.plan([Step("data.transforms.0", "normalize", fused)], "d")
    assert storage.fused is fused
    with HostSyncs() as syncs:
        finished = fused(storage.finish({"stim": x}, torch.float32))["stim"]
        expected = plain(Float32().finish({"stim": x}, torch.float32))["stim"]
        bf16 = fused(storage.finish({"stim": x}, torch.bfloat16))["stim"]
    assert syncs.total == 0, syncs.counts
    assert torch.equal(finished, expected)
    assert bf16.dtype == torch.bfloat16 and torch.allclose(bf16.float(), expected, rtol=0.02, atol=0.02)


def test_auto_learns_per_channel_statistics_keeps_them_in_the_run_dir_and_reuses_them(tmp_path):
    stim = pixels(50, 3, 4, 4, seed=1)
    stim[:, 2] //= 4  # a third channel with another mean
    norm = Normalize()
    norm.output_layout(Layout((3, 4, 4), "CHW"))
    parts = DatasetParts("d", Digits(), Uint8Storage(), [], [Step("data.transforms.0", "normalize", norm)], RandomOrder(),
                         opened={"train": {"stim": stim}})
    learn(parts, tmp_path, write=True)
    values = stim.double().permute(1, 0, 2, 3).reshape(3, -1) / 255
    assert np.allclose(norm.mean, values.mean(1)) and np.allclose(norm.std, values.std(1, unbiased=False))
    kept = json.loads((tmp_path / "learned.json").read_text())["data.transforms.0"]
    assert kept["transform"] == "normalize" and kept["state"]["mean"] == norm.mean
    assert norm.fit(unread(), None) is norm.learned  # the next stage of the same process reads nothing
    again = Normalize()
    again.output_layout(Layout((3, 4, 4), "CHW"))
    parts.device = [Step("data.transforms.0", "normalize", again)]
    parts.opened = {"train": unread()}  # a resumed run or an evaluation: the training split is not read again
    learn(parts, tmp_path, write=True)
    assert again.mean == norm.mean and again.std == norm.std


def test_auto_on_digits_through_the_data_module(tmp_path):
    from core.data import CoreDataModule

    norm = Normalize()
    norm.output_layout(Layout((1, 8, 8), "CHW"))
    storage = Uint8Storage()
    steps = [Step("data.transforms.0", "normalize", norm)]
    storage.plan(steps, "digits")
    module = CoreDataModule.single(Digits(), storage, [], steps, RandomOrder(), RandomOrder(), 32, 0, 0)
    module.run_dir = tmp_path
    module.setup("fit")
    batch = module.on_after_batch_transfer(next(iter(module.train_dataloader())), 0)
    train = module.splits["train"]["stim"].double() / 255
    assert norm.mean == pytest.approx([train.mean().item()]) and (tmp_path / "learned.json").is_file()
    assert abs(batch["stim"].mean().item()) < 0.5 and batch["stim"].dtype == torch.float32


def run_config(transforms: list) -> dict:
    return {"name": "n", "data": {"format": {"digits": {"image_size": 8}}, "transforms": transforms},
            "model": "simple_cnn", "trainer": {"accelerator": "cpu"}}


@pytest.mark.parametrize("transforms, path, words", [
    ([{"normalize": {"mean": MEAN, "std": STD}}], "data.transforms.0", ["3 values", "1 channel(s)"]),
    ([{"normalize": {"mean": "auto", "std": [0.5]}}], "data.transforms.0.normalize", ["both as lists", "both as auto"]),
    ([{"normalize": {"mean": [0.5], "std": [0.0]}}], "data.transforms.0.normalize", ["above 0"]),
    (["pixelnorm", "normalize"], "data.transforms.1", ["must be the first", "'pixelnorm'"]),
])
def test_bad_values_name_the_yaml_path(transforms, path, words):
    registry = Registry.load(only=["digits", "samplers", "simple_cnn", "uint8_pixelnorm", "normalize", "pixelnorm"])
    with pytest.raises(ConfigError) as error:
        resolve(parse_config(run_config(transforms)), registry)
    assert error.value.path == path and all(w in str(error.value) for w in words), str(error.value)
