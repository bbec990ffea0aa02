"""VMs and containers measured side by side: repeated trials, summaries, density.

Three ways to get a ready workload are compared: a VM's cold boot ("vm"), a VM restored
from a snapshot of a booted guest ("vm-restore"), and a container's cold start
("container"). Trials run interleaved (vm, vm-restore, container, vm, ...) so that the
drift of a shared machine hits every kind alike.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import psutil

from ..container import limits as container_limits
from ..errors import InsufficientMemory, InvalidInput, VmkitError
from ..host import memguard
from ..units import check_callback, check_count, check_seconds, parse_cpus, parse_memory
from ..workload import Workload
from . import environment as environment_mod

KINDS = ("vm", "vm-restore", "container")
KIND_LABELS = {"vm": "VM 콜드 부팅", "vm-restore": "VM 스냅샷 복원", "container": "컨테이너"}
#: Usage figures kept per trial (flattened into `usage.<name>` columns).
USAGE_FIELDS = ("rss_bytes", "pss_bytes", "cpu_user_s", "cpu_system_s", "mem_bytes",
                "mem_limit_bytes", "guest_mem_total_bytes", "guest_mem_available_bytes")
SUMMARY_STATS = ("median", "min", "max", "p90", "count")


class Cancelled(VmkitError):
    """A comparison was stopped midway on request."""


def _check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    if isinstance(kinds, str):
        raise InvalidInput(f"종류(kinds)는 문자열 하나가 아니라 목록(list)이어야 합니다 (받은 값: {kinds!r}).",
                           f"예: kinds=({kinds!r},)")
    try:
        kinds = tuple(kinds)
    except TypeError:
        raise InvalidInput(f"종류(kinds)는 목록(list)이어야 합니다 (받은 값: {kinds!r}).",
                           f"쓸 수 있는 값: {', '.join(KINDS)}") from None
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise InvalidInput(f"비교할 종류(kind) {unknown or '(없음)'}를 모릅니다.",
                           f"쓸 수 있는 값: {', '.join(KINDS)}")
    return kinds


class WorkloadFactory:
    """Makes unstarted workloads of each kind with the same memory and CPUs.

    For "vm-restore" it first boots one VM, saves a snapshot of it and keeps the file
    (in a private temporary dir) until `close()`.
    """

    def __init__(self, memory: int, cpus: int, accel: str = "auto", image: str | None = None):
        self.memory, self.cpus, self.accel, self.image = memory, cpus, accel, image
        self._snapshot_dir: Path | None = None
        self.snapshot: dict[str, Any] | None = None

    def make(self, kind: str) -> Workload:
        from ..vm.vm import VM

        if kind == "vm":
            return VM(memory=self.memory, cpus=self.cpus, accel=self.accel)
        if kind == "vm-restore":
            return VM.from_snapshot(self._snapshot_file())
        from ..container.container import Container

        kwargs = {"image": self.image} if self.image else {}
        return Container(memory=self.memory, cpus=self.cpus, **kwargs)

    def _snapshot_file(self) -> Path:
        if self.snapshot is None:
            from ..vm.vm import VM

            self._snapshot_dir = Path(tempfile.mkdtemp(prefix="vmkit-snapshot-"))
            path = self._snapshot_dir / "guest.snap"
            with VM(memory=self.memory, cpus=self.cpus, accel=self.accel) as vm:
                self.snapshot = vm.snapshot(path, resume=False)
        return Path(self.snapshot["path"])

    def close(self) -> None:
        if self._snapshot_dir:
            shutil.rmtree(self._snapshot_dir, ignore_errors=True)
            self._snapshot_dir = None


def measure(workload: Workload, kind: str, trial: int, timeout: float = 60.0) -> dict[str, Any]:
    """Start one workload, record its phases and usage at ready, stop it; one record.

    A workload gone before it was measured (QEMU died, a container's engine stopped under
    it) fails the trial with the reason, rather than landing as a record of empty figures.
    """
    try:
        trace = workload.start(timeout=timeout)
        usage = workload.usage()
        if not workload.running:
            raise _gone(workload)
    finally:
        workload.stop()
    record: dict[str, Any] = {"kind": kind, "trial": trial, "accel": trace.accel,
                              "ready_s": trace.ready_s, "kernel": trace.guest.get("kernel"),
                              "limits_enforced": getattr(usage, "limits_enforced", None)}
    for phase, seconds in trace.seconds().items():
        record[f"phase.{phase}"] = seconds
    for name in USAGE_FIELDS:
        record[f"usage.{name}"] = getattr(usage, name, None)
    return record


def _gone(workload: Workload) -> VmkitError:
    """Why a workload that was ready is no longer running (the Korean error it would raise)."""
    for explain in ("_ended_error", "_died_error"):  # Container's, VM's
        if callable(getattr(workload, explain, None)):
            return getattr(workload, explain)()
    return VmkitError(f"{workload.kind} '{workload.name}'이(가) 측정(measure) 전에 끝났습니다.")


@dataclass
class Comparison:
    """The outcome of `compare`: one record per trial, plus what was fixed for all."""

    records: list[dict[str, Any]]
    memory: int
    cpus: int
    kinds: tuple[str, ...]
    seconds: float = 0.0
    snapshot: dict[str, Any] | None = None
    cancelled: bool = False
    #: What it ran on (`environment.describe`): mode, engine, cgroup version, accelerator.
    environment: dict[str, Any] | None = None

    def limits_enforced(self, kind: str) -> dict[str, bool] | None:
        """Which container limits applied in every trial of `kind` (None for VMs)."""
        return container_limits.combined(r.get("limits_enforced") for r in self.records if r["kind"] == kind)

    @property
    def frame(self):
        """The records as a pandas DataFrame (one row per trial)."""
        import pandas as pd

        return pd.DataFrame(self.records)

    def summary(self):
        """median/min/max/p90/count of every numeric column, per kind (a DataFrame)."""
        return summarize(self.frame)

    def to_dict(self) -> dict[str, Any]:
        """`vmkit compare --json`: per kind {metric: {median, ...}}, plus the trials."""
        out: dict[str, Any] = {"memory_bytes": self.memory, "cpus": self.cpus,
                               "seconds": round(self.seconds, 3), "cancelled": self.cancelled,
                               "snapshot": self.snapshot, "environment": self.environment}
        table = self.summary()
        for kind in self.kinds:
            metrics: dict[str, Any] = {}
            if kind in table.index.get_level_values(0):
                for metric, row in table.loc[kind].iterrows():
                    stats = {s: _plain(row[s]) for s in SUMMARY_STATS}
                    stats["count"] = int(stats["count"])
                    _nest(metrics, metric, stats)
            if (applied := self.limits_enforced(kind)) is not None:
                metrics["limits_enforced"] = applied
            out[kind] = metrics
        out["trials"] = [{k: _plain(v) for k, v in r.items()} for r in self.records]
        return out


def _plain(value):
    """numpy/pandas scalars (and NaN) as plain JSON values."""
    try:
        import math

        value = value.item() if hasattr(value, "item") else value
        return None if isinstance(value, float) and math.isnan(value) else value
    except (TypeError, ValueError):
        return value


def _nest(target: dict, dotted: str, value) -> None:
    """'usage.rss_bytes' → target['usage']['rss_bytes'] = value."""
    *parents, leaf = dotted.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value


def summarize(frame):
    """Per-kind summary statistics of the numeric columns (index: kind, metric)."""
    import pandas as pd

    if frame.empty:
        return pd.DataFrame(columns=list(SUMMARY_STATS))
    numeric = frame.drop(columns=["trial"], errors="ignore").select_dtypes("number")
    rows = {}
    for kind, group in numeric.groupby(frame["kind"], sort=False):
        for column in group.columns:
            values = group[column].dropna()
            if values.empty:
                continue
            rows[(kind, column)] = {"median": values.median(), "min": values.min(),
                                    "max": values.max(), "p90": values.quantile(0.9),
                                    "count": values.count()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["kind", "metric"])


def _check_accel(accel: str) -> str:
    """The VMs' accelerator, checked before anything starts (containers ignore it)."""
    from ..vm.vm import _check_accel as check

    return check(accel)


