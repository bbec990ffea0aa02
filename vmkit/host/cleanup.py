"""Labels on everything vmkit creates in the Docker Engine, and removal of dead sessions' leftovers.

Every container vmkit creates carries labels saying who made it: the vmkit session (one
per Python process), the creating process's pid *and* its start time (so a recycled pid
is not taken for the original), its PID namespace, the host's boot id and host name, and
the test run (`VMKIT_RUN`) if one is set. A container counts as a leftover only when its
creator is provably dead: same host, and either another boot or, in the same PID
namespace, no process with that pid and start time. Whatever cannot be checked from here
is kept: a creator on another host (a remote engine), in another PID namespace (its pid
means nothing here), or hidden from this process (/proc mounted with hidepid).
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
PID_NS = "org.vmkit.pid-ns"
#: The test run that made it: the environment variable VMKIT_RUN (no label when unset).
RUN = "org.vmkit.run"
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


def pid_namespace() -> str:
    """This process's PID namespace, e.g. 'pid:[4026531836]' ('' if it can't be read)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None if it can't be read."""
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_ticks(pid: int | str) -> int | None:
    """A process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or None."""
    fields = _stat(pid)
    if fields is None or fields[0] == "Z":  # a zombie has finished: its owner is dead
        return None
    return int(fields[19])


def _exists(pid: int) -> bool:
    """Whether process `pid` exists in this PID namespace, visible in /proc or not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, it just isn't ours to signal
        pass
    return True


def _proc_is_ours() -> bool:
    """Whether /proc shows this process's PID namespace (not so after a bare `unshare -p`)."""
    try:
        return os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        return False


def labels(kind: str = "container") -> dict[str, str]:
    """The labels vmkit puts on what it creates now, in this process."""
    found = {OWNER: OWNER_VALUE, KIND: kind, SESSION: _session, PID: str(os.getpid()),
             PID_START: str(start_ticks("self") or 0), PID_NS: pid_namespace(),
             BOOT_ID: boot_id(), HOST: socket.gethostname()}
    run = os.environ.get("VMKIT_RUN")
    if run:
        found[RUN] = run
    return found


def owner_state(found: dict[str, str]) -> tuple[str, str]:
    """('alive' | 'dead' | 'unknown', reason) for the creator named by a container's labels.

    'dead' only when provably so; whatever can't be checked is 'unknown' (and kept).
    """
    if found.get(OWNER) != OWNER_VALUE:
        return "unknown", "vmkit이 만든 것이 아님"
    if found.get(HOST) != socket.gethostname():
        return "unknown", f"다른 호스트(host) {found.get(HOST)!r}에서 만듦"
    if found.get(BOOT_ID) and found.get(BOOT_ID) != boot_id():
        return "dead", "호스트가 재부팅됨 (다른 boot id)"
    if PID_NS in found and found[PID_NS] != pid_namespace():
        return "unknown", f"다른 PID 네임스페이스(PID namespace) {found[PID_NS]!r}에서 만듦"
    try:
        pid, ticks = int(found[PID]), int(found[PID_START])
    except (KeyError, ValueError):
        return "unknown", "만든 프로세스 정보(label)가 없음"
    if pid <= 0 or not _proc_is_ours():
        return "unknown", f"만든 프로세스 {pid}를 이 /proc에서 확인할 수 없음"
    fields = _stat(pid)
    if fields is None:
        if _exists(pid):
            return "unknown", f"만든 프로세스 {pid}가 있지만 보이지 않음 (/proc hidepid 등)"
        return "dead", f"만든 프로세스 {pid}가 없음"
    if fields[0] == "Z":
        return "dead", f"만든 프로세스 {pid}가 끝났음 (zombie)"
    if int(fields[19]) != ticks:
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
    """A container this process could not remove (engine unreachable, interrupted): retry later."""
    _pending.add(container_id)


def forget_pending(container_id: str) -> None:
    """A container this process has removed after all."""
    _pending.discard(container_id)


_last_sweep: dict[str, float] = {}
SWEEP_INTERVAL = 30.0


def sweep(client, url: str) -> list[dict[str, Any]]:
    """`remove_leftovers` at most once per SWEEP_INTERVAL per engine (cheap enough for every start)."""
    now = time.monotonic()
    if not _pending and now - _last_sweep.get(url, -SWEEP_INTERVAL) < SWEEP_INTERVAL:
        return []
    _last_sweep[url] = now
    return remove_leftovers(client)
