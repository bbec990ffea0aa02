"""Memory guard: refuse to start a VM or container the host cannot hold, before anything starts.

`VM.start`, `Container.start`, and `compare`/`density` for their whole batch ask this
module first. When the answer is no, they raise `InsufficientMemory` with a Korean message
that says what was asked, what the host has, and which VMs and containers are running;
no QEMU process, container or runtime directory exists at that point.

The arithmetic (all in bytes):

    available = psutil.virtual_memory().available
    committed = Σ over this process's VMs and containers that are starting or running
                  of max(0, request − resident now)
    refuse when  available − committed − request < reserve
    fits      = (available − committed − reserve) // request-of-one      (for batches)

- `available` is the kernel's MemAvailable: free memory plus what can be reclaimed
  (page cache). It is already net of everything running on the host, vmkit's own
  workloads included, so what they *use now* is not subtracted a second time.
- `committed` is what this process's workloads were promised but have not touched yet:
  a VM that just booted has touched about 90 MiB of its guest RAM and may touch the rest
  later; one still starting (another thread, `density`'s parallel starts) has touched
  almost nothing. Without it, eight VMs started at once would each see the same
  `available` and all be let in. A VM's resident size is its QEMU process's RSS; a running
  container counts as fully resident (its small cost is paid once it has started).
- `request` is an estimate of what one workload will cost the host:
  * VM: guest RAM + `QEMU_OVERHEAD` (100 MiB). The guest may touch all of its RAM, and
    nothing on the host stops it (there is no swap here), so the whole guest RAM counts.
    Outside guest RAM, QEMU 7.2 under TCG was measured at 126 MiB RSS and 91–124 MiB PSS
    (the TCG translation buffer ~38 MiB, the mapped kernel image ~48 MiB, heap and
    libraries); the kernel image and libraries are page cache shared by every VM, so a
    crowd of VMs pays less each (16 × 128 MiB VMs at once: 153 MiB PSS each, guest
    included). 100 MiB sits in that range; with KVM there is no translation buffer.
  * Container: `CONTAINER_COST` (8 MiB), *not* its memory limit. A limit is a ceiling the
    kernel enforces inside the container's cgroup (a container that reaches it is
    OOM-killed there), not memory the container holds: the BusyBox agent uses about
    0.5 MiB of cgroup memory, its containerd shim about 3 MiB PSS, and the host's
    available memory was measured to drop by about 3 MiB per running container. 8 MiB
    leaves a margin of more than two. Counting limits would refuse `density` of
    200 × 64 MiB containers (12.5 GiB of limits) that really costs about 0.6 GiB.
- `reserve` is what must stay available for everything else (the notebook, the browser,
  the Docker Engine, the desktop): `DEFAULT_RESERVE` (1 GiB), or the module setting
  `RESERVE`, or the environment variable `VMKIT_MEMORY_RESERVE` ("512M", "2G", "0"),
  parsed with `units.parse_memory`; a function's `reserve=` argument overrides all three.

A guest RAM bigger than the host's whole memory is already refused when the VM (or the
container's limit) is made, by `units.parse_memory`; this guard adds the dynamic check of
what is free *now*. `compare` runs one workload at a time, so its peak is the largest
single request among its kinds; `density` starts `count` at once, so it needs
`count × request` up front, and its refusal says how many would fit.

With the numbers of `make bench` on this project's CI host: 16 VMs × (128 + 100) MiB
= 3.6 GiB and 200 containers × 8 MiB = 1.6 GiB, each plus the 1 GiB reserve.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import psutil

from ..errors import InsufficientMemory, InvalidInput
from ..units import _SIZE, format_bytes, parse_memory
from ..workload import live

MiB = 1 << 20
GiB = 1 << 30
#: The environment variable that sets the reserve ("512M", "2G", "0").
ENV = "VMKIT_MEMORY_RESERVE"
#: Host memory left available for everything else when nothing else is configured.
DEFAULT_RESERVE = GiB
#: Module setting: the reserve ('512M', bytes, 0), overriding the environment when not None.
RESERVE: int | str | None = None
#: QEMU's own memory outside guest RAM (measured 91–124 MiB PSS under TCG; see above).
QEMU_OVERHEAD = 100 * MiB
#: What one running container costs the host (measured about 3 MiB; see above).
CONTAINER_COST = 8 * MiB
#: Names listed per group in a refusal before "외 N개".
LIST_NAMES = 4
#: At most this many other processes' containers are inspected for their memory.
INSPECT_MAX = 50

_lock = threading.Lock()
#: Workloads admitted and still inside their start() (by id: workloads need not be hashable).
_starting: dict[int, Any] = {}


# ---------------------------------------------------------------- the reserve

def _is_zero(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return value == 0
    match = _SIZE.match(str(value))
    return bool(match) and float(match.group(1)) == 0


def parse_reserve(value, source: str | None = None) -> int:
    """Bytes from '512M', '2G', a number of MiB, or 0; a Korean InvalidInput otherwise."""
    what = "남겨 둘 여유 메모리(reserve)" if source is None else f"{source}의 남겨 둘 여유 메모리(reserve)"
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"{what} {value!r}는 쓸 수 없습니다.", _RESERVE_HINT)
    if _is_zero(value):
        return 0
    try:
        return parse_memory(value, what=what)
    except InvalidInput as exc:
        raise InvalidInput(exc.args[0], _RESERVE_HINT) from None


_RESERVE_HINT = ("0 이상의 크기를 숫자와 단위로 적어 주세요. 예: '512M', '2G', 여유 없이 '0' "
                 "(단위가 없으면 MiB)")


def reserve_bytes(value=None) -> int:
    """The reserve in bytes: `value`, else `RESERVE`, else $VMKIT_MEMORY_RESERVE, else 1 GiB."""
    if value is not None:
        return parse_reserve(value)
    if RESERVE is not None:
        return parse_reserve(RESERVE, "vmkit.host.memguard.RESERVE")
    env = os.environ.get(ENV, "").strip()
    if env:
        return parse_reserve(env, f"환경 변수(environment variable) {ENV}")
    return DEFAULT_RESERVE


# ---------------------------------------------------------------- requests

def vm_request(memory_bytes: int) -> int:
    """What one VM may cost the host: its guest RAM plus QEMU's own memory."""
    return int(memory_bytes) + QEMU_OVERHEAD


