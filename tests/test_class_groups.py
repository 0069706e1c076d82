"""Class groups (plugin class_groups, a format wrapper): classes, group, groups and label_map on any format."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from core import ConfigError, DataFormat, DatasetMeta, Split, Stream
from core.config import parse_config
from core.registry import Registry
from core.resolve import resolve, take_wrapper_options
from plugins.class_groups.subset import ClassSubset
from plugins.digits.format import Digits
from plugins.hdf5.format import HDF5Sessions
from tests.conftest import ROOT

NAMES = ["cat", "dog", "eel", "fox"]
SIZES = {"train": 12, "val": 8, "test": 8}


class Pets(DataFormat):
    """Four named classes (labels 0..3 in turn); a sample's pixels hold its index. No ``labels()``."""

    def meta(self) -> DatasetMeta:
        return DatasetMeta("pets", (1, 2, 2), {"animal": 4}, dict(SIZES),
                           extra={"class_names": {"animal": NAMES}, "groups": {"pets": ["cat", "dog"], "wild": [3, 2]}})

    def open(self, split: str) -> Split:
        n = SIZES[split]
        return Split({"stim": np.arange(n, dtype=np.uint8)[:, None, None, None].repeat(4, 1).reshape(n, 1, 2, 2),
                      "animal": np.arange(n) % 4})


class Streamed(Pets):
    streams = True

    def open(self, split: str) -> Stream:
        class Batches(Stream):
            def batches(self, **kwargs):  # noqa: ANN003, ANN202
                return []

        return Batches()


def subset(fmt: DataFormat, **options) -> ClassSubset:  # noqa: ANN003
    return ClassSubset(fmt, "data.format.pets", **options)


def test_classes_by_name_keep_their_samples_and_number_them_in_the_order_listed():
    fmt = subset(Pets(), classes=["fox", "cat"])
    meta = fmt.meta()
    assert meta.heads == {"animal": 2} and meta.extra["class_names"] == {"animal": ["fox", "cat"]}
    assert meta.split_sizes == SIZES and meta.extra["split_sizes"].startswith("at most")  # no labels(): an upper bound
    split = fmt.open("train")
    assert split.fields["stim"][:, 0, 0, 0].tolist() == [0, 3, 4, 7, 8, 11]  # the cats and foxes, in order
    assert split.fields["animal"].tolist() == [1, 0, 1, 0, 1, 0]  # fox 0, cat 1
    assert fmt.maps["animal"].describe()[0] == {"id": 0, "original_ids": [3], "original_names": ["fox"]}


def test_groups_from_the_metadata_or_a_yaml_file(tmp_path):
    assert subset(Pets(), group="wild").open("val").fields["animal"].tolist() == [1, 0, 1, 0]  # eel 1, fox 0
    (tmp_path / "groups.yaml").write_text("swimmers: [eel]\nfurry: [cat, dog, fox]\n")
    fmt = subset(Pets(), group="furry", groups=str(tmp_path / "groups.yaml"))
    assert fmt.meta().heads == {"animal": 3}
    assert fmt.open("test").fields["animal"].tolist() == [0, 1, 2, 0, 1, 2]


def test_label_map_merges_classes_and_drops_the_others():
    fmt = subset(Pets(), label_map={"cat": 0, "dog": 0, "fox": 1})
    assert fmt.meta().extra["class_names"] == {"animal": ["cat+dog", "fox"]}
    assert fmt.open("train").fields["animal"].tolist() == [0, 0, 1] * 3
    assert fmt.maps["animal"].inverse() is None  # the new class 0 stands for two


def test_digits_sizes_are_counted_from_the_labels_and_a_second_head_stays_whole():
    digits = Digits(heads=["digit", "parity"])
    fmt = ClassSubset(digits, "data.format.digits", classes={"digit": [7, 1]})
    meta = fmt.meta()
    wanted = {s: int(np.isin(digits.labels(s)["digit"], [1, 7]).sum()) for s in SIZES}
    assert meta.split_sizes == wanted and meta.extra["split_sizes"] == "exact"
    assert meta.heads == {"digit": 2, "parity": 2}
    split, whole = fmt.open("val"), digits.open("val")
    keep = np.isin(whole.fields["digit"], [1, 7])
    assert np.array_equal(split.fields["stim"], whole.fields["stim"][keep])
    assert np.array_equal(split.fields["digit"], (whole.fields["digit"][keep] == 1).astype(int))  # 7 -> 0, 1 -> 1
    assert np.array_equal(split.fields["parity"], whole.fields["parity"][keep])


@pytest.mark.parametrize("mode", ["memory", "lazy"])
def test_hdf5_sessions_in_ram_and_read_from_disk_give_the_same_subset(tmp_path, mode):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f["stim"] = np.arange(60, dtype=np.uint8)[:, None, None].repeat(4, 1).reshape(60, 2, 2)
        f["label"] = np.arange(60) % 5
    fmt = ClassSubset(HDF5Sessions(str(path), mode=mode), "data.format.hdf5", classes=[4, 2])
    meta = fmt.meta()
    assert meta.extra["split_sizes"] == "exact" and sum(meta.split_sizes.values()) == 24
    split = fmt.open("train")
    fields = split.read(np.arange(len(split))) if mode == "lazy" else {k: np.asarray(v[:]) for k, v in split.fields.items()}
    assert len(fields["stim"]) == meta.split_sizes["train"]
    original = fields["stim"][:, 0, 0, 0] % 5
    assert np.array_equal(fields["label"], np.where(original == 4, 0, 1))
    if mode == "lazy":
        assert np.array_equal(split.column("label"), fields["label"])


