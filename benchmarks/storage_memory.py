"""Storage memory: what each backend holds, what the planner predicts, and the preparation peak.

Writes once, in a temporary directory, an HDF5 file with ``stim`` (N x 3 x 64 x 64 uint8,
chunked 64 samples per HDF5 chunk, uncompressed; default N = 20,000, 246 MB) and ``digit``
(int64 labels). Then, for each storage backend uint8, bfloat16 and float32, in a fresh
subprocess (so its RSS is clean), it builds a ``core.Split`` whose ``stim`` is the h5py
Dataset itself (lazy: ``core/materialise.py`` slices it a chunk at a time) and whose
``digit`` is a NumPy array in RAM, and calls ``backend.materialise(split, prepare)`` with the
backend's default ``chunk_size`` (1024 samples, ``ChunkedStorage``). The run's steps are
[PixelNorm(), FFTWhitening()] for bfloat16 and float32, both at preparation; uint8 gets
[PixelNorm()], which its ``plan()`` puts on the device, so it prepares nothing.

Before measuring, each subprocess materialises the first 8 samples once and drops them, so
that one-time library set-up (h5py's chunk cache, the FFT code, the allocator) is not
counted as data. It then records, in /proc/self/status:

  before  VmRSS just before ``materialise``, after writing "5" to /proc/self/clear_refs
          (which resets the VmHWM peak to the current RSS);
  peak    VmHWM after ``materialise`` (the highest RSS during it);
  after   VmRSS after ``materialise``, with the result still held;
  trimmed VmRSS after glibc's ``malloc_trim(0)`` (a diagnostic column, not a target: it
          shows how much of the growth is freed chunk buffers the allocator kept).

and compares: the bytes held (sum of numel * element_size) against uint8 (theory 1x, 2x,
4x); the planner's estimate, ``core.memory.stored_bytes(meta, layout, bytes_per_value)``
with ``split_sizes = {"train": N, "val": 0, "test": 0}``, against the RSS growth
(after - before; target within 5 %); and the peak growth (peak - before) against the stored
size (target under 1.25x). Linux only. Run from the repository root:

    .venv/bin/python benchmarks/storage_memory.py [--n 20000]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("uint8", "bfloat16", "float32")
SHAPE = (3, 64, 64)
H5_CHUNK = 64  # samples per HDF5 chunk
MIB = 1024 * 1024


def status(field: str) -> int:
    """A field of /proc/self/status in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def write_h5(path: Path, n: int) -> None:
    import h5py
    import numpy as np

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        stim = f.create_dataset("stim", (n, *SHAPE), dtype="uint8", chunks=(H5_CHUNK, *SHAPE))
        for start in range(0, n, 1000):
            stim[start : start + 1000] = rng.integers(0, 256, (min(1000, n - start), *SHAPE), dtype=np.uint8)
        f.create_dataset("digit", data=rng.integers(0, 10, n).astype(np.int64))


def child(backend_name: str, path: str) -> dict:
    """Runs in a fresh interpreter: materialise one backend and report its memory."""
    sys.path.insert(0, str(ROOT))
    import h5py

    from core import DatasetMeta, Split, Step
    from core.kinds import layouts
    from core.memory import stored_bytes
    from plugins.cast.storage import BFloat16Storage, Float32Storage
    from plugins.pixelnorm.transform import PixelNorm
    from plugins.uint8_pixelnorm.storage import Uint8Storage
    from plugins.whitening.transform import FFTWhitening

    backend = {"uint8": Uint8Storage, "bfloat16": BFloat16Storage, "float32": Float32Storage}[backend_name]()
    steps = [Step("transforms[0]", "pixelnorm", PixelNorm())]
    if backend_name != "uint8":
        steps.append(Step("transforms[1]", "fftwhitening", FFTWhitening()))
    prepare, device = backend.plan(steps, "bench")

    f = h5py.File(path, "r")
    stim, labels = f["stim"], f["digit"][:]
    n = len(stim)
    backend.materialise(Split({"stim": stim[:8], "digit": labels[:8]}), prepare)  # warm-up, dropped

    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    t0 = time.perf_counter()
    held = backend.materialise(Split({"stim": stim, "digit": labels}), prepare)
    seconds = time.perf_counter() - t0
    peak, after = status("VmHWM"), status("VmRSS")
    ctypes.CDLL(None).malloc_trim(0)  # diagnostic only: hand freed heap back to the kernel
    trimmed = status("VmRSS")

    meta = DatasetMeta("bench", SHAPE, {"digit": 10}, {"train": n, "val": 0, "test": 0})
    return {
        "backend": backend_name,
        "prepare": [s.name for s in prepare],
        "device": [s.name for s in device],
        "chunk_size": backend.chunk_size,
        "held": sum(t.numel() * t.element_size() for t in held.values()),
        "stim": held["stim"].numel() * held["stim"].element_size(),
        "dtype": str(held["stim"].dtype),
        "planner": stored_bytes(meta, layouts(meta.layout, prepare, meta.name)[-1], backend.bytes_per_value),
        "before": before, "peak": peak, "after": after, "trimmed": trimmed, "seconds": seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="samples of 3 x 64 x 64 uint8")
    parser.add_argument("--child", nargs=2, metavar=("BACKEND", "H5"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stim.h5"
        write_h5(path, args.n)
        size = path.stat().st_size
        for name in BACKENDS:
            out = subprocess.run([sys.executable, __file__, "--child", name, str(path)],
                                 capture_output=True, text=True, check=True, cwd=ROOT)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))

    print(f"storage memory: {args.n} x 3x64x64 uint8 from HDF5 ({size / MIB:.1f} MiB file, "
          f"HDF5 chunks of {H5_CHUNK} samples), one fresh process per backend")
    for r in rows:
        print(f"  {r['backend']}: chunk_size {r['chunk_size']}, prepare {r['prepare'] or '[]'}, "
              f"device {r['device'] or '[]'}, stim held as {r['dtype']}")
    print(f"  {'backend':<9} {'held MiB':>9} {'x uint8':>7} {'planner MiB':>11} {'RSS grew MiB':>12} "
          f"{'planner vs RSS':>14} {'trimmed MiB':>11} {'peak grew MiB':>13} {'peak/stored':>11} {'seconds':>7}")
    base = rows[0]["held"]
    misses = []
    for r in rows:
        grew, peak = r["after"] - r["before"], r["peak"] - r["before"]
        diff = (r["planner"] - grew) / grew * 100
        ratio = peak / r["held"]
        trimmed = r["trimmed"] - r["before"]
        print(f"  {r['backend']:<9} {r['held'] / MIB:>9.1f} {r['held'] / base:>7.2f} {r['planner'] / MIB:>11.1f} "
              f"{grew / MIB:>12.1f} {diff:>+13.1f}% {trimmed / MIB:>11.1f} {peak / MIB:>13.1f} {ratio:>10.2f}x "
              f"{r['seconds']:>7.2f}")
        if abs(diff) > 5:
            misses.append(f"{r['backend']}: planner {diff:+.1f}% off the RSS growth (target within 5%)")
        if ratio >= 1.25:
            misses.append(f"{r['backend']}: preparation peak {ratio:.2f}x the stored size (target under 1.25x)")
    print("  targets: planner within 5% of RSS growth; peak growth under 1.25x the stored size")
    print("\n".join(f"  MISSED {m}" for m in misses) if misses else "  all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
