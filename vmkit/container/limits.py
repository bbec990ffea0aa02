"""Which of a container's limits really apply, and how vmkit shows one that does not.

A rootless engine on cgroup v1 accepts memory, CPU and pids limits and silently drops them
(see `engine_kinds`): Podman's inspect then shows HostConfig.Memory/NanoCpus/PidsLimit as 0,
and the container reads "no limit" in its own cgroup files. A limit counts as enforced only
when both say it is there. Wherever vmkit shows a limit that is not, it shows `NOT_APPLIED`.
"""

from __future__ import annotations

from typing import Any, Iterable

NOT_APPLIED = "한도가 적용되지 않음"
KINDS = ("memory", "cpus", "pids")
LABELS = {"memory": "메모리", "cpus": "CPU", "pids": "프로세스 수"}
#: A cgroup v1 "no limit" reads as 2^63 rounded down to a page; anything this large is none.
UNLIMITED = 1 << 62


def limit_value(text: str | None) -> int | None:
    """A cgroup limit file's value in bytes (or count); None for "max", "no limit" or unreadable."""
    try:
        value = int(str(text).strip())
    except ValueError:
        return None
    return None if value < 0 or value >= UNLIMITED else value


def enforced(host_config: dict[str, Any], guest: dict[str, Any]) -> dict[str, bool]:
    """{"memory", "cpus", "pids": applied?} from inspect's HostConfig and what the container read."""
    return {
        "memory": bool(host_config.get("Memory")) and guest.get("mem_limit_bytes") is not None,
        "cpus": bool(host_config.get("NanoCpus") or host_config.get("CpuQuota"))
        and guest.get("cpus") is not None,
        "pids": (host_config.get("PidsLimit") or 0) > 0 and guest.get("pids_limit") is not None,
    }


def combined(each: Iterable[dict[str, bool] | None]) -> dict[str, bool] | None:
    """One verdict for several containers (e.g. a comparison's trials): applied in all of them."""
    known = [entry for entry in each if isinstance(entry, dict)]  # a frame's gaps are NaN
    if not known:
        return None
    return {kind: all(entry.get(kind, False) for entry in known) for kind in KINDS}


def shown(text: str, applied: bool | None) -> str:
    """`text` (a limit as vmkit would show it), or NOT_APPLIED when the limit is known not to apply."""
    return NOT_APPLIED if applied is False else text


def why_not(engine) -> str:
    """Why `engine` (an `engine_kinds.EngineInfo`) applies no limits, in Korean."""
    return (f"루트리스(rootless) {engine.label}이(가) cgroup v{engine.cgroup_version} 위에서 돌아 "
            "컨테이너마다 cgroup을 만들 수 없습니다")


def summary(applied: dict[str, bool], engine=None) -> str:
    """One Korean line: each limit "적용됨" or NOT_APPLIED, and why when `engine` applies none."""
    text = ", ".join(f"{LABELS[kind]} {'적용됨' if applied.get(kind) else NOT_APPLIED}" for kind in KINDS)
    if engine is not None and not engine.limits_enforced:
        text += f" — {why_not(engine)}"
    return text
