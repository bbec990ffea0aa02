"""Everything one run started, found by its run id (`VMKIT_RUN`), and its removal.

A process started with `VMKIT_RUN=<id>` in its environment hands the id on: QEMU carries
it in its environment and every container gets the `org.vmkit.run` label. A test run, or
the grader running one student's notebook, can then find and remove exactly what that run
left, and nothing of anyone else's.
"""

from __future__ import annotations

import os

import psutil

from . import cleanup

VARIABLE = "VMKIT_RUN"


def qemus(run_id: str) -> list[psutil.Process]:
    """Running (not zombie) QEMU processes whose environment holds `VMKIT_RUN=run_id`."""
    marker = f"{VARIABLE}={run_id}".encode()
    found = []
    for proc in psutil.process_iter(["name"]):
        try:
            if not (proc.info["name"] or "").startswith("qemu-system") or \
                    proc.status() == psutil.STATUS_ZOMBIE:
                continue
            with open(f"/proc/{proc.pid}/environ", "rb") as stream:
                if marker in stream.read().split(b"\0"):
                    found.append(proc)
        except (OSError, psutil.Error):
            pass
    return found


def containers(client, run_id: str, running_only: bool = False) -> list[dict]:
    """The engine's containers labelled with this run id (all states unless `running_only`)."""
    return client.api.containers(all=not running_only, filters={"label": f"{cleanup.RUN}={run_id}"})


def container_names(found: list[dict]) -> list[str]:
    """Readable names of containers as the engine lists them."""
    return [(info.get("Names") or [info["Id"]])[0].lstrip("/") for info in found]


def remove(run_id: str, client=None, timeout: float = 10.0) -> dict[str, int]:
    """Kill the run's QEMU and force-remove its containers; how many of each there were."""
    import docker

    procs = qemus(run_id)
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=timeout)
    removed = 0
    if client is not None:
        for info in containers(client, run_id):
            try:
                client.api.remove_container(info["Id"], v=True, force=True)
                removed += 1
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: removal already in progress
                    raise
    return {"vms": len(procs), "containers": removed}


def current() -> str | None:
    """This process's run id, if it has one."""
    return os.environ.get(VARIABLE)
