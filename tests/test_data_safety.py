"""Bad data that used to train silently or fail mid-training, without the optional packages
(issue 13): the contrast_weighted sampler's contrasts, and the .beton length check, which
needs no FFCV (tests/test_ffcv.py runs it on files FFCV wrote, where FFCV is installed)."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from core import DataError
from plugins.curriculum.sampler import ContrastWeighted
from tests.conftest import ROOT


def test_contrast_weighted_refuses_non_finite_contrast_when_it_binds():
    sampler = ContrastWeighted()
    contrast = np.full(50, 0.5, np.float32)
    contrast[[17, 30]] = np.nan
    with pytest.raises(DataError, match=r"contrast_weighted: the training split's contrast holds nan at training sample "
                                        r"17 \(2 non-finite value\(s\) of 50\); the sampler weights trials by contrast"):
        sampler.bind({"contrast": contrast})
    contrast[[17, 30]] = [0.0, -1.0]  # below min_contrast: weighted as min_contrast
    sampler.bind({"contrast": contrast})
    assert len(sampler.indices(50, epoch=0, seed=0, rank=0, world_size=1)) == 50


@pytest.fixture(scope="module")
def beton_module():
    """plugins/ffcv/beton.py alone: the package refuses to import without FFCV, the module needs none."""
    spec = importlib.util.spec_from_file_location("beton_alone", ROOT / "plugins" / "ffcv" / "beton.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["beton_alone"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("beton_alone", None)


ENTRY = np.dtype([("sample_id", "<u8"), ("ptr", "<u8"), ("size", "<u8")])  # FFCV's ALLOC_TABLE_TYPE


def table(samples: int, per_sample: int) -> np.ndarray:
    ids = np.repeat(np.arange(samples), per_sample)
    return np.array(list(zip(ids, 4096 + 100 * np.arange(len(ids)), np.full(len(ids), 100))), dtype=ENTRY)


def test_a_beton_s_length_is_checked_against_its_allocation_table(beton_module):
    problem, start, whole = beton_module.table_problem, 10_000, table(40, 2)
    size = start + whole.nbytes
    assert problem("x.beton", size, start, whole, 40) is None
    # FFCV reads whole entries to the end of the file: 100 bytes off loses 4 entries and cuts a fifth
    cut = whole[: (size - 100 - start) // ENTRY.itemsize]
    assert problem("x.beton", size - 100, start, cut, 40) == (
        "x.beton: truncated: the file ends inside entry 75 of its allocation table (20 of its 24 bytes), 11820 bytes "
        "in all; the file is truncated (or still being copied): copy it again or rewrite it with core-data convert --to ffcv")
    assert "locates the data of 39 of 40 samples (sample 39 has 0 of its 2 entries)" in problem(
        "x.beton", size - 48, start, whole[:-2], 40)
    assert "locates the data of 39 of 40 samples (sample 39 has 1 of its 2 entries)" in problem(
        "x.beton", size - 24, start, whole[:-1], 40)
    assert "its allocation table should start at byte 10000, but the file has 9000 bytes" in problem(
        "x.beton", 9000, start, whole[:0], 40)
    assert "names sample 40, but the header holds 40 samples" in problem("x.beton", size, start, table(41, 2)[2:], 40)
