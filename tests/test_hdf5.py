"""The hdf5 plugin against session files written directly with h5py, and end to end."""

from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from core import DataError
from core.data import DiskBatches
from plugins.digits.format import Digits
from plugins.hdf5.format import HDF5Sessions
from plugins.hdf5.reader import HandlePool, SessionRows, default_cache_bytes, spans
from plugins.hdf5.session import read_info
from plugins.hdf5.tool import HDF5Tool
from plugins.uint8_pixelnorm.storage import Uint8Storage
from tests.conftest import ROOT, run_main


def write_session(path, n=50, stim_shape=(6, 5), neurons=4, axes=None, chunks=16, extra=True, name=None, seed=0):
    """A session file written with h5py alone; trial ``i``'s values are recognisable from ``i``."""
    rng = np.random.default_rng(seed)
    stim = rng.integers(0, 256, (n, *stim_shape), dtype=np.uint8)
    responses = rng.random((n, neurons), dtype=np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("stim", data=stim, chunks=(min(chunks, n), *stim_shape) if chunks else None)
        if axes:
            f["stim"].attrs["axes"] = axes
        f.create_dataset("responses", data=responses)
        if extra:
            f.create_dataset("contrast", data=rng.random(n, dtype=np.float32))
            f.create_dataset("label", data=np.arange(n) % 3)
        if name:
            f.attrs["session"] = name
    return stim, responses


def all_samples(fmt, split):
    opened = fmt.open(split)
    if isinstance(opened, SessionRows):
        return opened.read(np.arange(len(opened)))
    return {k: np.asarray(v[:] if k == "stim" else v) for k, v in opened.fields.items()}


@pytest.mark.parametrize("shape, axes, sample", [
    ((6, 5), None, (1, 6, 5)),
    ((3, 6, 5), None, (3, 6, 5)),
    ((4, 6, 5), "NTHW", (4, 1, 6, 5)),
])
@pytest.mark.parametrize("mode", ["memory", "lazy"])
def test_each_layout_written_with_h5py_reads_back(tmp_path, shape, axes, sample, mode):
    stim, responses = write_session(tmp_path / "a.h5", stim_shape=shape, axes=axes)
    fmt = HDF5Sessions(str(tmp_path / "a.h5"), mode=mode, val_fraction=0.2, test_fraction=0.2)
    meta = fmt.meta()
    assert meta.stim_shape == sample and meta.heads == {"label": 3}
    assert sum(meta.split_sizes.values()) == 50 and meta.split_sizes["val"] == 10
    assert meta.fields == {"responses": ((4,), "float32"), "contrast": ((), "float32")}
    seen = []
    for split in ("train", "val", "test"):
        got = all_samples(fmt, split)
        _, rows = fmt.assignment[split]
        np.testing.assert_array_equal(got["stim"], stim[rows].reshape(len(rows), *sample))
        np.testing.assert_array_equal(got["responses"], responses[rows])
        np.testing.assert_array_equal(got["label"], rows % 3)
        seen += rows.tolist()
    assert sorted(seen) == list(range(50))  # every trial in exactly one split


def test_lazy_and_memory_modes_give_identical_batches(tmp_path):
    for i in range(3):
        write_session(tmp_path / f"s{i}.h5", n=40 + i, seed=i)
    lazy = HDF5Sessions(str(tmp_path / "*.h5"), mode="lazy").open("train")
    memory = Uint8Storage().materialise(HDF5Sessions(str(tmp_path / "*.h5"), mode="memory").open("train"), [])
    order = np.random.default_rng(0).permutation(len(lazy))
    for batch in np.array_split(order, 5):
        got = lazy.read(batch)
        for key, value in memory.items():
            np.testing.assert_array_equal(got[key], value[torch.from_numpy(batch)].numpy(), err_msg=key)


def test_close_releases_the_files_so_a_rewritten_session_is_read_anew(tmp_path):
    """HDF5 shares one open file per process: a handle a finished run left open would serve a
    file rewritten in place (a notebook, a sweep) from its old contents."""
    path = tmp_path / "a.h5"
    write_session(path, neurons=4)
    first = HDF5Sessions(str(path), mode="lazy")
    split = first.open("train")
    split.read(np.arange(3))
    assert split.pool.open_count() == 1
    first.close()  # what the DataModule does when a stage ends
    assert split.pool.open_count() == 0
    split.read(np.arange(3))  # a later read opens the file again
    assert split.pool.open_count() == 1
    first.close()
    with open(path, "r+b") as handle:  # rewritten in place: the same file, other contents
        handle.truncate(0)
    write_session(path, neurons=7)
    assert HDF5Sessions(str(path)).meta().fields["responses"][0] == (7,)


def test_workers_open_their_own_handles_after_a_fork(tmp_path):
    for i in range(5):
        write_session(tmp_path / f"s{i}.h5", n=30, seed=i)
    fmt = HDF5Sessions(str(tmp_path / "*.h5"), mode="lazy", max_open_files=2)
    split = fmt.open("train")
    expected = split.read(np.arange(len(split)))  # the parent opens files before the workers fork
    assert 0 < split.pool.open_count() <= 2 and split.pool.opened == 5  # least recently used were closed
    batches = [torch.from_numpy(b) for b in np.array_split(np.random.default_rng(1).permutation(len(split)), 6)]
    loader = DataLoader(DiskBatches(split), sampler=batches, batch_size=None, num_workers=2,
                        multiprocessing_context="fork", worker_init_fn=_check_worker_handles)
    for index, batch in zip(batches, loader):
        for key, value in expected.items():
            np.testing.assert_array_equal(batch[key].numpy(), value[index.numpy()], err_msg=key)


def _check_worker_handles(worker_id: int) -> None:
    split = torch.utils.data.get_worker_info().dataset.split
    assert split.pool.open_count() == 0  # the parent's handles are not used in a worker


def test_chunk_cache_defaults_to_the_files_chunks_when_compressed(tmp_path):
    write_session(tmp_path / "a.h5", n=600, stim_shape=(64, 64), chunks=256)
    assert default_cache_bytes(read_info(str(tmp_path / "a.h5"))) == 0  # uncompressed: reads need no cache
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f.create_dataset("stim", data=np.zeros((600, 64, 64), np.uint8), chunks=(256, 64, 64), compression="gzip")
    info = read_info(str(tmp_path / "b.h5"))
    assert info.chunk_bytes == 256 * 64 * 64 and default_cache_bytes(info) == 4 * 2**20
    handle = HandlePool(2, None).get(info)
    assert handle.id.get_access_plist().get_cache()[2] == 4 * 2**20
    handle.close()
    assert HandlePool(2, 12345).get(info).id.get_access_plist().get_cache()[2] == 12345


def test_reads_merge_neighbours_but_not_across_chunks():
    starts, stops = spans(np.array([0, 1, 2, 5, 9, 10, 40]), merge_rows=2, chunk_rows=10)
    assert list(zip(starts, stops)) == [(0, 6), (9, 10), (10, 11), (40, 41)]
    starts, stops = spans(np.array([0, 1, 2, 5, 9, 10, 40]), merge_rows=0, chunk_rows=None)
    assert list(zip(starts, stops)) == [(0, 3), (5, 6), (9, 11), (40, 41)]


def test_the_split_dataset_assigns_trials(tmp_path):
    write_session(tmp_path / "a.h5", n=6)
    with h5py.File(tmp_path / "a.h5", "a") as f:
        f["split"] = np.array([0, 0, 1, 2, 2, 2], dtype=np.uint8)
    fmt = HDF5Sessions(str(tmp_path / "a.h5"))
    assert fmt.meta().split_sizes == {"train": 2, "val": 1, "test": 3}
    np.testing.assert_array_equal(fmt.assignment["test"][1], [3, 4, 5])


def test_convert_digits_to_hdf5_round_trips(tmp_path):
    out = tmp_path / "digits.h5"
    done = run_main("core-data", "convert", "--from", "digits", "--to", "hdf5", "--to-option", "chunk_rows=64", str(out))
    assert done.returncode == 0, done.stderr
    from plugins.digits.format import Digits

    fmt = HDF5Sessions(str(out))
    assert fmt.meta().heads == {"digit": 10}
    for split in ("train", "val", "test"):
        want, got = Digits().open(split).fields, all_samples(fmt, split)
        np.testing.assert_array_equal(got["stim"], want["stim"])
        np.testing.assert_array_equal(got["digit"], want["digit"])


@pytest.mark.parametrize("problem, message", [
    ("missing", "does not exist"),
    ("no match", "matches no file"),
    ("truncated", "not a readable HDF5 file"),
    ("no stim", "has no dataset 'stim' (it has: ['responses'])"),
    ("mismatch", "stim has 50 trials (shape (50, 6, 5)) but responses has 49 (shape (49, 4))"),
    ("neurons differ", "differ in responses: one trial is (4,) in the first and (7,) in the second"),
])
def test_bad_sessions_are_clear_errors(tmp_path, problem, message):
    path = tmp_path / "a.h5"
    write_session(path)
    pattern = str(path)
    if problem == "missing":
        pattern = str(tmp_path / "b.h5")
    elif problem == "no match":
        pattern = str(tmp_path / "nothing*.h5")
    elif problem == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif problem == "no stim":
        with h5py.File(path, "a") as f:
            del f["stim"], f["contrast"], f["label"]
    elif problem == "mismatch":
        with h5py.File(path, "a") as f:
            del f["responses"]
            f["responses"] = np.zeros((49, 4), np.float32)
    elif problem == "neurons differ":
        write_session(tmp_path / "b.h5", neurons=7)
        pattern = str(tmp_path / "*.h5")
    with pytest.raises(DataError) as caught:
        HDF5Sessions(pattern).meta()
    assert message in str(caught.value)
    if problem in ("truncated", "mismatch", "no stim"):
        assert str(path) in str(caught.value)


def test_validate_reports_every_bad_file(tmp_path):
    write_session(tmp_path / "good.h5")
    write_session(tmp_path / "bad.h5")
    data = (tmp_path / "bad.h5").read_bytes()
    (tmp_path / "bad.h5").write_bytes(data[: len(data) - 500])
    problems = HDF5Tool().validate(tmp_path)
    assert len(problems) == 1 and "bad.h5" in problems[0]
    done = run_main("core-data", "validate", str(tmp_path))
    assert done.returncode == 1 and "bad.h5" in done.stdout


def test_make_sessions_follows_its_model_and_trains_end_to_end(tmp_path):
    sessions = tmp_path / "sessions"
    done = run_main("core-data", "make-sessions", "--option", "sessions=2", "--option", "trials=300",
                   "--option", "size=16", str(sessions))
    assert done.returncode == 0, done.stderr
    with h5py.File(sessions / "session_00.h5") as f:
        rate, responses = f["true_rate"][()], f["responses"][()]
        assert f["stim"].shape == (300, 16, 16) and responses.shape == (300, 40)
    assert abs(responses.mean() - rate.mean()) < 0.1 * rate.mean()  # Poisson draws of the stored rates
    assert np.corrcoef(responses.ravel(), rate.ravel())[0, 1] > 0.5
    info = json.loads(run_main("core-data", "inspect", "--json", str(sessions)).stdout)
    assert set(info["sessions"]) == {"session_00", "session_01"}
    config = tmp_path / "run.yaml"
    config.write_text((ROOT / "configs/sessions_hdf5.yaml").read_text()
                      .replace("data/sessions/*.h5", f"{sessions}/*.h5")
                      .replace("max_epochs: 5", "max_epochs: 2, enable_progress_bar: false"))
    done = run_main("core-train", "--config", config, "--set", f"output_dir={tmp_path / 'runs'}")
    assert done.returncode == 0, done.stderr[-3000:]
    accuracy = float(done.stdout.split("test/label_acc = ")[1].split()[0])
    assert accuracy > 0.3  # 8 orientations: chance is 0.125


def test_split_values_other_than_0_1_2_are_an_error(tmp_path):
    write_session(tmp_path / "a.h5", n=4)
    with h5py.File(tmp_path / "a.h5", "a") as f:
        f["split"] = np.array([0, 1, 2, 3], dtype=np.uint8)
    with pytest.raises(DataError, match=r"a.h5: split holds .*3.*; use 0 \(train\), 1 \(val\) or 2 \(test\)"):
        HDF5Sessions(str(tmp_path / "a.h5")).meta()


def session_with(path, **datasets):
    """A 20-trial session from write_session with some datasets replaced (attributes: ``attrs``)."""
    write_session(path, n=20)
    with h5py.File(path, "a") as f:
        for key, value in datasets.pop("attrs", {}).items():
            f.attrs[key] = value
        for name, value in datasets.items():
            del f[name]
            f[name] = value
    return path


def bad_values(n=20):
    responses = np.ones((n, 4), np.float32)
    responses[7, 2] = np.nan
    contrast = np.full(n, 0.5, np.float32)
    contrast[3] = -0.25
    return {
        "label past label_classes": ({"label": np.arange(n) % 4, "attrs": {"label_classes": 3}},
                                     r"label holds 3 at trial 3, outside \[0, 3\) \(label_classes = 3\); set label_classes "
                                     r"above the largest label, or fix the labels"),
        "negative label": ({"label": np.arange(n) - 1}, r"label holds -1 at trial 0; labels are class indices from 0"),
        "NaN responses": ({"responses": responses}, r"responses holds nan at trial 7 \(1 such trial\(s\) in trials 0..19\); "
                                                    r"responses must be finite numbers"),
        "negative contrast": ({"contrast": contrast}, r"contrast holds -0.25 at trial 3, outside \[0, 1\]"),
        "NaN contrast": ({"contrast": np.where(np.arange(n) == 5, np.nan, 0.5).astype(np.float32)},
                         r"contrast holds nan at trial 5"),
    }


@pytest.mark.parametrize("case", list(bad_values()))
def test_values_training_would_choke_on_are_refused_at_open_and_by_validate(tmp_path, case):
    datasets, message = bad_values()[case]
    path = session_with(tmp_path / "s.h5", **datasets)
    fmt = HDF5Sessions(str(path), mode="lazy")
    fmt.meta()  # headers only: the dry run stays cheap
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}: {message}"):
        fmt.open("train")
    problems = HDF5Tool().validate(path)
    assert len(problems) == 1 and re.search(message, problems[0]) and str(path) in problems[0], problems


