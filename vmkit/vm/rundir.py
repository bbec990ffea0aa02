"""Each running VM's runtime directory (its QMP and agent sockets), and who owns it.

Why: QEMU's sockets need a place only this user can reach (0700), named after the VM so
that two running VMs cannot share a name, and short enough for a unix socket path. A
Python process can die without cleaning up (a notebook kernel SIGKILLed), so each
directory holds `owner.json` naming the process that made it (pid and start time) and its
QEMU: a later process tells a live VM's directory from a dead one's and removes the
latter (`cleanup_stale`), with any QEMU still in it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import psutil

from ..errors import InvalidInput, WorkloadError
from ..host import paths


def runtime_root() -> Path:
    """Where each running VM keeps its sockets (0700): `state_dir()/run`.

    Unix socket paths are limited to about 100 bytes, so a long state dir falls back
    to a private directory under /tmp.
    """
    root = paths.state_dir() / "run"
    if len(str(root)) > 60:
        root = Path(tempfile.gettempdir()) / f"vmkit-{os.getuid()}" / "run"
        paths.private_dir(root.parent)
    return paths.private_dir(root)


def create(name: str) -> Path:
    """A new runtime directory for the VM `name`; refused while a live VM holds the name."""
    path = runtime_root() / name
    for _ in range(2):
        try:
            path.mkdir(mode=0o700)
            path.chmod(0o700)
            return path
        except FileExistsError:
            if owner_alive(path):
                raise InvalidInput(f"이름(name)이 '{name}'인 VM이 이미 실행 중입니다.",
                                   "다른 이름을 주거나 name을 비워 두세요.") from None
            shutil.rmtree(path, ignore_errors=True)
    raise WorkloadError(f"실행 디렉터리(runtime dir) {path}를 만들 수 없습니다.")


def write_owner(path: Path, name: str, qemu_pid: int) -> None:
    """Record this process (pid, start time) and its QEMU as the owners of `path`."""
    me = psutil.Process()
    (path / "owner.json").write_text(json.dumps(
        {"name": name, "pid": me.pid, "pid_start": me.create_time(), "qemu_pid": qemu_pid}))


def owner_alive(path: Path) -> bool:
    """Whether the process that made `path` still runs (a directory being made counts as alive)."""
    try:
        owner = json.loads((path / "owner.json").read_text())
    except (OSError, ValueError):
        # Being created right now, or left half-made long ago.
        try:
            return time.time() - path.stat().st_mtime < 60
        except OSError:
            return False
    try:
        proc = psutil.Process(owner["pid"])
        # A zombie has ended (SIGKILLed, its parent not yet told): its VMs are gone.
        return abs(proc.create_time() - owner["pid_start"]) < 1.0 and \
            proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, KeyError, TypeError):
        return False


def cleanup_stale() -> list[str]:
    """Remove runtime dirs whose owning Python process is gone (and any QEMU left in them).

    Returns the names of the VMs cleaned up. Running VMs of live processes are untouched.
    """
    removed = []
    root = runtime_root()
    for path in root.iterdir():
        if not path.is_dir() or owner_alive(path):
            continue
        try:
            qemu_pid = json.loads((path / "owner.json").read_text()).get("qemu_pid")
            proc = psutil.Process(qemu_pid)
            if any(str(path) in arg for arg in proc.cmdline()):
                proc.kill()
                proc.wait(5)
        except (OSError, ValueError, TypeError, psutil.Error):
            pass
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed
