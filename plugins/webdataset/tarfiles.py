"""The samples of one tar shard, grouped by key as WebDataset groups them.

A sample is the run of consecutive members sharing a key (the name up to the first dot of
its last path component): ``000012.stim.npy`` and ``000012.cls`` make the sample
``{"__key__": "000012", "__url__": url, "stim.npy": b"...", "cls": b"7"}``.

Uncompressed ``.tar`` shards are parsed here from their 512-byte headers (ustar, GNU and pax
long names): Python's ``tarfile`` builds a ``TarInfo`` and a file object per member, which
caps a process at about 7,000 samples/s of three members, against 40,000 here (measured on
shards written by ``convert``; ``benchmarks/webdataset_throughput.py`` times whole
pipelines). Compressed shards (``.tar.gz``, ``.tgz``, ...) go through ``tarfile``'s streaming
reader. Both refuse a shard that ends early, naming the member where it was cut, so a
truncated shard never passes for a shorter one.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import urlparse

from core import DataError

BLOCK = 512
KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # WebDataset's base_plus_ext
META = re.compile(r"__[^/]*__($|/)")  # WebDataset's metadata members, skipped
REGULAR = (b"0", b"\0", b"7")
READ_BUFFER = 1 << 20


class ShardError(DataError):
    """A shard that cannot be read to its end: missing, truncated or corrupt."""


def shard_samples(url: str, allow_pipe: bool = False) -> Iterator[dict[str, Any]]:
    """Every sample of the shard at ``url`` (a path, or any URL ``webdataset.gopen`` opens;
    ``pipe:`` commands only with ``allow_pipe``), in file order."""
    stream = _open(url, allow_pipe)
    stopped_early = False  # by our consumer: a pipe's command then fails as we close it, and that is fine
    try:
        members = _tar_members(stream, url) if _uncompressed(url) else _tarfile_members(stream, url)
        sample: dict[str, Any] | None = None
        for name, data in members:
            match = KEY.match(name)
            if match is None or META.match(name):
                continue
            key, ext = match.group(1), match.group(2).lower()
            if sample is not None and key != sample["__key__"]:
                yield sample
                sample = None
            if sample is None:
                sample = {"__key__": key, "__url__": url}
            if ext in sample:
                raise ShardError(f"shard {url}: sample '{key}' holds '{ext}' twice")
            sample[ext] = data
        if sample is not None:
            yield sample
    except GeneratorExit:
        stopped_early = True
        raise
    except OSError as exc:  # a failing disk, or a pipe: command that exited with an error
        raise ShardError(f"shard {url} could not be read: {exc}") from None
    finally:
        try:
            stream.close()
        except OSError as exc:  # a pipe's command failed: the cause of whatever else went wrong
            if not stopped_early:
                raise ShardError(f"shard {url} could not be read: {exc}") from None


def first_sample(url: str) -> dict[str, Any]:
    """The first sample of a shard (for a dataset's shapes when it has no sidecar)."""
    samples = shard_samples(url)
    try:
        return next(samples)
    except StopIteration:
        raise ShardError(f"shard {url} holds no sample") from None
    finally:
        samples.close()


def _open(url: str, allow_pipe: bool) -> IO[bytes]:
    from plugins.webdataset.urls import is_pipe

    if is_pipe(url) and not allow_pipe:  # the format refuses them without allow_pipe; this never runs one by accident
        raise ShardError(f"shard {url}: a pipe: URL runs a shell command, which the format option allow_pipe: true allows")
    try:
        if urlparse(url).scheme == "":
            return open(url, "rb", buffering=READ_BUFFER)
        from webdataset import gopen

        return gopen(url)
    except OSError as exc:
        raise ShardError(f"cannot open shard {url}: {exc.strerror or exc}") from None


def _uncompressed(url: str) -> bool:
    return url.rstrip().endswith(".tar")


def _tar_members(stream: IO[bytes], url: str) -> Iterator[tuple[str, bytes]]:
    """(name, data) of each regular member of an uncompressed tar stream."""
    pax: dict[bytes, bytes] = {}  # a pax header's records, for the member after it
    long_name: str | None = None
    last: str | None = None  # the last regular member read, for messages
    while True:
        where = f"after member '{last}'" if last else "before its first member"
        header = stream.read(BLOCK)
        if not header and last is None and not pax and long_name is None:
            raise ShardError(f"shard {url} is empty (0 bytes)")
        if len(header) < BLOCK:
            cut = "without its end-of-archive blocks" if not header else "inside a member header"
            raise ShardError(f"shard {url} is truncated: it ends {cut}, {where}")
        if header.count(0) == BLOCK:
            return
        if not _checksum_ok(header):
            if last is None:
                raise ShardError(f"shard {url} is not an uncompressed tar file: its first header fails its checksum "
                                 "(name compressed shards .tar.gz, .tgz, ...)")
            raise ShardError(f"shard {url} is corrupt: the header {where} fails its checksum")
        size = int(pax[b"size"]) if b"size" in pax else _size(header, url, where)
        kind = header[156:157]
        name = long_name or (pax[b"path"].decode("utf-8", "surrogateescape") if b"path" in pax else _name(header))
        data = stream.read(size)
        padding = stream.read(-size % BLOCK)
        if len(data) < size or len(padding) < -size % BLOCK:
            what = f"member '{name}'" if kind in REGULAR else f"an extended header {where}"
            cut = f"{len(data)} of its {size} bytes are there" if len(data) < size else "its padding is cut"
            raise ShardError(f"shard {url} is truncated: it ends inside {what} ({cut})")
        long_name, pax = None, {}
        if kind in REGULAR:
            last = name
            yield name, data
        elif kind == b"L":
            long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif kind == b"x":
            pax = _pax_records(data)
        elif kind == b"S":
            raise ShardError(f"shard {url}: member '{name}' is a sparse file, which shards cannot hold")


def _checksum_ok(header: bytes) -> bool:
    try:
        stored = int(header[148:156].split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        return False
    unsigned = sum(header[:148]) + 256 + sum(header[156:])  # the checksum field counts as 8 spaces
    if stored == unsigned:
        return True
    high = sum(1 for byte in header[:148] + header[156:] if byte > 127)
    return stored == unsigned - 256 * high  # some old writers summed signed bytes


def _size(header: bytes, url: str, where: str) -> int:
    field = header[124:136]
    if field[0] & 0x80:  # GNU base-256 for sizes of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        raise ShardError(f"shard {url} is corrupt: the header {where} has size field {field!r}") from None


def _name(header: bytes) -> str:
    name = header[:100].split(b"\0", 1)[0]
    if header[257:263] == b"ustar\0":  # POSIX ustar: long paths are split into prefix/name
        prefix = header[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "surrogateescape")


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    """The records of a pax extended header: ``"<length> <keyword>=<value>\\n"`` each."""
    records, position = {}, 0
    while position < len(data):
        length_text, _, rest = data[position:].partition(b" ")
        if not length_text.isdigit():
            break
        length = int(length_text)
        keyword, _, value = rest[: length - len(length_text) - 1].partition(b"=")
        records[keyword] = value[:-1]
        position += length
    return records


def _tarfile_members(stream: IO[bytes], url: str) -> Iterator[tuple[str, bytes]]:
    where = "before its first member"
    try:
        archive = tarfile.open(fileobj=stream, mode="r|*")
        for member in archive:
            if member.isreg():
                data = archive.extractfile(member).read()  # type: ignore[union-attr]
                where = f"after member '{member.name}'"
                yield member.name, data
            archive.members = []  # the streaming reader would otherwise keep every member
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise ShardError(f"shard {url} is truncated or corrupt {where} ({type(exc).__name__}: {exc})") from None
