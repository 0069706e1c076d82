"""``core-train`` end to end on the new formats: an image folder of PNGs and MNIST IDX files,
both tiny and synthetic, one epoch each (the first open of the folder decodes and caches it)."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
import yaml

from core.cli.train import main as core_train
from plugins.standard_datasets.idx import encode_idx
from plugins.standard_datasets.mnist import FILES
from tests.test_image_folder import write_images


def image_folder(root: Path) -> dict:
    write_images(root / "pngs", {"cat": 10, "dog": 10, "owl": 10})
    return {"image_folder": {"root": str(root / "pngs"), "image_size": 16, "workers": 0}}


def mnist(root: Path) -> dict:
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("test", 20)):
        images, labels = FILES[split]
        (root / f"{images}.gz").write_bytes(gzip.compress(encode_idx(rng.integers(0, 256, (n, 28, 28)))))
        (root / labels).write_bytes(encode_idx(np.arange(n) % 10))
    return {"mnist": {"root": str(root)}}


@pytest.mark.parametrize("make_format", [image_folder, mnist])
def test_one_epoch_trains_and_tests(tmp_path, make_format):
    run = {
        "name": "tiny", "output_dir": str(tmp_path / "runs"), "seed": 0,
        "data": {"format": make_format(tmp_path), "transforms": ["pixelnorm"], "batch_size": 8},
        "model": {"simple_cnn": {"conv1": 4, "conv2": 4, "fc_hidden": 8}},
        "logging": ["csv"],
        "trainer": {"max_epochs": 1, "limit_train_batches": 2, "accelerator": "cpu", "enable_progress_bar": False,
                    "enable_model_summary": False},
    }
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(run))
    assert core_train(["--config", str(config)]) == 0
    with open(tmp_path / "runs" / "tiny" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    head = "digit" if make_format is mnist else "class"
    assert any(row.get(f"test/{head}_acc") for row in rows)
