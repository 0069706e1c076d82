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
    console.print(f"dataset '{meta.name}': stim {meta.stim_dtype} {meta.stim_shape}, "
                  f"splits {meta.split_sizes}, heads {meta.heads}")
    console.print(f"transforms: {stages or '(none)'}; storage: {resolved.storage.dtype_name}")
    console.print(f"placement: {resolved.placement.where} ({resolved.placement.reason})", highlight=False)
    console.print(resolved.memory.table(), highlight=False)
    if not resolved.memory.fits():
        console.print("[red]the chosen storage does not fit: a run would stop before loading[/red]")
    n_params = sum(p.numel() for p in resolved.model.parameters())
    console.print(f"model: {n_params:,} parameters; loss weights {resolved.loss_weights}")
    console.print("dry run: every component resolved and validated; no data loaded")


def print_test_results(results: dict[str, float], run_dir: Path, console: Console | None = None) -> None:
    console = console or make_console()
    for key, value in sorted(results.items()):
        console.print(f"{key} = {value:.4f}")
    console.print(f"run directory: {run_dir}")
