"""The protocol VMs and containers share: Trace, Usage and the Workload base class.

Labs, widgets, the CLI and `compare` only ever talk to a `Workload`, so a VM and a
container are measured and shown the same way, with no `if kind == ...` anywhere above.
"""

from __future__ import annotations

import abc
import atexit
import threading
import time
import weakref
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import psutil

CONSOLE_LINES = 500
#: A console line longer than this without a newline is cut into pieces (bounded memory).
CONSOLE_LINE_MAX = 4096


@dataclass
class Trace:
    """Timestamped start-up phases on the host's monotonic clock, plus the guest's view.

    `origin` is the monotonic time the workload was asked to start; `phases` maps phase
    names, in the order they happened, to absolute monotonic times. `guest` holds what
    the workload itself reported (kernel release, its uptime, its memory).
    """

    kind: str
    origin: float = field(default_factory=time.monotonic)
    phases: dict[str, float] = field(default_factory=dict)
    guest: dict[str, Any] = field(default_factory=dict)
    accel: str | None = None
    accel_reason: str | None = None
    console: deque = field(default_factory=lambda: deque(maxlen=CONSOLE_LINES), repr=False)
    on_phase: Callable[[str, float], None] | None = field(default=None, repr=False)

    def mark(self, name: str, when: float | None = None) -> float:
        """Record that phase `name` happened now (or at `when`); returns seconds from origin."""
        if name not in self.phases:
            self.phases[name] = time.monotonic() if when is None else when
            if self.on_phase:
                self.on_phase(name, self.phases[name] - self.origin)
        return self.phases[name] - self.origin

    def seconds(self) -> dict[str, float]:
        """Each phase as seconds since `origin`."""
        return {name: t - self.origin for name, t in self.phases.items()}

    @property
    def ready_s(self) -> float | None:
        """Seconds from the start request to the workload being ready, if it got there."""
        return self.phases["ready"] - self.origin if "ready" in self.phases else None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "accel": self.accel, "accel_reason": self.accel_reason,
                "ready_s": self.ready_s, "phases": self.seconds(), "guest": dict(self.guest)}


@dataclass
class Usage:
    """What a workload costs the host, and what it sees inside.

    rss/pss: resident and proportional set size of the host processes (QEMU, or the
    container's processes); mem_bytes: the engine's own figure where there is one
    (cgroup usage less inactive file pages, as `docker stats` shows); cpu_*: CPU seconds.
    """

    rss_bytes: int = 0
    pss_bytes: int = 0
    cpu_user_s: float = 0.0
    cpu_system_s: float = 0.0
    mem_bytes: int | None = None
    mem_limit_bytes: int | None = None
    guest_mem_total_bytes: int | None = None
    guest_mem_available_bytes: int | None = None
    processes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def process_usage(pids: Iterable[int]) -> Usage:
    """Sum RSS, PSS and CPU seconds over host processes (those that vanished are skipped)."""
    usage = Usage()
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                try:
                    mem = proc.memory_full_info()
                    pss = getattr(mem, "pss", mem.rss)
                except psutil.AccessDenied:
                    mem = proc.memory_info()
                    pss = mem.rss
                cpu = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        usage.rss_bytes += mem.rss
        usage.pss_bytes += pss
        usage.cpu_user_s += cpu.user
        usage.cpu_system_s += cpu.system
        usage.processes += 1
    return usage


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as {'MemTotal': bytes, ...}."""
    values = {}
    for line in text.splitlines():
        parts = line.replace(":", " ").split()
        if len(parts) >= 2 and parts[1].isdigit():
            scale = 1024 if len(parts) > 2 and parts[2] == "kB" else 1
            values[parts[0]] = int(parts[1]) * scale
    return values


def guest_view(trace: Trace, usage: Usage, kernel: str) -> dict[str, Any]:
    """What the workload reported about itself, with the latest kernel and memory figures."""
    guest = dict(trace.guest)
    guest["kernel"] = kernel
    guest["mem_total_bytes"] = usage.guest_mem_total_bytes or guest.get("mem_total_bytes")
    guest["mem_available_bytes"] = usage.guest_mem_available_bytes or guest.get("mem_available_bytes")
    return guest


#: Starts under way in this process (on any thread), and whether the process is ending.
_starts = threading.Condition()
_in_flight = 0
_ending = False


def refuse_starts() -> None:
    """The process is ending: every `start()` from now on fails (see `reaper.stop_all`)."""
    global _ending
    with _starts:
        _ending = True


#: Every workload this process started and has not yet stopped: the one registry that the
#: memory guard, the exit's clean-up and the labs ask (nothing below imports `VM` or `Container`).
_live: "weakref.WeakSet[Workload]" = weakref.WeakSet()


def live(kind: str | None = None) -> list["Workload"]:
    """This process's running workloads, of one `kind` ('vm', 'container') or all."""
    return [w for w in list(_live) if w.running and (kind is None or w.kind == kind)]


def stop_live() -> None:
    """Stop every workload this process still runs (at exit, on SIGTERM); never raises."""
    for workload in list(_live):
        try:
            workload._stop_at_exit()
        except Exception:
            pass


