"""The Docker Engine vmkit talks to, and the private one it starts when none answers.

Resolution order: an explicitly set `$DOCKER_HOST` is the only candidate (as for the docker
CLI: one that does not answer is an error, never a silent fallback); otherwise the system
socket, then vmkit's private engine. In class mode (`mode`) `$DOCKER_HOST` is the only
candidate, set or not, and vmkit never starts an engine. The private engine is Debian's `dockerd` with its own
data-root, exec-root, pidfile, config and unix socket under `state_dir()/engine`, no bridge
and no iptables rules (vmkit's containers run without a network), so it never touches the
host's own Docker set-up. `stop()` ends exactly that daemon, by the pid in its pidfile.

`run_with_engine()` (`vmkit engine exec`) holds a lease on the engine while its command runs:
a file per user process under `engine_dir()/users` (pid and start time, so a dead user's lease
does not count), guarded by an flock. The last user out stops the private engine, and only if
an `engine exec` started it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import EngineError, MissingComponent, VmkitError
from ..host import mode
from ..host.cleanup import start_ticks
from ..host.paths import private_dir, state_dir
from ..host.reaper import Terminated

SYSTEM_SOCKET = "unix:///var/run/docker.sock"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
#: Searched for `dockerd` after `$PATH` (a normal user's PATH has no sbin directories).
SBIN_DIRS = "/usr/local/sbin:/usr/sbin:/sbin"
#: The API version vmkit's probing clients speak: docker-py otherwise asks `GET /version` for
#: every new client (a second each on Podman). Real work uses the engine's own (`describe`).
PROBE_API = "1.24"


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


def leases_dir() -> Path:
    """One lease file per process that uses the engine through `vmkit engine exec`."""
    return engine_dir() / "users"


def exec_mark() -> Path:
    """Holds the pid of the private dockerd if an `engine exec` started it."""
    return engine_dir() / "started-by-exec"


def _ping(url: str, timeout: float = 3.0) -> str | None:
    """The engine's version if `url` answers, else None.

    Asks `GET /_ping` (within `timeout`) each time; the version (`GET /version`, a second or
    more on Podman) once per URL.
    """
    import docker

    from . import engine_kinds

    try:
        client = docker.DockerClient(base_url=url, timeout=30, version=PROBE_API)
        try:
            engine_kinds.ping(client, timeout)
            return engine_kinds.describe(client, url).version
        finally:
            client.close()
    except Exception:
        return None


def candidates() -> list[tuple[str, str, bool]]:
    """(source, url, private) in the order vmkit tries them: `$DOCKER_HOST` alone if set.

    In class mode `$DOCKER_HOST` is the only candidate: none if it is not set.
    """
    url = os.environ.get("DOCKER_HOST")
    in_class = mode.is_class()  # an unknown VMKIT_MODE is refused here, whatever DOCKER_HOST says
    if url:
        return [("DOCKER_HOST", url, url == private_url())]
    if in_class:
        return []
    return [("system", SYSTEM_SOCKET, False), ("private", private_url(), True)]


def find(private: bool = False) -> Endpoint | None:
    """The first engine that answers (only vmkit's private one if `private`), or None."""
    for source, url, is_private in [("private", private_url(), True)] if private else candidates():
        if url.startswith("unix://") and not Path(url[7:]).exists():
            continue
        version = _ping(url)
        if version:
            return Endpoint(url, version, is_private, source)
    return None


def _no_answer() -> EngineError:
    """The error for "no engine answers"; it names DOCKER_HOST when that is set."""
    url = os.environ.get("DOCKER_HOST")
    if mode.is_class():
        return mode.no_engine(url)
    if url:
        return EngineError(
            f"DOCKER_HOST({url})의 도커 엔진(Docker Engine)이 응답하지 않습니다.",
            "DOCKER_HOST를 고치거나 지우세요(unset): 지우면 시스템 엔진이나 "
            "`vmkit engine start`로 켠 vmkit 전용 엔진을 씁니다.",
        )
    return EngineError(
        "응답하는 도커 엔진(Docker Engine)이 없습니다.",
        "`vmkit engine start`로 vmkit 전용 엔진을 시작하세요 (root 권한 필요).",
    )


def require() -> Endpoint:
    """An engine that answers, or a Korean error that says what to do."""
    endpoint = find()
    if endpoint is None:
        raise _no_answer()
    return endpoint


def client(timeout: float = 30.0, endpoint: Endpoint | None = None):
    """A docker-py client for `endpoint` (default: the engine `require()` finds), at its API version."""
    import docker

    endpoint = endpoint or require()
    api_version = describe(endpoint).api_version
    return docker.DockerClient(base_url=endpoint.url, timeout=timeout,
                               version=api_version if api_version != "?" else "auto")


def describe(endpoint: Endpoint | None = None):
    """What kind of engine answers at `endpoint` (default: `require()`'s): an `engine_kinds.EngineInfo`."""
    import docker

    from . import engine_kinds

    endpoint = endpoint or require()
    docker_client = docker.DockerClient(base_url=endpoint.url, timeout=30, version=PROBE_API)
    try:
        return engine_kinds.describe(docker_client, endpoint.url)
    finally:
        docker_client.close()


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


def dockerd_path() -> str | None:
    """Where `dockerd` is installed (searched in `$PATH`, then the sbin directories)."""
    search = os.pathsep.join(filter(None, (os.environ.get("PATH"), SBIN_DIRS)))
    return shutil.which("dockerd", path=search)


def _dockerd_missing() -> MissingComponent:
    return MissingComponent(
        "도커 엔진(Docker Engine) 프로그램 `dockerd`가 없습니다.",
        "`sudo apt-get install docker.io` 또는 `make setup`으로 설치하세요.",
    )


def cannot_start(private: bool = False) -> VmkitError | None:
    """Why this process cannot start the engine it would use (`private`: vmkit's own), or None."""
    if mode.is_class():
        return mode.refused("엔진 시작(engine start)")
    url = os.environ.get("DOCKER_HOST")
    if url and url != private_url() and not private:
        return _no_answer()
    if not dockerd_path():
        return _dockerd_missing()
    if os.geteuid() != 0:
        return EngineError(
            "도커 엔진(Docker Engine)을 시작하려면 root 권한이 필요합니다.",
            "`sudo .venv/bin/vmkit engine start`로 실행하세요.",
        )
    return None


def dockerd_argv() -> list[str]:
    """The private daemon's command line (everything under `engine_dir()`)."""
    dockerd = dockerd_path()
    if not dockerd:
        raise _dockerd_missing()
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


_held: set[Path] = set()


@contextmanager
def _locked():
    """Hold the engine dir's flock (re-entrant within this process)."""
    path = private_dir(engine_dir()) / "lock"
    if path in _held:
        yield
        return
    with open(path, "a") as stream:  # closing it releases the lock
        fcntl.flock(stream, fcntl.LOCK_EX)
        _held.add(path)
        try:
            yield
        finally:
            _held.discard(path)


def start(timeout: float = START_TIMEOUT, *, private: bool = False, keep: bool = False) -> Endpoint:
    """Make sure an engine answers; start the private one only if none does.

    `private`: use (and if needed start) vmkit's private engine even if another answers.
    `keep`: the private engine stays up even if an `engine exec` started it (`vmkit engine start`).
    Refused in class mode, even if an engine answers: there the instructor runs the engines.
    """
    if mode.is_class():
        raise mode.refused("엔진 시작(`vmkit engine start`)")
    endpoint = find(private=True) if private else find()
    if endpoint is None:
        with _locked():
            endpoint = find(private=True) if private else find()
            if endpoint is None:
                if (error := cannot_start(private)) is not None:
                    raise error
                endpoint = _launch(timeout)
    if keep:
        with _locked():
            exec_mark().unlink(missing_ok=True)
    return endpoint


def _launch(timeout: float) -> Endpoint:
    """Start the private dockerd and wait until it answers (it is ended again on any failure)."""
    argv = dockerd_argv()
    stale = private_socket()
    if stale.exists() and private_pid() is None:
        stale.unlink()
    with open(logfile(), "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    try:
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
        raise EngineError(
            f"vmkit 전용 도커 엔진(dockerd)이 {timeout:.0f}초 안에 응답하지 않았습니다.",
            f"로그(log): {logfile()}\n{_log_tail()}",
        )
    except BaseException:  # a timeout, or Ctrl-C / SIGTERM while waiting
        if proc.poll() is None:
            _terminate(proc.pid)
        raise


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
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if not _alive(pid):
            break
    _unmount_data_root()


def _unmount_data_root() -> None:
    """Undo the bind mount dockerd puts on its data-root, left if it died early or was killed."""
    data = str(engine_dir() / "data")
    try:
        with open("/proc/self/mountinfo") as stream:
            mounted = any(line.split()[4] == data for line in stream)
    except (OSError, IndexError):
        return
    if mounted:
        subprocess.run(["umount", data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)


def _alive(pid: int) -> bool:
    return start_ticks(pid) is not None


def _start_time(pid: int) -> str | None:
    """When the process started (clock ticks after boot): tells a reused pid apart."""
    ticks = start_ticks(pid)
    return None if ticks is None else str(ticks)


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
    # The tag goes inside `repository`: Docker accepts "repo:tag" there, and Podman 4.3's
    # compatible API ignores a separate tag (it would name the image ":latest").
    docker_client.api.import_image(
        src=str(artifacts.rootfs), repository=artifacts.image,
        changes=['CMD ["/vmkit/agent", "container"]',
                 f"LABEL org.vmkit.guest.artifacts={artifacts.version}"],
    )
    docker_client.images.get(artifacts.image)
    return artifacts.image


# ------------------------------------------------------------------ vmkit engine exec

def users() -> list[int]:
    """Pids of the live processes holding a lease; stale leases are removed (under the lock)."""
    live = []
    for path in leases_dir().glob("*"):
        try:
            pid, started = path.read_text().split()
            if _start_time(int(pid)) == started:
                live.append(int(pid))
                continue
        except (OSError, ValueError):
            pass
        path.unlink(missing_ok=True)
    return live


def _started_by_exec() -> bool:
    """Whether the running private dockerd is the one an `engine exec` started."""
    pid = private_pid()
    try:
        return pid is not None and int(exec_mark().read_text()) == pid
    except (OSError, ValueError):
        return False


class _Relay:
    """Runs the command: SIGTERM/SIGHUP are forwarded to it, SIGINT reaches it from the terminal.

    Before the command exists the first of these signals interrupts us (the engine is cleaned
    up as usual); after that, none cuts short our wait for the command or our clean-up.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.child: subprocess.Popen | None = None
        self.deferring = False  # record signals instead of raising
        self.pending: list[int] = []
        self.previous: dict = {}

    def __enter__(self) -> _Relay:
        self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS
                         if signal.getsignal(sig) not in (signal.SIG_IGN, None)}  # nohup stays
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.child is None and not self.deferring:
            self.deferring = True
            raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(signum)
        if self.child is None:
            self.pending.append(signum)
        elif signum != signal.SIGINT:  # the terminal sent SIGINT to the command as well
            self.child.send_signal(signum)

    def run(self, argv: list[str], env: dict) -> int:
        """The command's exit status (128+N if signal N ended it)."""
        self.deferring = True
        try:
            self.child = subprocess.Popen(argv, env=env)
        except OSError as exc:
            raise VmkitError(f"명령(command)을 실행하지 못했습니다: {argv[0]}: {exc.strerror}") from None
        for signum in self.pending:
            self.child.send_signal(signum)
        code = self.child.wait()
        return 128 - code if code < 0 else code


def run_with_engine(argv: list[str]) -> int:
    """Run a command with an engine (`$DOCKER_HOST` set for it) and return its exit status.

    If no engine answers and none can be started here (`cannot_start()`: not root, no dockerd,
    DOCKER_HOST elsewhere) it warns and runs the command anyway: VMs need no engine.
    The last exec out stops the private engine if an exec started it. Refused in class mode.
    """
    if mode.is_class():
        raise mode.refused("`vmkit engine exec`")
    with _Relay() as relay:
        if find() is None and (error := cannot_start()) is not None:
            print("경고: 도커 엔진(Docker Engine)을 쓸 수 없어 컨테이너(container) 기능은 동작하지 않습니다"
                  " (VM은 됩니다).\n"
                  f"  이유(reason): {error}\n"
                  "  명령(command)은 그대로 실행합니다.", file=sys.stderr)
            return relay.run(argv, dict(os.environ))
        lease = leases_dir() / str(os.getpid())
        try:
            with _locked():
                private_dir(leases_dir())
                lease.write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
                before = private_pid()
                endpoint = start()
                if before is None and (pid := private_pid()) is not None:
                    exec_mark().write_text(f"{pid}\n")
            return relay.run(argv, dict(os.environ, DOCKER_HOST=endpoint.url))
        finally:
            with _locked():
                lease.unlink(missing_ok=True)
                if not users() and _started_by_exec():
                    stop()
                    exec_mark().unlink(missing_ok=True)
