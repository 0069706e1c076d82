"""Nothing lost: atomic writes, one process per run directory, a stop that leaves a checkpoint.

- :class:`AtomicCheckpointIO`: checkpoints are written through :mod:`core.files` (a temporary
  name in their folder, fsync, ``os.replace``). A kill leaves the previous complete file. (Lightning's own
  save goes through a temporary file in ``$TMPDIR``; on another filesystem its final move
  is a copy that a kill can cut short, leaving an empty ``last.ckpt``.)
- :class:`RunLock`: an exclusive ``flock`` on ``<run_dir>/.lock`` for the life of the
  process; a second process on the same run directory fails at once, naming the holder.
- :class:`GracefulStop`: SIGTERM (a preempted job) and SIGINT (Ctrl-C) during training
  save a resumable ``last.ckpt`` at the current step and stop with :class:`Stopped`,
  which the CLI turns into the resume command and exit status 143 or 130.
- :class:`RunCheckpoint`: a run directory copied or moved resumes with its best checkpoints
  remembered, as if it had stayed.
- :class:`RandomState`: the random generators (Python, NumPy, torch, CUDA) travel in every
  checkpoint, so a resumed run draws the same augmentations as an uninterrupted one.
"""

from __future__ import annotations

import fcntl
import os
import random
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from core.errors import ConfigError, Stopped
from core.files import replaced


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written through :func:`core.files.replaced` (``torch.save`` to the temporary file)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with replaced(path) as partial:
            torch.save(checkpoint, partial)


class RunLock:
    """Holds ``<run_dir>/.lock`` exclusively until released (or the process ends: the OS drops it)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"
        self.handle: Any = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 (held for the run's life)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ConfigError("name", f"run directory {self.path.parent} is in use by {holder}",
                              fix="wait for that run to end (or stop it), or choose another name (--set name=...)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {os.uname().nodename}\n")
        handle.flush()
        self.handle = handle
        return self

    def release(self) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


class GracefulStop(Checkpoint):
    """Turns SIGTERM and SIGINT during training into a checkpoint and :class:`Stopped`.

    The handlers only set a flag; the checkpoint is written
    after the current training batch, or, when the signal came during an epoch's last batch
    or its validation, at the epoch's end: then the epoch is complete (its validation, best
    checkpoint and logged rows). Lightning runs checkpoint callbacks after the others; this is one, so that a
    stop comes after the module's epoch-end logging and the regular checkpoints.
    The handlers go in when the sanity check starts (else when training does); a SIGTERM
    before that reaches Lightning's own handler, whose stop is caught in :meth:`on_exception`.

    Under DDP every rank installs the same handlers, and the ranks agree to stop (any rank
    signalled: all stop) at the same step with one all-reduce every ``log_every_n_steps``
    steps and at each epoch's end: the moments a run already reads values back, so a step
    never waits for the accelerator for it. A stop thus comes at most that many steps after
    the signal. Lightning's own DDP handler broadcasts from inside the signal handler, which
    deadlocks when the ranks are signalled a different number of times (a scheduler signals
    every task, and rank 0 forwards the signal to its children again)."""

    def __init__(self, last: Path) -> None:
        self.last, self.signum = last, 0
        self.previous: dict[int, Any] = {}
        self.stopped: Stopped | None = None  # set when Lightning's own SIGTERM stop came first

    @property
    def state_key(self) -> str:
        return "GracefulStop"

    def _note(self, signum: int, frame: Any) -> None:
        self.signum = self.signum or signum

    def on_sanity_check_start(self, trainer: Any, pl_module: Any) -> None:
        self.on_train_start(trainer, pl_module)  # Lightning's handlers are in place by now: replace them

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.ckpt_path is not None and any(cb.stopped_epoch > 0 for cb in trainer.early_stopping_callbacks):
            trainer.should_stop = True  # early stopping had ended the run that is resumed: it stays ended
        if threading_main() and not self.previous:
            for signum in (signal.SIGTERM, signal.SIGINT):
                self.previous[signum] = signal.signal(signum, self._note)
            if trainer.world_size > 1:
                # Lightning 2.6 broadcasts its own SIGTERM flag under DDP and reads it every
                # step: a host wait per step. With these handlers its flag stays unset, so the
                # broadcast would only cost that wait; the ranks agree in _stop_if_asked instead.
                trainer.fit_loop.epoch_loop._broadcast_sigterm_tensor = _nothing

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}
        vars(trainer.fit_loop.epoch_loop).pop("_broadcast_sigterm_tensor", None)

    def _stop_if_asked(self, trainer: Any, agree: bool) -> None:
        """Save and stop when signalled; under DDP only where the ranks ``agree`` (all call it there)."""
        asked = bool(self.signum)
        if trainer.world_size > 1:
            if not agree:
                return
            asked = trainer.strategy.reduce_boolean_decision(asked, all=False)
        if asked:
            trainer.save_checkpoint(self.last, weights_only=False)
            raise Stopped(self.signum or signal.SIGTERM, self.last, trainer.current_epoch, trainer.global_step)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not epoch_last_batch(trainer, batch_idx):  # the last one: at the epoch's end
            self._stop_if_asked(trainer, agree=trainer.global_step % trainer.log_every_n_steps == 0)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._stop_if_asked(trainer, agree=True)  # the module has handed the epoch's rows to the loggers already

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """Lightning stops on SIGTERM itself (a ``SystemExit`` that would end the process with
        status 0): save the checkpoint here and let ``fit`` report :attr:`stopped`."""
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.last, weights_only=False)
            self.stopped = Stopped(self.signum or signal.SIGTERM, self.last, trainer.current_epoch, trainer.global_step)


class RunCheckpoint(ModelCheckpoint):
    """A ``ModelCheckpoint`` whose saved paths follow the run directory. Lightning restores a
    checkpoint callback's state only when its folder is unchanged; a moved run would forget
    its best checkpoints and scores, so its next epoch would replace a better ``best.ckpt``
    and ``save_top_k`` would keep too many. Paths of the old folder are read as this one's.
    Its state is saved under Lightning's own key, as checkpoints written before it have it."""

    @property
    def state_key(self) -> str:
        key = super().state_key
        return "ModelCheckpoint" + key.removeprefix("RunCheckpoint") if key.startswith("RunCheckpoint{") else key

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old, here = state_dict.get("dirpath"), self.dirpath
        if old and here and old != here:
            def moved(path: Any) -> Any:
                return os.path.join(here, os.path.basename(path)) if isinstance(path, str) and path else path

            state_dict = {**state_dict, "dirpath": here,
                          "best_k_models": {moved(k): v for k, v in state_dict.get("best_k_models", {}).items()},
                          **{key: moved(state_dict.get(key)) for key in
                             ("best_model_path", "kth_best_model_path", "last_model_path") if key in state_dict}}
        super().load_state_dict(state_dict)


