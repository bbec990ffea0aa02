"""A container's isolation and limits, made visible on a real container.

Source 1.3 calls a container a set of processes kept apart from the rest of the system,
which may use only the resources it asked for. Each function here shows one part of that:

- `namespaces(container)`: what its processes see (PID 1, `ps`, hostname, only `lo`)
  against what the host sees of the very same processes (host pids, namespace ids);
- `cpu_rate` / `cpu_quota_rates`: CPU-seconds per wall second of a busy loop under a CPU
  quota (the scheduler's count for the container's processes);
- `fork_probe`: a fork loop against the pids limit;
- `allocate` / `oom_experiment`: memory taken step by step until a kernel kills the taker
  (the host's kernel at a container's cgroup limit; a VM's own kernel inside the VM);
- `memory_view`: the memory a workload sees inside and what bounds it.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import psutil

from ..container import limits as container_limits
from ..errors import InvalidInput, WorkloadError
from ..host import sched
from ..units import format_bytes, parse_memory

MiB = 1 << 20

#: Namespace kinds, with what each one keeps apart (Korean, for tables).
NAMESPACES = {
    "pid": "프로세스 번호(PID)",
    "net": "네트워크 인터페이스(network)",
    "uts": "호스트 이름(hostname)",
    "mnt": "마운트(mount)와 파일 시스템 트리",
    "ipc": "프로세스 간 통신(IPC)",
    "user": "사용자 번호(UID/GID)",
    "cgroup": "cgroup 트리의 보기",
    "time": "부팅 시계(time)",
}
#: Workload kinds as the lab's tables and plots name them.
KIND_LABELS = {"vm": "VM (QEMU)", "container": "컨테이너 (Docker)"}
#: The namespaces every container runtime gives a container of its own.
CORE_NAMESPACES = ("pid", "net", "uts", "mnt", "ipc")
#: A killed process's exit status in the shell: 128 + SIGKILL.
KILLED = 137

_INSIDE = (
    "echo @@ps; ps -o pid,ppid,comm; echo @@hostname; hostname; echo @@net; ls /sys/class/net; "
    "echo @@ns; for n in {names}; do echo $n $(readlink /proc/1/ns/$n); done"
)


def _require_running(workload) -> None:
    if not getattr(workload, "running", False):
        raise WorkloadError(f"'{getattr(workload, 'name', workload)}'이(가) 실행 중이 아닙니다.",
                            "먼저 start() 하거나 `with` 블록 안에서 부르세요.")


def _check_seconds(value, what: str, maximum: float = 600.0) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} {value!r}는 숫자가 아닙니다.") from None
    if not 0 < seconds <= maximum:
        raise InvalidInput(f"{what}은(는) 0보다 크고 {maximum:g}초 이하여야 합니다 (받은 값: {value!r}).")
    return seconds


def _sections(text: str) -> dict[str, list[str]]:
    """Output split at '@@name' lines: {name: lines}."""
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@@"):
            current = found.setdefault(line[2:].strip(), [])
        elif current is not None and line.strip():
            current.append(line.rstrip())
    return found


# ---------------------------------------------------------------- namespaces

@dataclass
class NamespaceView:
    """One container seen from inside (its `ps`, hostname, interfaces) and from the host.

    pid_map: (pid inside, host pid, command) for each process of the container, from the
    kernel's own record (NSpid in /proc/<pid>/status). links: for each namespace kind,
    (the container's PID 1 seen inside, the same process seen from the host, this Python
    process) — namespace ids like 'pid:[4026532180]'; None where it can't be read.
    """

    host_pid: int
    inside_processes: list[dict[str, Any]]
    pid_map: list[tuple[int, int, str]]
    host_process: dict[str, Any]
    host_process_count: int
    hostname_inside: str
    hostname_host: str
    interfaces_inside: list[str]
    interfaces_host: list[str]
    links: dict[str, tuple[str | None, str | None, str | None]]

    @property
    def separate(self) -> list[str]:
        """Namespace kinds in which the container differs from this Python process."""
        return [n for n, (inside, host, ours) in self.links.items() if (host or inside) != ours]

    @property
    def shared(self) -> list[str]:
        """Namespace kinds the container shares with this Python process (the host's)."""
        return [n for n in self.links if n not in self.separate]

    def inside_pid_of(self, host_pid: int) -> int | None:
        """The pid the container's processes see for host process `host_pid`."""
        return next((inside for inside, host, _ in self.pid_map if host == host_pid), None)

    def rows(self) -> list[dict[str, Any]]:
        """One row per namespace kind (for a table)."""
        return [{"namespace": name, "what": NAMESPACES.get(name, name), "container": host or inside,
                 "host": ours, "separate": name in self.separate}
                for name, (inside, host, ours) in self.links.items()]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(separate=self.separate, shared=self.shared)
        return data


def nspid(pid: int) -> list[int]:
    """A host process's pid in each PID namespace it is in, outermost first (NSpid)."""
    try:
        with open(f"/proc/{pid}/status") as stream:
            for line in stream:
                if line.startswith("NSpid:"):
                    return [int(part) for part in line.split()[1:]]
    except OSError:
        pass
    return []


def _ns_links(pid: int | str, names) -> dict[str, str | None]:
    links = {}
    for name in names:
        try:
            links[name] = os.readlink(f"/proc/{pid}/ns/{name}")
        except OSError:  # gone, or not ours to read (needs root for another user's process)
            links[name] = None
    return links


def _process_info(pid: int) -> dict[str, Any]:
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            parent = proc.parent()
            return {"pid": pid, "name": proc.name(), "cmdline": proc.cmdline(), "ppid": proc.ppid(),
                    "parent": parent.name() if parent else None, "user": proc.username(),
                    "in_host_table": pid in psutil.pids()}
    except psutil.Error:
        return {"pid": pid, "in_host_table": False}


def namespaces(container) -> NamespaceView:
    """The container's processes seen from inside (one exec) and from the host (/proc)."""
    _require_running(container)
    names = [n for n in NAMESPACES if os.path.exists(f"/proc/self/ns/{n}")]
    sections = _sections(container.guest(_INSIDE.format(names=" ".join(names)), check=True))
    processes = []
    for line in sections.get("ps", [])[1:]:  # after the header
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0].isdigit():
            processes.append({"pid": int(parts[0]), "ppid": int(parts[1]), "command": parts[2]})
    inside_links = dict(line.split(" ", 1) if " " in line else (line, None)
                        for line in sections.get("ns", []))
    host_pid = container.host_pid
    host_links = _ns_links(host_pid, names)
    our_links = _ns_links("self", names)
    pid_map = []
    for pid in container.host_pids():
        chain = nspid(pid)
        if chain:
            pid_map.append((chain[-1], pid, _process_info(pid).get("name", "?")))
    try:
        host_ifaces = sorted(os.listdir("/sys/class/net"))
    except OSError:
        host_ifaces = sorted(psutil.net_if_addrs())
    return NamespaceView(
        host_pid=host_pid, inside_processes=processes, pid_map=sorted(pid_map),
        host_process=_process_info(host_pid), host_process_count=len(psutil.pids()),
        hostname_inside=(sections.get("hostname") or [""])[0].strip(),
        hostname_host=socket.gethostname(), interfaces_inside=sorted(sections.get("net", [])),
        interfaces_host=host_ifaces,
        links={n: (inside_links.get(n), host_links[n], our_links[n]) for n in names})


