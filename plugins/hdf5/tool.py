"""The ``hdf5`` dataset tool: ``core-data convert --to hdf5``, ``make-sessions``, ``inspect``, ``validate``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from core import SPLITS, DataError, DataFormat, DatasetTool
from plugins.hdf5.session import SPLIT_CODES, expand_paths, open_file, read_info

SUFFIXES = (".h5", ".hdf5")
Compression = Literal["none", "gzip", "lzf"]


def _session_files(path: Path) -> list[str]:
    if path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if p.suffix in SUFFIXES)
        if not files:
            raise DataError(f"{path}: no .h5 or .hdf5 session files in this folder")
        return files
    return expand_paths(str(path))


class HDF5Tool(DatasetTool):
    def recognises(self, path: Path) -> bool:
        path = Path(path)
        return path.suffix in SUFFIXES or (path.is_dir() and any(p.suffix in SUFFIXES for p in path.iterdir()))

    def write(self, source: DataFormat, out: Path, chunk_rows: int = 256, compression: Compression = "none",
              session: str | None = None) -> None:
        """Write every split of ``source`` as one session file (``out`` ending in .h5, else
        ``out/<name>.h5``), with a ``split`` dataset so the splits survive the round trip."""
        import h5py

        meta = source.meta()
        if len(meta.heads) > 1:
            raise DataError(f"the session layout holds one label; '{meta.name}' has heads {list(meta.heads)} "
                            "(choose one with the source's options, e.g. --option heads=[digit])")
        if meta.stim_axes not in ("CHW", "TCHW"):
            raise DataError(f"the session layout stores CHW or TCHW stimuli; '{meta.name}' has {meta.stim_axes}")
        out = Path(out)
        target = out if out.suffix in SUFFIXES else out / f"{session or meta.name}.h5"
        target.parent.mkdir(parents=True, exist_ok=True)
        splits = {split: source.open(split) for split in SPLITS}
        fields = {name: np.concatenate([np.asarray(s.fields[name]) for s in splits.values()])
                  for name in splits["train"].fields}
        codes = np.concatenate([np.full(len(s), SPLIT_CODES[name], np.uint8) for name, s in splits.items()])
        if meta.stim_axes == "TCHW":
            fields["stim"] = fields["stim"].reshape(len(codes), meta.stim_shape[0], *meta.stim_shape[2:])
        head = next(iter(meta.heads), None)
        with h5py.File(target, "w") as f:
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

        if min(sessions, trials, size, neurons, classes) < 1 or frames < 0 or chunk_rows < 0:
            raise ValueError("sessions, trials, size, neurons and classes must be at least 1; frames and chunk_rows >= 0")
        paths = write_sessions(Path(out), sessions, trials, size, neurons, frames, classes, seed, chunk_rows,
                               None if compression == "none" else compression)
        print(f"wrote {len(paths)} sessions of {trials} trials to {out}")

    def inspect(self, path: Path) -> dict[str, Any]:
        report: dict[str, Any] = {"format": "hdf5", "sessions": {}}
        for file in _session_files(Path(path)):
            info = read_info(file)
            with open_file(file) as f:
                datasets = {name: {"shape": list(f[name].shape), "dtype": str(f[name].dtype),
                                   "chunks": list(f[name].chunks) if f[name].chunks else "contiguous",
                                   "compression": f[name].compression or "none"}
                            for name in f if isinstance(f[name], _dataset_type())}
            report["sessions"][info.name] = {"file": file, "trials": info.n, "stim_axes": info.stim_axes,
                                             "datasets": datasets}
        return report

    def validate(self, path: Path) -> list[str]:
        """Every problem: unreadable files, layout errors, and data that cannot be read back."""
        try:
            files = _session_files(Path(path))
        except DataError as exc:
            return [str(exc)]
        problems = []
        for file in files:
            try:
                info = read_info(file)
                with open_file(file) as f:
                    for name in info.sample_shapes:
                        _read_all(f[name], file, name)
            except DataError as exc:
                problems.append(str(exc))
        return problems


def _dataset_type() -> type:
    import h5py

    return h5py.Dataset


def _read_all(data: Any, file: str, name: str, rows: int = 4096) -> None:
    for start in range(0, data.shape[0], rows):
        try:
            data[start:start + rows]
        except (OSError, RuntimeError) as exc:
            raise DataError(f"{file}: {name} trials {start}..{min(start + rows, data.shape[0]) - 1} cannot be read "
                            f"({str(exc).splitlines()[0]}); the file is damaged or truncated") from None
