"""The host side of the guest agent's line protocol (see `vmkit/guest/agent`).

Request:  ``<id> <seconds> <shell command>``, one line; the agent kills the command (and
its process group) after <seconds>. Answer: ``VMKIT-BEGIN <id>``, the output, then
``VMKIT-END <id> <exit status>``, followed by `` killed`` when the agent killed it. `Replies` parses the stream as it arrives, keeps at most
OUTPUT_LIMIT bytes of any one answer (a `yes` in the guest cannot exhaust the host's
memory) and drops what nobody waits for any more (the rest of a timed-out command).

`AgentClient` is one VM's connection to its agent (the virtio-serial port's unix socket):
the socket, the thread reading it and the answers by id live together, so the boot's
handshake, `VM.guest` and the polite power-off share one channel, and `close()` releases it.
"""

from __future__ import annotations

import base64
import itertools
import math
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import WorkloadError, WorkloadTimeout
from ..workload import parse_meminfo

OUTPUT_LIMIT = 1 << 20
_BEGIN = re.compile(rb"VMKIT-BEGIN (\d+)\r?\n")
#: Bytes held back between reads, in case a marker is split across them.
_HOLD = 64


def request_line(rid: bytes, seconds: float, command: str) -> bytes:
    """One request; a multi-line command travels base64-encoded."""
    if "\n" in command:
        encoded = base64.b64encode(command.encode()).decode()
        command = f"echo {encoded} | base64 -d | sh"
    return b"\n" + rid + f" {max(1, math.ceil(seconds))} {command}\n".encode()


@dataclass(frozen=True)
class Answer:
    """One finished command: exit status, output (at most OUTPUT_LIMIT bytes), bytes dropped,
    and whether the agent killed it at its time limit."""

    rc: int
    output: bytes
    dropped: int
    killed: bool = False

    def text(self) -> str:
        out = self.output.decode("utf-8", "replace")
        if self.dropped:
            out += (f"\n[vmkit: 출력이 {OUTPUT_LIMIT} 바이트를 넘어 나머지 {self.dropped} 바이트를 "
                    "버렸습니다 (output truncated)]\n")
        return out


