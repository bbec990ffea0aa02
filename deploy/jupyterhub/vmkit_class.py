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
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Integer, Unicode

from vmkit.host.cgroups import ChildCgroup


class StudentCgroup(ChildCgroup):
    """The cgroup dirs of one student's server: `<hub's cgroup>/vmkit-class/<name>`."""

    def __init__(self, name: str):
        super().__init__("vmkit-class", name)


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
