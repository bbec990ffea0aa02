"""Class mode: which mode vmkit is in, what it refuses there (in Korean, naming what the
instructor sets up), and vmkit run by a real non-root student against their own rootless
Podman, with a shared read-only artifact cache.

The student's own Python cannot be the project's venv, nor read this checkout (both may
live under /root, which is 0700): the as-the-student test runs the class environment's
Python with a world-readable copy of this checkout's vmkit (`other_user_python`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from conftest import daemons_of
from vmkit import cli
from vmkit.container import engine
from vmkit.host import mode
from vmkit.errors import EngineError, InvalidInput

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def clean_env(monkeypatch):
    """No mode, no JupyterHub, no DOCKER_HOST: each test sets what it needs."""
    for name in ("VMKIT_MODE", "JUPYTERHUB_USER", "DOCKER_HOST"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# ---------------------------------------------------------------- which mode

@pytest.mark.parametrize("env, expected", [
    ({}, "single"),
    ({"VMKIT_MODE": "class"}, "class"),
    ({"VMKIT_MODE": " Class "}, "class"),
    ({"JUPYTERHUB_USER": "kim"}, "class"),  # a JupyterHub single-user server
    ({"JUPYTERHUB_USER": "kim", "VMKIT_MODE": "single"}, "single"),  # asked for explicitly
])
def test_mode(clean_env, env, expected):
    for name, value in env.items():
        clean_env.setenv(name, value)
    assert mode.mode() == expected and mode.is_class() == (expected == "class")


def test_unknown_mode_is_refused(clean_env):
    clean_env.setenv("VMKIT_MODE", "teacher")
    with pytest.raises(InvalidInput, match="VMKIT_MODE의 값 'teacher'는 알 수 없습니다"):
        mode.mode()


# ---------------------------------------------------------------- what class mode refuses

def test_class_mode_uses_only_docker_host(clean_env, tmp_path):
    clean_env.setenv("VMKIT_MODE", "class")
    assert engine.candidates() == []  # never the system socket, never a private dockerd
    with pytest.raises(EngineError) as info:
        engine.require()
    message = str(info.value)
    assert "수업 모드(class mode)인데 DOCKER_HOST가 설정되지 않아" in message
    assert "podman system service --time=0 unix://$XDG_RUNTIME_DIR/podman/podman.sock" in message
    assert "DOCKER_HOST=unix://$XDG_RUNTIME_DIR/podman/podman.sock" in message
    assert "deploy/jupyterhub/" in message
    dead = f"unix://{tmp_path}/podman.sock"
    clean_env.setenv("DOCKER_HOST", dead)
    assert engine.candidates() == [("DOCKER_HOST", dead, False)]
    with pytest.raises(EngineError, match="의 컨테이너 엔진\\(container engine\\)이 응답하지 않습니다"):
        engine.require()


def test_class_mode_never_starts_an_engine(clean_env, tmp_path, capsys):
    clean_env.setenv("VMKIT_MODE", "class")
    clean_env.setenv("VMKIT_STATE", str(tmp_path))
    refusal = "수업 모드(class mode)에서는 vmkit이 컨테이너 엔진을 시작하지 않습니다"
    for call in (engine.start, lambda: engine.start(private=True),
                 lambda: engine.run_with_engine([sys.executable, "-c", "pass"])):
        with pytest.raises(EngineError, match=re.escape(refusal)) as info:
            call()
        assert "podman system service" in str(info.value)
    assert refusal in str(engine.cannot_start())
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        for argv in (["engine", "start"], ["engine", "exec", "--", "true"]):
            assert cli.main(argv) == 2
            assert refusal in capsys.readouterr().err
    finally:  # main() makes SIGTERM raise in the CLI; not in pytest
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert engine.private_pid() is None and not daemons_of(tmp_path)


# ---------------------------------------------------------------- doctor

DOCTOR_ENGINE_KEYS = {"usable", "kind", "label", "version", "api_version", "rootless", "cgroup_version",
                      "limits_enforced", "endpoint", "source", "reason"}


@pytest.mark.integration
def test_doctor_json_in_class_mode_on_rootless_podman(clean_env, podman_engine, guest_artifacts, capsys):
    clean_env.setenv("VMKIT_MODE", "class")
    clean_env.setenv("DOCKER_HOST", podman_engine.url)
    assert cli.main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "class"
    assert set(report["engine"]) == DOCTOR_ENGINE_KEYS and report["docker"] == report["engine"]
    found = report["engine"]
    assert (found["kind"], found["rootless"], found["cgroup_version"], found["limits_enforced"]) == \
        ("podman", True, 1, False)
    assert found["source"] == "DOCKER_HOST" and "한도가 적용되지 않음" in found["reason"]
    assert set(report["accelerators"]) == {"kvm", "tcg"}
    assert cli.main(["doctor"]) == 0
    text = capsys.readouterr().out
    assert "수업 모드(class mode)" in text and "포드맨(Podman)" in text and "루트리스(rootless)" in text


# ---------------------------------------------------------------- a real student

STUDENT_SCRIPT = textwrap.dedent("""
    import json, os, psutil
    from vmkit import VM, Container
    from vmkit.container import engine
    from vmkit.errors import EngineError, WorkloadError
    out = {"uid": os.getuid()}
    with VM(memory="128M") as vm:
        out["vm"] = {"accel": vm.trace.accel, "reason": vm.trace.accel_reason,
                     "qemu_uid": psutil.Process(vm.pid).uids().real,
                     "kernel": vm.guest("uname -r").strip()}
    with Container(memory="32M") as c:
        out["container"] = {"engine": c.engine.to_dict(), "limits": c.limits_enforced,
                            "uids": sorted({psutil.Process(p).uids().real for p in c.host_pids()}),
                            "echo": c.guest("echo hi").strip(),
                            "usage": c.usage(inside=False).to_dict()}
        try:
            c.pause()
        except WorkloadError as exc:
            out["pause"] = str(exc)
    try:
        engine.start()
    except EngineError as exc:
        out["start"] = str(exc)
    print(json.dumps(out))
