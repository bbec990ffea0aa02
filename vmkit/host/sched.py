"""Where the host runs a VM's vCPUs: their host threads, pinning them to host cores, and
how much CPU time each one gets.

A hypervisor like QEMU runs each vCPU as an ordinary host thread, and the host kernel's
scheduler decides when and on which core it runs, like any other thread. With KVM or
multi-threaded TCG each vCPU has a thread of its own ("CPU 0/KVM"); under vmkit's
single-threaded TCG one thread ("ALL CPUs/TCG") runs all vCPUs of a VM.

- `vcpu_threads(vm)`: the host threads that run a VM's vCPUs.
- `pin(vm, cores)` / `unpin(vm)`: restrict them to some host cores (`sched_setaffinity`).
- `spin(vm)` / `stop_spin(vm)`: a CPU-bound loop inside the guest.
- `CpuMeter`: each VM's CPU time rate (CPU-seconds per second of wall time), and how busy
  each host core was, sampled live or over a window.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import psutil

from ..errors import InvalidInput, WorkloadError

#: Where a guest's busy loop keeps its process id (inside the guest).
SPIN_PIDFILE = "/tmp/vmkit-spin.pid"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class VcpuThread:
    """One host thread that runs vCPUs of a VM: its QEMU pid, thread id, name, vCPU indexes."""

    pid: int
    tid: int
    name: str
    vcpus: tuple[int, ...]


def _require_running(vm) -> int:
    pid = vm.pid
    if pid is None:
        raise WorkloadError(f"VM '{vm.name}'이(가) 실행 중이 아닙니다.", "먼저 start() 하세요.")
    return pid


def vcpu_threads(vm) -> list[VcpuThread]:
    """The host threads running `vm`'s vCPUs (one under single-threaded TCG), from QMP."""
    pid = _require_running(vm)
    by_tid: dict[int, list] = {}
    names: dict[int, str] = {}
    for cpu in vm.vcpus():
        tid = cpu["thread_id"]
        by_tid.setdefault(tid, []).append(cpu["index"])
        names[tid] = cpu.get("thread_name") or ""
    return [VcpuThread(pid, tid, names[tid], tuple(idx)) for tid, idx in by_tid.items()]


def host_cores() -> list[int]:
    """The host cores this process may run on (and may pin threads to)."""
    return sorted(os.sched_getaffinity(0))


def check_cores(cores: Iterable[int] | int) -> set[int]:
    """A non-empty set of usable host core numbers, or a Korean error saying which exist."""
    allowed = host_cores()
    hint = f"이 호스트(host)에서 쓸 수 있는 코어(core) 번호: {', '.join(map(str, allowed))}"
    if isinstance(cores, int) and not isinstance(cores, bool):
        cores = [cores]
    try:
        values = list(cores)
    except TypeError:
        raise InvalidInput(f"코어(core) 목록 {cores!r}을(를) 이해할 수 없습니다.", hint) from None
    if not values:
        raise InvalidInput("코어(core)를 하나 이상 골라야 합니다.", hint)
    bad = [c for c in values if isinstance(c, bool) or not isinstance(c, int) or c not in allowed]
    if bad:
        raise InvalidInput(f"코어(core) {bad!r}은(는) 쓸 수 없습니다.", hint)
    return set(values)


def affinity(thread: VcpuThread) -> set[int]:
    """The host cores `thread` may run on now."""
    return _thread_call(thread, os.sched_getaffinity)


def _thread_call(thread: VcpuThread, call: Callable, *args):
    try:
        return call(thread.tid, *args)
    except ProcessLookupError:
        raise WorkloadError(f"vCPU 스레드(thread) {thread.tid}이(가) 없습니다: VM이 종료되었을 수 있습니다.") from None
    except PermissionError:
        raise WorkloadError(f"vCPU 스레드(thread) {thread.tid}의 코어 지정(affinity)을 바꿀 권한이 없습니다.",
                            "VM을 시작한 사용자로 실행하세요.") from None


def _each_vm(vms) -> list:
    return list(vms.values()) if isinstance(vms, Mapping) else \
        list(vms) if isinstance(vms, (list, tuple, set)) else [vms]


def pin(vms, cores: Iterable[int] | int) -> dict[int, set[int]]:
    """Let the vCPU threads of `vms` (one VM, a list, or a {label: VM} dict) run only on
    `cores`; returns each thread's previous affinity by thread id."""
    wanted = check_cores(cores)
    threads = [t for vm in _each_vm(vms) for t in vcpu_threads(vm)]
    previous = {}
    for thread in threads:
        previous[thread.tid] = affinity(thread)
        _thread_call(thread, os.sched_setaffinity, wanted)
    return previous


def unpin(vms) -> None:
    """Let the vCPU threads of `vms` run on every core this process may use again."""
    pin(vms, host_cores())


@contextmanager
def pinned(vms, cores: Iterable[int] | int) -> Iterator[None]:
    """`pin` for the `with` block, then each thread's previous affinity back."""
    previous = pin(vms, cores)
    try:
        yield
    finally:
        for vm in _each_vm(vms):
            if vm.running:
                for thread in vcpu_threads(vm):
                    if thread.tid in previous:
                        _thread_call(thread, os.sched_setaffinity, previous[thread.tid])


