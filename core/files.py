"""Files that a kill cannot leave half-written: each is written under a temporary name in
its own folder, flushed to disk, then moved over the old one with ``os.replace`` (atomic
on one filesystem), so a reader finds the previous complete file or the new one. Light to
import (no torch, no Lightning): formats and tools use it too."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; when the block ends without an error
    the file is fsynced and moved over ``path``, otherwise it is removed."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")  # per writer
    try:
        yield partial
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def write_atomic(path: Path, data: str | bytes) -> None:
    """``data`` into ``path`` through :func:`replaced`."""
    with replaced(path) as partial:
        partial.write_bytes(data.encode() if isinstance(data, str) else data)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (the folder's entry), where the OS allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