def container_request(limit_bytes: int | None = None) -> int:
    """What one container costs the host: `CONTAINER_COST`; its limit is a ceiling, not a cost."""
    return CONTAINER_COST


def request_for(kind: str, memory_bytes: int) -> int:
    """The request of one workload of `kind` ('vm', 'vm-restore', 'container')."""
    return vm_request(memory_bytes) if kind.startswith("vm") else container_request(memory_bytes)


def _request_detail(kind: str, memory_bytes: int) -> str:
    if kind.startswith("vm"):
        return (f"게스트 메모리(guest RAM) {format_bytes(memory_bytes)} + QEMU 오버헤드(overhead) "
                f"약 {format_bytes(QEMU_OVERHEAD)}")
    return (f"컨테이너가 실제로 쓰는 양의 추정치(estimate); 메모리 한도(memory limit) "
            f"{format_bytes(memory_bytes)}는 상한일 뿐 미리 잡지 않습니다")


# ---------------------------------------------------------------- the arithmetic (pure)

@dataclass(frozen=True)
class Running:
    """One running (or starting) VM or container, as a refusal lists it.

    kind: 'vm' (a QEMU process) or 'container'; resident_bytes: QEMU's RSS, or the
    container's cgroup memory; ours: started by this process; headroom_bytes: what it was
    promised but has not touched yet (counted against `available`; 0 unless ours).
    """

    kind: str
    name: str
    resident_bytes: int = 0
    ours: bool = True
    headroom_bytes: int = 0
    starting: bool = False


