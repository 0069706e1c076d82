"""One copy of the data per node: each split held once in shared memory, mapped by every process.

Under DDP with several processes per node, each rank would materialise the whole dataset in
its own memory: k processes, k copies. Instead the first local rank materialises each split
into a *segment* (one file per field under ``data.shm_dir``, default ``/dev/shm``, with a
manifest written last) and the other local ranks wait for the manifest and map the files;
DataLoader workers are forked and inherit the mappings. The maps are private and
copy-on-write: the pages are the segment's, shared by every process, and a stray write stays
in the process that made it. On by default (``data.shared_memory: auto``) when a node runs
several processes; one process keeps its samples in its own memory, as before.

Layout::

    <shm_dir>/core-train-<run name>-<hash of the run directory>/
        owner.json                           the process that made it (pid, start time, host, run)
        <dataset>-<split>-<content key>/     one segment; the key hashes the data config and metadata
            0.bin, 1.bin, ...                one field each (stim, labels, responses, ...)
            manifest.json                    written last, atomically: each field's file, dtype and shape

Life: made at the first ``setup``, removed when the stage ends (``teardown``) or the process
exits. After a crash (the owner is gone) the next start of the same run removes it, except
that ``--resume`` keeps the complete segments and maps them instead of reading the data
again; a segment cut short (no manifest, a file shorter than the manifest says) is built
again. Another run's segments are never touched: a dead one is reported with its size and
how to remove it. With ``placement: device`` a segment only stages the copy each rank moves
to its GPU, and is removed as soon as every rank has it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError, DataError
from core.memory import MemoryPlan, Spread, available_ram, human

if TYPE_CHECKING:
    import torch

    from core.config import RunConfig
    from core.placement import Placement
    from core.resolve import ResolvedRun

PREFIX = "core-train-"
MANIFEST, OWNER = "manifest.json", "owner.json"
WAIT_TIMEOUT_S = 6 * 3600.0  # the other local ranks wait this long for the first one to build a split
POLL_S = 0.2
SHM_FIX = ("set data.shm_dir to a folder with room on a local disk or a larger tmpfs (its pages are shared the same "
           "way), remove other runs' left-over core-train-* folders there, or use data.placement: device (the copy "
           "there is then only staged)")
# data keys that do not change what a segment holds
NOT_CONTENT = ("batch_size", "num_workers", "placement", "memory_budget", "interleave", "sampler", "shared_memory",
               "shm_dir", "shard")
log = logging.getLogger("core")


class Segment:
    """One split of one dataset in shared memory: a folder of one file per field and a manifest."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.written: dict[str, torch.Tensor] = {}  # file name -> writable map, until the manifest is written

    def allocate(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A writable tensor backed by a new file of the segment (``materialise`` writes ``stim`` into it)."""
        name = f"{len(self.written)}.bin"
        self.written[name] = tensor = _map(self.folder / name, shape, dtype, write=True)
        return tensor

    def write(self, tensors: dict[str, torch.Tensor]) -> None:
        """Complete the segment: copy in the fields not allocated in it, then write the manifest (last)."""
        from core.files import write_atomic

        mine = {(t.data_ptr(), t.shape): name for name, t in self.written.items() if t.numel()}
        fields = []
        for key, tensor in tensors.items():
            name = mine.get((tensor.data_ptr(), tensor.shape)) if tensor.numel() else None
            if name is None:
                name = f"{len(self.written)}.bin"
                self.written[name] = _map(self.folder / name, tuple(tensor.shape), tensor.dtype, write=True)
                self.written[name].copy_(tensor)
            fields.append({"name": key, "file": name, "dtype": str(tensor.dtype).removeprefix("torch."),
                           "shape": list(tensor.shape), "bytes": tensor.numel() * tensor.element_size()})
        self.written.clear()  # the writable maps go; every process reads through its own private map
        write_atomic(self.folder / MANIFEST, json.dumps({"fields": fields}, indent=1) + "\n")

    def problem(self) -> str | None:
        """Why the segment cannot be mapped (not written yet, cut short by a crash), or None."""
        try:
            manifest = json.loads((self.folder / MANIFEST).read_text())
            fields = manifest["fields"]
        except FileNotFoundError:
            return "it has no manifest yet (its writer stopped before the end, or is still writing)"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"its manifest cannot be read ({exc})"
        for entry in fields:
            size = _size(self.folder / entry["file"])
            if entry["bytes"] and size != entry["bytes"]:
                return f"{entry['file']} ({entry['name']}) has {size} of its {entry['bytes']} bytes"
        return None

    def map(self) -> dict[str, torch.Tensor]:
        """Every field, mapped read-only for the segment (copy-on-write for this process)."""
        import torch

        fields = json.loads((self.folder / MANIFEST).read_text())["fields"]
        return {entry["name"]: _map(self.folder / entry["file"], tuple(entry["shape"]), getattr(torch, entry["dtype"]),
                                    write=False) for entry in fields}


def _map(path: Path, shape: tuple[int, ...], dtype: torch.dtype, write: bool) -> torch.Tensor:
    """A tensor over the file ``path``: a new file, mapped shared, with ``write``; else a private map."""
    import torch

    numel = math.prod(shape)
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    if write:
        nbytes = numel * dtype.itemsize
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:  # reserve the pages now: a full tmpfs is an error here, not a SIGBUS on a later write
            (os.posix_fallocate(fd, 0, nbytes) if hasattr(os, "posix_fallocate") else os.ftruncate(fd, nbytes))
        except OSError as exc:
            raise ConfigError("data.shm_dir", f"cannot reserve {human(nbytes)} for {path}: {exc.strerror or exc} "
                              f"({human(shutil.disk_usage(path.parent).free)} free there)", fix=SHM_FIX) from None
        finally:
            os.close(fd)
    return torch.from_file(str(path), shared=write, size=numel, dtype=dtype).view(shape)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def folder_bytes(folder: Path) -> int:
    """Bytes held by the files under ``folder`` (0 if there is none)."""
    return sum(_size(p) for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def owner_record(run: str) -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "start": _start_time(pid), "host": os.uname().nodename, "run": run}


def read_owner(folder: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / OWNER).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None


def alive(record: dict[str, Any]) -> bool:
    """Is the owner process still running? (Another machine's owner counts as alive: it cannot be told.)"""
    if record.get("host") != os.uname().nodename:
        return True
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    start = _start_time(record["pid"])
    return record.get("start") is None or start is None or start == record["start"]  # a reused pid is not the owner


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks after boot (field 22 of /proc/<pid>/stat), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _remove(folder: Path, owner_pid: int) -> None:
    if os.getpid() == owner_pid:  # not from a forked DataLoader worker
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Sharing:
    """A run's segments: what the DataModule's ``setup`` holds through it (see the module docstring)."""

    root: Path  # data.shm_dir
    run: str  # the run's folder name under root
    label: str  # the run, for messages: "'name' (output_dir/name)"
    key: str  # what the data config and the datasets' metadata hash to
    mode: str | bool  # data.shared_memory
    keep: bool  # the ranks gather batches from the segments (placement host); else they only stage
    needed: int  # bytes of one copy of the run's held data
    resuming: bool = False  # --resume: this run's complete segments left by a crash are reused
    timeout: float = WAIT_TIMEOUT_S
    finalizer: weakref.finalize | None = field(default=None, repr=False)
    started: bool = False

    @property
    def folder(self) -> Path:
        return self.root / self.run

    def active(self, trainer: Any) -> bool:
        """Shared memory is used: configured so, or (auto) when this node runs several processes."""
        return self.mode is True or (self.mode == "auto" and trainer is not None and trainer.num_devices > 1)

    def hold(self, dataset: str, split: str, build: Callable[[], dict[str, torch.Tensor]],
             trainer: Any) -> dict[str, torch.Tensor]:
        """``split`` of ``dataset`` mapped from its segment, which the first local rank builds with
        ``build`` (or on ``--resume`` reuses) while the others wait for it."""
        from core.materialise import allocating

        local = trainer.local_rank if trainer is not None else 0
        if not self.started:
            if local == 0:
                self.start()
            _barrier(trainer, "core-train shared memory: started")
            self.started = True
        segment = Segment(self.folder / segment_name(dataset, split, self.key))
        if local != 0:
            self.wait(segment, dataset, split)
            return segment.map()
        problem = segment.problem()
        if problem is None:
            log.info("shared memory: dataset '%s' split '%s' reused from %s", dataset, split, segment.folder)
            return segment.map()
        if segment.folder.exists():
            log.warning("shared memory: %s was left incomplete (%s); building it again", segment.folder, problem)
            shutil.rmtree(segment.folder)
        segment.folder.mkdir(parents=True)
        with allocating(segment.allocate):
            held = build()
        segment.write(held)
        del held
        return segment.map()

    def placed(self, dataset: str, split: str, trainer: Any) -> None:
        """Every rank holds its own copy now (placement device): a staging segment is removed."""
        if self.keep:
            return
        _barrier(trainer, "core-train shared memory: placed")
        if trainer is None or trainer.local_rank == 0:
            shutil.rmtree(self.folder / segment_name(dataset, split, self.key), ignore_errors=True)

    def start(self) -> None:
        """First local rank, before its first split: clear what a crash of this run left (kept
        for ``--resume``), report other runs' left-overs, take the run's folder, check the room."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("data.shm_dir", f"cannot make the shared-memory folder {self.root}: "
                              f"{exc.strerror or exc}", fix=SHM_FIX) from None
        left = []
        for folder in sorted(self.root.glob(PREFIX + "*")):
            record = read_owner(folder)
            if folder == self.folder:
                if record is not None and alive(record) and record["pid"] != os.getpid():
                    raise ConfigError("data.shm_dir", f"{folder} is in use by process {record['pid']} of this run",
                                      fix="wait for that process to end, or stop it")
                if not self.resuming:
                    shutil.rmtree(folder)
            elif record is None or not alive(record):
                left.append((folder, record))
        for folder, record in left:
            who = (f"run {record['run']}, whose process {record['pid']} is gone" if record is not None
                   else "a run that recorded no owner")
            log.warning("shared memory: %s (%s) was left by %s; it is kept for that run's --resume. To free the "
                        "memory: rm -r %s", folder, human(folder_bytes(folder)), who, folder)
        from core.files import write_atomic

        self.folder.mkdir(exist_ok=True)
        write_atomic(self.folder / OWNER, json.dumps(owner_record(self.label)) + "\n")
        self.finalizer = weakref.finalize(self, _remove, self.folder, os.getpid())  # at the latest, at exit
        free = shutil.disk_usage(self.root).free + folder_bytes(self.folder)
        if self.needed > free:
            others = "".join(f"\n    {folder} ({human(folder_bytes(folder))}, left by a run that is gone)"
                             for folder, _ in left)
            raise ConfigError("data.shm_dir", f"the shared-memory folder {self.root} has {human(free)} free, but this "
                              f"run keeps {human(self.needed)} there (one copy of its data per node){others}",
                              fix=SHM_FIX)

    def wait(self, segment: Segment, dataset: str, split: str) -> None:
        """Until the first local rank has written ``segment``; a clear error if it stopped or took too long."""
        owner = read_owner(self.folder)
        began = time.monotonic()
        while (problem := segment.problem()) is not None:
            if owner is None or not alive(owner):
                who = f"process {owner['pid']}" if owner is not None else "a process that recorded no owner"
                raise DataError(f"the first local rank ({who}) stopped before dataset '{dataset}' split '{split}' "
                                f"was in shared memory ({segment.folder}): see its error")
            if time.monotonic() - began > self.timeout:
                raise DataError(f"waited {self.timeout:.0f} s for the first local rank (process {owner['pid']}) to put "
                                f"dataset '{dataset}' split '{split}' into shared memory ({segment.folder}): "
                                f"{problem}; is that process stuck?")
            time.sleep(POLL_S)

    def close(self) -> None:
        """Remove the run's segments (the owner only); mapped tensors stay valid."""
        if self.finalizer is not None:
            self.finalizer()
            self.finalizer = None
        self.started = False


def _barrier(trainer: Any, name: str) -> None:
    if trainer is not None:
        trainer.strategy.barrier(name)


def segment_name(dataset: str, split: str, key: str) -> str:
    return f"{_safe(dataset)}-{split}-{key}"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:64]


def shm_root(configured: str | None) -> Path:
    """``data.shm_dir``, or ``/dev/shm`` where there is one, else the temporary folder."""
    if configured:
        return Path(configured)
    return Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())


def run_folder(config: RunConfig) -> str:
    """The run's folder name under the shared-memory folder: its name and a hash of its run directory."""
    run_dir = (Path(config.output_dir) / config.name).resolve()
    return f"{PREFIX}{_safe(config.name)}-{hashlib.sha256(str(run_dir).encode()).hexdigest()[:8]}"


def content_key(resolved: ResolvedRun) -> str:
    """A hash of what the segments hold: the data config (not how it is read) and every dataset's metadata."""
    config = resolved.config
    data = config.data.model_dump(mode="json", exclude=set(NOT_CONTENT))
    text = json.dumps({"data": data, "datasets": config.model_dump(mode="json", include={"datasets", "datasets_dir",
                                                                                          "max_datasets"}),
                       "metas": [repr(d.meta) for d in resolved.datasets],
                       "storage": [type(d.storage).__qualname__ for d in resolved.datasets]}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sharing_of(resolved: ResolvedRun) -> Sharing:
    """The run's :class:`Sharing` (whether it is used is decided at ``setup``, by the processes per node)."""
    config, plan = resolved.config, resolved.memory
    return Sharing(shm_root(config.data.shm_dir), run_folder(config),
                   f"'{config.name}' ({Path(config.output_dir) / config.name})", content_key(resolved),
                   config.data.shared_memory, keep=resolved.placement.where != "device",
                   needed=plan.row(plan.chosen).bytes or 0)


def processes_per_node(trainer: dict[str, Any]) -> int:
    """Processes (devices) per node that ``trainer`` asks Lightning for."""
    from core.resolve import _devices

    devices = _devices(trainer.get("devices", "auto"))
    if isinstance(devices, list):
        return max(1, len(devices))
    if isinstance(devices, int) and devices > 0:
        return devices
    if str(trainer.get("accelerator", "auto")) in ("auto", "gpu", "cuda"):  # auto or -1: every visible GPU
        import torch

        return max(1, torch.cuda.device_count())
    return 1


def per_node(plan: MemoryPlan, config: RunConfig, placement: Placement, learners: list[str]) -> MemoryPlan:
    """``plan`` for the trainer's ``num_nodes`` and ``devices``: RAM per node (one copy with shared
    memory, else one per process) and, with placement device, bytes per GPU (``data.shard``: a share
    of the training split). ``learners``: YAML paths of transforms that learn from the training split."""
    data = config.data
    device = placement.where == "device"
    if data.shard and not device:
        raise ConfigError("data.shard", f"true spreads the training split over the GPUs' memory, but this run's "
                          f"samples stay in RAM ({placement.reason})", fix="set data.placement: device, or remove data.shard "
                          "(in RAM the node's processes share one copy: data.shared_memory)")
    if data.shard and learners:
        raise ConfigError(learners[0], "this transform learns from the whole training split, but with data.shard "
                          "each rank holds only its share", fix="give the transform the values it would learn, or "
                          "remove data.shard")
    nodes, processes = int(config.trainer.get("num_nodes", 1) or 1), processes_per_node(config.trainer)
    shared = data.shared_memory is True or (data.shared_memory == "auto" and processes > 1)
    root = shm_root(data.shm_dir)
    existing = next((p for p in (root, *root.parents) if p.is_dir()), Path("/"))
    free = shutil.disk_usage(existing).free + folder_bytes(root / run_folder(config))
    spread = Spread(nodes, processes, shared, data.shard, device, str(root), free)
    ram = (int(data.memory_budget) if data.memory_budget is not None else available_ram()) \
        if plan.where == "accelerator memory" else None
    return MemoryPlan(plan.dataset, plan.rows, plan.chosen, plan.available, plan.where, spread, ram)


def shard_indices(n: int, rank: int, world_size: int, seed: int) -> torch.Tensor:
    """Rank ``rank``'s fixed share of ``n`` training samples under ``data.shard``: drawn once from
    ``seed``, disjoint from the other ranks', ``n // world_size`` of them (the rest are left out), sorted."""
    import numpy as np
    import torch

    order = np.random.default_rng([seed, 16]).permutation(n)
    share = n // world_size
    return torch.from_numpy(np.sort(order[rank * share:(rank + 1) * share]).astype(np.int64))
