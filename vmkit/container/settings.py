"""What a container is created as, how the engine may refuse it, and what the engine applied.

Why here: least privilege is what the isolation lab examines, so it is written down in one
place: no network, no capabilities, no new privileges, a read-only root with a small /tmp
tmpfs, the memory limit with no swap beyond it, the CPU quota, the pids limit, a bounded
log, and SIGTERM to stop. `create` turns the engine's refusals (a name in use, a memory
limit it won't take) into Korean errors; `applied` reads the settings back from inspect, as
the engine really applied them (`Container.security`). The benchmark's `docker run` flags
follow the same settings.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import InvalidInput, WorkloadError
from ..host import cleanup
from ..units import format_bytes
from . import connection, images

TMPFS_SIZE = "16m"


def host_config(api, container) -> dict[str, Any]:
    """The HostConfig for `container` (its memory_bytes, cpus, pids_limit, read_only), made by `api`."""
    return api.create_host_config(
        network_mode="none", privileged=False, cap_drop=["ALL"],
        security_opt=["no-new-privileges"], read_only=container.read_only,
        tmpfs={"/tmp": f"size={TMPFS_SIZE},mode=1777"},
        mem_limit=container.memory_bytes, memswap_limit=container.memory_bytes,
        nano_cpus=int(round(container.cpus * 1e9)), pids_limit=container.pids_limit,
        log_config={"type": "json-file", "config": {"max-size": "1m", "max-file": "1"}},
    )


def create(api, container, config: dict[str, Any], url: str) -> dict[str, Any]:
    """Create `container` with HostConfig `config` on the engine at `url`: its answer ({"Id", "Warnings"})."""
    import docker

    try:
        return connection.call(  # the engine may have gone since the last call (mid-comparison)
            api.create_container,
            container.image, command=container.command, name=container.name,
            labels=cleanup.labels("container"), host_config=config,
            network_disabled=container.network_disabled, stop_signal="SIGTERM",
            stop_timeout=max(1, math.ceil(container.stop_timeout)))
    except docker.errors.ImageNotFound:
        raise images.gone(url, container.image) from None
    except docker.errors.APIError as exc:
        raise _refused(exc, container) from None


def _refused(exc, container):
    message = connection.message(exc)
    if exc.status_code == 409 or "already in use" in message:  # Podman: 500, "already in use"
        return InvalidInput(f"이름(name)이 '{container.name}'인 컨테이너가 엔진에 이미 있습니다.",
                            "다른 이름을 주거나 name을 비워 두세요.")
    if exc.status_code == 400 and "emory" in message:
        return InvalidInput(f"메모리(memory) {format_bytes(container.memory_bytes)}를 엔진이 받지 않습니다.", message)
    return WorkloadError(f"컨테이너(container) '{container.name}'를 만들지(create) 못했습니다.", message)


def applied(info: dict[str, Any]) -> dict[str, Any]:
    """The isolation settings in a container's inspect `info`, as the engine applied them."""
    host, config = info["HostConfig"], info["Config"]
    return {
        "network_disabled": bool(config.get("NetworkDisabled")),
        "network_mode": host.get("NetworkMode"),
        "privileged": bool(host.get("Privileged")),
        "cap_drop": host.get("CapDrop") or [],
        "cap_add": host.get("CapAdd") or [],
        "security_opt": host.get("SecurityOpt") or [],
        "read_only_rootfs": bool(host.get("ReadonlyRootfs")),
        "pids_limit": host.get("PidsLimit"),
        "memory_bytes": host.get("Memory"),
        "nano_cpus": host.get("NanoCpus"),
    }
