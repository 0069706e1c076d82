"""Start-up cost of the console scripts, against ``import torch`` as the reference.

Measures the wall time (median and min over N repeats, each a fresh subprocess, after one
untimed warm-up run of each command) of:

  (a) ``python -c "import torch"``                                  the reference
  (b) ``core-plugins``                                              (python -m core.cli.plugins)
  (c) ``core-train --config configs/quickstart.yaml --dry-run``     (python -m core.cli.train ...)

and prints a table with seconds and the ratio of (b) and (c) to (a). It then runs the main()
of (b) and (c) once more in a subprocess and prints, as JSON, which of the heavy modules
ffcv, numba, h5py, webdataset, torch and lightning ended up in ``sys.modules``. It exits 1
if ffcv, numba, h5py or webdataset is imported by either (these are optional plugin
dependencies that listing plugins or a dry run must never pull in).

Run it from anywhere, with the project's interpreter:

    .venv/bin/python benchmarks/startup.py [--repeats N]      # N defaults to 5

Standard library only; commands run with the repository root as their working directory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CONFIG = "configs/quickstart.yaml"
WATCHED = ("ffcv", "numba", "h5py", "webdataset", "torch", "lightning")
FORBIDDEN = ("ffcv", "numba", "h5py", "webdataset")

COMMANDS = {
    "(a) import torch": [PY, "-c", "import torch"],
    "(b) core-plugins": [PY, "-m", "core.cli.plugins"],
    "(c) core-train --dry-run": [PY, "-m", "core.cli.train", "--config", CONFIG, "--dry-run"],
}
# (label, module whose main(argv) to call, argv)
PROBES = [
    ("core-plugins", "core.cli.plugins", []),
    ("core-train --dry-run", "core.cli.train", ["--config", CONFIG, "--dry-run"]),
]
MARKER = "@@startup-modules@@ "
PROBE_SNIPPET = """\
import importlib, json, sys
main = importlib.import_module(sys.argv[1]).main
rc = main(json.loads(sys.argv[2]))
sys.stdout.flush()
print({marker!r} + json.dumps({{"rc": rc, "modules": {{m: m in sys.modules for m in {watched!r}}}}}))
"""


def run_once(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    return elapsed


def probe(module: str, argv: list[str]) -> dict:
    snippet = PROBE_SNIPPET.format(marker=MARKER, watched=WATCHED)
    proc = subprocess.run([PY, "-c", snippet, module, json.dumps(argv)], cwd=ROOT, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    sys.exit(f"probe of {module} printed no module list (exit {proc.returncode}):\n{proc.stderr}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each command (default 5)")
    args = p.parse_args()
    if args.repeats < 1:
        p.error("--repeats must be at least 1")

    times: dict[str, list[float]] = {}
    for label, cmd in COMMANDS.items():
        run_once(cmd)  # warm-up: fill the OS file cache and .pyc caches, not timed
        times[label] = [run_once(cmd) for _ in range(args.repeats)]

    reference = statistics.median(times["(a) import torch"])
    print(f"start-up wall time, {args.repeats} repeats, python {sys.version.split()[0]} ({PY})")
    print(f"{'command':<28} {'median s':>9} {'min s':>7} {'x torch':>8}")
    for label, samples in times.items():
        median = statistics.median(samples)
        print(f"{label:<28} {median:9.3f} {min(samples):7.3f} {median / reference:8.2f}")

    print("\nheavy modules in sys.modules after main(argv) returns:")
    bad = []
    for label, module, argv in PROBES:
        result = probe(module, argv)
        print(f"{label}: {json.dumps(result)}")
        bad += [f"{label} imports {m}" for m in FORBIDDEN if result["modules"][m]]
        if result["rc"] != 0:
            bad.append(f"{label} main() returned {result['rc']}")
    if bad:
        print("\nFAIL: " + "; ".join(bad), file=sys.stderr)
        return 1
    print("\nOK: no optional heavy module (ffcv, numba, h5py, webdataset) imported")
    return 0


if __name__ == "__main__":
    sys.exit(main())
