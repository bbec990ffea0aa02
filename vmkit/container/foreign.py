"""The vmkit containers that other processes run, for the memory guard's refusals.

Why here: when the guard refuses a start it names what holds the host's memory, and on a
shared class machine that is often another student's notebook. The guard imports no engine
(it is below the container side): `container` registers `running` with
`memguard.register_foreign`, and the guard asks it only when it refuses.
"""

from __future__ import annotations

from ..host import cleanup, memguard
from . import connection
from .host import Cgroup


def running(exclude: set[str]) -> list[memguard.Running]:
    """Running vmkit containers on the engine that this process did not start (ids in
    `exclude` are its own). Lists nothing when no engine answers (never starts one)."""
    try:
        client, _ = connection.get()
        listed = client.api.containers(filters={"label": f"{cleanup.OWNER}={cleanup.OWNER_VALUE}",
                                                "status": "running"})
    except Exception:
        return []
    found = []
    for info in listed:
        if info["Id"] in exclude:
            continue
        used = 0
        if len(found) < memguard.INSPECT_MAX:
            try:
                pid = client.api.inspect_container(info["Id"])["State"]["Pid"]
                cgroup = Cgroup.find(pid, info["Id"]) if pid else None
                used = cgroup.memory()[0] if cgroup is not None else 0
            except Exception:
                pass
        name = (info.get("Names") or [info["Id"][:12]])[0].lstrip("/")
        found.append(memguard.Running("container", name, used, ours=False))
    return found
