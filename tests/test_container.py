"""vmkit.Container on a real Docker Engine (vmkit's private one unless another answers)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import docker
import pytest

from vmkit import cleanup, cli_container
from vmkit import engine as engine_mod
from vmkit.container import Container
from vmkit.errors import EngineError, InvalidInput, WorkloadError, WorkloadTimeout

pytestmark = pytest.mark.integration
MiB = 1 << 20


@pytest.fixture(scope="module")
def client(docker_engine, guest_artifacts):
    """A docker-py client of the engine the tests use, with vmkit's image present."""
    c = docker.DockerClient(base_url=docker_engine.url)
    engine_mod.ensure_image(c, guest_artifacts)
    yield c
    c.close()


def mine(client) -> list[dict]:
    """Containers carrying this process's vmkit session label."""
    return client.api.containers(all=True, filters={"label": f"{cleanup.SESSION}={cleanup.session_id()}"})


@pytest.fixture(autouse=True)
def nothing_left_behind(client):
    """Every test must end with no container of this session on the engine."""
    yield
    left = mine(client)
    for info in left:
        client.api.remove_container(info["Id"], force=True)
    assert not left, f"containers left behind: {[i['Names'] for i in left]}"


def test_lifecycle(client):
    with Container(memory="64M", cpus=1) as c:
        trace = c.trace
        assert c.state == "running"
        names = list(trace.phases)
        assert names == ["create", "started", "first_output", "ready", "agent"]
        times = list(trace.phases.values())
        assert times == sorted(times) and times[0] >= trace.origin
        assert 0 < trace.ready_s < 10
        assert trace.guest["kernel"] == platform.release()  # the host's kernel
        assert trace.guest["mem_limit_bytes"] == 64 * MiB
        assert trace.guest["mem_total_bytes"] > 64 * MiB  # /proc/meminfo shows the host's
        assert "VMKIT-READY" in c.console_log()
        info = client.api.inspect_container(c.id)
        labels = info["Config"]["Labels"]
        assert labels[cleanup.OWNER] == "vmkit" and labels[cleanup.PID] == str(os.getpid())
        assert cleanup.owner_state(labels)[0] == "alive"
        assert [e["event"] for e in c.events()][:1] == ["CREATE"]
    assert c.state == "removed" and c.last_stop["method"] == "SIGTERM"
    c.stop()  # again: harmless
    with pytest.raises(WorkloadError):
        c.guest("true")


def test_limits_and_least_privilege(client):
    with Container(memory="48M", cpus=0.5, pids_limit=32) as c:
        guest = c.trace.guest
        assert guest["mem_limit_bytes"] == 48 * MiB
        assert guest["cpus"] == pytest.approx(0.5)
        assert guest["pids_limit"] == 32
        sec = c.security()
        assert sec["cap_eff"] == "0000000000000000" and sec["no_new_privs"]
        assert sec["network_disabled"] and not sec["privileged"] and sec["read_only_rootfs"]
        assert c.guest("cat /proc/net/dev | grep -c :").strip() == "1"  # only lo
        c.guest("touch /x")
        assert c.last_rc != 0  # read-only root
        c.guest("touch /tmp/x", check=True)  # the small tmpfs is writable
        # The pids limit holds: 40 sleeps cannot all start.
        out = c.guest("(for i in $(seq 40); do sleep 5 >/dev/null 2>&1 & done) 2>&1 | grep -c fork; true")
        assert int(out.strip() or 0) > 0


def test_oom_kill_observed(client):
    with Container(memory="16M") as c:
        since = time.monotonic() - 1
        # oom_score_adj 1000: the kernel's OOM killer picks this command, not the agent.
        c.guest("echo 1000 > /proc/self/oom_score_adj; head -c 64m /dev/zero | tail > /dev/null", timeout=20)
        assert c.last_rc == 137  # tail was OOM-killed (SIGKILL)
        event = c.wait_event("OOM", timeout=5, since=since)
        assert event is not None and event["source"] == "docker"
        assert c.guest("echo alive").strip() == "alive"  # the agent itself survived
    # Now the container's main process itself runs out of memory.
    hog = ["sh", "-c", "echo VMKIT-READY; sleep 0.3; x=$(head -c 64m /dev/zero | tr '\\0' a); sleep 60"]
    with Container(memory="16M", command=hog) as c:
        assert c.wait_event("DIE", timeout=15) is not None
        assert c.exit["how"] == "oom"
        with pytest.raises(WorkloadError, match="OOM"):
            c.guest("true")


