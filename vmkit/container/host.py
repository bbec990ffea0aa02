"""What the host sees of a container: its processes, its cgroup files, killing what runs in it.

With Docker (and root Podman) a container has a cgroup of its own: `Cgroup` reads its
files directly (what `docker stats` reads, in about 1.5 ms rather than the engine's second).
A rootless engine on cgroup v1 makes none: then the container's processes are those in the
PID namespace of its first process (`State.Pid` from inspect is a real host pid), which
also holds what `exec` started (under a conmon of its own, not below the first process).
"""

from __future__ import annotations

import os
import signal
from typing import Callable, Iterable


def pid_namespace(pid: int | str) -> str | None:
    """The PID namespace of host process `pid` ('pid:[4026531836]'), None if it can't be read."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def namespace_processes(init_pid: int) -> list[int]:
    """Host pids of every live process in the PID namespace of `init_pid` (the container's).

    A container sharing this process's namespace has no such boundary: then only `init_pid`
    and its descendants.
    """
    import psutil

    ns = pid_namespace(init_pid)
    if ns is None:
        return []
    if ns == pid_namespace("self"):
        try:
            root = psutil.Process(init_pid)
            return [init_pid] + [child.pid for child in root.children(recursive=True)]
        except psutil.Error:
            return []
    return [int(entry) for entry in os.listdir("/proc")
            if entry.isdigit() and pid_namespace(entry) == ns]


def belongs(pid: int, container_id: str, init_pid: int | None = None) -> bool:
    """Whether host process `pid` runs in the container: in its cgroup, or in its PID namespace."""
    try:
        if container_id in read(f"/proc/{pid}/cgroup"):
            return True
    except OSError:
        return False
    if not init_pid:
        return False
    ns = pid_namespace(init_pid)
    return ns is not None and ns != pid_namespace("self") and pid_namespace(pid) == ns


def kill_tree(pid: int, container_id: str, init_pid: int | None = None,
              members: Iterable[int] = ()) -> None:
    """SIGKILL host process `pid` of the container, its process group and its descendants,
    and those of the container's processes (`members`) still in its session.

    runc makes every exec a session (and group) leader, so the group holds what it started
    unless a process moved to a group of its own; those are found as descendants. A
    background job whose shell already ended was adopted by the container's init: it is
    found by its session. All are stopped (SIGSTOP) first, so that nothing forks between
    looking and killing.
    """
    import psutil

    procs = []
    for member in members:
        try:
            if member != pid and os.getsid(member) == pid:
                procs.append(psutil.Process(member))
        except (OSError, psutil.Error):
            pass
    root, group = None, False
    try:
        if belongs(pid, container_id, init_pid):
            root = psutil.Process(pid)
            group = os.getpgid(pid) == pid
    except (psutil.Error, OSError):
        root = None
    if root is not None:
        procs.insert(0, root)
    if not procs:
        return
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        if group:
            try:
                os.killpg(pid, sig)
            except OSError:
                pass
        if sig == signal.SIGSTOP and root is not None:
            try:
                procs += root.children(recursive=True)
            except psutil.Error:
                pass
        for proc in procs:
            try:
                proc.send_signal(sig)
            except psutil.Error:
                pass


def first_process(pid: int | None, container_id: str) -> tuple[int | None, Cgroup | None]:
    """(the container's first process, its cgroup) from inspect's `State.Pid`, as far as this host sees them.

    The pid is kept only if it is provably the container's (in its cgroup, or in a PID
    namespace other than ours): vmkit may run in another PID namespace than the engine.
    """
    cgroup = Cgroup.find(pid, container_id) if pid else None
    return (pid if pid and (cgroup or belongs(pid, container_id, pid)) else None), cgroup


def processes(cgroup: Cgroup | None, init_pid: int | None, top: Callable[[], dict]) -> list[int]:
    """Host pids of every process in the container: from its cgroup (cgroup.procs); without
    one, those in the PID namespace of its first process `init_pid`; else what the engine's
    `top()` (`docker top`) lists."""
    if cgroup is not None:
        try:
            return cgroup.procs()
        except (OSError, ValueError):
            pass
    if init_pid and (found := namespace_processes(init_pid)):
        return found
    try:
        listed = top()
        column = listed["Titles"].index("PID")
        return [int(row[column]) for row in listed["Processes"]]
    except Exception:
        return []


def read(path: str) -> str:
    with open(path) as stream:
        return stream.read()


class Cgroup:
    """The container's cgroup files on this host (v1 or v2): what `docker stats` reads, read directly.

    The engine's one-shot stats still wait for its collector's next round (up to a second
    on Docker 20.10 after the first call), so vmkit reads the files itself when it can.
    """

    def __init__(self, version: str, dirs: dict[str, str]):
        self.version, self.dirs = version, dirs

    @classmethod
    def find(cls, pid: int, container_id: str) -> "Cgroup | None":
        """The cgroup of host process `pid`, if it is visible here and belongs to the container."""
        try:
            lines = read(f"/proc/{pid}/cgroup").splitlines()
        except OSError:
            return None
        v1: dict[str, str] = {}
        unified = None
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                unified = path
            for controller in controllers.split(","):
                v1[controller] = (controllers, path)
        dirs = {}
        for controller in ("memory", "cpuacct", "pids"):
            if controller in v1:
                group, path = v1[controller]
                for mount in (controller, group):
                    folder = f"/sys/fs/cgroup/{mount}{path}"
                    if container_id in path and os.path.isdir(folder):
                        dirs[controller] = folder
                        break
        if "memory" in dirs:
            return cls("v1", dirs)
        if unified is not None and container_id in unified and \
                os.path.exists(f"/sys/fs/cgroup{unified}/memory.current"):
            folder = f"/sys/fs/cgroup{unified}"
            return cls("v2", {"memory": folder, "cpuacct": folder, "pids": folder})
        return None

    def _file(self, controller: str, name: str) -> str:
        return read(f"{self.dirs[controller]}/{name}")

    def procs(self) -> list[int]:
        controller = "pids" if "pids" in self.dirs else "memory"
        return [int(line) for line in self._file(controller, "cgroup.procs").split()]

    def memory(self) -> tuple[int, int | None]:
        """(usage less inactive file pages, as `docker stats` shows; limit or None)."""
        stat = keyed(self._file("memory", "memory.stat"))
        if self.version == "v1":
            used = int(self._file("memory", "memory.usage_in_bytes"))
            inactive = stat.get("total_inactive_file", 0)
            limit = int(self._file("memory", "memory.limit_in_bytes"))
            limit = None if limit >= 1 << 62 else limit
        else:
            used = int(self._file("memory", "memory.current"))
            inactive = stat.get("inactive_file", 0)
            limit = int_or_none(self._file("memory", "memory.max"))
        return (used - inactive if inactive < used else used), limit

    def cpu(self) -> tuple[float, float] | None:
        """(user, system) CPU seconds of every process the container ever ran."""
        if "cpuacct" not in self.dirs:
            return None
        if self.version == "v1":
            try:
                return (int(self._file("cpuacct", "cpuacct.usage_user")) / 1e9,
                        int(self._file("cpuacct", "cpuacct.usage_sys")) / 1e9)
            except OSError:
                stat = keyed(self._file("cpuacct", "cpuacct.stat"))
                hz = os.sysconf("SC_CLK_TCK")
                return stat.get("user", 0) / hz, stat.get("system", 0) / hz
        stat = keyed(self._file("cpuacct", "cpu.stat"))
        return stat.get("user_usec", 0) / 1e6, stat.get("system_usec", 0) / 1e6

    def pids_current(self) -> int | None:
        if "pids" not in self.dirs:
            return None
        return int_or_none(self._file("pids", "pids.current"))


def parse_status(text: str) -> dict[str, str]:
    """/proc/<pid>/status as {'CapEff': '0000000000000000', ...}."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()
    return values


def keyed(text: str) -> dict[str, int]:
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            values[parts[0]] = int(parts[1])
    return values


def int_or_none(text: str) -> int | None:
    try:
        return int(text.strip())
    except (ValueError, AttributeError):
        return None