class MidEpochCheckpoint(RunCheckpoint):
    """``last.ckpt`` every N steps or minutes within an epoch, never after an epoch's last
    batch: a checkpoint taken there precedes the epoch's validation and end, which a resume
    from it skips (Lightning restarts at the next epoch), losing their rows and mixing the
    epoch's metric sums into the next. The epoch-end ``last.ckpt`` follows instead."""

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not epoch_last_batch(trainer, batch_idx):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def _nothing() -> None:
    pass


def epoch_last_batch(trainer: Any, batch_idx: int) -> bool:
    """Whether the training batch just done is its epoch's last (``limit_train_batches`` counted)."""
    return trainer.fit_loop.epoch_loop.batch_progress.is_last_batch or batch_idx + 1 >= trainer.num_training_batches


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class RandomState(Callback):
    """The random generators' states in every checkpoint, restored on resume."""

    def state_dict(self) -> dict[str, Any]:
        kind, keys, position, has_gauss, gauss = np.random.get_state()
        # plain values and tensors only: checkpoints load with weights_only=True
        state = {"python": random.getstate(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position,
                                                            has_gauss, gauss], "torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            # this process's device only: under DDP rank 0 saves and every rank restores it into
            # its own device (every rank, seeded alike, draws alike: the CPU state is shared so too);
            # all devices' states from rank 0 would give rank 1 its device's untouched state
            state["cuda"] = torch.cuda.get_rng_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        random.setstate(_tuples(state["python"]))
        kind, keys, position, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            saved = state["cuda"]
            if isinstance(saved, (list, tuple)):  # every device's, as an earlier core-train saved it
                torch.cuda.set_rng_state_all(saved)
            else:
                torch.cuda.set_rng_state(saved)


def _tuples(value: Any) -> Any:
    """States come back from a checkpoint with lists where the generators want tuples."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


class FlushLogs(Callback):
    """Every logger writes what it holds before a checkpoint is written, so no logged row is
    older than the checkpoint yet missing from disk (a resume keeps rows up to its checkpoint)."""

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        for logger in trainer.loggers:
            logger.save()
