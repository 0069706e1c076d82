"""One copy per node: shared-memory segments, their life after crashes, the per-node plan, a real 2-process DDP run."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from core import ConfigError, DataError, Split
from core.config import parse_config
from core.memory import MemoryPlan, PlanRow, Spread, check_fits
from core.registry import Registry
from core.resolve import resolve
from core.shared_memory import OWNER, Segment, Sharing, segment_name, shard_indices
from plugins.uint8_pixelnorm.storage import Uint8Storage
from tests.conftest import ROOT, run_cli

GIB = 2**30
RUN = "core-train-t-00000000"


class Lazy:
    """A sliceable source such as an HDF5 dataset: materialise allocates the stored stim itself."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.dtype = array, array.shape, array.dtype

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, item):
        return self.array[item]


def data(n: int = 12) -> Split:
    stim = np.random.default_rng(0).integers(0, 256, size=(n, 3, 4, 4), dtype=np.uint8)
    return Split({"stim": Lazy(stim), "digit": np.arange(n) % 10})


def trainer(local_rank: int = 0) -> SimpleNamespace:
    """What Sharing reads of a Lightning trainer; the barrier is a no-op (one process plays every rank)."""
    return SimpleNamespace(local_rank=local_rank, num_devices=2, strategy=SimpleNamespace(barrier=lambda name=None: None))


def sharing(root: Path, needed: int = 0, resuming: bool = False) -> Sharing:
    return Sharing(root, RUN, "'t' (runs/t)", "k" * 16, "auto", keep=True, needed=needed, resuming=resuming)


def build() -> dict[str, torch.Tensor]:
    return Uint8Storage().materialise(data(), [])


def dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def in_another_process(folder: Path) -> tuple[int, int]:
    """Map the segment in a forked process (no new interpreter): the sum of its stim, the maps of its files
    there; then write to the mapped stim (a private copy-on-write page: the segment keeps its values)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # NumPy only in the child: torch's thread pools do not survive a fork
        try:
            stim = Segment(folder).map()["stim"].numpy()
            mapped = sum(str(folder) in line for line in open("/proc/self/maps"))
            os.write(write, f"{int(stim.astype(np.int64).sum())} {mapped}".encode())
            stim[:] = 0
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        total, mapped = map(int, pipe.read().split())
    return total, mapped


def test_a_split_is_written_once_into_shared_memory_and_mapped_read_only_by_another_process(tmp_path):
    shared = sharing(tmp_path)
    held = shared.hold("digits", "train", build, trainer())
    expected = data().fields
    np.testing.assert_array_equal(held["stim"].numpy(), expected["stim"].array)
    np.testing.assert_array_equal(held["digit"].numpy(), expected["digit"])
    folder = tmp_path / RUN / segment_name("digits", "train", "k" * 16)
    fields = {f["name"]: f for f in json.loads((folder / "manifest.json").read_text())["fields"]}
    assert fields["stim"]["file"] == "0.bin"  # materialised straight into the segment, not copied
    assert (folder / "0.bin").stat().st_size == 12 * 3 * 4 * 4
    assert json.loads((tmp_path / RUN / OWNER).read_text())["run"] == "'t' (runs/t)"
    total, mapped = in_another_process(folder)
    assert total == int(expected["stim"].array.astype(np.int64).sum()) and mapped >= 1
    np.testing.assert_array_equal(Segment(folder).map()["stim"].numpy(), expected["stim"].array)
    shared.close()  # the stage ended: the run's folder goes, the mapped tensors stay valid
    assert not (tmp_path / RUN).exists() and int(held["stim"].long().sum()) == total


def test_the_other_local_ranks_wait_for_the_segment_and_stop_clearly_when_the_first_one_is_gone(tmp_path):
    first = sharing(tmp_path)
    first.hold("digits", "val", build, trainer())
    second = sharing(tmp_path)
    second.started = True  # past the start barrier
    held = second.hold("digits", "val", lambda: pytest.fail("only the first local rank builds"), trainer(local_rank=1))
    np.testing.assert_array_equal(held["stim"].numpy(), data().fields["stim"].array)
    owner = tmp_path / RUN / OWNER
    owner.write_text(json.dumps({**json.loads(owner.read_text()), "pid": dead_pid()}))
    with pytest.raises(DataError, match=r"the first local rank \(process \d+\) stopped before dataset 'digits' split "
                                        r"'train' was in shared memory .*: see its error"):
        second.hold("digits", "train", build, trainer(local_rank=1))
    first.timeout = second.timeout = 0.3
    owner.write_text(json.dumps({**json.loads(owner.read_text()), "pid": os.getpid(), "start": None}))
    with pytest.raises(DataError, match=r"waited 0 s for the first local rank .* is that process stuck\?"):
        second.hold("digits", "test", build, trainer(local_rank=1))


def test_a_segment_cut_short_by_a_crash_is_built_again_and_a_complete_one_is_reused_on_resume(tmp_path, caplog):
    crashed = sharing(tmp_path)
    crashed.hold("digits", "train", build, trainer())
    crashed.hold("digits", "val", build, trainer())
    crashed.finalizer.detach()  # a kill -9: nothing removed at exit
    owner = tmp_path / RUN / OWNER
    owner.write_text(json.dumps({**json.loads(owner.read_text()), "pid": dead_pid()}))
    train = tmp_path / RUN / segment_name("digits", "train", "k" * 16)
    with open(train / "0.bin", "r+b") as handle:
        handle.truncate(100)  # cut short
    caplog.set_level(logging.INFO, logger="core")
    resumed = sharing(tmp_path, resuming=True)
    held = resumed.hold("digits", "train", build, trainer())
    assert f"{train} was left incomplete (0.bin (stim) has 100 of its 576 bytes); building it again" in caplog.text
    np.testing.assert_array_equal(held["stim"].numpy(), data().fields["stim"].array)
    resumed.hold("digits", "val", lambda: pytest.fail("a complete segment is reused on --resume"), trainer())
    assert "dataset 'digits' split 'val' reused from" in caplog.text
    resumed.close()
    # without --resume a crashed run's segments are removed at its next start
    again = sharing(tmp_path)
    again.hold("digits", "val", build, trainer())
    again.finalizer.detach()
    owner.write_text(json.dumps({**json.loads(owner.read_text()), "pid": dead_pid()}))
    rebuilt = []
    sharing(tmp_path).hold("digits", "val", lambda: rebuilt.append(1) or build(), trainer())
    assert rebuilt == [1]


def test_another_runs_stale_segment_is_left_alone_and_reported(tmp_path, caplog):
    other = tmp_path / "core-train-other-12345678"
    (other / "digits-train-x").mkdir(parents=True)
    (other / "digits-train-x" / "0.bin").write_bytes(bytes(2**20))
    (other / OWNER).write_text(json.dumps({"pid": dead_pid(), "start": None, "host": os.uname().nodename,
                                           "run": "'other' (runs/other)"}))
    live = tmp_path / "core-train-live-12345678"
    live.mkdir()
    (live / OWNER).write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename,
                                          "run": "'live' (runs/live)"}))
    sharing(tmp_path).hold("digits", "train", build, trainer())
    assert other.exists() and live.exists()
    assert f"shared memory: {other} (1.0 MiB) was left by run 'other' (runs/other), whose process " in caplog.text
    assert f"is gone; it is kept for that run's --resume. To free the memory: rm -r {other}" in caplog.text
    assert str(live) not in caplog.text  # a running run's segments are none of our business


def test_a_shared_memory_folder_too_small_for_the_plan_stops_before_loading(tmp_path, monkeypatch):
    import core.shared_memory as shm

    monkeypatch.setattr(shm.shutil, "disk_usage", lambda path: SimpleNamespace(free=GIB))
    with pytest.raises(ConfigError) as err:
        sharing(tmp_path, needed=3 * GIB).hold("digits", "train", lambda: pytest.fail("nothing is loaded"), trainer())
    text = str(err.value)
    assert f"config error at data.shm_dir: the shared-memory folder {tmp_path} has 1.0 GiB free, but this run keeps " \
           "3.0 GiB there (one copy of its data per node)" in text
    assert "fix: set data.shm_dir to a folder with room" in text and "data.placement: device" in text
    # space taken by someone else between the check and the write: an error, not a SIGBUS
    monkeypatch.setattr(shm.os, "posix_fallocate", lambda fd, offset, size: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(ConfigError, match=r"data.shm_dir: cannot reserve 576 B for .*0.bin: No space left on device"):
        sharing(tmp_path).hold("digits", "train", build, trainer())
    # the planner's check, before anything is built
    spread = Spread(1, 2, shared=True, shm_dir="/dev/shm", shm_free=GIB)
    plan = MemoryPlan("sessions", [PlanRow("uint8", 2 * GIB)], "uint8", 100 * GIB, "RAM", spread)
    with pytest.raises(ConfigError, match=r"data.shm_dir: the shared-memory folder /dev/shm has 1.0 GiB free, but the "
                                          r"run keeps one copy of its data there per node: 2.0 GiB as uint8"):
        check_fits(plan)


def resolved_plan(**trainer_and_data):
    data = {"format": {"digits": {"image_size": 32, "channels": 3}}, **trainer_and_data.pop("data", {})}
    config = parse_config({"name": "r", "data": data, "model": "simple_cnn",
                           "trainer": {"accelerator": "cpu", **trainer_and_data}})
    return resolve(config, Registry.load()).memory


def test_the_plan_counts_nodes_processes_and_gpus():
    one = resolved_plan()
    row = one.row("uint8")
    assert one.spread.single and one.needed(row) == row.bytes and "one copy" not in one.table()
    assert row.train == row.bytes * 1258 // 1797  # digits: 1258 training samples of 1797
    two_nodes = resolved_plan(devices=4, num_nodes=2, strategy="ddp")
    spread = two_nodes.spread
    assert (spread.nodes, spread.per_node, spread.shared) == (2, 4, True)
    assert two_nodes.needed(two_nodes.row("uint8")) == row.bytes  # one copy per node
    table = two_nodes.table()
    assert "2 nodes x 4 processes; one copy per node in shared memory" in table and "RAM/node" in table
    private = resolved_plan(devices=4, num_nodes=2, data={"shared_memory": False})
    assert private.needed(private.row("uint8")) == 4 * row.bytes
    sharded = resolved_plan(devices=4, num_nodes=2, data={"placement": "device", "shard": True})
    assert sharded.spread.device and sharded.spread.gpu(row) == row.bytes - row.train + row.train // 8
    assert "the training split sharded 8 ways (data.shard)" in sharded.table()
    with pytest.raises(ConfigError, match="data.shard: true spreads the training split over the GPUs' memory"):
        resolved_plan(devices=2, data={"shard": True})
    tight = MemoryPlan("sessions", [PlanRow("uint8", 226 * GIB, train=180 * GIB), PlanRow("bfloat16", 452 * GIB)],
                       "uint8", 504 * GIB, "RAM", Spread(1, 8, shared=False))
    with pytest.raises(ConfigError) as err:
        check_fits(tight)
    assert "dataset 'sessions' needs 1.8 TiB per node as uint8, more than the 504.0 GiB of RAM available" in str(err.value)
    assert "set data.shared_memory: true (one copy per node instead of one per process)" in str(err.value)
    check_fits(MemoryPlan("sessions", tight.rows, "uint8", 504 * GIB, "RAM", Spread(1, 8, shared=True, shm_free=252 * GIB)))
    on_gpus = MemoryPlan("sessions", tight.rows, "uint8", 141 * GIB, "accelerator memory",
                         Spread(1, 8, shared=True, sharded=True, device=True, shm_free=252 * GIB), ram=504 * GIB)
    assert on_gpus.needed(on_gpus.row("uint8")) == 226 * GIB - 180 * GIB + 180 * GIB // 8 and on_gpus.fits()


def test_shards_are_disjoint_equal_and_fixed():
    shares = [shard_indices(103, rank, 4, seed=7) for rank in range(4)]
    assert [len(s) for s in shares] == [25] * 4
    assert len(set(torch.cat(shares).tolist())) == 100  # 3 samples left out
    assert torch.equal(shares[1], shard_indices(103, 1, 4, seed=7)) and all(torch.equal(s, s.sort().values) for s in shares)


def test_with_data_shard_each_rank_trains_on_its_own_share_only():
    from core.data import CoreDataModule
    from core.kinds import InOrder
    from plugins.samplers.order import RandomOrder

    class Format:
        streams = False

        def open(self, split_name):
            return Split({"stim": np.zeros((41, 1, 2, 2), np.uint8), "digit": np.arange(41)})

    seen = []
    for rank in (0, 1):
        dm = CoreDataModule.single(Format(), Uint8Storage(), [], [], RandomOrder(), InOrder(), 4, 0, seed=5)
        dm.shard = True
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2, current_epoch=0, global_step=0, overfit_batches=0,
                                     strategy=SimpleNamespace(root_device=torch.device("cpu")))
        dm.setup("fit")
        assert torch.equal(dm.splits["train"]["digit"], shard_indices(41, rank, 2, seed=5))
        batches = list(dm.train_dataloader())
        assert len(batches) == 5  # 20 samples of its share, batches of 4: the rank samples within its share
        seen.append(set(torch.cat([b["digit"] for b in batches]).tolist()))
        assert seen[-1] == set(shard_indices(41, rank, 2, seed=5).tolist())
        assert len(dm.splits["val"]["digit"]) == 41  # evaluation splits stay whole
    assert not seen[0] & seen[1]


def test_a_resume_may_move_the_shared_memory_but_not_the_shards():
    from core.resume import check_resume

    config = parse_config({"name": "r", "data": {"format": "digits"}, "model": "simple_cnn"})
    saved = config.model_dump(mode="json")
    older = {**saved, "data": {k: v for k, v in saved["data"].items() if k not in ("shared_memory", "shm_dir", "shard")}}
    assert check_resume({"hyper_parameters": {"config": older}}, config) != []  # an older checkpoint: no refusal
    moved = config.model_copy(update={"data": config.data.model_copy(update={"shm_dir": "/scratch", "shared_memory": True})})
    assert [key for key, *_ in check_resume({"hyper_parameters": {"config": saved}}, moved)] == [
        "data.shared_memory", "data.shm_dir"]
    sharded = config.model_copy(update={"data": config.data.model_copy(update={"shard": True})})
    with pytest.raises(ConfigError, match="data.shard: --resume continues the run as it was trained"):
        check_resume({"hyper_parameters": {"config": saved}}, sharded)


RECORDER = """
    import json, os
    from lightning.pytorch.callbacks import Callback
    from core import hookimpl

    class Record(Callback):
        def on_train_start(self, trainer, pl_module):
            stim = trainer.datamodule.datasets[0].opened["train"]["stim"]
            where = None
            for line in open("/proc/self/maps"):
                fields = line.split()
                low, high = (int(x, 16) for x in fields[0].split("-"))
                if low <= stim.data_ptr() < high:
                    where = {"file": fields[5] if len(fields) > 5 else "", "inode": fields[4]}
            with open(os.path.join(os.environ["RECORD_DIR"], f"rank{trainer.global_rank}.json"), "w") as out:
                json.dump({"pid": os.getpid(), **(where or {})}, out)

    @hookimpl
    def core_callbacks():
        return {"record_stim": Record}
