"""``--resume``: continue a run honestly.

Before anything trains, the checkpoint is read (a corrupt, empty or foreign file is one
message naming it, and the best checkpoint when that one is intact), and the config is
compared with the one the checkpoint was trained with (saved in it as the module's
hyperparameters). Keys that change what is learned cannot change: the model, the data
(every dataset, storage, transform and sampler, batch size), the seed, the loss weights
and the optimizer; they are refused with the list of differences. The rest (the trainer's
``max_epochs`` and limits, logging, callbacks, checkpointing) applies, and a longer run
stretches the learning-rate schedule to its new length. ``config.yaml`` is rewritten with
what the run now uses and a comment line per resume saying what changed.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from core.config import RunConfig, to_yaml
from core.files import write_atomic
from core.errors import ConfigError, short_repr

FIXED = ("seed", "plugins", "data", "datasets", "datasets_dir", "max_datasets", "model", "loss_weights", "optim",
         "compile")
HOW_HELD = ("data.shared_memory", "data.shm_dir")  # where the samples are held, not what is learned: may change


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint ``--resume`` continues from, or a clear error naming it."""
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "loops" not in checkpoint:
            raise ValueError("it holds no training state (a core-train last.ckpt does)")
    except Exception as exc:  # noqa: BLE001 (empty, truncated, foreign: one message)
        best = path.with_name("best.ckpt")
        fallback = (f"; the best checkpoint {best} is intact: start a new run from its weights, or delete "
                    f"{path.name} and start again") if best.is_file() and _readable(best) else ""
        raise ConfigError("--resume", f"{path} cannot be resumed from: {type(exc).__name__}: "
                          f"{(str(exc).splitlines() or [''])[0][:200]}{fallback}",
                          fix="start the run again with --overwrite (a kill during a save no longer leaves such a file)") from None
    return checkpoint


def _readable(path: Path) -> bool:
    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=True)
        return True
    except Exception:  # noqa: BLE001
        return False


def changed_keys(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Every dotted key whose value differs, with both values."""
    out = []
    for key in sorted(set(before) | set(after)):
        path, a, b = f"{prefix}{key}", before.get(key), after.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, f"{path}.")
        elif a != b:
            out.append((path, a, b))
    return out


def check_resume(checkpoint: dict[str, Any], config: RunConfig) -> list[tuple[str, Any, Any]]:
    """Refuse changes that a resume cannot honour; return the ones it applies."""
    epoch, limit = checkpoint.get("epoch"), config.trainer.get("max_epochs")
    if isinstance(limit, int) and isinstance(epoch, int) and 0 <= limit < epoch:  # Lightning's refusal, before any write
        raise ConfigError("trainer.max_epochs", f"--resume continues a run whose checkpoint is at epoch {epoch}, "
                          f"past max_epochs {limit}", fix=f"resume with max_epochs {epoch} or more, or evaluate the run "
                          "as it is (core-train test --config ...)")
    from core.datasets import dir_changes

    trained = checkpoint.get("hyper_parameters", {})
    saved = trained.get("config")
    if not isinstance(saved, dict):
        return []  # a checkpoint of an older core-train: nothing to compare with
    changes = changed_keys(saved, config.model_dump(mode="json"))
    refused = [c for c in changes if c[0].split(".")[0] in FIXED and c[0] not in HOW_HELD and not added(c)]
    refused += dir_changes(trained.get("datasets_read"), config)
    if refused:
        lines = "\n    ".join(f"{key}: {short_repr(a)} -> {short_repr(b)}" for key, a, b in refused)
        raise ConfigError(refused[0][0], f"--resume continues the run as it was trained; these keys changed:\n    {lines}",
                          fix="resume with the original values (see the run's config.yaml), or start a new run "
                              "(--overwrite or another name) with the new ones")
    return [c for c in changes if c[0] not in ("name", "output_dir")]


def added(change: tuple[str, Any, Any]) -> bool:
    """A key the checkpoint's core-train did not have yet, at its default now: no change."""
    import pydantic

    key, before, after = change
    model: Any = RunConfig
    for part in key.split("."):
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, pydantic.BaseModel) else None
        if field is None:
            return False
        model = field.annotation
    return before is None and after == field.default


def record_config(run_dir: Path, config: RunConfig, changes: list[tuple[str, Any, Any]] | None) -> None:
    """``config.yaml``: what the run uses now, and the resume history as comments."""
    path = run_dir / "config.yaml"
    history = [line for line in path.read_text().splitlines() if line.startswith("# resumed")] \
        if changes is not None and path.is_file() else []
    if changes is not None:
        when = datetime.datetime.now().isoformat(timespec="seconds")
        what = ", ".join(f"{key} {short_repr(a)} -> {short_repr(b)}" for key, a, b in changes) or "no change"
        history.append(f"# resumed {when}: {what}")
    write_atomic(path, to_yaml(config) + "".join(f"{line}\n" for line in history))
