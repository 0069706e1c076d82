"""Named keys (hdf5, webdataset), webdataset's cache_dir, and samplers that see labels (class_balanced)."""

from __future__ import annotations

import functools
import http.server
import io
import tarfile
import threading

import h5py
import numpy as np
import pytest

from core import ConfigError, DataError, DatasetMeta
from core.config import parse_config
from core.data import CoreDataModule
from core.registry import Registry
from core.resolve import resolve
from plugins.hdf5.format import HDF5Sessions
from plugins.samplers.balanced import ClassBalanced

pytest.importorskip("webdataset")
from plugins.webdataset.format import WebDatasetFormat  # noqa: E402
from plugins.webdataset.tarfiles import ShardError  # noqa: E402

MINDEYE_KEYS = {"stim": "images", "responses": "voxels", "kind": "cls"}
FLOAT_KEYS = {"stim": "images", "responses": "voxels"}  # NSD's MindEye files: no labels


@pytest.fixture
def mindeye(tmp_path):
    """A MindEye-style file: ``images`` and ``voxels`` (and labels in ``cls``); trial ``i`` holds ``i``."""
    path = tmp_path / "subj01.h5"
    trials = np.arange(30)
    with h5py.File(path, "w") as f:
        f["images"] = np.broadcast_to(trials[:, None, None, None], (30, 3, 4, 4)).astype(np.uint8)
        f["voxels"] = np.broadcast_to(trials[:, None], (30, 7)).astype(np.float32)
        f["cls"] = trials % 3
    return path


@pytest.mark.parametrize("mode", ["memory", "lazy"])
def test_hdf5_keys_read_a_mindeye_file_as_it_is(mindeye, mode):
    fmt = HDF5Sessions(str(mindeye), mode=mode, keys=MINDEYE_KEYS, val_fraction=0.2, test_fraction=0.2)
    meta = fmt.meta()
    assert meta.stim_shape == (3, 4, 4) and meta.heads == {"kind": 3} and meta.fields["responses"][0] == (7,)
    split = fmt.open("train")
    got = split.read(np.arange(len(split))) if mode == "lazy" else {k: np.asarray(v[:]) for k, v in split.fields.items()}
    trial = got["stim"][:, 0, 0, 0]
    assert set(got) == {"stim", "responses", "kind"} and len(trial) == 18
    assert np.array_equal(got["responses"][:, 6], trial) and np.array_equal(got["kind"], trial % 3)


def test_hdf5_a_key_naming_a_missing_dataset_names_the_file_the_key_and_what_it_has(mindeye):
    with pytest.raises(DataError) as error:
        HDF5Sessions(str(mindeye), keys={"stim": "images", "responses": "voxel"}).meta()
    assert str(mindeye) in str(error.value) and "keys.responses names dataset 'voxel'" in str(error.value)
    assert "['cls', 'images', 'voxels']" in str(error.value)
    with pytest.raises(DataError, match="keys: {stim: images, responses: voxels}"):
        HDF5Sessions(str(mindeye)).meta()  # without keys: the hint
    with pytest.raises(ValueError, match="2 label heads"):
        HDF5Sessions(str(mindeye), keys={"a": "cls", "b": "cls"})


@pytest.fixture
def mindeye_float(tmp_path):
    """MindEye's file as NSD ships it: float16 ``images`` in [0, 1] (N x 3 x H x W) and float16
    ``voxels``; no labels, no split (trials are split by a fixed permutation)."""
    path = tmp_path / "subj01_float16.h5"
    rng = np.random.default_rng(0)
    images = rng.random((40, 3, 16, 16), dtype=np.float32)
    with h5py.File(path, "w") as f:
        f["images"] = images.astype(np.float16)
        f["voxels"] = (images.mean(axis=(2, 3)) @ rng.random((3, 50), dtype=np.float32)).astype(np.float16)
    return path


def test_hdf5_sessions_must_agree_on_the_stim_dtype(mindeye, mindeye_float):
    fmt = HDF5Sessions([str(mindeye), str(mindeye_float)], keys=FLOAT_KEYS)
    with pytest.raises(DataError, match=f"{mindeye} stores stim as uint8, {mindeye_float} as float16; sessions read "
                                        "as one dataset must agree"):
        fmt.meta()


def float_run(path, storage, mode="memory"):
    return {"name": "mindeye", "seed": 0,
            "data": {"format": {"hdf5": {"paths": str(path), "mode": mode, "keys": FLOAT_KEYS}},
                     "storage": storage, "transforms": [{"normalize": {"scale": 1}}], "batch_size": 8, "num_workers": 0},
            "model": {"shared_core_readout": {"channels": 4, "layers": 1, "kernel": 3, "loss": "mse"}}}


@pytest.mark.parametrize("mode", ["memory", "lazy"])
def test_hdf5_float16_images_and_voxels_read_as_stored(mindeye_float, mode):
    fmt = HDF5Sessions(str(mindeye_float), mode=mode, keys=FLOAT_KEYS)
    meta = fmt.meta()
    assert meta.stim_dtype == "float16" and meta.heads == {} and meta.fields == {"responses": ((50,), "float32")}
    split = fmt.open("val")
    got = split.read(np.arange(len(split))) if mode == "lazy" else {k: np.asarray(v[:]) for k, v in split.fields.items()}
    assert got["stim"].dtype == np.float16 and got["responses"].dtype == np.float32 and got["stim"].shape == (4, 3, 16, 16)
    with h5py.File(mindeye_float) as f:
        first = int(fmt.assignment["val"][1][0])
        assert np.array_equal(got["stim"][0], f["images"][first])


@pytest.mark.parametrize("mode, storage", [("memory", "float32"), ("lazy", "bfloat16")])
def test_hdf5_float_stim_trains_through_a_float_storage(mindeye_float, tmp_path, mode, storage):
    from core.testing import run_config

    metrics = run_config(float_run(mindeye_float, storage, mode), output_dir=tmp_path / "runs")
    assert np.isfinite(metrics["train/loss_epoch"]) and np.isfinite(metrics["test/corr"])


def test_hdf5_float_stim_in_uint8_storage_is_refused_in_the_dry_run(mindeye_float):
    registry = Registry.load()
    plan = resolve(parse_config(float_run(mindeye_float, "float32")), registry).memory.table()
    assert "(cannot hold float16 stim)" in plan
    with pytest.raises(ConfigError) as error:
        resolve(parse_config(float_run(mindeye_float, "uint8", "lazy")), registry)  # what --dry-run does: before loading
    assert error.value.path == "data.storage"
    assert "storage 'uint8' holds raw uint8 pixels, but the dataset's stim is float16" in error.value.message
    assert error.value.fix == "set data.storage: bfloat16 or float32"


def test_validate_reports_non_finite_float_stim_under_keys(mindeye_float, capsys):
    from core.cli.data import main
    from plugins.hdf5.tool import HDF5Tool

    assert HDF5Tool().validate(mindeye_float, keys=FLOAT_KEYS) == []
    with h5py.File(mindeye_float, "a") as f:
        f["images"][5, 1, 2, 3] = np.inf
    problems = HDF5Tool().validate(mindeye_float, keys=FLOAT_KEYS)
    assert len(problems) == 1 and f"{mindeye_float}: stim holds inf at trial 5" in problems[0], problems
    assert main(["validate", "--option", "keys.stim=images", "--option", "keys.responses=voxels", str(mindeye_float)]) == 1
    assert problems[0] in capsys.readouterr().out
    with h5py.File(mindeye_float, "a") as f:
        f["float64"] = np.zeros((40, 3, 16, 16))
    with pytest.raises(DataError, match="stim is float64; the session layout stores uint8 pixels or float16/float32"):
        HDF5Sessions(str(mindeye_float), keys={"stim": "float64"}).meta()


