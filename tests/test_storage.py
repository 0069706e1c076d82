"""Storage backends and the memory planner."""

import numpy as np
import pytest
import torch

from core import ConfigError, DatasetMeta, Split, Step
from core.config import parse_config
from core.data import CoreDataModule
from core.kinds import InOrder
from core.memory import MemoryPlan, PlanRow, check_fits, human, stored_bytes
from core.registry import Registry
from core.resolve import resolve
from plugins.cast.storage import BFloat16Storage, Float32Storage
from plugins.pixelnorm.transform import PixelNorm
from plugins.uint8_pixelnorm.storage import Uint8Storage
from plugins.whitening.transform import FFTWhitening


def split(n=10):
    stim = np.random.default_rng(0).integers(0, 256, size=(n, 3, 8, 8), dtype=np.uint8)
    return Split({"stim": stim, "digit": np.arange(n) % 10})


def test_uint8_holds_raw_pixels_without_a_copy_and_finishes_in_the_model_dtype():
    data = split()
    held = Uint8Storage().materialise(data, [])
    assert held["stim"].dtype == torch.uint8
    assert held["stim"].data_ptr() == data.fields["stim"].ctypes.data  # no copy of an in-RAM array
    for dtype in (torch.float32, torch.bfloat16):
        finished = Uint8Storage().finish({"stim": held["stim"][:2]}, dtype)
        assert finished["stim"].dtype == dtype
        normalised = PixelNorm()(finished)["stim"]
        reference = (data.fields["stim"][:2].astype(np.float32) - 127) / 255
        np.testing.assert_allclose(normalised.float().numpy(), reference, atol=1e-2 if dtype == torch.bfloat16 else 1e-6)


def test_uint8_reads_a_lazy_source_in_chunks():
    class Lazy:  # a sliceable source such as an HDF5 dataset: no numpy array in memory
        def __init__(self, array):
            self.array, self.shape, self.dtype = array, array.shape, array.dtype

        def __len__(self):
            return len(self.array)

        def __getitem__(self, item):
            return self.array[item]

    data = split(11)
    held = Uint8Storage(chunk_size=4).materialise(Split({**data.fields, "stim": Lazy(data.fields["stim"])}), [])
    np.testing.assert_array_equal(held["stim"].numpy(), data.fields["stim"])


def test_uint8_refuses_a_prepare_only_transform_with_the_seed_message():
    steps = [Step("data.transforms.0", "pixelnorm", PixelNorm()), Step("data.transforms.1", "fftwhitening", FFTWhitening())]
    with pytest.raises(ConfigError) as err:
        Uint8Storage().plan(steps, "session1")
    text = str(err.value)
    assert "config error at data.transforms.1: dataset 'session1' has transform 'fftwhitening'" in text
    assert "storage 'uint8' keeps raw pixels and supports only transforms that run on the device" in text
    assert "fix: use data.storage: bfloat16 (2x the memory of uint8) or float32 (4x)" in text
    assert Uint8Storage().plan(steps[:1], "s") == ([], steps[:1])


def test_bfloat16_prepares_like_float32_then_casts():
    data = split(9)
    steps = [Step("t.0", "pixelnorm", PixelNorm()), Step("t.1", "fftwhitening", FFTWhitening())]
    full = Float32Storage(chunk_size=100).materialise(data, steps)["stim"]
    half = BFloat16Storage(chunk_size=4).materialise(data, steps)["stim"]
    assert half.dtype == torch.bfloat16 and half.shape == full.shape
    torch.testing.assert_close(half, full.to(torch.bfloat16))


def test_planner_estimate_equals_the_bytes_each_backend_holds():
    meta = DatasetMeta("d", (3, 8, 8), {"digit": 10}, {"train": 10, "val": 0, "test": 0})
    steps = [Step("t.0", "pixelnorm", PixelNorm())]
    for backend in (Uint8Storage(), BFloat16Storage(), Float32Storage()):
        prepare, _ = backend.plan(steps, "d")
        held = backend.materialise(split(10), prepare)
        actual = sum(t.numel() * t.element_size() for t in held.values())
        assert stored_bytes(meta, meta.layout, backend.bytes_per_value) == actual


def test_planner_table_and_a_plan_that_does_not_fit():
    plan = MemoryPlan("sessions", [PlanRow("uint8", 226 * 2**30), PlanRow("bfloat16", 452 * 2**30),
                                   PlanRow("float32", 904 * 2**30)], "float32", 504 * 2**30, "RAM")
    table = plan.table()
    assert "uint8" in table and "226.0 GiB" in table and "278.0 GiB" in table and "NO" in table
    with pytest.raises(ConfigError) as err:
        check_fits(plan)
    text = str(err.value)
    assert "dataset 'sessions' needs 904.0 GiB as float32, more than the 504.0 GiB of RAM available" in text
    assert "fix: use data.storage: uint8 or bfloat16" in text and "data.memory_budget" in text
    assert human(1536) == "1.5 KiB"


def resolved(**data):
    registry = Registry.load()
    config = parse_config({"name": "r", "data": {"format": {"digits": {"image_size": 32, "channels": 3}}, **data},
                           "model": "simple_cnn"})
    return resolve(config, registry)


def test_dry_run_plan_compares_every_backend_and_marks_unusable_ones():
    plan = resolved(transforms=["pixelnorm", "fftwhitening"], storage="bfloat16").memory
    assert [r.dtype for r in plan.rows] == ["uint8", "bfloat16", "float32"]
    assert plan.row("uint8").bytes is None and "cannot hold these transforms" in plan.row("uint8").reason
    assert plan.row("float32").bytes == 2 * plan.row("bfloat16").bytes - 1797 * 8
    assert plan.chosen == "bfloat16" and plan.fits()


def test_memory_budget_overrides_ram_and_placement_device_on_cpu():
    plan = resolved(storage="float32", memory_budget="1MB").memory
    assert plan.available == 1_000_000 and plan.where == "RAM (data.memory_budget)" and not plan.fits()
    with pytest.raises(ConfigError, match="placement 'device' gathers batches on the accelerator"):
        resolved(placement="device", num_workers=2)


def test_unknown_dtype_suggests_the_closest():
    with pytest.raises(ConfigError, match="no storage named 'bfloat61' \\(did you mean 'bfloat16'\\?\\)"):
        resolved(storage="bfloat61")


def test_datamodule_skips_train_only_transforms_when_evaluating():
    from plugins.augment.transforms import RandomFlip

    class Format:
        def open(self, split_name):
            return split(6)

    flip = Step("t.1", "random_flip", RandomFlip(p=1.0))
    dm = CoreDataModule.single(Format(), Uint8Storage(), [], [flip], InOrder(), InOrder(), 6, 0, 0)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    out = dm.on_after_batch_transfer(batch, 0)  # no trainer: evaluation
    torch.testing.assert_close(out["stim"], batch["stim"].float())


def test_uint8_refuses_a_float_stim_instead_of_destroying_it():
    from core import DataError

    with pytest.raises(DataError, match="storage 'uint8' holds raw uint8 pixels, but the dataset's stim is float32"):
        Uint8Storage().materialise(Split({"stim": np.zeros((2, 1, 2, 2), np.float32)}), [])
