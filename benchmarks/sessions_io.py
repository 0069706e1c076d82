"""Recording sessions: memory and throughput of ``hdf5`` (lazy and in memory) and ``webdataset``.

Writes, once, into a temporary folder (or ``--data DIR``, reused when it already holds the
same sessions), ``--sessions`` synthetic sessions (default 40 x 1,000 trials of 64 x 64
uint8 stim, 200 float32 responses, contrast, label) with the project's own writer
(``HDF5Tool().make_sessions``, what ``core-data make-sessions`` runs) in three layouts of the
same data: ``contiguous`` (chunk_rows=0), ``chunked`` (chunk_rows=256, uncompressed) and
``gzip`` (chunk_rows=256, gzip); and, when the ``webdataset`` plugin's tool works, converts
the chunked sessions into shards with ``core-data convert --from hdf5 --to webdataset``.
Every loader reads the train split (80 % of each session: 32,000 trials by default) with
batch ``--batch`` (256) and ``--workers`` (2) DataLoader workers.

Each configuration runs in its own subprocess. This process samples the memory of that
subprocess's whole tree (it and its DataLoader workers) every 50 ms: the sum of ``Pss`` in
``/proc/<pid>/smaps_rollup`` (PSS splits a page shared by k processes k ways, so the
workers' copy-on-write pages are counted once). It reports the tree's PSS after imports,
after set-up (before the loader starts) and its peak while the batches are read.

  1. memory and samples/s (chunked layout, one full epoch each):
     hdf5 lazy     ``HDF5Sessions(paths, mode="lazy").open("train")`` (a ``SessionRows``) in
                   ``core.data.DiskBatches``, sampled by a list of random index tensors
                   (``IndexBatches``'s items), ``DataLoader(batch_size=None, num_workers=2,
                   persistent_workers=True)``: the core's path (core/data.py). With the
                   plugin's defaults (``max_open_files=8``, chunk cache of 4 chunks), with
                   ``max_open_files=40``, and with ``max_open_files=40, rdcc_nbytes=0``.
     hdf5 memory   ``mode="memory"``: ``Uint8Storage().materialise(split, [])`` (timed
                   apart), then ``TensorBatches`` in the same DataLoader.
     webdataset    the plugin's ``WebDatasetFormat(folder).open("train").batches(...)``
                   (shuffle_buffer 1000, its default), and with shuffle_buffer 0.
  2. the seed's table (File handles / Memory per batch / Total) from measurements: PSS growth
     of one process after reading one batch from every session and dropping it, with 8 (the
     default) and 40 open files, and 40 with ``rdcc_nbytes=0`` (the pool keeps each open
     file's datasets, so their chunk caches stay); the bytes of one batch; part 1's peaks;
     the shuffle buffer: Python's traced peak (``tracemalloc``) of the plugin's pipeline run
     in one process with shuffle_buffer 1000 minus that with 0, and the bytes one buffered
     sample holds.
  3. ours (hdf5 lazy) against a naive peer: a torch Dataset that opens each file in each
     worker on first use and reads ONE trial per ``__getitem__`` (h5py's default chunk
     cache), ``DataLoader(batch_size=256, shuffle=True, num_workers=2)`` with the default
     collate; on each layout, ``--samples`` timed samples (``--gzip-samples`` on gzip)
     after 2 warm-up batches; ours with the three option sets of part 1 (on the chunked
     layout, part 1's epochs). Then a profile of ours, in one process without workers: ms
     per batch with each option set, per field, and the floor: ``os.pread`` of each trial
     and field at its byte offset (``RowOffsets``, uncompressed layouts only).
  4. webdataset: sample identities (a hash of each stim) from the plugin's Stream for rank 0
     and 1 of 2, 2 workers each, one epoch, against the train split's; and samples/s of the
     plugin against a plain ``webdataset.WebDataset(urls, shardshuffle=...).shuffle(1000)
     .decode().to_tuple(...).batched(256)`` pipeline (its default ``split_by_worker``; the
     batch stacked into a dict of tensors) in ``DataLoader(batch_size=None, num_workers=2)``.
     The plugin's own figure is part 1's.

Nothing asserts a wall-clock limit: the ratios are printed with the issue's targets. Linux
only (/proc). From the repository root:

    .venv/bin/python benchmarks/sessions_io.py [--sessions 40] [--trials 1000] [--workers 2] [--data DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import glob
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIB = 2**20
WARMUP = 2  # batches skipped before the throughput clock starts (worker start-up)
LAYOUTS = {"contiguous": (0, "none"), "chunked": (256, "none"), "gzip": (256, "gzip")}
PEER_TARGET = 3.0  # issue 7: ours >= 3x the naive peer on the chunked layout


# ---------------------------------------------------------------------------------------
# memory of a process tree


def pss(pid: int) -> int | None:
    """Proportional set size of one process in bytes (None once it has exited)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def tree(root: int) -> list[int]:
    """``root`` and every descendant (there is no /proc/*/children here: parents from stat)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children[ppid].append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children[pid]
    return found


class TreeMonitor(threading.Thread):
    """Samples the summed PSS of a process tree every ``interval`` s: (time.time(), bytes, processes)."""

    def __init__(self, root: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.samples: list[tuple[float, int, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        pids, scanned = [self.root], 0.0
        while not self.done.is_set():
            now = time.time()
            if now - scanned > 0.2:  # the tree changes only when workers start or stop
                pids, scanned = tree(self.root), now
            values = [v for v in (pss(p) for p in pids) if v is not None]
            if values:
                self.samples.append((now, sum(values), len(values)))
            self.done.wait(self.interval)

    def at(self, t: float) -> int:
        """The last sample taken at or before ``t``."""
        before = [s for s in self.samples if s[0] <= t]
        return (before[-1] if before else self.samples[0])[1]

    def peak(self, start: float, end: float) -> tuple[int, int]:
        window = [s for s in self.samples if start <= s[0] <= end] or [min(self.samples, key=lambda s: abs(s[0] - end))]
        return max(s[1] for s in window), max(s[2] for s in window)


def run_child(spec: dict[str, Any], monitor: bool = True) -> dict[str, Any]:
    """Run ``spec`` in a fresh interpreter; its result plus the tree's PSS at its marks."""
    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watch = TreeMonitor(proc.pid) if monitor else None
    if watch:
        watch.start()
    out, err = proc.communicate()
    if watch:
        watch.done.set()
        watch.join()
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec['kind']} failed (exit {proc.returncode}):\n{err[-4000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    if watch and watch.samples and "t_start" in result:
        result["pss_imported"] = watch.at(result["t_imported"])
        result["pss_ready"] = watch.at(result["t_start"])
        result["pss_peak"], result["procs"] = watch.peak(result["t_start"], result["t_end"])
    return result


# ---------------------------------------------------------------------------------------
# readers (imported in the children only)


class PeerSessions:
    """The naive peer: one trial per ``__getitem__``, each file opened (default chunk cache) on
    first use in the process that reads, every dataset looked up on each read."""

    def __init__(self, paths: list[str], files: Any, rows: Any) -> None:
        self.paths, self.files, self.rows = paths, files, rows
        self.handles: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import h5py

        file, row = int(self.files[i]), int(self.rows[i])
        handle = self.handles.get(file)
        if handle is None:
            handle = self.handles[file] = h5py.File(self.paths[file], "r")
        return {"stim": handle["stim"][row][None], "responses": handle["responses"][row],
                "contrast": handle["contrast"][row], "label": handle["label"][row]}


class RowOffsets:
    """The floor for uncompressed layouts: ``os.pread`` of each trial at its byte offset in
    the file (offsets from HDF5's chunk index or the contiguous dataset's address)."""

    def __init__(self, split: Any, fields: tuple[str, ...] = ("stim", "responses", "contrast", "label")) -> None:
        import h5py
        import numpy as np

        self.split, self.fields, self.fds = split, fields, {}
        self.offsets: dict[tuple[int, str], Any] = {}
        for index, info in enumerate(split.sessions):
            with h5py.File(info.path, "r") as f:
                for name in fields:
                    data = f[name]
                    if data.compression:
                        raise ValueError("compressed")
                    row = int(np.prod(data.shape[1:])) * data.dtype.itemsize
                    rows = np.arange(data.shape[0])
                    if data.chunks is None:
                        offsets = data.id.get_offset() + rows * row
                    else:
                        per = data.chunks[0]
                        starts = {}
                        for c in range(data.id.get_num_chunks()):
                            chunk = data.id.get_chunk_info(c)
                            starts[chunk.chunk_offset[0]] = chunk.byte_offset
                        offsets = np.array([starts[r - r % per] for r in rows]) + (rows % per) * row
                    self.offsets[index, name] = (offsets, row)

    def read(self, indices: Any) -> dict[str, Any]:
        import numpy as np

        files, rows = self.split.files[indices], self.split.rows[indices]
        shapes = self.split.sessions[0].sample_shapes
        dtypes = {"stim": np.uint8, "responses": np.float32, "contrast": np.float32, "label": np.int64}
        out = {name: np.empty((len(indices), *shapes[name]), dtypes[name]) for name in self.fields}
        for file in np.unique(files).tolist():
            fd = self.fds.get(file)
            if fd is None:
                fd = self.fds[file] = os.open(self.split.sessions[file].path, os.O_RDONLY)
            where = np.flatnonzero(files == file).tolist()
            for name in self.fields:
                offsets, size = self.offsets[file, name]
                flat = out[name].reshape(len(indices), -1).view(np.uint8)
                for w, r in zip(where, rows[where].tolist()):
                    flat[w] = np.frombuffer(os.pread(fd, size, int(offsets[r])), np.uint8)
        return out


def stim_ids(stim: Any) -> list[bytes]:
    """One identity per sample: a hash of its stim bytes."""
    import numpy as np

    rows = np.ascontiguousarray(stim).reshape(len(stim), -1)
    return [hashlib.blake2b(row.tobytes(), digest_size=8).digest() for row in rows]


# ---------------------------------------------------------------------------------------
# children


def _mark(result: dict[str, Any], name: str) -> None:
    result[name] = time.time()
    time.sleep(0.25)  # let the monitor take a sample at this mark


def drain(loader: Any, limit: int | None, result: dict[str, Any], ids: list[bytes] | None = None) -> None:
    """Time to first batch; then WARMUP batches skipped and up to ``limit`` samples timed."""
    _mark(result, "t_start")
    start = time.perf_counter()
    it = iter(loader)
    seen, batches, timed, clock = 0, 0, 0, None
    for batch in it:
        n = len(batch["stim"])
        if ids is not None:
            ids += stim_ids(batch["stim"].numpy())
        if batches == 0:
            result["first_batch_s"] = time.perf_counter() - start
            result["batch_bytes"] = sum(v.numel() * v.element_size() for v in batch.values())
            result["fields"] = {k: [str(v.dtype), list(v.shape)] for k, v in batch.items()}
        seen += n
        batches += 1
        if batches == WARMUP:
            clock = time.perf_counter()
        elif batches > WARMUP:
            timed += n
            if limit and timed >= limit:
                break
    elapsed = time.perf_counter() - clock if clock else float("nan")
    result.update(samples=seen, timed=timed, seconds=elapsed, rate=timed / elapsed if timed else float("nan"),
                  epoch_done=not (limit and timed >= limit))
    del it
    result["t_end"] = time.time()


def child_loader(spec: dict[str, Any]) -> dict[str, Any]:
    """One loader configuration, timed; marks for the parent's memory monitor."""
    result: dict[str, Any] = {"kind": spec["kind"]}
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from core.data import DiskBatches, TensorBatches
    from plugins.hdf5.format import HDF5Sessions

    _mark(result, "t_imported")
    kind, batch, workers = spec["kind"], spec["batch"], spec["workers"]
    paths = sorted(glob.glob(spec["paths"])) if "paths" in spec else []
    loader: Any
    if kind in ("lazy", "memory"):
        fmt = HDF5Sessions(paths, mode=kind, **spec.get("options", {}))
        split = fmt.open("train")
        if kind == "memory":
            from plugins.uint8_pixelnorm.storage import Uint8Storage

            t0 = time.perf_counter()
            held = Uint8Storage().materialise(split, [])
            result["materialise_s"] = time.perf_counter() - t0
            result["held_bytes"] = sum(v.numel() * v.element_size() for v in held.values())
            dataset: Any = TensorBatches(held)
        else:
            dataset = DiskBatches(split)
        n = len(dataset)
        order = torch.from_numpy(np.random.default_rng(0).permutation(n))
        sampler = list(torch.split(order[: n - n % batch], batch))  # IndexBatches' items, drop_last
        loader = DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=workers,
                            persistent_workers=workers > 0)
    elif kind == "peer":
        fmt = HDF5Sessions(paths, mode="lazy")
        files, rows = fmt.assignment["train"]
        peer = PeerSessions(paths, files, rows)
        ours = fmt.open("train").read(np.arange(8))
        mine = {k: np.stack([peer[i][k] for i in range(8)]) for k in ours}
        result["same_samples"] = all(np.array_equal(ours[k], mine[k]) for k in ours)
        peer.handles.clear()  # opened again in each worker, as the peer would
        loader = DataLoader(peer, batch_size=batch, shuffle=True, num_workers=workers)
    elif kind in ("wds", "wds_plain"):
        loader = wds_loader(spec)
    else:
        raise ValueError(kind)
    drain(loader, spec.get("limit"), result)
    return result


def wds_loader(spec: dict[str, Any]) -> Any:
    from torch.utils.data import DataLoader

    from plugins.webdataset.format import WebDatasetFormat

    fmt = WebDatasetFormat(spec["folder"], **spec.get("options", {}))
    stream = fmt.open("train")
    if spec["kind"] == "wds":
        return stream.batches(batch_size=spec["batch"], train=True, seed=0, epoch=lambda: 0, rank=0, world_size=1,
                              num_workers=spec["workers"])
    import numpy as np
    import torch
    import webdataset as wds

    fields = ["stim.npy", "cls", *[f"{name}.npy" for name in fmt.spec.fields]]
    names = ["stim", "label", *fmt.spec.fields]

    def collate(samples: list[tuple]) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(np.stack([np.asarray(s[i]) for s in samples]))
                for i, name in enumerate(names)}

    plain = (wds.WebDataset(stream.shards, shardshuffle=len(stream.shards), seed=0)
             .shuffle(1000).decode().to_tuple(*fields).batched(spec["batch"], collation_fn=collate))
    return DataLoader(plain, batch_size=None, num_workers=spec["workers"])


