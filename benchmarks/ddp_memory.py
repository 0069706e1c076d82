"""One copy per node: the memory a DDP run's processes hold, with and without shared memory.

Writes once, in a temporary directory, two HDF5 sessions of random uint8 images (``stim``
N x 1 x SIZE x SIZE, chunked 256 trials per HDF5 chunk, with a ``label`` head): a big one
(default N = 300,000 at SIZE 32: 307 MB of pixels) and a small one (3,200 trials of the same
size: enough for the same training steps on two ranks; the baseline of the processes
themselves: Python, torch, Lightning, the model, the steps). Small images keep a batch's
tensors small (32 KB), so the allocator's handling of them moves the peaks by little; at
SIZE 120 (20,000 trials) the same measurement moved by +-25 MB from run to run.
Then it runs the real CLI, ``core-train fit`` (format ``hdf5`` in ``mode: memory``, storage
``uint8``, one epoch of 40 training and 5 validation batches of 32, a tiny CNN, on the CPU,
gloo), for

  devices 1                      one process, its samples in its own memory (as before issue 16);
  devices 2, strategy ddp        two processes, one copy in shared memory (data.shared_memory: auto);
  devices 2, shared_memory false two processes, a copy each (for comparison);

on the small and on the big session (the same steps on both), and samples every 50 ms the
process tree (the CLI's process and every descendant: the second rank Lightning starts):

  peak PSS   the total PSS of the tree (/proc/<pid>/smaps_rollup; PSS divides a page shared
             by k processes by k). It includes the processes' share of the shared libraries
             (torch's alone is hundreds of MB), which moves with every other torch process on
             the machine, and it counts a page of a shared-memory segment only once some
             process has touched it (a few batches touch few pages);
  held       so the data is measured as the tree's anonymous PSS (``Pss_Anon``: the heap,
             where one process keeps its samples) plus the growth of the machine's ``Shmem``
             (/proc/meminfo: the segments in /dev/shm, touched or not, counted once; other
             jobs' shared memory moves it too): its peak.

The data's share of a run is its ``held`` peak minus the small run's with the same processes;
the target is that two ranks hold at most 1.1x the data bytes of one. Linux only. Run from the
repository root:

    .venv/bin/python benchmarks/ddp_memory.py [--n 300000] [--size 32]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.sessions_io import tree  # noqa: E402 (the process tree, from /proc)

MIB = 2**20
TARGET = 1.1
SMALL = 3200  # trials of the baseline session: 2 ranks x 40 batches of 32 fit in its 80% training split
CONFIG = """
name: {name}
output_dir: {out}
data:
  format: {{hdf5: {{paths: {path}, mode: memory}}}}
  storage: uint8
  transforms: [pixelnorm]
  batch_size: 32
model: {{simple_cnn: {{conv1: 4, conv2: 4, fc_hidden: 8}}}}
logging: [csv]
callbacks: []
trainer: {{max_epochs: 1, limit_train_batches: 40, limit_val_batches: 5, accelerator: cpu,
          enable_progress_bar: false, enable_model_summary: false}}
"""
RUNS = {  # label: overrides
    "devices 1": ["trainer.devices=1"],
    "devices 2, shared": ["trainer.devices=2", "trainer.strategy=ddp"],
    "devices 2, not shared": ["trainer.devices=2", "trainer.strategy=ddp", "data.shared_memory=false"],
}


def write_session(path: Path, n: int, size: int) -> int:
    """A session of ``n`` random images; returns the bytes of its pixels."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.attrs["label_classes"] = 10
        stim = f.create_dataset("stim", (n, 1, size, size), dtype="uint8", chunks=(min(n, 256), 1, size, size))
        for start in range(0, n, 2000):
            stop = min(n, start + 2000)
            stim[start:stop] = rng.integers(0, 256, (stop - start, 1, size, size), dtype=np.uint8)
        f.create_dataset("label", data=rng.integers(0, 10, n).astype(np.int64))
    return n * size * size


