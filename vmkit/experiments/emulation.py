"""The cost of emulation: one CPU-bound BusyBox command, natively and in QEMU guests.

The same command (a shell arithmetic loop, or `sha256sum` over zeros) runs in a container
(a host process: the CPU runs its instructions directly), in a VM under TCG (QEMU
translates every guest instruction in software) and, where the host's KVM is usable, in
a VM under KVM (the CPU's virtualization extensions run the guest). Both sides run the
same BusyBox binary, so what differs is only how the instructions reach the CPU.

Times are taken on the host's monotonic clock around each command (a TCG guest's own
clock drifts), less the round trip of an empty command through the same channel
(`docker exec` for the container, the guest agent for a VM). Trials alternate between
the runners so that the drift of a shared machine hits all of them alike.

`hypervisor_view()` says what a guest (or the host) sees of being virtualized: the
`hypervisor` CPU flag in /proc/cpuinfo and the kernel's "Hypervisor detected" line.
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..errors import InvalidInput, MissingComponent, VmkitError
from ..units import parse_memory
from ..workload import Workload

#: Round trips of an empty command measured per runner; their median is subtracted.
ROUND_TRIPS = 5
#: The smallest time a measurement may show (a command faster than its round trip).
MIN_SECONDS = 0.001


@dataclass(frozen=True)
class Task:
    """A CPU-bound command of BusyBox's, scaled by `size` (in `unit`s)."""

    name: str
    label: str
    unit: str
    template: str
    scale: int
    default: int
    minimum: int
    maximum: int

    def command(self, size: int) -> str:
        """The shell command for `size` (checked by `check_size` first)."""
        return self.template.format(n=size * self.scale)


TASKS = {
    "loop": Task("loop", "셸 산술 반복(shell arithmetic loop)", "천 번",
                 "i=0; while [ $i -lt {n} ]; do i=$((i+1)); done; echo $i",
                 scale=1000, default=50, minimum=5, maximum=500),
    "sha256": Task("sha256", "sha256sum 해시(hash)", "MiB",
                   "head -c {n} /dev/zero | sha256sum", scale=1 << 20,
                   default=8, minimum=1, maximum=64),
}
RUNNERS = ("container", "vm-tcg", "vm-kvm")
RUNNER_LABELS = {"container": "컨테이너 (네이티브)", "vm-tcg": "VM (QEMU+TCG)",
                 "vm-kvm": "VM (QEMU+KVM)"}
RUNNER_COLORS = {"container": "#00798c", "vm-tcg": "#d1495b", "vm-kvm": "#edae49"}


def get_task(task: str | Task) -> Task:
    """The Task called `task`, or a Korean error naming the choices."""
    if isinstance(task, Task):
        return task
    try:
        return TASKS[str(task).strip().lower()]
    except KeyError:
        raise InvalidInput(f"작업(task) {task!r}은(는) 없습니다.",
                           f"쓸 수 있는 작업: {', '.join(TASKS)}") from None


def check_size(task: str | Task, size) -> int:
    """`size` as a whole number in the task's range (None: its default), else a Korean error."""
    spec = get_task(task)
    if size is None:
        return spec.default
    try:
        if isinstance(size, bool) or isinstance(size, float) and not size.is_integer():
            raise ValueError
        value = int(str(size).strip()) if isinstance(size, str) else int(size)
    except (TypeError, ValueError):
        raise InvalidInput(f"작업 크기(size) {size!r}는 정수가 아닙니다.",
                           f"{spec.minimum}~{spec.maximum} 사이의 정수({spec.unit})를 주세요.") from None
    if not spec.minimum <= value <= spec.maximum:
        raise InvalidInput(
            f"작업 크기(size) {value}는 {spec.label}에 쓸 수 없습니다: "
            f"{spec.minimum}~{spec.maximum} {spec.unit} 사이여야 합니다.",
            "너무 작으면 명령 왕복 시간에 묻히고, 너무 크면 TCG에서 오래 걸립니다.")
    return value


def check_trials(trials) -> int:
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise InvalidInput(f"시행 횟수(trials)는 1 이상의 정수여야 합니다 (받은 값: {trials!r}).")
    return trials


