"""Files that a kill cannot leave half-written: each is written under a temporary name in
its own folder, flushed to disk, then moved over the old one with ``os.replace`` (atomic
on one filesystem), so a reader finds the previous complete file or the new one. Light to
import (no torch, no Lightning): formats and tools use it too."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import DataError


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


def make_folder(folder: Path, what: str) -> None:
    """Create ``folder`` (and its parents); a path under a file, or a folder that cannot be
    created, is a DataError naming it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocking = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), None)
        why = f"{blocking} is a file, not a folder" if blocking is not None else (exc.strerror or str(exc))
        raise DataError(f"cannot write {what} to {folder}: {why}; choose another output folder") from None


@contextmanager
def new_folder(out: Path, what: str) -> Iterator[Path]:
    """A temporary folder beside ``out`` to write a dataset into; when the block ends without
    an error it is renamed to ``out``, otherwise removed. A kill leaves the hidden
    ``.<name>.<pid>.partial`` folder, never a folder that looks complete. ``out`` must be new
    or empty: one dataset is never written over (or mixed into) another."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"cannot write {what} to {out}: it already holds "
                        f"{'files' if out.is_dir() else 'a file of that name'}; remove it or choose another output folder")
    make_folder(out.parent, f"{what} {out}")
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        yield partial
        if out.exists():
            out.rmdir()  # empty (checked above); rename cannot replace a folder that holds files
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _sync_folder(out.parent)
