"""The class hub's spawner: each student's server as that unix user, in a cgroup of its own.

`ClassSpawner` is JupyterHub's `LocalProcessSpawner` (the server runs as the student, started
by the hub running as root) plus what a class of vmkit labs needs:

- the environment of class mode: `VMKIT_MODE=class`, the student's runtime dir
  (`/run/user/<uid>`, made here as logind would), `DOCKER_HOST` at the rootless Podman
  service the launcher (`start-singleuser`) starts as the student (with the class's
  `containers.conf`), the shared read-only guest artifacts (`VMKIT_CACHE`), the students' venv
  first on `PATH`;
- limits per student: a memory cgroup (`mem_limit`) and a pids cgroup (`tasks_max`), which the
  server joins before it drops root, so the kernel, QEMU, Podman and its containers (rootless
  Podman on cgroup v1 cannot make cgroups, so they stay in the server's) all count;
- cleanup when the server stops: every process left in the student's cgroup is killed by
  pid, the cgroup and the runtime dir are removed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import time
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Integer, Unicode

from vmkit.experiments.environment import host_cgroup_version

CGROUP_ROOT = Path("/sys/fs/cgroup")


def own_cgroup(controller: str) -> str:
    """This process's cgroup path for a v1 `controller` ("" for v2's unified hierarchy)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return "/"


class StudentCgroup:
    """The cgroup dirs of one student's server: `<hub's cgroup>/vmkit-class/<name>`.

    memory and pids set the limits; cpuacct only counts (the class benchmark's CPU figures).
    """

    def __init__(self, name: str):
        self.version = host_cgroup_version()
        if self.version == 2:
            base = CGROUP_ROOT / own_cgroup("").lstrip("/") / "vmkit-class"
            self.dirs = {"memory": base / name, "pids": base / name, "cpuacct": base / name}
        else:
            self.dirs = {controller: CGROUP_ROOT / controller / own_cgroup(controller).lstrip("/")
                         / "vmkit-class" / name for controller in ("memory", "pids", "cpuacct")}

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
        for controller, folder in self.dirs.items():
            folder.mkdir(parents=True, exist_ok=True)
        (self.dirs["memory"] / "memory.limit_in_bytes").write_text(str(mem_limit or -1))
        (self.dirs["pids"] / "pids.max").write_text(str(tasks_max))

    def procs_files(self) -> list[Path]:
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
        """What the student's processes use now (the cgroup's memory usage)."""
        name = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        try:
            return int((self.dirs["memory"] / name).read_text())
        except (OSError, ValueError):
            return None

    def cpu_seconds(self) -> float | None:
        """CPU time used by every process the student's server ever ran (user + system)."""
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


class ClassSpawner(LocalProcessSpawner):
    """LocalProcessSpawner for vmkit's labs: class mode, own Podman, cgroup limits, cleanup."""

    prefix = Unicode("/opt/vmkit-class", help="Where the students' environment lives "
                     "(deploy/jupyterhub/install-class-env.sh).").tag(config=True)
    tasks_max = Integer(1024, help="Most processes and threads a student's server may have "
                        "(pids cgroup).").tag(config=True)

    def _passwd(self):
        return pwd.getpwnam(self.user.name)

    def runtime_dir(self) -> Path:
        return Path(f"/run/user/{self._passwd().pw_uid}")

    def cgroup(self) -> StudentCgroup:
        return StudentCgroup(self.user.name)

    def get_env(self):
        env = super().get_env()
        runtime = self.runtime_dir()
        env.update({
            "VMKIT_MODE": "class",
            "XDG_RUNTIME_DIR": str(runtime),
            "DOCKER_HOST": f"unix://{runtime}/podman/podman.sock",
            "VMKIT_CACHE": f"{self.prefix}/cache",
            "CONTAINERS_CONF": f"{self.prefix}/containers.conf",
            "PATH": f"{self.prefix}/venv/bin:/usr/local/bin:/usr/bin:/bin",
        })
        return env

    def make_preexec_fn(self, name):
        drop_root = super().make_preexec_fn(name)
        procs = [str(path) for path in self.cgroup().procs_files()]

        def preexec():
            for path in procs:  # join the student's cgroups while still root
                with open(path, "w") as handle:
                    handle.write(str(os.getpid()))
            drop_root()

        return preexec

    async def start(self):
        self._clean()  # whatever an earlier server of this student left
        entry = self._passwd()
        runtime = self.runtime_dir()
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.chown(runtime, entry.pw_uid, entry.pw_gid)
        self.cgroup().create(self.mem_limit, self.tasks_max)
        return await super().start()

    async def stop(self, now=False):
        await super().stop(now=now)
        self._clean()

    def _clean(self) -> None:
        cgroup = self.cgroup()
        killed = cgroup.kill_all()
        if killed:
            self.log.warning("Killed %d leftover process(es) of %s: %s", len(killed),
                             self.user.name, ", ".join(killed))
        cgroup.remove()
        shutil.rmtree(self.runtime_dir(), ignore_errors=True)
