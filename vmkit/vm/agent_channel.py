"""The host side of the guest agent's line protocol (see `vmkit/guest/agent`).

Request:  ``<id> <seconds> <shell command>``, one line; the agent kills the command (and
its process group) after <seconds>. Answer: ``VMKIT-BEGIN <id>``, the output, then
``VMKIT-END <id> <exit status>``, followed by `` killed`` when the agent killed it. `Replies` parses the stream as it arrives, keeps at most
OUTPUT_LIMIT bytes of any one answer (a `yes` in the guest cannot exhaust the host's
memory) and drops what nobody waits for any more (the rest of a timed-out command).
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass

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
