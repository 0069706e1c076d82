"""Batches gathered on the host reach the accelerator while the previous step computes.

With ``placement: host`` every batch is gathered from RAM, pinned and copied to the
accelerator. :class:`DevicePrefetch` does that ahead of time: a background thread takes
the next batches from the DataLoader (gathering and pinning release the GIL), pins them
and copies them on a CUDA stream of its own, recording an event per batch. The step that
consumes a batch makes the compute stream wait for that event
(:func:`ready_on_current_stream`), so the copy overlaps the previous step's kernels and the
host never waits. The first batch of an epoch is fetched in the caller's thread, so the
epoch's order is drawn at the same moment as without prefetching (a curriculum sampler
reads the training step then).

On a device other than CUDA the thread still fetches ahead (and the copy is a plain
``.to``); tests use that to check order, length, errors and early stops on the CPU.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from core.kinds import Batch

READY = "ready_event"  # the batch key holding the CUDA event its copy recorded
DEPTH = 2  # batches fetched ahead
_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class DevicePrefetch:
    """An iterable of batches already on ``device``, copied ``DEPTH`` batches ahead of use."""

    def __init__(self, loader: Iterable[Batch], device: torch.device) -> None:
        self.loader, self.device = loader, device

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def state_dict(self) -> dict[str, Any]:
        """The wrapped loader's position (see :class:`core.data.Batches`)."""
        return self.loader.state_dict() if hasattr(self.loader, "state_dict") else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if hasattr(self.loader, "load_state_dict"):
            self.loader.load_state_dict(state)

    def __iter__(self) -> Iterator[Batch]:
        batches = iter(self.loader)
        try:
            first = next(batches)
        except StopIteration:
            return
        stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        ahead: queue.Queue[Any] = queue.Queue(maxsize=DEPTH)
        stop = threading.Event()
        worker = threading.Thread(target=self._fill, args=(first, batches, ahead, stop, stream), daemon=True,
                                  name="core-prefetch")
        worker.start()
        try:
            while (item := ahead.get()) is not _END:
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            stop.set()
            while worker.is_alive():  # unblock a worker waiting to put, then let it finish
                try:
                    ahead.get(timeout=0.05)
                except queue.Empty:
                    pass
            worker.join()

    def _fill(self, first: Batch, batches: Iterator[Batch], ahead: queue.Queue[Any], stop: threading.Event,
              stream: torch.cuda.Stream | None) -> None:
        try:
            batch: Batch | None = first
            while batch is not None and not stop.is_set():
                moved = self._move(batch, stream)
                while not stop.is_set():
                    try:
                        ahead.put(moved, timeout=0.05)
                        break
                    except queue.Full:
                        continue
                batch = next(batches, None)
            ahead.put(_END)
        except BaseException as error:  # handed to the consumer, raised in its thread
            ahead.put(_Failed(error))

    def _move(self, batch: Batch, stream: torch.cuda.Stream | None) -> Batch:
        if stream is None:
            return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        with torch.cuda.stream(stream):
            moved = {k: v.pin_memory().to(self.device, non_blocking=True) if torch.is_tensor(v) and v.device.type == "cpu"
                     else v for k, v in batch.items()}
            event = torch.cuda.Event()
            event.record(stream)
        return {**moved, READY: event}


def ready_on_current_stream(batch: Batch) -> Batch:
    """The batch without its copy event, after making the current CUDA stream wait for the
    copy (on the device, not the host) and telling the allocator the tensors are used here."""
    if READY not in batch:
        return batch
    batch = dict(batch)
    event = batch.pop(READY)
    current = torch.cuda.current_stream()
    current.wait_event(event)
    for value in batch.values():
        if torch.is_tensor(value) and value.is_cuda:
            value.record_stream(current)
    return batch
