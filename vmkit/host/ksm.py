"""Kernel samepage merging (KSM): whether the host merges the identical pages of VMs' RAM.

QEMU marks every guest's RAM mergeable (`mem-merge`, on by default; VmFlags "mg"), so on a
host where KSM runs, guests that boot the same kernel share its pages: eight idle 128 MiB
guests then hold about 75 MiB each instead of about 134. KSM is a host-wide setting that only
root may change (`/sys/kernel/mm/ksm/run`); vmkit reads it and never turns it on by itself.
`enabled()` turns it on for a block (the memory benchmark, as root) and restores it after.
"""

from __future__ import annotations

import resource
import time
from contextlib import contextmanager
from pathlib import Path

SYSFS = Path("/sys/kernel/mm/ksm")
#: How to turn KSM on for a class server (see book/appendix/class-hub.md).
HOW_TO_ENABLE = "echo 1 | sudo tee /sys/kernel/mm/ksm/run"


def read(name: str, root: Path = SYSFS) -> int | None:
    try:
        return int((root / name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def write(name: str, value: int, root: Path = SYSFS) -> None:
    (root / name).write_text(str(value))


def status(root: Path = SYSFS) -> dict:
    """{"available", "running", "pages_sharing", "reason"} (reason in Korean)."""
    run = read("run", root)
    if run is None:
        return {"available": False, "running": False, "pages_sharing": None,
                "reason": "이 호스트의 커널에는 KSM(같은 페이지 병합, kernel samepage merging)이 없습니다."}
    sharing = read("pages_sharing", root)
    if run == 1:
        return {"available": True, "running": True, "pages_sharing": sharing,
                "reason": f"KSM(같은 페이지 병합)이 켜져 있습니다: VM들의 같은 메모리 페이지를 "
                          f"합쳐 {(sharing or 0) * resource.getpagesize() >> 20} MiB를 아끼고 있습니다."}
    return {"available": True, "running": False, "pages_sharing": sharing,
            "reason": "KSM(같은 페이지 병합)이 꺼져 있습니다. VM을 여러 개 띄우는 수업 서버라면 "
                      f"`{HOW_TO_ENABLE}`로 켜면 VM 하나의 메모리가 줄어듭니다."}


@contextmanager
def enabled(pages_to_scan: int | None = None, root: Path = SYSFS):
    """KSM on for the block (root only), with `pages_to_scan` if given; restored afterwards."""
    names = ("run", "pages_to_scan")
    saved = {name: read(name, root) for name in names}
    if saved["run"] is None:
        raise OSError(status(root)["reason"])
    try:
        if pages_to_scan:
            write("pages_to_scan", pages_to_scan, root)
        write("run", 1, root)
        yield saved
    finally:
        for name in reversed(names):
            write(name, saved[name], root)


def settle(idle_scans: int = 2, timeout: float = 180.0, root: Path = SYSFS, poll: float = 1.0) -> dict:
    """Wait until KSM has scanned everything `idle_scans` times with nothing more merged.

    Returns {"seconds", "full_scans", "pages_sharing", "settled"}.
    """
    started = time.monotonic()
    last, since = read("pages_sharing", root), read("full_scans", root) or 0
    while time.monotonic() - started < timeout:
        time.sleep(poll)
        sharing, scans = read("pages_sharing", root), read("full_scans", root) or 0
        if sharing != last:
            last, since = sharing, scans
        elif scans - since >= idle_scans and sharing:
            return {"seconds": round(time.monotonic() - started, 1), "full_scans": scans,
                    "pages_sharing": sharing, "settled": True}
    return {"seconds": round(time.monotonic() - started, 1), "full_scans": read("full_scans", root),
            "pages_sharing": last, "settled": False}
