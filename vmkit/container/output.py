"""Following a container's output: console lines, its first byte, and the ready marker.

Why here: the attach stream is read on a thread of its own, from before the container
starts (as `docker run` does, so no byte is missed) until it ends; `start()` only waits for
what that thread found. The stream's socket and the thread are this module's resources, and
`Output.close()` releases both. Should the stream ever miss the marker, the engine's log
still has it: `wait_ready` looks there too, every LOG_CHECK_S (and `trace.guest["ready_from"]`
then says "log").
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from ..errors import WorkloadTimeout
from ..workload import CONSOLE_LINE_MAX, Trace
from . import streams

READY_MARKER = b"VMKIT-READY"
#: How often `wait_ready` also looks for the marker in the engine's log.
LOG_CHECK_S = 1.0


class Output:
    """A container's output as console lines (into `trace.console`, and to each of `listeners`).

    `cond` is the container's condition: it is notified at each output, at the marker and
    at the end of the stream. `line` is the console line being read (at most
    CONSOLE_LINE_MAX); `first_at` and `ready_at` are monotonic times once seen.
    """

    def __init__(self, cond: threading.Condition, listeners: list[Callable[[str], None]],
                 trace: Trace | None = None):
        self.cond, self.listeners, self.trace = cond, listeners, trace
        self.name = ""
        self.first_at: float | None = None
        self.ready_at: float | None = None
        self.eof = False
        self.line = bytearray()
        self.recent = b""  # the last output bytes, for a marker split between payloads
        self.stream = None
        self.thread: threading.Thread | None = None

    def follow(self, stream, name: str) -> None:
        """Read `stream` (the attach socket of container `name`) on a thread of its own until it ends."""
        self.stream, self.name = stream, name
        streams.raw(stream).settimeout(None)
        self.thread = threading.Thread(target=self._read, args=(stream,),
                                       name=f"vmkit-{name}-output", daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        """Read the attach stream (multiplexed frames) until EOF; mark first output and ready."""
        sock = streams.raw(stream)
        demux = streams.Demux()
        try:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    break
                now = time.monotonic()
                for payload in demux.feed(data):
                    self.feed(payload, now)
        finally:
            with self.cond:
                self.eof = True
                self.cond.notify_all()

    def feed(self, payload: bytes, now: float) -> None:
        """Split output into console lines; a line without newline is cut at CONSOLE_LINE_MAX."""
        with self.cond:
            if self.first_at is None:
                self.first_at = now
            seen = self.recent + payload
            if self.ready_at is None and READY_MARKER in seen:
                self.ready_at = now
            self.recent = seen[1 - len(READY_MARKER):]
            *lines, rest = (bytes(self.line) + payload).split(b"\n")
            whole = len(rest) // CONSOLE_LINE_MAX * CONSOLE_LINE_MAX if len(rest) > CONSOLE_LINE_MAX else 0
            lines += [rest[i:i + CONSOLE_LINE_MAX] for i in range(0, whole, CONSOLE_LINE_MAX)]
            self.line[:] = rest[whole:]
            for raw in lines:
                line = raw.decode(errors="replace").rstrip("\r")
                if self.trace is not None:
                    self.trace.console.append(line)
                for callback in list(self.listeners):
                    try:
                        callback(line)
                    except Exception:
                        pass
            self.cond.notify_all()

    def wait_ready(self, deadline: float, timeout: float, ended: Callable[[], bool],
                   logs: Callable[[], bytes]) -> bool:
        """Wait for the marker on the stream, or in the engine's log (`logs()`): False if the
        stream or the container (`ended()`) ended first; WorkloadTimeout at `deadline`."""
        next_check = time.monotonic() + LOG_CHECK_S
        with self.cond:
            while self.ready_at is None:
                if self.eof or ended():
                    return False
                now = time.monotonic()
                if now >= deadline:
                    raise WorkloadTimeout(
                        f"컨테이너(container) '{self.name}'가 {timeout:g}초 안에 준비(VMKIT-READY)되지 않았습니다.",
                        log=self.tail())
                if now >= next_check:
                    next_check = now + LOG_CHECK_S
                    if _marker_in(logs):
                        self.ready_at = time.monotonic()
                        self.trace.guest["ready_from"] = "log"
                        if self.first_at is None:
                            self.first_at = self.ready_at
                        break
                self.cond.wait(min(deadline, next_check) - now)
        return True

    def tail(self, lines: int = 25) -> str:
        """The last console lines and the line being read, as one text."""
        if self.trace is None:
            return ""
        tail = list(self.trace.console)[-lines:]
        if self.line:
            tail.append(bytes(self.line).decode(errors="replace"))
        return "\n".join(tail)

    def close(self) -> None:
        """Close the stream and wait (briefly) for the reading thread to end."""
        stream, self.stream = self.stream, None
        if stream is not None:
            streams.close(stream)
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)


def _marker_in(logs: Callable[[], bytes]) -> bool:
    try:
        return READY_MARKER in logs()
    except Exception:
        return False
