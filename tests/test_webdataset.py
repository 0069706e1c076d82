"""The webdataset plugin: shards written with webdataset's own TarWriter, the round trip through
``core-data convert``, rank and worker splitting, bad input, and a training run of the CLI."""

import io
import json
import logging
import re
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from core import ConfigError, DataError, DataFormat, DatasetMeta, DiskSplit, Split
from tests.conftest import ROOT, run_main

wds = pytest.importorskip("webdataset")

import plugins.webdataset  # noqa: E402
from core.registry import Registry  # noqa: E402
from core.resolve import check  # noqa: E402
from plugins.digits.format import Digits  # noqa: E402
from plugins.webdataset.format import WebDatasetFormat  # noqa: E402
from plugins.webdataset.tarfiles import shard_samples  # noqa: E402
from plugins.webdataset.tool import WebDatasetTool  # noqa: E402

NEURONS = 5


def write_shards(folder, name, samples, per_shard, ext="tar", drop=None):
    """Shards ``{name}-{i:06d}.{ext}`` written by webdataset's TarWriter; ``drop``: {index: member to leave out}."""
    folder.mkdir(parents=True, exist_ok=True)
    for shard, start in enumerate(range(0, len(samples), per_shard)):
        with wds.TarWriter(str(folder / f"{name}-{shard:06d}.{ext}")) as writer:
            for index in range(start, min(start + per_shard, len(samples))):
                sample = {"__key__": f"{index:06d}", **samples[index]}
                sample.pop((drop or {}).get(index), None)
                writer.write(sample)
    return str(folder / f"{name}-{{000000..{shard:06d}}}.{ext}")


def session_samples(stim_shape, n=24, seed=0):
    """Samples in the session layout: stim, responses ((neurons,) or (T, neurons)), contrast, label."""
    rng = np.random.default_rng(seed)
    stim = rng.integers(0, 256, size=(n, *stim_shape), dtype=np.uint8)
    frames = (stim_shape[0],) if len(stim_shape) == 3 and stim_shape[0] not in (1, 3) else ()
    responses = rng.random((n, *frames, NEURONS), dtype=np.float32)
    contrast = rng.random(n, dtype=np.float32)
    labels = np.arange(n) % 4
    samples = [{"stim.npy": stim[i], "responses.npy": responses[i], "contrast.npy": np.asarray(contrast[i]),
                "cls": int(labels[i])} for i in range(n)]
    return samples, {"stim": stim, "responses": responses, "contrast": contrast, "label": labels}


def read_epoch(fmt, split="train", **kwargs):
    args = dict(batch_size=5, train=False, seed=0, epoch=lambda: 0, rank=0, world_size=1, num_workers=0)
    return list(fmt.open(split).batches(**{**args, **kwargs}))


def column(batches, key):
    return np.concatenate([b[key].numpy() for b in batches])


def labelled(folder, n, per_shard, **options):
    """Shards whose label is the sample's index (so every sample is identifiable), and their format."""
    samples = [{"stim.npy": np.full((2, 2), i % 256, dtype=np.uint8), "cls": i} for i in range(n)]
    urls = write_shards(folder, "train", samples, per_shard)
    return WebDatasetFormat(urls, val_urls=urls, test_urls=urls, num_classes=n, **options)