def child_handles(spec: dict[str, Any]) -> dict[str, Any]:
    """PSS growth of one process after reading one batch from every session."""
    import ctypes

    import numpy as np

    from plugins.hdf5.format import HDF5Sessions

    paths = sorted(glob.glob(spec["paths"]))
    fmt = HDF5Sessions(paths, mode="lazy", max_open_files=spec["max_open"], rdcc_nbytes=spec.get("cache"))
    split = fmt.open("train")
    rng = np.random.default_rng(0)
    per_file = [np.flatnonzero(split.files == f) for f in range(len(paths))]
    split.read(per_file[0][:8])  # warm-up (h5py's first read sets up its selection code), dropped
    gc.collect()
    before = pss(os.getpid())
    for rows in per_file:
        batch = split.read(rng.choice(rows, size=min(spec["batch"], len(rows)), replace=False))
    batch_bytes = sum(v.nbytes for v in batch.values())
    del batch
    gc.collect()
    after = pss(os.getpid())
    ctypes.CDLL(None).malloc_trim(0)  # diagnostic: hand the allocator's free pages back
    trimmed = pss(os.getpid())
    return {"before": before, "after": after, "trimmed": trimmed, "open": fmt.pool.open_count(),
            "opened": fmt.pool.opened, "batch_bytes": batch_bytes}


