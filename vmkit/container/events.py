"""The engine's events for this vmkit session, and what they say about how a container ended.

Why here: the engine tells of an OOM kill, a pause, a kill from outside or its own restart
only on its event stream, which is one HTTP request per engine that never ends. `Watcher`
follows it on one thread per process and engine (not one per container), hands each event
to the container it names, and tells them all when the stream ends (the engine stopped);
its `close()` ends the thread. `translate` turns an engine event into a Workload event, and
`Ending` keeps what the events said, to explain an end in Korean (`Container.exit`).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable

from ..errors import WorkloadError
from ..host import cleanup
from ..units import format_bytes
from . import connection
from .host import int_or_none

#: Engine event actions as Workload event names. QMP calls a paused VM "STOP" and a
#: running one "RESUME"; the engine's own "stop" (the container ended) becomes STOPPED.
EVENT_NAMES = {"unpause": "RESUME", "stop": "STOPPED"}


class Watcher:
    """One engine event stream per process and engine, for this vmkit session's containers.

    Events go to the container they name (its `_on_engine_event`); when the stream ends
    while containers live, they hear it (`_on_engine_lost`), and the watcher reconnects
    (replaying from the last event seen).
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
        self.closed = False

    def ensure(self, wait: float = 3.0) -> None:
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.connected.clear()
                self.thread = threading.Thread(target=self._run, name="vmkit-docker-events", daemon=True)
                self.thread.start()
        self.connected.wait(wait)

    def register(self, container) -> None:
        with self.lock:
            self.containers[container.id] = weakref.ref(container)
            early = [event for event in self.early if event.get("id") == container.id]
        for event in early:
            container._on_engine_event(event)

    def unregister(self, container) -> None:
        with self.lock:
            if container.id is not None:
                self.containers.pop(container.id, None)

    def close(self) -> None:
        """Stop following the engine: close the stream and end the thread (nobody hears of it)."""
        with self.lock:
            self.closed = True
            stream, thread = self.stream, self.thread
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)

    def _run(self) -> None:
        session = cleanup.session_id()
        while not self.closed:
            try:
                since = self.last_time
                stream = self.client.api.events(
                    since=f"{since:.9f}" if since else None, decode=True,
                    filters={"type": "container", "label": f"{cleanup.SESSION}={session}"})
                with self.lock:
                    self.stream = stream
                    if self.closed:
                        stream.close()
                        return
                self.connected.set()
                for event in self.stream:
                    if event.get("timeNano"):
                        self.last_time = event["timeNano"] / 1e9 + 1e-9
                    self._dispatch(event)
            except Exception:
                pass
            self.connected.clear()
            if self.closed:
                return
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


_watchers: dict[str, Watcher] = {}
_lock = threading.Lock()


def watcher_for(client, url: str) -> Watcher:
    """The watcher of the engine at `url` for this process (a new one for a new client)."""
    with _lock:
        watcher = _watchers.get(url)
        if watcher is None or watcher.client is not client or watcher.closed:
            watcher = _watchers[url] = Watcher(client, url)
        return watcher


def close() -> None:
    """Close every watcher of this process."""
    with _lock:
        watchers = list(_watchers.values())
        _watchers.clear()
    for watcher in watchers:
        watcher.close()


def _forget() -> None:
    _watchers.clear()


os.register_at_fork(after_in_child=_forget)


def translate(event: dict, engine, container: str | None) -> tuple[str, dict, dict[str, Any]]:
    """(the action's base name, the actor's attributes, the Workload event) of one engine event.

    `engine`: the `engine_kinds.EngineInfo` it came from (Podman names some actions its own
    way), or None; `container`: the short id the Workload event names.
    """
    action = event.get("Action") or event.get("status") or ""
    base = action.split(":", 1)[0].strip()
    if engine is not None:
        base = engine.action(base)
    attrs = (event.get("Actor") or {}).get("Attributes") or {}
    data = {key: value for key, value in attrs.items()
            if not key.startswith("org.vmkit.") and key not in ("image", "name")}
    when = event.get("timeNano")
    mono = time.monotonic() - (time.time() - when / 1e9) if when else time.monotonic()
    return base, attrs, {"event": EVENT_NAMES.get(base, base.upper()), "action": action,
                         "source": "docker", "container": container, "data": data, "time": mono}


