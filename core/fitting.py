"""Device transforms that learn from the training split before training (``normalize: {mean: auto}``).

A transform that sets ``learns`` gets the training split's stored ``stim`` in chunks once
the split is open (:func:`learn`, called by the DataModule's ``setup``) and returns its
state, which rank 0 keeps in ``<run>/learned.json`` (``{yaml path: {"transform": name,
"state": state}}``, written atomically), so that a resumed run, an evaluation or a prediction reuses it instead of
reading the split again. Chunks are read from where the split is held (RAM, accelerator,
disk or stream); an evaluation that has not opened the training split opens it only if the
state must be learned.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError
from core.kinds import Step

if TYPE_CHECKING:
    import torch

    from core.data import DatasetParts

LEARNED_FILE = "learned.json"
CHUNK_VALUES = 2**22  # stim values per chunk handed to fit (a 4 MiB uint8 chunk, 32 MiB as float64)
log = logging.getLogger("core")


def check_learners(device: list[Step], dataset: str) -> None:
    """A learning transform sees the stored samples, so it must be the first device-stage transform."""
    for step in device[1:]:
        if step.transform.learns:
            raise ConfigError(step.path, f"transform '{step.name}' of dataset '{dataset}' learns from the stored "
                              f"samples of the training split, so it must be the first transform that runs on the "
                              f"device, but '{device[0].name}' ({device[0].path}) comes before it",
                              fix=f"list '{step.name}' before '{device[0].name}', or give it the values it would learn")


def learn(parts: DatasetParts, run_dir: Path | None, write: bool) -> None:
    """Fit every learning device-stage transform of ``parts``; keep the states in ``run_dir`` when ``write``."""
    file = run_dir / LEARNED_FILE if run_dir is not None else None
    for step in parts.device:
        if not step.transform.learns:
            continue
        kept = _read(file)
        entry = kept.get(step.path)
        saved = entry["state"] if isinstance(entry, dict) and entry.get("transform") == step.name else None
        state = step.transform.fit(_train_stim(parts), saved)
        if write and file is not None and state != saved:
            from core.files import write_atomic

            kept[step.path] = {"transform": step.name, "state": state}
            write_atomic(file, json.dumps(kept, indent=2) + "\n")


def _read(file: Path | None) -> dict[str, Any]:
    if file is None or not file.is_file():
        return {}
    try:
        kept = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        log.warning("%s cannot be read (%s): its transform learns again from the training split", file, exc)
        return {}
    return kept if isinstance(kept, dict) else {}


def _train_stim(parts: DatasetParts) -> Iterator[torch.Tensor]:
    """The training split's stored ``stim``, a chunk at a time (opened here if the run has not opened it)."""
    import numpy as np
    import torch

    from core.kinds import DiskSplit, Split, Stream

    opened = parts.opened.get("train")
    if opened is None:
        opened = parts.fmt.open("train")
        if isinstance(opened, Split):
            opened = parts.storage.materialise(opened, parts.prepare)
    if isinstance(opened, Stream):
        batches = opened.batches(batch_size=256, train=False, seed=0, epoch=lambda: 0, rank=0, world_size=1,
                                 num_workers=0)
        yield from (batch["stim"] for batch in batches)
        return
    n = len(opened) if isinstance(opened, DiskSplit) else len(opened["stim"])
    first = opened.read(np.arange(min(n, 1)))["stim"] if isinstance(opened, DiskSplit) else opened["stim"][:1]
    step = max(1, CHUNK_VALUES // max(1, int(np.prod(first.shape[1:]))))
    for start in range(0, n, step):
        if isinstance(opened, DiskSplit):
            yield torch.from_numpy(opened.read(np.arange(start, min(n, start + step)))["stim"])
        else:
            yield opened["stim"][start:start + step]
