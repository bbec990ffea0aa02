"""Engine kinds as data: the Docker Engine and Podman, how each is recognised and what it can do.

vmkit speaks the Docker Engine API to both. Where Podman's compatible API differs, the
difference is a row in `KINDS`, looked up once per engine, never an `if kind ==` elsewhere:

- recognised by `version()["Components"]`: Podman names an entry "Podman Engine";
- its events: Podman 4.3 says `exec` where Docker says `exec_start`, `exec_died` for
  `exec_die` and `remove` for `destroy` (older compat layers also said `died` for `die`); it
  adds `init` and `cleanup`, and its `kill` event carries no signal;
- whether it runs rootless, and on which cgroup version: Docker's `info()` says both
  (SecurityOptions "name=rootless", CgroupVersion). Podman's compatible `info()` says
  neither truthfully (no rootless entry, MemoryLimit true); libpod's own `/libpod/info` does;
- the process that babysits a container on the host (containerd's shim, Podman's conmon).

A rootless engine on cgroup v1 gets no cgroup per container: memory, CPU and pids limits
are silently dropped, there is no freezer (no pause), and its stats are the whole service's.
`EngineInfo.limits_enforced` says so.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping


def _cgroup_version(value) -> int | None:
    """"1", "v2", 2 → 1 or 2; None if unknown."""
    text = str(value or "").strip().lower().lstrip("v")
    return int(text) if text in ("1", "2") else None


def docker_host(info: dict) -> tuple[bool, int | None]:
    """(rootless, cgroup version) from the Docker Engine's `GET /info`."""
    options = info.get("SecurityOptions") or []
    return "name=rootless" in options, _cgroup_version(info.get("CgroupVersion"))


def libpod_host(info: dict) -> tuple[bool, int | None]:
    """(rootless, cgroup version) from libpod's `GET /v4.0.0/libpod/info`."""
    host = info.get("host") or {}
    security = host.get("security") or {}
    return bool(security.get("rootless")), _cgroup_version(host.get("cgroupVersion"))


@dataclass(frozen=True)
class EngineKind:
    """One kind of engine (see the module docstring)."""

    name: str
    label: str  # Korean, with the English term
    component: str  # the `version()["Components"]` entry that names it
    host_path: str  # the document saying rootless / cgroup version (unversioned API path)
    read_host: Callable[[dict], tuple[bool, int | None]]
    event_aliases: Mapping[str, str] = field(default_factory=dict)  # its action → Docker's
    shims: tuple[str, ...] = ()  # host process names of its per-container babysitter


KINDS: dict[str, EngineKind] = {
    "podman": EngineKind(
        "podman", "포드맨(Podman)", "Podman Engine", "/v4.0.0/libpod/info", libpod_host,
        MappingProxyType({"died": "die", "exec": "exec_start", "exec_died": "exec_die",
                          "remove": "destroy"}),
        ("conmon",)),
    "docker": EngineKind(
        "docker", "도커 엔진(Docker Engine)", "Engine", "/info", docker_host,
        MappingProxyType({}), ("containerd-shim", "containerd-shim-runc-v2")),
}
#: An engine whose version names none of the kinds' components is taken for Docker.
DEFAULT = "docker"


def identify(version: dict) -> EngineKind:
    """The kind of engine whose `GET /version` answer is `version`."""
    names = {component.get("Name") for component in version.get("Components") or ()}
    return next((kind for kind in KINDS.values() if kind.component in names), KINDS[DEFAULT])


@dataclass(frozen=True)
class EngineInfo:
    """What vmkit knows of one engine, asked once per URL (see `describe`)."""

    kind: str
    version: str
    api_version: str
    rootless: bool
    cgroup_version: int | None

    @property
    def spec(self) -> EngineKind:
        return KINDS[self.kind]

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def limits_enforced(self) -> bool:
        """Whether containers get a cgroup of their own (limits, pause, per-container stats).

        Not for a rootless engine on cgroup v1: it cannot create cgroups there.
        """
        return not (self.rootless and self.cgroup_version == 1)

    @property
    def can_pause(self) -> bool:
        """Pausing needs the cgroup freezer, so a container cgroup of its own."""
        return self.limits_enforced

    def action(self, action: str) -> str:
        """An event action of this engine under Docker's name ('exec_died' → 'exec_die')."""
        return self.spec.event_aliases.get(action, action)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label, "limits_enforced": self.limits_enforced}


def parse(version: dict, host: dict) -> EngineInfo:
    """An EngineInfo from `GET /version` and the kind's host document (`EngineKind.host_path`)."""
    kind = identify(version)
    own = next((c for c in version.get("Components") or () if c.get("Name") == kind.component), {})
    rootless, cgroup = kind.read_host(host)
    return EngineInfo(kind=kind.name, version=str(own.get("Version") or version.get("Version") or "?"),
                      api_version=str(version.get("ApiVersion") or "?"), rootless=rootless,
                      cgroup_version=cgroup)


def ping(client, timeout: float) -> None:
    """Raise unless the engine answers `GET /_ping` within `timeout` (Podman's `GET /version`
    takes a second or more: it runs conmon and runc to ask their versions)."""
    api = client.api
    api._result(api._get(api._url("/_ping", versioned_api=False), timeout=timeout))


_cache: dict[str, EngineInfo] = {}
_lock = threading.Lock()


def describe(client, url: str | None = None) -> EngineInfo:
    """What the engine behind docker-py `client` is; asked once per `url` (when given)."""
    with _lock:
        if url is not None and url in _cache:
            return _cache[url]
    version = client.version()
    api = client.api
    response = api._get(api._url(identify(version).host_path, versioned_api=False))
    info = parse(version, api._result(response, json=True))
    if url is not None:
        with _lock:
            _cache[url] = info
    return info


def forget(url: str | None = None) -> None:
    """Drop what `describe` remembered (of `url`, or of every engine)."""
    with _lock:
        if url is None:
            _cache.clear()
        else:
            _cache.pop(url, None)