def test_labels_are_checked_against_the_dataset_s_classes_across_sessions(tmp_path):
    session_with(tmp_path / "a.h5", label=np.arange(20) % 3, attrs={"label_classes": 3})
    session_with(tmp_path / "b.h5", label=np.arange(20) % 5)  # no label_classes: the dataset has 3 classes
    fmt = HDF5Sessions(str(tmp_path / "*.h5"), mode="memory")
    assert fmt.meta().heads == {"label": 3}
    with pytest.raises(DataError, match=r"b.h5: label holds 3 at trial 3, outside \[0, 3\)"):
        fmt.open("train")
    assert HDF5Tool().validate(tmp_path) == []  # each file alone is valid (b.h5 declares no classes)


def test_a_session_without_trials_and_an_empty_split_are_errors(tmp_path):
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f["stim"] = np.zeros((0, 4, 4), np.uint8)
    message = r"empty.h5: the session holds no trial \(stim has shape \(0, 4, 4\)\)"
    assert re.search(message, HDF5Tool().validate(tmp_path / "empty.h5")[0])
    with pytest.raises(DataError, match=message):
        HDF5Sessions(str(tmp_path / "empty.h5")).meta()
    write_session(tmp_path / "small.h5", n=4)  # round(4 x 0.1) = 0 trials for val and for test
    with pytest.raises(DataError, match=r"hdf5: the val split holds no trial \(1 session\(s\), 4 trials: .*small.h5\); "
                                        r"raise val_fraction"):
        HDF5Sessions(str(tmp_path / "small.h5")).meta()
    sizes = HDF5Sessions(str(tmp_path / "small.h5"), val_fraction=0.0, test_fraction=0.5).meta().split_sizes
    assert sizes == {"train": 2, "val": 0, "test": 2}  # val_fraction: 0 asks for no val split


