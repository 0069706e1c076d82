"""Logger ``wandb``: Lightning's WandbLogger; the local run files go to ``<run_dir>/wandb``."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

from core import PluginUnavailable

if find_spec("wandb") is None:
    raise PluginUnavailable("wandb is not installed; install it with: pip install 'core-train[wandb]'")

from lightning.pytorch.loggers import WandbLogger  # noqa: E402 (after the availability check)

# ids of the W&B runs this module started. Lightning's WandbLogger reuses any run still open in
# the process; a second core-train run in the same process (a sweep, a notebook) finishes the
# previous one of ours first instead of writing into it. A run the user opened is still reused.
_STARTED: set[str] = set()


class CoreWandbLogger(WandbLogger):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self._wandb_init.get("anonymous", False) is None:  # W&B warns about the setting even when unset
            del self._wandb_init["anonymous"]

    @property
    def experiment(self) -> Any:
        if self._experiment is None:
            import wandb

            if wandb.run is not None and wandb.run.id in _STARTED:
                wandb.finish()
        run = super().experiment
        if getattr(run, "id", None):
            _STARTED.add(run.id)
        return run


def wandb(
    run_dir: Path,
    project: str = "core-train",
    entity: str | None = None,
    group: str | None = None,
    tags: list[str] | None = None,
    notes: str | None = None,
    offline: bool = False,
    id: str | None = None,  # noqa: A002 (W&B's own name)
    log_model: bool | Literal["all"] = False,
) -> Any:
    """A W&B run named after the run directory. ``offline``: write only to ``<run_dir>/wandb``
    (upload later with ``wandb sync``); ``WANDB_MODE=offline`` in the environment does the same.
    ``id`` continues that W&B run (a resumed run otherwise starts a new one). ``log_model``:
    upload checkpoints as artifacts (``all``: every one), not offline.

    ``project``: the W&B project the run is logged in.
    ``entity``: the W&B user or team that owns the project (by default, your W&B default
    entity).
    ``group``: a W&B group name that gathers related runs in the W&B interface.
    ``tags``: tags shown on the W&B run.
    ``notes``: a description of the run, shown in W&B.
    ``id``: the id of an existing W&B run to continue (a resumed run otherwise starts a new
    one)."""
    if offline and log_model:
        raise ValueError(f"log_model {log_model!r} uploads checkpoints, which an offline run cannot do")
    return CoreWandbLogger(
        name=Path(run_dir).name,
        save_dir=str(run_dir),
        project=project,
        entity=entity,
        group=group,
        tags=list(tags) if tags else None,
        notes=notes,
        id=id,
        log_model=log_model,
        **({"mode": "offline"} if offline else {}),
    )
