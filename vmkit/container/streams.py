"""The engine's hijacked streams: the socket under one, closing one, and the frames on it.

Why here: a container's output (attach) and each exec's output come the same way, as a
socket that docker-py hands over with 8-byte frame headers in front of each payload (stdout
and stderr multiplexed), so `output` and `execs` read them with the same two tools.
"""

from __future__ import annotations

import socket
import struct


def raw(stream):
    """The socket under a docker-py hijacked stream."""
    return getattr(stream, "_sock", stream)


def close(stream) -> None:
    """Shut down and close a hijacked stream (closing the wrapper alone leaves the socket open)."""
    for end in (lambda: raw(stream).shutdown(socket.SHUT_RDWR), stream.close):
        try:
            end()
        except OSError:
            pass


class Demux:
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