def test_a_damaged_gzip_chunk_names_the_file_and_trials_in_memory_mode(tmp_path):
    path = tmp_path / "z.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.create_dataset("stim", data=rng.integers(0, 256, (64, 8, 8), dtype=np.uint8), chunks=(16, 8, 8), compression="gzip")
        offset, size = f["stim"].id.get_chunk_info(2).byte_offset, f["stim"].id.get_chunk_info(2).size
    data = bytearray(path.read_bytes())
    data[offset + 10: offset + size - 10] = bytes(size - 20)
    path.write_bytes(bytes(data))
    fmt = HDF5Sessions(str(path), mode="memory", val_fraction=0.0, test_fraction=0.0)
    storage = Uint8Storage()
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: stim trials 32..47 cannot be read \(.*\); the file is "
                                        rf"damaged or truncated: core-data validate {re.escape(str(path))} lists every problem"):
        storage.materialise(fmt.open("train"), [])
    assert re.search(r"z.h5: stim trials 0..63 cannot be read", HDF5Tool().validate(path)[0])


def test_make_sessions_with_bad_options_or_an_output_under_a_file_is_a_message(tmp_path):
    done = run_main("core-data", "make-sessions", "--option", "sessions=0", tmp_path / "s")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "error: config error at --option sessions: make-sessions: sessions must be at least 1, not 0" in done.stderr
    assert "fix: e.g. --option sessions=4 (the default)" in done.stderr
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match=rf"cannot write sessions to {re.escape(str(tmp_path))}/file/out: "
                                        rf"{re.escape(str(tmp_path))}/file is a file, not a folder"):
        HDF5Tool().make_sessions(tmp_path / "file" / "out", sessions=1, trials=10, size=8, neurons=2)
    with pytest.raises(DataError, match="cannot write the session to .*file/x: .*file is a file, not a folder"):
        HDF5Tool().write(Digits(), tmp_path / "file" / "x" / "d.h5")


def test_evaluating_a_split_without_samples_is_refused(tmp_path):
    from core import ConfigError
    from core.config import parse_config
    from core.evaluate import check_split
    from core.registry import Registry
    from core.resolve import resolve

    write_session(tmp_path / "s.h5", n=40)
    config = parse_config({"name": "noval", "model": "simple_cnn", "data": {
        "format": {"hdf5": {"paths": str(tmp_path / "s.h5"), "val_fraction": 0.0}}, "transforms": ["pixelnorm"]}})
    resolved = resolve(config, Registry.load())
    check_split(resolved, "test", "command")
    with pytest.raises(ConfigError, match=r"config error at --split: the run's data has no val samples \(\{'train': 36, "
                                          r"'val': 0, 'test': 4\}\)"):
        check_split(resolved, "val", "--split")  # validate printed nothing, predict wrote an empty file: exit 0
