"""Stop this process's VMs and containers when the process is told to end.

Python's default SIGTERM and SIGHUP end the process at once: no `finally`, no atexit. QEMU
would then die only through PR_SET_PDEATHSIG (its runtime dir left behind) and containers
would wait, labelled, for the next sweep. A Jupyter kernel gets SIGTERM when a forced
shutdown's polite request went unanswered. `install()` puts a handler in front (from the
main thread, once) that stops every live workload, then lets the signal do what it did
before: the previous Python handler runs, or the default action ends the process.
SIGKILL cannot be caught: there PR_SET_PDEATHSIG ends QEMU, and the sweep finds the
labelled containers of the dead process.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_previous: dict[int, object] = {}


def stop_all() -> None:
    """Stop every VM and container this process runs (modules not yet imported ran none)."""
    for name in ("vmkit.vm", "vmkit.container"):
        module = sys.modules.get(name)
        if module is not None:
            module._stop_all()


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
