"""A VM's QMP events: the run state they tell, and their way to the VM's listeners.

Why: QMP events arrive on vmkit's background loop, which every VM's QMP session shares
and which must never block, while a listener (a widget redrawing, a lab's callback) may
take its time. `QMPEvents` notes STOP and RESUME at once (so `VM.paused` is right before
any listener hears of it) and hands each event, in order, to a thread of the VM's own
(`vmkit-<name>-events`); `close()` lets that thread go. `iterate` turns a workload's event
callbacks into a generator, for a loop in a notebook cell.
"""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence


class QMPEvents:
    """One run's QMP events: `paused` (STOP seen, no RESUME since), and `emit(event)` called
    for each event on one thread, in arrival order."""

    def __init__(self, name: str, emit: Callable[[dict], None]):
        self.paused = False
        self._emit = emit
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"vmkit-{name}-events")

    def submit(self, event: dict) -> None:
        """On the loop thread: update the state now, hand the event on; never blocks or raises."""
        name = event.get("event")
        if name == "STOP":
            self.paused = True
        elif name == "RESUME":
            self.paused = False
        try:
            self._pool.submit(self._emit, event)
        except RuntimeError:  # shut down while stopping
            pass

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def iterate(workload, timeout: float | None = None,
            names: Sequence[str] | None = None) -> Iterator[dict]:
    """Yield `workload`'s events as they arrive, until `timeout` seconds pass without one."""
    inbox: queue.Queue = queue.Queue()
    unsubscribe = workload.on_event(inbox.put)
    try:
        while True:
            try:
                event = inbox.get(timeout=timeout)
            except queue.Empty:
                return
            if names is None or event.get("event") in names:
                yield event
    finally:
        unsubscribe()
