"""Runs a resolved config: run directory, Lightning trainer, fit, test.

Run directory ``output_dir/<name>/``: ``config.yaml`` (resolved), ``plugins.json``
(provenance), ``metrics.csv`` (the ``csv`` logger), ``checkpoints/last.ckpt`` (for
``--resume``) and ``checkpoints/best.ckpt``, ``curves.png``; what the other loggers write
(``tensorboard/``, ``wandb/``, ``mlruns/``); what the format wrappers write
(:meth:`core.FormatWrapper.write_run_files`: ``label_map.json`` of class groups) and
``learned.json`` when a transform learns (:mod:`core.fitting`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from core.config import STANDARD_CALLBACKS, RunConfig, to_yaml
from core.durable import RunLock
from core.files import write_atomic
from core.errors import ConfigError, Stopped
from core.kinds import InOrder, wrappers
from core.registry import Registry
from core.resolve import ResolvedRun, format_wrappers, standard_names

RUN_FILES = ("metrics.csv", "hparams.yaml", "curves.png", "plugins.json", "config.yaml", "learned.json",
             "checkpoints", "tensorboard", "wandb", "mlruns", "predictions")


def run_dir_of(config: RunConfig) -> Path:
    return Path(config.output_dir) / config.name


HELD: dict[Path, RunLock] = {}  # the run directories this process trains in (a sweep: several)


def prepare_run_dir(config: RunConfig, resume: bool, overwrite: bool, registry: Registry) -> Path:
    """Create (or check) the run directory; never silently mix two runs in one. The files of
    a run are the core's and those of every analysis ``registry`` holds."""
    run_dir = run_dir_of(config)
    last = run_dir / "checkpoints" / "last.ckpt"
    # before anything is read or deleted, held until the process ends; the other ranks of a
    # DDP run (launched by Lightning, torchrun or SLURM) run under the first one's lock
    ranks = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")
    if run_dir.resolve() not in HELD and all(os.environ.get(name, "0") == "0" for name in ranks):
        HELD[run_dir.resolve()] = RunLock(run_dir).acquire()
    if resume:
        if not last.is_file():
            raise ConfigError(
                "", f"--resume: no checkpoint at {last}", fix="start the run without --resume (nothing to continue)"
            )
        return run_dir
    analyses = registry.components["analysis"].values()
    files = [*RUN_FILES, *(name for component in analyses for name in component.resolve().files)]
    previous = [name for name in files if (run_dir / name).exists()]
    kept = sorted(path.name for path in (run_dir / "checkpoints").glob("*.ckpt"))
    if kept and not overwrite:  # a run stopped before its first checkpoint has nothing to continue: start it again
        if not last.is_file():
            raise ConfigError("name", f"run directory {run_dir} holds a trained run ({', '.join(kept)}) whose last.ckpt "
                              "is gone, so it cannot be resumed", fix="add --overwrite to start it again (its files are "
                              "deleted), or choose another name (--set name=...)")
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


def write_wrapper_files(run_dir: Path, resolved: ResolvedRun) -> None:
    """Every registered format wrapper's files (``write_run_files``), given the datasets it wraps."""
    for _, factory in format_wrappers(resolved.registry):
        factory.write_run_files(run_dir, {d.meta.name: w for d in resolved.datasets for w in wrappers(d.fmt)
                                          if isinstance(w, factory)})


def provenance(resolved: ResolvedRun) -> dict[str, Any]:
    """What ``plugins.json`` records: every component used and every plugin seen."""
    return {
        "used": [u.row() for u in resolved.used],
        "plugins": [
            {"plugin": p.name, "distribution": p.dist, "version": p.version, "status": p.status, "error": p.error}
            for p in resolved.registry.plugins.values()
        ],
    }


def run_hparams(resolved: ResolvedRun) -> dict[str, Any]:
    """What every logger records as hyperparameters: the resolved config, the version of each
    loaded plugin (as ``plugins.json`` has it) and of Python, torch and Lightning."""
    import platform

    import lightning
    import torch

    plugins = {p["plugin"]: f"{p['distribution']} {p['version']}" for p in provenance(resolved)["plugins"]
               if p["status"] == "loaded"}
    versions = {"python": platform.python_version(), "torch": str(torch.__version__),
                "lightning": str(lightning.__version__)}
    return {"config": resolved.config.model_dump(mode="json"), "plugins": plugins, "versions": versions}


