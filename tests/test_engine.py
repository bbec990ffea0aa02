"""The engine vmkit uses, its private dockerd, and `vmkit engine exec` (leases, signals, no engine).

Every test that starts a dockerd gives it a short state dir of its own under /tmp (unix
socket paths are limited) and stops it at the end, whatever happened. The `engine exec`
tests pin DOCKER_HOST to that state dir's private engine, so what they check does not
depend on other engines answering on this machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import pytest

from conftest import daemons_of
from vmkit.host import cleanup
from vmkit.container import engine
from vmkit.container.container import Container
from vmkit.errors import EngineError, WorkloadError

VMKIT = [sys.executable, "-m", "vmkit"]
NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="starting a private dockerd needs root")

#: The command run under `engine exec`: says it is ready, then waits for `go` or a signal.
#: On SIGINT/SIGTERM/SIGHUP it cleans up for 1 s (checking the engine still answers), writes
#: `got`, then exits 7 after SIGINT and dies of the signal otherwise.
CHILD = """
import os, pathlib, signal, sys, time
import docker
box = pathlib.Path(sys.argv[1])

def on_signal(signum, frame):
    time.sleep(1)
    try:
        alive = docker.DockerClient(base_url=os.environ["DOCKER_HOST"], timeout=5).ping()
    except Exception:
        alive = False
    (box / "got").write_text(f"{signal.Signals(signum).name} {alive}")
    if signum == signal.SIGINT:
        sys.exit(7)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)

for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, on_signal)
(box / "ready").write_text(os.environ.get("DOCKER_HOST", ""))
while not (box / "go").exists():
    time.sleep(0.05)
"""


def remove(path: Path) -> None:
    """rm -rf, staying on this file system (by absolute path: a test may have emptied PATH)."""
    subprocess.run(["/bin/rm", "-rf", "--one-file-system", str(path)], check=False)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until `path` exists; fail early with its stderr if `proc` ends first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"engine exec ended early ({proc.returncode}): {proc.stderr.read()}")
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


@pytest.fixture
def state(monkeypatch):
    """A short state dir of its own, DOCKER_HOST unset; its dockerd is stopped at the end."""
    path = Path(tempfile.mkdtemp(prefix="vk-", dir="/tmp"))
    monkeypatch.setenv("VMKIT_STATE", str(path))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    try:
        yield path
    finally:
        engine.stop()
        remove(path)


def exec_env(state: Path) -> dict:
    """The environment of a `vmkit` subprocess that uses (and may start) `state`'s private engine."""
    return dict(os.environ, VMKIT_STATE=str(state), DOCKER_HOST=engine.private_url())


def default_signals() -> None:
    """In the child before exec: SIGINT/SIGTERM/SIGHUP as a terminal would leave them.

    A test run started with some of them ignored (nohup, a background job of a
    non-interactive shell, some CI runners) passes the ignoring on, and `engine exec` rightly
    keeps an ignored signal ignored: the signal tests would then wait for a signal that
    never arrives.
    """
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


@pytest.fixture
def run_exec(state):
    """Start `vmkit engine exec -- python CHILD <box>` in a new process group; returns (proc, box)."""
    started: list[subprocess.Popen] = []

    def run(name: str) -> tuple[subprocess.Popen, Path]:
        box = state / name
        box.mkdir()
        argv = [*VMKIT, "engine", "exec", "--", sys.executable, "-c", CHILD, str(box)]
        proc = subprocess.Popen(argv, env=exec_env(state), stdin=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True,
                                preexec_fn=default_signals)
        started.append(proc)
        return proc, box

    try:
        yield run
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stderr.close()


# ------------------------------------------------------------------ which engine answers

def test_unanswered_docker_host_is_an_error_not_a_fallback(docker_engine, state, monkeypatch):
    """A set DOCKER_HOST is the only candidate: another engine answering changes nothing."""
    monkeypatch.setattr(engine, "SYSTEM_SOCKET", docker_engine.url)  # a real engine answers first
    assert engine.find().url == docker_engine.url
    dead = f"unix://{state}/nothing.sock"
    monkeypatch.setenv("DOCKER_HOST", dead)
    assert engine.candidates() == [("DOCKER_HOST", dead, False)]
    assert engine.find() is None
    for call in (engine.require, engine.start, Container(memory="32M").start):
        with pytest.raises(EngineError, match="DOCKER_HOST"):
            call()
    assert engine.private_pid() is None and not daemons_of(state)


@needs_root
@pytest.mark.integration
def test_engine_restart_mid_run(docker_engine, state, monkeypatch, guest_artifacts):
    """A private engine of its own, started although another answers, restarts under a container."""
    monkeypatch.setattr(engine, "SYSTEM_SOCKET", docker_engine.url)
    assert not engine.find().private
    endpoint = engine.start(private=True)
    assert endpoint.private and endpoint.url == engine.private_url() and engine.private_pid()
    monkeypatch.setenv("DOCKER_HOST", endpoint.url)
    c = Container(memory="32M")
    c.start()
    try:
        engine.stop()
        with pytest.raises(EngineError):
            c.guest("true")
        assert engine.start().url == endpoint.url  # DOCKER_HOST names it: started again
        with pytest.raises(WorkloadError, match="engine"):
            c.guest("true")
    finally:
        c.stop()
    other = docker.DockerClient(base_url=endpoint.url)
    try:
        ours = {"label": f"{cleanup.OWNER}={cleanup.OWNER_VALUE}"}
        assert not other.api.containers(all=True, filters=ours)
    finally:
        other.close()


