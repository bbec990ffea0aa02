"""One `docker exec` in a running container: its output (bounded, by a deadline) and exit status.

Why here: an exec's output comes on a socket of its own, which is read to its end or to the
deadline, whatever the command prints (at most EXEC_OUTPUT_MAX of it is kept), and then
shut down, not only closed: Podman's conmon blocks writing to an unread one. `Exec` holds
that socket and `close()` releases it; what the failures mean for the container (ended,
engine gone) is the container's to say.
"""

from __future__ import annotations

import select
import time
from typing import Callable

from ..units import format_bytes
from . import streams
from .host import kill_tree

#: The most output one exec keeps; the rest is still read (until EOF or the timeout) and dropped.
EXEC_OUTPUT_MAX = 1 << 20


class Exec:
    """`argv` started in container `container_id` through `api` (docker-py's low-level client)."""

    def __init__(self, api, container_id: str, argv: list[str]):
        self.api = api
        self.id = api.exec_create(container_id, [str(arg) for arg in argv])["Id"]
        self.stream = api.exec_start(self.id, socket=True)

    def output(self, deadline: float) -> str:
        """Its output until EOF, with a note if more than EXEC_OUTPUT_MAX came; TimeoutError at `deadline`."""
        output, dropped = read_frames(self.stream, deadline)
        text = output.decode(errors="replace")
        if dropped:
            text += (f"\n[vmkit: 출력이 {format_bytes(EXEC_OUTPUT_MAX)}를 넘어 나머지 "
                     f"{format_bytes(dropped)}를 버렸습니다 (output truncated)]\n")
        return text

    def exit_code(self) -> int | None:
        """Its exit status as the engine reports it (None while it runs, or if it never ran)."""
        return self.api.exec_inspect(self.id).get("ExitCode")

    def kill(self, container_id: str, init_pid: int | None, members: Callable[[], list[int]]) -> None:
        """SIGKILL it (timed out) and what it started, if they run on this host in the container
        (`container_id`, first process `init_pid`, host pids `members()`: see `host.kill_tree`)."""
        try:
            pid = self.api.exec_inspect(self.id).get("Pid")
        except Exception:
            return
        if pid:
            kill_tree(pid, container_id, init_pid, members())

    def close(self) -> None:
        """Shut the output stream down (not only closed: Podman's conmon blocks writing to an unread one)."""
        streams.close(self.stream)

    def __enter__(self) -> "Exec":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_frames(stream, deadline: float, limit: int = EXEC_OUTPUT_MAX) -> tuple[bytes, int]:
    """An exec stream's output until EOF: (the first `limit` bytes, how many more were dropped).

    TimeoutError at `deadline`.
    """
    sock = streams.raw(stream)
    sock.settimeout(None)
    demux = streams.Demux()
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
