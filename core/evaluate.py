"""Evaluate and load a trained run: ``core-train validate|test``, :func:`load_run` (the
notebook API), and what the ``predict`` plugin builds on (:func:`checkpoint_path`,
:func:`load_weights`, :func:`evaluator`).

A checkpoint is named by path, or as ``best`` / ``last`` of the run directory (``best``:
``checkpoints/best.ckpt``, or with ``checkpoint.save_top_k > 1`` the best of those the
checkpoint callback kept; for a run without validation, which chose none, ``last.ckpt``).
Weights load with ``weights_only=True``: a checkpoint runs no code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import RunConfig
from core.errors import ConfigError, short_repr
from core.resolve import ResolvedRun


@dataclass
class LoadedRun:
    """A trained run, ready for analysis: ``module`` holds the checkpoint's weights (eval mode)."""

    config: RunConfig
    resolved: ResolvedRun
    module: Any  # core.module.MultiHeadClassifier
    datamodule: Any  # core.data.CoreDataModule
    checkpoint: Path


def checkpoint_path(run_dir: Path, checkpoint: str | None) -> Path:
    """The file ``checkpoint`` names: a path, or ``best`` (the default) / ``last`` of ``run_dir``."""
    name = checkpoint or "best"
    folder = run_dir / "checkpoints"
    if name not in ("best", "last"):
        path = Path(name)
    elif name == "best":  # the recorded best (a best.ckpt can be stale after save_top_k grew), else best.ckpt
        recorded = recorded_best(folder)
        path = recorded[1] if recorded and recorded[1].is_file() else folder / "best.ckpt"
        if not path.is_file() and recorded is None and (folder / "last.ckpt").is_file():
            path = folder / "last.ckpt"  # a run without validation chose no best: its final weights, as its test had
    else:
        path = folder / "last.ckpt"
    if not path.is_file():
        raise ConfigError("--checkpoint", f"no checkpoint at {path}",
                          fix=f"train the run first (core-train fit --config ...), or pass --checkpoint PATH")
    return path


def recorded_best(checkpoints: Path) -> tuple[dict[str, Any], Path] | None:
    """The state of the checkpoint callback that has a monitor, as last saved (in ``last.ckpt``,
    else ``best.ckpt``; mapped, no tensor read), and the best checkpoint it recorded, looked up
    by name in ``checkpoints`` (a run may have been copied or moved). None without one."""
    import torch

    for name in ("last.ckpt", "best.ckpt"):
        if not (checkpoints / name).is_file():
            continue
        saved = torch.load(checkpoints / name, map_location="cpu", weights_only=True, mmap=True).get("callbacks", {})
        states = [state for key, state in saved.items() if key.startswith("ModelCheckpoint")
                  and isinstance(state, dict) and state.get("monitor") and state.get("best_model_path")]
        if states:
            return states[0], checkpoints / Path(states[0]["best_model_path"]).name
    return None


def load_weights(module: Any, path: Path) -> dict[str, Any]:
    """The checkpoint's weights into ``module``; a file that is not this run's checkpoint is a
    clear error. Returns what it records of its training (its hyperparameters: ``config``...)."""
    import torch

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        state = saved["state_dict"]
    except Exception as exc:  # noqa: BLE001 (truncated, empty, not a checkpoint: one message)
        raise ConfigError("--checkpoint", f"{path} is not a readable core-train checkpoint ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})",
                          fix="pass a checkpoint a run wrote (<run>/checkpoints/best.ckpt or last.ckpt)") from None
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        if "size mismatch" not in str(exc):
            raise
        from core.run import mismatch

        raise mismatch(exc, path, fix="use the config the checkpoint was trained with (its run's config.yaml)") from None
    if missing or unexpected:
        raise ConfigError("model", f"checkpoint {path} does not fit this run's model: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]}", fix="use the config the checkpoint was trained with")
    return saved.get("hyper_parameters") or {}


# what an evaluation's result depends on beside the weights: the data as the model sees it, the model, the loss
EVALUATED = ("data.format", "data.storage", "data.transforms", "datasets", "datasets_dir", "max_datasets", "model",
             "loss_weights")


