"""Which image a container runs: a reference checked before, and found on the engine once.

Why here: vmkit never pulls from a registry (a class may be offline, and a typo must not
download anything): its own BusyBox image is imported from the guest artifacts, any other
must already be on the engine. A reference is checked before anything reaches the engine
(`compare` checks one before any VM boots), and what the engine has is asked once per
engine and process (`_known`), until a create finds the image gone.
"""

from __future__ import annotations

import os
import re

from ..errors import InvalidInput
from . import connection
from . import engine as engine_mod

#: An image reference as the engine parses it: [domain[:port]/]path[:tag][@digest].
_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_REFERENCE = re.compile(
    rf"^(?:{_HOST}(?:\.{_HOST})*(?::[0-9]+)?/)?{_PART}(?:/{_PART})*"
    r"(?::\w[\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$")

#: (engine url, image) pairs found on the engine by this process.
_known: set[tuple[str, str]] = set()


def check_image(image) -> str:
    """An image reference the engine can parse ('vmkit/busybox:TAG', 'busybox', ...), or a Korean error."""
    if not isinstance(image, str) or len(image) > 255 or not _REFERENCE.match(image):
        raise InvalidInput(f"이미지(image) 이름 {image!r}를 쓸 수 없습니다.",
                           "소문자·숫자와 '.', '_', '-', '/'로 된 이름에 ':태그(tag)'를 붙일 수 있습니다. "
                           "예: 'busybox:1.36' (비워 두면 vmkit의 BusyBox 이미지)")
    return image


def resolve(client, url: str, request: str | None, artifacts=None) -> str:
    """The image to run on the engine at `url`: `request`, or vmkit's (imported if missing).

    `artifacts`: whose image is vmkit's (default: the current guest artifacts).
    """
    import docker

    if request is None:
        from ..guest import artifacts as artifacts_mod

        arts = artifacts or artifacts_mod.require()
        image = arts.image
        if (url, image) not in _known:
            connection.call(engine_mod.ensure_image, client, arts)
    else:
        image = request
        if (url, image) not in _known:
            try:
                connection.call(client.api.inspect_image, image)
            except docker.errors.ImageNotFound:
                raise missing(image) from None
            except docker.errors.APIError as exc:  # e.g. an invalid reference format
                raise InvalidInput(f"이미지(image) 이름 {image!r}를 쓸 수 없습니다.",
                                   connection.message(exc)) from None
    _known.add((url, image))
    return image


def missing(image: str) -> InvalidInput:
    return InvalidInput(
        f"이미지(image) {image!r}가 도커 엔진(Docker Engine)에 없습니다.",
        "vmkit은 레지스트리(registry)에서 이미지를 받지 않습니다. image를 비워 두면 vmkit의 "
        "BusyBox 이미지를 씁니다 (`vmkit fetch`).")


def gone(url: str, image: str) -> InvalidInput:
    """The image was removed since it was found: forget it, and say it is missing."""
    _known.discard((url, image))
    return missing(image)


def _forget() -> None:
    _known.clear()


os.register_at_fork(after_in_child=_forget)