@pytest.fixture(scope="module")
def digits_wds(tmp_path_factory):
    out = tmp_path_factory.mktemp("wds") / "digits"
    result = run_main("core-data", "convert", "--from", "digits", "--to", "webdataset", "--to-option", "shard_size=200", out)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("stim_shape, stim_axes, core_shape", [
    ((8, 8), None, (1, 8, 8)),
    ((3, 8, 8), None, (3, 8, 8)),
    ((4, 8, 8), "THW", (4, 1, 8, 8)),
])
def test_shards_from_webdatasets_own_writer_read_back_every_value(tmp_path, stim_shape, stim_axes, core_shape):
    samples, expected = session_samples(stim_shape)
    urls = write_shards(tmp_path, "train", samples, per_shard=10)
    fmt = WebDatasetFormat(urls, val_urls=urls, test_urls=urls, num_classes=4, stim_axes=stim_axes)
    meta = fmt.meta()
    assert (meta.stim_shape, meta.stim_axes, meta.heads) == (core_shape, "TCHW" if stim_axes else "CHW", {"label": 4})
    assert meta.fields == {"responses": (expected["responses"].shape[1:], "float32"), "contrast": ((), "float32")}
    written = np.argsort(expected["contrast"])  # workers interleave shards: compare sorted by a unique value
    for workers in (0, 2):
        batches = read_epoch(fmt, num_workers=workers)
        read = np.argsort(column(batches, "contrast"))
        stim = column(batches, "stim")[read]
        assert stim.shape == (24, *core_shape)
        np.testing.assert_array_equal(stim.reshape(24, *stim_shape), expected["stim"][written])
        np.testing.assert_array_equal(column(batches, "responses")[read], expected["responses"][written])
        np.testing.assert_array_equal(column(batches, "label")[read], expected["label"][written])
        dtypes = {key: str(value.dtype) for key, value in batches[0].items()}
        assert dtypes == {"stim": "torch.uint8", "responses": "torch.float32", "contrast": "torch.float32",
                          "label": "torch.int64"}
        assert batches[0]["contrast"].shape == batches[0]["label"].shape == (5,)


def test_png_stimuli_and_gzipped_shards(tmp_path):
    samples, expected = session_samples((8, 8))
    images = [{"png": s["stim.npy"], "cls": s["cls"]} for s in samples]
    png = write_shards(tmp_path / "png", "train", images, per_shard=10)
    gz = write_shards(tmp_path / "gz", "train", samples, per_shard=10, ext="tar.gz")
    for urls in (png, gz):
        fmt = WebDatasetFormat(urls, val_urls=urls, test_urls=urls, num_classes=4)
        assert fmt.meta().stim_shape == (1, 8, 8)
        np.testing.assert_array_equal(column(read_epoch(fmt), "stim")[:, 0], expected["stim"])