def child_profile(spec: dict[str, Any]) -> dict[str, Any]:
    """ms per batch of our lazy reads in one process (no workers), per option set and field."""
    import numpy as np

    from plugins.hdf5.format import HDF5Sessions

    paths = sorted(glob.glob(spec["paths"]))
    batch, reps = spec["batch"], spec["reps"]
    rows: list[dict[str, Any]] = []

    def timed(label: str, read: Any, opened: Any = None) -> None:
        rng = np.random.default_rng(1)
        n = spec["n"]
        read(rng.permutation(n)[:batch])  # warm-up: opens files, dropped
        first = opened() if opened else 0
        t0 = time.perf_counter()
        for _ in range(reps):
            read(rng.permutation(n)[:batch])
        ms = (time.perf_counter() - t0) / reps * 1000
        rows.append({"label": label, "ms": ms, "opened": (opened() - first) / reps if opened else None})

    def lazy(**options: Any) -> Any:
        fmt = HDF5Sessions(paths, mode="lazy", **options)
        return fmt.open("train"), fmt.pool

    for label, options in (
        ("plugin defaults (max_open_files=8)", {}),
        ("max_open_files=40", {"max_open_files": 40}),
        ("max_open_files=40, rdcc_nbytes=0", {"max_open_files": 40, "rdcc_nbytes": 0}),
    ):
        split, pool = lazy(**options)
        spec["n"] = len(split)
        timed(label, split.read, lambda pool=pool: pool.opened)
    for options in ({"max_open_files": 40}, {"max_open_files": 40, "rdcc_nbytes": 0}):
        split, pool = lazy(**options)
        for fields in (["stim"], ["responses"], ["contrast", "label"]):
            timed(f"  {', '.join(f'{k}={v}' for k, v in options.items())}: {' + '.join(fields)} only",
                  lambda idx, fields=fields, split=split: split.read_fields(idx, fields), lambda pool=pool: pool.opened)
    try:
        floor = RowOffsets(split)
        timed("floor: os.pread per trial and field (no HDF5 call)", floor.read)
    except ValueError:
        pass
    return {"rows": rows}


