"""Formats ``mnist``, ``fashion_mnist``, ``cifar10``, the ``idx`` tool and the download helper,
against a local HTTP server (with Range support) serving small synthetic archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from core import DataError
from plugins.standard_datasets.cifar10 import Cifar10
from plugins.standard_datasets import mnist
from plugins.standard_datasets.download import fetch
from plugins.standard_datasets.idx import IMAGES, encode_idx, read_idx
from plugins.standard_datasets.mnist import FILES, FashionMnist, Mnist
from plugins.standard_datasets.tool import IdxTool
from tests.conftest import assert_labels_match_open


class Server:
    """Serves ``files`` (``{path: bytes}``) on 127.0.0.1; honours ``Range: bytes=N-`` unless
    ``ranges`` is false; ``requests`` records each request's path and Range header."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.ranges = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                asked = self.headers.get("Range")
                server.requests.append((self.path, asked))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = int(asked.removeprefix("bytes=").split("-")[0]) if asked and server.ranges else 0
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server() -> Iterator[Server]:
    served = Server()
    thread = threading.Thread(target=served.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def idx_files(n_train: int = 40, n_test: int = 10, seed: int = 0) -> dict[str, bytes]:
    """The four MNIST files (gzip-compressed) of random 28x28 images, labels 0..9."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = FILES[split]
        out[f"{images}.gz"] = gzip.compress(encode_idx(rng.integers(0, 256, (n, 28, 28))))
        out[f"{labels}.gz"] = gzip.compress(encode_idx(np.arange(n) % 10))
    return out


def serve_mnist(server: Server, files: dict[str, bytes]) -> dict[str, str]:
    server.files.update({f"/mnist/{name}": data for name, data in files.items()})
    return {name: sha256(data) for name, data in files.items()}


def test_mnist_downloads_verifies_and_reads(server, tmp_path):
    files = idx_files()
    checksums = serve_mnist(server, files)
    fmt = Mnist(str(tmp_path / "mnist"), download=True, mirror=f"{server.url}/mnist", checksums=checksums, val_fraction=0.25)
    before = fmt.meta()  # nothing fetched for the metadata: the official sizes
    assert before.split_sizes == {"train": 45_000, "val": 15_000, "test": 10_000} and not server.requests
    train, val, test = fmt.open("train"), fmt.open("val"), fmt.open("test")
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(files)
    assert (len(train), len(val), len(test)) == (30, 10, 10) and train.fields["stim"].shape == (30, 1, 28, 28)
    assert test.fields["digit"].tolist() == list(range(10)) and test.fields["digit"].dtype == np.int64
    meta = Mnist(str(tmp_path / "mnist"), val_fraction=0.25).meta()
    assert meta.split_sizes == {"train": 30, "val": 10, "test": 10} and meta.stim_shape == (1, 28, 28)
    assert meta.heads == {"digit": 10} and meta.extra["class_names"]["digit"][3] == "3"


def test_a_partial_download_resumes_with_a_range_request(server, tmp_path):
    data = bytes(range(256)) * 1000
    server.files["/blob"] = data
    (tmp_path / "blob.part").write_bytes(data[:100_000])
    fetch(f"{server.url}/blob", tmp_path / "blob", sha256(data))
    assert (tmp_path / "blob").read_bytes() == data and not (tmp_path / "blob.part").exists()
    assert server.requests == [("/blob", "bytes=100000-")]
    server.ranges = False  # a server that ignores Range sends it all again; the part is rewritten
    (tmp_path / "again.part").write_bytes(b"junk")
    fetch(f"{server.url}/blob", tmp_path / "again", sha256(data))
    assert (tmp_path / "again").read_bytes() == data


def test_a_checksum_mismatch_names_the_file_and_both_sums(server, tmp_path):
    files = idx_files()
    checksums = serve_mnist(server, files)
    wrong = "0" * 64
    fmt = FashionMnist(str(tmp_path), download=True, mirror=f"{server.url}/mnist",
                       checksums={**checksums, "t10k-images-idx3-ubyte.gz": wrong})
    with pytest.raises(DataError) as error:
        fmt.open("test")
    message = str(error.value)
    assert f"{tmp_path / 't10k-images-idx3-ubyte.gz'}: sha256 checksum mismatch" in message
    assert f"expected {wrong}, got {checksums['t10k-images-idx3-ubyte.gz']}" in message
    assert not list(tmp_path.glob("t10k-images*"))  # neither the file nor a .part that would resume wrongly
    with pytest.raises(DataError, match=r"/mnist/nothing: HTTP 404"):
        fetch(f"{server.url}/mnist/nothing", tmp_path / "nothing", wrong)


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(DataError, match=r"(?s)mnist files missing: train-images-idx3-ubyte, .*set download: true"):
        Mnist(str(tmp_path)).meta()
    with pytest.raises(ValueError, match=r"checksums names \['train.gz'\]"):
        Mnist(str(tmp_path), checksums={"train.gz": "0" * 32})
    with pytest.raises(ValueError, match="neither an md5"):
        Cifar10(str(tmp_path), checksum="abc")


def write_mnist(root: Path, files: dict[str, bytes]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).write_bytes(data)


def test_an_idx_file_with_the_wrong_magic_is_named(tmp_path):
    files = idx_files()
    files["train-labels-idx1-ubyte.gz"], files["train-images-idx3-ubyte.gz"] = (
        files["train-images-idx3-ubyte.gz"], files["train-labels-idx1-ubyte.gz"])  # swapped
    write_mnist(tmp_path, files)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: magic number 0x00000801 \(2049\), expected "
                                        r"0x00000803 \(2051\) for IDX images"):
        Mnist(str(tmp_path)).meta()


def test_a_truncated_idx_file_is_named_plain_or_gzip(tmp_path):
    write_mnist(tmp_path, idx_files())
    plain = tmp_path / "t10k-images-idx3-ubyte"
    plain.write_bytes(encode_idx(read_idx(tmp_path / "t10k-images-idx3-ubyte.gz", IMAGES))[: 16 + 5000])
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: truncated: 5000 bytes of values, but the header's "
                                        r"shape 10 x 28 x 28 needs 7840"):
        Mnist(str(tmp_path)).open("test")
    gz = tmp_path / "train-labels-idx1-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:-12])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: a damaged or truncated gzip file"):
        Mnist(str(tmp_path)).open("train")
    assert any("truncated" in p for p in IdxTool().validate(tmp_path))


def test_idx_tool_writes_inspects_and_validates(tmp_path):
    from plugins.digits.format import Digits

    IdxTool().write(Digits(), tmp_path)
    assert IdxTool().recognises(tmp_path) and IdxTool().validate(tmp_path) == []
    report = IdxTool().inspect(tmp_path)
    assert report["t10k-images-idx3-ubyte"]["shape"] == [359, 8, 8] and report["t10k-images-idx3-ubyte"]["gzip"]
    meta = Mnist(str(tmp_path), val_fraction=0.125).meta()
    assert meta.split_sizes == {"train": 1258, "val": 180, "test": 359} and meta.stim_shape == (1, 8, 8)


def cifar_archive(n_per_batch: int = 6) -> bytes:
    """A cifar-10-python.tar.gz of Python 2-style pickles (byte keys), plus a member that
    tries to escape the folder."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        batches = {f"data_batch_{i}": n_per_batch for i in range(1, 6)} | {"test_batch": 4}
        members = {name: {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}
                   for name, n in batches.items()}
        members["batches.meta"] = {b"label_names": [f"c{i}".encode() for i in range(10)]}
        for name, obj in [*members.items(), ("../escape", {"x": 1})]:
            data = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_cifar10_downloads_unpacks_only_its_files_and_reads(server, tmp_path):
    archive = cifar_archive()
    server.files["/c10.tgz"] = archive
    root = tmp_path / "cifar10"
    fmt = Cifar10(str(root), download=True, url=f"{server.url}/c10.tgz", checksum=hashlib.md5(archive).hexdigest())
    train, val, test = fmt.open("train"), fmt.open("val"), fmt.open("test")
    assert (len(train), len(val), len(test)) == (27, 3, 4) and train.fields["stim"].shape == (27, 3, 32, 32)
    assert sorted(p.name for p in root.iterdir()) == sorted(["batches.meta", "test_batch"] + [f"data_batch_{i}" for i in range(1, 6)])
    assert not (tmp_path / "escape").exists()
    meta = Cifar10(str(root)).meta()
    assert meta.split_sizes == {"train": 27, "val": 3, "test": 4} and meta.extra["class_names"]["class"][0] == "c0"


def test_cifar10_pickles_cannot_run_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("ran code from data",))

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (tmp_path / name).write_bytes(pickle.dumps({"data": Exploit(), "labels": []}))
    with pytest.raises(DataError, match=r"data_batch_1: cannot be read as a pickle: .*refused 'builtins.print'"):
        Cifar10(str(tmp_path)).meta()


