"""The memory planner: bytes a dataset will hold per storage dtype, against the RAM there is.

Computed before anything is loaded, from the format's metadata (split sizes, sample
layout), the transforms' output layouts and each backend's bytes per value. ``--dry-run``
prints the table; a run whose chosen backend does not fit stops before loading with the
table and the fix. The estimate counts exactly what the backends allocate: ``stim`` of every
split in the backend's dtype plus the label arrays (int64) and other fields as stored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from core.errors import ConfigError
from core.kinds import DatasetMeta, Layout, Step, StorageBackend, layouts

LABEL_BYTES = 8  # int64 per head per sample


@dataclass(frozen=True)
class PlanRow:
    dtype: str
    bytes: int | None  # None: this backend cannot hold the run's transforms
    reason: str = ""


@dataclass(frozen=True)
class MemoryPlan:
    dataset: str
    rows: list[PlanRow]
    chosen: str
    available: int
    where: str  # "RAM", "RAM (data.memory_budget)", "accelerator memory"

    def row(self, dtype: str) -> PlanRow:
        return next(r for r in self.rows if r.dtype == dtype)

    def fits(self) -> bool:
        needed = self.row(self.chosen).bytes
        return needed is not None and needed <= self.available

    def table(self) -> str:
        lines = [f"memory plan for dataset '{self.dataset}' ({human(self.available)} of {self.where} available)",
                 f"  {'dtype':<10} {'memory':>10}  {'fits?':<6} {'free after':>10}"]
        for r in self.rows:
            mark = "  <- data.storage" if r.dtype == self.chosen else ""
            if r.bytes is None:
                lines.append(f"  {r.dtype:<10} {'-':>10}  {'n/a':<6} {'-':>10}  ({r.reason}){mark}")
            else:
                fits = "yes" if r.bytes <= self.available else "NO"
                lines.append(f"  {r.dtype:<10} {human(r.bytes):>10}  {fits:<6} {human(self.available - r.bytes):>10}{mark}")
        return "\n".join(lines)


def stored_bytes(meta: DatasetMeta, layout: Layout, bytes_per_value: int) -> int:
    """Bytes held for every split: ``stim`` in ``layout`` at ``bytes_per_value``, int64 labels
    and the other fields (``responses``, ...) as they are stored."""
    import numpy as np

    samples = sum(meta.split_sizes.values())
    fields = sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in meta.fields.values())
    return samples * (layout.size() * bytes_per_value + LABEL_BYTES * len(meta.heads) + fields)


def plan_memory(
    meta: DatasetMeta,
    chosen: str,
    backends: dict[str, StorageBackend],
    steps: list[Step],
    budget: int | None,
    streamed: bool = False,
) -> MemoryPlan:
    """Bytes per backend for ``meta`` under ``steps``, against ``budget`` or the RAM available
    (the resolver re-targets it to the accelerator's free memory for placement ``device``).
    A ``streamed`` format holds nothing: its batches are read from disk as they are needed.
    """
    rows = []
    for name, backend in backends.items():
        if streamed:
            rows.append(PlanRow(name, 0, reason="streamed from disk"))
            continue
        try:
            prepare, _ = backend.plan(steps, meta.name)
        except ConfigError as exc:
            rows.append(PlanRow(name, None, reason=f"cannot hold these transforms: {exc.message.split(',')[0]}"))
            continue
        rows.append(PlanRow(name, stored_bytes(meta, layouts(meta.layout, prepare, meta.name)[-1], backend.bytes_per_value)))
    if budget is not None:
        return MemoryPlan(meta.name, rows, chosen, budget, "RAM (data.memory_budget)")
    return MemoryPlan(meta.name, rows, chosen, available_ram(), "RAM")


def total_plan(plans: list[MemoryPlan]) -> MemoryPlan:
    """Several datasets' plans as one: bytes per dtype summed (a dtype that cannot hold one
    dataset's transforms cannot hold the run); every dataset uses its own chosen backend."""
    rows = []
    for dtype in [r.dtype for r in plans[0].rows]:
        parts = [p.row(dtype) for p in plans]
        missing = next((r for r in parts if r.bytes is None), None)
        rows.append(PlanRow(dtype, None, missing.reason) if missing else PlanRow(dtype, sum(r.bytes or 0 for r in parts)))
    chosen_bytes = sum(p.row(p.chosen).bytes or 0 for p in plans)
    chosen = {p.chosen for p in plans}
    if len(chosen) > 1:  # datasets with different backends: add a row for the run as configured
        rows.append(PlanRow("chosen", chosen_bytes))
    name = f"{len(plans)} datasets"
    return MemoryPlan(name, rows, chosen.pop() if len(chosen) == 1 else "chosen", plans[0].available, plans[0].where)


def check_fits(plan: MemoryPlan) -> None:
    """Stop before loading when the chosen backend does not fit."""
    if plan.fits():
        return
    fitting = [r.dtype for r in plan.rows if r.bytes is not None and r.bytes <= plan.available]
    fix = f"use data.storage: {' or '.join(fitting)}" if fitting else "use fewer or smaller datasets"
    fix += "; or set data.memory_budget if more memory will be free than measured now"
    raise ConfigError(
        "data.storage",
        f"dataset '{plan.dataset}' needs {human(plan.row(plan.chosen).bytes or 0)} as {plan.chosen}, "
        f"more than the {human(plan.available)} of {plan.where} available\n{plan.table()}",
        fix=fix,
    )


def available_ram() -> int:
    """Bytes of RAM available to a new allocation now (Linux MemAvailable, else free pages)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def human(n: int) -> str:
    """Bytes in binary units: ``226.0 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    raise AssertionError("unreachable")