def resolve_runners(accels: str | Iterable[str] = "auto") -> tuple[str, ...]:
    """The runners to measure: the container and a VM per accelerator.

    'auto' means TCG always, and KVM too when the host probe found it usable;
    asking for 'kvm' where it is unusable fails before anything starts.
    """
    from ..vm.accel import kvm_status

    if isinstance(accels, str) and accels.strip().lower() == "auto":
        chosen = ["tcg"] + (["kvm"] if kvm_status()[0] else [])
    else:
        chosen = [str(a).strip().lower() for a in ([accels] if isinstance(accels, str) else accels)]
        unknown = [a for a in chosen if a not in ("tcg", "kvm")]
        if unknown or not chosen:
            raise InvalidInput(f"가속기(accelerator) {unknown or '(없음)'}는 알 수 없습니다.",
                               "'auto', 또는 'tcg'·'kvm'의 목록을 주세요.")
        if "kvm" in chosen:
            usable, reason = kvm_status()
            if not usable:
                raise MissingComponent(f"가속기(accelerator) 'kvm'을 요청했지만 — {reason}",
                                       "accels='auto'나 ['tcg']로 재세요.")
    return ("container", *(f"vm-{a}" for a in dict.fromkeys(chosen)))


def _make(runner: str, memory: int) -> Workload:
    from ..container.container import Container
    from ..vm.vm import VM

    if runner == "container":
        return Container(memory=memory)
    return VM(memory=memory, accel=runner.removeprefix("vm-"))


def round_trip(workload: Workload, times: int = ROUND_TRIPS) -> float:
    """Median seconds of an empty command through the workload's channel."""
    samples = []
    for _ in range(times):
        started = time.monotonic()
        workload.guest("true", check=True)
        samples.append(time.monotonic() - started)
    return statistics.median(samples)


def run_once(workload: Workload, runner: str, command: str, overhead: float,
             timeout: float) -> dict[str, Any]:
    """Run `command` once and time it on the host's clock; one record (without trial)."""
    started = time.monotonic()
    output = workload.guest(command, timeout=timeout, check=True)
    wall = time.monotonic() - started
    return {"runner": runner, "kind": workload.kind, "accel": getattr(workload, "accel", None),
            "wall_s": wall, "overhead_s": overhead, "seconds": max(wall - overhead, MIN_SECONDS),
            "output": output.strip()}


def medians(records: Iterable[dict]) -> dict[str, float]:
    """Median `seconds` per runner, in RUNNERS order."""
    by_runner: dict[str, list[float]] = {}
    for record in records:
        by_runner.setdefault(record["runner"], []).append(record["seconds"])
    return {r: statistics.median(by_runner[r]) for r in RUNNERS if r in by_runner}


def slowdowns(records: Iterable[dict]) -> dict[str, float]:
    """How many times slower than the container each VM runner was (median over median)."""
    middle = medians(records)
    native = middle.get("container")
    return {r: s / native for r, s in middle.items() if r != "container" and native}