@dataclass(frozen=True)
class Assessment:
    """The guard's arithmetic for one request (see the module docstring)."""

    available: int
    request: int
    reserve: int
    committed: int = 0

    @property
    def spare(self) -> int:
        """What can still be handed out: available − committed − reserve."""
        return self.available - self.committed - self.reserve

    @property
    def ok(self) -> bool:
        """available − committed − request ≥ reserve."""
        return self.request <= self.spare

    def fits(self, each: int) -> int:
        """How many requests of `each` bytes fit now."""
        return max(0, self.spare // each) if each > 0 else 0


def assess(available: int, request: int, reserve: int,
           running: Iterable[Running] = ()) -> Assessment:
    """The guard's decision from its inputs alone (injectable for tests)."""
    committed = sum(max(0, r.headroom_bytes) for r in running if r.ours)
    return Assessment(int(available), int(request), int(reserve), committed)


def _names(items: Sequence[Running], show_each: bool) -> str:
    shown = []
    for item in items[:LIST_NAMES]:
        label = f"{item.name} {format_bytes(item.resident_bytes)}" if show_each else item.name
        shown.append(label + (" (시작 중)" if item.starting else ""))
    more = len(items) - LIST_NAMES
    return ", ".join(shown) + (f" 외 {more}개" if more > 0 else "")


def describe_running(running: Sequence[Running]) -> str:
    """'실행 중: ...' — this process's and the host's VMs and vmkit containers, with memory."""
    groups = [
        ([r for r in running if r.kind == "vm" and r.ours], "이 프로세스의 VM", "대", "QEMU RSS 합"),
        ([r for r in running if r.kind == "vm" and not r.ours], "호스트의 다른 QEMU 프로세스", "개", "RSS 합"),
        ([r for r in running if r.kind == "container" and r.ours], "이 프로세스의 컨테이너", "개", "메모리 사용 합"),
        ([r for r in running if r.kind == "container" and not r.ours], "다른 vmkit 컨테이너", "개", "메모리 사용 합"),
    ]
    parts = []
    for items, label, counter, total_label in groups:
        if items:
            total = sum(r.resident_bytes for r in items)
            parts.append(f"{label} {len(items)}{counter} ({total_label} {format_bytes(total)}: "
                         f"{_names(items, show_each=True)})")
    if not parts:
        return "실행 중인 vmkit VM·컨테이너와 QEMU 프로세스는 없습니다: 메모리는 다른 프로그램이 쓰고 있습니다."
    return "실행 중: " + ", ".join(parts) + "."


def refusal(assessment: Assessment, running: Sequence[Running], subject: str,
            detail: str = "", count: int = 1, each: int | None = None) -> InsufficientMemory:
    """The Korean error for a refused request (pure: everything comes in as arguments).

    subject: what was not started ("VM 'vm-1'", "밀도(density) 측정"); detail: how the
    request was made up; count/each: a batch of `count` requests of `each` bytes, whose
    message also says how many would fit now.
    """
    a = assessment
    if count > 1 and each:
        asked = f"{count}개 × {format_bytes(each)} = {format_bytes(a.request)}"
    else:
        asked = format_bytes(a.request)
    if detail:
        asked += f" ({detail})"
    avail = f"사용 가능(available) {format_bytes(a.available)}"
    if a.committed:
        avail += (f" (이미 시작한 VM·컨테이너가 앞으로 더 쓸 수 있는 {format_bytes(a.committed)}를 빼면 "
                  f"{format_bytes(a.available - a.committed)})")
    text = (f"메모리(memory)가 부족해 {subject}을(를) 시작하지 않았습니다: 요청 {asked}, {avail}, "
            f"남겨 둘 여유(reserve) {format_bytes(a.reserve)}.")
    if count > 1 and each:
        text += f" 지금은 최대 {a.fits(each)}개까지 띄울 수 있습니다."
    text += " " + describe_running(running)
    text += " 쓰지 않는 VM과 컨테이너를 끄거나(stop) 메모리를 줄이세요."
    hint = (f"남겨 둘 여유(reserve)는 환경 변수(environment variable) {ENV}로 바꿀 수 있습니다 "
            f"(예: {ENV}=512M, 기본값 {format_bytes(DEFAULT_RESERVE)}).")
    return InsufficientMemory(text, hint)


# ---------------------------------------------------------------- what is running

def _rss(pid: int | None) -> int:
    if not pid:
        return 0
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0


def _container_memory(container) -> int:
    cgroup = getattr(container, "_cgroup", None)
    if cgroup is None:
        return 0
    try:
        return cgroup.memory()[0]
    except (OSError, ValueError):
        return 0


def _ours(detail: bool = False) -> list[Running]:
    """This process's VMs and containers that are starting or running (cheap unless `detail`)."""
    found: dict[int, tuple[Any, bool]] = {id(w): (w, True) for w in _starting.values()}
    for workload in live():
        found.setdefault(id(workload), (workload, False))
    result = []
    for workload, starting in found.values():
        request = request_for(workload.kind, workload.memory_bytes)
        if workload.kind == "vm":
            resident = _rss(workload.pid)
            headroom = max(0, request - resident)
        else:
            resident = _container_memory(workload) if detail else 0
            headroom = request if starting else 0
        result.append(Running(workload.kind, workload.name, resident, True, headroom,
                              starting=starting))
    return result


def _qemu_name(cmdline: list[str], pid: int) -> str:
    for flag, value in zip(cmdline, cmdline[1:]):
        if flag == "-name":
            return value.split(",")[0].removeprefix("guest=")
    return f"pid {pid}"


def _other_qemus(exclude: set[int]) -> list[Running]:
    """QEMU processes on the host that this process did not start."""
    found = []
    for proc in psutil.process_iter(["name"]):
        try:
            if not (proc.info["name"] or "").startswith("qemu-system") or proc.pid in exclude \
                    or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            found.append(Running("vm", _qemu_name(proc.cmdline(), proc.pid),
                                 proc.memory_info().rss, ours=False))
        except psutil.Error:
            pass
    return found


#: Who can list the workloads of other processes on this host, by kind: `lister(exclude)`
#: returns `Running` entries. The container side registers its engine's listing here (the
#: guard imports no engine); QEMU processes are found from the process table.
_foreign_listers: dict[str, Callable[[set], list[Running]]] = {}


def register_foreign(kind: str, lister: Callable[[set], list[Running]]) -> None:
    """Let refusals name the running `kind` workloads that other processes started."""
    _foreign_listers[kind] = lister


def running_workloads() -> list[Running]:
    """Everything a refusal names: this process's workloads, other QEMUs, other vmkit containers."""
    with _lock:
        ours = _ours(detail=True)
    mine = live() + list(_starting.values())
    pids = {w.pid for w in mine if w.kind == "vm" and w.pid}
    ids = {w.id for w in mine if w.kind == "container" and w.id}
    others = _other_qemus(pids)
    for kind, lister in list(_foreign_listers.items()):
        try:
            others += lister(ids if kind == "container" else pids)
        except Exception:  # no engine answers: the refusal names what it can
            pass
    return ours + others


# ---------------------------------------------------------------- the checks

def _assess_now(request: int, reserve) -> Assessment:
    reserve = reserve_bytes(reserve)
    return assess(psutil.virtual_memory().available, request, reserve, _ours())


def fits(request: int, reserve=None) -> bool:
    """Whether `request` more bytes fit now (no error, nothing recorded)."""
    with _lock:
        return _assess_now(request, reserve).ok


def _subject(workload) -> str:
    return f"VM '{workload.name}'" if workload.kind == "vm" else f"컨테이너(container) '{workload.name}'"


@contextlib.contextmanager
def admit(workload, reserve=None) -> Iterator[Assessment]:
    """Let `workload` start only if it fits; it counts as committed until the block ends.

    Raises InsufficientMemory (nothing started) when it does not fit. Use around the
    whole start: once started, a running workload is counted through `running()`.
    """
    request = request_for(workload.kind, workload.memory_bytes)
    with _lock:
        assessment = _assess_now(request, reserve)
        if assessment.ok:
            _starting[id(workload)] = workload
    if not assessment.ok:
        raise refusal(assessment, running_workloads(), _subject(workload),
                      _request_detail(workload.kind, workload.memory_bytes))
    try:
        yield assessment
    finally:
        with _lock:
            _starting.pop(id(workload), None)


def check_batch(kind: str, count: int, memory_bytes: int, reserve=None) -> Assessment:
    """`density`: `count` workloads of `kind` at once must fit, or none is started."""
    each = request_for(kind, memory_bytes)
    with _lock:
        assessment = _assess_now(each * count, reserve)
    if not assessment.ok:
        what = "VM" if kind.startswith("vm") else "컨테이너"
        raise refusal(assessment, running_workloads(), f"밀도(density) 측정 ({what} {count}개)",
                      f"하나당: {_request_detail(kind, memory_bytes)}", count=count, each=each)
    return assessment


def check_peak(kinds: Iterable[str], memory_bytes: int, reserve=None) -> Assessment:
    """`compare`: its kinds run one at a time, so the largest single request must fit."""
    kind = max(kinds, key=lambda k: request_for(k, memory_bytes))
    with _lock:
        assessment = _assess_now(request_for(kind, memory_bytes), reserve)
    if not assessment.ok:
        raise refusal(assessment, running_workloads(), "비교(compare)",
                      f"한 번에 하나씩 실행하며 가장 큰 것: {_request_detail(kind, memory_bytes)}")
    return assessment
