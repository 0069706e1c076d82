"""Format ``hdf5``: recording sessions, one HDF5 file each, as one dataset.

``mode: memory`` reads the sessions once, chunk by chunk, into the run's storage backend
(uint8 by default: the smallest form). ``mode: lazy`` keeps nothing in RAM: each batch is
read from disk in the DataLoader workers (sorted, span-merged reads through a bounded pool
of per-process handles, see :mod:`plugins.hdf5.reader`). Both modes read through the same
code, so they give identical samples. Float stim (MindEye's float16 ``images``) is read as
stored and ``meta().stim_dtype`` says so: the resolver then refuses ``storage: uint8`` and
asks for ``bfloat16`` or ``float32``.

Trials are assigned to splits by the file's ``split`` dataset when it has one, else by a
fixed permutation per session (``val_fraction``, ``test_fraction``, ``split_seed``).

``keys`` names the file's datasets when they are not called ``stim``, ``responses``,
``contrast``, ``label`` and ``split``: ``{stim: images, responses: voxels}`` reads a
MindEye-style file as it is; a key that is none of those fields is the label head's name
(``{digit: labels}``: head ``digit`` from the dataset ``labels``). float16 responses are read
as float32.
"""

from __future__ import annotations

import zlib
from functools import cached_property
from typing import Literal

import numpy as np

from core import SPLITS, DataError, DataFormat, DatasetMeta, Split
from plugins.hdf5.reader import HandlePool, Rows, SessionRows
from plugins.hdf5.session import (ROLES, SPLIT_CODES, SessionInfo, check_values, expand_paths, open_file, read_blocks,
                                  read_info)

OPTIONAL = ("responses", "contrast", "label")
DEFAULT_MAX_OPEN = 64


