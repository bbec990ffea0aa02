"""A synchronous QMP session on vmkit's background loop, over `qemu.qmp.QMPClient`.

QMP (the QEMU Machine Protocol) is JSON over a socket: QEMU greets, the client
negotiates capabilities, then sends commands (`{"execute": "query-status"}`) and
receives replies and asynchronous events (`STOP`, `RESUME`, `SHUTDOWN`, ...).
`qemu.qmp` speaks it with asyncio; a notebook already runs a loop of its own, so the
client lives on vmkit's private loop (`background`) and this class offers blocking
calls that work from any thread, plus `execute_async` for callers with their own loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Callable

from qemu.qmp import ConnectError, ExecuteError, QMPClient, QMPError, Runstate

from ..errors import WorkloadError, WorkloadTimeout
from ..host import background

# qemu.qmp logs every dropped connection at ERROR level; the VM reports errors itself.
logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)


class QMPSession:
    """One connected QMP monitor of one QEMU process.

    `on_event(event_dict)` is called on the loop thread for every QMP event; it must
    not block (the VM hands events on to its listeners from its own thread).
    """

    def __init__(self, name: str, on_event: Callable[[dict], None] | None = None):
        self.name = name
        self.client = QMPClient(name)
        self._on_event = on_event
        self._pump: asyncio.Task | None = None

    # -- connection
    def connect(self, socket_path: Path, deadline: float,
                alive: Callable[[], bool] = lambda: True) -> dict:
        """Connect to QEMU's QMP server socket, retrying until `deadline` (monotonic).

        Returns the greeting's QEMU version. Raises WorkloadError if `alive()` turns false
        (QEMU exited) and WorkloadTimeout at the deadline.
        """
        return background.run(self._connect(str(socket_path), deadline, alive))

    async def _connect(self, path: str, deadline: float, alive: Callable[[], bool]) -> dict:
        while True:
            try:
                await self.client.connect(path)
                break
            except ConnectError as exc:
                if not alive():
                    raise WorkloadError("QEMU가 QMP 연결 전에 종료되었습니다.") from exc
                if time.monotonic() >= deadline:
                    raise WorkloadTimeout(
                        f"QMP 소켓(socket) {path}에 제때 연결하지 못했습니다.") from exc
                await asyncio.sleep(0.005)
        self._pump = asyncio.get_running_loop().create_task(self._pump_events())
        greeting = self.client.greeting
        return dict(greeting.QMP.version.get("qemu", {})) if greeting else {}

    async def _pump_events(self) -> None:
        async for event in self.client.events:
            if self._on_event is not None:
                try:
                    self._on_event({"event": event.get("event"),
                                    "data": dict(event.get("data", {}) or {}),
                                    "timestamp": _qmp_time(event.get("timestamp"))})
                except Exception:  # a broken listener must not stop the pump
                    pass

    @property
    def connected(self) -> bool:
        return self.client.runstate == Runstate.RUNNING

    def close(self, timeout: float = 2.0) -> None:
        """Disconnect; never raises (QEMU may already be gone)."""
        async def _close() -> None:
            if self._pump is not None:
                self._pump.cancel()
            try:
                await self.client.disconnect()
            except Exception:
                pass
        try:
            background.run(_close(), timeout)
        except Exception:
            pass

    # -- commands
    def execute(self, command: str, arguments: dict | None = None,
                timeout: float = 10.0) -> Any:
        """Run one QMP command and return its reply's `return` value."""
        try:
            return background.run(self.client.execute(command, arguments or None), timeout)
        except TimeoutError:
            raise WorkloadTimeout(
                f"QMP 명령(command) '{command}'의 응답이 {timeout:g}초 안에 오지 않았습니다.") from None
        except ExecuteError as exc:
            raise WorkloadError(
                f"QMP 명령(command) '{command}'이(가) 실패했습니다: {exc.error.error.desc} "
                f"({exc.error.error.class_})") from None
        except (QMPError, EOFError, OSError) as exc:
            raise WorkloadError(
                f"QMP 연결(connection)이 끊겼습니다: QEMU가 종료되었을 수 있습니다 ({exc!r}).") from None

    async def execute_async(self, command: str, arguments: dict | None = None) -> Any:
        """`execute` for a caller that awaits on its own event loop (e.g. a notebook's)."""
        future = asyncio.run_coroutine_threadsafe(
            self.client.execute(command, arguments or None), background.loop())
        return await asyncio.wrap_future(future)

    def send_fd(self, fd: int, name: str) -> None:
        """Hand an open file descriptor to QEMU under `name` (SCM_RIGHTS, then `getfd`)."""
        async def _send() -> None:
            self.client.send_fd_scm(fd)
            await self.client.execute("getfd", {"fdname": name})
        try:
            background.run(_send(), 10.0)
        except ExecuteError as exc:
            raise WorkloadError(f"QEMU에 파일 디스크립터(fd)를 넘기지 못했습니다: {exc.error.error.desc}") from None


def qmp_arguments(arguments: dict | None, keywords: dict[str, Any]) -> dict[str, Any]:
    """A command's arguments: Python keyword names with '-' for '_', then `arguments` as given."""
    args = {key.replace("_", "-"): value for key, value in keywords.items()}
    args.update(arguments or {})
    return args


def _qmp_time(stamp: Any) -> float | None:
    """QMP's {"seconds": s, "microseconds": us} as a float (host wall clock)."""
    try:
        return stamp["seconds"] + stamp["microseconds"] / 1e6
    except (TypeError, KeyError):
        return None
