"""Format ``webdataset``: samples streamed from tar shards in the WebDataset layout.

``urls`` is a folder written by ``core-data convert --to webdataset`` (its train, val and
test shards and ``dataset_info.json``), or the training shards themselves (paths, brace
patterns, globs, URLs, or a list of them) with ``val_urls`` and ``test_urls``.
``meta()`` reads the sidecar, or the first sample of the first training shard when there is
none; no other sample is read before training.

``keys`` names other members (``{stim: images, responses: voxels}``; see
:mod:`plugins.webdataset.samples`); ``cache_dir`` keeps shards fetched from URLs in a local
folder, downloaded once (:mod:`plugins.webdataset.cache`).

``pipe:`` URLs run a shell command, so a config may name them only with ``allow_pipe: true``,
and ``meta()`` (run by ``--dry-run``) never runs one: shards named by ``pipe:`` need a local
``dataset_info.json`` (the ``sidecar`` option).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from core import SPLITS, ConfigError, DataError, DataFormat, DatasetMeta
from plugins.webdataset.samples import SampleSpec, spec_from_sample, spec_from_sidecar
from plugins.webdataset.sidecar import SIDECAR, read_sidecar
from plugins.webdataset.stream import ReadOptions, WebDatasetStream
from plugins.webdataset.tarfiles import first_sample
from plugins.webdataset.urls import expand_urls, folder_shards, is_pipe, is_remote

Urls = str | list[str]


class WebDatasetFormat(DataFormat):
    streams = True

    def __init__(
        self,
        urls: Urls,
        val_urls: Urls | None = None,
        test_urls: Urls | None = None,
        shuffle_buffer: int = 1000,
        resampled: bool = False,
        epoch_length: int | None = None,
        handler: Literal["raise", "warn_and_continue"] = "raise",
        num_classes: int | None = None,
        stim_axes: Literal["HW", "CHW", "THW", "TCHW"] | None = None,
        allow_pipe: bool = False,
        sidecar: str | None = None,
        keys: dict[str, str] | None = None,
        cache_dir: str | None = None,
    ) -> None:
        """``urls``: a folder written by ``core-data convert --to webdataset``, or the training
        shards (a path, a brace pattern, a glob, a URL, or a list of them).
        ``val_urls``: the ``val`` shards, in the forms ``urls`` takes (default: the folder's;
        required when ``urls`` names shards).
        ``test_urls``: the ``test`` shards, in the forms ``urls`` takes (default: the folder's;
        required when ``urls`` names shards).
        ``shuffle_buffer``: samples each worker holds for shuffling when training (>= 0; 0 or 1:
        shard order only).
        ``resampled``: draw training shards with replacement, endlessly (``epoch_length`` then
        says how many samples an epoch has per rank).
        ``epoch_length``: training samples per epoch per rank, repeating the shards or drawing
        them with ``resampled`` (>= 1; required with ``resampled``).
        ``handler``: what a bad sample or shard does, ``raise`` an error that names it or
        ``warn_and_continue`` (skip it, and report the count per split when the epoch ends).
        ``num_classes``: the class count of the label, for shards without a sidecar (>= 1).
        ``stim_axes``: the axes of a stored ``stim.npy``, for shards without a sidecar (needed
        for a 3-axis stim whose first axis is not 1 or 3).
        ``allow_pipe``: let ``pipe:`` URLs run their shell command when the data is read.
        ``sidecar``: a local ``dataset_info.json`` describing the shards (default: the folder's).
        ``keys``: the member holding each field (``{stim: images, responses: voxels}``) and each
        head's label (``{<head>: <member>}``), where they differ from the defaults.
        ``cache_dir``: a local folder where shards named by URLs are downloaded once and reused."""
        for option, value in (("urls", urls), ("val_urls", val_urls), ("test_urls", test_urls)):
            pipes = [u for u in ([value] if isinstance(value, str) else value or []) if is_pipe(u)]
            if pipes and not allow_pipe:
                raise ConfigError(
                    option,  # relative to the options: the core puts it under the format's YAML path
                    f"'{pipes[0][:200]}' is a pipe: URL, which runs that shell command; a config runs commands only "
                    "with the format option allow_pipe: true (off by default)",
                    fix="set allow_pipe: true in the format's options if you trust the command (it runs with your "
                        "permissions when the shards are read, never by --dry-run), or name local shards or https:// URLs")
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, not {shuffle_buffer}")
        if epoch_length is not None and epoch_length < 1:
            raise ValueError(f"epoch_length must be at least 1, not {epoch_length}")
        if resampled and epoch_length is None:
            raise ValueError("resampled: true draws shards with replacement without end, so an epoch needs a length; "
                             "set epoch_length (training samples per epoch per rank, e.g. epoch_length: 10000)")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, not {num_classes}")
        if keys and (empty := [key for key, member in keys.items() if not member]):
            raise ValueError(f"keys.{empty[0]} is empty; name the member of each sample that holds it")
        self.keys = keys
        self.folder = Path(urls) if isinstance(urls, str) and Path(urls).is_dir() else None
        self.options = ReadOptions(shuffle_buffer, resampled, epoch_length, handler == "warn_and_continue", allow_pipe,
                                   cache_dir)
        self.num_classes, self.stim_axes = num_classes, stim_axes
        self.shards = {
            "train": self._shards(urls, "train", "urls"),
            "val": self._shards(val_urls, "val", "val_urls"),
            "test": self._shards(test_urls, "test", "test_urls"),
        }
        first = self.shards["train"][0]
        if sidecar is not None:
            path = Path(sidecar).expanduser()
            if path.name != SIDECAR or not path.is_file():
                raise ValueError(f"sidecar '{sidecar}' is not a local {SIDECAR} file; name the {SIDECAR} that "
                                 "core-data convert --to webdataset wrote with the shards (a local copy)")
            self.sidecar_folder: Path | None = path.parent
        else:
            self.sidecar_folder = self.folder or (Path(first).parent if not is_remote(first) else None)
        self.sidecar = read_sidecar(self.sidecar_folder) if self.sidecar_folder is not None else None

    def _shards(self, urls: Urls | None, split: str, option: str) -> list[str]:
        if urls is None:
            if self.folder is None:
                raise ValueError(f"urls names shards, not a folder written by core-data convert --to webdataset, so "
                                 f"name the {split} shards with {option} too (they may be the training shards)")
            urls = str(self.folder)
        if isinstance(urls, str) and Path(urls).is_dir():
            folder = Path(urls)
            return folder_shards(folder, split, read_sidecar(folder))
        return expand_urls(urls, option)

    @cached_property
    def spec(self) -> SampleSpec:
        """What every sample holds: from the sidecar, else from the first training sample."""
        if self.sidecar is not None:
            return spec_from_sidecar(self.sidecar, str(self.sidecar_folder / SIDECAR), self.keys)
        first = self.shards["train"][0]
        if is_pipe(first):  # never run a command to describe the data (meta() runs under --dry-run)
            raise DataError(f"webdataset: the training shards are named by pipe: commands ('{first[:200]}'), which are "
                            f"run only to train, never to read the metadata (shapes, fields, classes): that needs the "
                            f"data or a local {SIDECAR}\n  fix: copy the dataset's {SIDECAR} (written by core-data "
                            "convert --to webdataset) to this machine and name it with the format option sidecar: PATH")
        return spec_from_sample(first_sample(first), self.stim_axes, self.num_classes, self.keys)

    def shard_sizes(self, split: str) -> list[int] | None:
        """Samples per shard of ``split``, when the sidecar lists every one of its shards."""
        if self.sidecar is None or self.sidecar_folder is None:
            return None
        folder = self.sidecar_folder.resolve()
        counts = {folder / name: n for split_counts in self.sidecar.shards.values() for name, n in split_counts.items()}
        sizes = [counts.get(Path(shard).resolve()) if not is_remote(shard) else None for shard in self.shards[split]]
        return None if None in sizes else sizes  # type: ignore[return-value]

    def meta(self) -> DatasetMeta:
        shape, axes = self.spec.layout
        sizes = {split: sum(found) for split in SPLITS if (found := self.shard_sizes(split)) is not None}
        if self.sidecar is not None:
            name = self.sidecar.dataset_name
        else:
            name = (self.folder or Path(self.shards["train"][0]).parent).name or "webdataset"
        return DatasetMeta(name, shape, {head: n for head, (_, n) in self.spec.heads.items()}, sizes,
                           stim_dtype=self.spec.stim_dtype, stim_axes=axes, fields=dict(self.spec.fields))

    def open(self, split: str) -> WebDatasetStream:
        return WebDatasetStream(split, self.shards[split], self.spec, self.options, self.shard_sizes(split))

