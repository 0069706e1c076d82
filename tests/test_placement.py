"""data.placement (auto/host/device), the host path's prefetching, and the compile section."""

from __future__ import annotations

import threading

import pytest
import torch

from core import ConfigError
from core.compiling import check_compile
from core.config import CompileSection, parse_config
from core.placement import choose_placement
from core.prefetch import DevicePrefetch, ready_on_current_stream
from tests.conftest import SMALL_RUN, run_main

GIB = 2**30


def test_auto_places_data_on_the_accelerator_only_when_it_fits_with_room_to_spare():
    assert choose_placement("auto", 0, 1 * GIB, 10 * GIB).where == "device"
    too_big = choose_placement("auto", 0, 6 * GIB, 10 * GIB)
    assert too_big.where == "host" and "more than 50% of the accelerator's 10.0 GiB free" in too_big.reason
    assert choose_placement("auto", 0, 1 * GIB, None).reason == "auto: no CUDA accelerator, the samples stay in RAM"
    assert "worker processes" in choose_placement("auto", 2, 1 * GIB, 10 * GIB).reason
    assert "read from disk" in choose_placement("auto", 0, 0, 10 * GIB).reason
    assert choose_placement("host", 0, 1, 10 * GIB).where == "host"  # a choice given stays as given
    assert choose_placement("device", 0, 9 * GIB, 10 * GIB).where == "device"


def test_the_dry_run_says_where_the_data_goes_and_why(write_config):
    done = run_main("core-train", "--config", write_config(SMALL_RUN), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "placement: host (auto: no CUDA accelerator, the samples stay in RAM)" in done.stdout
    assert parse_config({"name": "x", "data": {"format": "digits"}, "model": "simple_cnn"}).data.placement == "auto"


def _batches(n: int, fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise OSError(f"batch {i} unreadable")
        yield {"stim": torch.full((2, 3), float(i)), "dataset": "d"}


class Loader:
    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at = n, fail_at

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return _batches(self.n, self.fail_at)


def test_prefetching_keeps_order_length_and_every_epoch():
    prefetch = DevicePrefetch(Loader(7), torch.device("cpu"))
    assert len(prefetch) == 7
    for _ in range(2):
        got = [ready_on_current_stream(b) for b in prefetch]
        assert [int(b["stim"][0, 0]) for b in got] == list(range(7)) and all(b["dataset"] == "d" for b in got)
    assert list(DevicePrefetch(Loader(0), torch.device("cpu"))) == []


def test_a_failing_batch_is_raised_to_the_consumer_and_an_early_stop_leaves_no_thread():
    with pytest.raises(OSError, match="batch 3 unreadable"):
        list(DevicePrefetch(Loader(9, fail_at=3), torch.device("cpu")))
    before = threading.active_count()
    for i, _ in enumerate(DevicePrefetch(Loader(50), torch.device("cpu"))):
        if i == 2:
            break  # limit_train_batches, an exception in the step: the worker must stop
    assert threading.active_count() == before


def test_compile_sections_that_cannot_work_are_refused():
    with pytest.raises(ConfigError, match="compile.mode: 'reduce-overhead' replays CUDA graphs"):
        check_compile(CompileSection(mode="reduce-overhead"), {"accelerator": "cpu"})
    with pytest.raises(ConfigError, match="compile.backend: no torch.compile backend 'inductr' \\(did you mean 'inductor'"):
        check_compile(CompileSection(backend="inductr"), {"accelerator": "cpu"})
    with pytest.raises(ConfigError, match="compile.mode: 'fast' is not valid"):
        parse_config({"name": "x", "data": {"format": "digits"}, "model": "simple_cnn", "compile": {"mode": "fast"}})


def test_a_compiled_model_trains_and_its_checkpoint_keeps_the_eager_names(tmp_path, write_config):
    path = write_config(SMALL_RUN + "    compile: {backend: aot_eager}\n")
    done = run_main("core-train", "--config", path, "--set", "trainer.max_epochs=1", "--set", "trainer.precision=bf16-mixed")
    assert done.returncode == 0, done.stderr
    assert "test/digit_acc" in done.stdout
    state = torch.load(tmp_path / "runs/small/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert state and not any("_orig_mod" in key for key in state)  # compiled in place: the names of an eager run
