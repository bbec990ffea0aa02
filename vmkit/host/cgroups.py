"""Cgroups this process makes for the work it starts: limits, accounting, and a sure kill.

`ChildCgroup(group, name)` is `<this process's cgroup>/<group>/<name>` in the memory, pids
and cpuacct controllers (one directory on cgroup v2's unified hierarchy). The class hub puts
each student's server in one (`deploy/jupyterhub/vmkit_class.py`), the grader each graded
notebook's kernel (`grading.sandbox`): every process started in it stays in it, even one
that leaves its session or its parent, so `kill_all` ends them all, by pid. Needs root (or
a delegated cgroup) to create.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def version() -> int:
    """2 on a unified (v2-only) hierarchy, else 1 (v1, or v1 with an empty v2 beside it)."""
    return 2 if (ROOT / "cgroup.controllers").exists() else 1


def own_cgroup(controller: str) -> str:
    """This process's cgroup path for a v1 `controller` ("" for v2's unified hierarchy)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return "/"


class ChildCgroup:
    """The cgroup dirs `<this process's cgroup>/<group>/<name>`.

    memory and pids set the limits; cpuacct only counts (CPU time used by everything in it).
    """

    def __init__(self, group: str, name: str):
        self.version = version()
        if self.version == 2:
            base = ROOT / own_cgroup("").lstrip("/") / group
            self.dirs = {"memory": base / name, "pids": base / name, "cpuacct": base / name}
        else:
            self.dirs = {controller: ROOT / controller / own_cgroup(controller).lstrip("/") / group / name
                         for controller in ("memory", "pids", "cpuacct")}

    def create(self, mem_limit: int | None, tasks_max: int) -> None:
        if self.version == 2:
            folder = self.dirs["memory"]
            for parent in (folder.parent.parent, folder.parent):
                parent.mkdir(exist_ok=True)
                (parent / "cgroup.subtree_control").write_text("+memory +pids")
            folder.mkdir(exist_ok=True)
            (folder / "memory.max").write_text(str(mem_limit) if mem_limit else "max")
            (folder / "pids.max").write_text(str(tasks_max))
            return
        for folder in self.dirs.values():
            folder.mkdir(parents=True, exist_ok=True)
        (self.dirs["memory"] / "memory.limit_in_bytes").write_text(str(mem_limit or -1))
        (self.dirs["pids"] / "pids.max").write_text(str(tasks_max))

    def procs_files(self) -> list[Path]:
        """The `cgroup.procs` files a process writes its pid to, to join."""
        return sorted({folder / "cgroup.procs" for folder in self.dirs.values()})

    def pids(self) -> list[int]:
        found: set[int] = set()
        for path in self.procs_files():
            try:
                found.update(int(pid) for pid in path.read_text().split())
            except OSError:
                pass
        return sorted(found)

    def memory_bytes(self) -> int | None:
        """What the processes in it use now (the cgroup's memory usage)."""
        name = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        try:
            return int((self.dirs["memory"] / name).read_text())
        except (OSError, ValueError):
            return None

    def cpu_seconds(self) -> float | None:
        """CPU time used by every process that was ever in it (user + system)."""
        try:
            if self.version == 2:
                stat = (self.dirs["cpuacct"] / "cpu.stat").read_text().split()
                return int(stat[stat.index("usage_usec") + 1]) / 1e6
            return int((self.dirs["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            return None

    def kill_all(self, timeout: float = 10.0) -> list[str]:
        """SIGKILL every process in the cgroup, by pid, until it is empty; "pid (name)" of each."""
        killed: set[str] = set()
        deadline = time.monotonic() + timeout
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    name = Path(f"/proc/{pid}/comm").read_text().strip()
                    os.kill(pid, signal.SIGKILL)
                    killed.add(f"{pid} ({name})")
                except (ProcessLookupError, FileNotFoundError):
                    pass
            time.sleep(0.1)
        return sorted(killed)

    def remove(self) -> None:
        for folder in set(self.dirs.values()):
            try:
                folder.rmdir()
            except FileNotFoundError:
                pass
