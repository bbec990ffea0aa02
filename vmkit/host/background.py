"""vmkit's own event loop on a daemon thread, and children that die with their parent.

A Jupyter kernel already runs an asyncio loop, so `asyncio.run` fails inside a notebook.
vmkit therefore runs every coroutine (QMP above all) on one private loop in a background
thread and offers synchronous calls to notebooks. Child processes (QEMU) are spawned from
that long-lived thread with PR_SET_PDEATHSIG, so they are killed even when the Python
process is SIGKILLed (a notebook kernel restarted mid-boot), and in a session of their own,
so that Jupyter's "Interrupt" (SIGINT to the kernel's whole process group) does not reach
them.
"""

from __future__ import annotations

import asyncio
import ctypes
import signal
import subprocess
import threading
from concurrent.futures import Future
from typing import Any, Awaitable, Callable, TypeVar

T = TypeVar("T")
_PR_SET_PDEATHSIG = 1
_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def loop() -> asyncio.AbstractEventLoop:
    """The background loop, started on first use."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            ready = threading.Event()
            new_loop = asyncio.new_event_loop()

            def run() -> None:
                asyncio.set_event_loop(new_loop)
                ready.set()
                new_loop.run_forever()

            threading.Thread(target=run, name="vmkit-loop", daemon=True).start()
            ready.wait()
            _loop = new_loop
        return _loop


def run(coro: Awaitable[T], timeout: float | None = None) -> T:
    """Run a coroutine on the background loop and wait for its result (from any thread)."""
    if _on_loop_thread():
        raise RuntimeError("vmkit.host.background.run() called from the vmkit loop itself")
    future = asyncio.run_coroutine_threadsafe(coro, loop())
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise


def call(fn: Callable[..., T], *args: Any,
         abandoned: Callable[[T], None] | None = None) -> T:
    """Call a plain function on the loop thread and wait for it.

    If the wait is cut short (Jupyter's interrupt raises KeyboardInterrupt in it), `fn`
    still runs on the loop thread; `abandoned` then gets its result, which nobody else will.
    """
    if _on_loop_thread():
        return fn(*args)
    result: Future = Future()

    def invoke() -> None:
        try:
            result.set_result(fn(*args))
        except BaseException as exc:  # handed back to the caller
            result.set_exception(exc)

    loop().call_soon_threadsafe(invoke)
    try:
        return result.result()
    except BaseException:
        if abandoned is not None:
            def hand_over(done: Future) -> None:
                if not done.cancelled() and done.exception() is None:
                    abandoned(done.result())

            result.add_done_callback(hand_over)  # at once if it is done already
        raise


def _on_loop_thread() -> bool:
    return _loop is not None and threading.current_thread().name == "vmkit-loop"


#: Resolved once at import: loading a library in a forked child of a threaded process
#: (preexec_fn) can deadlock on the dynamic loader's lock held by another thread.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def signal_on_parent_death(signum: int) -> None:
    """Ask the kernel to send `signum` to this process when the thread that started it ends."""
    _prctl(_PR_SET_PDEATHSIG, signum)


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the thread that spawned it ends."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(argv: list[str], **kwargs) -> subprocess.Popen:
    """Start a child from the loop thread, tied to this process's life, in its own session.

    A caller interrupted while waiting never learns of the child: it is killed, not left running.
    """
    return call(lambda: subprocess.Popen(argv, preexec_fn=_die_with_parent,
                                         start_new_session=True, **kwargs), abandoned=_kill)


def _kill(proc: subprocess.Popen) -> None:
    """End a child nobody tracks, and release its pipes."""
    proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