def test_the_label_map_file(tmp_path):
    ClassSubset.write_run_files(tmp_path, {"pets": subset(Pets(), classes=[2])})
    saved = json.loads((tmp_path / "label_map.json").read_text())
    assert saved == {"pets": {"animal": [{"id": 0, "original_ids": [2], "original_names": ["eel"]}]}}
    assert not list(tmp_path.glob(".*partial"))
    ClassSubset.write_run_files(tmp_path, {})  # a run that selects no classes: an earlier run's map goes
    assert not (tmp_path / "label_map.json").exists()


def test_through_resolve_the_options_are_taken_off_the_format():
    run = {"name": "x", "data": {"format": {"digits": {"classes": [0, 1, 7], "image_size": 8}}}, "model": "simple_cnn",
           "trainer": {"accelerator": "cpu"}}
    registry = Registry.load(only=["class_groups", "digits", "samplers", "simple_cnn", "uint8_pixelnorm"])
    assert take_wrapper_options(registry, run["data"]["format"], "data.format")[0] == {"digits": {"image_size": 8}}
    resolved = resolve(parse_config(run), registry)
    assert resolved.heads == {"digit": 3} and resolved.model.heads["digit"].out_features == 3


def test_with_the_plugin_disabled_the_format_names_the_option_it_does_not_know(capsys):
    from core.cli.plugins import main

    run = {"name": "x", "data": {"format": {"digits": {"classes": [0, 1, 7]}}}, "model": "simple_cnn",
           "plugins": {"disable": ["class_groups"]}}
    config = parse_config(run)
    with pytest.raises(ConfigError, match="format 'digits' has no option 'classes'") as error:
        resolve(config, Registry.load(disable=config.plugins.disable))
    assert error.value.path == "data.format.digits.classes"
    assert main(["show", "class_groups"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("format_wrapper class_groups: plugin class_groups") and "label_map" in shown


@pytest.mark.parametrize("options, path, words", [
    ({"classes": [0, 12]}, "data.format.pets.classes", ["class id 12 is not in head 'animal'", "0..3"]),
    ({"classes": ["cta"]}, "data.format.pets.classes", ["no class 'cta'", "did you mean 'cat'"]),
    ({"classes": {"animals": [0]}}, "data.format.pets.classes.animals", ["no head 'animals'", "did you mean 'animal'"]),
    ({"classes": [1, 1]}, "data.format.pets.classes", ["listed twice"]),
    ({"classes": 3}, "data.format.pets.classes", ["not a list of classes"]),
    ({"classes": [0], "group": "pets"}, "data.format.pets.group", ["selected twice", "data.format.pets.classes"]),
    ({"group": "fish"}, "data.format.pets.group", ["no group 'fish'", "pets, wild"]),
    ({"groups": "g.yaml"}, "data.format.pets.groups", ["no group is chosen"]),
    ({"label_map": {0: 0, 1: 2}}, "data.format.pets.label_map", ["skip [1]"]),
    ({"classes": None}, "data.format.pets", ["selects no classes"]),
])
def test_bad_class_options_name_the_yaml_path(options, path, words):
    with pytest.raises(ConfigError) as error:
        subset(Pets(), **options).meta()
    assert error.value.path == path and all(w in str(error.value) for w in words), str(error.value)


def test_a_class_without_training_samples_names_the_ids_that_exist(tmp_path):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f["stim"] = np.zeros((40, 2, 2), dtype=np.uint8)
        f["label"] = np.arange(40) % 3
        f.attrs["label_classes"] = 6  # classes 3..5 have no trial
    with pytest.raises(ConfigError) as error:
        ClassSubset(HDF5Sessions(str(path)), "data.format.hdf5", classes=[1, 4]).meta()
    assert error.value.path == "data.format.hdf5" and "[4]" in str(error.value) and "exist there: 0..2" in str(error.value)


def test_a_streamed_format_is_refused_when_it_opens():
    fmt = subset(Streamed(), classes=[0])
    assert fmt.meta().heads == {"animal": 1}
    with pytest.raises(ConfigError, match="streams its train batches") as error:
        fmt.open("train")
    assert error.value.path == "data.format.pets" and "core-data convert --to hdf5" in str(error.value)


def test_digits_classes_end_to_end_writes_the_label_map_and_predicts_original_classes(tmp_path):
    from core.cli.train import main  # the console script's entry, in this process (Lightning is imported once)

    sets = [f"output_dir={tmp_path}", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1", "logging=[csv]", "trainer.enable_progress_bar=false"]
    args = ["--config", str(ROOT / "configs" / "digits_classes.yaml"), *(a for s in sets for a in ("--set", s))]
    assert main(["fit", *args]) == 0
    run = tmp_path / "digits_classes"
    saved = json.loads((run / "label_map.json").read_text())["digits"]["digit"]
    assert [(c["id"], c["original_ids"]) for c in saved] == [(0, [0]), (1, [1]), (2, [7])]
    assert json.loads((run / "learned.json").read_text())["data.transforms.0"]["transform"] == "normalize"
    assert main(["predict", *args]) == 0  # the run's normalize values come from learned.json
    with h5py.File(run / "predictions" / "test.h5") as f:
        head = f["digits/digit"]
        assert set(head["predicted_original"][:].tolist()) <= {0, 1, 7}
        assert np.array_equal(head["label_original"][:], np.array([0, 1, 7])[head["label"][:]])
        assert json.loads(head.attrs["label_map"]) == saved