atexit.register(stop_live)


def starts_in_flight() -> int:
    """How many `start()` calls are under way right now."""
    return _in_flight


def wait_for_starts(timeout: float) -> None:
    """Wait at most `timeout` seconds for a start under way to end (returns early if none is)."""
    with _starts:
        if _in_flight:
            _starts.wait(timeout)


class Workload(abc.ABC):
    """One VM or one container: start, look inside, measure, stop.

    Subclasses implement `_start`, `_stop`, `guest`, `usage`, `pause`, `resume`.
    `start()` blocks until the workload is ready and returns its Trace; `stop()` is
    always safe to call, any number of times; both work as a context manager.
    """

    kind: str = "workload"

    def __init__(self, name: str | None = None):
        self.name = name
        self.trace: Trace | None = None
        self._listeners: list[Callable[[dict], None]] = []
        self._events: deque = deque(maxlen=1000)
        self._events_cond = threading.Condition()
        self._console_listeners: list[Callable[[str], None]] = []

    # -- lifecycle
    def start(self, timeout: float = 60.0, on_phase: Callable[[str, float], None] | None = None) -> Trace:
        """Start and block until ready; on any failure everything started is stopped.

        Refused once the process is ending (`refuse_starts`): a panel's background job
        must not start a workload after the exit's clean-up has stopped the running ones.
        """
        global _in_flight
        with _starts:
            if _ending:
                from .errors import WorkloadError

                raise WorkloadError(
                    "이 파이썬 프로세스(커널)가 끝나는 중이라 새 VM이나 컨테이너를 시작하지 않습니다.",
                    "커널(kernel)을 다시 시작한 뒤 실행하세요.")
            _in_flight += 1
        try:
            self.trace = Trace(kind=self.kind, on_phase=on_phase)
            try:
                self._start(timeout)
            except BaseException:
                self.stop()
                raise
        finally:
            with _starts:
                _in_flight -= 1
                _starts.notify_all()
        return self.trace

    @abc.abstractmethod
    def _start(self, timeout: float) -> None: ...

    def stop(self) -> None:
        """Stop and release everything; safe to call at any time, repeatedly."""
        self._stop()

    @abc.abstractmethod
    def _stop(self) -> None: ...

    @property
    @abc.abstractmethod
    def running(self) -> bool:
        """Whether the workload runs now."""

    def _track(self) -> None:
        """Enter the registry (`live`): call once the workload's process exists."""
        _live.add(self)

    def _untrack(self) -> None:
        _live.discard(self)

    def _stop_at_exit(self) -> None:
        """How the process's exit stops this workload (a VM skips the polite power-off)."""
        self.stop()

    def __enter__(self):
        if self.trace is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- looking inside
    @abc.abstractmethod
    def guest(self, command: str, timeout: float = 10.0) -> str:
        """Run a shell command inside the workload and return its output."""

    @abc.abstractmethod
    def usage(self) -> Usage:
        """Host-side cost and inside view, sampled now."""

    @abc.abstractmethod
    def pause(self) -> None: ...

    @abc.abstractmethod
    def resume(self) -> None: ...

    def _read_inside_memory(self, usage: Usage) -> None:
        """Fill `usage.guest_mem_*` from /proc/meminfo inside; left empty if it can't answer."""
        from .errors import WorkloadError

        try:
            mem = self.meminfo()
        except WorkloadError:
            return
        usage.guest_mem_total_bytes = mem.get("MemTotal")
        usage.guest_mem_available_bytes = mem.get("MemAvailable")

    def kernel_release(self) -> str:
        """`uname -r` as the workload sees it."""
        return self.guest("uname -r").strip()

    def meminfo(self) -> dict[str, int]:
        """/proc/meminfo as the workload sees it."""
        return parse_meminfo(self.guest("cat /proc/meminfo"))

    # -- console (a VM's serial console, a container's output)
    def console_log(self) -> str:
        """The last console/output lines (bounded), as one text."""
        return "\n".join(self.trace.console) if self.trace else ""

    def on_console(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call `callback(line)` for each console/output line; returns an unsubscribe function."""
        self._console_listeners.append(callback)
        return lambda: (self._console_listeners.remove(callback)
                        if callback in self._console_listeners else None)

    # -- events (QMP events for a VM, engine events for a container)
    def on_event(self, callback: Callable[[dict], None]) -> Callable[[], None]:
        """Call `callback(event)` for each event; returns a function that unsubscribes."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _emit(self, event: dict) -> None:
        event.setdefault("time", time.monotonic())
        with self._events_cond:
            self._events.append(event)
            self._events_cond.notify_all()
        for callback in list(self._listeners):
            try:
                callback(event)
            except Exception:  # a broken widget callback must not break the workload
                pass

    def events(self) -> list[dict]:
        """Every event seen so far (bounded)."""
        return list(self._events)

    def wait_event(self, name: str, timeout: float = 10.0, since: float = 0.0) -> dict | None:
        """The first event called `name` after monotonic time `since`, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._events_cond:
            while True:
                for event in self._events:
                    if event.get("event") == name and event["time"] >= since:
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._events_cond.wait(remaining)
