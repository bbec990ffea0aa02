"""QEMU's stdio while it runs: the guest's serial console, and QEMU's own error output.

Why a helper of its own: QEMU's pipes must be drained for as long as it runs (a full pipe
stalls the guest), the boot reads its phases (`console`, `kernel`, `ready`) off the same
stream, and when QEMU dies its last stderr and console lines are what tells the student
why. `ConsoleReader`, in the spirit of QEMU's own python `ConsoleSocket`, owns the two
reader threads: made per start, before they run, so that a `stop()` from another thread
can always `close()` it (join them). The pipes belong to the process: `close_stdio` closes
them on every stop, even one that an interrupt brought before the reader existed.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections import deque
from typing import Callable

from ..errors import WorkloadError, WorkloadTimeout
from ..workload import CONSOLE_LINE_MAX, Trace
from . import qemu

_KERNEL_LINE = re.compile(rb"^\[\s*\d+\.\d+\]|^Linux version ")


class ConsoleReader:
    """Reads QEMU's console into `trace` (marking the boot's phases) and keeps its stderr.

    boot=False (a restore) marks no phases: the restored guest's console only continues.
    `listeners` is the workload's list of console callbacks, read at each line.
    """

    def __init__(self, proc: subprocess.Popen, trace: Trace, name: str,
                 listeners: list[Callable[[str], None]], boot: bool = True):
        self.proc = proc
        self._trace = trace
        self._listeners = listeners
        self._boot = boot
        self._stderr: deque = deque(maxlen=200)
        self._cond = threading.Condition()
        self._eof = False
        self._threads = [
            threading.Thread(target=self._read_console, name=f"vmkit-{name}-console", daemon=True),
            threading.Thread(target=self._read_stderr, name=f"vmkit-{name}-stderr", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        """Wait for the readers to finish (QEMU has ended: its pipes are at their end)."""
        self._join(2)

    def _join(self, seconds: float) -> None:
        for thread in self._threads:
            # Not started: an interrupt (KeyboardInterrupt) landed in the loop starting them.
            if thread is not threading.current_thread() and thread.ident is not None:
                thread.join(seconds)

    # -- reading
    def _read_console(self) -> None:
        fd = self.proc.stdout.fileno()
        trace = self._trace
        partial = b""
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            now = time.monotonic()
            booting = "ready" not in trace.phases and self._boot
            if booting:
                trace.mark("console", now)
            partial += data
            *lines, partial = partial.split(b"\n")
            if len(partial) > CONSOLE_LINE_MAX:
                lines.append(partial)
                partial = b""
            for raw in lines:
                self._line(raw, now, booting)
            if booting and qemu.READY_MARKER.encode() in partial:
                with self._cond:
                    trace.mark("ready", now)
                    self._cond.notify_all()
        if partial:
            self._line(partial, time.monotonic(), False)
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _line(self, raw: bytes, now: float, booting: bool) -> None:
        raw = raw.rstrip(b"\r")
        if booting and _KERNEL_LINE.match(raw):
            self._trace.mark("kernel", now)
        line = raw.decode("utf-8", "replace")
        self._trace.console.append(line)
        if booting and qemu.READY_MARKER in line:
            with self._cond:
                self._trace.mark("ready", now)
                self._cond.notify_all()
        for callback in list(self._listeners):
            try:
                callback(line)
            except Exception:
                pass

    def _read_stderr(self) -> None:
        for raw in iter(self.proc.stderr.readline, b""):
            self._stderr.append(raw.decode("utf-8", "replace").rstrip())

    # -- what the boot and its errors read
    def wait_ready(self, deadline: float, timeout: float) -> None:
        """Block until the console showed `VMKIT-READY`; why not, if QEMU died or time ran out."""
        with self._cond:
            while "ready" not in self._trace.phases:
                if self._eof or self.proc.poll() is not None:
                    raise self.died_error()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WorkloadTimeout(
                        f"게스트(guest)가 {timeout:g}초 안에 준비(ready)되지 않았습니다: "
                        f"콘솔(console)에 {qemu.READY_MARKER}가 나오지 않았습니다.",
                        "커널 인자(kernel_args)나 메모리 크기를 확인하세요. 마지막 콘솔 출력을 보세요.",
                        log=self.last())
                self._cond.wait(min(remaining, 0.1))

    def last(self, lines: int = 25) -> str:
        """The console's last lines, as one text."""
        return "\n".join(list(self._trace.console)[-lines:])

    def stderr(self) -> str:
        """QEMU's last stderr lines (at most 200), as one text."""
        return "\n".join(self._stderr)

    def died_error(self) -> WorkloadError:
        """Why QEMU ended: its exit code, its stderr and the console's last lines."""
        proc = self.proc
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            pass
        self._join(1)
        stderr = self.stderr()
        log = ""
        if stderr:
            log += f"[QEMU stderr]\n{stderr}\n"
        console = self.last()
        if console:
            log += f"[콘솔(console)]\n{console}"
        return WorkloadError(
            f"QEMU가 종료되었습니다 (종료 코드 exit code {proc.returncode}).",
            "아래 QEMU 오류 출력(stderr)과 콘솔 출력을 확인하세요.", log=log.strip())


def close_stdio(proc: subprocess.Popen) -> None:
    """Close QEMU's stdin (the console's input), stdout (the console) and stderr pipes."""
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        try:
            stream and stream.close()
        except OSError:
            pass
