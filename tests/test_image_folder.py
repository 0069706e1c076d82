"""Format and tool ``image_folder``: listing, decoding, the cache, split folders, bad images."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import SPLITS, DataError
from plugins.digits.format import Digits
from plugins.image_folder import cache, decode
from plugins.image_folder.format import ImageFolder
from plugins.image_folder.tool import ImageFolderTool
from tests.conftest import assert_labels_match_open


def write_images(folder: Path, classes: dict[str, int], size: tuple[int, int] = (16, 16), seed: int = 0) -> None:
    """``classes[name]`` random RGB PNGs per class folder, pixel values offset by the class index."""
    rng = np.random.default_rng(seed)
    for label, (name, count) in enumerate(classes.items()):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 200, (*size[::-1], 3), dtype=np.uint8) + label * 20
            Image.fromarray(pixels).save(folder / name / f"{i:03d}.png")


def refuse_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(cache, "decode_all", fail)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "shapes"
    write_images(root, {"circle": 10, "square": 10, "star": 10})
    (root / "star" / "notes.txt").write_text("not an image: ignored")
    return root


def test_meta_lists_names_only_and_exposes_class_names(folder, monkeypatch):
    refuse_decoding(monkeypatch)
    meta = ImageFolder(str(folder), image_size=8).meta()
    assert meta.name == "shapes" and meta.stim_shape == (3, 8, 8) and meta.heads == {"class": 3}
    assert meta.split_sizes == {"train": 24, "val": 3, "test": 3}
    assert meta.extra["class_names"] == {"class": ["circle", "square", "star"]}
    assert not (folder / ".core-cache").exists()


def test_first_open_decodes_and_caches_the_next_maps_the_cache(folder, monkeypatch):
    first = ImageFolder(str(folder), image_size=8, workers=0)
    train, test = first.open("train"), first.open("test")
    assert train.fields["stim"].dtype == np.uint8 and train.fields["stim"].shape == (24, 3, 8, 8)
    assert sorted(np.concatenate([train.fields["class"], test.fields["class"], first.open("val").fields["class"]])
                  .tolist()) == [0] * 10 + [1] * 10 + [2] * 10
    cached = sorted(p.name for p in (folder / ".core-cache").iterdir())
    assert len(cached) == 3 and cached[0].endswith(".json") and not any(".partial" in n for n in cached)
    refuse_decoding(monkeypatch)
    again = ImageFolder(str(folder), image_size=8, workers=0).open("train")
    np.testing.assert_array_equal(again.fields["stim"], train.fields["stim"])
    np.testing.assert_array_equal(again.fields["class"], train.fields["class"])


def test_a_changed_folder_decodes_again(folder, monkeypatch):
    ImageFolder(str(folder), image_size=8, workers=0).open("train")
    calls = []
    real = cache.decode_all
    monkeypatch.setattr(cache, "decode_all", lambda *a, **k: calls.append(a) or real(*a, **k))
    changed = folder / "circle" / "000.png"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    ImageFolder(str(folder), image_size=8, workers=0).open("train")
    write_images(folder, {"circle": 11}, seed=1)
    assert ImageFolder(str(folder), image_size=8, workers=0).meta().split_sizes["train"] == 25
    ImageFolder(str(folder), image_size=8, workers=0).open("train")
    assert len(calls) == 2


def test_a_process_pool_decodes_what_one_process_decodes(folder, monkeypatch):
    monkeypatch.setattr(decode, "CHUNK_FILES", 7)
    pooled = ImageFolder(str(folder), image_size=8, workers=2, cache_dir=str(folder.parent / "a")).open("train")
    single = ImageFolder(str(folder), image_size=8, workers=0, cache_dir=str(folder.parent / "b")).open("train")
    np.testing.assert_array_equal(pooled.fields["stim"], single.fields["stim"])


def test_resize_keeps_the_centre_square_and_channels_convert(tmp_path):
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, 10:30] = (255, 0, 0)  # the centre 20x20 square is red, the sides black
    (tmp_path / "a").mkdir()
    Image.fromarray(pixels).save(tmp_path / "a" / "wide.png")
    rgb = decode.decode(tmp_path / "a" / "wide.png", 10, 3)
    assert rgb.shape == (3, 10, 10) and (rgb[0, :, 1:-1] == 255).all() and (rgb[1:] == 0).all()
    assert (rgb[0, :, [0, -1]] > 200).all()  # the filter blends the black just outside the square into the edges
    grey = decode.decode(tmp_path / "a" / "wide.png", 10, 1)
    assert grey.shape == (1, 10, 10) and (grey[:, :, 1:-1] == 76).all()  # ITU-R 601-2 luma of pure red


def test_split_folders_are_the_splits_and_missing_ones_are_held_out(tmp_path):
    write_images(tmp_path / "train", {"cat": 8, "dog": 8})
    write_images(tmp_path / "val", {"cat": 2, "dog": 3})
    fmt = ImageFolder(str(tmp_path), image_size=8, workers=0, test_fraction=0.25)
    assert fmt.meta().split_sizes == {"train": 12, "val": 5, "test": 4}
    assert fmt.open("val").fields["class"].tolist() == [0, 0, 1, 1, 1]
    assert len(fmt.open("train").fields["stim"]) + len(fmt.open("test").fields["stim"]) == 16
    write_images(tmp_path / "val", {"bird": 1})
    with pytest.raises(DataError, match=r"val: class folders \['bird'\] are not among the 2 classes of the train folder"):
        ImageFolder(str(tmp_path), image_size=8).meta()


def test_a_corrupt_image_is_named_and_skip_bad_skips_it_with_a_warning(folder, caplog):
    (folder / "square" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    fmt = ImageFolder(str(folder), image_size=8, workers=0)
    with pytest.raises(DataError) as error:
        fmt.open("train")
    message = str(error.value)
    assert "1 of 31 image files cannot be read" in message and str(folder / "square" / "broken.jpg") in message
    assert "skip_bad: true" in message
    assert not list((folder / ".core-cache").glob("*.npy"))
    with caplog.at_level(logging.WARNING, logger="core"):
        split = ImageFolder(str(folder), image_size=8, workers=0, skip_bad=True, val_fraction=0.2,
                            test_fraction=0.2).open("train")
    assert len(split.fields["stim"]) == 18 and "skipped 1 unreadable image file(s)" in caplog.text
    assert "broken.jpg" in caplog.text


def test_cache_dir_holds_the_cache_and_an_unwritable_one_is_named(folder, tmp_path):
    ImageFolder(str(folder), image_size=8, workers=0, cache_dir=str(tmp_path / "cache")).open("test")
    assert not (folder / ".core-cache").exists() and len(list((tmp_path / "cache").glob("*.npy"))) == 2
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match=r"cannot write the decode cache to .*file/sub .*set the option cache_dir"):
        ImageFolder(str(folder), image_size=8, workers=0, cache_dir=str(tmp_path / "file" / "sub")).open("test")


@pytest.mark.parametrize("options, message", [
    ({"image_size": 0}, "image_size must be at least 1"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "must be >= 0 and sum below 1"),
    ({"workers": -1}, "workers must be 0"),
])
def test_bad_options_are_refused(folder, options, message):
    with pytest.raises(ValueError, match=message):
        ImageFolder(str(folder), **options)


def test_missing_and_empty_folders_are_named(tmp_path):
    with pytest.raises(DataError, match="nowhere: no such folder"):
        ImageFolder(str(tmp_path / "nowhere")).meta()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no class folders"):
        ImageFolder(str(tmp_path / "empty")).meta()
    (tmp_path / "empty" / "cls").mkdir()
    with pytest.raises(DataError, match="no image files in its class folders"):
        ImageFolder(str(tmp_path / "empty")).meta()


def test_tool_validates_inspects_and_writes(folder, tmp_path):
    tool = ImageFolderTool()
    assert tool.recognises(folder) and not tool.recognises(tmp_path / "nowhere")
    assert tool.validate(folder) == []
    (folder / "circle" / "bad.png").write_bytes(b"garbage")
    (problem,) = tool.validate(folder)
    assert problem.startswith(f"{folder / 'circle' / 'bad.png'}: UnidentifiedImageError")
    assert tool.inspect(folder)["all"]["per_class"] == {"circle": 11, "square": 10, "star": 10}
    tool.write(Digits(), tmp_path / "digits")
    written = ImageFolder(str(tmp_path / "digits"), image_size=8, channels=1, workers=0)
    assert written.meta().split_sizes == Digits().meta().split_sizes
    np.testing.assert_array_equal(written.open("test").fields["class"], np.sort(Digits().open("test").fields["digit"]))


@pytest.mark.parametrize("layout", ["one folder", "split folders"])
def test_labels_come_from_the_scan_without_decoding_and_match_open(tmp_path, monkeypatch, layout):
    if layout == "one folder":
        write_images(tmp_path, {"circle": 7, "square": 5, "star": 9})
    else:
        write_images(tmp_path / "train", {"cat": 8, "dog": 6})
        write_images(tmp_path / "val", {"cat": 2, "dog": 3})  # test: held out of train
    options = {"image_size": 8, "workers": 0, "val_fraction": 0.2, "test_fraction": 0.25, "split_seed": 4}
    with monkeypatch.context() as patch:
        refuse_decoding(patch)
        scanned = {split: ImageFolder(str(tmp_path), **options).labels(split) for split in SPLITS}
    fmt = ImageFolder(str(tmp_path), **options)
    for split in SPLITS:
        assert np.array_equal(scanned[split]["class"], fmt.open(split).fields["class"])
    refuse_decoding(monkeypatch)
    assert_labels_match_open(ImageFolder(str(tmp_path), **options), ["class"])  # from the cache


def test_the_folder_is_statted_once_per_format_for_every_split(folder, monkeypatch):
    """Without a cache yet, each split's labels() checks for one: the stamp (a stat per file)
    is computed once, then open() decodes against that same stamp."""
    import hashlib

    from plugins.image_folder import scan

    digests = []
    monkeypatch.setattr(scan, "hashlib", type("H", (), {"sha256": lambda: digests.append(1) or hashlib.sha256()}))
    fmt = ImageFolder(str(folder), image_size=8, workers=0, val_fraction=0.2, test_fraction=0.2)
    assert sum(len(fmt.labels(split)["class"]) for split in SPLITS) == 30
    fmt.open("train")
    assert len(digests) == 1


def test_with_skip_bad_labels_are_unknown_until_decoded_then_the_cache_gives_them(folder):
    (folder / "square" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    options = {"image_size": 8, "workers": 0, "val_fraction": 0.2, "test_fraction": 0.2}
    skipping = ImageFolder(str(folder), skip_bad=True, **options)
    assert skipping.labels("train") is None  # which files decode is known once they are decoded
    skipping.open("val")
    assert_labels_match_open(skipping, ["class"])
    fmt = ImageFolder(str(folder), **options)  # without skip_bad the cache (30 of the 31 files) still serves open
    assert sum(len(fmt.labels(split)["class"]) for split in SPLITS) == 30
    assert_labels_match_open(fmt, ["class"])
