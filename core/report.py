"""What the CLIs print: the dry-run table and the final test results."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from core.resolve import ResolvedRun


def make_console() -> Console:
    """A console for tables: as wide as the terminal, or wide enough not to cut text when piped."""
    return Console() if sys.stdout.isatty() else Console(width=200)


def print_dry_run(resolved: ResolvedRun, console: Console | None = None) -> None:
    console = console or make_console()
    table = Table(title=f"run '{resolved.config.name}': components")
    for column in ("kind", "name", "yaml", "plugin", "distribution", "version"):
        table.add_column(column)
    for used in resolved.used:
        table.add_row(*used.row().values())
    console.print(table)
    meta = resolved.meta
    stages = ", ".join(f"{s.name} ({'prepare' if s in resolved.prepare else 'device'})" for s in resolved.prepare + resolved.device)
    sizes = f" ({meta.extra['split_sizes']})" if "split_sizes" in meta.extra else ""  # a note a wrapper adds (exact or not)
    console.print(f"dataset '{meta.name}': stim {meta.stim_dtype} {meta.stim_shape}, "
                  f"splits {meta.split_sizes}{sizes}, heads {meta.heads}")
    console.print(f"transforms: {stages or '(none)'}; storage: {resolved.storage.dtype_name}")
    console.print(f"placement: {resolved.placement.where} ({resolved.placement.reason})", highlight=False)
    console.print(resolved.memory.table(), highlight=False)
    if not resolved.memory.fits():
        console.print("[red]the chosen storage does not fit: a run would stop before loading[/red]")
    n_params = sum(p.numel() for p in resolved.model.parameters())
    console.print(f"model: {n_params:,} parameters; loss weights {resolved.loss_weights}")
    console.print("dry run: every component resolved and validated; no data loaded")


def print_test_results(results: dict[str, float], run_dir: Path, console: Console | None = None,
                       ordered: bool = False) -> None:
    """``key = value`` lines, sorted by key unless ``ordered`` (the results' own order: an experiment's values)."""
    console = console or make_console()
    for key, value in results.items() if ordered else sorted(results.items()):
        console.print(f"{key} = {value:.4f}")
    console.print(f"run directory: {run_dir}")


def print_run_summary(results: dict[str, float], run_dir: Path, console: Console | None = None) -> None:
    """The end of ``core-train``: the test metrics (``key = value``, one a line), the best epoch
    and its monitored value (from the checkpoint callback's state saved in the checkpoints), the
    epochs in ``metrics.csv``, the run directory and the command's wall time."""
    from core.terminal import elapsed

    console = console or make_console()
    for key, value in sorted(results.items()):
        console.print(f"{key} = {value:.4f}", highlight=False)
    epochs = epochs_trained(run_dir / "metrics.csv")
    span = f" (epochs 0 to {epochs - 1})" if epochs else ""
    best = best_checkpoint(run_dir / "checkpoints")
    if best is None:
        console.print(f"best epoch: none{span}: no checkpoint was chosen on validation", highlight=False)
    else:
        epoch, monitor, score, path = best
        value = "" if score is None else f", {monitor} = {score:.4f}"
        where = path.relative_to(run_dir) if path.is_relative_to(run_dir) else path
        console.print(f"best epoch: {'?' if epoch is None else epoch}{span}{value}: {where}", highlight=False)
    console.print(f"run directory: {run_dir}", highlight=False)
    wall = elapsed()
    if wall is not None:
        console.print(f"wall time: {duration(wall)}", highlight=False)


def best_checkpoint(checkpoints: Path) -> tuple[int | None, str, float | None, Path] | None:
    """``(epoch, monitor, value, path)`` of a run's recorded best checkpoint
    (:func:`core.evaluate.recorded_best`); None without one."""
    import torch

    from core.evaluate import recorded_best

    recorded = recorded_best(checkpoints)
    if recorded is None:
        return None
    state, path = recorded
    score = state.get("best_model_score")
    epoch = int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"]) if path.is_file() else None
    return epoch, str(state["monitor"]), None if score is None else float(score), path


def epochs_trained(metrics_csv: Path) -> int | None:
    """How many epochs ``metrics.csv`` holds training or validation metrics for."""
    if not metrics_csv.is_file():
        return None
    from core.metrics_log import read_epoch_metrics

    epochs = [epoch for key, points in read_epoch_metrics(metrics_csv).items() if key.startswith(("train/", "val/"))
              for epoch, _ in points]
    return max(epochs) + 1 if epochs else None


def duration(seconds: float) -> str:
    """``12.3 s``, ``4 min 05 s``, ``2 h 03 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
