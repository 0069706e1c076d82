import numpy as np
import pytest
import torch

from core import DEVICE, PREPARE, ConfigError, Layout, Split, Step, Transform
from plugins.cast.storage import Float32Storage
from plugins.digits.format import Digits
from plugins.pixelnorm.transform import PixelNorm
from plugins.samplers.order import RandomOrder, SequentialOrder
from plugins.simple_cnn.model import SimpleCNN


def test_digits_meta_matches_the_data_and_splits_are_disjoint_and_deterministic():
    fmt = Digits(image_size=32, channels=3, heads=["digit", "parity"])
    meta = fmt.meta()
    assert meta.stim_shape == (3, 32, 32) and meta.heads == {"digit": 10, "parity": 2}
    assert sum(meta.split_sizes.values()) == 1797
    splits = {s: fmt.open(s) for s in ("train", "val", "test")}
    for name, split in splits.items():
        assert len(split) == meta.split_sizes[name]
        assert split.fields["stim"].dtype == np.uint8 and split.fields["stim"].shape[1:] == (3, 32, 32)
        np.testing.assert_array_equal(split.fields["parity"], split.fields["digit"] % 2)
    # the three splits partition the 1,797 images exactly (each image once), the same way every time
    from sklearn.datasets import load_digits

    native = np.concatenate([Digits().open(s).fields["stim"].reshape(-1, 64) for s in ("train", "val", "test")])
    full = np.rint(load_digits().images.reshape(-1, 64) * 255 / 16).astype(np.uint8)
    np.testing.assert_array_equal(native[np.lexsort(native.T)], full[np.lexsort(full.T)])
    np.testing.assert_array_equal(Digits().open("test").fields["stim"], Digits().open("test").fields["stim"])

def test_digits_pixels_are_the_scikit_learn_images_scaled_to_uint8():
    from sklearn.datasets import load_digits

    split = Digits(val_fraction=0.1, test_fraction=0.2).open("train")
    images = load_digits().images
    first = split.fields["stim"][0, 0]
    matches = [i for i in range(len(images)) if np.array_equal(np.rint(images[i] * 255 / 16).astype(np.uint8), first)]
    assert matches, "the first training image is not one of scikit-learn's digits"


def test_digits_bad_options_are_value_errors():
    with pytest.raises(ValueError, match="below the native 8"):
        Digits(image_size=4)
    with pytest.raises(ValueError, match="must be > 0 and sum below 1"):
        Digits(val_fraction=0.5, test_fraction=0.6)


def test_pixelnorm_matches_numpy():
    x = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    out = PixelNorm()({"stim": torch.from_numpy(x), "digit": torch.zeros(1)})["stim"]
    np.testing.assert_allclose(out.numpy(), (x.astype(np.float32) - 127) / 255, rtol=1e-6)
    assert PixelNorm.stages == {PREPARE, DEVICE}


class Halve(Transform):
    stages = frozenset({PREPARE})

    def __call__(self, batch):
        return {**batch, "stim": batch["stim"][..., ::2, ::2]}

    def output_layout(self, layout):
        return Layout((layout.shape[0], layout.shape[1] // 2, layout.shape[2] // 2), layout.axes)


class OnDevice(Transform):
    stages = frozenset({DEVICE})

    def __call__(self, batch):
        return batch


def test_float32_storage_prepares_in_chunks_like_one_pass():
    rng = np.random.default_rng(0)
    stim = rng.integers(0, 256, size=(10, 1, 8, 8), dtype=np.uint8)
    split = Split({"stim": stim, "digit": np.arange(10)})
    steps = [Step("t.0", "pixelnorm", PixelNorm()), Step("t.1", "halve", Halve())]
    held = Float32Storage(chunk_size=3).materialise(split, steps)
    expected = ((stim.astype(np.float32) - 127) / 255)[..., ::2, ::2]
    assert held["stim"].dtype == torch.float32 and held["stim"].shape == (10, 1, 4, 4)
    np.testing.assert_allclose(held["stim"].numpy(), expected, rtol=1e-6)
    assert held["digit"].tolist() == list(range(10))


def test_storage_plan_splits_stages_and_refuses_prepare_after_device():
    storage = Float32Storage()
    a, b, c = Step("t.0", "pixelnorm", PixelNorm()), Step("t.1", "ondevice", OnDevice()), Step("t.2", "halve", Halve())
    assert storage.plan([a, b], "digits") == ([a], [b])
    with pytest.raises(ConfigError) as err:
        storage.plan([a, b, c], "digits")
    assert "config error at t.2: transform 'halve' of dataset 'digits' runs only at preparation" in str(err.value)
    assert "fix: list 'halve' before 'ondevice'" in str(err.value)


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_samplers_give_disjoint_equal_shards(world_size):
    n = 10
    for sampler in (RandomOrder(), SequentialOrder()):
        shards = [sampler.indices(n, epoch=1, seed=0, rank=r, world_size=world_size) for r in range(world_size)]
        assert len({len(s) for s in shards}) == 1
        covered = np.concatenate(shards)
        assert set(covered.tolist()) == set(range(n))
        if n % world_size == 0:
            assert len(covered) == n  # no index twice


def test_random_order_changes_per_epoch_and_repeats_per_seed():
    first = RandomOrder().indices(100, epoch=0, seed=0, rank=0, world_size=1)
    assert not np.array_equal(first, RandomOrder().indices(100, epoch=1, seed=0, rank=0, world_size=1))
    np.testing.assert_array_equal(first, RandomOrder().indices(100, epoch=0, seed=0, rank=0, world_size=1))
    np.testing.assert_array_equal(SequentialOrder().indices(5, epoch=3, seed=1, rank=0, world_size=1), np.arange(5))


def test_simple_cnn_gives_one_output_per_head():
    meta = Digits(image_size=32, channels=3, heads=["digit", "parity"]).meta()
    model = SimpleCNN(meta, conv1=4, conv2=4, fc_hidden=8)
    out = model({"stim": torch.zeros(5, 3, 32, 32)})
    assert out["digit"].shape == (5, 10) and out["parity"].shape == (5, 2)
    with pytest.raises(ValueError, match="takes images \\(C, H, W\\)"):
        SimpleCNN(type(meta)("x", (5, 3, 32, 32), {"a": 2}, {}))


def test_a_transform_with_no_stage_is_a_config_error():
    class Nowhere(Transform):
        def __call__(self, batch):
            return batch

    with pytest.raises(ConfigError, match="config error at t.0: transform 'nowhere' declares no stage"):
        Float32Storage().plan([Step("t.0", "nowhere", Nowhere())], "digits")
