"""What a container costs the host (`ContainerUsage`), from wherever this engine lets vmkit read it.

Why here: the figures come from three places, whichever answers: the container's cgroup
files on this host (what `docker stats` reads, in a few ms), else the engine's stats (up to
a second), else its processes' own RSS (a rootless engine on cgroup v1 has no cgroup per
container); and the shim or conmon that babysits it costs the host memory outside its
cgroup. `fill` takes them from where they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..workload import Usage, process_usage
from .host import Cgroup


@dataclass
class ContainerUsage(Usage):
    """`Usage` plus what only a container has.

    cpu_*_s come from the container's cgroup (every process it ever ran, execs included);
    shim_*: the process that babysits the container (containerd's shim, Podman's conmon), a
    host cost outside its cgroup. limits_enforced: which limits really apply (see
    `container.limits`); a limit that does not is None here, and mem_bytes is then the RSS
    of the container's processes (an engine without a cgroup per container has no figure).
    """

    state: str | None = None
    pids_current: int | None = None
    pids_limit: int | None = None
    cpus: float | None = None
    shim_rss_bytes: int = 0
    shim_pss_bytes: int = 0
    limits_enforced: dict[str, bool] | None = None


def fill(usage: ContainerUsage, cgroup: Cgroup | None, stats: Callable[[], dict[str, Any]],
         engine, host_pid: int | None) -> None:
    """The host-side figures of a running container: from its `cgroup` files, else from the
    engine's `stats()`, else its processes' own; and its shim's (the parent of `host_pid`).

    `engine`: the `engine_kinds.EngineInfo` it runs on, or None if not known; a limit
    `usage.limits_enforced` says does not apply is shown as none.
    """
    if not _from_cgroup(cgroup, usage):
        if engine is None or engine.limits_enforced:
            _from_stats(stats, usage)
        else:  # its stats are the whole service's: the processes' own figures instead
            usage.mem_bytes, usage.pids_current = usage.rss_bytes, usage.processes
    if not (usage.limits_enforced or {}).get("memory", True):
        usage.mem_limit_bytes = None
    if host_pid and engine is not None:
        _add_shim(usage, host_pid, engine.spec.shims)


def _from_cgroup(cgroup: Cgroup | None, usage: ContainerUsage) -> bool:
    """Fill memory, CPU and pids from the container's cgroup files; False if there are none to read."""
    if cgroup is None:
        return False
    try:
        usage.mem_bytes, usage.mem_limit_bytes = cgroup.memory()
        cpu = cgroup.cpu()
        if cpu is not None:
            usage.cpu_user_s, usage.cpu_system_s = cpu
        usage.pids_current = cgroup.pids_current()
        return True
    except (OSError, ValueError):
        return False


def _from_stats(read: Callable[[], dict[str, Any]], usage: ContainerUsage) -> None:
    """Fill memory (less inactive file pages, as `docker stats` shows), CPU and pids from the
    engine's stats (`read()`); nothing if they can't be had."""
    try:
        stats = read()
    except Exception:
        return
    mem = stats.get("memory_stats") or {}
    if "usage" in mem:
        detail = mem.get("stats") or {}
        inactive = detail.get("total_inactive_file", detail.get("inactive_file", 0))
        usage.mem_bytes = mem["usage"] - inactive if inactive < mem["usage"] else mem["usage"]
        usage.mem_limit_bytes = mem.get("limit")
    cpu = (stats.get("cpu_stats") or {}).get("cpu_usage") or {}
    if cpu.get("usage_in_usermode") is not None:
        usage.cpu_user_s = cpu["usage_in_usermode"] / 1e9
        usage.cpu_system_s = cpu.get("usage_in_kernelmode", 0) / 1e9
    usage.pids_current = (stats.get("pids_stats") or {}).get("current")


def _add_shim(usage: ContainerUsage, host_pid: int, shims: tuple[str, ...]) -> None:
    """Fill shim_* from the parent of `host_pid` (the container's first process), if its
    name starts with one of `shims`: a host cost outside the container's cgroup."""
    try:
        import psutil

        shim = psutil.Process(host_pid).parent()
        if shim is not None and shim.name().startswith(shims):
            found = process_usage([shim.pid])
            usage.shim_rss_bytes, usage.shim_pss_bytes = found.rss_bytes, found.pss_bytes
    except Exception:
        pass
