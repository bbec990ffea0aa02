"""The Docker Engine vmkit talks to, and the private one it starts when none answers.

Resolution order: `$DOCKER_HOST`, then the system socket, then vmkit's private engine.
The private engine is Debian's `dockerd` with its own data-root, exec-root, pidfile,
config and unix socket under `state_dir()/engine`, no bridge and no iptables rules (vmkit's
containers run without a network), so it never touches the host's own Docker set-up.
`stop()` ends exactly that daemon, by the pid in its pidfile.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import EngineError, MissingComponent
from .paths import private_dir, state_dir

SYSTEM_SOCKET = "unix:///var/run/docker.sock"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


@dataclass(frozen=True)
class Endpoint:
    """An engine that answered: where, which version, and whether vmkit owns it."""

    url: str
    version: str
    private: bool
    source: str  # "DOCKER_HOST", "system" or "private"


def engine_dir() -> Path:
    return state_dir() / "engine"


def private_socket() -> Path:
    return engine_dir() / "docker.sock"


def private_url() -> str:
    return f"unix://{private_socket()}"


def pidfile() -> Path:
    return engine_dir() / "dockerd.pid"


def logfile() -> Path:
    return engine_dir() / "dockerd.log"


def _ping(url: str, timeout: float = 3.0) -> str | None:
    """The engine's version if `url` answers, else None."""
    import docker

    try:
        client = docker.DockerClient(base_url=url, timeout=timeout)
        try:
            return client.version().get("Version", "?")
        finally:
            client.close()
    except Exception:
        return None


def candidates() -> list[tuple[str, str, bool]]:
    """(source, url, private) in the order vmkit tries them."""
    found = []
    if os.environ.get("DOCKER_HOST"):
        found.append(("DOCKER_HOST", os.environ["DOCKER_HOST"], False))
    found.append(("system", SYSTEM_SOCKET, False))
    found.append(("private", private_url(), True))
    return found


def find() -> Endpoint | None:
    """The first engine that answers, or None."""
    for source, url, private in candidates():
        if url.startswith("unix://") and not Path(url[7:]).exists():
            continue
        version = _ping(url)
        if version:
            return Endpoint(url, version, private, source)
    return None


def require() -> Endpoint:
    """An engine that answers, or a Korean error that names `vmkit engine start`."""
    endpoint = find()
    if endpoint is None:
        raise EngineError(
            "응답하는 도커 엔진(Docker Engine)이 없습니다.",
            "`vmkit engine start`로 vmkit 전용 엔진을 시작하세요 (root 권한 필요).",
        )
    return endpoint


def client(timeout: float = 30.0):
    """A docker-py client for the engine `require()` finds."""
    import docker

    return docker.DockerClient(base_url=require().url, timeout=timeout)


def private_pid() -> int | None:
    """The pid of vmkit's private dockerd if it is alive (and really a dockerd)."""
    try:
        pid = int(pidfile().read_text().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            cmdline = stream.read().split(b"\0")
    except (OSError, ValueError):
        return None
    if cmdline and os.path.basename(cmdline[0].decode()) == "dockerd" and \
            str(private_socket()).encode() in b" ".join(cmdline):
        return pid
    return None


def dockerd_argv() -> list[str]:
    """The private daemon's command line (everything under `engine_dir()`)."""
    dockerd = shutil.which("dockerd")
    if not dockerd:
        raise MissingComponent(
            "도커 엔진(Docker Engine) 프로그램 `dockerd`가 없습니다.",
            "`sudo apt-get install docker.io` 또는 `make setup`으로 설치하세요.",
        )
    root = engine_dir()
    config = root / "daemon.json"
    if not config.exists():
        config.write_text(json.dumps({}))
    return [
        dockerd,
        "--config-file", str(config),
        "--data-root", str(root / "data"),
        "--exec-root", str(root / "exec"),
        "--pidfile", str(pidfile()),
        "--host", private_url(),
        "--bridge", "none",
        "--iptables=false",
        "--ip-masq=false",
        "--userland-proxy=false",
        "--log-level", "warn",
    ]


def start(timeout: float = START_TIMEOUT) -> Endpoint:
    """Make sure an engine answers; start the private one only if none does."""
    endpoint = find()
    if endpoint is not None:
        return endpoint
    if os.geteuid() != 0:
        raise EngineError(
            "도커 엔진(Docker Engine)을 시작하려면 root 권한이 필요합니다.",
            "`sudo .venv/bin/vmkit engine start`로 실행하세요.",
        )
    private_dir(engine_dir())
    argv = dockerd_argv()
    stale = private_socket()
    if stale.exists() and private_pid() is None:
        stale.unlink()
    with open(logfile(), "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EngineError(
                f"vmkit 전용 도커 엔진(dockerd)이 시작하자마자 끝났습니다 (exit {proc.returncode}).",
                f"로그(log): {logfile()}\n{_log_tail()}",
            )
        if private_socket().exists() and (version := _ping(private_url(), timeout=2.0)):
            return Endpoint(private_url(), version, True, "private")
        time.sleep(0.2)
    _terminate(proc.pid)
    raise EngineError(
        f"vmkit 전용 도커 엔진(dockerd)이 {timeout:.0f}초 안에 응답하지 않았습니다.",
        f"로그(log): {logfile()}\n{_log_tail()}",
    )


def stop(timeout: float = STOP_TIMEOUT) -> bool:
    """Stop vmkit's private dockerd (only that one, by its pid). True if one was running."""
    pid = private_pid()
    if pid is None:
        return False
    _terminate(pid, timeout)
    return True


def _terminate(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, wait, then SIGKILL: the daemon and its containerd stop with it."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _log_tail(lines: int = 15) -> str:
    try:
        return "\n".join(logfile().read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def status() -> dict:
    """What `vmkit engine status` reports."""
    endpoint = find()
    return {
        "usable": endpoint is not None,
        "endpoint": endpoint.url if endpoint else None,
        "version": endpoint.version if endpoint else None,
        "source": endpoint.source if endpoint else None,
        "private_pid": private_pid(),
        "private_socket": str(private_socket()),
        "log": str(logfile()),
    }


def ensure_image(docker_client, artifacts) -> str:
    """Import the artifacts' BusyBox rootfs as the `vmkit/busybox:<version>` image if missing."""
    import docker

    try:
        docker_client.images.get(artifacts.image)
        return artifacts.image
    except docker.errors.ImageNotFound:
        pass
    repository, tag = artifacts.image.split(":")
    docker_client.api.import_image(
        src=str(artifacts.rootfs), repository=repository, tag=tag,
        changes=['CMD ["/vmkit/agent", "container"]',
                 f"LABEL org.vmkit.artifacts={artifacts.version}"],
    )
    docker_client.images.get(artifacts.image)
    return artifacts.image


def run_with_engine(argv: list[str]) -> int:
    """Run a command with an engine available; stop the private one after if we started it."""
    started = find() is None
    endpoint = start()
    env = dict(os.environ, DOCKER_HOST=endpoint.url)
    try:
        return subprocess.call(argv, env=env)
    finally:
        if started:
            stop()