@dataclass
class Emulation:
    """The outcome of `measure`: one record per trial and runner, plus what was fixed."""

    task: str
    size: int
    command: str
    runners: tuple[str, ...]
    trials: int
    records: list[dict[str, Any]] = field(default_factory=list)
    overhead: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    cancelled: bool = False

    @property
    def frame(self):
        """The records as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.records)

    def medians(self) -> dict[str, float]:
        return medians(self.records)

    def slowdowns(self) -> dict[str, float]:
        return slowdowns(self.records)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "size": self.size, "command": self.command,
                "runners": list(self.runners), "trials": self.trials,
                "overhead_s": self.overhead, "medians_s": self.medians(),
                "slowdowns": self.slowdowns(), "seconds": round(self.seconds, 3),
                "cancelled": self.cancelled, "records": self.records}


def measure(task: str = "loop", size=None, trials: int = 3, accels: str | Iterable[str] = "auto",
            memory="128M", on_result: Callable[[dict], None] | None = None,
            stop: threading.Event | None = None, timeout: float = 120.0,
            on_start: Callable[[Emulation], None] | None = None) -> Emulation:
    """Run `task` of `size` in a container and in VMs, `trials` times each, alternating.

    Everything is checked before anything starts; then `on_start` gets the (empty)
    result, which names the runners and the command. `on_result` gets each record as it
    lands. Setting `stop` stops the workloads at once (a running command included);
    the records so far come back with `cancelled` set. Nothing is left running.
    """
    from ..vm.vm import MIN_MEMORY
    from . import compare

    spec = get_task(task)
    size = check_size(spec, size)
    trials = check_trials(trials)
    memory_bytes = parse_memory(memory, minimum=MIN_MEMORY)
    runners = resolve_runners(accels)
    compare.preflight(("vm", "container"))
    result = Emulation(spec.name, size, spec.command(size), runners, trials)
    if on_start:
        on_start(result)
    stop = stop or threading.Event()
    started: list[Workload] = []
    finished = threading.Event()
    watcher = threading.Thread(target=_stop_on_request, args=(stop, finished, started),
                               name="vmkit-emulation-stop", daemon=True)
    watcher.start()
    began = time.monotonic()
    try:
        live = {}
        for runner in runners:
            if stop.is_set():
                break
            workload = _make(runner, memory_bytes)
            started.append(workload)  # listed before start: a stop may cut the boot short
            workload.start()
            live[runner] = workload
            result.overhead[runner] = round_trip(workload)
        for trial in range(trials):
            for runner, workload in live.items():
                if stop.is_set():
                    break
                record = run_once(workload, runner, result.command, result.overhead[runner], timeout)
                record.update(task=spec.name, size=size, trial=trial)
                result.records.append(record)
                if on_result:
                    on_result(record)
    except VmkitError:
        if not stop.is_set():
            raise
    finally:
        finished.set()
        watcher.join()
        for workload in started:
            workload.stop()
        result.cancelled = stop.is_set()
        result.seconds = time.monotonic() - began
    return result


def _stop_on_request(stop: threading.Event, finished: threading.Event,
                     started: list[Workload]) -> None:
    """Stop every started workload as soon as `stop` is set (until `finished`)."""
    stopped: set[int] = set()
    while not finished.is_set():
        if stop.wait(0.1):
            for workload in list(started):
                if id(workload) not in stopped:
                    stopped.add(id(workload))
                    _stop_now(workload)
            finished.wait(0.1)


def _stop_now(workload: Workload) -> None:
    """Stop without waiting for a busy guest to power itself off."""
    from ..vm.vm import VM

    workload.stop(graceful=False) if isinstance(workload, VM) else workload.stop()


# ---------------------------------------------------------------- what the guest sees

#: Asked of a VM, a container or the host alike; three parts separated by '@@'.
VIEW_COMMAND = ("grep -m1 -o -w hypervisor /proc/cpuinfo; echo @@; "
                "if dmesg >/dev/null 2>&1; then echo readable; "
                "dmesg | grep -m1 'Hypervisor detected'; fi; echo @@; "
                "grep -m1 'model name' /proc/cpuinfo")


def parse_view(text: str) -> dict[str, Any]:
    """VIEW_COMMAND's output as {'hypervisor_flag', 'log_readable', 'hypervisor_line', 'cpu_model'}."""
    parts = (text.split("@@") + ["", "", ""])[:3]
    log = parts[1].strip().splitlines()
    line = next((l for l in log if "Hypervisor detected" in l), None)
    if line is not None and "] " in line:
        line = line.split("] ", 1)[1]  # drop the "[    0.000000]" timestamp
    model = parts[2].strip()
    return {"hypervisor_flag": parts[0].strip() == "hypervisor",
            "log_readable": bool(log) and log[0].strip() == "readable",
            "hypervisor_line": line.strip() if line else None,
            "cpu_model": model.split(":", 1)[1].strip() if ":" in model else model or None}


def hypervisor_view(workload: Workload | None = None) -> dict[str, Any]:
    """What `workload` (or, with None, the host) sees of a hypervisor under it.

    hypervisor_flag: the CPU reports the `hypervisor` bit (CPUID) in /proc/cpuinfo;
    hypervisor_line: the kernel's "Hypervisor detected: ..." line, if its log is readable
    (a container may not read the kernel log) and still holds the line.
    """
    if workload is not None:
        return parse_view(workload.guest(VIEW_COMMAND))
    out = subprocess.run(["sh", "-c", VIEW_COMMAND], capture_output=True, text=True,
                         timeout=30, check=False).stdout
    return parse_view(out)


# ---------------------------------------------------------------- plot

def plot(records, title: str | None = None):
    """Median seconds per runner (bars), every trial (dots), the slowdown beside each VM."""
    from .plots import figure

    records = list(records)
    middle, factors = medians(records), slowdowns(records)
    runners = list(middle)
    fig, ax = figure(size=(8, 0.9 + 0.75 * max(len(runners), 1)))
    for row, runner in enumerate(runners):
        ax.barh(row, middle[runner], color=RUNNER_COLORS[runner], height=0.6)
        trials = [r["seconds"] for r in records if r["runner"] == runner]
        ax.scatter(trials, [row] * len(trials), color="black", s=14, zorder=3)
        note = f"  {middle[runner]:.2f}초"
        if runner in factors:
            note += f"  (컨테이너의 {factors[runner]:.1f}배)"
        ax.text(max([middle[runner], *trials]), row, note, va="center", fontsize=9)
    ax.set_yticks(range(len(runners)), [RUNNER_LABELS[r] for r in runners])
    ax.invert_yaxis()
    ax.set_xlabel("같은 명령에 걸린 시간 (초, 호스트 시계, 명령 왕복 시간 제외)")
    ax.set_title(title or "같은 계산, 다른 실행 방식: 에뮬레이션의 비용")
    ax.grid(axis="x", alpha=0.3)
    longest = max((r["seconds"] for r in records), default=0.1)
    ax.set_xlim(0, longest * 1.45)
    return fig
