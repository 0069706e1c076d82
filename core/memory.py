"""The memory planner: bytes a dataset will hold per storage dtype, against the RAM there is.

Computed before anything is loaded, from the format's metadata (split sizes, sample
layout), the transforms' output layouts and each backend's bytes per value. ``--dry-run``
prints the table; a run whose chosen backend does not fit stops before loading with the
table and the fix. The estimate counts exactly what the backends allocate: ``stim`` of every
split in the backend's dtype plus the label arrays (int64) and other fields as stored.

Under DDP the plan is per node and per GPU (:class:`Spread`): a node holds one copy in
shared memory, or one per process without it; with ``placement: device`` every GPU holds a
copy (with ``data.shard`` a share of the training split), staged in RAM on the way.
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
    train: int = 0  # of ``bytes``, the training split's (data.shard spreads it over the ranks)


@dataclass(frozen=True)
class Spread:
    """How the run's processes hold the data: what one copy counts for per node and per GPU."""

    nodes: int = 1  # trainer.num_nodes
    per_node: int = 1  # processes per node (trainer.devices)
    shared: bool = False  # one copy per node in shared memory (data.shared_memory)
    sharded: bool = False  # data.shard: each rank keeps 1/(nodes x per_node) of the training split
    device: bool = False  # placement device: each rank's samples live on its GPU
    shm_dir: str = ""
    shm_free: int = 0  # bytes free in shm_dir (with this run's own left-over segments)

    @property
    def single(self) -> bool:
        """One process holding its samples in its own RAM (the plan of a run without DDP)."""
        return self.nodes == self.per_node == 1 and not (self.shared or self.device)

    def ram(self, row: PlanRow) -> int:
        """Host bytes per node (with placement device: the copies staged on the way to the GPUs)."""
        return (row.bytes or 0) * (1 if self.shared else self.per_node)

    def gpu(self, row: PlanRow) -> int:
        """Accelerator bytes per GPU with placement device: a copy, or with data.shard a share of the training split."""
        full = row.bytes or 0
        return full - row.train + row.train // (self.nodes * self.per_node) if self.sharded else full

    def describe(self) -> list[str]:
        """The lines under the plan's title saying how the processes hold the data."""
        nodes = f"{self.nodes} node{'s' if self.nodes > 1 else ''} x {self.per_node} process{'es' if self.per_node > 1 else ''}"
        host = (f"one copy per node in shared memory ({self.shm_dir}, {human(self.shm_free)} free)" if self.shared
                else "a copy per process in its own memory")
        if not self.device:
            return [f"{nodes}; {host}"]
        shard = f", the training split sharded {self.nodes * self.per_node} ways (data.shard)" if self.sharded else ""
        return [f"{nodes}; placement device{shard}", f"RAM/node: staged on the way to the GPUs, {host}"]


