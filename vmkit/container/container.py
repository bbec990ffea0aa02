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
"""

from __future__ import annotations

import math
import os
import re
import secrets
import select
import socket
import struct
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import EngineError, InvalidInput, VmkitError, WorkloadError, WorkloadTimeout
from ..host import cleanup, memguard, reaper
from ..host import mode as mode_mod
from ..units import check_callback, check_seconds, check_strings, format_bytes, parse_memory
from ..workload import CONSOLE_LINE_MAX, Trace, Usage, Workload, live, parse_meminfo, process_usage
from . import engine as engine_mod
from . import engine_kinds
from . import limits as container_limits
from .host import Cgroup, belongs, int_or_none, kill_tree, namespace_processes, parse_status

MiB = 1 << 20
#: Docker 20.10 refuses a memory limit below 6 MiB (linuxMinMemory).
MIN_MEMORY = 6 * MiB
#: Docker's smallest CPU quota: 0.01 CPU (NanoCPUs 1e7).
MIN_CPUS = 0.01
DEFAULT_PIDS_LIMIT = 64
TMPFS_SIZE = "16m"
READY_MARKER = b"VMKIT-READY"
#: How often start() also looks for the marker in the engine's log (see `_wait_ready`).
LOG_CHECK_S = 1.0
#: The most output one exec keeps; the rest is still read (until EOF or the timeout) and dropped.
EXEC_OUTPUT_MAX = 1 * MiB
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
#: An image reference as the engine parses it: [domain[:port]/]path[:tag][@digest].
_IMAGE_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_IMAGE = re.compile(
    rf"^(?:{_IMAGE_HOST}(?:\.{_IMAGE_HOST})*(?::[0-9]+)?/)?{_IMAGE_PART}(?:/{_IMAGE_PART})*"
    r"(?::\w[\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$")

#: Korean labels for the phases, for widgets and the CLI.
PHASE_LABELS = {
    "create": "컨테이너 생성(create)",
    "started": "프로세스 시작(start)",
    "first_output": "첫 출력(stdout)",
    "ready": "준비 완료(VMKIT-READY)",
    "agent": "첫 exec 응답",
}

#: Engine event actions as Workload event names. QMP calls a paused VM "STOP" and a
#: running one "RESUME"; the engine's own "stop" (the container ended) becomes STOPPED.
EVENT_NAMES = {"unpause": "RESUME", "stop": "STOPPED"}

#: What the container is asked after it is ready: kernel, memory view, cgroup limits.
_GUEST_INFO = (
    "uname -r; echo @@; cat /proc/meminfo; echo @@; "
    "if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo v2; cat /sys/fs/cgroup/memory.max; "
    "cat /sys/fs/cgroup/cpu.max; cat /sys/fs/cgroup/pids.max; "
    "else echo v1; cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
    "echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); "
    "cat /sys/fs/cgroup/pids/pids.max; fi"
)



@dataclass
class ContainerUsage(Usage):
    """`Usage` plus what only a container has.

    cpu_*_s come from the container's cgroup (every process it ever ran, execs included);
    shim_*: the process that babysits the container (containerd's shim, Podman's conmon), a
    host cost outside its cgroup. limits_enforced: which limits really apply (see
    `container_limits`); a limit that does not is None here, and mem_bytes is then the RSS
    of the container's processes (an engine without a cgroup per container has no figure).
    """

    state: str | None = None
    pids_current: int | None = None
    pids_limit: int | None = None
    cpus: float | None = None
    shim_rss_bytes: int = 0
    shim_pss_bytes: int = 0
    limits_enforced: dict[str, bool] | None = None


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
        super().__init__(name=_check_name(name) if name is not None else f"vmkit-{secrets.token_hex(4)}")
        self.memory_bytes = parse_memory(memory, minimum=MIN_MEMORY, what="메모리 한도(memory limit)")
        self.cpus = _check_cpus(cpus)
        self.pids_limit = _check_pids(pids_limit)
        self.image_request = check_image(image) if image is not None else None
        self.image: str | None = image
        if not isinstance(read_only, bool):
            raise InvalidInput(f"읽기 전용(read_only)은 True나 False여야 합니다 (받은 값: {read_only!r}).")
        self.read_only = read_only
        self.command = list(check_strings(command, "명령(command)")) if command is not None else None
        self.stop_timeout = check_seconds(stop_timeout, "중지 대기 시간(stop_timeout)", zero=True)
        if artifacts is not None:
            from ..guest.artifacts import Artifacts

            if not isinstance(artifacts, Artifacts):
                raise InvalidInput(
                    f"아티팩트(artifacts)에는 vmkit.guest.artifacts.Artifacts를 주어야 합니다 (받은 값: {artifacts!r}).",
                    "보통은 비워 두세요: vmkit이 현재 아티팩트를 찾습니다.")
        self.artifacts = artifacts
        self.id: str | None = None
        self.host_pid: int | None = None
        self.warnings: list[str] = []
        self.last_rc: int | None = None
        self.last_stop: dict[str, Any] = {}
        self.exit: dict[str, Any] | None = None  # how it ended, if it ended on its own
        #: The engine it runs on (`engine_kinds.EngineInfo`), known once start() reached it.
        self.engine: engine_kinds.EngineInfo | None = None
        #: Which limits really apply ({"memory", "cpus", "pids": bool}), known once it is ready.
        self.limits_enforced: dict[str, bool] | None = None
        self._host_config: dict[str, Any] = {}
        self._client = None
        self._url: str | None = None
        self._watcher: _Watcher | None = None
        self._attach = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._output_eof = False
        self._first_output: float | None = None
        self._ready_at: float | None = None
        self._line = bytearray()  # the console line being read (at most CONSOLE_LINE_MAX)
        self._recent = b""  # the last output bytes, for a marker split between payloads
        self._state = "new"
        self._stopping = False
        self._engine_lost = False
        self._ooms = 0
        self._killed = False
        self._kill_signal: int | None = None
        self._cgroup: Cgroup | None = None
        self._stop_lock = threading.RLock()

    def __repr__(self) -> str:
        return (f"<Container {self.name} {format_bytes(self.memory_bytes)} cpus={self.cpus:g} "
                f"{self.state}>")

    # ------------------------------------------------------------ properties
    @property
    def state(self) -> str:
        """'new', 'created', 'running', 'paused', 'exited' (ended on its own) or 'removed'."""
        return self._state

    @property
    def running(self) -> bool:
        return self._state in ("running", "paused") and not self._engine_lost

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
        self._client, self._url = _engine_client()
        self.engine = _call(engine_kinds.describe, self._client, self._url)
        api = self._client.api
        _call(cleanup.sweep, self._client, self._url)
        self.image = self._resolve_image()
        self._watcher = _watcher_for(self._client, self._url)
        self._watcher.ensure()
        host_config = api.create_host_config(
            network_mode="none", privileged=False, cap_drop=["ALL"],
            security_opt=["no-new-privileges"], read_only=self.read_only,
            tmpfs={"/tmp": f"size={TMPFS_SIZE},mode=1777"},
            mem_limit=self.memory_bytes, memswap_limit=self.memory_bytes,
            nano_cpus=int(round(self.cpus * 1e9)), pids_limit=self.pids_limit,
            log_config={"type": "json-file", "config": {"max-size": "1m", "max-file": "1"}},
        )
        trace.origin = time.monotonic()
        try:
            created = _call(  # the engine may have gone since the last call (mid-comparison)
                api.create_container,
                self.image, command=self.command, name=self.name, labels=cleanup.labels("container"),
                host_config=host_config, network_disabled=self.network_disabled, stop_signal="SIGTERM",
                stop_timeout=max(1, math.ceil(self.stop_timeout)))
        except docker.errors.ImageNotFound:
            _known_images.discard((self._url, self.image))
            raise _image_missing(self.image) from None
        except docker.errors.APIError as exc:
            raise _create_error(exc, self) from None
        self.id = created["Id"]
        self.warnings = list(created.get("Warnings") or [])
        self._state = "created"
        self._track()
        self._watcher.register(self)
        t_create = time.monotonic()
        try:  # Podman prepares the container (runc create) at attach: it may fail here already
            self._attach = _call(api.attach_socket, self.id,
                                 params={"stdout": 1, "stderr": 1, "stream": 1})
            _raw(self._attach).settimeout(None)
            self._reader = threading.Thread(target=self._read_output, args=(self._attach,),
                                            name=f"vmkit-{self.name}-output", daemon=True)
            self._reader.start()
            api.start(self.id)
        except docker.errors.APIError as exc:
            raise WorkloadError(
                f"컨테이너(container) '{self.name}'를 시작(start)하지 못했습니다.",
                _engine_message(exc)) from None
        except _connection_errors() as exc:
            raise _engine_lost_error() from exc
        t_started = time.monotonic()
        if self._state == "created":
            self._state = "running"
        self._wait_ready(deadline, timeout)
        trace.mark("create", t_create)
        trace.mark("started", min(t_started, self._first_output or t_started))
        trace.mark("first_output", self._first_output)
        trace.mark("ready", self._ready_at)
        self._inspect_host_side()
        trace.guest.update(self._guest_info(max(deadline - time.monotonic(), 5.0)))
        trace.mark("agent")
        self.limits_enforced = container_limits.enforced(self._host_config, trace.guest)

    def _reset(self) -> None:
        self._output_eof = self._stopping = self._engine_lost = False
        self._first_output = self._ready_at = None
        self._line.clear()
        self._recent = b""
        self._ooms = 0
        self._killed = False
        self._kill_signal = None
        self.exit = None
        self.last_stop = {}

    def _resolve_image(self) -> str:
        """The image to run: checked once per engine and process (imported if it is vmkit's)."""
        import docker

        if self.image_request is None:
            from ..guest import artifacts as artifacts_mod

            arts = self.artifacts or artifacts_mod.require()
            image = arts.image
            if (self._url, image) not in _known_images:
                _call(engine_mod.ensure_image, self._client, arts)
        else:
            image = self.image_request
            if (self._url, image) not in _known_images:
                try:
                    _call(self._client.api.inspect_image, image)
                except docker.errors.ImageNotFound:
                    raise _image_missing(image) from None
                except docker.errors.APIError as exc:  # e.g. an invalid reference format
                    raise InvalidInput(f"이미지(image) 이름 {image!r}를 쓸 수 없습니다.",
                                       _engine_message(exc)) from None
        _known_images.add((self._url, image))
        return image

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        """Wait for the marker on the attach stream; every LOG_CHECK_S also look in the log.

        The log check is a safety net: should the attach stream ever miss the output, the
        engine's log still has it (then `trace.guest["ready_from"]` says "log").
        """
        next_check = time.monotonic() + LOG_CHECK_S
        with self._cond:
            while self._ready_at is None:
                if self._output_eof or self._state == "exited":
                    break
                now = time.monotonic()
                if now >= deadline:
                    raise WorkloadTimeout(
                        f"컨테이너(container) '{self.name}'가 {timeout:g}초 안에 준비(VMKIT-READY)되지 않았습니다.",
                        log=self._last_output())
                if now >= next_check:
                    next_check = now + LOG_CHECK_S
                    if self._marker_in_log():
                        self._ready_at = time.monotonic()
                        self.trace.guest["ready_from"] = "log"
                        if self._first_output is None:
                            self._first_output = self._ready_at
                        break
                self._cond.wait(min(deadline, next_check) - now)
        if self._ready_at is None:
            raise self._ended_error(starting=True)

    def _marker_in_log(self) -> bool:
        try:
            return READY_MARKER in self._client.api.logs(self.id, stdout=True, stderr=True, tail=200)
        except Exception:
            return False

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
                    try:
                        api.unpause(self.id)
                    except docker.errors.APIError:
                        pass
                if method is None and self._ready_at is None:
                    method = "SIGKILL (never ready)"  # no agent to end gracefully: just remove
                    try:  # Podman's forced removal would send SIGTERM and wait stop_timeout first
                        api.kill(self.id)
                    except docker.errors.APIError:
                        pass
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
                    self.last_stop["error"] = _engine_message(exc)
            except (*_connection_errors(), requests.exceptions.RequestException) as exc:
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
        self._close_attach()
        if self._watcher is not None:
            self._watcher.unregister(self)
        self._state = "removed"
        self._untrack()
        cleanup.forget_pending(self.id)
        with self._cond:
            self._cond.notify_all()

    def _close_attach(self) -> None:
        attach, self._attach = self._attach, None
        if attach is not None:
            _close(attach)
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(2.0)

    # ------------------------------------------------------------ output
    def _read_output(self, attach) -> None:
        """Read the attach stream (multiplexed frames) until EOF; mark first output and ready."""
        sock = _raw(attach)
        demux = _Demux()
        try:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    break
                now = time.monotonic()
                for payload in demux.feed(data):
                    self._on_output(payload, now)
        finally:
            with self._cond:
                self._output_eof = True
                self._cond.notify_all()

    def _on_output(self, payload: bytes, now: float) -> None:
        """Split output into console lines; a line without newline is cut at CONSOLE_LINE_MAX."""
        with self._cond:
            if self._first_output is None:
                self._first_output = now
            seen = self._recent + payload
            if self._ready_at is None and READY_MARKER in seen:
                self._ready_at = now
            self._recent = seen[1 - len(READY_MARKER):]
            *lines, rest = (bytes(self._line) + payload).split(b"\n")
            whole = len(rest) // CONSOLE_LINE_MAX * CONSOLE_LINE_MAX if len(rest) > CONSOLE_LINE_MAX else 0
            lines += [rest[i:i + CONSOLE_LINE_MAX] for i in range(0, whole, CONSOLE_LINE_MAX)]
            self._line[:] = rest[whole:]
            for raw in lines:
                line = raw.decode(errors="replace").rstrip("\r")
                if self.trace is not None:
                    self.trace.console.append(line)
                for callback in list(self._console_listeners):
                    try:
                        callback(line)
                    except Exception:
                        pass
            self._cond.notify_all()

    def _last_output(self, lines: int = 25) -> str:
        if self.trace is None:
            return ""
        tail = list(self.trace.console)[-lines:]
        if self._line:
            tail.append(bytes(self._line).decode(errors="replace"))
        return "\n".join(tail)

    # ------------------------------------------------------------ engine events
    def _on_engine_event(self, event: dict) -> None:
        """One engine event for this container (called on the watcher's thread)."""
        action = event.get("Action") or event.get("status") or ""
        base = action.split(":", 1)[0].strip()
        if self.engine is not None:  # Podman's names for some events differ from Docker's
            base = self.engine.action(base)
        attrs = (event.get("Actor") or {}).get("Attributes") or {}
        data = {key: value for key, value in attrs.items()
                if not key.startswith("org.vmkit.") and key not in ("image", "name")}
        if base == "oom":
            self._ooms += 1
        elif base == "kill":  # Podman's kill event names no signal
            self._killed = True
            self._kill_signal = int_or_none(attrs.get("signal"))
        elif base == "pause":
            if self._state == "running":
                self._state = "paused"
        elif base == "unpause":
            if self._state == "paused":
                self._state = "running"
        elif base == "die":
            self._on_die(attrs, data)
        when = event.get("timeNano")
        mono = time.monotonic() - (time.time() - when / 1e9) if when else time.monotonic()
        self._emit({"event": EVENT_NAMES.get(base, base.upper()), "action": action,
                    "source": "docker", "container": self.short_id, "data": data, "time": mono})

    def _on_die(self, attrs: dict, data: dict) -> None:
        try:
            code = int(attrs.get("exitCode", -1))
        except ValueError:
            code = -1
        data["expected"] = self._stopping
        if self._stopping or self._state == "removed":
            return
        if self._killed:
            if self._kill_signal is None and code > 128:
                self._kill_signal = code - 128
            how, reason = "killed", (f"밖에서 강제 종료되었습니다 (killed from outside, "
                                     f"signal {self._kill_signal}, exit {code}).")
        elif self._ooms and code == 137:
            how, reason = "oom", (f"메모리 한도 {format_bytes(self.memory_bytes)}를 넘어 "
                                  f"커널이 강제 종료했습니다 (OOM kill, exit {code}).")
        elif code > 128:
            how, reason = "signal", (f"주 프로세스가 신호(signal) {code - 128}로 끝났습니다 "
                                     f"(exit {code}; 도커 밖에서 kill 되었을 수 있음).")
        else:
            how, reason = "exited", f"주 프로세스가 끝났습니다 (exit {code})."
        self.exit = {"how": how, "exit_code": code, "signal": self._kill_signal,
                     "oom_events": self._ooms, "reason": reason, "at": time.monotonic()}
        data["reason"] = how
        with self._cond:
            self._state = "exited"
            self._cond.notify_all()

    def _on_engine_lost(self) -> None:
        """The watcher's event stream ended: the engine stopped or restarted."""
        if self._state in ("removed", "new") or self._stopping:
            return
        self._engine_lost = True
        if self.exit is not None and self.exit["how"] == "killed" and \
                time.monotonic() - self.exit.get("at", 0) < 15.0:
            # The engine stopped its containers on the way down: not someone's kill.
            self.exit.update(how="engine-stopped", reason=(
                f"{self._engine_label}이(가) 멈추면서(또는 재시작하면서) 컨테이너를 멈췄습니다 "
                f"(engine stopped, signal {self.exit['signal']})."))
        with self._cond:
            self._cond.notify_all()
        self._emit({"event": "ENGINE_LOST", "source": "vmkit", "container": self.short_id,
                    "data": {"url": self._url}})

    def _ended_error(self, starting: bool = False) -> VmkitError:
        """Why the container is not running (ended on its own, killed, engine gone)."""
        lost = self._probe_engine()
        if lost is not None:
            return lost
        if self.exit is None:
            self._fill_exit_from_inspect()
        reason = (self.exit or {}).get("reason", "끝났습니다.")
        what = "준비(ready) 전에 끝났습니다" if starting else "더 이상 실행 중이 아닙니다"
        return WorkloadError(f"컨테이너(container) '{self.name}'가 {what}: {reason}",
                             "stop()으로 정리하고 새 Container를 시작하세요.", log=self._last_output())

    def _probe_engine(self) -> VmkitError | None:
        """An error if the engine is unreachable or restarted under this container, else None."""
        import docker

        try:
            info = self._client.api.inspect_container(self.id)
        except _connection_errors():
            self._engine_lost = True
            return EngineError(
                f"{self._engine_label}과(와)의 연결이 끊겼습니다: 엔진이 멈췄거나 재시작 중입니다.",
                f"{mode_mod.engine_hint()} 이 컨테이너는 stop() 후 새로 시작하세요.")
        except docker.errors.NotFound:
            self.exit = self.exit or {"how": "removed", "exit_code": None, "signal": None,
                                      "oom_events": self._ooms,
                                      "reason": "밖에서 삭제되었습니다 (removed from outside)."}
            self._state = "exited"
            return None
        state = info.get("State") or {}
        if self._engine_lost and not state.get("Running"):
            self._state = "exited"
            self.exit = self.exit or {
                "how": "engine-restarted", "exit_code": state.get("ExitCode"), "signal": None,
                "oom_events": self._ooms,
                "reason": f"{self._engine_label}이(가) 재시작되면서 컨테이너가 멈췄습니다 (engine restarted)."}
            return None
        if not state.get("Running"):
            self._state = "exited"
        return None

    def _inspect_state(self) -> dict | None:
        """The engine's State of this container, or None if it can't be had (best effort)."""
        try:
            return self._client.api.inspect_container(self.id)["State"]
        except Exception:
            return None

    def _fill_exit_from_inspect(self) -> None:
        state = self._inspect_state()
        if state is None:
            return
        code = state.get("ExitCode")
        if state.get("Error"):
            reason = f"엔진이 오류를 알렸습니다: {state['Error']}"
        elif state.get("OOMKilled") and code == 137:
            reason = f"메모리 한도 {format_bytes(self.memory_bytes)}를 넘어 강제 종료되었습니다 (OOM kill)."
        else:
            reason = f"주 프로세스가 끝났습니다 (exit {code})."
        self.exit = {"how": "exited", "exit_code": code, "signal": None,
                     "oom_events": self._ooms, "reason": reason}

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
        api = self._client.api
        deadline = time.monotonic() + timeout
        try:
            exec_id = api.exec_create(self.id, [str(arg) for arg in argv])["Id"]
            stream = api.exec_start(exec_id, socket=True)
        except docker.errors.APIError as exc:
            self._probe_engine()
            if self._state == "exited":
                raise self._ended_error() from None
            raise WorkloadError(f"exec {argv!r}를 실행하지 못했습니다.", _engine_message(exc)) from None
        except _connection_errors():
            raise self._ended_error() from None
        try:
            output, dropped = _read_frames(stream, deadline)
        except TimeoutError:
            self._kill_exec(exec_id)
            raise WorkloadTimeout(f"컨테이너 안의 명령 {argv!r}이(가) {timeout:g}초 안에 끝나지 않았습니다.") from None
        finally:  # shut down, not only closed: Podman's conmon blocks writing to an unread one
            _close(stream)
        try:
            rc = api.exec_inspect(exec_id).get("ExitCode")
        except _connection_errors():
            raise self._ended_error() from None
        text = output.decode(errors="replace")
        if dropped:
            text += (f"\n[vmkit: 출력이 {format_bytes(EXEC_OUTPUT_MAX)}를 넘어 나머지 "
                     f"{format_bytes(dropped)}를 버렸습니다 (output truncated)]\n")
        if rc is None or (rc in (126, 127, 255) and "cannot exec" in text):
            # The runtime refused the exec: most likely the container is ending right now.
            if self._probe_engine() is not None or self._state == "exited":
                raise self._ended_error()
        return (rc if rc is not None else -1), text

    def _kill_exec(self, exec_id: str) -> None:
        """SIGKILL a timed-out exec and what it started, if they run on this host in this container."""
        try:
            pid = self._client.api.exec_inspect(exec_id).get("Pid")
        except Exception:
            return
        if pid:
            kill_tree(pid, self.id, self.host_pid, self.host_pids())

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
        """What the container reports about itself: kernel, memory view, cgroup limits."""
        _, out = self.exec(["sh", "-c", _GUEST_INFO], timeout)
        parts = out.split("@@\n")
        info: dict[str, Any] = {"kernel": parts[0].strip() if parts else ""}
        if len(parts) > 1:
            mem = parse_meminfo(parts[1])
            info["mem_total_bytes"] = mem.get("MemTotal")
            info["mem_available_bytes"] = mem.get("MemAvailable")
        if len(parts) > 2:
            lines = parts[2].split("\n")
            lines += [""] * 4
            info["cgroup"] = lines[0].strip()
            info["mem_limit_bytes"] = container_limits.limit_value(lines[1])
            quota = lines[2].split()
            if len(quota) == 2 and int_or_none(quota[0]) and int(quota[0]) > 0:
                info["cpus"] = int(quota[0]) / int(quota[1])
            else:
                info["cpus"] = None
            info["pids_limit"] = container_limits.limit_value(lines[3])
        info["hostname"] = self.short_id
        return info

    # ------------------------------------------------------------ host side
    def _inspect_host_side(self) -> None:
        """The container's first process as the host sees it, its cgroup files, its HostConfig.

        The pid is kept only if it is provably the container's (in its cgroup, or in a PID
        namespace other than ours): vmkit may run in another PID namespace than the engine.
        """
        try:
            info = self._client.api.inspect_container(self.id)
        except Exception:
            return
        self._host_config = info.get("HostConfig") or {}
        pid = (info.get("State") or {}).get("Pid") or None
        self._cgroup = Cgroup.find(pid, self.id) if pid else None
        self.host_pid = pid if pid and (self._cgroup or belongs(pid, self.id, pid)) else None

    def host_pids(self) -> list[int]:
        """Host pids of every process in the container.

        From its cgroup (cgroup.procs); without one, the processes in its PID namespace;
        else what `docker top` lists.
        """
        if self.id is None or self._state in ("new", "removed", "exited"):
            return []
        if self._cgroup is not None:
            try:
                return self._cgroup.procs()
            except (OSError, ValueError):
                pass
        if self.host_pid and (found := namespace_processes(self.host_pid)):
            return found
        try:
            top = self._client.api.top(self.id)
            column = top["Titles"].index("PID")
            return [int(row[column]) for row in top["Processes"]]
        except Exception:
            return []

    def stats(self) -> dict[str, Any]:
        """The engine's one-shot stats (Docker 20.10 may still wait up to ~1 s for them)."""
        return self._client.api.stats(self.id, stream=False, one_shot=True)

    def usage(self, inside: bool = True) -> ContainerUsage:
        """Host-side cost (cgroup memory as `docker stats` shows it, RSS/PSS, CPU) and the inside view.

        Read from the container's cgroup files when they are on this host (a few ms), else
        from the engine's stats. inside=False skips the exec that reads /proc/meminfo in
        the container (about 40 ms).
        """
        pids = self.host_pids()
        base = process_usage(pids)
        applied = self.limits_enforced or {}
        usage = ContainerUsage(**base.to_dict(), state=self._state,
                               cpus=self.cpus if applied.get("cpus", True) else None,
                               pids_limit=self.pids_limit if applied.get("pids", True) else None,
                               limits_enforced=self.limits_enforced)
        if self.id is None or self._state in ("new", "removed", "exited") or self._engine_lost:
            return usage
        if not self._usage_from_cgroup(usage):
            if self.engine is None or self.engine.limits_enforced:
                self._usage_from_stats(usage)
            else:  # its stats are the whole service's: the processes' own figures instead
                usage.mem_bytes, usage.pids_current = usage.rss_bytes, usage.processes
        if not applied.get("memory", True):
            usage.mem_limit_bytes = None
        self._shim_usage(usage)
        if inside and self._state == "running":
            self._read_inside_memory(usage)
        return usage

    def _usage_from_cgroup(self, usage: ContainerUsage) -> bool:
        if self._cgroup is None:
            return False
        try:
            usage.mem_bytes, usage.mem_limit_bytes = self._cgroup.memory()
            cpu = self._cgroup.cpu()
            if cpu is not None:
                usage.cpu_user_s, usage.cpu_system_s = cpu
            usage.pids_current = self._cgroup.pids_current()
            return True
        except (OSError, ValueError):
            return False

    def _usage_from_stats(self, usage: ContainerUsage) -> None:
        try:
            stats = self.stats()
        except Exception:
            return
        mem = stats.get("memory_stats") or {}
        if "usage" in mem:
            detail = mem.get("stats") or {}
            inactive = detail.get("total_inactive_file", detail.get("inactive_file", 0))
            usage.mem_bytes = mem["usage"] - inactive if inactive < mem["usage"] else mem["usage"]
            usage.mem_limit_bytes = mem.get("limit")
        cpu = (stats.get("cpu_stats") or {}).get("cpu_usage") or {}
        if cpu.get("usage_in_usermode") is not None:
            usage.cpu_user_s = cpu["usage_in_usermode"] / 1e9
            usage.cpu_system_s = cpu.get("usage_in_kernelmode", 0) / 1e9
        usage.pids_current = (stats.get("pids_stats") or {}).get("current")

    def _shim_usage(self, usage: ContainerUsage) -> None:
        """The shim or conmon (the container's parent on the host): a cost outside its cgroup."""
        if not self.host_pid or self.engine is None:
            return
        try:
            import psutil

            shim = psutil.Process(self.host_pid).parent()
            if shim is not None and shim.name().startswith(self.engine.spec.shims):
                found = process_usage([shim.pid])
                usage.shim_rss_bytes, usage.shim_pss_bytes = found.rss_bytes, found.pss_bytes
        except Exception:
            pass

    def security(self) -> dict[str, Any]:
        """The isolation settings as the engine applied them, and the capabilities seen inside."""
        self._require_running()
        info = _call(self._client.api.inspect_container, self.id)
        host, config = info["HostConfig"], info["Config"]
        result = {
            "network_disabled": bool(config.get("NetworkDisabled")),
            "network_mode": host.get("NetworkMode"),
            "privileged": bool(host.get("Privileged")),
            "cap_drop": host.get("CapDrop") or [],
            "cap_add": host.get("CapAdd") or [],
            "security_opt": host.get("SecurityOpt") or [],
            "read_only_rootfs": bool(host.get("ReadonlyRootfs")),
            "pids_limit": host.get("PidsLimit"),
            "memory_bytes": host.get("Memory"),
            "nano_cpus": host.get("NanoCpus"),
        }
        if self._state == "running":
            status = parse_status(self.guest("cat /proc/self/status"))
            result["cap_eff"] = status.get("CapEff")
            result["no_new_privs"] = status.get("NoNewPrivs") == "1"
        return result

    # ------------------------------------------------------------ control
    def pause(self) -> None:
        """Freeze every process of the container (cgroup freezer, `docker pause`)."""
        import docker

        self._require_running()
        if self._state == "paused":
            return
        if self.engine is not None and not self.engine.can_pause:
            raise WorkloadError(
                f"컨테이너 '{self.name}'를 일시 정지(pause)할 수 없습니다: "
                f"{container_limits.why_not(self.engine)}. 일시 정지에 쓰는 cgroup 프리저(freezer)도 "
                "없습니다.", "cgroup v2 호스트나 root로 도는 엔진에서는 됩니다. 여기서는 stop()으로 멈추세요.")
        try:
            self._client.api.pause(self.id)
        except docker.errors.APIError as exc:
            raise WorkloadError(f"컨테이너 '{self.name}'를 일시 정지(pause)하지 못했습니다.",
                                _engine_message(exc)) from None
        self._state = "paused"

    def resume(self) -> None:
        """Thaw the container's processes (`docker unpause`)."""
        import docker

        self._require_running()
        if self._state != "paused":
            return
        try:
            self._client.api.unpause(self.id)
        except docker.errors.APIError as exc:
            raise WorkloadError(f"컨테이너 '{self.name}'를 다시 실행(unpause)하지 못했습니다.",
                                _engine_message(exc)) from None
        self._state = "running"


# ---------------------------------------------------------------- engine connection

_clients: dict[tuple, tuple[Any, str]] = {}
_clients_lock = threading.Lock()
_known_images: set[tuple[str, str]] = set()


def _engine_client():
    """(docker-py client, url) for the engine vmkit uses, cached per process and endpoint list."""
    key = tuple(url for _, url, _ in engine_mod.candidates())
    with _clients_lock:
        cached = _clients.get(key)
        if cached is not None:
            return cached
    endpoint = engine_mod.require()
    client = engine_mod.client(timeout=60, endpoint=endpoint)
    with _clients_lock:
        _clients[key] = (client, endpoint.url)
    return client, endpoint.url


def _other_containers(exclude: set[str]) -> list[memguard.Running]:
    """Running vmkit containers on the engine that this process did not start (for the
    memory guard's refusals). Lists nothing when no engine answers (never starts one)."""
    try:
        client, _ = _engine_client()
        listed = client.api.containers(filters={"label": f"{cleanup.OWNER}={cleanup.OWNER_VALUE}",
                                                "status": "running"})
    except Exception:
        return []
    found = []
    for info in listed:
        if info["Id"] in exclude:
            continue
        used = 0
        if len(found) < memguard.INSPECT_MAX:
            try:
                pid = client.api.inspect_container(info["Id"])["State"]["Pid"]
                cgroup = Cgroup.find(pid, info["Id"]) if pid else None
                used = cgroup.memory()[0] if cgroup is not None else 0
            except Exception:
                pass
        name = (info.get("Names") or [info["Id"][:12]])[0].lstrip("/")
        found.append(memguard.Running("container", name, used, ours=False))
    return found


memguard.register_foreign("container", _other_containers)


def _forget_clients() -> None:
    _clients.clear()
    _watchers.clear()
    _known_images.clear()


os.register_at_fork(after_in_child=_forget_clients)


def _connection_errors() -> tuple[type[BaseException], ...]:
    import requests

    return (requests.exceptions.ConnectionError, ConnectionError, socket.timeout)


def _call(function, *args, **kwargs):
    """Call the engine; a lost connection becomes a Korean EngineError (and the client is dropped)."""
    try:
        return function(*args, **kwargs)
    except _connection_errors() as exc:
        with _clients_lock:
            _clients.clear()
        raise _engine_lost_error() from exc


def _engine_lost_error() -> EngineError:
    return EngineError(
        "도커 엔진(Docker Engine)에 연결할 수 없습니다: 멈췄거나 재시작 중입니다.",
        mode_mod.engine_hint())


def _engine_message(exc) -> str:
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return f"엔진의 답(engine): {explanation or exc}"


def _image_missing(image: str) -> InvalidInput:
    return InvalidInput(
        f"이미지(image) {image!r}가 도커 엔진(Docker Engine)에 없습니다.",
        "vmkit은 레지스트리(registry)에서 이미지를 받지 않습니다. image를 비워 두면 vmkit의 "
        "BusyBox 이미지를 씁니다 (`vmkit fetch`).")


def _create_error(exc, container: Container):
    message = _engine_message(exc)
    if exc.status_code == 409 or "already in use" in message:  # Podman: 500, "already in use"
        return InvalidInput(f"이름(name)이 '{container.name}'인 컨테이너가 엔진에 이미 있습니다.",
                            "다른 이름을 주거나 name을 비워 두세요.")
    if exc.status_code == 400 and "emory" in message:
        return InvalidInput(f"메모리(memory) {format_bytes(container.memory_bytes)}를 엔진이 받지 않습니다.", message)
    return WorkloadError(f"컨테이너(container) '{container.name}'를 만들지(create) 못했습니다.", message)


# ---------------------------------------------------------------- engine events

class _Watcher:
    """One engine event stream per process and engine, for this vmkit session's containers.

    Events go to the container they name; when the stream ends while containers live, they
    hear ENGINE_LOST, and the watcher reconnects (replaying from the last event seen).
    """

    def __init__(self, client, url: str):
        self.client, self.url = client, url
        self.containers: dict[str, weakref.ref] = {}
        self.early: deque = deque(maxlen=200)  # events that came before their container registered
        self.connected = threading.Event()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.stream = None
        self.last_time: float | None = None

    def ensure(self, wait: float = 3.0) -> None:
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.connected.clear()
                self.thread = threading.Thread(target=self._run, name="vmkit-docker-events", daemon=True)
                self.thread.start()
        self.connected.wait(wait)

    def register(self, container: Container) -> None:
        with self.lock:
            self.containers[container.id] = weakref.ref(container)
            early = [event for event in self.early if event.get("id") == container.id]
        for event in early:
            container._on_engine_event(event)

    def unregister(self, container: Container) -> None:
        with self.lock:
            if container.id is not None:
                self.containers.pop(container.id, None)

    def _run(self) -> None:
        session = cleanup.session_id()
        while True:
            try:
                since = self.last_time
                self.stream = self.client.api.events(
                    since=f"{since:.9f}" if since else None, decode=True,
                    filters={"type": "container", "label": f"{cleanup.SESSION}={session}"})
                self.connected.set()
                for event in self.stream:
                    if event.get("timeNano"):
                        self.last_time = event["timeNano"] / 1e9 + 1e-9
                    self._dispatch(event)
            except Exception:
                pass
            self.connected.clear()
            with self.lock:
                victims = [ref() for ref in self.containers.values()]
            for container in victims:
                if container is not None:
                    container._on_engine_lost()
            if not any(victims):
                return
            time.sleep(1.0)

    def _dispatch(self, event: dict) -> None:
        with self.lock:
            ref = self.containers.get(event.get("id") or "")
            if ref is None:
                self.early.append(event)
                return
        container = ref()
        if container is not None:
            container._on_engine_event(event)


_watchers: dict[str, _Watcher] = {}


def _watcher_for(client, url: str) -> _Watcher:
    with _clients_lock:
        watcher = _watchers.get(url)
        if watcher is None or watcher.client is not client:
            watcher = _watchers[url] = _Watcher(client, url)
        return watcher


# ---------------------------------------------------------------- helpers

def _raw(stream):
    """The socket under a docker-py hijacked stream."""
    return getattr(stream, "_sock", stream)


def _close(stream) -> None:
    """Shut down and close a hijacked stream (closing the wrapper alone leaves the socket open)."""
    for end in (lambda: _raw(stream).shutdown(socket.SHUT_RDWR), stream.close):
        try:
            end()
        except OSError:
            pass


class _Demux:
    """Payloads of a multiplexed stream (8-byte frame headers), fed the bytes as they arrive.

    A frame's payload is passed on in pieces as it comes, never buffered whole.
    """

    def __init__(self):
        self.header = b""
        self.left = 0  # payload bytes of the current frame still to come

    def feed(self, data: bytes):
        at = 0
        while at < len(data):
            if self.left == 0:
                take = 8 - len(self.header)
                self.header += data[at:at + take]
                at += take
                if len(self.header) == 8:
                    self.left = struct.unpack(">I", self.header[4:8])[0]
                    self.header = b""
                continue
            piece = data[at:at + self.left]
            at += len(piece)
            self.left -= len(piece)
            yield piece


def _read_frames(stream, deadline: float, limit: int = EXEC_OUTPUT_MAX) -> tuple[bytes, int]:
    """An exec stream's output until EOF: (the first `limit` bytes, how many more were dropped).

    TimeoutError at `deadline`.
    """
    sock = _raw(stream)
    sock.settimeout(None)
    demux = _Demux()
    out = bytearray()
    dropped = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        ready, _, _ = select.select([sock], [], [], remaining)
        if not ready:
            raise TimeoutError
        data = sock.recv(65536)
        if not data:
            return bytes(out), dropped
        for payload in demux.feed(data):
            keep = payload[:limit - len(out)]
            out += keep
            dropped += len(payload) - len(keep)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(f"컨테이너 이름(name) {name!r}는 쓸 수 없습니다.",
                           "영문자·숫자로 시작하고 영문자, 숫자, '_', '.', '-'만 쓰세요 (63자까지).")
    return name


def check_image(image) -> str:
    """An image reference the engine can parse ('vmkit/busybox:TAG', 'busybox', ...), or a Korean error."""
    if not isinstance(image, str) or len(image) > 255 or not _IMAGE.match(image):
        raise InvalidInput(f"이미지(image) 이름 {image!r}를 쓸 수 없습니다.",
                           "소문자·숫자와 '.', '_', '-', '/'로 된 이름에 ':태그(tag)'를 붙일 수 있습니다. "
                           "예: 'busybox:1.36' (비워 두면 vmkit의 BusyBox 이미지)")
    return image


def _check_cpus(value) -> float:
    """A CPU quota between 0.01 and the host's CPU count (fractions allowed)."""
    try:
        if isinstance(value, bool):
            raise ValueError
        cpus = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"CPU 개수 {value!r}는 숫자가 아닙니다.", "예: cpus=1, cpus=0.5") from None
    host = os.cpu_count() or 1
    if not cpus >= MIN_CPUS:
        raise InvalidInput(f"CPU 할당량(cpus)은 {MIN_CPUS} 이상이어야 합니다 (받은 값: {value!r}).")
    if cpus > host:
        raise InvalidInput(f"CPU 할당량(cpus) {cpus:g}는 이 호스트(host)의 CPU 수 {host}보다 많습니다.")
    return cpus


def _check_pids(value) -> int:
    try:
        pids = int(value)
        if isinstance(value, bool) or pids != float(value):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(f"프로세스 수 한도(pids_limit) {value!r}는 정수가 아닙니다.") from None
    if pids < 4:
        raise InvalidInput(f"프로세스 수 한도(pids_limit)는 4 이상이어야 합니다 (받은 값: {pids}).",
                           "에이전트(agent)와 exec에 프로세스가 몇 개 필요합니다.")
    return pids


def running() -> list[Container]:
    """The containers this Python process is running now."""
    return live("container")
