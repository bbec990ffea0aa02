"""What a measurement ran on: the mode, the engine, the cgroup version, the accelerator.

Every comparison (`compare`) and every benchmark's JSON records it, so that a figure from
a rootless Podman on cgroup v1 (no limits), or from TCG, is never read as one from Docker
or KVM.
"""

from __future__ import annotations

import os
import platform
from typing import Any, Iterable

from ..host import cgroups, ksm, mode


def host_cgroup_version() -> int:
    """2 on a unified (v2-only) hierarchy, else 1 (`host.cgroups.version`)."""
    return cgroups.version()


def describe(kinds: Iterable[str] = ("vm", "container"), accel: str = "auto") -> dict[str, Any]:
    """The environment of a measurement of `kinds` ('vm', 'vm-restore', 'container').

    engine: `engine_kinds.EngineInfo.to_dict()` of the engine that answers (None if no
    container is measured or none answers); accelerator and accel_reason: what a VM asking
    for `accel` gets here, and why (None without VMs).
    """
    kinds = tuple(kinds)
    env: dict[str, Any] = {
        "mode": mode.mode(),
        "host": {"kernel": platform.release(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "engine": None, "cgroup_version": host_cgroup_version(),
        "accelerator": None, "accel_reason": None,
    }
    if "container" in kinds:
        from ..container import engine

        endpoint = engine.find()
        if endpoint is not None:
            info = engine.describe(endpoint)
            env["engine"] = info.to_dict()
            env["cgroup_version"] = info.cgroup_version or env["cgroup_version"]
    if any(kind.startswith("vm") for kind in kinds):
        from ..vm.vm import resolve_accel

        env["accelerator"], env["accel_reason"] = resolve_accel(accel)
        env["ksm_running"] = ksm.status()["running"]
    return env
