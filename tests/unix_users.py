"""Real unix users for the class tests, removed with everything they ran.

`student(name)` is a context manager: it creates the user (`useradd -m`, which gives a
subuid/subgid range on Debian) and its runtime dir `/run/user/<uid>` (0700), and on the way
out, even after a failure, kills every process of that uid (by pid), removes the runtime dir,
and deletes the user with its home (`userdel -r`). `podman_service()` starts the user's own
rootless Podman service (its Docker-compatible API) as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class Student:
    name: str
    uid: int
    gid: int
    home: Path

    @property
    def runtime_dir(self) -> Path:
        return Path(f"/run/user/{self.uid}")

    @property
    def podman_socket(self) -> Path:
        return self.runtime_dir / "podman" / "podman.sock"

    def env(self, **extra: str) -> dict[str, str]:
        """A login-like environment for this user's processes."""
        env = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
               "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
               "XDG_RUNTIME_DIR": str(self.runtime_dir)}
        env.update(extra)
        return env

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run `argv` as this user (no shell, no su)."""
        kwargs.setdefault("env", self.env())
        return subprocess.run(argv, user=self.uid, group=self.gid, extra_groups=[],
                              cwd=self.home, **kwargs)


def processes_of(uid: int) -> list[int]:
    """Pids of the live (non-zombie) processes whose real uid is `uid`."""
    found = []
    for proc in psutil.process_iter(["uids", "status"]):
        uids = proc.info["uids"]
        if uids and uids.real == uid and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc.pid)
    return found


def kill_all(uid: int, timeout: float = 10.0) -> None:
    """SIGKILL every process of `uid`, one pid at a time, until none is left."""
    deadline = time.monotonic() + timeout
    while (pids := processes_of(uid)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def remove(name: str) -> None:
    """Kill the user's processes, remove its runtime dir, home and account (if they exist)."""
    if not exists(name):
        return
    entry = pwd.getpwnam(name)
    kill_all(entry.pw_uid)
    shutil.rmtree(f"/run/user/{entry.pw_uid}", ignore_errors=True)
    subprocess.run(["userdel", "-r", "-f", name], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(entry.pw_dir, ignore_errors=True)


@contextmanager
def student(name: str, groups: tuple[str, ...] = ()):
    """A real unix user for the duration of the block (a leftover of an earlier run is removed)."""
    remove(name)
    argv = ["useradd", "-m", "-s", "/bin/bash"]
    if groups:
        argv += ["-G", ",".join(groups)]
    subprocess.run(argv + [name], check=True)
    try:
        entry = pwd.getpwnam(name)
        user = Student(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))
        user.runtime_dir.mkdir(parents=True, exist_ok=True)
        os.chown(user.runtime_dir, user.uid, user.gid)
        user.runtime_dir.chmod(0o700)
        yield user
    finally:
        remove(name)


def podman_service(user: Student, timeout: float = 30.0) -> tuple[subprocess.Popen, str]:
    """Start `podman system service` as `user`; returns the process and its DOCKER_HOST url."""
    user.podman_socket.parent.mkdir(exist_ok=True)
    os.chown(user.podman_socket.parent, user.uid, user.gid)
    url = f"unix://{user.podman_socket}"
    proc = subprocess.Popen(
        ["podman", "system", "service", "--time=0", url], env=user.env(),
        user=user.uid, group=user.gid, extra_groups=[], cwd=user.home,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not user.podman_socket.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"podman system service for {user.name} did not start")
        time.sleep(0.1)
    return proc, url