def child_ranks(spec: dict[str, Any]) -> dict[str, Any]:
    """Sample identities that the plugin's Stream gives each rank of ``world`` in one epoch."""
    from plugins.webdataset.format import WebDatasetFormat

    fmt = WebDatasetFormat(spec["folder"])
    out: dict[str, Any] = {}
    for train in (True, False):
        for rank in range(spec["world"]):
            stream = fmt.open("train")
            ids: list[bytes] = []
            for batch in stream.batches(batch_size=spec["batch"], train=train, seed=0, epoch=lambda: 0, rank=rank,
                                        world_size=spec["world"], num_workers=spec["workers"]):
                ids += stim_ids(batch["stim"].numpy())
            out[f"{'train' if train else 'eval'}{rank}"] = [i.hex() for i in ids]
    return out


def child_buffer(spec: dict[str, Any]) -> dict[str, Any]:
    """The shuffle buffer's memory: Python's traced peak while the plugin's pipeline runs in this
    process (no workers) with shuffle_buffer 1000 and 0; and the bytes one buffered sample holds
    (the raw sample dict as read from the tar)."""
    import tracemalloc

    from plugins.webdataset.format import WebDatasetFormat
    from plugins.webdataset.tarfiles import shard_samples

    traced: dict[int, int] = {}
    for buffer in (1000, 0):
        stream = WebDatasetFormat(spec["folder"], shuffle_buffer=buffer).open("train")
        batches = stream.batches(batch_size=spec["batch"], train=True, seed=0, epoch=lambda: 0, rank=0, world_size=1,
                                 num_workers=0)
        tracemalloc.start()
        for i, batch in enumerate(batches):
            if i == 12:
                break
        del batch
        traced[buffer] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    fmt = WebDatasetFormat(spec["folder"])
    sizes = []
    for sample in shard_samples(fmt.open("train").shards[0]):
        payload = sum(len(v) for v in sample.values() if isinstance(v, (bytes, bytearray)))
        python = sys.getsizeof(sample) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in sample.items())
        sizes.append((payload, python))
        if len(sizes) == 200:
            break
    return {"payload": sum(s[0] for s in sizes) / len(sizes), "python": sum(s[1] for s in sizes) / len(sizes),
            "keys": sorted(k for k in sample), "traced": traced}