# ------------------------------------------------------------------ vmkit engine exec

@needs_root
def test_concurrent_execs_share_the_engine_and_the_last_stops_it(state, run_exec):
    """Two execs at once start one engine; it outlives the first and goes with the second."""
    first, a = run_exec("a")
    second, b = run_exec("b")
    wait_for(a / "ready", first)
    wait_for(b / "ready", second)
    pid = engine.private_pid()
    assert pid and daemons_of(state) and (a / "ready").read_text() == (b / "ready").read_text()
    assert sorted(engine.users()) == sorted([first.pid, second.pid])
    # A lease whose pid lives but started at another time (a reused pid) does not count.
    (engine.leases_dir() / str(os.getpid())).write_text(f"{os.getpid()} 1\n")
    (a / "go").touch()
    assert first.wait(60) == 0, first.stderr.read()
    assert engine.private_pid() == pid and engine.find(private=True)
    (b / "go").touch()
    assert second.wait(60) == 0, second.stderr.read()
    assert engine.private_pid() is None and not daemons_of(state)
    assert not list(engine.leases_dir().iterdir())


@needs_root
def test_exec_leaves_an_engine_started_with_vmkit_engine_start_running(state, run_exec):
    """`vmkit engine start` keeps the engine up, even one an exec started, past every exec."""
    first, a = run_exec("a")
    wait_for(a / "ready", first)
    pid = engine.private_pid()
    subprocess.run([*VMKIT, "engine", "start"], env=exec_env(state), check=True, capture_output=True,
                   timeout=60)
    (a / "go").touch()
    assert first.wait(60) == 0, first.stderr.read()
    assert engine.private_pid() == pid  # `vmkit engine start` kept the engine exec had started
    second, b = run_exec("b")
    (b / "go").touch()
    assert second.wait(60) == 0, second.stderr.read()
    assert engine.private_pid() == pid


@needs_root
@pytest.mark.parametrize("sig,to_group,status", [(signal.SIGINT, True, 7),
                                                 (signal.SIGTERM, False, 128 + signal.SIGTERM),
                                                 (signal.SIGHUP, False, 128 + signal.SIGHUP)])
def test_exec_waits_for_its_command_after_a_signal_then_stops_the_engine(state, run_exec, sig,
                                                                         to_group, status):
    """SIGINT (to the process group, as Ctrl-C) or SIGTERM/SIGHUP (to exec, forwarded)."""
    proc, box = run_exec("a")
    wait_for(box / "ready", proc)
    assert engine.private_pid()
    (os.killpg if to_group else os.kill)(proc.pid, sig)
    assert proc.wait(60) == status, proc.stderr.read()
    assert (box / "got").read_text() == f"{sig.name} True"  # cleaned up 1 s, engine still there
    assert engine.private_pid() is None and not daemons_of(state)


@needs_root
def test_exec_as_a_user_without_engine_warns_and_runs_the_command(other_user_python):
    """`nobody` (not root, no engine of its own, DOCKER_HOST unset) still gets its command run."""
    home = Path(tempfile.mkdtemp(prefix="vk-", dir="/tmp"))
    try:
        os.chown(home, NOBODY, NOBODY)
        env = other_user_python.env(PATH=os.environ["PATH"], HOME=str(home),
                                    VMKIT_STATE=str(home / "state"), LANG="C.UTF-8")
        as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        out = subprocess.run([*as_nobody, other_user_python.python, "-m", "vmkit", "engine", "exec", "--",
                              "/bin/sh", "-c", 'echo "${DOCKER_HOST:--}" > ran; exit 0'],
                             env=env, cwd=home, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert (home / "ran").read_text() == "-\n"
        assert "도커 엔진(Docker Engine)" in out.stderr and "컨테이너(container)" in out.stderr
        assert "root 권한" in out.stderr
        assert not daemons_of(home)
    finally:
        remove(home)


def test_exec_without_dockerd_warns_and_runs_the_command(state, monkeypatch, capfd):
    """No dockerd to be found: a warning, then the command, whose status is returned."""
    monkeypatch.setenv("PATH", str(state))  # nowhere to find dockerd
    monkeypatch.setattr(engine, "SBIN_DIRS", "")
    monkeypatch.setattr(engine, "SYSTEM_SOCKET", f"unix://{state}/no-such.sock")
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    assert engine.run_with_engine([sys.executable, "-c", "raise SystemExit(3)"]) == 3
    err = capfd.readouterr().err
    assert "도커 엔진(Docker Engine)" in err and "`dockerd`가 없습니다" in err
    assert handlers == {sig: signal.getsignal(sig) for sig in handlers}  # exec's handlers undone