def _minimum_memory(kinds: Iterable[str]) -> int:
    """The smallest memory every kind accepts (the guest does not boot below 96 MiB)."""
    from ..container.container import MIN_MEMORY as container_minimum
    from ..vm.vm import MIN_MEMORY as vm_minimum

    return max(vm_minimum if k.startswith("vm") else container_minimum for k in kinds)


def preflight(kinds: Iterable[str]) -> None:
    """Fail before anything starts when QEMU, the artifacts or the engine are missing."""
    from ..container import engine
    from ..guest import artifacts
    from ..vm import qemu

    if any(k.startswith("vm") for k in kinds):
        qemu.qemu_binary()
        artifacts.require()
    if "container" in kinds:
        engine.require()


def compare(trials: int = 3, memory="128M", cpus=1, kinds: Iterable[str] = KINDS,
            on_result: Callable[[dict[str, Any]], None] | None = None,
            stop: threading.Event | None = None, accel: str = "auto",
            timeout: float = 60.0, image: str | None = None) -> Comparison:
    """Run `trials` rounds of every kind, interleaved; `on_result` gets each record as it lands.

    Set the `stop` event to end the comparison after the running trial (which is
    stopped and cleaned up as usual); the records so far are returned, `cancelled` set.
    """
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise InvalidInput(f"시행 횟수(trials)는 1 이상의 정수여야 합니다 (받은 값: {trials!r}).")
    kinds = _check_kinds(kinds)
    memory_bytes = parse_memory(memory, minimum=_minimum_memory(kinds))
    cpus = parse_cpus(cpus)
    accel, timeout = _check_accel(accel), check_seconds(timeout)
    if image is not None:
        from ..container.images import check_image

        check_image(image)
    check_callback(on_result, "on_result")
    if stop is not None and not callable(getattr(stop, "is_set", None)):
        raise InvalidInput(f"stop에는 threading.Event를 주어야 합니다 (받은 값: {stop!r}).")
    preflight(kinds)
    memguard.check_peak(kinds, memory_bytes)  # one workload at a time: the largest must fit
    factory = WorkloadFactory(memory_bytes, cpus, accel, image)
    result = Comparison([], memory_bytes, cpus, kinds, environment=environment_mod.describe(kinds, accel))
    started = time.monotonic()
    try:
        for trial in range(trials):
            for kind in kinds:
                if stop is not None and stop.is_set():
                    result.cancelled = True
                    return result
                record = measure(factory.make(kind), kind, trial, timeout)
                result.records.append(record)
                if on_result:
                    on_result(record)
    finally:
        result.snapshot = factory.snapshot and {k: v for k, v in factory.snapshot.items()
                                                 if k != "path"}
        factory.close()
        result.seconds = time.monotonic() - started
    return result