# ---------------------------------------------------------------- CPU quota

@dataclass
class CpuSample:
    """A busy loop's CPU time over one window: `rate` CPU-seconds per wall second."""

    quota: float
    cpu_s: float
    wall_s: float
    round: int = 0

    @property
    def rate(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rate": self.rate}


def process_cpu_seconds(pids) -> dict[int, float]:
    """{pid: CPU seconds it has run} from the scheduler's nanosecond count (/proc/<pid>/schedstat).

    Precise, unlike cgroup v1's cpuacct.usage_user/usage_sys, which are sampled at timer
    ticks and overstate a throttled loop by up to a quarter. Vanished processes are skipped.
    """
    found = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/schedstat") as stream:
                found[pid] = int(stream.read().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            pass
    return found


def cpu_rate(container, seconds: float = 1.0, stop: threading.Event | None = None,
             round: int = 0) -> CpuSample:
    """Run a one-thread busy loop in the container for `seconds`; its CPU-seconds per wall second.

    CPU time is summed over the container's processes (its cgroup's `host_pids()`) that ran
    through the whole window: the busy loop, and the idle agent.
    """
    seconds = _check_seconds(seconds, "측정 시간(seconds)", 60)
    _require_running(container)
    stop = stop or threading.Event()
    sched.spin(container)
    try:
        stop.wait(0.1)  # let the loop get going
        before, t0 = process_cpu_seconds(container.host_pids()), time.monotonic()
        stop.wait(seconds)
        after, t1 = process_cpu_seconds(before), time.monotonic()
    finally:
        if container.running:
            sched.stop_spin(container)
    cpu = sum(after[pid] - before[pid] for pid in after)
    return CpuSample(quota=container.cpus, cpu_s=max(cpu, 0.0), wall_s=t1 - t0, round=round)


@dataclass
class CpuRates:
    """Busy-loop rates under several CPU quotas, measured in alternating rounds.

    `best(quota)` is the highest rate seen under that quota: a quota is a ceiling, and the
    best round is the one in which the rest of the host (other programs) took least.
    """

    quotas: tuple[float, ...]
    samples: list[CpuSample] = field(default_factory=list)
    cancelled: bool = False
    #: Whether the engine applied the quotas (not a rootless engine on cgroup v1); None: unknown.
    applied: bool | None = None

    def rates(self, quota: float) -> list[float]:
        return [s.rate for s in self.samples if abs(s.quota - quota) < 1e-9]

    def best(self, quota: float) -> float | None:
        rates = self.rates(quota)
        return max(rates) if rates else None

    def ratio(self, low: float, high: float) -> float | None:
        """best(low) / best(high): about low/high when the quota is what holds the loop back."""
        a, b = self.best(low), self.best(high)
        return a / b if a is not None and b else None

    def records(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.samples]


def cpu_quota_rates(quotas=(1.0, 0.5), seconds: float = 1.0, rounds: int = 2, max_rounds: int = 30,
                    budget_s: float = 60.0, target: float = 0.85, memory: str | int = "32M",
                    on_sample: Callable[[CpuSample], None] | None = None,
                    stop: threading.Event | None = None) -> CpuRates:
    """One container per quota; a busy loop measured in each, in turn, round after round.

    At least `rounds` rounds; more (up to `max_rounds`, within `budget_s` seconds) while the
    largest quota's best rate is below `target` of what one thread can use: a busy host
    held the loop back, and a quota only shows when there is CPU to spare.
    Every container is stopped on the way out.
    """
    from ..container.container import Container

    quotas = tuple(quotas)
    if not quotas:
        raise InvalidInput("CPU 할당량(quota)을 하나 이상 주세요.", "예: quotas=(1.0, 0.5)")
    if not 1 <= int(rounds) <= int(max_rounds) <= 100:
        raise InvalidInput(f"반복 횟수 rounds={rounds!r}, max_rounds={max_rounds!r}는 쓸 수 없습니다.",
                           "1 ≤ rounds ≤ max_rounds ≤ 100 이어야 합니다.")
    _check_seconds(seconds, "측정 시간(seconds)", 60)
    budget_s = _check_seconds(budget_s, "전체 시간 예산(budget_s)")
    boxes = [Container(memory=memory, cpus=q) for q in quotas]  # checks every quota first
    result = CpuRates(quotas=tuple(box.cpus for box in boxes))
    stop = stop or threading.Event()
    top = max(result.quotas)
    with ExitStack() as stack:
        for box in boxes:
            stack.callback(box.stop)
            box.start()
        verdict = container_limits.combined(box.limits_enforced for box in boxes)
        result.applied = None if verdict is None else verdict["cpus"]
        deadline = time.monotonic() + budget_s
        for round_ in range(int(max_rounds)):
            for box in boxes:
                if stop.is_set():
                    result.cancelled = True
                    return result
                sample = cpu_rate(box, seconds, stop, round_)
                result.samples.append(sample)
                if on_sample is not None:
                    on_sample(sample)
            if round_ + 1 >= rounds and ((result.best(top) or 0) >= target * min(top, 1.0)
                                         or time.monotonic() > deadline):
                break
    return result


# ---------------------------------------------------------------- pids limit

@dataclass
class ForkProbe:
    """A fork loop against the pids limit: how far it got and what stopped it.

    started: background processes the loop started; peak_pids: the cgroup's process count
    at its highest, read inside the container; error: the shell's message when fork failed.
    """

    limit: int | None
    attempts: int
    started: int
    peak_pids: int | None
    error: str | None
    rc: int | None

    @property
    def stopped_by_limit(self) -> bool:
        return self.error is not None and self.started < self.attempts

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stopped_by_limit": self.stopped_by_limit}


_FORK_LOOP = (
    "echo pgid $$; f=/sys/fs/cgroup/pids/pids.current; [ -r $f ] || f=/sys/fs/cgroup/pids.current; "
    "i=0; while [ $i -lt {n} ]; do sleep 60 & i=$((i+1)); cur=; read cur < $f; echo started $i $cur; done; "
    "echo finished"
)


def fork_probe(container, attempts: int | None = None, timeout: float = 30.0) -> ForkProbe:
    """Start `attempts` background sleeps in one shell (default: the pids limit + 8), then clean up.

    Only shell builtins run between forks, so the loop itself needs no extra process.
    """
    _require_running(container)
    limit = getattr(container, "pids_limit", None)
    if attempts is None:
        attempts = (limit or 64) + 8
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 10_000:
        raise InvalidInput(f"시도 횟수(attempts) {attempts!r}는 1에서 10000 사이의 정수여야 합니다.")
    out = container.guest(_FORK_LOOP.format(n=attempts), timeout=timeout)
    rc = container.last_rc
    started, peak, pgid, error = 0, None, None, None
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == ["pgid"] and len(parts) == 2 and parts[1].isdigit():
            pgid = int(parts[1])
        elif parts[:1] == ["started"] and len(parts) >= 2 and parts[1].isdigit():
            started = int(parts[1])
            if len(parts) == 3 and parts[2].isdigit():
                peak = max(peak or 0, int(parts[2]))
        elif "fork" in line and error is None:
            error = line.strip()
    if pgid and container.running:  # the sleeps are still in the loop's process group
        container.guest(f"kill -KILL -{pgid} 2>/dev/null; true")
    return ForkProbe(limit=limit, attempts=attempts, started=started, peak_pids=peak, error=error, rc=rc)


# ---------------------------------------------------------------- memory

@dataclass
class Allocation:
    """One `allocate`: whether the taker was killed (exit 137), and how long it ran."""

    rc: int | None
    seconds: float
    output: str

    @property
    def killed(self) -> bool:
        return self.rc == KILLED


def _alloc_command(total: int, chunk: int, pause: float) -> str:
    """Shell: `tail` keeps a newline-free stream whole in memory; it is the OOM killer's pick.

    Only the subshell asks to be killed first (oom_score_adj 1000): the shell that reports its
    status keeps the default, so the report comes even when the kernel picks the subshell's
    own `sh` instead of `tail` (the report used to be lost with it, now and then).
    """
    if pause > 0:
        steps = -(-total // chunk)
        source = (f"(i=0; while [ $i -lt {steps} ] && head -c {chunk} /dev/zero; "
                  f"do i=$((i+1)); sleep {pause:.3f}; done)")
    else:
        source = f"head -c {total} /dev/zero"
    return f"(echo 1000 > /proc/self/oom_score_adj; {source} | tail > /dev/null); echo rc=$?"


def allocate(workload, total: str | int = "256M", chunk: str | int = "1M", pause: float = 0.0,
             timeout: float = 60.0) -> Allocation:
    """Make a process in the workload (VM or container) take up to `total` bytes of memory.

    pause > 0 takes `chunk` bytes every `pause` seconds (a steady rate to watch), else all
    at once. The taker asks to be the OOM killer's first choice (oom_score_adj 1000), so
    the workload's own agent survives. Runs until the taker is killed or has it all.
    """
    _require_running(workload)
    total_b = parse_memory(total, what="할당할 메모리(total)")
    chunk_b = parse_memory(chunk, what="한 번에 할당할 크기(chunk)")
    try:
        pause = float(pause)
    except (TypeError, ValueError):
        raise InvalidInput(f"쉬는 시간(pause) {pause!r}는 숫자가 아닙니다.") from None
    if not 0 <= pause <= 10:
        raise InvalidInput(f"쉬는 시간(pause)은 0에서 10초 사이여야 합니다 (받은 값: {pause!r}).")
    began = time.monotonic()
    out = workload.guest(_alloc_command(total_b, chunk_b, pause), timeout=timeout)
    found = re.findall(r"rc=(\d+)", out)
    return Allocation(rc=int(found[-1]) if found else None, seconds=time.monotonic() - began,
                      output=out.strip())


@dataclass
class OomRun:
    """A container taking memory at a steady rate until the kernel kills the taker.

    samples: (seconds since the start, cgroup memory in use); oom_after_s: when the engine's
    OOM event came (None if none came); alive: the container still answered afterwards.
    """

    limit_bytes: int
    rate_bytes_s: int
    limit_applied: bool | None = None  # False on a rootless engine on cgroup v1: no OOM kill comes
    samples: list[tuple[float, int]] = field(default_factory=list)
    oom_after_s: float | None = None
    oom_event: dict | None = None
    allocation: Allocation | None = None
    alive: bool | None = None
    cancelled: bool = False
    error: str | None = None

    @property
    def peak_bytes(self) -> int:
        return max((b for _, b in self.samples), default=0)

    @property
    def killed(self) -> bool:
        return self.allocation is not None and self.allocation.killed

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "peak_bytes": self.peak_bytes, "killed": self.killed}


def oom_experiment(container, rate: str | int = "32M", interval: float = 0.2, timeout: float = 60.0,
                   on_update: Callable[[OomRun], None] | None = None,
                   stop: threading.Event | None = None) -> OomRun:
    """Take memory in the container at `rate` bytes per second, past its limit, until the OOM event.

    The memory in use is sampled from the cgroup every `interval` seconds; `on_update(run)`
    is called after each sample and when the OOM event arrives. `stop` ends the wait early
    (the caller then stops the container, which ends the taker too).
    """
    _require_running(container)
    rate_b = parse_memory(rate, what="할당 속도(rate, 초당)")
    interval = _check_seconds(interval, "측정 간격(interval)", 5)
    limit = container.memory_bytes
    chunk = MiB
    run = OomRun(limit_bytes=limit, rate_bytes_s=rate_b,
                 limit_applied=(container.limits_enforced or {}).get("memory"))
    stop = stop or threading.Event()
    box: dict[str, Any] = {}

    def take() -> None:
        try:
            box["allocation"] = allocate(container, total=4 * limit, chunk=chunk,
                                         pause=chunk / rate_b, timeout=timeout)
        except Exception as exc:  # the container was stopped under it, or ended
            box["error"] = str(exc)

    def update() -> None:
        if on_update is not None:
            on_update(run)

    began = time.monotonic()
    taker = threading.Thread(target=take, name="vmkit-oom-taker", daemon=True)
    taker.start()
    deadline = began + timeout
    while True:
        try:
            run.samples.append((time.monotonic() - began, container.usage(inside=False).mem_bytes or 0))
        except WorkloadError:
            pass
        update()
        event = container.wait_event("OOM", timeout=interval, since=began)
        if event is not None:
            run.oom_event, run.oom_after_s = event, max(event["time"] - began, 0.0)
            update()
            break
        if stop.is_set():
            run.cancelled = True
            break
        if not taker.is_alive():  # it ended without an event so far: give the event a moment
            event = container.wait_event("OOM", timeout=2.0, since=began)
            if event is not None:
                run.oom_event, run.oom_after_s = event, max(event["time"] - began, 0.0)
            break
        if time.monotonic() > deadline:
            break
    if not run.cancelled:
        taker.join(max(deadline - time.monotonic(), 5.0))
        run.samples.append((time.monotonic() - began, container.usage(inside=False).mem_bytes or 0))
        try:
            run.alive = container.guest("echo alive", timeout=5).strip() == "alive"
        except WorkloadError:
            run.alive = False
    run.allocation, run.error = box.get("allocation"), box.get("error")
    update()
    return run


@dataclass
class MemoryView:
    """The memory a workload sees (MemTotal inside) against what it asked for and what binds it.

    limit_bytes: the cgroup limit the workload sees (containers); None for a VM, whose RAM
    is its limit. limit_applied: False for a container whose engine dropped the limit.
    """

    kind: str
    request_bytes: int
    mem_total_bytes: int | None
    limit_bytes: int | None
    host_mem_total_bytes: int
    limit_applied: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> dict[str, str]:
        """The same in readable Korean units, for a table."""
        return {"종류": KIND_LABELS.get(self.kind, self.kind), "요청(request)": format_bytes(self.request_bytes),
                "안에서 본 MemTotal": format_bytes(self.mem_total_bytes or 0),
                "cgroup 한도(limit)": format_bytes(self.limit_bytes) if self.limit_bytes else
                container_limits.shown("없음 (RAM이 곧 한도)", self.limit_applied),
                "호스트 MemTotal": format_bytes(self.host_mem_total_bytes)}


def memory_view(workload) -> MemoryView:
    """What a running VM or container sees of memory, next to its request and the host's."""
    _require_running(workload)
    mem = workload.meminfo()
    guest = workload.trace.guest if workload.trace else {}
    return MemoryView(kind=workload.kind, request_bytes=workload.memory_bytes,
                      mem_total_bytes=mem.get("MemTotal"), limit_bytes=guest.get("mem_limit_bytes"),
                      host_mem_total_bytes=psutil.virtual_memory().total,
                      limit_applied=(getattr(workload, "limits_enforced", None) or {}).get("memory"))