def thread_cpu_seconds(thread: VcpuThread) -> float:
    """CPU seconds `thread` has run: the scheduler's nanosecond count, else user+system ticks."""
    base = f"/proc/{thread.pid}/task/{thread.tid}"
    try:
        try:
            with open(f"{base}/schedstat") as stream:
                return int(stream.read().split()[0]) / 1e9
        except (FileNotFoundError, ValueError, IndexError):
            if os.path.exists(base):  # a kernel without schedstat: clock ticks instead
                with open(f"{base}/stat") as stream:
                    fields = stream.read().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
            raise
    except OSError:
        raise WorkloadError(f"vCPU 스레드(thread) {thread.tid}이(가) 없습니다: VM이 종료되었을 수 있습니다.") from None


# ---------------------------------------------------------------- a busy guest

def spin(workload) -> None:
    """Start a CPU-bound shell loop inside a VM or container (at most one; it runs until stopped)."""
    workload.guest(f"[ -f {SPIN_PIDFILE} ] && kill -0 $(cat {SPIN_PIDFILE}) 2>/dev/null || "
                   f"{{ (while :; do :; done) </dev/null >/dev/null 2>&1 & echo $! > {SPIN_PIDFILE}; }}",
                   check=True)


def stop_spin(workload) -> None:
    """Stop the workload's busy loop, if there is one."""
    workload.guest(f"[ -f {SPIN_PIDFILE} ] && kill $(cat {SPIN_PIDFILE}) 2>/dev/null; rm -f {SPIN_PIDFILE}")


def spinning(workload) -> bool:
    """Whether the workload's busy loop runs."""
    return workload.guest(f"[ -f {SPIN_PIDFILE} ] && kill -0 $(cat {SPIN_PIDFILE}) 2>/dev/null "
                          "&& echo yes || echo no").strip() == "yes"


# ---------------------------------------------------------------- measuring CPU time

@dataclass
class CpuSample:
    """CPU use over one interval: each VM's rate (CPU-seconds per second) and each host
    core's busy fraction (0–1, everything on the host)."""

    t: float  # seconds since the meter started, at the end of the interval
    seconds: float
    rates: dict[str, float]
    cores: dict[int, float]


@dataclass
class CpuMeasurement:
    """CPU rates over a whole window, with the samples taken along the way.

    `others` is how many cores' worth of CPU everything else on the host used meanwhile
    (this process, other programs): it explains rates lower than expected.
    """

    seconds: float
    rates: dict[str, float]
    cores: dict[int, float]
    affinity: dict[str, list[int]]
    samples: list[CpuSample] = field(default_factory=list, repr=False)

    @property
    def others(self) -> float:
        return max(sum(self.cores.values()) - sum(self.rates.values()), 0.0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["others"] = self.others
        return data


def _busy(times) -> float:
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


class CpuMeter:
    """Samples how much CPU time the vCPU threads of some VMs get, keyed by label.

    vms: {label: VM}. `sample()` returns the rates since the previous sample (for live
    plots); `measure(seconds)` the rates over a whole window.
    """

    def __init__(self, vms: Mapping[str, Any]):
        if not isinstance(vms, Mapping) or not vms:
            raise InvalidInput("CpuMeter에는 {이름표(label): VM} 사전(dict)을 주세요.", "예: CpuMeter({'A': vm_a})")
        self.vms = dict(vms)
        self.threads = {label: vcpu_threads(vm) for label, vm in self.vms.items()}
        self.reset()

    def _read(self) -> tuple[float, dict[str, float], list]:
        cpu = {label: sum(thread_cpu_seconds(t) for t in threads)
               for label, threads in self.threads.items()}
        return time.monotonic(), cpu, psutil.cpu_times(percpu=True)

    def reset(self) -> None:
        """Start counting from now."""
        self._start = self._last = self._read()

    @staticmethod
    def _between(first, last, t0: float) -> CpuSample:
        (t1, cpu1, cores1), (t2, cpu2, cores2) = first, last
        wall = max(t2 - t1, 1e-9)
        rates = {label: (cpu2[label] - cpu1[label]) / wall for label in cpu2}
        cores = {i: min(max((_busy(b) - _busy(a)) / wall, 0.0), 1.0)
                 for i, (a, b) in enumerate(zip(cores1, cores2))}
        return CpuSample(t=t2 - t0, seconds=wall, rates=rates, cores=cores)

    def sample(self) -> CpuSample:
        """Rates since the previous sample (or `reset`)."""
        now = self._read()
        sample = self._between(self._last, now, self._start[0])
        self._last = now
        return sample

    def affinity(self) -> dict[str, list[int]]:
        """Each VM's vCPU threads' allowed host cores (their union)."""
        return {label: sorted(set().union(*(affinity(t) for t in threads)))
                for label, threads in self.threads.items()}

    def measure(self, seconds: float = 3.0, interval: float = 0.5,
                on_sample: Callable[[CpuSample], None] | None = None,
                stop: threading.Event | None = None) -> CpuMeasurement:
        """Rates over the next `seconds` (sampled every `interval`; `stop` ends it early)."""
        if not 0 < seconds <= 600 or not 0 < interval <= seconds:
            raise InvalidInput(f"측정 시간 {seconds!r}초, 간격 {interval!r}초는 쓸 수 없습니다.",
                               "0 < 간격(interval) ≤ 측정 시간(seconds) ≤ 600 이어야 합니다.")
        self.reset()
        end = self._start[0] + seconds
        samples = []
        stop = stop or threading.Event()
        while not stop.is_set():
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            stop.wait(min(interval, remaining))
            samples.append(self.sample())
            if on_sample is not None:
                on_sample(samples[-1])
        whole = self._between(self._start, self._last, self._start[0])
        return CpuMeasurement(seconds=whole.seconds, rates=whole.rates, cores=whole.cores,
                              affinity=self.affinity(), samples=samples)