class LogHyperparams(Callback):
    """Gives every logger the run's description once at the start of each fit: the resolved
    config, the plugins' versions and the library versions (:func:`run_hparams`)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        for logger in trainer.loggers:
            logger.log_hyperparams(self.params)


class CheckMonitors(Callback):
    """Refuses a ``val/`` metric that a checkpoint or callback monitors and validation does not
    log, once the sanity check has validated its few batches. Lightning finds it only at the
    first epoch's end, and that epoch's training is lost. ``monitors``: YAML path -> metric.
    The sanity check may see only some of the ``datasets``: a metric logged for one of them
    (``val/session_00/corr``) counts as logged for each."""

    def __init__(self, monitors: dict[str, str], datasets: list[str]) -> None:
        self.monitors, self.datasets = monitors, datasets

    def on_sanity_check_end(self, trainer: Any, pl_module: Any) -> None:
        from core.errors import choices_text, did_you_mean

        logged = {key for key in trainer.callback_metrics if key.startswith("val/") and not key.endswith("_step")}
        logged.add(getattr(pl_module, "best_key", "val/acc_best"))
        each = {key.split("/", 2)[2] for key in logged if key.count("/") == 2 and key.split("/")[1] in self.datasets}
        logged |= {f"val/{name}/{metric}" for name in self.datasets for metric in each}
        for path, metric in self.monitors.items():
            if metric.startswith("val/") and metric not in logged:
                raise ConfigError(path, f"validation logs no metric '{metric}'{did_you_mean(metric, logged)}",
                                  fix=f"monitor one it logs: {choices_text(logged)}")


def build_modules(resolved: ResolvedRun, run_dir: Path | None = None) -> tuple[Any, Any]:
    """The run's LightningDataModule and LightningModule; ``run_dir`` keeps what transforms learn."""
    from core.compiling import apply_compile
    from core.datasets import read_from_dir
    from core.data import CoreDataModule, DatasetParts
    from core.module import MultiHeadClassifier
    from core.shared_memory import sharing_of

    config = resolved.config
    parts = [DatasetParts(d.meta.name, d.fmt, d.storage, d.prepare, list(d.device), d.sampler) for d in resolved.datasets]
    datamodule = CoreDataModule(parts, InOrder(), config.data.batch_size, config.data.num_workers, config.seed,
                                resolved.placement.where, config.data.interleave)
    datamodule.run_dir = run_dir
    datamodule.sharing, datamodule.shard = sharing_of(resolved), config.data.shard
    model = apply_compile(resolved.model, config.compile)
    module = MultiHeadClassifier(model, resolved.heads, resolved.loss_weights, config.optim,
                                 config=config.model_dump(mode="json"), datasets_read=read_from_dir(config))
    return datamodule, module


def standard_callbacks(resolved: ResolvedRun, names: tuple[str, ...] = tuple(STANDARD_CALLBACKS),
                       listed_too: bool = False) -> list[Any]:
    """The standard callbacks ``names`` (:data:`core.config.STANDARD_CALLBACKS`) a run gets
    without listing them: each left out when its trainer switch is off, when no loaded plugin
    has it (``plugins.only`` / ``disable`` without ``callbacks``) or when ``callbacks:`` lists
    it (the trainer builds that one with its options; ``listed_too`` builds it here instead,
    for a trainer that builds no listed callbacks)."""
    listed = {checked.used.name: checked for checked in resolved.callbacks}
    found = resolved.registry.components["callback"]
    chosen = [name for name in standard_names(resolved.config, resolved.registry) if name in names]
    return [listed[name].build() if name in listed else found[name].resolve()() for name in chosen
            if listed_too or name not in listed]


def build_trainer(resolved: ResolvedRun, run_dir: Path, extra_callbacks: list[Any] = ()) -> tuple[Any, Any, Any, Any]:
    """The Lightning trainer, DataModule and module a run trains with, and its best-checkpoint
    callback. The trainer gets the run's loggers (``logging:``, each built as
    ``factory(run_dir, **options)``) and, after the core's own callbacks, the run's
    ``callbacks:``; ``extra_callbacks`` are added last (benchmarks time epochs with one)."""
    import lightning
    from core.durable import FlushLogs, GracefulStop, MidEpochCheckpoint, RandomState, RunCheckpoint

    config = resolved.config
    datamodule, module = build_modules(resolved, run_dir)
    chosen = config.checkpoint
    best = RunCheckpoint(  # one best checkpoint is best.ckpt; several keep their epoch in the name
        dirpath=run_dir / "checkpoints", filename="best" if chosen.save_top_k == 1 else "best-{epoch:03d}",
        monitor=chosen.monitor or module.monitor, mode=chosen.mode, save_top_k=chosen.save_top_k,
        enable_version_counter=False, auto_insert_metric_name=False,
    )
    # rewritten at the end of every epoch (and every N steps or minutes if asked): what --resume continues from
    # (at the train epoch's end when validation skips epochs: Lightning would save only after validating)
    every_epoch = True if config.trainer.get("check_val_every_n_epoch", 1) != 1 else None
    last = [RunCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False,
                            save_on_train_epoch_end=every_epoch)]
    if chosen.every_n_train_steps or chosen.every_n_minutes:
        last.append(MidEpochCheckpoint(
            dirpath=run_dir / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False,
            every_n_train_steps=chosen.every_n_train_steps,
            train_time_interval=timedelta(minutes=chosen.every_n_minutes) if chosen.every_n_minutes else None))
    loggers = [checked.build(run_dir) for checked in resolved.loggers]
    listed = {checked.options_path: checked.build() for checked in resolved.callbacks}
    monitors = {f"{path}.monitor": callback.monitor for path, callback in listed.items()
                if isinstance(getattr(callback, "monitor", None), str)}
    if chosen.monitor:
        monitors["checkpoint.monitor"] = chosen.monitor
    check = CheckMonitors(monitors, [d.meta.name for d in resolved.datasets])
    callbacks = [check, best, *last, FlushLogs(), GracefulStop(run_dir / "checkpoints" / "last.ckpt"), RandomState(),
                 LogHyperparams(run_hparams(resolved)), *listed.values(), *extra_callbacks, *standard_callbacks(resolved)]
    trainer = lightning.Trainer(
        default_root_dir=run_dir,
        logger=loggers,
        callbacks=callbacks,
        use_distributed_sampler=False,
        **_trainer_options(config.trainer, len(resolved.datasets)),
    )
    return trainer, datamodule, module, best


