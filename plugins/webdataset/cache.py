"""Shards fetched from URLs, kept in a local folder: the format option ``cache_dir``.

A remote shard (``http://``, ``https://`` or another URL ``webdataset.gopen`` opens; never
``pipe:``) is downloaded once, under a temporary name in the cache folder, and moved into
place with ``os.replace`` when it is complete, so a killed download is never taken for a
shard; every later read (the next epoch, another worker, rank or run) opens the local copy.
Its name is the URL's file name after a hash of the whole URL (``3f2a...-train-000000.tar``).
Two processes fetching the same shard at once each write their own temporary file; the
second ``os.replace`` puts an identical file in place.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from urllib.parse import urlparse

from core.files import replaced
from plugins.webdataset.tarfiles import ShardError
from plugins.webdataset.urls import is_pipe, is_remote

CHUNK = 1 << 20


def cached(url: str, cache_dir: str | None) -> str:
    """The local copy of shard ``url`` in ``cache_dir`` (fetched now if it is not there yet),
    or ``url`` itself when there is no cache or the shard is local."""
    if cache_dir is None or not is_remote(url) or is_pipe(url):
        return url
    folder = Path(cache_dir).expanduser()
    local = folder / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{Path(urlparse(url).path).name or 'shard.tar'}"
    if local.is_file():
        return str(local)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with replaced(local) as partial, _open(url) as source, open(partial, "wb") as out:
            expected = _length(source)
            shutil.copyfileobj(source, out, CHUNK)
            if expected is not None and out.tell() != expected:
                raise OSError(f"the transfer ended after {out.tell()} of {expected} bytes")
    except Exception as exc:  # noqa: BLE001 (urllib's and http.client's errors are not all OSError)
        raise ShardError(f"shard {url} could not be fetched into cache_dir {folder}: {exc}") from None
    return str(local)


def _open(url: str):  # noqa: ANN202 (a binary file object)
    if urlparse(url).scheme in ("http", "https"):
        import urllib.request

        return urllib.request.urlopen(url, timeout=60)  # noqa: S310 (the config named this URL)
    from webdataset import gopen

    return gopen(url)


def _length(source: object) -> int | None:
    headers = getattr(source, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    return int(value) if value and value.isdigit() else None
