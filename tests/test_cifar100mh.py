"""CIFAR-100-MH: files written byte by byte from the spec, round trips, every bad input."""

import json
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import DataError
from core.cli.train import main as core_train
from plugins.cifar100mh.cifar100 import Cifar100
from plugins.cifar100mh.format import Cifar100MH
from plugins.cifar100mh.tool import Cifar100MHTool
from plugins.digits.format import Digits
from tests.conftest import assert_labels_match_open, run_main

PARAMS = {"note_number": (3, 12), "note_velocity": (0, 127)}  # name: (min, max)


def write_info(root: Path, n_train: int, n_test: int, params=PARAMS) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cifar100mh_dataset_info.json").write_text(json.dumps({
        "format": "CIFAR-100-MH", "version": "1.0", "dataset_name": "notes",
        "n_samples": n_train + n_test, "train_samples": n_train, "test_samples": n_test, "image_size": "32x32x3",
        "parameter_names": list(params),
        "parameter_mappings": {k: {"min": lo, "max": hi, "description": k, "scale": "linear"} for k, (lo, hi) in params.items()},
    }))


def sample(i: int) -> tuple[list[int], bytes]:
    """Sample i: its values in parameter order and its 3,072 pixel bytes (R plane, G plane, B plane)."""
    values = [3 + i % 10, (7 * i) % 128]
    pixels = bytes((i + c * 50 + p) % 256 for c in range(3) for p in range(1024))
    return values, pixels


def minimal_binary(path: Path, indices, order=(0, 1)) -> None:
    """An independent writer: [N][id][val]... then pixels, one record after another."""
    with open(path, "wb") as handle:
        for i in indices:
            values, pixels = sample(i)
            handle.write(struct.pack("B", 2))
            for j in order:  # ids in any order are allowed
                handle.write(struct.pack("BB", j, values[j]))
            handle.write(pixels)


def minimal_pickle(path: Path, indices) -> None:
    data = np.array([list(sample(i)[1]) for i in indices], dtype=np.uint8)
    labels = np.array([[2, 0, sample(i)[0][0], 1, sample(i)[0][1]] for i in indices], dtype=np.uint8)
    with open(path, "wb") as handle:
        pickle.dump({"data": data, "labels": labels}, handle, protocol=2)


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "notes"
    write_info(root, 20, 6)
    minimal_binary(root / "train_batch", range(20), order=(1, 0))
    minimal_pickle(root / "test_batch", range(20, 26))
    return root


def test_files_from_an_independent_writer_read_correctly(dataset):
    fmt = Cifar100MH(str(dataset), val_fraction=0.25)
    meta = fmt.meta()
    assert meta.heads == {"note_number": 10, "note_velocity": 128}
    assert meta.split_sizes == {"train": 15, "val": 5, "test": 6}
    test = fmt.open("test")  # the pickle variant
    for k in range(6):
        values, pixels = sample(20 + k)
        assert test.fields["note_number"][k] == values[0] - 3  # target = value - min
        assert test.fields["note_velocity"][k] == values[1]
        np.testing.assert_array_equal(test.fields["stim"][k], np.frombuffer(pixels, np.uint8).reshape(3, 32, 32))
    train, val = fmt.open("train"), fmt.open("val")  # the binary variant, split by a fixed permutation
    seen = sorted(train.fields["note_velocity"].tolist() + val.fields["note_velocity"].tolist())
    assert seen == sorted(sample(i)[0][1] for i in range(20))
    red = train.fields["stim"][:, 0].reshape(len(train), -1)
    assert all(sample(int(row[0]))[1][:1024] == bytes(row) for row in red)  # pixel 0 of red plane is i


def test_metadata_api(dataset):
    fmt = Cifar100MH(str(dataset))
    assert fmt.image_shape() == (3, 32, 32)
    assert fmt.heads_config() == {"note_number": 10, "note_velocity": 128}
    assert fmt.parameter_info("note_number") == {"min": 3, "max": 12, "description": "note_number", "scale": "linear", "classes": 10}
    stats = fmt.statistics()
    assert stats["train"]["n_samples"] == 20 and stats["test"]["n_samples"] == 6
    assert stats["train"]["heads"]["note_number"]["class_distribution"] == [2] * 10
    with pytest.raises(DataError, match="no parameter 'pitch'"):
        fmt.parameter_info("pitch")


