"""What a ready container says about itself, asked in one exec (`SCRIPT`, read by `parse`).

Why here: this is the inside half of the lab's comparison with a VM, and one exec is one
round trip (the `agent` phase): the kernel release (the host's own), /proc/meminfo (the
host's memory: a container has none of its own to show) and its cgroup limits (v1 or v2),
which `limits.enforced` holds against what the engine recorded.
"""

from __future__ import annotations

from typing import Any

from ..workload import parse_meminfo
from . import limits
from .host import int_or_none

SCRIPT = (
    "uname -r; echo @@; cat /proc/meminfo; echo @@; "
    "if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo v2; cat /sys/fs/cgroup/memory.max; "
    "cat /sys/fs/cgroup/cpu.max; cat /sys/fs/cgroup/pids.max; "
    "else echo v1; cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
    "echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); "
    "cat /sys/fs/cgroup/pids/pids.max; fi"
)


def parse(out: str) -> dict[str, Any]:
    """SCRIPT's output as {"kernel", "mem_total_bytes", "mem_available_bytes", "cgroup",
    "mem_limit_bytes", "cpus", "pids_limit"} (a limit that is not set is None)."""
    parts = out.split("@@\n")
    info: dict[str, Any] = {"kernel": parts[0].strip() if parts else ""}
    if len(parts) > 1:
        mem = parse_meminfo(parts[1])
        info["mem_total_bytes"] = mem.get("MemTotal")
        info["mem_available_bytes"] = mem.get("MemAvailable")
    if len(parts) > 2:
        lines = parts[2].split("\n")
        lines += [""] * 4
        info["cgroup"] = lines[0].strip()
        info["mem_limit_bytes"] = limits.limit_value(lines[1])
        quota = lines[2].split()
        if len(quota) == 2 and int_or_none(quota[0]) and int(quota[0]) > 0:
            info["cpus"] = int(quota[0]) / int(quota[1])
        else:
            info["cpus"] = None
        info["pids_limit"] = limits.limit_value(lines[3])
    return info