""")


@pytest.fixture
def shared_cache(guest_artifacts):
    """A copy of the artifact cache owned by root, readable by all and writable by none else."""
    root = Path(tempfile.mkdtemp(prefix="vmkit-shared-cache-", dir="/tmp"))
    try:
        shutil.copytree(guest_artifacts.root, root / guest_artifacts.root.name)
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def kvm_closed_to(user) -> bool:
    """/dev/kvm exists and `user` may not open it (not for others, not in its group)."""
    try:
        st = os.stat("/dev/kvm")
    except OSError:
        return False
    groups = os.getgrouplist(user.name, user.gid)
    return not st.st_mode & 0o006 and not (st.st_gid in groups and st.st_mode & 0o060)


def listing(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.mark.integration
def test_a_student_runs_vmkit_as_themselves(podman_engine, shared_cache, other_user_python):
    """A non-root user in class mode: QEMU under TCG with KVM's reason, a container on their
    own rootless Podman, a read-only shared cache that vmkit does not write into."""
    user = podman_engine.user
    python = other_user_python.python
    env = other_user_python.env(**user.env(VMKIT_MODE="class", VMKIT_CACHE=str(shared_cache),
                                           DOCKER_HOST=podman_engine.url))
    before = listing(shared_cache)
    done = user.run([python, "-c", STUDENT_SCRIPT], env=env, capture_output=True, text=True,
                    timeout=180)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["uid"] == user.uid
    vm = out["vm"]
    assert vm["qemu_uid"] == user.uid and vm["kernel"]
    if kvm_closed_to(user):  # KVM only for who may open /dev/kvm: TCG, and the reason says why
        assert vm["accel"] == "tcg" and vm["reason"].startswith("TCG(소프트웨어 에뮬레이션)")
        assert "/dev/kvm에 읽기/쓰기 권한(permission)이 없습니다" in vm["reason"]
        assert "kvm 그룹(group)" in vm["reason"]
    container = out["container"]
    assert container["engine"]["kind"] == "podman" and container["engine"]["rootless"]
    assert container["limits"] == {"memory": False, "cpus": False, "pids": False}
    assert container["echo"] == "hi"
    assert container["uids"] == [user.uid]  # the container's root is the student, not root
    usage = container["usage"]
    assert usage["processes"] >= 1 and usage["mem_bytes"] == usage["rss_bytes"] > 0
    assert usage["mem_limit_bytes"] is None
    assert "일시 정지(pause)할 수 없습니다" in out["pause"] and "프리저(freezer)" in out["pause"]
    assert "수업 모드(class mode)에서는 vmkit이 컨테이너 엔진을 시작하지 않습니다" in out["start"]
    assert listing(shared_cache) == before  # nothing written into the shared cache
    state = user.home / ".local" / "state" / "vmkit"
    assert (state / "apt-memo.json").exists()  # the memo went to the student's own state dir
