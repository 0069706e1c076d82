"""CIFAR-100-MH parsing: the project's vectorised reader against a per-record Python loop.

Writes, into a temporary folder, a binary ``train_batch`` of ``--records`` records (default
60,000) with 2 parameters (random pixels; values drawn inside each parameter's range),
made with ``plugins.cifar100mh.records.encode_records``, plus its
``cifar100mh_dataset_info.json`` (``spec.DatasetInfo`` / ``spec.write_info``). Then times,
best of ``--repeats`` (default 3) after one untimed pass that puts the file in the page cache:

  ours   ``read_batch(path, info, "train")`` (memmap, label checks in NumPy) plus
         materialising the pixels: ``np.ascontiguousarray(records.pixels)``;
  naive  open the file and, record by record, ``f.read(record_size)``; parse N, the
         ids and the values with Python indexing; check N, each id and each value's range;
         copy the pixel bytes into a preallocated (n, 3, 32, 32) uint8 array
         (``np.frombuffer`` per record).

Both must give identical pixels and values (asserted) and report no problems. Prints one
row per reader: seconds (best and median), records/s and the ratio naive / ours
(target: ours at least 20x faster). Run from any directory:

    .venv/bin/python benchmarks/cifar100mh_parse.py [--records 60000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plugins.cifar100mh.records import encode_records, read_batch  # noqa: E402
from plugins.cifar100mh.spec import BATCH_FILES, IMAGE_SHAPE, PIXELS, DatasetInfo, ParameterMapping, write_info  # noqa: E402

PARAMS = {"digit": (0, 99), "size": (3, 12)}  # name: (min, max)


def make_dataset(root: Path, n: int, seed: int = 0) -> tuple[DatasetInfo, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, *IMAGE_SHAPE), dtype=np.uint8)
    values = np.stack([rng.integers(lo, hi + 1, size=n) for lo, hi in PARAMS.values()], axis=1).astype(np.uint8)
    info = DatasetInfo(
        dataset_name="bench", n_samples=n, train_samples=n, test_samples=0, parameter_names=list(PARAMS),
        parameter_mappings={name: ParameterMapping(min=lo, max=hi) for name, (lo, hi) in PARAMS.items()},
    )
    write_info(root, info)
    encode_records(pixels, values).tofile(root / BATCH_FILES["train"])
    return info, pixels, values


def ours(path: Path, info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    records, problems = read_batch(path, info, "train")
    assert records is not None and not problems, problems[:3]
    return np.ascontiguousarray(records.pixels), records.values


def naive(path: Path, info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    names = info.parameter_names
    n_params = len(names)
    low = [info.parameter_mappings[name].min for name in names]
    high = [info.parameter_mappings[name].max for name in names]
    record_size = 1 + 2 * n_params + PIXELS
    count = path.stat().st_size // record_size
    pixels = np.empty((count, *IMAGE_SHAPE), dtype=np.uint8)
    values = np.zeros((count, n_params), dtype=np.uint8)
    problems = []
    with open(path, "rb") as f:
        for i in range(count):
            rec = f.read(record_size)
            if len(rec) != record_size:
                problems.append(f"record {i}: truncated")
                break
            n = rec[0]
            if n != n_params:
                problems.append(f"record {i}: N is {n}")
                continue
            seen = set()
            for k in range(n):
                pid, val = rec[1 + 2 * k], rec[2 + 2 * k]
                if pid >= n_params or pid in seen:
                    problems.append(f"record {i}: bad parameter id {pid}")
                    continue
                seen.add(pid)
                if not low[pid] <= val <= high[pid]:
                    problems.append(f"record {i}: {names[pid]} = {val} out of range")
                values[i, pid] = val
            pixels[i] = np.frombuffer(rec, dtype=np.uint8, count=PIXELS, offset=1 + 2 * n_params).reshape(IMAGE_SHAPE)
    assert not problems, problems[:3]
    return pixels, values


def timed(fn, path: Path, info: DatasetInfo, repeats: int) -> tuple[list[float], tuple[np.ndarray, np.ndarray]]:
    times, out = [], None
    for _ in range(repeats):
        out = None  # drop the previous result before the next run
        start = time.perf_counter()
        out = fn(path, info)
        times.append(time.perf_counter() - start)
    return times, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        info, pixels, values = make_dataset(root, args.records)
        path = root / BATCH_FILES["train"]
        size = path.stat().st_size
        path.read_bytes()  # untimed: the file is in the page cache for both readers
        results = {}
        for name, fn in (("ours", ours), ("naive", naive)):
            times, (got_pixels, got_values) = timed(fn, path, info, args.repeats)
            assert np.array_equal(got_pixels, pixels) and np.array_equal(got_values, values), f"{name}: wrong data"
            results[name] = (times, got_pixels, got_values)
        same = np.array_equal(results["ours"][1], results["naive"][1]) and np.array_equal(results["ours"][2], results["naive"][2])
        assert same, "ours and naive disagree"
    print(f"CIFAR-100-MH binary train_batch: {args.records:,} records x {1 + 2 * len(PARAMS) + PIXELS} bytes "
          f"({size / 1e6:.1f} MB), {len(PARAMS)} parameters, best of {args.repeats}, file in page cache")
    print(f"{'reader':<44}{'best s':>9}{'median s':>10}{'records/s':>13}{'x ours':>9}")
    best_ours = min(results["ours"][0])
    labels = {"ours": "ours  read_batch + ascontiguousarray(pixels)", "naive": "naive per-record Python loop"}
    for name, (times, _, _) in results.items():
        best = min(times)
        print(f"{labels[name]:<44}{best:>9.3f}{statistics.median(times):>10.3f}{args.records / best:>13,.0f}{best / best_ours:>9.1f}")
    ratio = min(results["naive"][0]) / best_ours
    print(f"pixels and values identical: {same}; ours is {ratio:.1f}x faster than the naive loop "
          f"(target >= 20x: {'met' if ratio >= 20 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