@pytest.mark.parametrize("variant", ["binary", "pickle"])
def test_round_trip_from_digits(tmp_path, variant):
    source = Digits(image_size=32, channels=3, heads=["digit", "parity"])
    Cifar100MHTool().write(source, tmp_path / "mh", variant=variant)
    assert Cifar100MHTool().validate(tmp_path / "mh") == []
    fmt = Cifar100MH(str(tmp_path / "mh"), val_fraction=0.0)
    test, original = fmt.open("test"), source.open("test")
    np.testing.assert_array_equal(test.fields["stim"], original.fields["stim"])
    np.testing.assert_array_equal(test.fields["digit"], original.fields["digit"])
    np.testing.assert_array_equal(test.fields["parity"], original.fields["parity"])
    assert len(fmt.open("train")) == len(source.open("train")) + len(source.open("val"))


def corrupt(dataset: Path, mutate) -> list[str]:
    mutate(dataset)
    return Cifar100MHTool().validate(dataset)


RECORD = 1 + 2 * 2 + 3072


def patch_byte(path: Path, offset: int, value: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] = value
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: (d / "train_batch").write_bytes((d / "train_batch").read_bytes()[:-100]),
     "train_batch: record 19: truncated: 2977 of 3077 bytes"),
    (lambda d: patch_byte(d / "train_batch", 4 * RECORD, 3), "train_batch: record 4: N is 3, but the metadata names 2 parameters"),
    (lambda d: patch_byte(d / "train_batch", 7 * RECORD + 1, 9), "train_batch: record 7: parameter id 9 is past the 2 parameter names"),
    (lambda d: patch_byte(d / "train_batch", 2 * RECORD + 1, 0), "train_batch: record 2: parameter ids [0, 0] do not name each parameter once"),
    (lambda d: patch_byte(d / "train_batch", 5 * RECORD + 4, 200), "train_batch: record 5: note_number = 200 is outside its range [3, 12]"),
    (lambda d: write_info(d, 21, 6), "train_batch: 20 records, but the metadata says train_samples = 21"),
    (lambda d: (d / "cifar100mh_dataset_info.json").unlink(), "cifar100mh_dataset_info.json: metadata file missing"),
    (lambda d: (d / "test_batch").unlink(), "test_batch: batch file missing"),
])
def test_bad_input_names_file_and_record(dataset, mutate, expected):
    problems = corrupt(dataset, mutate)
    assert any(expected in p for p in problems), problems
    with pytest.raises(DataError):
        fmt = Cifar100MH(str(dataset))
        fmt.open("train"), fmt.open("test")


def test_validate_and_inspect_cli(dataset):
    ok = run_main("core-data", "validate", dataset)
    assert ok.returncode == 0 and "valid" in ok.stdout
    info = json.loads(run_main("core-data", "inspect", "--json", dataset).stdout)
    assert info["n_samples"] == {"train": 20, "test": 6} and info["image_shape"] == [3, 32, 32]
    assert info["heads"]["note_number"]["classes"] == 10
    patch_byte(dataset / "train_batch", 7 * RECORD + 1, 9)
    patch_byte(dataset / "train_batch", 5 * RECORD + 4, 200)
    bad = run_main("core-data", "validate", dataset)
    assert bad.returncode == 1
    assert "record 7: parameter id 9" in bad.stdout and "record 5: note_number = 200" in bad.stdout
    assert "2 problem(s)" in bad.stdout


class Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch EXPLOITED",))


def test_pickle_with_a_foreign_global_is_refused_without_running_it(dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(dataset / "test_batch", "wb") as handle:
        pickle.dump({"data": Exploit(), "labels": []}, handle, protocol=2)
    problems = Cifar100MHTool().validate(dataset)
    assert any("refused 'posix.system'" in p or "refused 'os.system'" in p for p in problems), problems
    assert not (tmp_path / "EXPLOITED").exists()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=4 * RECORD), st.binary(max_size=64).map(lambda b: b"\x80\x02" + b)))
