"""Runs a resolved config: run directory, Lightning trainer, fit, test, curves.

Run directory ``output_dir/<name>/``: ``config.yaml`` (resolved), ``plugins.json``
(provenance), ``metrics.csv``, ``checkpoints/last.ckpt`` (for ``--resume``) and
``checkpoints/best.ckpt``, ``curves.png``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from core.config import RunConfig, to_yaml
from core.errors import ConfigError
from core.kinds import InOrder
from core.resolve import ResolvedRun

RUN_FILES = ("metrics.csv", "hparams.yaml", "curves.png", "plugins.json", "config.yaml", "checkpoints")


def run_dir_of(config: RunConfig) -> Path:
    return Path(config.output_dir) / config.name


def prepare_run_dir(config: RunConfig, resume: bool, overwrite: bool) -> Path:
    """Create (or check) the run directory; never silently mix two runs in one."""
    run_dir = run_dir_of(config)
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume:
        if not last.is_file():
            raise ConfigError(
                "", f"--resume: no checkpoint at {last}", fix="start the run without --resume (nothing to continue)"
            )
        return run_dir
    previous = [name for name in RUN_FILES if (run_dir / name).exists()]
    if previous and ("checkpoints" in previous or "metrics.csv" in previous):
        if not overwrite:
            raise ConfigError(
                "name",
                f"run directory {run_dir} already holds a run ({', '.join(previous)})",
                fix="add --resume to continue it, --overwrite to start it again, or choose another name (--set name=...)",
            )
        for name in previous:
            target = run_dir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def provenance(resolved: ResolvedRun) -> dict[str, Any]:
    """What ``plugins.json`` records: every component used and every plugin seen."""
    return {
        "used": [u.row() for u in resolved.used],
        "plugins": [
            {"plugin": p.name, "distribution": p.dist, "version": p.version, "status": p.status, "error": p.error}
            for p in resolved.registry.plugins.values()
        ],
    }


def fit_and_test(resolved: ResolvedRun, run_dir: Path, resume: bool) -> dict[str, float]:
    """Train with Lightning, then test the best checkpoint; return the test metrics."""
    import lightning
    from lightning.pytorch.callbacks import ModelCheckpoint

    from core.curves import plot_curves
    from core.data import CoreDataModule
    from core.metrics_log import RunLogger, truncate_after
    from core.module import MultiHeadClassifier

    config = resolved.config
    (run_dir / "config.yaml").write_text(to_yaml(config))
    (run_dir / "plugins.json").write_text(json.dumps(provenance(resolved), indent=2) + "\n")

    datamodule = CoreDataModule(
        resolved.fmt, resolved.storage, resolved.prepare, resolved.device, resolved.sampler, InOrder(),
        config.data.batch_size, config.data.num_workers, config.seed, config.data.placement,
    )
    module = MultiHeadClassifier(resolved.model, resolved.meta.heads, resolved.loss_weights, config.optim)
    first_head = next(iter(resolved.meta.heads))
    best = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best", monitor=f"val/{first_head}_acc", mode="max",
        save_top_k=1, enable_version_counter=False,
    )
    # rewritten at the end of every epoch: what --resume continues from
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False)
    trainer = lightning.Trainer(
        default_root_dir=run_dir,
        logger=RunLogger(run_dir),
        callbacks=[best, last],
        use_distributed_sampler=False,
        **config.trainer,
    )
    last_ckpt = run_dir / "checkpoints" / "last.ckpt"
    if resume:
        import torch

        # last.ckpt is written at the end of epoch `epoch`; rows of later epochs are redone
        truncate_after(run_dir, torch.load(last_ckpt, map_location="cpu", weights_only=True)["epoch"])
    trainer.fit(module, datamodule=datamodule, ckpt_path=last_ckpt if resume else None)
    results = trainer.test(module, datamodule=datamodule, ckpt_path=best.best_model_path or None, verbose=False)
    if trainer.is_global_zero:
        plot_curves(run_dir / "metrics.csv", run_dir / "curves.png")
    return {k: float(v) for k, v in (results[0] if results else {}).items()}