"""


def test_two_ddp_processes_on_the_cpu_train_from_one_segment(tmp_path, make_plugin_dist, write_config):
    make_plugin_dist("stimrecorder", RECORDER)
    record, shm = tmp_path / "record", tmp_path / "shm"
    record.mkdir()
    path = write_config("""
        name: ddp
        output_dir: OUTPUT_DIR
        data: {format: {digits: {image_size: 8}}, transforms: [pixelnorm], batch_size: 64}
        model: {simple_cnn: {conv1: 4, conv2: 4, fc_hidden: 8}}
        logging: [csv]
        callbacks: [record_stim]
        trainer: {max_epochs: 1, limit_train_batches: 2, limit_val_batches: 1, accelerator: cpu, strategy: ddp,
                  devices: 2, enable_progress_bar: false, enable_model_summary: false}
    """)
    done = run_cli("core-train", "fit", "--config", path, "--set", f"data.shm_dir={shm}", env={"RECORD_DIR": str(record)})
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [json.loads((record / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["pid"] != ranks[1]["pid"]
    assert ranks[0]["file"] == ranks[1]["file"] and ranks[0]["inode"] == ranks[1]["inode"]
    assert ranks[0]["file"].startswith(f"{shm}/core-train-ddp-") and ranks[0]["file"].endswith("/0.bin")
    assert "-train-" in ranks[0]["file"]
    assert list(shm.iterdir()) == []  # removed when the run ended
