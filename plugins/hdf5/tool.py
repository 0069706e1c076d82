"""The ``hdf5`` dataset tool: ``core-data convert --to hdf5``, ``make-sessions``, ``inspect``, ``validate``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core import SPLITS, ConfigError, DataError, DataFormat, DatasetTool
from core.files import make_folder, replaced
from plugins.hdf5.session import SPLIT_CODES, check_values, expand_paths, open_file, read_blocks, read_info

SUFFIXES = (".h5", ".hdf5")
Compression = Literal["none", "gzip", "lzf"]
MAKE_DEFAULTS = {"sessions": 4, "trials": 600, "size": 32, "neurons": 40, "frames": 0, "classes": 8, "chunk_rows": 256}


def _session_files(path: Path) -> list[str]:
    if path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if p.suffix in SUFFIXES)
        if not files:
            raise DataError(f"{path}: no .h5 or .hdf5 session files in this folder")
        return files
    return expand_paths(str(path))


@contextmanager
def create_file(path: Path) -> Iterator[Any]:
    """An ``h5py.File`` written under a temporary name and moved over ``path`` once complete
    (:func:`core.files.replaced`): a kill leaves the previous file or none, never a torn one.
    A file that cannot be created is a DataError naming it."""
    import h5py

    with replaced(path) as partial:
        try:
            handle = h5py.File(partial, "w")
        except OSError as exc:
            raise DataError(f"cannot write {path}: {str(exc).splitlines()[0]}; choose another output folder") from None
        with handle:
            yield handle


class HDF5Tool(DatasetTool):
    def recognises(self, path: Path) -> bool:
        path = Path(path)
        return path.suffix in SUFFIXES or (path.is_dir() and any(p.suffix in SUFFIXES for p in path.iterdir()))

    def write(self, source: DataFormat, out: Path, chunk_rows: int = 256, compression: Compression = "none",
              session: str | None = None) -> None:
        """Write every split of ``source`` as one session file (``out`` ending in .h5, else
        ``out/<name>.h5``), with a ``split`` dataset so the splits survive the round trip."""
        meta = source.meta()
        if len(meta.heads) > 1:
            raise DataError(f"the session layout holds one label; '{meta.name}' has heads {list(meta.heads)} "
                            "(choose one with the source's options, e.g. --option heads=[digit])")
        if meta.stim_axes not in ("CHW", "TCHW"):
            raise DataError(f"the session layout stores CHW or TCHW stimuli; '{meta.name}' has {meta.stim_axes}")
        out = Path(out)
        target = out if out.suffix in SUFFIXES else out / f"{session or meta.name}.h5"
        make_folder(target.parent, "the session")
        splits = {split: self.rows(source.open(split)) for split in SPLITS}
        fields = {name: np.concatenate([s[name] for s in splits.values()]) for name in splits["train"]}
        codes = np.concatenate([np.full(len(s["stim"]), SPLIT_CODES[name], np.uint8) for name, s in splits.items()])
        if meta.stim_axes == "TCHW":
            fields["stim"] = fields["stim"].reshape(len(codes), meta.stim_shape[0], *meta.stim_shape[2:])
        head = next(iter(meta.heads), None)
        with create_file(target) as f:
            f.attrs["session"] = session or meta.name
            for name, value in fields.items():
                key = "label" if name == head else name
                chunks = (max(1, min(chunk_rows, len(value))), *value.shape[1:]) if chunk_rows and len(value) else None
                f.create_dataset(key, data=value, chunks=chunks, compression=None if compression == "none" else compression)
            f.create_dataset("split", data=codes)
            if head is not None:
                f.attrs["head_name"], f.attrs["label_classes"] = head, meta.heads[head]
            if meta.stim_axes == "TCHW":
                f["stim"].attrs["axes"] = "NTHW"
        print(f"wrote {target} ({len(codes)} trials)")

    def make_sessions(self, out: Path, sessions: int = 4, trials: int = 600, size: int = 32, neurons: int = 40,
                      frames: int = 0, classes: int = 8, seed: int = 0, chunk_rows: int = 256,
                      compression: Compression = "none") -> None:
        """Synthetic sessions from a known linear-nonlinear-Poisson model (see plugins.hdf5.synthetic)."""
        from plugins.hdf5.synthetic import write_sessions

        values = {"sessions": sessions, "trials": trials, "size": size, "neurons": neurons, "classes": classes}
        for name, value in {**values, "frames": frames, "chunk_rows": chunk_rows}.items():
            least = 1 if name in values else 0
            if value < least:
                raise ConfigError(f"--option {name}", f"make-sessions: {name} must be at least {least}, not {value}",
                                  fix=f"e.g. --option {name}={MAKE_DEFAULTS[name]} (the default)")
        make_folder(Path(out), "sessions")
        paths = write_sessions(Path(out), sessions, trials, size, neurons, frames, classes, seed, chunk_rows,
                               None if compression == "none" else compression)
        print(f"wrote {len(paths)} sessions of {trials} trials to {out}")

    def inspect(self, path: Path, keys: dict[str, str] | None = None) -> dict[str, Any]:
        """The sessions' datasets; ``keys`` as the format's option (``--option keys.stim=images``)."""
        report: dict[str, Any] = {"format": "hdf5", "sessions": {}}
        for file in _session_files(Path(path)):
            info = read_info(file, keys)
            with open_file(file) as f:
                datasets = {name: {"shape": list(f[name].shape), "dtype": str(f[name].dtype),
                                   "chunks": list(f[name].chunks) if f[name].chunks else "contiguous",
                                   "compression": f[name].compression or "none"}
                            for name in f if isinstance(f[name], _dataset_type())}
            key = info.name if info.name not in report["sessions"] else f"{info.name} ({file})"  # names can repeat
            report["sessions"][key] = {"file": file, "trials": info.n, "stim_axes": info.stim_axes,
                                             "datasets": datasets}
        return report

    def validate(self, path: Path, keys: dict[str, str] | None = None) -> list[str]:
        """Every problem: unreadable files, layout errors, data that cannot be read back, and values
        training would choke on (non-finite float stim too). ``keys`` as the format's option."""
        try:
            files = _session_files(Path(path))
        except DataError as exc:
            return [str(exc)]
        problems = []
        for file in files:
            try:
                info = read_info(file, keys)
            except DataError as exc:
                problems.append(str(exc))
                continue
            with open_file(file) as f:
                for name in info.sample_shapes:  # each dataset alone: one bad dataset hides no other's problem
                    try:
                        for start, block in read_blocks(f, file, info.datasets[name]):
                            check_values(file, name, start, block, info.label_classes)
                    except DataError as exc:
                        problems.append(str(exc))
        return problems


def _dataset_type() -> type:
    import h5py

    return h5py.Dataset