# ---------------------------------------------------------------- density

@dataclass
class Density:
    """How many workloads of one kind ran at once, and what they cost together."""

    kind: str
    requested: int
    memory: int
    started: int = 0
    failures: list[str] = field(default_factory=list)
    limit: str | None = None
    last_ready_s: float | None = None
    ready_s: list[float] = field(default_factory=list)
    total_rss_bytes: int = 0
    total_pss_bytes: int = 0
    host_used_delta_bytes: int = 0
    seconds: float = 0.0
    environment: dict[str, Any] | None = None

    @property
    def per_instance_pss_bytes(self) -> float | None:
        return self.total_pss_bytes / self.started if self.started else None

    @property
    def per_instance_rss_bytes(self) -> float | None:
        return self.total_rss_bytes / self.started if self.started else None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "requested": self.requested, "memory_bytes": self.memory,
                "started": self.started, "failures": self.failures, "limit": self.limit,
                "last_ready_s": self.last_ready_s, "total_rss_bytes": self.total_rss_bytes,
                "total_pss_bytes": self.total_pss_bytes,
                "per_instance_rss_bytes": self.per_instance_rss_bytes,
                "per_instance_pss_bytes": self.per_instance_pss_bytes,
                "host_used_delta_bytes": self.host_used_delta_bytes,
                "seconds": round(self.seconds, 3), "environment": self.environment}


