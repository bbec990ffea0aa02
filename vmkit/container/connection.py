"""The engine vmkit's containers use: one docker-py client per process, and its failures in Korean.

Why here: finding the engine (`engine.require`) pings every candidate and making a client
asks its API version, which is too slow to do at each start; so every Container of this
process shares one client per list of candidate endpoints. When the engine stops or
restarts mid-run the connection fails: `call` turns that into an `EngineError` that says
what to do, and drops the cached clients so that the next start looks for the engine again.
A forked child forgets them (it must not share the parent's connections); `close()` closes
them.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

from ..errors import EngineError
from ..host import mode as mode_mod
from . import engine as engine_mod

_clients: dict[tuple, tuple[Any, str]] = {}
_lock = threading.Lock()


def get():
    """(docker-py client, url) for the engine vmkit uses, cached per process and endpoint list."""
    key = tuple(url for _, url, _ in engine_mod.candidates())
    with _lock:
        cached = _clients.get(key)
        if cached is not None:
            return cached
    endpoint = engine_mod.require()
    client = engine_mod.client(timeout=60, endpoint=endpoint)
    with _lock:
        _clients[key] = (client, endpoint.url)
    return client, endpoint.url


def errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the engine did not answer (stopped, restarting, gone)."""
    import requests

    return (requests.exceptions.ConnectionError, ConnectionError, socket.timeout)


def call(function, *args, **kwargs):
    """Call the engine; a lost connection becomes a Korean EngineError (and the client is dropped)."""
    try:
        return function(*args, **kwargs)
    except errors() as exc:
        with _lock:
            _clients.clear()
        raise lost_error() from exc


def lost_error() -> EngineError:
    return EngineError(
        "도커 엔진(Docker Engine)에 연결할 수 없습니다: 멈췄거나 재시작 중입니다.",
        mode_mod.engine_hint())


def message(exc) -> str:
    """What the engine answered to a refused request, for a Korean error's hint."""
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return f"엔진의 답(engine): {explanation or exc}"


def close() -> None:
    """Close every cached client (the next `get()` makes a new one)."""
    with _lock:
        cached = list(_clients.values())
        _clients.clear()
    for client, _ in cached:
        try:
            client.close()
        except Exception:
            pass


def _forget() -> None:
    _clients.clear()


os.register_at_fork(after_in_child=_forget)