def test_arbitrary_bytes_give_a_dataset_or_a_data_error(tmp_path_factory, blob):
    root = tmp_path_factory.mktemp("fuzz")
    write_info(root, len(blob) // RECORD, 0)
    (root / "train_batch").write_bytes(blob)
    minimal_binary(root / "test_batch", [])
    try:
        split = Cifar100MH(str(root), val_fraction=0.0).open("train")
    except DataError:
        return
    assert split.fields["stim"].shape[1:] == (3, 32, 32)


def write_cifar100(folder: Path, fine: dict[str, list[int]]) -> None:
    """The pickles ``train`` and ``test`` as CIFAR ships them (bytes keys, protocol 2): random
    pixels, ``fine[name]`` and coarse labels ``fine % 20``."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, labels in fine.items():
        n = len(labels)
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"fine_labels": labels,
                         b"coarse_labels": [i % 20 for i in labels], b"filenames": [b"x.png"] * n,
                         b"batch_label": b"training batch 1 of 1"}, handle, protocol=2)


def test_cifar100_python_version_converts_with_two_heads(tmp_path):
    folder = tmp_path / "cifar-100-python"
    write_cifar100(folder, {"train": list(range(30)), "test": list(range(10))})
    result = run_main("core-data", "convert", "--from", "cifar100", "--option", f"root={folder}", "--to", "cifar100mh",
                     tmp_path / "mh")
    assert result.returncode == 0, result.stderr
    info = json.loads(run_main("core-data", "inspect", "--json", tmp_path / "mh").stdout)
    assert {h: v["classes"] for h, v in info["heads"].items()} == {"coarse": 20, "fine": 100}
    assert info["n_samples"] == {"train": 30, "test": 10}


def test_multi_head_training_from_the_shipped_config(tmp_path, capsys):
    converted = run_main("core-data", "convert", "--from", "digits", "--option", "image_size=32", "--option", "channels=3",
                        "--option", "heads=[digit, parity]", "--to", "cifar100mh", tmp_path / "digits-mh")
    assert converted.returncode == 0, converted.stderr
    result = run_main("core-train", "--config", "configs/cifar100mh.yaml", "--set", f"data.format.cifar100mh.root={tmp_path / 'digits-mh'}",
                      "--set", f"output_dir={tmp_path}", "--set", "trainer.max_epochs=1", "--set", "trainer.enable_progress_bar=false")
    assert result.returncode == 0, result.stderr
    header = (tmp_path / "cifar100mh" / "metrics.csv").read_text().splitlines()[0].split(",")
    for column in ("train/loss_step", "train/digit_acc", "train/parity_acc", "val/digit_acc", "val/parity_acc",
                   "val/acc_best", "test/digit_acc", "test/parity_acc"):
        assert column in header
    assert "test/parity_acc" in result.stdout
    dry = ["--config", "configs/cifar100mh.yaml", "--dry-run", "--set"]  # in this process: the CLI's messages
    assert core_train([*dry, f"data.format.cifar100mh.root={tmp_path / 'digits-mh'}", "--set", "loss_weights.parityy=1"]) == 2
    assert "no head 'parityy' (did you mean 'parity'?)" in capsys.readouterr().err
    assert core_train([*dry, f"data.format.cifar100mh.root={tmp_path / 'nowhere'}"]) == 2
    err = capsys.readouterr().err
    assert "no such dataset folder" in err and "Traceback" not in err


def test_a_protocol_5_pickle_of_numpy_arrays_reads_like_protocol_2(dataset):
    """NumPy pickles arrays under protocol 5 through numpy._core.numeric._frombuffer (bytes to an array)."""
    reference = Cifar100MH(str(dataset)).open("test").fields
    data = np.array([list(sample(i)[1]) for i in range(20, 26)], dtype=np.uint8)
    labels = np.array([[2, 0, sample(i)[0][0], 1, sample(i)[0][1]] for i in range(20, 26)], dtype=np.uint8)
    blob = pickle.dumps({"data": data, "labels": labels}, protocol=5)
    assert b"_frombuffer" in blob
    (dataset / "test_batch").write_bytes(blob)
    assert Cifar100MHTool().validate(dataset) == []
    test = Cifar100MH(str(dataset)).open("test").fields
    for key, value in reference.items():
        np.testing.assert_array_equal(test[key], value)


@pytest.mark.parametrize("pixels, expected", [
    (lambda d: d.astype(np.float32) / 255, r"'data' is float32 with values from 0.0 to 1.0, not uint8: a cast would "
                                           r"change the values \(a float in \[0, 1\] becomes 0\); write data as a uint8 array"),
    (lambda d: d.astype(np.int64) + 45, r"'data' is int64 with values from 45 to 300, outside 0..255; write data as a "
                                        r"uint8 array \(pixels are bytes, 0 to 255\)"),
])
def test_pixels_that_are_not_uint8_are_refused_not_cast(dataset, pixels, expected):
    data = np.array([list(sample(i)[1]) for i in range(20, 26)], dtype=np.uint8)
    data[0, 0] = 255
    labels = np.array([[2, 0, sample(i)[0][0], 1, sample(i)[0][1]] for i in range(20, 26)], dtype=np.uint8)
    with open(dataset / "test_batch", "wb") as handle:
        pickle.dump({"data": pixels(data), "labels": labels}, handle, protocol=5)
    problems = Cifar100MHTool().validate(dataset)
    assert len(problems) == 1 and re.search(r"test_batch: " + expected, problems[0]), problems
    with pytest.raises(DataError, match=expected):
        Cifar100MH(str(dataset)).open("test")
    int_pixels = data.astype(np.int64)  # integers within 0..255 are pixels whatever their dtype
    with open(dataset / "test_batch", "wb") as handle:
        pickle.dump({"data": int_pixels, "labels": labels}, handle, protocol=5)
    assert Cifar100MHTool().validate(dataset) == []


def test_cifar100_refuses_float_pixels_and_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, data, fine in (("train", np.full((10, 3072), 0.5), list(range(10))),
                             ("test", np.zeros((4, 3072), np.uint8), [1.5, 2.0, 3.0, 4.0])):
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": data, "fine_labels": fine, "coarse_labels": [0] * len(fine)}, handle, protocol=5)
    with pytest.raises(DataError, match=r"train: 'data' is float64 with values from 0.5 to 0.5, not uint8"):
        Cifar100(str(folder)).meta()
    with open(folder / "train", "wb") as handle:
        pickle.dump({"data": np.zeros((10, 3072), np.uint8), "fine_labels": list(range(10)), "coarse_labels": [0] * 10},
                    handle, protocol=5)
    with pytest.raises(DataError, match=r"test: 'fine_labels' is float64, not integer labels"):
        Cifar100(str(folder)).meta()


def test_a_split_without_samples_is_an_error(dataset):
    write_info(dataset, 20, 0)
    minimal_binary(dataset / "test_batch", [])
    problems = Cifar100MHTool().validate(dataset)
    assert any("test_batch: no records; a run needs at least one test record" in p for p in problems), problems
    with pytest.raises(DataError, match="the test split holds no sample"):
        Cifar100MH(str(dataset)).meta()
    write_info(dataset, 20, 6)
    minimal_pickle(dataset / "test_batch", range(20, 26))
    with pytest.raises(DataError, match=r"the val split holds no sample \(20 training records x val_fraction 0.01 rounds "
                                        r"to 0\); raise val_fraction, or set it to 0"):
        Cifar100MH(str(dataset), val_fraction=0.01).meta()
    assert Cifar100MH(str(dataset), val_fraction=0.0).meta().split_sizes == {"train": 20, "val": 0, "test": 6}


def test_labels_are_the_opened_ones_for_every_split_and_head(dataset, tmp_path):
    assert_labels_match_open(Cifar100MH(str(dataset), val_fraction=0.25, split_seed=2), ["note_number", "note_velocity"])
    minimal_pickle(dataset / "train_batch", range(20))  # the pickle variant for train as well
    assert_labels_match_open(Cifar100MH(str(dataset), val_fraction=0.25), ["note_number", "note_velocity"])
    folder = tmp_path / "cifar-100-python"
    write_cifar100(folder, {"train": np.random.default_rng(1).permutation(30).tolist(), "test": [5, 99, 0, 42]})
    assert_labels_match_open(Cifar100(str(folder), val_fraction=0.2, split_seed=1), ["coarse", "fine"])