def test_usage_plausible(client):
    with Container(memory="64M") as c:
        c.guest("head -c 8m /dev/zero > /tmp/f; x=0; while [ $x -lt 20000 ]; do x=$((x+1)); done")
        began = time.monotonic()
        usage = c.usage(inside=False)
        assert time.monotonic() - began < 0.5  # no two-second stats wait
        assert usage.processes >= 1 and usage.rss_bytes > 100 * 1024
        assert 0 < usage.pss_bytes <= usage.rss_bytes
        assert 8 * MiB <= usage.mem_bytes <= 64 * MiB  # the tmpfs file counts
        assert usage.mem_limit_bytes == 64 * MiB
        assert usage.cpu_user_s + usage.cpu_system_s > 0
        assert usage.pids_current >= 1 and usage.shim_rss_bytes > 0
        inside = c.usage()
        assert inside.guest_mem_total_bytes > 64 * MiB


def test_pause_resume(client):
    with Container(memory="32M") as c:
        since = time.monotonic()
        c.pause()
        assert c.state == "paused" and client.api.inspect_container(c.id)["State"]["Paused"]
        assert c.wait_event("PAUSE", timeout=5, since=since - 1) is not None
        with pytest.raises(WorkloadError, match="paused"):
            c.guest("true")
        c.resume()
        assert c.wait_event("RESUME", timeout=5, since=since - 1) is not None
        assert c.guest("echo back").strip() == "back"
        c.pause()  # stop() must also end a paused container
    assert c.state == "removed"


def test_exec(client):
    with Container(memory="32M") as c:
        out = c.guest("echo out; echo err >&2; exit 3")  # two pipes: their order may vary
        assert sorted(out.splitlines()) == ["err", "out"] and c.last_rc == 3
        with pytest.raises(WorkloadError):
            c.guest("exit 1", check=True)
        assert c.exec(["cat", "/proc/1/cmdline"])[1].startswith("/bin/sh")
        began = time.monotonic()
        with pytest.raises(WorkloadTimeout):
            c.guest("sleep 30", timeout=0.5)
        assert time.monotonic() - began < 3
        time.sleep(0.3)
        assert "sleep 30" not in c.guest("ps")  # the timed-out command was killed


def test_killed_from_outside(client):
    c = Container(memory="32M")
    c.start()
    try:
        client.api.kill(c.id)
        assert c.wait_event("DIE", timeout=10) is not None
        assert c.exit["how"] == "killed" and c.exit["signal"] == 9
        with pytest.raises(WorkloadError, match="killed from outside"):
            c.guest("true")
        assert not c.running
    finally:
        c.stop()
    assert c.last_stop["method"] == "already-exited"


CHILD = textwrap.dedent("""
    import sys, time
    from vmkit.container import Container
    c = Container(memory="16M")
    c.start()
    print(c.id, flush=True)
    time.sleep(600)
""")


def test_cleanup_removes_only_dead_sessions(client, capsys):
    env = dict(os.environ)
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, env=env)
    try:
        child_id = child.stdout.readline().strip()
        assert child_id, "the child did not start its container"
        with Container(memory="16M") as own:
            # While the child lives, its container is not a leftover.
            assert child_id not in {item["id"] for item in cleanup.leftovers(client)}
            os.kill(child.pid, signal.SIGKILL)  # no atexit, no stop(): a crashed kernel
            child.wait(10)
            assert child_id in {item["id"] for item in cleanup.leftovers(client)}
            args = argparse.Namespace(dry_run=False, json=True)
            assert cli_container.cmd_cleanup(args) == 0
            report = json.loads(capsys.readouterr().out)
            assert child_id in {item["id"] for item in report["containers"]}
            assert own.id not in {item["id"] for item in report["containers"]}
            with pytest.raises(docker.errors.NotFound):
                client.api.inspect_container(child_id)
            assert own.guest("echo still").strip() == "still"  # a live session's container survives
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


