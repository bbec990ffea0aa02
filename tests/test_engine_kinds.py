"""Engine kinds as data: parsing what the Docker Engine and Podman say about themselves
(`GET /version`, `/info`, libpod's `/libpod/info`, captured from both real engines on this
host into tests/data/engines/), and Podman's events as a Container hears them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmkit.container import engine_kinds
from vmkit.container.container import Container
from vmkit.container.engine_kinds import EngineInfo

DATA = Path(__file__).resolve().parent / "data" / "engines"


def load(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


def test_podman_is_recognised_and_rootless_on_cgroup_v1():
    info = engine_kinds.parse(load("podman-version"), load("podman-libpod-info"))
    assert info == EngineInfo(kind="podman", version="4.3.1", api_version="1.41", rootless=True,
                              cgroup_version=1)
    assert info.label == "포드맨(Podman)" and info.spec.host_path == "/v4.0.0/libpod/info"
    assert not info.limits_enforced and not info.can_pause
    assert info.to_dict() == {"kind": "podman", "version": "4.3.1", "api_version": "1.41",
                              "rootless": True, "cgroup_version": 1, "label": "포드맨(Podman)",
                              "limits_enforced": False}


def test_podmans_compatible_info_does_not_say_it_is_rootless():
    """Why libpod's own info is asked: the compat `/info` has no rootless entry, MemoryLimit true."""
    compat = load("podman-info")
    assert compat["MemoryLimit"] is True
    assert "name=rootless" not in compat["SecurityOptions"]
    assert engine_kinds.docker_host(compat) == (False, 1)  # what reading it like Docker's would say


def test_docker_is_recognised_and_applies_limits():
    info = engine_kinds.parse(load("docker-version"), load("docker-info"))
    assert (info.kind, info.version, info.api_version) == ("docker", "20.10.24+dfsg1", "1.41")
    assert (info.rootless, info.cgroup_version) == (False, 1)
    assert info.limits_enforced and info.can_pause and info.label == "도커 엔진(Docker Engine)"


@pytest.mark.parametrize("options, cgroup, enforced", [
    (["name=seccomp,profile=default", "name=rootless"], "1", False),  # rootless Docker on v1
    (["name=seccomp,profile=default", "name=rootless", "name=cgroupns"], "2", True),
    (["name=seccomp,profile=default"], "2", True),
    ([], None, True),  # an old engine that does not say: assumed to apply them
])
def test_rootless_docker(options, cgroup, enforced):
    info = dict(load("docker-info"), SecurityOptions=options, CgroupVersion=cgroup)
    if cgroup is None:
        del info["CgroupVersion"]
    assert engine_kinds.parse(load("docker-version"), info).limits_enforced is enforced


def test_cgroup_v2_podman_applies_limits():
    libpod = load("podman-libpod-info")
    libpod["host"]["cgroupVersion"] = "v2"
    info = engine_kinds.parse(load("podman-version"), libpod)
    assert info.rootless and info.cgroup_version == 2 and info.limits_enforced


def test_an_unknown_engine_is_taken_for_docker():
    version = {"Version": "1.0", "ApiVersion": "1.41", "Components": [{"Name": "Something", "Version": "9"}]}
    info = engine_kinds.parse(version, {})
    assert (info.kind, info.version, info.rootless, info.cgroup_version) == ("docker", "1.0", False, None)


def test_podmans_event_names_are_dockers():
    podman = engine_kinds.parse(load("podman-version"), load("podman-libpod-info"))
    docker = engine_kinds.parse(load("docker-version"), load("docker-info"))
    assert [podman.action(a) for a in ("exec", "exec_died", "remove", "died", "die", "oom", "init")] == \
        ["exec_start", "exec_die", "destroy", "die", "die", "oom", "init"]
    assert docker.action("exec_died") == "exec_died"  # Docker's own names pass through


# Raw events as Podman 4.3.1's compatible API sent them for a container killed with SIGKILL
# (trimmed: labels and image left out). Its `kill` names no signal.
PODMAN_KILLED = [
    {"status": "exec", "Action": "exec", "Actor": {"Attributes": {"containerExitCode": "0"}}},
    {"status": "exec_died", "Action": "exec_died", "Actor": {"Attributes": {"containerExitCode": "0"}}},
    {"status": "kill", "Action": "kill", "Actor": {"Attributes": {"containerExitCode": "0"}}},
    {"status": "die", "Action": "die",
     "Actor": {"Attributes": {"containerExitCode": "137", "exitCode": "137"}}},
    {"status": "cleanup", "Action": "cleanup", "Actor": {"Attributes": {"containerExitCode": "0"}}},
]


def test_a_podman_kill_is_heard_as_dockers_with_its_signal():
    c = Container(memory="16M")
    c.engine = engine_kinds.parse(load("podman-version"), load("podman-libpod-info"))
    c.id, c._state = "f" * 64, "running"
    for event in PODMAN_KILLED:
        c._on_engine_event({**event, "id": c.id, "timeNano": None})
    assert [e["event"] for e in c.events()] == ["EXEC_START", "EXEC_DIE", "KILL", "DIE", "CLEANUP"]
    assert c.state == "exited"
    assert c.exit["how"] == "killed" and c.exit["signal"] == 9 and c.exit["exit_code"] == 137
    assert "signal 9" in c.exit["reason"]


@pytest.mark.integration
def test_describe_asks_each_engine_once(docker_engine, podman_engine):
    import docker

    for endpoint, kind in ((docker_engine, "docker"), (podman_engine, "podman")):
        engine_kinds.forget(endpoint.url)
        client = docker.DockerClient(base_url=endpoint.url, version="1.24")
        try:
            first = engine_kinds.describe(client, endpoint.url)
            assert first.kind == kind
            client.close()  # a closed client is not asked again: the URL's answer is kept
            assert engine_kinds.describe(client, endpoint.url) is first
        finally:
            client.close()
    assert engine_kinds.describe(None, podman_engine.url).rootless
