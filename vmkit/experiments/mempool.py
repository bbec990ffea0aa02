"""Guest memory as one pool the host lends out, and the balloon that moves it between VMs.

Each guest may use RAM up to its configured size. The virtio-balloon driver inside the
guest can take pages away from its own kernel and give them back to the host (the
balloon inflates: the guest's MemTotal shrinks), or return them (it deflates). QMP
`balloon` sets the target; `VM.balloon()` waits until the guest got there.

The host sees it in QEMU's resident memory (RSS): pages the guest has touched stay
resident until the balloon hands them back, and pages handed back to a guest cost the
host nothing until the guest writes to them. vmkit's VMs otherwise also report the pages
their guest frees (free page reporting), which hands them back within seconds; the
balloon experiment's VMs (`BALLOON_ONLY`) leave that off, so the balloon's effect is seen alone.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Mapping

from ..errors import InvalidInput, WorkloadError
from ..units import format_bytes, parse_memory

MiB = 1 << 20
#: VM options for the balloon experiment: no free page reporting (see the module docstring).
BALLOON_ONLY = {"free_page_reporting": False}
#: Where `fill` writes inside the guest (its root file system lives in RAM).
FILL_PATH = "/tmp/vmkit-fill"
#: The guest's RAM file system may hold half of its memory: `fill` stays well below.
FILL_SHARE = 0.4
#: The steps of `transfer`, in order, with the labels the lab's plot shows.
STAGES = {
    "start": "1. 처음",
    "b_shrunk": "2. B 줄임",
    "a_used": "3. A 사용 후 해제",
    "a_shrunk": "4. A 줄임",
    "b_grown": "5. B 늘림",
    "b_used": "6. B 사용",
}


def balloon_floor() -> int:
    """The smallest size the balloon may squeeze a guest to (the VM class's own limit)."""
    from ..vm.resources import MIN_BALLOON

    return MIN_BALLOON


def view(vms: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per VM ({label: VM}): its RAM, the balloon's current size, what the guest
    sees (MemTotal, MemAvailable) and what it costs the host (QEMU's RSS and PSS)."""
    rows = []
    for label, vm in vms.items():
        usage = vm.usage()
        rows.append({"vm": label, "ram_bytes": vm.memory_bytes,
                     "balloon_bytes": vm.memory()["balloon_actual_bytes"],
                     "mem_total_bytes": usage.guest_mem_total_bytes,
                     "mem_available_bytes": usage.guest_mem_available_bytes,
                     "rss_bytes": usage.rss_bytes, "pss_bytes": usage.pss_bytes})
    return rows


def lent_bytes(rows: list[dict[str, Any]]) -> int:
    """RAM the host lends the VMs of one `view` in total (the balloons' sizes summed)."""
    return sum(row["balloon_bytes"] for row in rows)


def resize(vm, size: int) -> dict[str, Any]:
    """Set `vm`'s balloon to `size` bytes and wait; a Korean error if the guest did not get there."""
    result = vm.balloon(size)
    if not result["reached"]:
        raise WorkloadError(
            f"VM '{vm.name}'의 풍선(balloon)이 {format_bytes(size)}에 이르지 못했습니다 "
            f"(지금 {format_bytes(result['actual_bytes'])}).",
            "게스트가 메모리를 많이 쓰고 있으면 내줄 수 없습니다. 게스트의 파일을 지우고 다시 해 보세요.")
    return result


def _size(amount, what: str) -> int:
    return parse_memory(amount, what=what)


def move(src, dst, amount) -> dict[str, Any]:
    """Take `amount` of RAM from `src` (its balloon inflates) and give it to `dst` (its
    balloon deflates). Checked before anything changes; returns both balloon results."""
    size = _size(amount, "옮길 메모리(amount)")
    src_now = src.memory()["balloon_actual_bytes"]
    dst_now = dst.memory()["balloon_actual_bytes"]
    if src_now - size < balloon_floor():
        raise InvalidInput(
            f"VM '{src.name}'은(는) 지금 {format_bytes(src_now)}라서 {format_bytes(size)}를 내주면 "
            f"최소 {format_bytes(balloon_floor())}보다 작아집니다.", "옮길 양을 줄이세요.")
    if dst_now + size > dst.memory_bytes:
        raise InvalidInput(
            f"VM '{dst.name}'은(는) 지금 {format_bytes(dst_now)}이고 최대 {format_bytes(dst.memory_bytes)}라서 "
            f"{format_bytes(size)}를 더 받을 자리가 없습니다.",
            "받을 VM의 풍선을 먼저 팽창시켜(vm.balloon) 자리를 만드세요.")
    return {"moved_bytes": size, "src": resize(src, src_now - size), "dst": resize(dst, dst_now + size)}


def fill(vm, size, keep: bool = True) -> None:
    """Let the guest write `size` of data into its RAM file system (and delete it again
    unless `keep`): its memory is then in use, and resident on the host."""
    count = -(-_size(size, "채울 메모리(size)") // MiB)
    limit = int(vm.memory_bytes * FILL_SHARE) // MiB
    if count > limit:
        raise InvalidInput(f"VM '{vm.name}'에는 {limit} MiB까지만 채울 수 있습니다 (받은 값: {count} MiB).",
                           f"게스트 메모리의 {FILL_SHARE:.0%} 이하로 주세요.")
    rm = "" if keep else f"; rm -f {FILL_PATH}"
    vm.guest(f"dd if=/dev/zero of={FILL_PATH} bs=1M count={count} 2>/dev/null{rm}", 60, check=True)


def release(vm) -> None:
    """Delete what `fill` wrote (the guest's kernel frees those pages; the host still holds
    them, unless the VM reports free pages)."""
    vm.guest(f"rm -f {FILL_PATH}", check=True)


def transfer(a, b, amount="128M", use="80M",
             on_stage: Callable[[str, list[dict[str, Any]]], None] | None = None,
             stop: threading.Event | None = None) -> list[dict[str, Any]]:
    """The lab's experiment: memory goes from VM `a` to VM `b` through the host's pool.

    From both guests at full size: (2) `b` gives `amount` back, (3) `a` uses `use` and
    frees it, (4) `a` gives `amount` back, (5) `b` takes `amount`, (6) `b` uses `use`. After each
    step (see `STAGES`) both VMs are measured (`view`). Returns one record per VM and
    step; `on_stage(stage, rows)` sees each step as it ends; `stop` ends it after a step.
    """
    size = _size(amount, "옮길 메모리(amount)")
    used = _size(use, "채울 메모리(use)")
    for vm in (a, b):
        if vm.memory_bytes - size < balloon_floor():
            raise InvalidInput(
                f"VM '{vm.name}'({format_bytes(vm.memory_bytes)})은(는) {format_bytes(size)}를 내주면 "
                f"최소 {format_bytes(balloon_floor())}보다 작아집니다.", "옮길 양을 줄이거나 더 큰 VM을 쓰세요.")
        if used > vm.memory_bytes * FILL_SHARE:
            raise InvalidInput(f"채울 메모리 {format_bytes(used)}가 VM '{vm.name}'에 너무 큽니다.",
                               f"게스트 메모리의 {FILL_SHARE:.0%} 이하로 주세요.")
    vms = {"A": a, "B": b}
    for vm in (a, b):  # every run starts from the same state
        release(vm)
        resize(vm, vm.memory_bytes)
    steps = [("start", lambda: None),
             ("b_shrunk", lambda: resize(b, b.memory_bytes - size)),
             ("a_used", lambda: fill(a, used, keep=False)),
             ("a_shrunk", lambda: resize(a, a.memory_bytes - size)),
             ("b_grown", lambda: resize(b, b.memory_bytes)),
             ("b_used", lambda: fill(b, used, keep=True))]
    records: list[dict[str, Any]] = []
    started = time.monotonic()
    for step, (stage, action) in enumerate(steps):
        if stop is not None and stop.is_set():
            break
        action()
        rows = view(vms)
        for row in rows:
            row.update(stage=stage, label=STAGES[stage], step=step,
                       seconds=time.monotonic() - started)
        records.extend(rows)
        if on_stage is not None:
            on_stage(stage, rows)
    return records


def stage_rows(records: list[dict[str, Any]], stage: str) -> dict[str, dict[str, Any]]:
    """The rows of one step of `transfer`, by VM label."""
    return {row["vm"]: row for row in records if row["stage"] == stage}