class HDF5Sessions(DataFormat):
    def __init__(
        self,
        paths: str | list[str],
        mode: Literal["memory", "lazy"] = "memory",
        max_open_files: int | None = None,
        rdcc_nbytes: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        keys: dict[str, str] | None = None,
    ) -> None:
        """``paths``: session files or globs. ``mode``: ``memory`` reads the sessions once into
        the run's storage backend, ``lazy`` reads each batch from disk in the DataLoader
        workers and keeps nothing in RAM. ``max_open_files``: open handles per process
        (>= 1; least recently used closed first; default one per session, at most 64
        (``DEFAULT_MAX_OPEN``): a random batch touches every session, so fewer handles than
        sessions reopen files every batch). ``rdcc_nbytes``: HDF5 chunk cache per dataset, in
        bytes (default: none for uncompressed files, four of the largest chunks for compressed ones).
        ``keys``: the file's dataset for each field (``{stim: images, responses: voxels}``) and
        for the label head (``{<head>: <dataset>}``), where they differ from the defaults.

        ``val_fraction``: the share of each session's trials in the ``val`` split, for files
        without a ``split`` dataset (>= 0; with ``test_fraction``, the sum must stay below 1).
        ``test_fraction``: the share of each session's trials in the ``test`` split, for files
        without a ``split`` dataset (>= 0).
        ``split_seed``: the seed of each session's permutation (combined with the session's
        name) that deals its trials to the splits, for files without a ``split`` dataset."""
        if max_open_files is not None and max_open_files < 1:
            raise ValueError(f"max_open_files must be at least 1, not {max_open_files}")
        if rdcc_nbytes is not None and rdcc_nbytes < 0:
            raise ValueError(f"rdcc_nbytes must be >= 0, not {rdcc_nbytes}")
        if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
            raise ValueError(f"val_fraction {val_fraction} and test_fraction {test_fraction} must be >= 0 and sum below 1")
        heads = [key for key in keys or {} if key not in ROLES]
        if len(heads) > 1:
            raise ValueError(f"keys names {len(heads)} label heads ({', '.join(heads)}); hdf5 sessions have one: keep "
                             f"one, or name fields {', '.join(ROLES)}")
        if any(not name for name in (keys or {}).values()):
            raise ValueError(f"keys {keys} names an empty dataset; give each key a dataset of the files")
        self.keys = keys
        self.paths, self.mode = expand_paths(paths), mode
        if max_open_files is None:
            max_open_files = min(len(self.paths), DEFAULT_MAX_OPEN)
        self.streams = mode == "lazy"
        self.fractions, self.split_seed = {"val": val_fraction, "test": test_fraction}, split_seed
        self.pool = HandlePool(max_open_files, rdcc_nbytes)
        self._checked = False

    @cached_property
    def sessions(self) -> list[SessionInfo]:
        sessions = [read_info(path, self.keys) for path in self.paths]
        first = sessions[0]
        for other in sessions[1:]:
            if other.stim_dtype != first.stim_dtype:
                raise DataError(f"{first.path} stores stim as {first.stim_dtype}, {other.path} as {other.stim_dtype}; "
                                "sessions read as one dataset must agree (rewrite one, or list them as separate "
                                "datasets)")
            for name in ("stim", *OPTIONAL):
                mine, theirs = first.sample_shapes.get(name), other.sample_shapes.get(name)
                if (mine is None) != (theirs is None):
                    has, lacks = (first, other) if mine is not None else (other, first)
                    raise DataError(f"{has.path} has '{name}' but {lacks.path} has none; sessions read as one dataset "
                                    f"must hold the same datasets (remove '{name}' or add it to every session)")
                if mine != theirs:
                    raise DataError(f"{first.path} and {other.path} differ in {name}: one trial is {mine} in the first "
                                    f"and {theirs} in the second; sessions read as one dataset must agree (list "
                                    "sessions with other shapes as a separate dataset)")
            if other.head_name != first.head_name:
                raise DataError(f"{first.path} names its label '{first.head_name}', {other.path} '{other.head_name}'")
        return sessions

    @cached_property
    def assignment(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(file index, trial) of every sample of each split."""
        parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {split: [] for split in SPLITS}
        for index, info in enumerate(self.sessions):
            codes = self._split_codes(info)
            for split, code in SPLIT_CODES.items():
                rows = np.flatnonzero(codes == code)
                parts[split].append((np.full(len(rows), index, dtype=np.int32), rows.astype(np.int64)))
        return {split: (np.concatenate([f for f, _ in p]), np.concatenate([r for _, r in p])) for split, p in parts.items()}

    def _split_codes(self, info: SessionInfo) -> np.ndarray:
        if "split" in info.sample_shapes:
            with open_file(info.path) as f:
                codes = f[info.datasets["split"]][()]
            if not np.isin(codes, list(SPLIT_CODES.values())).all():
                raise DataError(f"{info.path}: split holds {sorted(set(np.unique(codes)) - {0, 1, 2})}; "
                                "use 0 (train), 1 (val) or 2 (test)")
            return codes
        order = np.random.default_rng([self.split_seed, zlib.crc32(info.name.encode())]).permutation(info.n)
        n_test, n_val = round(info.n * self.fractions["test"]), round(info.n * self.fractions["val"])
        codes = np.zeros(info.n, dtype=np.uint8)
        codes[order[:n_test]] = SPLIT_CODES["test"]
        codes[order[n_test:n_test + n_val]] = SPLIT_CODES["val"]
        return codes

    def _heads(self) -> dict[str, int]:
        first = self.sessions[0]
        if "label" not in first.sample_shapes:
            return {}
        declared = [s.label_classes for s in self.sessions if s.label_classes is not None]
        if declared:
            return {first.head_name: max(declared)}
        highest = 0
        for info in self.sessions:
            with open_file(info.path) as f:
                for _, block in read_blocks(f, info.path, info.datasets["label"]):
                    highest = max(highest, int(block.max(initial=0)))
        return {first.head_name: highest + 1}

    def _check_values(self) -> None:
        """Read every session's labels, contrast and responses once (the first time a split opens)
        and refuse what training would choke on: labels outside the head's classes, non-finite
        responses or contrast, contrast outside [0, 1]. An IndexError or a NaN loss mid-training
        would otherwise be the first sign."""
        if self._checked:
            return
        classes = next(iter(self._heads().values()), None)
        for info in self.sessions:
            with open_file(info.path) as f:
                for name in ("label", "contrast", "responses"):
                    if name in info.sample_shapes:
                        for start, block in read_blocks(f, info.path, info.datasets[name]):
                            check_values(info.path, name, start, block, classes)
        self._checked = True

    def _check_sizes(self, sizes: dict[str, int]) -> None:
        """Every split a run uses holds a trial: train always; val and test unless their fraction is 0."""
        for split in SPLITS:
            if sizes[split] or (split != "train" and self.fractions[split] == 0):
                continue
            names = ", ".join(s.path for s in self.sessions[:3]) + (" ..." if len(self.sessions) > 3 else "")
            total = sum(s.n for s in self.sessions)
            fix = ("write more trials, or a split dataset that puts trials in it" if split == "train" else
                   f"raise {split}_fraction (round(trials x {self.fractions[split]}) is 0 for these sessions), write a "
                   f"split dataset that puts trials in it, or set {split}_fraction: 0 to run without a {split} split")
            raise DataError(f"hdf5: the {split} split holds no trial ({len(self.sessions)} session(s), {total} trials: "
                            f"{names}); {fix}")

    def meta(self) -> DatasetMeta:
        first = self.sessions[0]
        fields = {name: (first.sample_shapes[name], "float32") for name in ("responses", "contrast")
                  if name in first.sample_shapes}
        name = first.name if len(self.sessions) == 1 else f"{first.name}+{len(self.sessions) - 1}"
        sizes = {split: len(rows) for split, (_, rows) in self.assignment.items()}
        self._check_sizes(sizes)
        return DatasetMeta(
            name=name,
            stim_shape=first.sample_shapes["stim"],
            stim_axes=first.stim_axes,
            stim_dtype=first.stim_dtype,
            heads=self._heads(),
            split_sizes=sizes,
            fields=fields,
            extra={"sessions": [s.name for s in self.sessions]},
        )

    def close(self) -> None:
        self.pool.close()

    def labels(self, split: str) -> dict[str, np.ndarray]:
        """The head's labels of ``split`` (the label datasets only; for class groups' split sizes)."""
        first = self.sessions[0]
        if "label" not in first.sample_shapes:
            return {}
        files, rows = self.assignment[split]
        out = np.empty(len(rows), dtype=np.int64)
        for index, info in enumerate(self.sessions):
            with open_file(info.path) as f:
                labels = np.concatenate([block.reshape(-1) for _, block in read_blocks(f, info.path, info.datasets["label"])])
            where = files == index
            out[where] = labels[rows[where]]
        return {first.head_name: out}

    def open(self, split: str) -> Split | SessionRows:
        self._check_values()
        files, rows = self.assignment[split]
        first = self.sessions[0]
        keys = {name: (first.head_name if name == "label" else name)
                for name in ("stim", *OPTIONAL) if name in first.sample_shapes}
        reader = SessionRows(self.sessions, files, rows, keys, self.pool)
        if self.mode == "lazy":
            return reader
        rest = [name for name in keys if name != "stim"]
        held = reader.read_fields(np.arange(len(reader)), rest) if rest else {}
        return Split({"stim": Rows(reader, "stim"), **held})