@dataclass(frozen=True)
class MemoryPlan:
    dataset: str
    rows: list[PlanRow]
    chosen: str
    available: int
    where: str  # "RAM", "RAM (data.memory_budget)", "accelerator memory"
    spread: Spread = Spread()
    ram: int | None = None  # RAM per node, when ``available`` is the accelerator's (placement device)

    def row(self, dtype: str) -> PlanRow:
        return next(r for r in self.rows if r.dtype == dtype)

    def needed(self, row: PlanRow) -> int:
        """What ``available`` must hold: bytes per GPU with placement device, else RAM per node."""
        return self.spread.gpu(row) if self.spread.device else self.spread.ram(row)

    def row_fits(self, row: PlanRow) -> bool:
        return (row.bytes is not None and self.needed(row) <= self.available
                and (self.ram is None or self.spread.ram(row) <= self.ram))

    def shm_fits(self) -> bool:
        return not self.spread.shared or (self.row(self.chosen).bytes or 0) <= self.spread.shm_free

    def fits(self) -> bool:
        return self.row_fits(self.row(self.chosen)) and self.shm_fits()

    def table(self) -> str:
        """The plan as the dry run prints it; one process keeping its samples in RAM gets the short form."""
        wide = not (self.spread.single and self.ram is None)
        per, ram = ("", "") if not wide else (" per GPU", f", {human(self.ram)} of RAM per node") \
            if self.ram is not None else (" per node", "")
        columns = ("one copy", "RAM/node", "per GPU") if wide else ("memory",)
        lines = [f"memory plan for dataset '{self.dataset}' ({human(self.available)} of {self.where} available{per}{ram})",
                 *(f"  {line}" for line in (self.spread.describe() if wide else [])),
                 f"  {'dtype':<10} {' '.join(f'{c:>10}' for c in columns)}  {'fits?':<6} {'free after':>10}"]
        for r in self.rows:
            mark = "  <- data.storage" if r.dtype == self.chosen else ""
            if r.bytes is None:
                cells, fits, free, note = ["-"] * len(columns), "n/a", "-", f"  ({r.reason})"
            else:
                gpu = human(self.spread.gpu(r)) if self.spread.device else "-"
                cells = [human(r.bytes), human(self.spread.ram(r)), gpu] if wide else [human(r.bytes)]
                fits, free, note = "yes" if self.row_fits(r) else "NO", human(self.available - self.needed(r)), ""
            lines.append(f"  {r.dtype:<10} {' '.join(f'{c:>10}' for c in cells)}  {fits:<6} {free:>10}{note}{mark}")
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
        try:
            backend.check_stim(meta.stim_dtype)
        except ValueError:
            rows.append(PlanRow(name, None, reason=f"cannot hold {meta.stim_dtype} stim"))
            continue
        if streamed:
            rows.append(PlanRow(name, 0, reason="streamed from disk"))
            continue
        try:
            prepare, _ = backend.plan(steps, meta.name)
        except ConfigError as exc:
            rows.append(PlanRow(name, None, reason=f"cannot hold these transforms: {exc.message.split(',')[0]}"))
            continue
        full = stored_bytes(meta, layouts(meta.layout, prepare, meta.name)[-1], backend.bytes_per_value)
        train = full * meta.split_sizes.get("train", 0) // max(1, sum(meta.split_sizes.values()))
        rows.append(PlanRow(name, full, train=train))
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
        rows.append(PlanRow(dtype, None, missing.reason) if missing else
                    PlanRow(dtype, sum(r.bytes or 0 for r in parts), train=sum(r.train for r in parts)))
    chosen_bytes = sum(p.row(p.chosen).bytes or 0 for p in plans)
    chosen = {p.chosen for p in plans}
    if len(chosen) > 1:  # datasets with different backends: add a row for the run as configured
        rows.append(PlanRow("chosen", chosen_bytes, train=sum(p.row(p.chosen).train for p in plans)))
    name = f"{len(plans)} datasets"
    return MemoryPlan(name, rows, chosen.pop() if len(chosen) == 1 else "chosen", plans[0].available, plans[0].where)


def check_fits(plan: MemoryPlan) -> None:
    """Stop before loading when the chosen backend does not fit (in RAM, on each GPU, or in the
    shared-memory folder)."""
    if plan.fits():
        return
    row, spread = plan.row(plan.chosen), plan.spread
    if plan.row_fits(row):  # only the shared-memory folder is too small
        raise ConfigError(
            "data.shm_dir", f"the shared-memory folder {spread.shm_dir} has {human(spread.shm_free)} free, but the "
            f"run keeps one copy of its data there per node: {human(row.bytes or 0)} as {plan.chosen}\n{plan.table()}",
            fix="set data.shm_dir to a folder with room on a local disk or a larger tmpfs (its pages are shared the "
                "same way), remove other runs' left-over core-train-* folders there, or use data.placement: device "
                "(the copy there is then only staged)")
    fitting = [r.dtype for r in plan.rows if r.bytes is not None and plan.row_fits(r)]
    fix = f"use data.storage: {' or '.join(fitting)}" if fitting else "use fewer or smaller datasets"
    if spread.per_node > 1 and not spread.shared:
        fix += "; or set data.shared_memory: true (one copy per node instead of one per process)"
    fix += "; or set data.memory_budget if more memory will be free than measured now"
    short = plan.ram is not None and spread.ram(row) > plan.ram  # placement device: the staging in RAM
    needed, available, where = ((spread.ram(row), plan.ram, "RAM") if short else
                                (plan.needed(row), plan.available, plan.where))
    per = "" if spread.single and plan.ram is None else " per GPU" if spread.device and not short else " per node"
    raise ConfigError(
        "data.storage",
        f"dataset '{plan.dataset}' needs {human(needed)}{per} as {plan.chosen}, "
        f"more than the {human(available or 0)} of {where} available\n{plan.table()}",
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
