"""vmkit.Container on a real Docker Engine (vmkit's private one unless another answers), and the
tests marked `both_engines` also on a real user's rootless Podman (cgroup v1 here: no limits,
no pause, no OOM kill — asserted as such).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import docker
import psutil
import pytest
import requests

from vmkit.host import cleanup
from vmkit.cli import container as cli_container
from vmkit.container import engine_kinds
from vmkit.container import container as container_mod
from vmkit.container import engine as engine_mod
from vmkit.container import connection, events, execs
from vmkit.container.container import Container
from vmkit.errors import InvalidInput, WorkloadError, WorkloadTimeout
from vmkit.workload import CONSOLE_LINE_MAX

pytestmark = pytest.mark.integration
MiB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent


ENGINES = ("docker", "podman")
#: Run the test on the Docker Engine and on rootless Podman (the rest run on Docker only).
both_engines = pytest.mark.parametrize("engine", ENGINES, indirect=True, scope="module")


@pytest.fixture(scope="module")
def engine(request, guest_artifacts):
    """The engine a test runs on (`docker_engine`, or `podman_engine` for tests marked
    `both_engines`), with vmkit's image: kind, url, docker-py client, its EngineInfo."""
    kind = getattr(request, "param", "docker")
    endpoint = request.getfixturevalue(f"{kind}_engine")
    c = docker.DockerClient(base_url=endpoint.url, timeout=60)
    engine_mod.ensure_image(c, guest_artifacts)
    yield SimpleNamespace(kind=kind, url=endpoint.url, client=c, info=engine_kinds.describe(c, endpoint.url))
    c.close()


@pytest.fixture
def client(engine):
    """A docker-py client of the engine the test runs on."""
    return engine.client


def mine(client) -> list[dict]:
    """Containers carrying this process's vmkit session label."""
    return client.api.containers(all=True, filters={"label": f"{cleanup.SESSION}={cleanup.session_id()}"})


@pytest.fixture(autouse=True)
def nothing_left_behind(engine, monkeypatch):
    """vmkit uses the test's engine (DOCKER_HOST); the test must leave no container of this session on it."""
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    yield
    client = engine.client
    left = mine(client)
    for info in left:
        client.api.remove_container(info["Id"], force=True)
    assert not left, f"containers left behind: {[i['Names'] for i in left]}"


@both_engines
def test_lifecycle(engine, client):
    with Container(memory="64M", cpus=1) as c:
        trace = c.trace
        assert c.state == "running"
        names = list(trace.phases)
        assert names == ["create", "started", "first_output", "ready", "agent"]
        times = list(trace.phases.values())
        assert times == sorted(times) and times[0] >= trace.origin
        assert 0 < trace.ready_s < 10
        assert trace.guest["kernel"] == platform.release()  # the host's kernel
        applied = engine.info.limits_enforced  # not by rootless Podman on cgroup v1
        assert c.engine == engine.info and c.engine.kind == engine.kind
        assert c.limits_enforced == {"memory": applied, "cpus": applied, "pids": applied}
        assert trace.guest["mem_limit_bytes"] == (64 * MiB if applied else None)
        assert trace.guest["mem_total_bytes"] > 64 * MiB  # /proc/meminfo shows the host's
        assert "VMKIT-READY" in c.console_log()
        info = client.api.inspect_container(c.id)
        labels = info["Config"]["Labels"]
        assert labels[cleanup.OWNER] == "vmkit" and labels[cleanup.PID] == str(os.getpid())
        assert cleanup.owner_state(labels)[0] == "alive"
        assert c.wait_event("CREATE", timeout=5) is not None  # Podman's come ~0.2 s late
        assert [e["event"] for e in c.events()][:1] == ["CREATE"]
    assert c.state == "removed" and c.last_stop["method"] == "SIGTERM"
    c.stop()  # again: harmless
    with pytest.raises(WorkloadError):
        c.guest("true")