@pytest.mark.parametrize("tar_format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_the_tar_reader_reads_long_names_of_every_tar_format(tmp_path, tar_format):
    members = [("d" * 90 + "/" + "k" * 60 + ".stim.npy", b"x" * 700), ("d" * 90 + "/" + "k" * 60 + ".cls", b"3"),
               ("short.cls", b"4")]
    if tar_format != tarfile.USTAR_FORMAT:
        members.append(("\u00fc" * 120 + ".cls", b"5"))  # too long for ustar: a pax path or a GNU long name
    path = tmp_path / "names.tar"
    with tarfile.open(path, "w", format=tar_format) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    expected: dict[str, dict[str, bytes]] = {}
    for name, data in members:
        key, ext = name.split(".", 1)
        expected.setdefault(key, {"__key__": key, "__url__": str(path)})[ext] = data
    assert list(shard_samples(str(path))) == list(expected.values())


def test_convert_digits_round_trip_gives_the_same_samples(digits_wds):
    assert sorted(p.name for p in digits_wds.iterdir())[:3] == ["dataset_info.json", "test-000000.tar", "test-000001.tar"]
    digits, fmt = Digits(), WebDatasetFormat(str(digits_wds))
    assert fmt.meta() == digits.meta()
    for split in ("train", "val", "test"):
        stream = fmt.open(split).batches(batch_size=64, train=False, seed=0, epoch=lambda: 0, rank=0, world_size=1,
                                         num_workers=0)
        batches = list(stream)
        assert len(stream) == len(batches)
        np.testing.assert_array_equal(column(batches, "stim"), digits.open(split).fields["stim"])
        np.testing.assert_array_equal(column(batches, "digit"), digits.open(split).fields["digit"])
    with pytest.raises(DataError, match="cannot write the shards to .*digits: it already holds files; remove it"):
        WebDatasetTool().write(digits, digits_wds)
    report = json.loads(run_main("core-data", "inspect", "--json", digits_wds).stdout)
    assert report["splits"]["train"] == {"shards": 7, "samples": 1258} and report["heads"] == {"digit": "10 classes, in cls"}


class Sessions(DataFormat):
    """A small in-memory source with fields and two heads; its test split is read from "disk" (a DiskSplit)."""

    def __init__(self):
        rng = np.random.default_rng(1)
        self.splits = {split: {"stim": rng.integers(0, 256, size=(n, 2, 1, 6, 6), dtype=np.uint8),
                               "responses": rng.random((n, 2, NEURONS), dtype=np.float32),
                               "contrast": rng.random(n, dtype=np.float32), "label": np.arange(n) % 4,
                               "parity": np.arange(n) % 2} for split, n in (("train", 30), ("val", 7), ("test", 9))}

    def meta(self):
        sizes = {split: len(fields["stim"]) for split, fields in self.splits.items()}
        return DatasetMeta("sessions", (2, 1, 6, 6), {"label": 4, "parity": 2}, sizes, stim_axes="TCHW",
                           fields={"responses": ((2, NEURONS), "float32"), "contrast": ((), "float32")})

    def open(self, split):
        fields = self.splits[split]
        if split != "test":
            return Split(fields)

        class OnDisk(DiskSplit):
            def __len__(self):
                return len(fields["stim"])

            def read(self, indices):
                return {name: values[indices] for name, values in fields.items()}

        return OnDisk()


def test_the_writer_keeps_every_field_and_head(tmp_path):
    source = Sessions()
    WebDatasetTool().write(source, tmp_path / "out", shard_size=8)
    fmt = WebDatasetFormat(str(tmp_path / "out"))
    assert fmt.meta() == source.meta()
    for split, fields in source.splits.items():
        batches = read_epoch(fmt, split)
        for name, values in fields.items():
            np.testing.assert_array_equal(column(batches, name), values)
    assert WebDatasetTool().validate(tmp_path / "out") == []


def test_two_ranks_of_two_workers_read_every_sample_once_per_epoch(tmp_path):
    fmt = labelled(tmp_path, n=200, per_shard=25)  # 8 shards: 2 per worker per rank
    for train in (False, True):
        for epoch in (0, 1):
            seen = []
            for rank in (0, 1):
                batches = read_epoch(fmt, batch_size=10, train=train, epoch=lambda: epoch, rank=rank, world_size=2,
                                     num_workers=2)
                seen.append(column(batches, "label").tolist())
            assert len(seen[0]) == len(seen[1]) == 100 and not set(seen[0]) & set(seen[1])
            assert sorted(seen[0] + seen[1]) == list(range(200))
            if epoch == 0:
                first = seen[0]
        again = column(read_epoch(fmt, batch_size=10, train=train, epoch=lambda: 1, rank=0, world_size=2, num_workers=2),
                       "label").tolist()
        assert again == seen[0]  # the same (seed, epoch) gives the same order
        assert (first != seen[0]) == train  # shuffled per epoch only when training


def test_evaluation_reads_every_sample_once_across_ranks_however_many_shards(tmp_path, digits_wds):
    fmt = labelled(tmp_path, n=175, per_shard=25)  # 7 shards: ranks split each shard's samples instead
    seen = [column(read_epoch(fmt, batch_size=10, rank=rank, world_size=2, num_workers=2), "label").tolist()
            for rank in (0, 1)]
    assert sorted(seen[0] + seen[1]) == list(range(175)) and abs(len(seen[0]) - len(seen[1])) <= 7
    val = WebDatasetFormat(str(digits_wds)).open("val")  # one shard of 180 samples for two ranks
    counts = []
    for rank in (0, 1):
        stream = val.batches(batch_size=32, train=False, seed=0, epoch=lambda: 0, rank=rank, world_size=2, num_workers=0)
        batches = list(stream)
        assert len(stream) == len(batches)
        counts.append(len(column(batches, "digit")))
    assert sum(counts) == 180 and counts[0] == 90


def test_uneven_shards_are_warned_about_and_training_steps_stay_equal_across_ranks(digits_wds, caplog):
    fmt = WebDatasetFormat(str(digits_wds))  # 7 train shards, the last of 58 samples
    lengths = []
    with caplog.at_level(logging.WARNING, logger="core"):
        for rank in (0, 1):
            stream = fmt.open("train").batches(batch_size=64, train=True, seed=0, epoch=lambda: 0, rank=rank,
                                               world_size=2, num_workers=0)
            lengths.append((len(stream), len(list(stream))))
    assert "the 7 train shards give 2 ranks unequal shares: ranks read" in caplog.text
    assert "each epoch stops at the smallest rank's number of batches" in caplog.text
    assert lengths[0] == lengths[1] and lengths[0][0] == lengths[0][1]


def test_resampled_epochs_have_epoch_length_samples(tmp_path):
    fmt = labelled(tmp_path, n=40, per_shard=10, resampled=True, epoch_length=50)
    for epoch in (0, 1):
        stream = fmt.open("train").batches(batch_size=10, train=True, seed=0, epoch=lambda: epoch, rank=0, world_size=1,
                                           num_workers=2)
        labels = column(list(stream), "label")
        assert len(stream) == 5 and len(labels) == 50 and set(labels) <= set(range(40))


def test_paths_that_match_no_file(tmp_path):
    urls = write_shards(tmp_path, "train", session_samples((8, 8))[0], per_shard=8)  # train-{000000..000002}.tar
    with pytest.raises(DataError, match=r"option urls: '.*/x-\{000000..000009\}.tar' matches no file \(it expands to 10 "
                                        r"paths, .*/x-000000.tar ... .*/x-000009.tar\); relative paths are read from"):
        WebDatasetFormat(str(tmp_path / "x-{000000..000009}.tar"), val_urls=urls, test_urls=urls)
    with pytest.raises(DataError, match=r"option val_urls: '.*/nothing-\*.tar' matches no file"):
        WebDatasetFormat(urls, val_urls=str(tmp_path / "nothing-*.tar"), test_urls=urls)
    with pytest.raises(DataError, match=r"option test_urls: '.*': 2 of its 5 shards do not exist: .*train-000003.tar, "):
        WebDatasetFormat(urls, val_urls=urls, test_urls=urls.replace("000002", "000004"))
    with pytest.raises(ValueError, match="urls names shards, not a folder .* name the val shards with val_urls"):
        WebDatasetFormat(urls)


def test_a_missing_shard_is_one_clear_message_from_the_cli(tmp_path):
    result = run_main("core-data", "info", "webdataset", "--option", f"urls={tmp_path}/train-{{000000..000003}}.tar",
                     "--option", "val_urls=x.tar", "--option", "test_urls=x.tar")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: webdataset: option urls:" in result.stderr and "matches no file (it expands to 4 paths" in result.stderr
    assert "fix: check the path or pattern, or write shards with: core-data convert" in result.stderr


def test_a_truncated_shard_raises_or_is_skipped_and_counted(tmp_path, caplog):
    samples = session_samples((8, 8), n=30)[0]
    urls = write_shards(tmp_path, "train", samples, per_shard=10)
    cut = tmp_path / "train-000001.tar"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    fmt = WebDatasetFormat(urls, val_urls=urls, test_urls=urls, num_classes=4)
    with pytest.raises(DataError, match=r"shard .*train-000001.tar is truncated: it ends .*\n  fix: rewrite or "
                                        r"remove that shard .* or set the format option handler: warn_and_continue"):
        read_epoch(fmt)
    skipping = WebDatasetFormat(urls, val_urls=urls, test_urls=urls, num_classes=4, handler="warn_and_continue")
    with caplog.at_level(logging.WARNING, logger="core"):
        labels = column(read_epoch(skipping), "label")
    assert 20 < len(labels) < 30  # the other shards, and the cut shard's samples before the cut
    assert re.search(r"webdataset: skipped the rest of 1 truncated or corrupt shard\(s\) of the train split in epoch 0; "
                     r"the first: shard .*train-000001.tar is truncated", caplog.text)


def test_a_sample_without_stim_raises_or_is_skipped_and_counted(tmp_path, caplog):
    urls = write_shards(tmp_path, "train", session_samples((8, 8), n=20)[0], per_shard=10, drop={13: "stim.npy"})
    fmt = WebDatasetFormat(urls, val_urls=urls, test_urls=urls, num_classes=4)
    for workers in (0, 2):  # a worker's error reaches the main process as the same message, without its traceback
        with pytest.raises(DataError) as error:
            read_epoch(fmt, num_workers=workers)
        assert re.match(r"shard .*train-000001.tar, sample '000013': no stim \(stim.npy, or an image: stim.png, png, "
                        r"stim.jpg, jpg, jpeg\); the sample holds cls, contrast.npy, responses.npy\n  fix: ", str(error.value))
        assert "Traceback" not in str(error.value)
    skipping = WebDatasetFormat(urls, val_urls=urls, test_urls=urls, num_classes=4, handler="warn_and_continue")
    with caplog.at_level(logging.WARNING, logger="core"):
        assert len(column(read_epoch(skipping), "label")) == 19
    assert "skipped 1 bad sample(s) of the train split in epoch 0; the first: shard" in caplog.text


def test_option_errors_name_the_option():
    registry = Registry()
    registry.add(plugins.webdataset)
    urls = str(ROOT / "README.md")
    with pytest.raises(ConfigError, match=r"config error at data.format.webdataset: format 'webdataset': resampled: true "
                                          r"draws shards with replacement without end, so an epoch needs a length; "
                                          r"set epoch_length"):
        check(registry, "format", {"webdataset": {"urls": urls, "resampled": True}}, "data.format").build()


def test_without_a_sidecar_the_class_count_must_be_given(tmp_path):
    urls = write_shards(tmp_path, "train", session_samples((8, 8))[0], per_shard=24)
    with pytest.raises(ConfigError, match=r"config error at data.format.webdataset.num_classes: the shards have no "
                                          r"dataset_info.json, so the number of classes of their label"):
        WebDatasetFormat(urls, val_urls=urls, test_urls=urls).meta()
    with pytest.raises(DataError, match=r"stim has shape \(4, 8, 8\): channels \(CHW\) or frames \(THW\)\? Set the "
                                        r"format option stim_axes"):
        frames = write_shards(tmp_path / "t", "train", session_samples((4, 8, 8))[0], per_shard=24)
        WebDatasetFormat(frames, val_urls=frames, test_urls=frames, num_classes=4).meta()


def test_validate_names_every_bad_file_and_sample(digits_wds, tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(digits_wds, folder)
    cut = folder / "train-000002.tar"
    cut.write_bytes(cut.read_bytes()[:5000])
    (folder / "stray-000000.tar").write_bytes(b"")
    digits = Digits().open("val").fields
    samples = [{"stim.npy": digits["stim"][i], "cls": int(digits["digit"][i])} for i in range(179)]
    samples[3].pop("stim.npy")
    samples[7]["stim.npy"] = np.zeros((1, 8, 7), dtype=np.uint8)
    samples[9]["cls"] = 12
    (folder / "val-000000.tar").unlink()
    write_shards(folder, "val", samples, per_shard=179)
    problems = WebDatasetTool().validate(folder)
    expected = [
        "stray-000000.tar: not listed in dataset_info.json, so never read",
        "train-000002.tar is truncated: it ends ",
        "val-000000.tar, sample '000003': no stim",
        "val-000000.tar, sample '000007': stim is uint8 (1, 8, 7), the dataset's samples are uint8 (1, 8, 8) (from ",
        "val-000000.tar, sample '000009': label 12 of head 'digit' (cls) is outside [0, 10)",
        "val-000000.tar holds 179 samples, dataset_info.json says 180",
    ]
    assert len(problems) == len(expected), problems
    for text in expected:
        assert any(text in problem for problem in problems), (text, problems)
    result = run_main("core-data", "validate", folder)
    assert result.returncode == 1 and "6 problem(s)" in result.stdout


def test_training_from_converted_digits_with_the_cli(write_config, digits_wds, tmp_path):
    path = write_config(f"""
        name: wds
        output_dir: OUTPUT_DIR
        seed: 3
        data:
          format: {{webdataset: {{urls: {digits_wds}, shuffle_buffer: 500}}}}
          storage: uint8
          transforms: [pixelnorm]
          batch_size: 64
          num_workers: 2
        model: {{simple_cnn: {{conv1: 8, conv2: 8, fc_hidden: 16}}}}
        optim: {{optimizer: adamw, lr: 0.01}}
        trainer: {{max_epochs: 2, accelerator: cpu, enable_progress_bar: false, enable_model_summary: false}}
    """)
    result = run_main("core-train", "--config", path)
    assert result.returncode == 0, result.stderr
    accuracy = float(re.search(r"test/digit_acc = ([0-9.]+)", result.stdout).group(1))
    assert accuracy > 0.3  # two epochs of a tiny model: learning, not converged
    used = json.loads((tmp_path / "runs" / "wds" / "plugins.json").read_text())["used"]
    assert ("format", "webdataset", "webdataset") in {(u["kind"], u["name"], u["plugin"]) for u in used}


def test_without_webdataset_the_plugin_is_unavailable_with_the_install_command():
    hide = ("import importlib.util, sys\n"
            "real = importlib.util.find_spec\n"
            "importlib.util.find_spec = lambda name, *a: None if name == 'webdataset' else real(name, *a)\n")
    listing = subprocess.run([sys.executable, "-c", hide + "from core.cli.plugins import main\nmain(['--json'])"],
                             capture_output=True, text=True, cwd=ROOT)
    row = next(r for r in json.loads(listing.stdout)["plugins"] if r["plugin"] == "webdataset")
    assert row["status"] == "unavailable" and "pip install 'core-train[webdataset]'" in row["error"]


def test_pipe_urls_are_refused_unless_allowed_and_never_run_to_read_the_metadata(tmp_path, write_config):
    folder = tmp_path / "wds"
    WebDatasetTool().write(Digits(), folder, shard_size=600)
    marker = tmp_path / "RAN"
    shard = folder / "train-000000.tar"
    pipe = f"pipe:touch {marker} && cat {shard}"
    registry = Registry()
    registry.add(plugins.webdataset)
    for option in ("urls", "val_urls"):
        options = {"urls": str(shard), "val_urls": str(shard), "test_urls": str(shard), option: pipe}
        with pytest.raises(ConfigError) as refused:
            check(registry, "format", {"webdataset": options}, "data.format").build()
        assert str(refused.value).startswith(f"config error at data.format.webdataset.{option}: 'pipe:touch ")
        assert "is a pipe: URL, which runs that shell command; a config runs commands only with the format option " \
               "allow_pipe: true (off by default)\n  fix: set allow_pipe: true" in str(refused.value)
    with pytest.raises(ConfigError, match="' PIPE:echo' is a pipe: URL"):  # as webdataset's gopen parses it
        WebDatasetFormat(" PIPE:echo", val_urls=str(shard), test_urls=str(shard))
    allowed = WebDatasetFormat(pipe, val_urls=str(shard), test_urls=str(shard), allow_pipe=True)
    with pytest.raises(DataError, match=r"webdataset: the training shards are named by pipe: commands .* which are run "
                                        r"only to train, never to read the metadata .*\n  fix: copy the dataset's "
                                        r"dataset_info.json .* and name it with the format option sidecar: PATH"):
        allowed.meta()
    assert not marker.exists()
    config = write_config(f"""
        name: piped
        output_dir: OUTPUT_DIR
        data:
          format: {{webdataset: {{urls: "{pipe}", val_urls: {shard}, test_urls: {shard}, allow_pipe: true,
                                 sidecar: {folder / 'dataset_info.json'}}}}}
          storage: uint8
          transforms: [pixelnorm]
        model: {{simple_cnn: {{conv1: 4, conv2: 4, fc_hidden: 8}}}}
        trainer: {{max_epochs: 1, accelerator: cpu}}
    """)
    done = run_main("core-train", "--config", config, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert not marker.exists()  # the dry run read the local sidecar, and ran nothing
    piped = WebDatasetFormat(pipe, val_urls=str(shard), test_urls=str(shard), allow_pipe=True,
                             sidecar=str(folder / "dataset_info.json"))
    assert len(column(read_epoch(piped), "digit")) == 600 and marker.exists()  # reading runs it: allowed


def test_skipped_samples_are_reported_once_per_split_and_epoch_with_their_counts(tmp_path, caplog):
    samples = session_samples((8, 8), n=40)[0]
    urls = write_shards(tmp_path, "train", samples, per_shard=10, drop={3: "stim.npy", 25: "cls"})
    fmt = WebDatasetFormat(urls, val_urls=urls, test_urls=urls, num_classes=4, handler="warn_and_continue")
    stream = fmt.open("train").batches(batch_size=5, train=True, seed=0, epoch=lambda: 2, rank=0, world_size=1,
                                       num_workers=2)
    with caplog.at_level(logging.WARNING, logger="core"):
        assert len(column(list(stream), "label")) == 35  # 38 good samples, batches of 5, the incomplete one dropped
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1, warnings  # one for the split, not one per worker
    assert warnings[0].startswith("webdataset: skipped 2 bad sample(s) of the train split in epoch 2; the first: shard ")
    assert stream.skipped == {"samples": 2, "shards": 0}
    with pytest.raises(TypeError, match="warn_and_continue a bad sample shortens the epoch"):
        len(stream)  # so that Lightning validates when the epoch ends, however many batches it had


def test_a_split_that_yields_no_batch_is_an_error_naming_it_and_its_shards(tmp_path):
    samples = session_samples((8, 8), n=20)[0]
    urls = write_shards(tmp_path, "train", samples, per_shard=10)
    val = write_shards(tmp_path, "val", samples, per_shard=10)
    for shard in sorted(tmp_path.glob("val-*.tar")):
        shard.write_bytes(shard.read_bytes()[:2000])  # cut inside the first sample
    fmt = WebDatasetFormat(urls, val_urls=val, test_urls=urls, num_classes=4, handler="warn_and_continue")
    with pytest.raises(DataError, match=r"webdataset: the val split in epoch 0 gave no batch: every sample read was "
                                        r"skipped as bad \(the rest of 2 truncated or corrupt shard\(s\); the first: shard "
                                        r".*\); shards: .*val-000000.tar, .*val-000001.tar\n  fix: "):
        read_epoch(fmt, "val", num_workers=2)
    few = write_shards(tmp_path / "few", "train", samples[:3], per_shard=10)
    fmt = WebDatasetFormat(few, val_urls=few, test_urls=few, num_classes=4)
    with pytest.raises(DataError, match=r"the train split in epoch 0 gave no batch: it read 3 sample\(s\), fewer than one "
                                        r"batch of 5, and training drops an incomplete batch"):
        read_epoch(fmt, train=True)


def test_non_finite_fields_and_contrast_out_of_range_are_bad_samples(tmp_path):
    samples = session_samples((8, 8), n=10)[0]
    samples[2]["responses.npy"] = np.full(NEURONS, np.nan, np.float32)
    samples[6]["contrast.npy"] = np.asarray(1.5, np.float32)
    urls = write_shards(tmp_path, "train", samples, per_shard=10)
    fmt = WebDatasetFormat(urls, val_urls=urls, test_urls=urls, num_classes=4)
    with pytest.raises(DataError, match=r"sample '000002': responses.npy holds nan; responses must be finite numbers"):
        read_epoch(fmt)
    problems = WebDatasetTool().validate(tmp_path / "train-000000.tar")
    assert any("sample '000006': contrast.npy holds 1.5, outside [0, 1]" in p for p in problems), problems


def test_a_truncated_training_shard_with_warn_and_continue_still_validates(tmp_path, write_config):
    folder = tmp_path / "wds"
    WebDatasetTool().write(Digits(), folder, shard_size=300)
    cut = folder / "train-000001.tar"
    cut.write_bytes(cut.read_bytes()[:20000])
    config = write_config(f"""
        name: cut
        output_dir: OUTPUT_DIR
        data:
          format: {{webdataset: {{urls: {folder}, handler: warn_and_continue, shuffle_buffer: 100}}}}
          storage: uint8
          transforms: [pixelnorm]
          batch_size: 64
        model: {{simple_cnn: {{conv1: 4, conv2: 4, fc_hidden: 8}}}}
        trainer: {{max_epochs: 1, accelerator: cpu, enable_progress_bar: false, enable_model_summary: false}}
    """)
    done = run_main("core-train", "--config", config)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "webdataset: skipped the rest of 1 truncated or corrupt shard(s) of the train split in epoch 0" in done.stderr
    assert (tmp_path / "runs" / "cut" / "checkpoints" / "best.ckpt").is_file()  # validation ran
    assert "val/" in (tmp_path / "runs" / "cut" / "metrics.csv").read_text()
