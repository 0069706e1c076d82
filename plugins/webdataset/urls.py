"""The shard lists the format's ``urls``, ``val_urls`` and ``test_urls`` options name.

Each option is one string or a list of them; each string is a path, a brace pattern
(``data/train-{000000..000009}.tar``), a glob (``data/train-*.tar``) or a URL that
``webdataset.gopen`` opens (``https://...``, or with the format's ``allow_pipe: true``
``pipe:aws s3 cp s3://bucket/train-000000.tar -``).
Local paths are checked here, so a pattern matching no file fails before training, naming
the option, the pattern and what it expanded to. A folder written by
``core-data convert --to webdataset`` gives its split's shards.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from urllib.parse import urlparse

from core import DataError
from plugins.webdataset.sidecar import SIDECAR, Sidecar

WRITE_HINT = "write shards with: core-data convert --from FORMAT --to webdataset FOLDER"


def is_pipe(url: str) -> bool:
    """A ``pipe:`` URL (any case, leading spaces too: as ``webdataset.gopen`` parses it), whose
    rest gopen runs as a shell command."""
    return urlparse(url).scheme == "pipe"


def is_remote(url: str) -> bool:
    """A URL that ``webdataset.gopen`` opens (``pipe:``, ``http://``...), which cannot be checked here."""
    return is_pipe(url) or ("://" in url and not url.startswith("file://"))


def expand_urls(urls: str | list[str], option: str) -> list[str]:
    """Every shard ``urls`` names, in order; a local path or pattern matching no file is a DataError."""
    from braceexpand import braceexpand  # webdataset's own dependency, light

    shards: list[str] = []
    for item in [urls] if isinstance(urls, str) else urls:
        if is_remote(item):
            shards.extend(braceexpand(item))
            continue
        item = item.removeprefix("file://")
        paths = list(braceexpand(item))
        missing = []
        for path in paths:
            found = sorted(glob.glob(path)) if glob.has_magic(path) else [path] if os.path.isfile(path) else []
            if not found:
                missing.append(path)
            shards.extend(found)
        if missing:
            raise DataError(_missing_message(item, paths, missing, option))
    if not shards:
        raise DataError(f"webdataset: option {option} is empty; name at least one shard ({WRITE_HINT})")
    return shards


def _missing_message(item: str, paths: list[str], missing: list[str], option: str) -> str:
    where = f"webdataset: option {option}: '{item}'"
    if Path(missing[0]).is_dir():
        what = f"{where} is a folder; give it alone as urls (a folder with {SIDECAR}) or name its shards"
    elif len(paths) == 1:
        what = f"{where} matches no file"
    elif len(missing) == len(paths):
        what = f"{where} matches no file (it expands to {len(paths)} paths, {paths[0]} ... {paths[-1]})"
    else:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        what = f"{where}: {len(missing)} of its {len(paths)} shards do not exist: {shown}"
    return f"{what}; relative paths are read from {os.getcwd()}\n  fix: check the path or pattern, or {WRITE_HINT}"


def folder_shards(folder: Path, split: str, sidecar: Sidecar | None) -> list[str]:
    """The shards of ``split`` in a folder: those its sidecar lists, else ``<split>-*.tar``."""
    if sidecar is not None:
        names = list(sidecar.shards.get(split, {}))
        missing = [name for name in names if not (folder / name).is_file()]
        if missing:
            raise DataError(f"webdataset: {folder / SIDECAR} lists {len(missing)} {split} shard(s) that do not exist: "
                            f"{', '.join(missing[:5])}\n  fix: convert the dataset again, or restore the shards")
        if not names:
            raise DataError(f"webdataset: {folder / SIDECAR} lists no {split} shard; a run needs train, val and test")
        return [str(folder / name) for name in names]
    shards = sorted(glob.glob(str(folder / f"{split}-*.tar")))
    if not shards:
        raise DataError(f"webdataset: folder {folder} has no {SIDECAR} and no {split}-*.tar shards\n"
                        f"  fix: name the shards with urls, val_urls and test_urls, or {WRITE_HINT}")
    return shards