def density(kind: str, count: int, memory="128M", cpus=1, parallel: int = 8,
            timeout: float = 180.0, on_progress: Callable[[int, int], None] | None = None,
            accel: str = "auto") -> Density:
    """Start `count` workloads of `kind` at once, measure them all, then stop them all.

    `count` workloads must fit in memory up front (`memguard.check_batch`), or none starts.
    Starts go `parallel` at a time; starting stops early (and `limit` says why) when the
    memory guard refuses the next one after all. `last_ready_s` is the time
    from the first start request to the last workload being ready.
    """
    (kind,) = _check_kinds([kind])
    if kind == "vm-restore":
        raise InvalidInput("밀도(density) 측정은 'vm'과 'container'만 지원합니다.")
    count = check_count(count, "개수(count)")
    memory_bytes = parse_memory(memory, minimum=_minimum_memory([kind]))
    cpus = parse_cpus(cpus)
    parallel = check_count(parallel, "동시 시작 수(parallel)")
    accel, timeout = _check_accel(accel), check_seconds(timeout)
    check_callback(on_progress, "on_progress")
    preflight([kind])
    memguard.check_batch(kind, count, memory_bytes)  # all `count` at once, or none
    factory = WorkloadFactory(memory_bytes, cpus, accel)
    result = Density(kind, count, memory_bytes, environment=environment_mod.describe([kind], accel))
    running: list[Workload] = []
    lock = threading.Lock()
    used_before = psutil.virtual_memory().used
    started = time.monotonic()

    halt = threading.Event()  # set when the caller is interrupted: start nothing more

    def start_one(index: int) -> None:
        if result.limit or halt.is_set():
            return
        limit = (f"호스트(host)의 남은 메모리가 남겨 둘 여유(reserve) "
                 f"{memguard.reserve_bytes() >> 20} MiB 아래로 내려가 {index}개에서 멈췄습니다.")
        if not memguard.fits(memguard.request_for(kind, memory_bytes)):
            result.limit = limit
            return
        workload = factory.make(kind)
        try:
            workload.start(timeout=timeout)
        except InsufficientMemory:
            result.limit = result.limit or limit
            return
        except VmkitError as exc:
            with lock:
                result.failures.append(f"#{index}: {str(exc).splitlines()[0]}")
            return
        with lock:
            running.append(workload)
            result.ready_s.append(time.monotonic() - started)
            if on_progress:
                on_progress(len(running), count)

    try:
        pool = ThreadPoolExecutor(max_workers=max(1, parallel))
        try:
            list(pool.map(start_one, range(count)))
        finally:
            halt.set()
            pool.shutdown(wait=True, cancel_futures=True)
        result.started = len(running)
        result.last_ready_s = max(result.ready_s) if result.ready_s else None
        for workload in running:
            usage = workload.usage()
            # A container's runtime shim (containerd-shim) lives outside its cgroup but
            # exists once per container: it is part of what each one costs the host.
            result.total_rss_bytes += usage.rss_bytes + getattr(usage, "shim_rss_bytes", 0)
            result.total_pss_bytes += usage.pss_bytes + getattr(usage, "shim_pss_bytes", 0)
        result.host_used_delta_bytes = psutil.virtual_memory().used - used_before
    finally:
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            list(pool.map(lambda w: w.stop(), running))
        factory.close()
        result.seconds = time.monotonic() - started
    return result
