"""Labels on everything vmkit creates in the Docker Engine, and removal of dead sessions' leftovers.

Every container vmkit creates carries labels saying who made it: the vmkit session (one
per Python process), the creating process's pid *and* its start time (so a recycled pid
is not taken for the original), the host's boot id and host name. A container counts as
a leftover only when its creator is provably dead: same host, and either another boot or
no process with that pid and start time. A live notebook's containers are never touched;
containers made on another host (a remote engine) are left alone, since their creator
cannot be checked from here.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from typing import Any

OWNER = "org.vmkit.owner"
SESSION = "org.vmkit.session"
PID = "org.vmkit.pid"
PID_START = "org.vmkit.pid-start"
BOOT_ID = "org.vmkit.boot-id"
HOST = "org.vmkit.host"
KIND = "org.vmkit.kind"
OWNER_VALUE = "vmkit"

_lock = threading.Lock()
_session = secrets.token_hex(8)
#: Container ids whose removal failed (engine unreachable); retried by `remove_leftovers`.
_pending: set[str] = set()


def _new_session() -> None:
    global _session
    _session = secrets.token_hex(8)
    _pending.clear()


os.register_at_fork(after_in_child=_new_session)


def session_id() -> str:
    """This process's vmkit session id (a forked child gets its own)."""
    return _session


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as stream:
            return stream.read().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat") as stream:
            fields = stream.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":  # a zombie has finished: its owner is dead
        return None
    return int(fields[19])


def labels(kind: str = "container") -> dict[str, str]:
    """The labels vmkit puts on what it creates now, in this process."""
    pid = os.getpid()
    return {OWNER: OWNER_VALUE, KIND: kind, SESSION: _session, PID: str(pid),
            PID_START: str(start_ticks(pid) or 0), BOOT_ID: boot_id(), HOST: socket.gethostname()}


def owner_state(found: dict[str, str]) -> tuple[str, str]:
    """('alive' | 'dead' | 'unknown', reason) for the creator named by a container's labels."""
    if found.get(OWNER) != OWNER_VALUE:
        return "unknown", "vmkit이 만든 것이 아님"
    if found.get(HOST) != socket.gethostname():
        return "unknown", f"다른 호스트(host) {found.get(HOST)!r}에서 만듦"
    if found.get(BOOT_ID) and found.get(BOOT_ID) != boot_id():
        return "dead", "호스트가 재부팅됨 (다른 boot id)"
    try:
        pid, ticks = int(found[PID]), int(found[PID_START])
    except (KeyError, ValueError):
        return "unknown", "만든 프로세스 정보(label)가 없음"
    now = start_ticks(pid)
    if now is None:
        return "dead", f"만든 프로세스 {pid}가 없음"
    if now != ticks:
        return "dead", f"pid {pid}가 다른 프로세스에 재사용됨 (pid reuse)"
    if found.get(SESSION) == _session or pid == os.getpid():
        return "alive", "이 프로세스의 세션(session)"
    return "alive", f"만든 프로세스 {pid}가 살아 있음"


def vmkit_containers(client) -> list[dict[str, Any]]:
    """Every container (running or not) with vmkit's owner label, as the engine lists them."""
    return client.api.containers(all=True, filters={"label": f"{OWNER}={OWNER_VALUE}"})


def leftovers(client) -> list[dict[str, Any]]:
    """vmkit containers whose creating process is dead: id, name, state, session, reason."""
    found = []
    for info in vmkit_containers(client):
        state, reason = owner_state(info.get("Labels") or {})
        if state == "dead" or info["Id"] in _pending:
            found.append(_describe(info, reason if state == "dead" else "제거하지 못했던 것(pending)"))
    return found


def _describe(info: dict, reason: str) -> dict[str, Any]:
    names = info.get("Names") or [""]
    found = info.get("Labels") or {}
    return {"id": info["Id"], "name": names[0].lstrip("/"), "state": info.get("State"),
            "session": found.get(SESSION), "pid": found.get(PID), "reason": reason}


def remove_leftovers(client, dry_run: bool = False) -> list[dict[str, Any]]:
    """Remove (force) every leftover of a dead session; returns what was (or would be) removed."""
    import docker

    removed = []
    with _lock:
        for item in leftovers(client):
            if not dry_run:
                try:
                    client.api.remove_container(item["id"], v=True, force=True)
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError as exc:
                    if exc.status_code != 409:  # 409: removal already in progress
                        item["error"] = str(exc)
                        continue
                _pending.discard(item["id"])
            removed.append(item)
        if not dry_run:
            _pending.intersection_update(
                {info["Id"] for info in vmkit_containers(client)} if _pending else set())
    return removed


def remember_pending(container_id: str) -> None:
    """A container this process could not remove (engine unreachable): retry later."""
    _pending.add(container_id)


_last_sweep: dict[str, float] = {}
SWEEP_INTERVAL = 30.0


def sweep(client, url: str) -> list[dict[str, Any]]:
    """`remove_leftovers` at most once per SWEEP_INTERVAL per engine (cheap enough for every start)."""
    now = time.monotonic()
    if not _pending and now - _last_sweep.get(url, -SWEEP_INTERVAL) < SWEEP_INTERVAL:
        return []
    _last_sweep[url] = now
    return remove_leftovers(client)