CHILDREN = {"handles": child_handles, "profile": child_profile, "ranks": child_ranks, "buffer": child_buffer}


# ---------------------------------------------------------------------------------------
# the parent


def write_layouts(data: Path, args: argparse.Namespace) -> dict[str, float]:
    """The sessions in each layout (same seed, so the same trials); seconds per layout."""
    from plugins.hdf5.tool import HDF5Tool

    stamp = {"sessions": args.sessions, "trials": args.trials, "size": args.size, "neurons": args.neurons}
    marker = data / "sessions.json"
    if marker.exists() and json.loads(marker.read_text()) == stamp:
        return {}
    seconds = {}
    for layout, (chunk_rows, compression) in LAYOUTS.items():
        shutil.rmtree(data / layout, ignore_errors=True)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            HDF5Tool().make_sessions(data / layout, sessions=args.sessions, trials=args.trials, size=args.size,
                                     neurons=args.neurons, chunk_rows=chunk_rows, compression=compression)
        seconds[layout] = time.perf_counter() - t0
    shutil.rmtree(data / "shards", ignore_errors=True)
    marker.write_text(json.dumps(stamp))
    return seconds


def write_shards(data: Path, shard_size: int) -> tuple[str | None, float | None]:
    """Convert the chunked sessions to WebDataset shards: (None or why it could not, seconds)."""
    out = data / "shards"
    if (out / "dataset_info.json").exists():
        return None, None
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "core.cli.data", "convert", "--from", "hdf5", "--option",
           f"paths={data / 'chunked'}/*.h5", "--to", "webdataset", "--to-option", f"shard_size={shard_size}", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(out, ignore_errors=True)
        said = (done.stderr or done.stdout).strip()
        return (said.splitlines()[-1] if said else f"exit {done.returncode}"), None
    return None, time.perf_counter() - t0


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64, help="stim is size x size uint8")
    parser.add_argument("--neurons", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=10240, help="samples timed per loader in part 3")
    parser.add_argument("--gzip-samples", type=int, default=2048, help="samples timed per loader on the gzip layout")
    parser.add_argument("--shard-size", type=int, default=1000, help="samples per WebDataset shard")
    parser.add_argument("--data", type=Path, help="folder for the sessions and shards (kept; reused if they match)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(CHILDREN.get(spec["kind"], child_loader)(spec)))
        return 0

    started = time.perf_counter()
    temporary = None
    if args.data is None:
        temporary = tempfile.TemporaryDirectory(prefix="sessions_io_")
        args.data = Path(temporary.name)
    args.data.mkdir(parents=True, exist_ok=True)
    try:
        return report(args, started)
    finally:
        if temporary is not None:
            temporary.cleanup()


def report(args: argparse.Namespace, started: float) -> int:
    import numpy as np
    import torch

    data = args.data
    written = write_layouts(data, args)
    wds_problem, converted = write_shards(data, args.shard_size) if (ROOT / "plugins/webdataset/format.py").exists() \
        else ("plugins/webdataset/format.py does not exist", None)
    base = {"batch": args.batch, "workers": args.workers}
    paths = {layout: str(data / layout / "*.h5") for layout in LAYOUTS}
    size = {layout: sum(f.stat().st_size for f in (data / layout).glob("*.h5")) for layout in LAYOUTS}
    print(f"sessions io: {args.sessions} sessions x {args.trials} trials, stim {args.size}x{args.size} uint8, "
          f"{args.neurons} float32 responses, contrast, label; train split 80%; batch {args.batch}, "
          f"{args.workers} DataLoader workers; torch {torch.__version__}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")
    print("  layouts: " + ", ".join(f"{k} {size[k] / MIB:.0f} MiB" for k in LAYOUTS)
          + (f" (written in {', '.join(f'{v:.0f}' for v in written.values())} s)" if written else " (reused)"))
    from plugins.hdf5.reader import default_cache_bytes
    from plugins.hdf5.session import read_info

    info = read_info(sorted(glob.glob(paths["chunked"]))[0])
    per_chunk = info.chunk_rows["stim"]
    cache, chunk = default_cache_bytes(info), per_chunk * int(np.prod(info.sample_shapes["stim"]))
    share = min(1, cache / (info.n * chunk / per_chunk))
    print(f"  chunked: stim chunks of {per_chunk} trials ({chunk / MIB:.2f} MiB), {-(-info.n // per_chunk)} per "
          f"session; the plugin's default chunk cache, {cache / MIB:.0f} MiB per open dataset, holds {share:.0%} "
          "of a session's stim here (of a real session of gigabytes, a tiny share)")
    if wds_problem:
        print(f"  webdataset: not measured ({wds_problem})")
    else:
        shards = sorted((data / "shards").glob("train-*.tar"))
        print(f"  webdataset: {len(shards)} train shards of {args.shard_size} samples, "
              f"{sum(f.stat().st_size for f in shards) / MIB:.0f} MiB"
              + (f" (core-data convert --to webdataset took {converted:.0f} s)" if converted else " (reused)"))

    # 1. memory and samples/s, one full epoch each
    lazy_options = {"defaults": {}, "max_open_files=40": {"max_open_files": 40},
                    "max_open_files=40, rdcc_nbytes=0": {"max_open_files": 40, "rdcc_nbytes": 0}}
    configs = [(f"hdf5 lazy, {name}", {"kind": "lazy", "paths": paths["chunked"], "options": options})
               for name, options in lazy_options.items()]
    configs.append(("hdf5 memory (uint8)", {"kind": "memory", "paths": paths["chunked"]}))
    if not wds_problem:
        configs += [("webdataset (shuffle 1000)", {"kind": "wds", "folder": str(data / "shards")}),
                    ("webdataset (shuffle 0)", {"kind": "wds", "folder": str(data / "shards"),
                                                "options": {"shuffle_buffer": 0}})]
    part1 = {label: run_child({**spec, **base}) for label, spec in configs}
    print("\n1. memory (PSS of the whole process tree) and samples/s, chunked sessions, one epoch")
    print(f"  {'loader':<44} {'procs':>5} {'setup s':>7} {'1st batch s':>11} {'samples':>7} {'samples/s':>9} "
          f"{'imports MiB':>11} {'ready MiB':>9} {'peak MiB':>8} {'peak-imports':>12}")
    for label, r in part1.items():
        print(f"  {label:<44} {r['procs']:>5} {r.get('materialise_s', 0):>7.2f} {r['first_batch_s']:>11.2f} "
              f"{r['samples']:>7} {r['rate']:>9.0f} {mib(r['pss_imported']):>11} {mib(r['pss_ready']):>9} "
              f"{mib(r['pss_peak']):>8} {mib(r['pss_peak'] - r['pss_imported']):>12}")
    mem = part1["hdf5 memory (uint8)"]
    print(f"  hdf5 memory holds {mib(mem['held_bytes'])} MiB of tensors (train split); its setup s is the "
          "materialisation (Uint8Storage.materialise)")

    # 2. the seed's table
    handles = {label: run_child({"kind": "handles", "paths": paths["chunked"], "batch": args.batch, **extra},
                                monitor=False)
               for label, extra in (("8 handles (default)", {"max_open": 8}), ("40 handles", {"max_open": 40}),
                                    ("40 handles, rdcc_nbytes=0", {"max_open": 40, "cache": 0}))}
    grew = {label: r["after"] - r["before"] for label, r in handles.items()}
    print(f"\n2. the seed's table, measured (one process: PSS growth after reading a batch of {args.batch} "
          f"from each of the {args.sessions} chunked sessions, the batch dropped)")
    print(f"  {'handle pool':<28} {'open':>4} {'opened':>6} {'PSS grew MiB':>12} {'after malloc_trim':>17} "
          f"{'per open file':>13}")
    for label, r in handles.items():
        print(f"  {label:<28} {r['open']:>4} {r['opened']:>6} {mib(grew[label]):>12} "
              f"{mib(r['trimmed'] - r['before']):>17} {mib(grew[label] / r['open']):>13}")
    buffer, traced = None, 0
    if not wds_problem:
        buffer = run_child({"kind": "buffer", "folder": str(data / "shards"), "batch": args.batch}, monitor=False)
        held = buffer["python"] * 1000
        traced = buffer["traced"]["1000"] - buffer["traced"]["0"]
        print(f"  webdataset shuffle buffer (1000 samples, per worker): Python's traced peak with shuffle_buffer "
              f"1000 minus 0: {traced / MIB:.1f} MiB; by count, 1000 x {buffer['python']:.0f} B per sample as held "
              f"(payload {buffer['payload']:.0f} B: {', '.join(k for k in buffer['keys'] if not k.startswith('__'))}) "
              f"= {held / MIB:.1f} MiB. Part 1's tree peak, shuffle 1000 minus 0: "
              f"{mib(part1['webdataset (shuffle 1000)']['pss_peak'] - part1['webdataset (shuffle 0)']['pss_peak'])} "
              "MiB (within the noise of the workers' heaps)")
    lazy, lazy40 = part1["hdf5 lazy, defaults"], part1["hdf5 lazy, max_open_files=40"]
    lean, wds1 = part1["hdf5 lazy, max_open_files=40, rdcc_nbytes=0"], part1.get("webdataset (shuffle 1000)")
    w = args.workers
    table = [
        ("File handles", f"{mib(grew['8 handles (default)'] * w)} / {mib(grew['40 handles'] * w)} / "
         f"{mib(grew['40 handles, rdcc_nbytes=0'] * w)} MiB", "-", "~200 MB / 10-50 MB"),
        ("Memory per batch", f"{lazy['batch_bytes'] / MIB:.2f} MiB",
         f"{wds1['batch_bytes'] / MIB:.2f} MiB" if wds1 else "-", "~300 MB / ~300 MB"),
        ("Shuffle buffer", "-", f"{traced * w / MIB:.1f} MiB" if buffer else "-", "- / ~2-3 GB"),
        ("Total (peak PSS)", f"{mib(lazy['pss_peak'])} / {mib(lazy40['pss_peak'])} / {mib(lean['pss_peak'])} MiB",
         mib(wds1["pss_peak"]) + " MiB" if wds1 else "-", "~1-2 GB / ~2.5-3.5 GB"),
        ("  peak - imports", f"{mib(lazy['pss_peak'] - lazy['pss_imported'])} / "
         f"{mib(lazy40['pss_peak'] - lazy40['pss_imported'])} / {mib(lean['pss_peak'] - lean['pss_imported'])} MiB",
         mib(wds1["pss_peak"] - wds1["pss_imported"]) + " MiB" if wds1 else "-", "(the tree's growth after imports)"),
    ]
    print(f"  for {w} workers; HDF5 (lazy): defaults (8 handles) / max_open_files=40 / "
          "max_open_files=40, rdcc_nbytes=0")
    print(f"  {'':<18} {'HDF5 (lazy)':>30} {'WebDataset':>12}   seed's estimate (HDF5 / WebDataset)")
    for name, hdf5, webdataset, seed in table:
        print(f"  {name:<18} {hdf5:>30} {webdataset:>12}   {seed}")

    # 3. ours against the naive peer
    limits = {"contiguous": args.samples, "chunked": args.samples, "gzip": args.gzip_samples}
    rows3 = []
    for layout in LAYOUTS:
        limit = limits[layout]
        peer = run_child({"kind": "peer", "paths": paths[layout], "limit": limit, **base})
        for name, options in lazy_options.items():
            if layout == "chunked":  # part 1's full epochs
                ours = part1[f"hdf5 lazy, {name}"]
            else:
                ours = run_child({"kind": "lazy", "paths": paths[layout], "limit": limit, "options": options, **base})
            rows3.append((layout, f"ours, {name}", ours, peer))
        rows3.append((layout, "naive peer", peer, peer))
    print(f"\n3. ours (hdf5 lazy) against the naive peer (one trial per __getitem__, default collate); samples/s "
          f"after {WARMUP} warm-up batches (ours on chunked: part 1's epochs)")
    print(f"  {'layout':<10} {'loader':<38} {'samples':>7} {'samples/s':>9} {'peak MiB':>8} {'x peer':>7}")
    for layout, label, r, peer in rows3:
        print(f"  {layout:<10} {label:<38} {r['timed']:>7} {r['rate']:>9.0f} {mib(r['pss_peak']):>8} "
              f"{r['rate'] / peer['rate']:>6.1f}x")
    same = all(r["same_samples"] for _, label, r, _ in rows3 if label == "naive peer")
    ratios = {label: r["rate"] / p["rate"] for layout, label, r, p in rows3 if layout == "chunked"}
    print(f"  peer and ours read identical trials: {same}; chunked, ours / peer (target >= {PEER_TARGET:.0f}x): "
          + "; ".join(f"{label[6:]} {x:.1f}x {'met' if x >= PEER_TARGET else 'MISSED'}"
                      for label, x in ratios.items() if label.startswith("ours")))

    profiles = {layout: run_child({"kind": "profile", "paths": paths[layout], "layout": layout, "batch": args.batch,
                                   "reps": 2 if layout == "gzip" else 10}, monitor=False) for layout in LAYOUTS}
    print(f"\n   profile of ours (hdf5 lazy): ms to read one batch of {args.batch} random train trials in one process "
          "(no workers), and files opened per batch")
    print(f"  {'reader':<60} " + " ".join(f"{layout:>10} {'opened':>6}" for layout in LAYOUTS))
    labels = [row["label"] for row in profiles["chunked"]["rows"]]
    for label in labels:
        cells = []
        for layout in LAYOUTS:
            row = next((r for r in profiles[layout]["rows"] if r["label"] == label), None)
            opened = f"{row['opened']:.1f}" if row and row["opened"] is not None else "-"
            cells.append(f"{row['ms']:>10.1f} {opened:>6}" if row
                         else f"{'-':>10} {'-':>6}")
        print(f"  {label:<60} " + " ".join(cells))

    # 4. webdataset: every sample once per epoch; plugin against a plain pipeline
    if not wds_problem:
        ranks = run_child({"kind": "ranks", "folder": str(data / "shards"), "world": 2, **base}, monitor=False)
        expected = expected_ids(paths["chunked"])
        print(f"\n4. webdataset: 2 ranks x {args.workers} workers, one epoch of the train split "
              f"({len(expected)} samples, {len(set(expected))} distinct stims)")
        for mode in ("train", "eval"):
            got = ranks[f"{mode}0"] + ranks[f"{mode}1"]
            counts: dict[str, int] = defaultdict(int)
            for sample in got:
                counts[sample] += 1
            twice = sum(1 for c in counts.values() if c > 1)
            missing = len(set(expected) - set(counts))
            alien = len(set(counts) - set(expected))
            tails = sum(len(ranks[f"eval{r}"]) % args.batch for r in (0, 1))
            print(f"  train={mode == 'train'!s:<5}: rank 0 {len(ranks[f'{mode}0'])}, rank 1 {len(ranks[f'{mode}1'])} "
                  f"samples; seen more than once {twice}, never seen {missing}, not in the split {alien}"
                  + ("  -> every sample exactly once" if not (twice or missing or alien) else "")
                  + (f" (= each rank's last partial batch, dropped when training)" if mode == "train" and missing
                     and missing == tails and not (twice or alien) else ""))
        plain = run_child({"kind": "wds_plain", "folder": str(data / "shards"), **base})
        plugin = part1["webdataset (shuffle 1000)"]
        print(f"  plugin {plugin['rate']:.0f} samples/s ({plugin['samples']} samples), plain "
              f"WebDataset(urls).shuffle(1000).decode() + batched {plain['rate']:.0f} samples/s "
              f"({plain['samples']} samples): plugin / plain {plugin['rate'] / plain['rate']:.2f}x; "
              f"peak PSS {mib(plugin['pss_peak'])} vs {mib(plain['pss_peak'])} MiB")
    print(f"\n  total {time.perf_counter() - started:.0f} s, load average at the end {os.getloadavg()[0]:.2f}")
    return 0


def expected_ids(pattern: str) -> list[str]:
    """Identities of the train split's samples, from the sessions themselves."""
    import numpy as np

    from plugins.hdf5.format import HDF5Sessions

    split = HDF5Sessions(sorted(glob.glob(pattern)), mode="lazy", max_open_files=64).open("train")
    ids: list[str] = []
    for start in range(0, len(split), 4096):
        stim = split.read_fields(np.arange(start, min(start + 4096, len(split))), ["stim"])["stim"]
        ids += [i.hex() for i in stim_ids(stim)]
    return ids


if __name__ == "__main__":
    sys.exit(main())
