"""A Container's arguments, checked when it is made, before anything reaches the engine.

Why here: the engine would refuse a bad name or limit only after vmkit had found it, swept
it and resolved the image, and then in its own English (with Podman, often as a 500);
checked first, a wrong value is a Korean `InvalidInput` at once, with what is allowed.
The image reference is checked in `images`, with the rest of what vmkit does about images.
"""

from __future__ import annotations

import os
import re

from ..errors import InvalidInput

#: Docker's smallest CPU quota: 0.01 CPU (NanoCPUs 1e7).
MIN_CPUS = 0.01
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(f"컨테이너 이름(name) {name!r}는 쓸 수 없습니다.",
                           "영문자·숫자로 시작하고 영문자, 숫자, '_', '.', '-'만 쓰세요 (63자까지).")
    return name


def check_cpus(value) -> float:
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


def check_pids(value) -> int:
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


def check_read_only(value) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"읽기 전용(read_only)은 True나 False여야 합니다 (받은 값: {value!r}).")
    return value


def check_artifacts(artifacts):
    """Guest artifacts (whose image is vmkit's), or None for the current ones."""
    if artifacts is not None:
        from ..guest.artifacts import Artifacts

        if not isinstance(artifacts, Artifacts):
            raise InvalidInput(
                f"아티팩트(artifacts)에는 vmkit.guest.artifacts.Artifacts를 주어야 합니다 (받은 값: {artifacts!r}).",
                "보통은 비워 두세요: vmkit이 현재 아티팩트를 찾습니다.")
    return artifacts
