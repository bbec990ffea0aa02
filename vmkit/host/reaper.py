"""Stop this process's VMs and containers when the process is told to end.

Python's default SIGTERM and SIGHUP end the process at once: no `finally`, no atexit. QEMU
would then die only through PR_SET_PDEATHSIG (its runtime dir left behind) and containers
would wait, labelled, for the next sweep. A Jupyter kernel gets SIGTERM when a forced
shutdown's polite request went unanswered. `install()` puts a handler in front (from the
main thread, once) that stops every live workload, then lets the signal do what it did
before: the previous Python handler runs, or the default action ends the process.
SIGKILL cannot be caught: there PR_SET_PDEATHSIG ends QEMU, and the sweep finds the
labelled containers of the dead process. The same `stop_all` runs at exit (atexit), when a
kernel shuts down or restarts while a panel's job is still starting workloads.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time
from typing import Callable

from .. import workload

SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_previous: dict[int, object] = {}


#: How long the end of the process waits for starts under way and panel jobs to wind down.
EXIT_WAIT = 10.0


#: Who runs background jobs that may start workloads (the widgets' panels): (stop, wait).
_job_runners: list[tuple[Callable[[], None], Callable[[float], object]]] = []


def register_jobs(stop: Callable[[], None], wait: Callable[[float], object]) -> None:
    """A front end's background jobs: `stop()` asks them to end, `wait(seconds)` waits for them.

    The front end registers itself (the core imports no front end).
    """
    if (stop, wait) not in _job_runners:
        _job_runners.append((stop, wait))


def stop_all(wait: float = EXIT_WAIT) -> None:
    """The process is ending: stop every VM and container it runs, and start no new one.

    Runs at exit (atexit) and on SIGTERM/SIGHUP. Other threads may be starting workloads
    right now (a widget's background job in a kernel that is shutting down): no new start
    may begin, one under way is stopped as soon as it shows up among the running ones, and
    both these starts and the panels' jobs are waited for (`wait` seconds at most in all),
    so that their own clean-up (`finally`: the comparison's snapshot file) runs before the
    interpreter freezes their threads.
    """
    workload.refuse_starts()
    for stop_jobs, _ in list(_job_runners):
        stop_jobs()
    deadline = time.monotonic() + wait
    while True:
        workload.stop_live()
        remaining = deadline - time.monotonic()
        if not workload.starts_in_flight() or remaining <= 0:
            break
        workload.wait_for_starts(min(remaining, 0.05))
    for _, wait_jobs in list(_job_runners):
        wait_jobs(max(0.0, deadline - time.monotonic()))
    workload.stop_live()


atexit.register(stop_all)


def install() -> bool:
    """Put the handler in front of SIGTERM/SIGHUP; only the main thread can. True if in place."""
    if threading.current_thread() is not threading.main_thread():
        return all(signal.getsignal(sig) is _handle for sig in SIGNALS)
    for sig in SIGNALS:
        current = signal.getsignal(sig)
        if current is _handle or current in (signal.SIG_IGN, None):
            continue  # ours already, ignored on purpose (nohup), or set outside Python
        _previous[sig] = current
        signal.signal(sig, _handle)
    return True


def _handle(signum: int, frame) -> None:
    stop_all()
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by `raise_on_termination`'s handler; `signum` says which."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def raise_on_termination() -> None:
    """For programs (the CLI): SIGTERM/SIGHUP raise `Terminated`, so every `finally` runs.

    Once raised, further SIGTERM/SIGHUP are ignored so the clean-up is not cut short
    (SIGKILL still ends the process; its containers are then left for the sweep).
    """
    def handler(signum: int, frame) -> None:
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise Terminated(signum)

    for sig in SIGNALS:
        if signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, handler)
