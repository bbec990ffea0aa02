"""What every lab panel shares: one background job at a time, Korean errors, small tables,
and one live panel per key (re-running a notebook cell stops the previous panel's work).

Work that takes seconds (booting a guest, a measurement) runs on a background thread and
updates the widgets as results arrive, so the notebook never freezes. A panel keeps what
it started and stops it on `close()`, on its Stop button, when a new panel with the same
key replaces it (the student ran the cell again), and when the kernel shuts down.
"""

from __future__ import annotations

import html
import threading
import time
import traceback
import weakref
from typing import Iterable

import ipywidgets as W

from ..errors import InvalidInput, VmkitError
from ..host import reaper

MEMORY_CHOICES = ["128M", "256M", "512M"]
#: Readable spacing for the small HTML tables (the notebook's CSS packs them tight).
TABLE_STYLE = "border-spacing: 14px 2px; text-align: right"


def check_choice(value, choices, what: str):
    """`value` if a panel's menu offers it, else a Korean InvalidInput naming the choices."""
    try:
        offered = value in choices
    except TypeError:  # unhashable
        offered = False
    if not offered or isinstance(value, bool):
        raise InvalidInput(f"{what} {value!r}는 고를 수 없습니다.",
                           f"고를 수 있는 값: {', '.join(map(repr, choices))}")
    return value


def check_number(value, low, high, subject: str, *, whole: bool = True):
    """`value` for a slider from `low` to `high` (a whole number if `whole`), else a Korean InvalidInput.

    A slider would quietly clamp a value outside its range, or fail in English on a string.
    `subject` ends with its particle ("시행 횟수(trials)는").
    """
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "정수" if whole else "수"
        raise InvalidInput(f"{subject} {low}~{high} 사이의 {kind}여야 합니다 (받은 값: {value!r}).")
    return value


def error_html(exc: BaseException) -> str:
    """A Korean error line for a status widget (VmkitError's own text, else the type)."""
    text = str(exc) if isinstance(exc, VmkitError) else f"{type(exc).__name__}: {exc}"
    return f"<pre style='color:#b00020;white-space:pre-wrap'>오류: {html.escape(text)}</pre>"


def table_html(header: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    """A small HTML table; cells are escaped, None shows as empty."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{'' if c is None else html.escape(str(c))}</td>" for c in row)
                   + "</tr>" for row in rows)
    return f"<table style='{TABLE_STYLE}'>" + (f"<tr>{head}</tr>" if head else "") + body + "</table>"


#: The longest a wait for a job blocks without looking for a pending interrupt (seconds).
WAIT_SLICE = 0.1
#: Every job object, so that the end of the process can stop the running ones and wait for them.
_jobs: "weakref.WeakSet[Background]" = weakref.WeakSet()


class Background:
    """One background job at a time, with a stop event and error reporting to a widget.

    Whether the job still runs is an Event of its own, set once `done()` returned, not the
    thread's `is_alive()`: before Python 3.13 a KeyboardInterrupt landing in `Thread.join`
    (Jupyter's interrupt of a cell waiting in `wait()`) marks a thread that still runs as
    stopped, and the panel would then take its running job for finished.
    """

    def __init__(self, status: W.HTML):
        self.status = status
        self.thread: threading.Thread | None = None
        self.stop_event = threading.Event()
        self._finished = threading.Event()
        self._finished.set()
        _jobs.add(self)

    @property
    def busy(self) -> bool:
        return not self._finished.is_set()

    def run(self, job, done) -> None:
        self.stop_event.clear()
        finished = self._finished = threading.Event()

        def body() -> None:
            try:
                job()
            except BaseException as exc:  # shown to the student, not raised in a thread
                self.status.value = error_html(exc)
                if not isinstance(exc, VmkitError):
                    traceback.print_exc()
            finally:
                try:
                    done()
                finally:
                    finished.set()

        self.thread = threading.Thread(target=body, name="vmkit-widget", daemon=True)
        try:
            self.thread.start()
        except BaseException:
            finished.set()
            raise

    def wait(self, timeout: float | None = None) -> None:
        """Block until the running job ends (for tests and nbval); Jupyter's interrupt ends the wait.

        It waits in short slices: the interrupt's SIGINT may be taken by another thread
        (one that just spawned a process and restored its signal mask, as the job does),
        and then Python raises KeyboardInterrupt only once the main thread runs again.
        """
        finished = self._finished
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = WAIT_SLICE if deadline is None else min(WAIT_SLICE, deadline - time.monotonic())
            if finished.wait(max(left, 0.0)) or (deadline is not None and time.monotonic() >= deadline):
                return


def stop_jobs() -> None:
    """Ask every panel's running job to stop (the process is ending)."""
    for job in list(_jobs):
        job.stop_event.set()


def wait_jobs(timeout: float) -> bool:
    """Wait, `timeout` seconds at most in all, for every running job to end; True if all did."""
    deadline = time.monotonic() + timeout
    for job in list(_jobs):
        job.wait(max(0.0, deadline - time.monotonic()))
    return not any(job.busy for job in list(_jobs))


reaper.register_jobs(stop_jobs, wait_jobs)

_live_panels: "weakref.WeakValueDictionary[tuple, Panel]" = weakref.WeakValueDictionary()


class Panel(W.VBox):
    """Base of the lab panels: one live panel per (class, key).

    Creating a panel closes the previous one of the same class and key, so running a
    notebook cell again stops what the last run started. Subclasses stop their work in
    `stop_all()`; `close()` calls it.
    """

    def __init__(self, children=(), key: str = "", **kwargs):
        if not isinstance(key, str):
            raise InvalidInput(f"패널 키(key)는 문자열(str)이어야 합니다 (받은 값: {key!r}).",
                               "예: key='lab01' (같은 키의 이전 패널은 닫힙니다)")
        super().__init__(list(children), **kwargs)
        reaper.install()  # its jobs start workloads off the main thread: SIGTERM must still stop them
        self._panel_key = (type(self).__name__, key)
        previous = _live_panels.get(self._panel_key)
        if previous is not None and previous is not self:
            previous.close()
        _live_panels[self._panel_key] = self

    def stop_all(self) -> None:
        """Stop everything this panel started (subclasses)."""

    def close(self) -> None:
        key = getattr(self, "_panel_key", None)  # absent if a subclass failed before Panel.__init__
        if key is None:  # its __init__ refused its arguments: nothing was started, nothing to close
            return
        try:
            self.stop_all()
        finally:
            if key is not None and _live_panels.get(key) is self:
                del _live_panels[key]
            super().close()