def fit_and_test(resolved: ResolvedRun, run_dir: Path, resume: bool, test: bool = True) -> dict[str, float]:
    """Train with Lightning, test the best checkpoint and run the config's analyses (unless
    not ``test``); return the test metrics."""
    from core.metrics_log import truncate_after

    config = resolved.config
    last_ckpt = run_dir / "checkpoints" / "last.ckpt"
    changes = None
    if resume:  # before anything is written: a resume that cannot be honoured changes nothing
        from core.resume import check_resume, read_checkpoint

        checkpoint = read_checkpoint(last_ckpt)
        changes = check_resume(checkpoint, config)
        truncate_after(run_dir, checkpoint)
        del checkpoint
    from core.resume import record_config

    record_config(run_dir, config, changes)
    write_atomic(run_dir / "plugins.json", json.dumps(provenance(resolved), indent=2) + "\n")
    write_wrapper_files(run_dir, resolved)
    trainer, datamodule, module, best = build_trainer(resolved, run_dir)
    datamodule.sharing.resuming = resume  # segments a crash left are mapped again, not rebuilt
    # checkpoints are loaded with weights_only=True: no code runs from a checkpoint file
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from core.durable import GracefulStop

    stop = next(c for c in trainer.callbacks if isinstance(c, GracefulStop))
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=last_ckpt if resume else None, weights_only=True)
    except SIGTERMException:
        if stop.stopped is None:
            raise
        raise stop.stopped from None
    except RuntimeError as exc:
        if resume and "size mismatch" in str(exc):
            raise mismatch(exc, last_ckpt) from None
        raise
    if stop.signum or trainer.received_sigterm:  # after the last batch: training is complete and saved; the
        # test would reset the flag and the run exit 0. --resume tests (and runs the analyses) again
        raise Stopped(stop.signum or signal.SIGTERM, last_ckpt, trainer.current_epoch, trainer.global_step)
    try:
        results = trainer.test(module, datamodule=datamodule, ckpt_path=best.best_model_path or None, verbose=False,
                               weights_only=True) if test else []
        for analysis in resolved.analyses if test else ():  # the module now holds the best checkpoint's weights
            analysis.run(module, datamodule, run_dir, config.trainer)
    except SIGTERMException:  # training is complete and saved: --resume tests (and analyses) again
        raise Stopped(signal.SIGTERM, last_ckpt, trainer.current_epoch, trainer.global_step) from None
    except SystemExit:  # Lightning ends a Ctrl-C with sys.exit(1), without saying how to finish the run
        if not trainer.interrupted:
            raise
        raise Stopped(signal.SIGINT, last_ckpt, trainer.current_epoch, trainer.global_step) from None
    return _headline(results[0] if results else {})


def _trainer_options(options: dict[str, Any], datasets: int) -> dict[str, Any]:
    """``strategy: ddp`` with several datasets: each batch uses one dataset's readout, so the
    others' parameters get no gradient that step and DDP must be told to look for them.
    Checkpoints are written atomically (unless the run brings its own checkpoint IO)."""
    from lightning.pytorch.plugins.io import CheckpointIO

    from core.durable import AtomicCheckpointIO

    plugins = options.get("plugins") or []
    plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    options = {**options, "plugins": plugins}
    if datasets > 1 and options.get("strategy") == "ddp":
        return {**options, "strategy": "ddp_find_unused_parameters_true"}
    return options


RESUME_MISMATCH_FIX = ("resume with the data the run was started with (same datasets, same neurons), or start a new "
                       "run (--overwrite or another name) loading the core with model.<name>.pretrained")


def mismatch(exc: RuntimeError, checkpoint: Path, fix: str = RESUME_MISMATCH_FIX) -> ConfigError:
    """A checkpoint whose weights do not fit the model the config and data now ask for (e.g. a
    readout trained for another number of neurons), as one message naming each tensor."""
    lines = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line]
    return ConfigError("model", f"{checkpoint} does not fit this run's model, whose shapes follow the config and the "
                       "data:\n    " + "\n    ".join(lines[:8]), fix=fix)


def _headline(results: dict[str, Any]) -> dict[str, float]:
    """Test metrics to print: all but the per-step accuracies (those are in metrics.csv)."""
    return {k: float(v) for k, v in results.items() if "_acc_step" not in k}
