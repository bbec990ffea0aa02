"""`Container`: one container on a real Docker Engine, with the same protocol as `VM`.

A Container is a `Workload` (see `workload`): `start()` blocks until the container is
ready and returns its `Trace`; `stop()` is always safe. Underneath, over docker-py:

- create the container (least privilege: no network, no capabilities, no new privileges,
  read-only root with a small /tmp tmpfs, memory/CPU/pids limits), attach to its output
  *before* starting it (as `docker run` does, so no byte is missed), start it, and read the
  attach stream until the agent prints `VMKIT-READY`;
- then one `exec` asks the container what it sees: `uname -r` (the host's kernel),
  /proc/meminfo (the host's memory, too) and its cgroup limits;
- the engine's events for this vmkit session arrive on one stream per process: OOM kills,
  pause/unpause, a kill from outside, the engine going away — each becomes a Workload event;
- stopping is `docker stop` (SIGTERM, then SIGKILL after a bounded wait) and removal.

Phases of a cold start, on the host's monotonic clock: `create` (the engine created the
container), `started` (its process runs: the start request answered, or its first output
arrived, whichever came first), `first_output` (first byte on its stdout), `ready`
(`VMKIT-READY` seen), `agent` (the first `exec` answered).

Network: `network_disabled` plus network mode "none" gives the container an empty network
namespace of its own, made by runc. Mode "none" alone makes dockerd's libnetwork prepare
that namespace through a prestart hook (a second dockerd process), which costs about 90 ms
per start here and buys nothing when there is no network to configure.

What is not the container's own lifecycle lives beside it, each module saying why:
`checks` (its arguments), `connection` (the engine's client, its failures in Korean),
`images`, `settings` (what it is created as), `output` (following its output to the ready
marker), `events` (the engine's event stream, how a container ended), `execs`, `inside`
(what it says about itself), `usage` (what it costs the host), `foreign` (other processes'
containers, for the memory guard) and `streams` (the engine's hijacked sockets).
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from contextlib import suppress
from functools import partial
from typing import Any, Callable

from ..errors import EngineError, VmkitError, WorkloadError, WorkloadTimeout
from ..host import cleanup, memguard, reaper
from ..host import mode as mode_mod
from ..units import check_callback, check_seconds, check_strings, format_bytes, parse_memory
from ..workload import Trace, Workload, live, process_usage
from . import checks, connection, engine_kinds, events, execs, foreign, images, settings
from . import inside as inside_mod
from . import limits as container_limits
from . import usage as usage_mod
from .host import Cgroup, first_process, parse_status, processes
from .output import Output
from .usage import ContainerUsage

MiB = 1 << 20
#: Docker 20.10 refuses a memory limit below 6 MiB (linuxMinMemory).
MIN_MEMORY = 6 * MiB
DEFAULT_PIDS_LIMIT = 64

#: Korean labels for the phases, for widgets and the CLI.
PHASE_LABELS = {
    "create": "컨테이너 생성(create)",
    "started": "프로세스 시작(start)",
    "first_output": "첫 출력(stdout)",
    "ready": "준비 완료(VMKIT-READY)",
    "agent": "첫 exec 응답",
}


class Container(Workload):
    """A container of the vmkit BusyBox image (see the module docstring).

    memory: hard limit ('256M', '1G', or MiB as a number; at least 6 MiB); cpus: CPU quota
    (may be fractional, e.g. 0.5); image: default the image made from the guest artifacts'
    BusyBox userland; name: unique on the engine (default: a random one); pids_limit: most
    processes at once; read_only: read-only root filesystem (a small tmpfs on /tmp);
    command: overrides the image's command (it must print VMKIT-READY to be "ready");
    stop_timeout: seconds between SIGTERM and SIGKILL when stopping.
    """

    kind = "container"
    #: Give the container an empty network namespace made by runc (no libnetwork sandbox).
    #: False keeps only network mode "none": the same isolation, about 90 ms slower here.
    network_disabled = True

    def __init__(self, memory: str | int = "256M", cpus: float = 1, image: str | None = None,
                 name: str | None = None, *, pids_limit: int = DEFAULT_PIDS_LIMIT,
                 read_only: bool = True, command: list[str] | None = None,
                 stop_timeout: float = 5.0, artifacts=None):
        super().__init__(name=checks.check_name(name) if name is not None else f"vmkit-{secrets.token_hex(4)}")
        self.memory_bytes = parse_memory(memory, minimum=MIN_MEMORY, what="메모리 한도(memory limit)")
        self.cpus = checks.check_cpus(cpus)
        self.pids_limit = checks.check_pids(pids_limit)
        self.image_request = images.check_image(image) if image is not None else None
        self.image: str | None = image
        self.read_only = checks.check_read_only(read_only)
        self.command = list(check_strings(command, "명령(command)")) if command is not None else None
        self.stop_timeout = check_seconds(stop_timeout, "중지 대기 시간(stop_timeout)", zero=True)
        self.artifacts = checks.check_artifacts(artifacts)
        self.id: str | None = None
        self.host_pid: int | None = None
        self.warnings: list[str] = []
        self.last_rc: int | None = None
        self.last_stop: dict[str, Any] = {}
        #: The engine it runs on (`engine_kinds.EngineInfo`), known once start() reached it.
        self.engine: engine_kinds.EngineInfo | None = None
        #: Which limits really apply ({"memory", "cpus", "pids": bool}), known once it is ready.
        self.limits_enforced: dict[str, bool] | None = None
        self._host_config: dict[str, Any] = {}
        self._client = None
        self._url: str | None = None
        self._watcher: events.Watcher | None = None
        self._cond = threading.Condition()
        self._output = Output(self._cond, self._console_listeners)
        self._ending = events.Ending(self.memory_bytes)
        self._state = "new"
        self._stopping = False
        self._engine_lost = False
        self._cgroup: Cgroup | None = None
        self._stop_lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<Container {self.name} {format_bytes(self.memory_bytes)} cpus={self.cpus:g} {self.state}>"

    # ------------------------------------------------------------ properties
    @property
    def state(self) -> str:
        """'new', 'created', 'running', 'paused', 'exited' (ended on its own) or 'removed'."""
        return self._state

    @property
    def running(self) -> bool:
        return self._state in ("running", "paused") and not self._engine_lost

    @property
    def exit(self) -> dict[str, Any] | None:
        """How it ended, if it ended on its own: {"how", "exit_code", "signal", "oom_events", "reason"}."""
        return self._ending.exit

    @property
    def _engine_label(self) -> str:
        """The engine's name for messages (Docker's until start() reached the engine)."""
        return self.engine.label if self.engine is not None else engine_kinds.KINDS[engine_kinds.DEFAULT].label

    @property
    def short_id(self) -> str | None:
        return self.id[:12] if self.id else None

    # ------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 60.0,
              on_phase: Callable[[str, float], None] | None = None) -> Trace:
        """Create, start and block until the container printed VMKIT-READY; returns the Trace."""
        if self.id is not None:
            raise WorkloadError(f"컨테이너(container) '{self.name}'은(는) 이미 시작되었습니다.",
                                "stop() 후 새 Container를 만드세요.")
        timeout = check_seconds(timeout)
        check_callback(on_phase, "on_phase")
        with memguard.admit(self):  # refused (nothing created) when the host can't hold it
            return super().start(timeout, on_phase)

    def _start(self, timeout: float) -> None:
        import docker

        reaper.install()  # a SIGTERM to this process stops its workloads first
        deadline = time.monotonic() + timeout
        trace = self.trace
        self._reset()
        # Preflight: the engine, leftovers of dead sessions, the image, the event stream.
        self._client, self._url = connection.get()
        self.engine = connection.call(engine_kinds.describe, self._client, self._url)
        api = self._client.api
        connection.call(cleanup.sweep, self._client, self._url)
        self.image = images.resolve(self._client, self._url, self.image_request, self.artifacts)
        self._watcher = events.watcher_for(self._client, self._url)
        self._watcher.ensure()
        host_config = settings.host_config(api, self)
        trace.origin = time.monotonic()
        created = settings.create(api, self, host_config, self._url)
        self.id = created["Id"]
        self.warnings = list(created.get("Warnings") or [])
        self._state = "created"
        self._track()
        self._watcher.register(self)
        t_create = time.monotonic()
        try:  # Podman prepares the container (runc create) at attach: it may fail here already
            self._output.follow(connection.call(api.attach_socket, self.id,
                                                params={"stdout": 1, "stderr": 1, "stream": 1}), self.name)
            api.start(self.id)
        except docker.errors.APIError as exc:
            raise WorkloadError(
                f"컨테이너(container) '{self.name}'를 시작(start)하지 못했습니다.",
                connection.message(exc)) from None
        except connection.errors() as exc:
            raise connection.lost_error() from exc
        t_started = time.monotonic()
        if self._state == "created":
            self._state = "running"
        logs = partial(api.logs, self.id, stdout=True, stderr=True, tail=200)  # should the stream miss the marker
        if not self._output.wait_ready(deadline, timeout, lambda: self._state == "exited", logs):
            raise self._ended_error(starting=True)
        trace.mark("create", t_create)
        trace.mark("started", min(t_started, self._output.first_at or t_started))
        trace.mark("first_output", self._output.first_at)
        trace.mark("ready", self._output.ready_at)
        self._inspect_host_side()
        trace.guest.update(self._guest_info(max(deadline - time.monotonic(), 5.0)))
        trace.mark("agent")
        self.limits_enforced = container_limits.enforced(self._host_config, trace.guest)

    def _reset(self) -> None:
        self._stopping = self._engine_lost = False
        self._output = Output(self._cond, self._console_listeners, self.trace)
        self._ending = events.Ending(self.memory_bytes)
        self.last_stop = {}

    def stop(self) -> None:
        """`docker stop` (SIGTERM, SIGKILL after `stop_timeout`), then remove; always safe.

        If the engine does not answer or the call is interrupted, the container is not
        forgotten: it stays in `running()`, and the next stop(), the exit of this process
        and the next start's sweep try again.
        """
        self._stop()

    def _stop(self) -> None:
        import docker
        import requests

        with self._stop_lock:
            if self.id is None or self._state == "removed":
                return
            self._stopping = True
            self.last_stop = {}
            began = time.monotonic()
            method = "already-exited" if self._state == "exited" else None
            removed = False
            api = self._client.api
            try:
                if self._state == "paused":
                    with suppress(docker.errors.APIError):
                        api.unpause(self.id)
                if method is None and self._output.ready_at is None:
                    method = "SIGKILL (never ready)"  # no agent to end gracefully: just remove
                    with suppress(docker.errors.APIError):  # Podman's forced removal would send SIGTERM and wait stop_timeout first
                        api.kill(self.id)
                if method is None and not self._engine_lost:
                    api.stop(self.id, timeout=max(1, math.ceil(self.stop_timeout)))
                    code = api.inspect_container(self.id)["State"].get("ExitCode")
                    method = "SIGTERM" if code == 0 else f"SIGKILL (exit {code})"
                api.remove_container(self.id, v=True, force=True)
                removed, method = True, method or "removed"
            except docker.errors.NotFound:
                removed, method = True, method or "already-removed"
            except docker.errors.APIError as exc:
                if exc.status_code == 409:  # removal already in progress
                    removed, method = True, method or "removing"
                else:
                    self.last_stop["error"] = connection.message(exc)
            except (*connection.errors(), requests.exceptions.RequestException) as exc:
                self.last_stop["error"] = f"{self._engine_label}에 연결할 수 없습니다: {exc}"
            finally:
                if removed:
                    self._forget()
                else:  # failed or interrupted (KeyboardInterrupt): keep it, retry later
                    cleanup.remember_pending(self.id)
                    method = "failed" if "error" in self.last_stop else "interrupted"
                self.last_stop.update({"method": method, "seconds": time.monotonic() - began})

    def _forget(self) -> None:
        """The engine removed the container: release the output stream and the live set entry."""
        self._output.close()
        if self._watcher is not None:
            self._watcher.unregister(self)
        self._state = "removed"
        self._untrack()
        cleanup.forget_pending(self.id)
        with self._cond:
            self._cond.notify_all()

    # ------------------------------------------------------------ engine events
    def _on_engine_event(self, event: dict) -> None:
        """One engine event for this container (called on the watcher's thread)."""
        base, attrs, heard = events.translate(event, self.engine, self.short_id)
        self._ending.heard(base, attrs)
        if base == "pause" and self._state == "running":
            self._state = "paused"
        elif base == "unpause" and self._state == "paused":
            self._state = "running"
        elif base == "die":
            heard["data"]["expected"] = self._stopping
            if not (self._stopping or self._state == "removed"):
                heard["data"]["reason"] = self._ending.died(attrs)
                with self._cond:
                    self._state = "exited"
                    self._cond.notify_all()
        self._emit(heard)

    def _on_engine_lost(self) -> None:
        """The watcher's event stream ended: the engine stopped or restarted."""
        if self._state in ("removed", "new") or self._stopping:
            return
        self._engine_lost = True
        self._ending.engine_lost(self._engine_label)
        with self._cond:
            self._cond.notify_all()
        self._emit({"event": "ENGINE_LOST", "source": "vmkit", "container": self.short_id,
                    "data": {"url": self._url}})

    def _ended_error(self, starting: bool = False) -> VmkitError:
        """Why the container is not running (ended on its own, killed, engine gone)."""
        lost = self._probe_engine()
        return lost if lost is not None else self._ending.error(
            self.name, starting, partial(self._client.api.inspect_container, self.id), self._output.tail)

    def _probe_engine(self) -> VmkitError | None:
        """An error if the engine is unreachable or restarted under this container, else None."""
        found = self._ending.probe(partial(self._client.api.inspect_container, self.id),
                                   self._engine_lost, self._engine_label)
        if found == "lost":
            self._engine_lost = True
            return EngineError(
                f"{self._engine_label}과(와)의 연결이 끊겼습니다: 엔진이 멈췄거나 재시작 중입니다.",
                f"{mode_mod.engine_hint()} 이 컨테이너는 stop() 후 새로 시작하세요.")
        if found == "ended":
            self._state = "exited"
        return None

    def _require_running(self) -> None:
        if self.id is None or self._state in ("new", "removed"):
            raise WorkloadError(f"컨테이너(container) '{self.name}'가 실행 중이 아닙니다.", "먼저 start() 하세요.")
        if self._state == "exited" or self._engine_lost:
            raise self._ended_error()

    # ------------------------------------------------------------ looking inside
    def exec(self, argv: list[str], timeout: float = 10.0) -> tuple[int, str]:
        """Run `argv` in the container (`docker exec`); returns (exit status, output)."""
        import docker

        self._require_running()
        if self._state == "paused":
            raise WorkloadError(
                f"컨테이너(container) '{self.name}'가 일시 정지(paused) 상태라 명령을 실행할 수 없습니다.",
                "resume()으로 다시 실행하세요.")
        deadline = time.monotonic() + timeout
        try:
            run = execs.Exec(self._client.api, self.id, argv)
        except docker.errors.APIError as exc:
            self._probe_engine()
            if self._state == "exited":
                raise self._ended_error() from None
            raise WorkloadError(f"exec {argv!r}를 실행하지 못했습니다.", connection.message(exc)) from None
        except connection.errors():
            raise self._ended_error() from None
        with run:
            try:
                text = run.output(deadline)
            except TimeoutError:
                run.kill(self.id, self.host_pid, self.host_pids)
                raise WorkloadTimeout(f"컨테이너 안의 명령 {argv!r}이(가) {timeout:g}초 안에 끝나지 않았습니다.") from None
        try:
            rc = run.exit_code()
        except connection.errors():
            raise self._ended_error() from None
        if rc is None or (rc in (126, 127, 255) and "cannot exec" in text):
            # The runtime refused the exec: most likely the container is ending right now.
            if self._probe_engine() is not None or self._state == "exited":
                raise self._ended_error()
        return (rc if rc is not None else -1), text

    def guest(self, command: str, timeout: float = 10.0, check: bool = False) -> str:
        """Run a shell command in the container (`sh -c`, via exec) and return its output.

        The exit status is kept in `last_rc`; check=True raises WorkloadError if it is not 0.
        """
        rc, out = self.exec(["sh", "-c", command], timeout)
        self.last_rc = rc
        if check and rc != 0:
            raise WorkloadError(f"컨테이너 명령(command) {command!r}이(가) 종료 코드 {rc}로 실패했습니다.", log=out)
        return out

    def _guest_info(self, timeout: float) -> dict[str, Any]:
        """What the container reports about itself: kernel, memory view, cgroup limits (see `inside`)."""
        _, out = self.exec(["sh", "-c", inside_mod.SCRIPT], timeout)
        return {**inside_mod.parse(out), "hostname": self.short_id}

    # ------------------------------------------------------------ host side
    def _inspect_host_side(self) -> None:
        """The container's first process as the host sees it, its cgroup files, its HostConfig."""
        try:
            info = self._client.api.inspect_container(self.id)
        except Exception:
            return
        self._host_config = info.get("HostConfig") or {}
        self.host_pid, self._cgroup = first_process((info.get("State") or {}).get("Pid") or None, self.id)

    def host_pids(self) -> list[int]:
        """Host pids of every process in the container (see `host.processes`)."""
        if self.id is None or self._state in ("new", "removed", "exited"):
            return []
        return processes(self._cgroup, self.host_pid, partial(self._client.api.top, self.id))

    def stats(self) -> dict[str, Any]:
        """The engine's one-shot stats (Docker 20.10 may still wait up to ~1 s for them)."""
        return self._client.api.stats(self.id, stream=False, one_shot=True)

    def usage(self, inside: bool = True) -> ContainerUsage:
        """Host-side cost (cgroup memory as `docker stats` shows it, RSS/PSS, CPU) and the inside view.

        Read from the container's cgroup files when they are on this host (a few ms), else
        from the engine's stats. inside=False skips the exec that reads /proc/meminfo in
        the container (about 40 ms).
        """
        applied = self.limits_enforced or {}
        usage = ContainerUsage(**process_usage(self.host_pids()).to_dict(), state=self._state,
                               cpus=self.cpus if applied.get("cpus", True) else None,
                               pids_limit=self.pids_limit if applied.get("pids", True) else None,
                               limits_enforced=self.limits_enforced)
        if self.id is None or self._state in ("new", "removed", "exited") or self._engine_lost:
            return usage
        usage_mod.fill(usage, self._cgroup, self.stats, self.engine, self.host_pid)
        if inside and self._state == "running":
            self._read_inside_memory(usage)
        return usage

    def security(self) -> dict[str, Any]:
        """The isolation settings as the engine applied them, and the capabilities seen inside."""
        self._require_running()
        result = settings.applied(connection.call(self._client.api.inspect_container, self.id))
        if self._state == "running":
            status = parse_status(self.guest("cat /proc/self/status"))
            result["cap_eff"] = status.get("CapEff")
            result["no_new_privs"] = status.get("NoNewPrivs") == "1"
        return result

    # ------------------------------------------------------------ control
    def pause(self) -> None:
        """Freeze every process of the container (cgroup freezer, `docker pause`)."""
        self._require_running()
        if self._state == "paused":
            return
        if self.engine is not None and not self.engine.can_pause:
            raise WorkloadError(
                f"컨테이너 '{self.name}'를 일시 정지(pause)할 수 없습니다: "
                f"{container_limits.why_not(self.engine)}. 일시 정지에 쓰는 cgroup 프리저(freezer)도 "
                "없습니다.", "cgroup v2 호스트나 root로 도는 엔진에서는 됩니다. 여기서는 stop()으로 멈추세요.")
        self._control(self._client.api.pause, "일시 정지(pause)")
        self._state = "paused"

    def resume(self) -> None:
        """Thaw the container's processes (`docker unpause`)."""
        self._require_running()
        if self._state != "paused":
            return
        self._control(self._client.api.unpause, "다시 실행(unpause)")
        self._state = "running"

    def _control(self, call: Callable[[str], Any], what: str) -> None:
        """`call(id)` on the engine; its refusal becomes "could not `what`" in Korean."""
        import docker

        try:
            call(self.id)
        except docker.errors.APIError as exc:
            raise WorkloadError(f"컨테이너 '{self.name}'를 {what}하지 못했습니다.", connection.message(exc)) from None


memguard.register_foreign("container", foreign.running)


def running() -> list[Container]:
    """The containers this Python process is running now."""
    return live("container")