def test_next_start_sweeps_leftovers(client):
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    child_id = child.stdout.readline().strip()
    child.kill()
    child.wait(10)
    cleanup._last_sweep.clear()  # the sweep runs at most every 30 s per process
    with Container(memory="16M"):
        with pytest.raises(docker.errors.NotFound):
            client.api.inspect_container(child_id)


def test_bad_input(client):
    for memory in ("5M", "abc", "0", -1):
        with pytest.raises(InvalidInput):
            Container(memory=memory)
    for cpus in (0, "x", 1000):
        with pytest.raises(InvalidInput):
            Container(cpus=cpus)
    with pytest.raises(InvalidInput):
        Container(name="bad name!")
    with pytest.raises(InvalidInput, match="registry"):
        Container(image="vmkit/no-such-image:1").start(timeout=10)
    assert not mine(client)


def test_start_failures_leave_nothing(client):
    with pytest.raises(WorkloadTimeout):
        Container(memory="16M", command=["sleep", "30"]).start(timeout=1.5)
    with pytest.raises(WorkloadError, match="exit 3"):
        Container(memory="16M", command=["sh", "-c", "echo no marker; exit 3"]).start(timeout=10)
    with pytest.raises(WorkloadError, match="start"):
        Container(memory="16M", command=["/no/such/program"]).start(timeout=10)
    with Container(memory="16M", name="vmkit-test-dup"):
        with pytest.raises(InvalidInput, match="이미"):
            Container(memory="16M", name="vmkit-test-dup").start(timeout=10)
    assert not mine(client)


def test_no_engine(client, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    monkeypatch.setenv("VMKIT_STATE", str(tmp_path / "state"))
    with pytest.raises(EngineError, match="vmkit engine start"):
        Container(memory="32M").start(timeout=10)


def test_run_json(client, capsys):
    args = argparse.Namespace(memory="64M", cpus="1", image=None, pids_limit=64, timeout=30.0, json=True)
    assert cli_container.cmd_run(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "container" and report["ready_s"] > 0
    assert set(report["phases"]) >= {"create", "started", "first_output", "ready"}
    assert report["guest"]["kernel"] == platform.release()
    assert report["guest"]["mem_limit_bytes"] == 64 * MiB
    for key in ("rss_bytes", "pss_bytes", "mem_bytes"):
        assert report["usage"][key] > 0
    assert not client.api.containers(all=True, filters={"name": report["name"]})


def test_engine_restart_mid_run(monkeypatch, guest_artifacts):
    """A second private engine (its own state dir) is stopped and started under a container."""
    if os.geteuid() != 0:
        pytest.skip("starting a private engine needs root")
    state = tempfile.mkdtemp(prefix="vk-", dir="/tmp")  # short: unix socket paths are limited
    monkeypatch.setenv("VMKIT_STATE", state)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    if engine_mod.find() is not None and not engine_mod.find().private:
        pytest.skip("another engine answers first")
    endpoint = engine_mod.start()
    monkeypatch.setenv("DOCKER_HOST", endpoint.url)
    try:
        c = Container(memory="32M")
        c.start()
        try:
            engine_mod.stop()
            with pytest.raises(EngineError):
                c.guest("true")
            engine_mod.start()
            with pytest.raises(WorkloadError, match="engine"):
                c.guest("true")
        finally:
            c.stop()
        other = docker.DockerClient(base_url=endpoint.url)
        try:
            assert not other.api.containers(all=True, filters={"label": f"{cleanup.OWNER}=vmkit"})
        finally:
            other.close()
    finally:
        engine_mod.stop()
        subprocess.run(["rm", "-rf", "--one-file-system", state], check=False)
