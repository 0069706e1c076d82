"""``core-data convert`` between on-disk formats: from a lazily read source too, never over
(or mixed into) an existing dataset, and never leaving a torn file or a folder that looks
complete when it is interrupted."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from core.errors import DataError
from core.files import new_folder
from plugins.hdf5.tool import create_file
from tests.conftest import run_main


def convert(*args: object) -> tuple[int, str]:
    result = run_main("core-data", "convert", *map(str, args))
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("mode", ["memory", "lazy"])
def test_an_hdf5_session_converts_to_every_on_disk_format(tmp_path, mode):
    assert convert("--from", "digits", "--option", "image_size=32", "--option", "channels=3", "--to", "hdf5",
                   tmp_path / "d.h5")[0] == 0
    source = ("--from", "hdf5", "--option", f"paths={tmp_path / 'd.h5'}", "--option", f"mode={mode}")
    for tool, out in (("hdf5", "copy.h5"), ("image_folder", "images"), ("cifar100mh", "mh"), ("webdataset", "wds")):
        code, output = convert(*source, "--to", tool, tmp_path / out)
        assert code == 0, output
        assert run_main("core-data", "validate", str(tmp_path / out)).returncode == 0
    with h5py.File(tmp_path / "d.h5") as before, h5py.File(tmp_path / "copy.h5") as after:
        assert all(np.array_equal(before[key][()], after[key][()]) for key in ("stim", "label", "split"))


def test_a_folder_is_written_whole_or_not_at_all_and_never_over_another(tmp_path):
    out = tmp_path / "images"
    with pytest.raises(RuntimeError), new_folder(out, "the image folder") as partial:
        (partial / "train").mkdir()
        raise RuntimeError("killed while writing")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its partial copy
    with new_folder(out, "the image folder") as partial:
        (partial / "done").write_text("x")
    assert (out / "done").is_file() and [p.name for p in tmp_path.iterdir()] == ["images"]
    with pytest.raises(DataError, match="cannot write the image folder to .*images: it already holds files; remove"):
        with new_folder(out, "the image folder"):
            pass
    code, output = convert("--from", "digits", "--to", "image_folder", out)
    assert code == 2 and "it already holds files" in output
    (tmp_path / "afile").write_text("")
    code, output = convert("--from", "digits", "--to", "image_folder", tmp_path / "afile" / "out")
    assert code == 2 and "afile is a file, not a folder" in output


def test_an_hdf5_file_rewritten_and_interrupted_keeps_the_previous_one(tmp_path, monkeypatch):
    target = tmp_path / "keep.h5"
    with create_file(target) as f:
        f["stim"] = np.zeros((2, 4, 4), np.uint8)
    with pytest.raises(RuntimeError), create_file(target) as f:
        f["stim"] = np.ones((3, 4, 4), np.uint8)
        raise RuntimeError("killed while writing")
    with h5py.File(target) as f:
        assert f["stim"].shape == (2, 4, 4)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.h5"]


def test_a_session_whose_label_head_is_named_like_a_field_is_refused(tmp_path):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f["stim"] = np.zeros((4, 8, 8), np.uint8)
        f["responses"] = np.zeros((4, 3), np.float32)
        f["label"] = np.zeros(4, np.int64)
        f.attrs["head_name"] = "responses"
    result = run_main("core-data", "validate", str(path))
    assert result.returncode != 0 and "the label head is named 'responses', the name of a session field" in result.stdout


def test_an_image_folder_is_refused_when_a_class_has_no_train_sample(tmp_path):
    from core.testing import TinyDataset
    from plugins.image_folder.tool import ImageFolderTool

    class NoClassZero(TinyDataset):
        def open(self, split):
            opened = super().open(split)
            opened.fields["label"][:] = np.maximum(opened.fields["label"], 1)
            return opened

    with pytest.raises(DataError, match="no train sample of class 0 of head 'label' .* would renumber the labels"):
        ImageFolderTool().write(NoClassZero(heads={"label": 3}), tmp_path / "images")
    assert list(tmp_path.iterdir()) == []


def test_responses_past_float32_s_range_are_refused_like_non_finite_ones(tmp_path):
    path = tmp_path / "huge.h5"
    responses = np.random.default_rng(0).random((20, 5))
    responses[7, 1] = 1e300  # finite as stored (float64), inf as trained (float32)
    with h5py.File(path, "w") as f:
        f["stim"], f["responses"] = np.zeros((20, 8, 8), np.uint8), responses
    result = run_main("core-data", "validate", str(path))
    assert result.returncode != 0
    assert "responses holds 1e+300 at trial 7 (1 such trial(s) in trials 0..19); responses must be finite numbers " \
           "within float32's range" in result.stdout


def test_inspect_lists_every_file_when_sessions_share_a_name(tmp_path):
    assert convert("--from", "digits", "--to", "hdf5", tmp_path / "a" / "a.h5")[0] == 0
    (tmp_path / "a" / "b.h5").write_bytes((tmp_path / "a" / "a.h5").read_bytes())  # the same session name inside
    result = run_main("core-data", "inspect", "--json", str(tmp_path / "a"))
    assert result.returncode == 0 and result.stdout.count('"file"') == 2


def test_an_image_folder_with_val_and_test_but_no_train_is_refused(tmp_path):
    assert convert("--from", "digits", "--to", "image_folder", tmp_path / "images")[0] == 0
    (tmp_path / "images" / "train").rename(tmp_path / "train")
    result = run_main("core-data", "info", "image_folder", "--option", f"root={tmp_path / 'images'}")
    assert result.returncode == 2 and "has val/ and test/ but no train/; split folders need train/" in result.stderr


def test_a_stim_group_a_stream_source_and_bad_digits_splits_are_one_message_each(tmp_path):
    from core.kinds import DatasetTool, Stream

    with h5py.File(tmp_path / "group.h5", "w") as f:
        f.create_group("stim")
    result = run_main("core-data", "validate", str(tmp_path / "group.h5"))
    assert result.returncode != 0 and "'stim' is a group, not a dataset" in result.stdout

    class Streaming(Stream):
        def batches(self, *args, **kwargs):
            return iter(())

    with pytest.raises(DataError, match="core-data convert reads datasets with random access, and this one streams"):
        DatasetTool.rows(Streaming())
    code, output = convert("--from", "digits", "--option", "split_seed=-1", "--to", "hdf5", tmp_path / "s.h5")
    assert code == 2 and "split_seed must be at least 0, not -1" in output
    code, output = convert("--from", "digits", "--option", "val_fraction=0.0001", "--to", "hdf5", tmp_path / "s.h5")
    assert code == 2 and "leave the val split of the 1,797 samples empty; each fraction must be at least 0.00056" in output