def write_tar(path, n, seed=0):
    """A shard of ``n`` MindEye-like samples: images.npy, voxels.npy, behav.npy and cls."""
    rng = np.random.default_rng(seed)

    def npy(array):
        out = io.BytesIO()
        np.save(out, array)
        return out.getvalue()

    with tarfile.open(path, "w") as tar:
        for i in range(n):
            for name, data in ((f"{i:06d}.images.npy", npy(rng.integers(0, 256, (3, 4, 4), dtype=np.uint8))),
                               (f"{i:06d}.voxels.npy", npy(np.full(5, i, dtype=np.float32))),
                               (f"{i:06d}.behav.npy", npy(np.zeros(2, dtype=np.float32))),
                               (f"{i:06d}.cls", str(i % 3).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def one_epoch(fmt, split="train"):
    stream = fmt.open(split)
    batches = stream.batches(batch_size=4, train=False, seed=0, epoch=lambda: 0, rank=0, world_size=1, num_workers=0)
    return list(batches)


@pytest.fixture
def shards(tmp_path):
    for split, n in (("train", 12), ("val", 4), ("test", 4)):
        write_tar(tmp_path / f"{split}.tar", n)
    return tmp_path


def wds(base, **options):  # noqa: ANN003
    return WebDatasetFormat(f"{base}/train.tar", val_urls=f"{base}/val.tar", test_urls=f"{base}/test.tar", num_classes=3,
                            **options)


def test_webdataset_keys_name_the_members(shards):
    fmt = wds(shards, keys=MINDEYE_KEYS)
    meta = fmt.meta()
    assert meta.heads == {"kind": 3} and set(meta.fields) == {"responses"}  # behav.npy is not named: not carried
    batch = one_epoch(fmt)[0]
    assert set(batch) == {"stim", "responses", "kind"} and batch["responses"][:, 0].tolist() == [0, 1, 2, 3]
    assert batch["kind"].tolist() == [0, 1, 2, 0]
    with pytest.raises(DataError) as error:
        wds(shards, keys={"stim": "images", "responses": "voxel"}).meta()
    assert "train.tar" in str(error.value) and "keys.responses names 'voxel'" in str(error.value)
    assert "images.npy, voxels.npy, behav.npy, cls" in str(error.value)


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        CountingHandler.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


@pytest.fixture
def server(shards):
    CountingHandler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(CountingHandler, directory=str(shards)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_webdataset_cache_dir_downloads_each_shard_once_and_reuses_it(server, tmp_path):
    cache = tmp_path / "cache"
    fmt = wds(server, keys=MINDEYE_KEYS, cache_dir=str(cache))
    fmt.meta()  # reads the first sample over the network (a dry run downloads no whole shard)
    first = [b["responses"][:, 0].tolist() for b in one_epoch(fmt)]
    assert CountingHandler.requests == ["/train.tar", "/train.tar"]  # the first sample, then the whole shard
    other = wds(server, keys=MINDEYE_KEYS, cache_dir=str(cache))  # another run (its metadata as the first's)
    other.spec = fmt.spec
    assert [b["responses"][:, 0].tolist() for b in one_epoch(fmt) + one_epoch(other)] == first * 2
    assert len(CountingHandler.requests) == 2  # the next epoch and the other run read the local copy
    assert [p.name.split("-", 1)[1] for p in cache.iterdir()] == ["train.tar"]  # no partial file left
    missing = WebDatasetFormat(f"{server}/nothing.tar", val_urls=f"{server}/val.tar", test_urls=f"{server}/test.tar",
                               num_classes=3, sidecar=None, cache_dir=str(cache), keys=MINDEYE_KEYS)
    missing.spec = fmt.spec  # the shard does not exist: only the read fails
    with pytest.raises(DataError, match="nothing.tar could not be fetched into cache_dir"):
        one_epoch(missing)
    assert issubclass(ShardError, DataError) and not list(cache.glob(".*partial"))


def balanced(labels, n_ranks=1, epoch=0, seed=0):
    sampler = ClassBalanced()
    sampler.bind_meta(DatasetMeta("d", (1, 2, 2), {"label": int(labels.max()) + 1}, {}))
    sampler.bind({"label": labels})
    return [sampler.indices(len(labels), epoch=epoch, seed=seed, rank=r, world_size=n_ranks) for r in range(n_ranks)]


def test_class_balanced_draws_every_class_equally_and_gives_ranks_disjoint_equal_shares():
    labels = np.array([0] * 80 + [1] * 15 + [2] * 5)  # 100 samples, 3 classes
    (whole,) = balanced(labels)
    counts = np.bincount(labels[whole], minlength=3)
    assert len(whole) == 100 and counts.max() - counts.min() <= 1 and counts.min() == 33
    assert len(set(whole[labels[whole] == 0])) == counts[0]  # a large class: without replacement
    assert set(whole[labels[whole] == 2]) == set(range(95, 100))  # a small class: every sample, repeated
    ranks = balanced(labels, n_ranks=3)
    assert {len(r) for r in ranks} == {34}  # equal shares (padded by wrapping): disjoint positions of one order
    padded = np.concatenate([whole, whole[:2]])
    assert all(np.array_equal(ranks[r], padded[r::3]) for r in range(3))
    assert not np.array_equal(balanced(labels, epoch=1)[0], whole)
    assert np.array_equal(balanced(labels)[0], whole)  # a function of (seed, epoch)


def test_class_balanced_sees_the_label_head_through_a_run(tmp_path):
    run = {"name": "b", "data": {"format": {"digits": {"classes": [0, 1, 7]}}, "sampler": "class_balanced",
                                 "batch_size": 50},
           "model": "simple_cnn", "trainer": {"accelerator": "cpu"}}
    registry = Registry.load(only=["class_groups", "digits", "samplers", "simple_cnn", "uint8_pixelnorm"])
    resolved = resolve(parse_config(run), registry)
    sampler = resolved.first.sampler
    assert sampler.needs == ("digit",)  # a label head: refused before samplers could see labels
    module = CoreDataModule.single(resolved.first.fmt, resolved.storage, [], [], sampler, sampler, 50, 0, 0)
    module.setup("fit")  # binds the training split's labels
    labels = module.splits["train"]["digit"].numpy()
    order = sampler.indices(len(labels), epoch=0, seed=0, rank=0, world_size=1)
    assert np.ptp(np.bincount(labels[order])) <= 1 and set(labels.tolist()) == {0, 1, 2}
    run["data"]["sampler"] = {"class_balanced": {"head": "parity"}}
    with pytest.raises(ConfigError, match="no head 'parity'") as error:
        resolve(parse_config(run), registry)
    assert error.value.path == "data.sampler.class_balanced"
