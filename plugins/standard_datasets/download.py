"""Fetches a dataset's official files over HTTP(S), with urllib only: resumable, verified, atomic.

:func:`fetch` streams ``url`` into ``<target>.part``; a ``.part`` left by an interrupted
download is continued with an HTTP ``Range`` request (a server that ignores it sends the
whole file again). The finished file's md5 or sha256 must equal the expected checksum;
only then is it moved to ``target`` with ``os.replace``, so ``target`` is always whole.
A file lock keeps two processes (DDP ranks) from writing the same ``.part``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import logging
import os
import string
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from core import DataError

BLOCK = 1 << 20
TIMEOUT_S = 60.0
ALGORITHMS = {32: "md5", 64: "sha256"}  # by hex digits
log = logging.getLogger("core")


def check_checksum(checksum: str) -> str:
    """The algorithm of ``checksum`` (an md5 or sha256 hex digest), or ValueError."""
    if len(checksum) not in ALGORITHMS or not set(checksum) <= set(string.hexdigits):
        raise ValueError(f"checksum '{checksum}' is neither an md5 (32 hex digits) nor a sha256 (64 hex digits)")
    return ALGORITHMS[len(checksum)]


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, target: Path, checksum: str) -> None:
    """Download ``url`` to ``target`` (resuming ``<target>.part``) and verify ``checksum``."""
    algorithm = check_checksum(checksum)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    with _locked(target.with_name(f".{target.name}.lock")):
        if target.is_file():  # another process fetched it while this one waited
            return
        _download(url, partial)
        actual = file_digest(partial, algorithm)
        if actual != checksum.lower():
            partial.unlink()
            raise DataError(f"{target}: {algorithm} checksum mismatch: expected {checksum.lower()}, got {actual} "
                            f"(downloaded from {url}; the download was removed)\n  fix: check the url or mirror option; "
                            "if that server holds another version of the file on purpose, give its checksum")
        os.replace(partial, target)
    log.info(f"downloaded {url} to {target} ({algorithm} verified)")


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)


def _download(url: str, partial: Path) -> None:
    have = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310 (http(s) URLs of the options)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part is already whole: its checksum decides
            return
        raise DataError(f"{url}: HTTP {exc.code} {exc.reason}; check the url or mirror option") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"{url}: cannot download ({reason}); check the network and the url or mirror option, "
                        f"or put the file at {partial.with_suffix('')} yourself") from None
    with response:
        resumed = have > 0 and response.status == 206
        if resumed and not (response.headers.get("Content-Range") or "").startswith(f"bytes {have}-"):
            raise DataError(f"{url}: asked for the bytes from {have} on, the server sent "
                            f"'{response.headers.get('Content-Range')}'; delete {partial} to download it whole")
        log.info(f"{'resuming' if resumed else 'downloading'} {url}" + (f" at byte {have}" if resumed else ""))
        with open(partial, "ab" if resumed else "wb") as out:
            try:
                while block := response.read(BLOCK):
                    out.write(block)
            except (OSError, http.client.HTTPException) as exc:  # a dropped connection or a timeout: what arrived stays for the next try
                raise DataError(f"{url}: the download stopped after {out.tell()} bytes ({exc}); run again to resume "
                                f"from {partial}") from None
