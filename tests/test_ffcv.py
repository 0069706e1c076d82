"""The ffcv plugin against files written with FFCV's own DatasetWriter, and end to end."""

import re
import subprocess
import sys

import numpy as np
import pytest

from core import ConfigError, DataError
from tests.conftest import QUICKSTART_ACCURACY_8_EPOCHS, ROOT, run_cli, run_main

ffcv = pytest.importorskip("ffcv")

from plugins.ffcv.format import FFCVFormat  # noqa: E402
from plugins.ffcv.stream import FFCVOptions, adjust_for_size  # noqa: E402

N = 40


@pytest.fixture(scope="module")
def beton(tmp_path_factory):
    """A .beton written directly with FFCV's DatasetWriter: image, label, index, responses."""
    from ffcv.fields import IntField, NDArrayField, RGBImageField
    from ffcv.writer import DatasetWriter

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(N, 16, 16, 3), dtype=np.uint8)
    responses = rng.normal(size=(N, 5)).astype(np.float32)

    class Samples:
        def __len__(self):
            return N

        def __getitem__(self, i):
            return images[i], i % 7, i, responses[i]

    path = tmp_path_factory.mktemp("beton") / "direct.beton"
    fields = {"image": RGBImageField(write_mode="raw"), "label": IntField(), "index": IntField(),
              "responses": NDArrayField(dtype=np.dtype("float32"), shape=(5,))}
    DatasetWriter(str(path), fields, num_workers=1).from_indexed_dataset(Samples())
    return path, images, responses


def epoch(fmt, split="test", **kwargs):
    args = dict(batch_size=16, train=False, seed=0, epoch=lambda: 0, rank=0, world_size=1, num_workers=1)
    return list(fmt.open(split).batches(**{**args, **kwargs}))


def test_a_beton_from_ffcvs_own_writer_reads_values_and_labels(beton):
    path, images, responses = beton
    fmt = FFCVFormat(str(path), val_path=str(path), test_path=str(path))
    meta = fmt.meta()
    assert meta.stim_shape == (3, 16, 16) and meta.heads == {"label": 7, "index": N}
    batches = epoch(fmt)
    stim = np.concatenate([b["stim"].numpy() for b in batches])
    assert batches[0]["stim"].dtype.is_floating_point is False  # uint8 until the device
    np.testing.assert_array_equal(stim, images.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(np.concatenate([b["label"].numpy() for b in batches]), np.arange(N) % 7)
    np.testing.assert_allclose(np.concatenate([b["responses"].numpy() for b in batches]), responses)
    assert batches[0]["label"].dtype.is_floating_point is False and str(batches[0]["label"].dtype) == "torch.int64"


def test_distributed_order_gives_disjoint_equal_shards(beton):
    path, _, _ = beton
    fmt = FFCVFormat(str(path), val_path=str(path), test_path=str(path), drop_last=False)
    seen = []
    for rank in (0, 1):
        batches = epoch(fmt, "train", train=True, rank=rank, world_size=2, epoch=lambda: 3)
        seen.append(np.concatenate([b["index"].numpy() for b in batches]).tolist())
    assert len(seen[0]) == len(seen[1]) == N // 2
    assert not set(seen[0]) & set(seen[1]) and set(seen[0]) | set(seen[1]) == set(range(N))
    other_epoch = epoch(fmt, "train", train=True, rank=0, world_size=2, epoch=lambda: 4)
    assert np.concatenate([b["index"].numpy() for b in other_epoch]).tolist() != seen[0]  # reshuffled per epoch


def test_quasi_random_refuses_distributed_with_a_clear_error(beton):
    path, _, _ = beton
    fmt = FFCVFormat(str(path), val_path=str(path), test_path=str(path), order="quasi_random")
    with pytest.raises(ConfigError, match="quasi_random order cannot be distributed \\(this run has 2 ranks\\)"):
        epoch(fmt, "train", train=True, world_size=2)


def test_bad_input(beton, tmp_path):
    path, _, _ = beton
    with pytest.raises(DataError, match="no such .beton file"):
        FFCVFormat(str(tmp_path / "x.beton"), val_path=str(path), test_path=str(path)).meta()
    truncated = tmp_path / "cut.beton"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="cut.beton: truncated|cut.beton: not a readable .beton"):
        FFCVFormat(str(truncated), val_path=str(path), test_path=str(path)).meta()
    with pytest.raises(DataError, match="the run needs the int field 'digit', but the file has \\{'image': 'image', 'label': 'int'"):
        FFCVFormat(str(path), val_path=str(path), test_path=str(path), heads=["digit"]).meta()
    with pytest.raises(ValueError, match="is one .beton \\(for training\\); name val_path and test_path"):
        FFCVFormat(str(path))


def test_adjustments_for_a_file_larger_than_ram_are_logged_and_can_be_turned_off():
    options = FFCVOptions("random", True, 3, True, None, None, True, 0.5, 256)
    adjusted, batch, workers, notes = adjust_for_size(options, 1024, 16, file_bytes=300, ram=400, world_size=1)
    assert (adjusted.order, adjusted.batches_ahead, adjusted.os_cache, batch) == ("quasi_random", 2, False, 256)
    assert workers < 16 and len(notes) == 5 and all("because the file" in n for n in notes)
    same = adjust_for_size(options, 1024, 16, file_bytes=100, ram=400, world_size=1)
    assert same == (options, 1024, 16, [])
    off = FFCVOptions("random", True, 3, True, None, None, False, 0.5, 256)
    assert adjust_for_size(off, 1024, 16, file_bytes=300, ram=400, world_size=1)[3] == []