def warn_if_trained_otherwise(trained: dict[str, Any], config: RunConfig, path: Path) -> None:
    """A warning when ``config`` evaluates the checkpoint on other data, transforms or model
    options than it was trained with (``trained``: its hyperparameters), e.g. a YAML or a
    ``datasets_dir`` edited since: the results follow ``config``."""
    from core.datasets import dir_changes
    from core.resume import added, changed_keys

    if not isinstance(trained.get("config"), dict):
        return
    changes = [change for change in changed_keys(trained["config"], config.model_dump(mode="json"))
               if change[0].startswith(EVALUATED) and not added(change)]
    changes += dir_changes(trained.get("datasets_read"), config)
    if changes:
        listed = "; ".join(f"{key}: {short_repr(before)} -> {short_repr(now)}" for key, before, now in changes[:8])
        logging.getLogger("core").warning(
            f"checkpoint {path} was trained with another config ({listed}); these results are for the config given "
            "now (the run's own is its config.yaml)")


def load_run(run_dir: str | Path, checkpoint: str | None = "best") -> LoadedRun:
    """A run directory's config (``config.yaml``), model with the checkpoint's weights and
    DataModule, resolved through the installed plugins::

        run = core.load_run("runs/quickstart")
        run.datamodule.setup("test")
        batch = next(iter(run.datamodule.test_dataloader()))
        outputs = run.module(run.datamodule.on_after_batch_transfer(batch, 0))
    """
    from core.config import load_config
    from core.registry import Registry
    from core.resolve import resolve

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError("", f"{run_dir} holds no config.yaml", fix="pass a run directory, e.g. runs/quickstart")
    from core.kinds import restoring

    config = load_config(run_dir / "config.yaml")
    with restoring():
        resolved = resolve(config, Registry.of_run(config))
    datamodule, module, path = trained_modules(resolved, run_dir, checkpoint)
    return LoadedRun(config, resolved, module.eval(), datamodule, path)


def trained_modules(resolved: ResolvedRun, run_dir: Path, checkpoint: str | None) -> tuple[Any, Any, Path]:
    """The run's DataModule and LightningModule, with the weights of the checkpoint
    ``checkpoint`` names (see :func:`checkpoint_path`), and that checkpoint's path."""
    from core.run import build_modules

    datamodule, module = build_modules(resolved, run_dir)
    path = checkpoint_path(run_dir, checkpoint)
    warn_if_trained_otherwise(load_weights(module, path), resolved.config, path)
    return datamodule, module, path


def evaluator(resolved: ResolvedRun, callbacks: list[Any] = ()) -> Any:
    """A Lightning trainer for evaluation and prediction: the run's trainer options, no
    logger (the run's metrics.csv stays as training left it), no checkpoints."""
    import lightning

    from core.run import standard_callbacks

    options = {k: v for k, v in resolved.config.trainer.items() if k in EVALUATION_KEYS}
    bar = standard_callbacks(resolved, ("progress_bar",), listed_too=True)
    return lightning.Trainer(logger=False, enable_checkpointing=False, enable_model_summary=False,
                             use_distributed_sampler=False, callbacks=[*bar, *callbacks], **options)


# trainer keys that apply when a checkpoint is only evaluated
EVALUATION_KEYS = ("accelerator", "devices", "num_nodes", "strategy", "precision", "enable_progress_bar",
                   "limit_val_batches", "limit_test_batches", "limit_predict_batches", "inference_mode",
                   "deterministic", "plugins")


def check_split(resolved: ResolvedRun, split: str, flag: str) -> None:
    """A split without samples (e.g. ``val_fraction: 0``) is a config error, not an evaluation
    that prints nothing (or a file without samples) and exits 0."""
    if not any(d.meta.split_sizes.get(split, 0) for d in resolved.datasets):
        sizes = ", ".join(str(d.meta.split_sizes) for d in resolved.datasets)
        raise ConfigError(flag, f"the run's data has no {split} samples ({sizes})",
                          fix="evaluate a split that has samples (core-train test, or predict --split test)")


def evaluate(resolved: ResolvedRun, stage: str, run_dir: Path, checkpoint: str | None) -> dict[str, float]:
    """``validate`` or ``test`` a checkpoint; the stage's metrics."""
    check_split(resolved, "val" if stage == "validate" else "test", "command")
    datamodule, module, _ = trained_modules(resolved, run_dir, checkpoint)
    trainer = evaluator(resolved)
    results = getattr(trainer, stage)(module, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in (results[0] if results else {}).items() if "_acc_step" not in k}

