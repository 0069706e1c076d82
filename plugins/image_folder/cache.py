"""The decode cache: an image folder decoded once to ``.npy``, reopened as a memory map.

For each listed folder and decoding (size, channels) the cache holds three files in
``<root>/.core-cache/`` (or ``cache_dir``): ``<name>.npy`` (uint8 ``(n, C, S, S)``),
``<name>.labels.npy`` (int64) and ``<name>.json`` (the listing's stamp, the counts and the
files skipped as unreadable). The JSON is written last, each file under a temporary name
then moved into place with ``os.replace``, so a killed build leaves no cache that looks
valid. A listing whose stamp (names, sizes, modification times) differs rebuilds.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import DataError
from core.files import replaced, write_atomic
from plugins.image_folder.decode import decode_all
from plugins.image_folder.scan import Listing

VERSION = 1  # bump when decoding changes: old caches then rebuild
CACHE_FOLDER = ".core-cache"
SHOWN = 20
COPY_ROWS = 4096  # rows moved at a time when unreadable files are dropped: bounded memory
log = logging.getLogger("core")


@dataclass(frozen=True)
class Decoded:
    """One folder's images (a read-only memory map) and labels, without the skipped files."""

    stim: np.ndarray
    labels: np.ndarray
    skipped: list[str]


@dataclass(frozen=True)
class CacheFiles:
    stim: Path
    labels: Path
    info: Path

    @classmethod
    def of(cls, listing: Listing, root: Path, size: int, channels: int, cache_dir: Path | None) -> CacheFiles:
        """Beside the data the key is the folder relative to ``root`` (the data and its cache
        move together); in ``cache_dir`` it is the folder's absolute path."""
        where = listing.folder.resolve().as_posix() if cache_dir else listing.folder.relative_to(root).as_posix()
        key = hashlib.sha256(json.dumps([VERSION, where, size, channels]).encode()).hexdigest()[:12]
        base = (cache_dir or root / CACHE_FOLDER) / f"{listing.folder.name}-{size}px-{channels}c-{key}"
        return cls(base.with_suffix(".npy"), base.with_suffix(".labels.npy"), base.with_suffix(".json"))


def load_or_build(listing: Listing, files: CacheFiles, size: int, channels: int, workers: int, skip_bad: bool) -> Decoded:
    """The cached decoding of ``listing`` when its stamp still matches, else decode and cache it."""
    stamp = listing.stamp
    cached = load_cached(files, stamp)
    if cached is not None:
        return cached
    return _build(listing, files, stamp, size, channels, workers, skip_bad)


def load_cached(files: CacheFiles, stamp: str) -> Decoded | None:
    """The cached decoding (images memory-mapped, none read) when it is whole and its stamp is ``stamp``, else None."""
    try:
        info = json.loads(files.info.read_text())
        if info.get("version") != VERSION or info.get("stamp") != stamp:
            return None
        stim = np.load(files.stim, mmap_mode="c")  # copy-on-write: writable for torch, never written back
        labels = np.load(files.labels)
    except (OSError, ValueError):  # missing, half-deleted or foreign files: decode again
        return None
    if len(stim) != info.get("samples") or len(labels) != len(stim):
        return None
    return Decoded(stim, labels, list(info.get("skipped", [])))


def _build(listing: Listing, files: CacheFiles, stamp: str, size: int, channels: int, workers: int,
           skip_bad: bool) -> Decoded:
    folder = files.stim.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise DataError(f"{listing.folder}: cannot write the decode cache to {folder} ({exc.strerror}); "
                        "set the option cache_dir to a writable folder") from None
    with replaced(files.stim) as partial:
        log.info(f"image_folder: decoding {len(listing.files)} images of {listing.folder} to {files.stim}")
        bad = decode_all([str(listing.folder / f) for f in listing.files], partial, size, channels, workers)
        keep = _keep(listing, bad, skip_bad)
        if keep is not None:
            _compact(partial, keep)
        labels = listing.labels if keep is None else listing.labels[keep]
        buffer = io.BytesIO()
        np.save(buffer, labels)
        write_atomic(files.labels, buffer.getvalue())
    skipped = [f"{listing.files[row]}: {reason}" for row, reason in bad]
    write_atomic(files.info, json.dumps({"version": VERSION, "folder": str(listing.folder), "stamp": stamp,
                                     "files": len(listing.files), "samples": len(labels), "skipped": skipped}, indent=1).encode())
    return Decoded(np.load(files.stim, mmap_mode="c"), labels, skipped)


def _keep(listing: Listing, bad: list[tuple[int, str]], skip_bad: bool) -> np.ndarray | None:
    """The rows to keep (None: all); unreadable files are an error unless ``skip_bad``."""
    if not bad:
        return None
    named = "\n  ".join(f"{listing.folder / listing.files[row]}: {reason}" for row, reason in bad[:SHOWN])
    more = f"\n  ... and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    if not skip_bad:
        raise DataError(f"{listing.folder}: {len(bad)} of {len(listing.files)} image files cannot be read:\n  {named}{more}"
                        "\n  fix: replace or remove them, or set skip_bad: true to train without them")
    log.warning(f"image_folder: skipped {len(bad)} unreadable image file(s) of {listing.folder}:\n  {named}{more}")
    keep = np.ones(len(listing.files), dtype=bool)
    keep[[row for row, _ in bad]] = False
    return np.flatnonzero(keep)


def _compact(path: Path, keep: np.ndarray) -> None:
    """Rewrite the ``.npy`` file ``path`` with only the rows ``keep``."""
    rows = np.load(path, mmap_mode="r")
    smaller = path.with_name(path.name + ".kept")
    out = np.lib.format.open_memmap(smaller, mode="w+", dtype=rows.dtype, shape=(len(keep), *rows.shape[1:]))
    for start in range(0, len(keep), COPY_ROWS):
        out[start : start + COPY_ROWS] = rows[keep[start : start + COPY_ROWS]]
    out.flush()
    del out, rows
    os.replace(smaller, path)
