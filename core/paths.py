"""Checks on where a run writes, made before training starts (a file named like
``output_dir``, or a folder the user cannot write, would otherwise fail as a traceback
after the data is loaded)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from core.config import RunConfig
from core.errors import ConfigError

OUTPUT_DIR_FIX = "set output_dir to a folder you can write (or --set output_dir=...)"


def check_output_dir(config: RunConfig) -> Path:
    """The run directory ``output_dir/name`` can be created and written; return it.

    Creates nothing: the deepest part of the path that exists must be a folder this process
    can write in (checked by creating and at once removing an unnamed temporary file there,
    which catches read-only filesystems and ACLs that ``os.access`` misses)."""
    output_dir = Path(config.output_dir)
    run_dir = output_dir / config.name
    existing = next((p for p in (run_dir, *run_dir.parents) if p.exists() or p.is_symlink()), Path("."))
    key = "name" if existing == run_dir else "output_dir"
    if not existing.is_dir():
        what = "a broken link" if existing.is_symlink() and not existing.exists() else "a file, not a folder"
        if existing == run_dir:
            raise ConfigError(key, f"the run directory {run_dir} is {what}",
                              fix="choose another name (--set name=...), or move the file away")
        raise ConfigError(key, f"'{existing}' is {what}, so the run directory {run_dir} cannot be made under it",
                          fix=OUTPUT_DIR_FIX)
    where = f"'{existing}'" + ("" if existing == run_dir else f" (where the run directory {run_dir} would be made)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(key, f"cannot write in {where}: permission denied", fix=OUTPUT_DIR_FIX)
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ConfigError(key, f"cannot write in {where}: {exc.strerror or exc}", fix=OUTPUT_DIR_FIX) from None
    return run_dir
