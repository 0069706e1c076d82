"""kill -9 a real ``core-train fit``, resume it, compare with the uninterrupted run.

Two kinds of kill point, each followed by ``core-train fit --resume`` (or a fresh start when
no checkpoint was written yet, as an operator would):

- right after each checkpoint write of the run (every ``every_n_train_steps`` save, each
  epoch's ``best.ckpt`` and ``last.ckpt``): the process is SIGKILLed from inside the save,
  the moment a kill is most likely to expose state that the checkpoint misses;
- at random wall-clock moments after the first checkpoint (a real ``kill -9`` from outside).

A kill point passes when the resumed run's final weights are bitwise those of the
uninterrupted run and its ``metrics.csv`` holds the same rows (none lost, none repeated).

    .venv/bin/python benchmarks/kill_resume.py                  # every save point + 8 random kills
    .venv/bin/python benchmarks/kill_resume.py --saves 6 --random 0
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

RUN = """\
name: kill
output_dir: {out}
seed: 2
data:
  format: {{digits: {{image_size: 12}}}}
  transforms: [pixelnorm, random_flip, {{random_translate: {{pixels: 1}}}}]
  batch_size: 100
model: {{simple_cnn: {{conv1: 4, conv2: 8, fc_hidden: 16, dropout: 0.2}}}}
optim: {{optimizer: adamw, lr: 0.003, scheduler: cosine}}
trainer: {{max_epochs: {epochs}, accelerator: cpu, enable_progress_bar: false, enable_model_summary: false,
          log_every_n_steps: 4}}
checkpoint: {{every_n_train_steps: 4}}  # 12 batches an epoch: one save falls on its last batch
"""

# Runs core-train in a child that records every completed checkpoint write and SIGKILLs
# itself right after the N-th (N = 0: never).
CHILD = textwrap.dedent("""
    import os, signal, sys
    import core.durable
    from core.cli.train import main
    die_after, log = int(sys.argv[1]), sys.argv[2]
    save = core.durable.AtomicCheckpointIO.save_checkpoint
    done = []
    def recorded(self, checkpoint, path, storage_options=None):
        save(self, checkpoint, path, storage_options)
        done.append(path)
        with open(log, "a") as out:
            out.write(f"{os.path.basename(str(path))} epoch {checkpoint['epoch']} step {checkpoint['global_step']}\\n")
        if len(done) == die_after:
            os.kill(os.getpid(), signal.SIGKILL)
    core.durable.AtomicCheckpointIO.save_checkpoint = recorded
    sys.exit(main(sys.argv[3:]))
""")


def write_config(folder: Path, epochs: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "run.yaml"
    config.write_text(RUN.format(out=folder / "runs", epochs=epochs))
    return config


def start(config: Path, *extra: str, die_after: int = 0, log: Path | None = None) -> subprocess.Popen:
    """One ``core-train fit`` in a child process that logs its checkpoint writes to ``log``."""
    log = log or config.parent / "saves.log"
    command = [sys.executable, "-c", CHILD, str(die_after), str(log), "fit", "--config", str(config), *extra]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def fit(config: Path, *extra: str, die_after: int = 0, log: Path | None = None) -> int:
    """One ``core-train fit`` in a child process; its exit status (-9 when killed)."""
    return start(config, *extra, die_after=die_after, log=log).wait()


def first_checkpoint(child: subprocess.Popen, log: Path) -> float:
    """Wait until ``child`` has written its first checkpoint; the seconds that took."""
    started = time.perf_counter()
    while not log.is_file() and child.poll() is None:
        time.sleep(0.02)
    return time.perf_counter() - started


def resume(config: Path) -> int:
    """Continue a killed run: ``--resume`` when it left a checkpoint, else start it again."""
    last = config.parent / "runs" / "kill" / "checkpoints" / "last.ckpt"
    return fit(config, "--resume") if last.is_file() else fit(config, "--overwrite")


def outcome(run_dir: Path, reference: Path) -> tuple[bool, bool]:
    """(same final weights bitwise, same metrics.csv rows) as the reference run."""
    def weights(folder: Path) -> dict[str, torch.Tensor]:
        return torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]

    ours, theirs = weights(run_dir), weights(reference)
    same_weights = ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    rows = [sorted((folder / "metrics.csv").read_text().splitlines()) for folder in (run_dir, reference)]
    return same_weights, rows[0] == rows[1]


def last_save(log: Path) -> str:
    lines = log.read_text().splitlines() if log.is_file() else []
    return lines[-1] if lines else "no checkpoint yet"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, nargs="*", help="kill after these checkpoint writes (default: every one)")
    parser.add_argument("--random", type=int, default=8, help="kills at random moments")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="kill-resume-"))
    reference = write_config(work / "full", args.epochs)
    started = time.perf_counter()
    child = start(reference)
    before_first = first_checkpoint(child, work / "full" / "saves.log")
    assert child.wait() == 0, "the uninterrupted run failed"
    after_first = time.perf_counter() - started - before_first
    saves = (work / "full" / "saves.log").read_text().splitlines()
    points = [("after save", n) for n in (args.saves if args.saves is not None else range(1, len(saves) + 1))]
    draw = random.Random(args.seed)
    points += [("at random", round(draw.uniform(0, 0.95) * after_first, 2)) for _ in range(args.random)]
    print(f"uninterrupted run: {len(saves)} checkpoint writes, {after_first:.1f} s from the first to the end; "
          f"work folder {work}")
    print(f"{'kill':<12} {'at':>6}  {'last checkpoint before the kill':<34} {'weights':<9} {'metrics.csv'}")
    passed = 0
    for number, (kind, at) in enumerate(points):
        folder = work / f"kill{number}"
        config = write_config(folder, args.epochs)
        if kind == "after save":
            status = fit(config, die_after=int(at))
        else:
            child = start(config)
            first_checkpoint(child, folder / "saves.log")
            time.sleep(at)  # seconds after the first checkpoint
            child.send_signal(signal.SIGKILL)
            status = child.wait()
        before = last_save(folder / "saves.log")
        if resume(config) != 0:
            print(f"{kind:<12} {at:>6}  {before:<34} resume failed (status {status} before)")
            continue
        same_weights, same_rows = outcome(folder / "runs" / "kill", reference.parent / "runs" / "kill")
        passed += same_weights and same_rows
        print(f"{kind:<12} {at:>6}  {before:<34} {'same' if same_weights else 'DIFFER':<9} "
              f"{'same' if same_rows else 'DIFFER'}")
    print(f"{passed} of {len(points)} kill points resumed to the uninterrupted run's weights and metrics.csv")
    return 0 if passed == len(points) else 1


if __name__ == "__main__":
    sys.exit(main())