@both_engines
def test_limits_and_least_privilege(engine, client):
    with Container(memory="48M", cpus=0.5, pids_limit=32) as c:
        guest = c.trace.guest
        sec = c.security()
        applied = engine.info.limits_enforced
        if applied:
            assert guest["mem_limit_bytes"] == 48 * MiB
            assert guest["cpus"] == pytest.approx(0.5)
            assert guest["pids_limit"] == 32
        else:  # accepted, then silently dropped: the engine's record and the cgroup agree
            assert (guest["mem_limit_bytes"], guest["cpus"], guest["pids_limit"]) == (None, None, None)
            assert not sec["memory_bytes"] and not sec["nano_cpus"] and not sec["pids_limit"]
        assert sec["cap_eff"] == "0000000000000000" and sec["no_new_privs"]
        # Podman's inspect does not record NetworkDisabled; mode "none" and only lo are enough.
        assert sec["network_mode"] == "none" and not sec["privileged"] and sec["read_only_rootfs"]
        assert c.guest("cat /proc/net/dev | grep -c :").strip() == "1"  # only lo
        c.guest("touch /x")
        assert c.last_rc != 0  # read-only root
        c.guest("touch /tmp/x", check=True)  # the small tmpfs is writable
        # The pids limit holds: 40 sleeps cannot all start (without the limit, all do).
        out = c.guest("(for i in $(seq 40); do sleep 5 >/dev/null 2>&1 & done) 2>&1 | grep -c fork; true")
        assert (int(out.strip() or 0) > 0) == applied


@both_engines
def test_oom_kill_observed(engine, client):
    if not engine.info.limits_enforced:
        with Container(memory="16M") as c:
            c.guest("head -c 64m /dev/zero | tail > /dev/null", timeout=20)
            assert c.last_rc == 0  # no memory limit: nothing was killed
            assert c.wait_event("OOM", timeout=1) is None
            usage = c.usage(inside=False)
            assert usage.mem_limit_bytes is None and usage.limits_enforced["memory"] is False
        return
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


@both_engines
def test_usage_plausible(engine, client):
    with Container(memory="64M") as c:
        c.guest("head -c 8m /dev/zero > /tmp/f; x=0; while [ $x -lt 20000 ]; do x=$((x+1)); done")
        began = time.monotonic()
        usage = c.usage(inside=False)
        assert time.monotonic() - began < 0.5  # no two-second stats wait
        assert usage.processes >= 1 and usage.rss_bytes > 100 * 1024
        assert 0 < usage.pss_bytes <= usage.rss_bytes
        assert usage.shim_rss_bytes > 0  # containerd's shim, or Podman's conmon
        if engine.info.limits_enforced:
            assert 8 * MiB <= usage.mem_bytes <= 64 * MiB  # the tmpfs file counts
            assert usage.mem_limit_bytes == 64 * MiB
            assert usage.cpu_user_s + usage.cpu_system_s > 0
            assert usage.pids_current >= 1
        else:  # no cgroup of its own: its processes' figures, never the service's stats
            assert usage.mem_bytes == usage.rss_bytes < 64 * MiB
            assert usage.mem_limit_bytes is None and usage.pids_limit is None and usage.cpus is None
            assert usage.pids_current == usage.processes == len(c.host_pids())
        inside = c.usage()
        assert inside.guest_mem_total_bytes > 64 * MiB


@both_engines
def test_pause_resume(engine, client):
    if not engine.info.can_pause:
        with Container(memory="32M") as c:
            with pytest.raises(WorkloadError, match=r"일시 정지\(pause\)할 수 없습니다") as info:
                c.pause()
            assert "프리저(freezer)" in str(info.value) and "cgroup v1" in str(info.value)
            assert c.state == "running" and c.guest("echo still").strip() == "still"
            assert c.wait_event("PAUSE", timeout=0.5) is None
        return
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


@both_engines
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


@both_engines
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


@both_engines
def test_exits_on_its_own(client):
    """The main process ends by itself: the watcher's DIE (Podman's too) tells how."""
    command = ["sh", "-c", "echo VMKIT-READY; sleep 0.5; exit 3"]
    with Container(memory="32M", command=command) as c:
        event = c.wait_event("DIE", timeout=10)
        assert event is not None and event["data"]["reason"] == "exited"
        assert c.exit["how"] == "exited" and c.exit["exit_code"] == 3
        with pytest.raises(WorkloadError, match="exit 3"):
            c.guest("true")
    assert c.last_stop["method"] == "already-exited"


CHILD = textwrap.dedent("""
    import sys, time
    from vmkit.container.container import Container
    c = Container(memory="16M")
    c.start()
    print(c.id, flush=True)
    time.sleep(600)
""")


