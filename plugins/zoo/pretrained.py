"""``pretrained: PATH``: load a model's weights from a core-train checkpoint, and say what matched.

Every model with a ``pretrained`` option loads through :func:`load_pretrained` (the zoo's
models and ``shared_core_readout``). Tensors are matched by name and shape; what does not
match stays as initialised and is reported, so a checkpoint of another dataset (other
heads, other neuron counts) starts a fine-tuning run::

    report = load_pretrained(model, "runs/quickstart/checkpoints/best.ckpt", required="body.")
    report.matched, report.missing, report.unexpected, report.mismatched   # key lists

Checkpoints are read with ``weights_only=True``: no code runs from the file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from core import weights_restored

log = logging.getLogger("core")
SHOWN = 6  # the most keys a report lists per kind (the counts are always complete)
EXAMPLE = "runs/<name>/checkpoints/best.ckpt"


@dataclass(frozen=True)
class PretrainedReport:
    """What one ``pretrained`` load did, by the model's state-dict keys.

    ``missing``: the model's keys the checkpoint lacks; ``unexpected``: the checkpoint's keys
    (within the loaded prefixes) the model lacks; ``mismatched``: ``"key (saved shape) vs
    (model shape)"`` for keys in both with other shapes.
    """

    path: str
    what: str
    total: int
    matched: list[str]
    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        text = (f"pretrained: loaded {len(self.matched)} of {self.total} {self.what} from {self.path}: "
                f"{len(self.matched)} matched, {len(self.missing)} missing, {len(self.unexpected)} unexpected, "
                f"{len(self.mismatched)} of other shapes")
        for label, keys in (("missing (left as initialised)", self.missing), ("unexpected (ignored)", self.unexpected),
                            ("other shapes (left as initialised)", self.mismatched)):
            if keys:
                more = f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
                text += f"; {label}: {keys[:SHOWN]}{more}"
        return text


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """The model's tensors in a core-train checkpoint (keys without Lightning's ``model.``),
    or in a plain state dict; a ValueError naming the file and the fix otherwise."""
    if not Path(path).is_file():
        raise ValueError(f"pretrained: no checkpoint at {path} (e.g. {EXAMPLE})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (empty, truncated, not a checkpoint: one message)
        raise ValueError(f"pretrained: {path} is not a readable checkpoint ({type(exc).__name__}); pass a "
                         f"core-train checkpoint (e.g. {EXAMPLE})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and torch.is_tensor(v)} if isinstance(state, dict) else {}
    if not tensors:
        raise ValueError(f"pretrained: {path} holds no weights; pass a core-train checkpoint (e.g. {EXAMPLE})")
    if any(key.startswith("model.") for key in tensors):  # a run's checkpoint: the module's other state is not the model's
        return {key.removeprefix("model."): value for key, value in tensors.items() if key.startswith("model.")}
    return tensors


def load_pretrained(model: nn.Module, path: str, prefixes: Sequence[str] = ("",), required: str = "",
                    what: str = "tensors") -> PretrainedReport:
    """Load into ``model`` the tensors of the checkpoint at ``path`` whose keys start with one of
    ``prefixes`` and whose shapes match; log and return the report. While the run's own
    checkpoint gives every weight next (:func:`core.weights_restored`: a resume, an evaluation)
    nothing is read, and the report is empty: a fine-tuned run stays usable once the
    checkpoint it started from is deleted.

    A checkpoint that matches no tensor under ``required`` (scalars such as batch norm's step
    counter do not count) is another model's: a ValueError says so. ``what`` names the loaded
    tensors in the report (``"core tensors"``).
    """
    if weights_restored():  # the run's own checkpoint gives every weight next: the file may be gone since
        return PretrainedReport(path=path, what=what, total=0, matched=[], missing=[], unexpected=[], mismatched=[])
    found = read_weights(path)
    own = {k: v for k, v in model.state_dict().items() if k.startswith(tuple(prefixes))}
    loaded = {k: found[k] for k in own if k in found and found[k].shape == own[k].shape}
    report = PretrainedReport(
        path=path, what=what, total=len(own), matched=list(loaded),
        missing=[k for k in own if k not in found],
        unexpected=[k for k in found if k.startswith(tuple(prefixes)) and k not in own],
        mismatched=[f"{k} {tuple(found[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in found and k not in loaded],
    )
    if not any(k.startswith(required) and loaded[k].ndim for k in loaded):
        raise ValueError(f"pretrained checkpoint {path} holds none of this model's {what} (the checkpoint has "
                         f"{len(found)} tensors, e.g. {list(found)[:3]}); pass a checkpoint of a run of the same "
                         "model (the same name and options)")
    model.load_state_dict(loaded, strict=False)
    log.log(logging.INFO if report.complete else logging.WARNING, "%s", report)
    return report
