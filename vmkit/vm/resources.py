"""A running VM's resources as the host sees them: its vCPUs' host threads, its RAM, the balloon.

Why apart from `VM`: these are what lab 2 looks at (which host thread runs which vCPU,
how guest RAM moves back to the host), read from QMP and /proc through the VM's public
face (`vm.qmp`, `vm.pid`, `vm.paused`), not part of starting or stopping it. `VM.vcpus`,
`VM.host_threads`, `VM.memory` and `VM.balloon` are the public way in.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psutil

from ..errors import InvalidInput
from ..units import format_bytes, parse_memory

MiB = 1 << 20
#: The balloon may not squeeze the guest below this (its kernel and initramfs live in RAM).
MIN_BALLOON = 64 * MiB


def host_threads(pid: int | None) -> list[dict[str, Any]]:
    """A process's host threads: id, name (e.g. 'CPU 0/KVM', 'ALL CPUs/TCG'), CPU seconds."""
    if pid is None:
        return []
    result = []
    try:
        for thread in psutil.Process(pid).threads():
            try:
                name = Path(f"/proc/{pid}/task/{thread.id}/comm").read_text().strip()
            except OSError:
                name = ""
            result.append({"tid": thread.id, "name": name, "user_s": thread.user_time,
                           "system_s": thread.system_time})
    except psutil.Error:
        pass
    return result


def vcpus(vm) -> list[dict[str, Any]]:
    """Each vCPU of `vm` and the host thread that runs it, with that thread's CPU seconds."""
    cpus = vm.qmp("query-cpus-fast")
    threads = {t["tid"]: t for t in vm.host_threads()}
    result = []
    for cpu in cpus:
        thread = threads.get(cpu.get("thread-id"), {})
        result.append({"index": cpu.get("cpu-index"), "thread_id": cpu.get("thread-id"),
                       "thread_name": thread.get("name"), "user_s": thread.get("user_s"),
                       "system_s": thread.get("system_s")})
    return result


def memory(vm) -> dict[str, int]:
    """`vm`'s RAM as QEMU sees it: base size and the balloon's current size."""
    summary = vm.qmp("query-memory-size-summary")
    balloon_now = vm.qmp("query-balloon")
    return {"base_bytes": summary["base-memory"],
            "plugged_bytes": summary.get("plugged-memory", 0),
            "balloon_actual_bytes": balloon_now["actual"]}


def balloon(vm, target: str | int, wait: bool, timeout: float) -> dict[str, Any]:
    """Set `vm`'s balloon to leave the guest `target` bytes; wait (unless paused) till it got there."""
    size = parse_memory(target, minimum=MIN_BALLOON, what="풍선(balloon) 목표 메모리")
    if size > vm.memory_bytes:
        raise InvalidInput(
            f"풍선(balloon) 목표 {format_bytes(size)}는 이 VM의 메모리 "
            f"{format_bytes(vm.memory_bytes)}보다 클 수 없습니다.")
    started = time.monotonic()
    vm.qmp("balloon", value=size)
    actual = vm.qmp("query-balloon")["actual"]
    while wait and not vm.paused and abs(actual - size) >= MiB \
            and time.monotonic() - started < timeout:
        time.sleep(0.05)
        actual = vm.qmp("query-balloon")["actual"]
    return {"target_bytes": size, "actual_bytes": actual,
            "reached": abs(actual - size) < MiB, "seconds": time.monotonic() - started}