@both_engines
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


@both_engines
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


@both_engines
def test_run_json(engine, client, capsys):
    args = argparse.Namespace(memory="64M", cpus="1", image=None, pids_limit=64, timeout=30.0, json=True)
    assert cli_container.cmd_run(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "container" and report["ready_s"] > 0
    assert set(report["phases"]) >= {"create", "started", "first_output", "ready"}
    assert report["guest"]["kernel"] == platform.release()
    applied = engine.info.limits_enforced
    assert report["engine"] == engine.info.to_dict()
    assert report["limits_enforced"] == {"memory": applied, "cpus": applied, "pids": applied}
    assert report["guest"]["mem_limit_bytes"] == (64 * MiB if applied else None)
    for key in ("rss_bytes", "pss_bytes", "mem_bytes"):
        assert report["usage"][key] > 0
    assert not client.api.containers(all=True, filters={"name": report["name"]})


# ---------------------------------------------------------------- stop interrupted

@pytest.mark.parametrize("failure", [KeyboardInterrupt, requests.exceptions.ReadTimeout])
def test_interrupted_stop_keeps_the_container(client, monkeypatch, failure):
    """A stop the engine did not finish leaves the container live and pending; it is retried."""
    c = Container(memory="16M", stop_timeout=1)
    c.start()
    try:
        api = c._client.api
        real_stop = api.stop
        calls = []

        def stop_once(*args, **kwargs):
            calls.append(args)
            if len(calls) == 1:
                raise failure()  # Jupyter's Interrupt, or the engine not answering in time
            return real_stop(*args, **kwargs)

        monkeypatch.setattr(api, "stop", stop_once)
        if failure is KeyboardInterrupt:
            with pytest.raises(KeyboardInterrupt):
                c.stop()
            assert c.last_stop["method"] == "interrupted"
        else:
            c.stop()  # an engine error is reported, not raised
            assert c.last_stop["method"] == "failed" and "error" in c.last_stop
        assert client.api.inspect_container(c.id)["State"]["Running"]
        assert c in container_mod.running() and c.state == "running"
        assert c.id in cleanup._pending  # the next start's sweep would remove it, too
        assert c.guest("echo still").strip() == "still"
        c.stop()  # the retry (as the exit handler would do)
        assert len(calls) == 2 and c.state == "removed"
        assert c.last_stop["method"] == "SIGTERM" and "error" not in c.last_stop
        with pytest.raises(docker.errors.NotFound):
            client.api.inspect_container(c.id)
        assert c not in container_mod.running() and c.id not in cleanup._pending
    finally:
        monkeypatch.undo()
        c.stop()


def test_sweep_removes_a_container_whose_stop_failed(client, monkeypatch):
    c = Container(memory="16M")
    c.start()
    try:
        def refuse(*args, **kwargs):
            raise requests.exceptions.ReadTimeout()

        monkeypatch.setattr(c._client.api, "remove_container", refuse)
        c.stop()
        monkeypatch.undo()
        assert c.last_stop["method"] == "failed"
        client.api.inspect_container(c.id)  # still there
        swept = cleanup.sweep(c._client, c._url)  # pending: swept at once, not every 30 s
        assert c.id in {item["id"] for item in swept}
        with pytest.raises(docker.errors.NotFound):
            client.api.inspect_container(c.id)
        c.stop()
        assert c.state == "removed" and c.last_stop["method"] == "already-removed"
    finally:
        monkeypatch.undo()
        c.stop()


# ---------------------------------------------------------------- bounded output

def peak_rss_growth(function) -> int:
    """How far this process's RSS rose above where it was while `function` ran."""
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        function()
    finally:
        done.set()
        sampler.join()
    return peak[0] - base


def still_running(c: Container, names: tuple[str, ...]) -> list[tuple[int, str]]:
    """The container's host processes called one of `names`."""
    found = []
    for pid in c.host_pids():
        try:
            name = psutil.Process(pid).name()
        except psutil.NoSuchProcess:
            continue
        if name in names:
            found.append((pid, name))
    return found


@both_engines
def test_exec_output_bounded_and_timed_out_tree_killed(client):
    with Container(memory="32M") as c:
        def endless():
            began = time.monotonic()
            with pytest.raises(WorkloadTimeout):
                c.guest("yes", timeout=2)
            assert time.monotonic() - began < 4

        assert peak_rss_growth(endless) < 6 * MiB  # unbounded, `yes` adds over 100 MiB in 2 s
        # A pipeline: the shell, `yes` and `cat` are all killed, not only the shell.
        with pytest.raises(WorkloadTimeout):
            c.guest("yes | cat", timeout=1)
        with pytest.raises(WorkloadTimeout):
            c.guest("yes > /dev/null & yes | cat > /dev/null", timeout=1)
        # Killed processes take a moment to die and be reaped by the container's init (the agent).
        deadline = time.monotonic() + 3
        while still_running(c, ("yes", "cat")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not still_running(c, ("yes", "cat"))
        assert "yes" not in c.guest("ps -o comm").split()
        # Output past the limit is read to the end, dropped, and said to be cut.
        out = c.guest("head -c 3145728 /dev/zero | tr '\\0' y; echo; echo done >&2", timeout=20)
        assert c.last_rc == 0 and "output truncated" in out
        assert out.count("y") == execs.EXEC_OUTPUT_MAX


def test_console_line_bounded(client):
    """A main command printing 4 MiB without a newline: the line buffer stays small."""
    size = 4 * MiB
    hog = ["sh", "-c", f"echo VMKIT-READY; head -c {size} /dev/zero | tr '\\0' x; exec sleep 60"]
    c = Container(memory="32M", command=hog, stop_timeout=1)
    received = []
    c.on_console(lambda line: received.append(len(line)))
    with c:
        deadline = time.monotonic() + 20
        while sum(received) + len(c._output.line) < size and time.monotonic() < deadline:
            assert len(c._output.line) <= CONSOLE_LINE_MAX
            time.sleep(0.05)
        assert len(c._output.line) <= CONSOLE_LINE_MAX
        assert sum(received) + len(c._output.line) == size + len("VMKIT-READY")
        assert max(received) == CONSOLE_LINE_MAX


def test_event_watcher_and_clients_close(client):
    """The engine's event stream (a thread) and the cached clients are released by their
    close(), and the next start makes them anew."""
    with Container(memory="16M") as c:
        watcher = c._watcher
        assert watcher.thread.is_alive()
    events.close()
    assert not watcher.thread.is_alive()
    connection.close()
    with Container(memory="16M") as c:
        assert c._watcher is not watcher and c._watcher.thread.is_alive()
        assert c.wait_event("CREATE", timeout=5) is not None


# ---------------------------------------------------------------- whose container is it

def live_child_labels(child: subprocess.Popen) -> dict[str, str]:
    found = cleanup.labels()
    found.update({cleanup.PID: str(child.pid), cleanup.PID_START: str(cleanup.start_ticks(child.pid)),
                  cleanup.SESSION: "someone-else"})
    return found


def test_owner_state_dead_only_when_provably_so(monkeypatch):
    child = subprocess.Popen(["sleep", "30"])
    try:
        found = live_child_labels(child)
        assert cleanup.owner_state(found)[0] == "alive"
        assert cleanup.owner_state({**found, cleanup.BOOT_ID: "another-boot"})[0] == "dead"
        ticks = int(found[cleanup.PID_START])
        assert "pid reuse" in cleanup.owner_state({**found, cleanup.PID_START: str(ticks + 1)})[1]
        # A container made before the namespace label existed is judged as before.
        assert cleanup.owner_state({k: v for k, v in found.items() if k != cleanup.PID_NS})[0] == "alive"
        # Made in another PID namespace: its pid means nothing here.
        assert cleanup.owner_state({**found, cleanup.PID_NS: "pid:[1]"})[0] == "unknown"
        # A hidden /proc entry (hidepid=2 answers "no such file"): the process still exists.
        hidden = f"/proc/{child.pid}/stat"

        def hiding_open(path, *args, **kwargs):
            if path == hidden:
                raise FileNotFoundError(path)
            return open(path, *args, **kwargs)

        monkeypatch.setattr(cleanup, "open", hiding_open, raising=False)
        assert cleanup.owner_state(found)[0] == "unknown"
        child.kill()
        child.wait()
        assert cleanup.owner_state(found)[0] == "dead"  # hidden *and* gone (kill: ESRCH)
        monkeypatch.undo()
        assert cleanup.owner_state(found)[0] == "dead"
    finally:
        child.kill()
        child.wait()
    zombie = subprocess.Popen(["sh", "-c", "read x"], stdin=subprocess.PIPE)
    try:
        found = live_child_labels(zombie)
        zombie.stdin.close()  # it ends; not waited for, it stays a zombie
        deadline = time.monotonic() + 5
        while (cleanup._stat(zombie.pid) or ["?"])[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cleanup.owner_state(found)[0] == "dead"
    finally:
        zombie.wait()


def test_run_label(monkeypatch):
    monkeypatch.setenv("VMKIT_RUN", "run-42")
    assert cleanup.labels()[cleanup.RUN] == "run-42"
    monkeypatch.delenv("VMKIT_RUN")
    assert cleanup.RUN not in cleanup.labels()


def test_run_label_on_a_real_container(client, monkeypatch):
    run = f"test-{os.getpid()}-{time.monotonic_ns()}"
    monkeypatch.setenv("VMKIT_RUN", run)
    with Container(memory="16M") as c:
        found = client.api.containers(all=True, filters={"label": f"{cleanup.RUN}={run}"})
        assert [info["Id"] for info in found] == [c.id]


def need_namespaces():
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        pytest.skip("needs root, unshare and setpriv")


HIDDEN_CHILD = "import json, sys; from vmkit.host import cleanup; print(cleanup.owner_state(json.loads(sys.argv[1]))[0])"


@pytest.mark.parametrize("proc_options, expected", [("hidepid=2", "unknown"), (None, "alive")])
def test_owner_hidden_by_hidepid(client, proc_options, expected, other_user_python):
    """Seen by another user through a /proc with hidepid, a live owner is not taken for dead.

    The /proc with hidepid is a new proc instance in a private mount namespace of the child:
    the host's /proc is not touched.
    """
    need_namespaces()
    mount = f"mount -t proc -o {proc_options} proc /proc && " if proc_options else ""
    with Container(memory="16M") as c:
        found = client.api.inspect_container(c.id)["Config"]["Labels"]
        result = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             mount + 'exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"', "sh",
             other_user_python.python, "-c", HIDDEN_CHILD, json.dumps(found)],
            cwd="/", env=other_user_python.env(PATH=os.environ["PATH"]),
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected


NS_CHILD = textwrap.dedent("""
    import sys
    from vmkit.host import cleanup
    from vmkit.container.container import Container
    c = Container(memory="16M")
    c.start()
    print(c.id, cleanup._proc_is_ours(), flush=True)
    sys.stdin.read()
    c.stop()
""")


def test_container_made_in_another_pid_namespace_is_kept(client):
    """Made by pid 1 of a new PID namespace: not a leftover (here pid 1 is someone else)."""
    need_namespaces()
    child = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                              sys.executable, "-c", NS_CHILD], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    child_id = None
    try:
        child_id, ours = child.stdout.readline().split()
        assert ours == "True"
        found = client.api.inspect_container(child_id)["Config"]["Labels"]
        assert found[cleanup.PID] == "1" and found[cleanup.PID_NS] != cleanup.pid_namespace()
        assert cleanup.owner_state(found)[0] == "unknown"
        assert child_id not in {item["id"] for item in cleanup.leftovers(client)}
        child.stdin.close()  # the child stops its container and ends
        assert child.wait(30) == 0
        with pytest.raises(docker.errors.NotFound):
            client.api.inspect_container(child_id)
    finally:
        if child.poll() is None:
            child.kill()  # --kill-child: the namespace's pid 1 goes, too
            child.wait(10)
        if child_id:
            try:
                client.api.remove_container(child_id, force=True)
            except docker.errors.NotFound:
                pass


def test_proc_of_another_namespace_is_not_trusted():
    """After a bare `unshare --pid`, /proc still shows the parent namespace: pids can't be checked."""
    need_namespaces()
    script = "from vmkit.host import cleanup; print(cleanup._proc_is_ours(), cleanup.owner_state(cleanup.labels())[0])"
    result = subprocess.run(["unshare", "--pid", "--fork", sys.executable, "-c", script],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "unknown"]