def test_unknown_order_is_a_config_error(tmp_path):
    result = run_main("core-train", "--config", "configs/ffcv.yaml", "--dry-run", "--set", "data.format.ffcv.order=shuffled")
    assert result.returncode == 2
    assert "config error at data.format.ffcv.order: 'shuffled' is not valid for option 'order' of format 'ffcv': expected one of random, quasi_random, sequential" in result.stderr


def test_convert_digits_then_train_to_the_accuracy_of_the_in_ram_path(tmp_path):
    converted = run_main("core-data", "convert", "--from", "digits", "--option", "image_size=32", "--option", "channels=3",
                         "--to", "ffcv", tmp_path / "digits-ffcv")
    assert converted.returncode == 0, converted.stderr
    assert run_main("core-data", "validate", tmp_path / "digits-ffcv").returncode == 0
    fmt = f"{{ffcv: {{path: {tmp_path / 'digits-ffcv'}}}}}"
    result = run_cli("core-train", "--config", "configs/quickstart.yaml", "--set", f"data.format={fmt}", "--set",
                     f"output_dir={tmp_path}", "--set", "trainer.enable_progress_bar=false", "--set", "trainer.max_epochs=8")
    assert result.returncode == 0, result.stderr
    accuracy = float(re.search(r"test/digit_acc = ([0-9.]+)", result.stdout).group(1))
    assert abs(accuracy - QUICKSTART_ACCURACY_8_EPOCHS) <= 0.02, accuracy  # the in-RAM path's


def test_without_ffcv_the_plugin_is_unavailable_with_the_install_command():
    hide = ("import importlib.util, sys\n"
            "real = importlib.util.find_spec\n"
            "importlib.util.find_spec = lambda name, *a: None if name == 'ffcv' else real(name, *a)\n")
    both = ("from core.cli import plugins, train\nplugins.main(['--json'])\nprint('\\n---')\n"  # one start-up for all
            "train.main(['--config', 'configs/quickstart.yaml', '--set', 'model=resnt', '--dry-run'])\n"
            "print('---', file=sys.stderr)\n"
            "sys.exit(train.main(['--config', 'configs/ffcv.yaml', '--dry-run']))")
    run = subprocess.run([sys.executable, "-c", hide + both], capture_output=True, text=True, cwd=ROOT)
    typo, run.stderr = run.stderr.split("---\n")
    assert "no model named 'resnt' (did you mean 'resnet'?)" in typo and "ffcv" not in typo  # not one of its names
    listing = run.stdout.split("\n---")[0]
    row = next(r for r in __import__("json").loads(listing)["plugins"] if r["plugin"] == "ffcv")
    assert row["status"] == "unavailable" and "pip install --no-build-isolation 'core-train[ffcv]'" in row["error"]
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "no format named 'ffcv'" in run.stderr and "plugin 'ffcv' (core-train 0.1.0) is unavailable" in run.stderr
    assert "apt-get install pkg-config libopencv-dev libturbojpeg0-dev" in run.stderr


def test_a_beton_missing_its_last_bytes_fails_validate_and_the_format(beton, tmp_path):
    """FFCV reads its allocation table to the end of the file, whole entries only: a cut file used to
    pass validate and train on garbage for its last samples."""
    from plugins.ffcv.tool import FFCVTool

    path, _, _ = beton
    assert FFCVTool().validate(path) == []
    cut = tmp_path / "cut100.beton"
    for cut_bytes, message in ((100, r"cut100.beton: truncated: the file ends inside entry \d+ of its allocation table "
                                     r"\(\d+ of its 24 bytes\)"),
                               (48, r"cut100.beton: truncated: its allocation table locates the data of 39 of 40 samples")):
        cut.write_bytes(path.read_bytes()[:-cut_bytes])
        problems = FFCVTool().validate(cut)
        assert len(problems) == 1 and re.search(message, problems[0]), problems
        assert "copy it again or rewrite it with core-data convert --to ffcv" in problems[0]
        with pytest.raises(DataError, match=message):
            FFCVFormat(str(cut), val_path=str(path), test_path=str(path)).meta()


def test_validate_finds_non_finite_responses_in_a_beton(tmp_path):
    from ffcv.fields import FloatField, NDArrayField, RGBImageField
    from ffcv.writer import DatasetWriter

    from plugins.ffcv.tool import FFCVTool

    responses = np.ones((12, 3), np.float32)
    responses[9, 1] = np.nan
    weights = np.ones(12)
    weights[4] = np.inf

    class Samples:
        def __len__(self):
            return 12

        def __getitem__(self, i):
            return np.zeros((8, 8, 3), np.uint8), weights[i], responses[i]

    path = tmp_path / "nan.beton"
    fields = {"image": RGBImageField(write_mode="raw"), "weight": FloatField(),
              "responses": NDArrayField(dtype=np.dtype("float32"), shape=(3,))}
    DatasetWriter(str(path), fields, num_workers=1).from_indexed_dataset(Samples())
    problems = FFCVTool().validate(path)
    assert any("nan.beton: sample 4: weight = inf (1 non-finite value(s))" in p for p in problems), problems
    assert any("nan.beton: sample 9: responses holds a non-finite value (nan)" in p for p in problems), problems