class Replies:
    """Answers parsed from the agent's byte stream, kept only for the ids someone wants."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._current: bytes | None = None
        self._end: re.Pattern | None = None
        self._body = bytearray()
        self._dropped = 0
        self.wanted: set[bytes] = set()
        self.begun: set[bytes] = set()
        self.answers: dict[bytes, Answer] = {}

    def want(self, rid: bytes) -> None:
        self.wanted.add(rid)

    def forget(self, rids: set[bytes]) -> None:
        """Nobody waits for `rids` any more: drop their answers, now and when they come."""
        self.wanted -= rids
        self.begun -= rids
        for rid in rids:
            self.answers.pop(rid, None)

    def feed(self, data: bytes) -> None:
        """Parse newly received bytes."""
        self._buffer += data
        while True:
            if self._current is None:
                match = _BEGIN.search(self._buffer)
                if match is None:  # noise between answers: keep only a possible marker start
                    del self._buffer[:max(0, len(self._buffer) - _HOLD)]
                    return
                self._current = bytes(match.group(1))
                self._end = re.compile(rb"VMKIT-END " + self._current + rb" (\d+)( killed)?\r?\n")
                self._body.clear()
                self._dropped = 0
                if self._current in self.wanted:
                    self.begun.add(self._current)
                del self._buffer[:match.end()]
            match = self._end.search(self._buffer)
            if match is None:
                self._take(len(self._buffer) - _HOLD)
                return
            rc, killed, marker = int(match.group(1)), bool(match.group(2)), match.end() - match.start()
            self._take(match.start())  # (the match's groups read the buffer as it is now)
            if self._current in self.wanted:
                self.answers[self._current] = Answer(rc, bytes(self._body), self._dropped, killed)
            del self._buffer[:marker]
            self._current = None

    def _take(self, count: int) -> None:
        """Move `count` bytes of output from the buffer into the answer, within the limit."""
        if count <= 0:
            return
        room = max(0, OUTPUT_LIMIT - len(self._body))
        self._body += self._buffer[:min(count, room)]
        self._dropped += max(0, count - room)
        del self._buffer[:count]


class AgentClient:
    """The host's end of one guest agent: requests by id, answers from a reader thread.

    `alive()` tells whether QEMU still runs: a request stops waiting once it does not.
    Made before it connects, so that a `stop()` from another thread can always `close()` it.
    """

    def __init__(self, name: str, alive: Callable[[], bool]):
        self._name = name
        self._alive = alive
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._replies = Replies()
        self._eof = False
        self._cond = threading.Condition()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None

    def connect(self, path: Path, deadline: float) -> None:
        """Connect to the agent's socket (QEMU makes it), retrying until `deadline`; start reading."""
        while True:
            try:
                self._sock.connect(str(path))
                break
            except OSError:
                if time.monotonic() >= deadline or not self._alive():
                    self._sock.close()
                    raise WorkloadError("게스트 에이전트(agent) 소켓에 연결하지 못했습니다.")
                time.sleep(0.005)
        self._thread = threading.Thread(target=self._read, name=f"vmkit-{self._name}-agent", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Close the socket, wake every waiting request, and wait for the reader to end."""
        try:
            self._sock.close()
        except OSError:
            pass
        with self._cond:
            self._eof = True
            self._cond.notify_all()
        thread = self._thread
        # Not started: an interrupt (KeyboardInterrupt) landed in `Thread.start`.
        if thread is not None and thread is not threading.current_thread() and thread.ident is not None:
            thread.join(2)

    def _read(self) -> None:
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                data = b""
            with self._cond:
                if not data:
                    self._eof = True
                    self._cond.notify_all()
                    return
                self._replies.feed(data)
                self._cond.notify_all()

    def send(self, command: str, seconds: float) -> None:
        """Send a request nobody waits for (the power-off); raises OSError if the channel is gone."""
        self._sock.sendall(request_line(str(next(self._ids)).encode(), seconds, command))

    def request(self, command: str, timeout: float, retry: bool = False) -> tuple[int, str]:
        """Send one request to the agent and wait for its answer: (exit status, output).

        retry=True resends (new id, growing interval) until answered: the agent opens its
        port just after printing VMKIT-READY, and virtio-serial drops what arrives earlier.
        The agent kills the command when `timeout` runs out, so the next request is not
        stuck behind it; an answer keeps at most `OUTPUT_LIMIT` bytes.
        """
        deadline = time.monotonic() + timeout
        interval = 0.025
        wanted: set[bytes] = set()
        with self._lock:
            try:
                while True:
                    rid = str(next(self._ids)).encode()
                    with self._cond:
                        wanted.add(rid)
                        self._replies.want(rid)
                    try:
                        self._sock.sendall(request_line(rid, deadline - time.monotonic(), command))
                    except OSError:
                        raise WorkloadError("게스트 에이전트(agent) 연결이 끊겼습니다.") from None
                    resend_at = time.monotonic() + interval if retry else deadline
                    interval = min(interval * 2, 1.0)
                    with self._cond:
                        while True:
                            answer = next((self._replies.answers[rid] for rid in wanted
                                           if rid in self._replies.answers), None)
                            if answer is not None and not answer.killed:
                                return answer.rc, answer.text()
                            if self._eof or not self._alive():
                                raise WorkloadError("게스트 에이전트(agent) 연결이 끊겼습니다: VM이 종료되었을 수 있습니다.")
                            if retry and wanted & self._replies.begun:
                                resend_at = deadline  # received; the guest is working on it
                            now = time.monotonic()
                            if now >= deadline or answer is not None:
                                raise WorkloadTimeout(
                                    f"게스트 명령(command) {command!r}이(가) {timeout:g}초 안에 끝나지 않아 "
                                    "게스트 안에서 강제 종료했습니다 (killed).")
                            if now >= resend_at:
                                break
                            self._cond.wait(min(deadline, resend_at) - now)
            finally:
                with self._cond:
                    self._replies.forget(wanted)

    def handshake(self, deadline: float, timeout: float, log: Callable[[], str]) -> float:
        """The first answer on the channel: the guest's uptime in seconds.

        `vmkit-uptime` is the agent's builtin (no process started in the guest). On failure,
        the Korean timeout with `log()` (the console's last lines).
        """
        remaining = max(deadline - time.monotonic(), 0.5)
        try:
            _, out = self.request("vmkit-uptime", remaining, retry=True)
            return float(out.split()[0])
        except (WorkloadTimeout, ValueError, IndexError):
            raise WorkloadTimeout(
                f"게스트(guest)의 에이전트(agent)가 {timeout:g}초 안에 응답하지 않았습니다.",
                log=log()) from None

    def guest_info(self, timeout: float) -> dict[str, Any]:
        """What the guest reports about itself: kernel release, machine (`uname -m`), memory."""
        _, out = self.request("uname -r; uname -m; cat /proc/meminfo", timeout)
        lines = out.splitlines() + ["", ""]
        mem = parse_meminfo("\n".join(lines[2:]))
        return {"kernel": lines[0].strip(), "machine": lines[1].strip(),
                "mem_total_bytes": mem.get("MemTotal"),
                "mem_available_bytes": mem.get("MemAvailable")}