class Ending:
    """How a container of `memory_bytes` ended (`exit`, None while it has not), in Korean.

    From its events while it ran (`heard`, `died`: OOM kills, a kill from outside, its exit
    code) or, when they did not tell, from what the engine says now.
    """

    def __init__(self, memory_bytes: int):
        self.memory_bytes = memory_bytes
        self.exit: dict[str, Any] | None = None
        self.ooms = 0
        self.killed = False
        self.signal: int | None = None

    def heard(self, base: str, attrs: dict) -> None:
        """An event before the end: count OOM kills, and remember a kill and its signal."""
        if base == "oom":
            self.ooms += 1
        elif base == "kill":  # Podman's kill event names no signal
            self.killed = True
            self.signal = int_or_none(attrs.get("signal"))

    def died(self, attrs: dict) -> str:
        """Its process ended (a die event's `attrs`), not stopped by vmkit: why; returns how."""
        try:
            code = int(attrs.get("exitCode", -1))
        except ValueError:
            code = -1
        if self.killed:
            if self.signal is None and code > 128:
                self.signal = code - 128
            how, reason = "killed", (f"밖에서 강제 종료되었습니다 (killed from outside, "
                                     f"signal {self.signal}, exit {code}).")
        elif self.ooms and code == 137:
            how, reason = "oom", (f"메모리 한도 {format_bytes(self.memory_bytes)}를 넘어 "
                                  f"커널이 강제 종료했습니다 (OOM kill, exit {code}).")
        elif code > 128:
            how, reason = "signal", (f"주 프로세스가 신호(signal) {code - 128}로 끝났습니다 "
                                     f"(exit {code}; 도커 밖에서 kill 되었을 수 있음).")
        else:
            how, reason = "exited", f"주 프로세스가 끝났습니다 (exit {code})."
        self.exit = {"how": how, "exit_code": code, "signal": self.signal,
                     "oom_events": self.ooms, "reason": reason, "at": time.monotonic()}
        return how

    def engine_lost(self, label: str) -> None:
        """The engine `label` went away: a kill just before was the engine's, not someone's."""
        if self.exit is not None and self.exit["how"] == "killed" and \
                time.monotonic() - self.exit.get("at", 0) < 15.0:
            self.exit.update(how="engine-stopped", reason=(
                f"{label}이(가) 멈추면서(또는 재시작하면서) 컨테이너를 멈췄습니다 "
                f"(engine stopped, signal {self.exit['signal']})."))

    def probe(self, inspect: Callable[[], dict], engine_lost: bool, label: str) -> str:
        """Whether the container still runs, as the engine says now (`inspect()`): "running",
        "ended" (`exit` says why if the engine removed it, or went away under it as
        `engine_lost` says: the engine `label` restarted) or "lost" (the engine does not answer)."""
        import docker

        try:
            info = inspect()
        except connection.errors():
            return "lost"
        except docker.errors.NotFound:
            self.exit = self.exit or {"how": "removed", "exit_code": None, "signal": None,
                                      "oom_events": self.ooms,
                                      "reason": "밖에서 삭제되었습니다 (removed from outside)."}
            return "ended"
        state = info.get("State") or {}
        if state.get("Running"):
            return "running"
        if engine_lost:
            self.exit = self.exit or {
                "how": "engine-restarted", "exit_code": state.get("ExitCode"), "signal": None,
                "oom_events": self.ooms,
                "reason": f"{label}이(가) 재시작되면서 컨테이너가 멈췄습니다 (engine restarted)."}
        return "ended"

    def error(self, name: str, starting: bool, inspect: Callable[[], dict],
              log: Callable[[], str]) -> WorkloadError:
        """Container `name` is not running (`starting`: it ended before it was ready): why, as
        `exit` says or else the engine's `inspect()`, with its last output (`log()`)."""
        if self.exit is None:
            self._inspected(inspect)
        reason = (self.exit or {}).get("reason", "끝났습니다.")
        what = "준비(ready) 전에 끝났습니다" if starting else "더 이상 실행 중이 아닙니다"
        return WorkloadError(f"컨테이너(container) '{name}'가 {what}: {reason}",
                             "stop()으로 정리하고 새 Container를 시작하세요.", log=log())

    def _inspected(self, inspect: Callable[[], dict]) -> None:
        """No event told how it ended: say it from the engine's `inspect()` (best effort)."""
        try:
            state = inspect()["State"]
        except Exception:
            return
        code = state.get("ExitCode")
        if state.get("Error"):
            reason = f"엔진이 오류를 알렸습니다: {state['Error']}"
        elif state.get("OOMKilled") and code == 137:
            reason = f"메모리 한도 {format_bytes(self.memory_bytes)}를 넘어 강제 종료되었습니다 (OOM kill)."
        else:
            reason = f"주 프로세스가 끝났습니다 (exit {code})."
        self.exit = {"how": "exited", "exit_code": code, "signal": None,
                     "oom_events": self.ooms, "reason": reason}