def pss(pid: int) -> tuple[int, int]:
    """Bytes of ``pid``'s proportional set size, in all and anonymous; 0 once it is gone."""
    fields = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith(("Pss:", "Pss_Anon:")):
                    fields[line.split(":")[0]] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return fields.get("Pss", 0), fields.get("Pss_Anon", 0)


def shmem() -> int:
    """The machine's ``Shmem`` (tmpfs and shared anonymous pages) in bytes."""
    with open("/proc/meminfo") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("Shmem:"))


def peak_pss(command: list[str]) -> tuple[int, int, int, int, float]:
    """Run ``command``; the peaks of its process tree's total PSS and of its anonymous PSS plus the
    machine's Shmem growth, that growth's peak, the most processes seen, the wall time."""
    before = shmem()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    total, held, tmpfs, most, began = 0, 0, 0, 0, time.monotonic()
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()
    while process.poll() is None:
        pids = tree(process.pid)
        sizes = [pss(pid) for pid in pids]
        grown = shmem() - before
        total, held = max(total, sum(s[0] for s in sizes)), max(held, sum(s[1] for s in sizes) + grown)
        tmpfs, most = max(tmpfs, grown), max(most, len(pids))
        time.sleep(0.05)
    reader.join()
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({process.returncode}):\n{''.join(output[-40:])}")
    return total, held, tmpfs, most, time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300_000, help="trials of the big session")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pixels = write_session(folder / "big.h5", args.n, args.size)
        small = write_session(folder / "small.h5", SMALL, args.size)
        print(f"big session: {args.n} trials of 1x{args.size}x{args.size} uint8, {pixels / MIB:.1f} MiB of pixels; "
              f"core-train fit holds train + val (90%): {0.9 * pixels / MIB:.1f} MiB")
        peaks: dict[tuple[str, str], tuple[int, int]] = {}
        print(f"{'run':<24} {'data':<5} {'processes':>9} {'peak PSS':>10} {'held':>10} {'Shmem +':>9} {'wall':>7}")
        for label, overrides in RUNS.items():
            for data in ("small", "big"):
                name = f"{data}-{label.replace(' ', '').replace(',', '-')}"
                config = folder / f"{name}.yaml"
                config.write_text(CONFIG.format(name=name, out=folder / "runs", path=folder / f"{data}.h5"))
                command = [str(Path(sys.executable).parent / "core-train"), "fit", "--config", str(config)]
                command += [part for o in overrides for part in ("--set", o)]
                total, held, tmpfs, processes, wall = peak_pss(command)
                peaks[(label, data)] = total, held
                print(f"{label:<24} {data:<5} {processes:>9} {total / MIB:>9.1f}M {held / MIB:>9.1f}M "
                      f"{tmpfs / MIB:>8.1f}M {wall:>6.1f}s", flush=True)
    held = {label: peaks[(label, "big")][1] - peaks[(label, "small")][1] for label in RUNS}
    one = held["devices 1"]
    print(f"\ndata held (peak of anonymous PSS + Shmem growth, big minus small, whose train + val pixels differ by "
          f"{0.9 * (pixels - small) / MIB:.1f} MiB): " + ", ".join(f"{k} {v / MIB:.1f} MiB" for k, v in held.items()))
    shared, private = held["devices 2, shared"] / one, held["devices 2, not shared"] / one
    print(f"two ranks / one rank, data bytes: shared {shared:.3f}x (target <= {TARGET}x: "
          f"{'met' if shared <= TARGET else 'missed'}), not shared {private:.3f}x")
    whole = {label: peaks[(label, "big")][0] / peaks[("devices 1", "big")][0] for label in RUNS}
    print(f"two ranks / one rank, peak total PSS of the tree (libraries included): shared "
          f"{whole['devices 2, shared']:.3f}x, not shared {whole['devices 2, not shared']:.3f}x")


if __name__ == "__main__":
    main()
