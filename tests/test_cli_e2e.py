"""End-to-end runs of the installed console scripts on the real digits data."""

import csv
import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, ROOT, SMALL_RUN, run_cli, run_main


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def column(rows, key):
    return [(int(r["epoch"]), float(r[key])) for r in rows if r.get(key)]


def test_quickstart_trains_to_95_percent_and_writes_the_run_directory(tmp_path):
    result = run_cli("core-train", "--config", "configs/quickstart.yaml", "--set", f"output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    accuracy = float(re.search(r"test/digit_acc = ([0-9.]+)", result.stdout).group(1))
    assert accuracy >= 0.95
    run_dir = tmp_path / "quickstart"
    for name in ("config.yaml", "plugins.json", "metrics.csv", "curves.png", "checkpoints/last.ckpt", "checkpoints/best.ckpt"):
        assert (run_dir / name).is_file(), name
    rows = read_metrics(run_dir)
    assert column(rows, "test/digit_acc")[-1][1] == accuracy or abs(column(rows, "test/digit_acc")[-1][1] - accuracy) < 1e-4
    assert {"train/loss_epoch", "train/digit_acc", "val/loss", "val/digit_acc"} <= set(rows[0])
    used = json.loads((run_dir / "plugins.json").read_text())["used"]
    assert {(u["kind"], u["name"], u["distribution"]) for u in used} >= {
        ("format", "digits", "core-train"), ("model", "simple_cnn", "core-train"), ("storage", "uint8", "core-train")
    }
    assert "image_size: 32" in (run_dir / "config.yaml").read_text()


def test_fresh_run_refuses_to_mix_with_an_existing_one_and_resume_continues(write_config, tmp_path):
    # in this process (no interpreter start-up), whose lock on the run directory lasts until pytest ends
    path = write_config(SMALL_RUN.replace("max_epochs: 2", "max_epochs: 1"))
    assert run_main("core-train", "--config", path).returncode == 0
    resumed = run_main("core-train", "--config", path, "--resume", "--set", "trainer.max_epochs=2")
    assert resumed.returncode == 0, resumed.stderr
    epochs = [e for e, _ in column(read_metrics(tmp_path / "runs" / "small"), "val/digit_acc")]
    assert epochs == [0, 1]
    again = run_main("core-train", "--config", path)
    assert again.returncode == 2 and "already holds a run" in again.stderr and "--resume" in again.stderr
    assert "Traceback" not in again.stderr


def test_core_plugins_lists_builtins_as_json():
    result = run_main("core-plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["plugin"]: row for row in json.loads(result.stdout)["plugins"]}
    assert rows["digits"]["components"] == {"format": ["digits"]}
    assert {"random", "sequential"} <= set(rows["samplers"]["components"]["sampler"])
    assert all(row["distribution"] == "core-train" for row in rows.values() if row["plugin"] in ("digits", "cast"))


def test_core_data_info_describes_a_format():
    result = run_main("core-data", "info", "digits", "--option", "image_size=16", "--option", "heads=[digit, parity]")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["stim_shape"] == [1, 16, 16] and info["heads"] == {"digit": 10, "parity": 2}
    bad = run_main("core-data", "info", "digitz")
    assert bad.returncode == 2 and "no format named 'digitz' (did you mean 'digits'?)" in bad.stderr


def test_heavy_optional_modules_are_not_imported():
    code = (
        "import sys, json\n"
        "from core.cli import plugins, train\n"
        "plugins.main([])\n"
        "listing = sorted(m for m in ('torch', 'lightning') if m in sys.modules)\n"
        "train.main(['--config', 'configs/quickstart.yaml', '--dry-run'])\n"
        "heavy = sorted(m for m in ('ffcv', 'numba', 'h5py', 'webdataset') if m in sys.modules)\n"
        "print(json.dumps({'listing': listing, 'heavy': heavy}))\n"
    )
    result = subprocess.run([str(BIN / "python"), "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {"listing": [], "heavy": []}


@pytest.mark.parametrize("storage, placement, precision, transforms", [
    ("uint8", "host", "bf16-mixed", "[pixelnorm, random_flip, {random_translate: {pixels: 1}}]"),
    ("bfloat16", "device", "bf16-mixed", "[pixelnorm, fftwhitening]"),
    ("float32", "device", "32-true", "[pixelnorm]"),
])
def test_each_backend_and_placement_trains(write_config, tmp_path, storage, placement, precision, transforms):
    path = write_config(SMALL_RUN)
    result = run_main("core-train", "--config", path, "--set", f"data.storage={storage}", "--set", f"data.placement={placement}",
                     "--set", f"trainer.precision={precision}", "--set", f"data.transforms={transforms}",
                     "--set", "trainer.max_epochs=1")
    assert result.returncode == 0, result.stderr
    assert "test/digit_acc" in result.stdout