def write_labelled_mnist(root: Path, labels: dict[str, np.ndarray]) -> None:
    """The four MNIST files (gzip-compressed) in ``root``: random images, ``labels[file split]``."""
    files = idx_files(n_train=len(labels["train"]), n_test=len(labels["test"]))
    files.update({f"{FILES[split][1]}.gz": gzip.compress(encode_idx(values)) for split, values in labels.items()})
    write_mnist(root, files)


@pytest.mark.parametrize("cls", [Mnist, FashionMnist])
def test_idx_labels_are_read_from_the_labels_files_alone_and_match_open(cls, tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    write_labelled_mnist(tmp_path, {"train": rng.integers(0, 10, 50), "test": rng.integers(0, 10, 12)})  # order counts
    read = []
    real = mnist.read_idx
    monkeypatch.setattr(mnist, "read_idx", lambda path, magic: read.append(path.name) or real(path, magic))
    fmt = cls(str(tmp_path), val_fraction=0.2, split_seed=3)
    assert [len(fmt.labels(split)[cls.release.head]) for split in ("train", "val", "test")] == [40, 10, 12]
    assert read == ["train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]  # no images file, each labels file once
    assert_labels_match_open(fmt, [cls.release.head])
    assert_labels_match_open(cls(str(tmp_path), val_fraction=0.2, split_seed=3), [cls.release.head])


def test_labels_are_unknown_until_the_files_are_downloaded(server, tmp_path):
    fmt = Mnist(str(tmp_path / "mnist"), download=True, mirror=f"{server.url}/mnist")
    assert fmt.labels("train") is None and not server.requests  # a dry run downloads nothing
    assert Cifar10(str(tmp_path / "c10"), download=True, url=f"{server.url}/c10.tgz").labels("test") is None
    assert not server.requests


def test_cifar10_labels_match_open(server, tmp_path):
    archive = cifar_archive()
    server.files["/c10.tgz"] = archive
    root = tmp_path / "cifar10"
    Cifar10(str(root), download=True, url=f"{server.url}/c10.tgz", checksum=hashlib.md5(archive).hexdigest()).open("test")
    assert_labels_match_open(Cifar10(str(root), val_fraction=0.2, split_seed=1), ["class"])


def test_dry_run_with_classes_reports_the_exact_split_sizes(tmp_path, capsys):
    from core.cli.train import main  # in this process: the dry run's report

    # 1 and 7: 10 of train's 50 labels, 3 of test's 12
    write_labelled_mnist(tmp_path / "mnist", {"train": np.arange(50) % 10, "test": np.arange(12) % 10})
    sets = [f"data.format.mnist.root={tmp_path / 'mnist'}", "data.format.mnist.download=false",
            "data.format.mnist.classes=[1, 7]", "data.format.mnist.val_fraction=0.2", "data.format.mnist.split_seed=3",
            f"output_dir={tmp_path}"]
    assert main(["--config", "configs/mnist.yaml", "--dry-run", *(a for s in sets for a in ("--set", s))]) == 0
    opened = Mnist(str(tmp_path / "mnist"), val_fraction=0.2, split_seed=3)
    kept = {split: int(np.isin(opened.open(split).fields["digit"], [1, 7]).sum()) for split in ("train", "val", "test")}
    assert kept == {"train": 7, "val": 3, "test": 3}
    assert f"splits {kept} (exact), heads {{'digit': 2}}" in capsys.readouterr().out
