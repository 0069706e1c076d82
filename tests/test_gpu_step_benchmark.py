"""benchmarks/gpu_step.py runs every row end to end on the CPU at tiny sizes (no timing claims)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark():
    # benchmarks/ is not a package: load the script by its path
    spec = importlib.util.spec_from_file_location("gpu_step_benchmark", ROOT / "benchmarks" / "gpu_step.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    return module


def test_every_row_reports_a_positive_time(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_benchmark()
    rows = "floor,core-train-host,core-train-device,lightning-bare,per-sample"
    bench.main(["--device", "cpu", "--n", "256", "--batch-size", "64", "--image-size", "16", "--epochs", "1",
                "--rows", rows, "--workers", "0"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, out
    result = json.loads(lines[0].removeprefix("RESULT "))
    assert (result["n"], result["batch_size"], result["steps_per_epoch"], result["precision"]) == (256, 64, 4, "32-true")
    assert set(result["widths"]) == {"small", "wide"}
    names = [bench.ROWS[key] for key in rows.split(",")]
    for width, figures in result["widths"].items():
        assert list(figures["rows"]) == names, width
        for name, row in figures["rows"].items():
            ms = row["ms_per_epoch"]
            assert isinstance(ms, float) and math.isfinite(ms) and ms > 0, (width, name, row)
            assert len(row["epochs_ms"]) == 1 and math.isfinite(row["x_floor"]), (width, name, row)
            assert f"{name:<28} {ms:>10.1f}" in out
        assert figures["rows"]["floor"]["x_floor"] == 1.0
        assert set(figures["overhead_us_per_step"]) == {"host", "device"}
        assert all(math.isfinite(us) for us in figures["overhead_us_per_step"].values())
    assert out.count("core-train overhead per step (us)") == 2
