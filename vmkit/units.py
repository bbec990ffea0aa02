"""Parsing and checking the sizes and counts a student types."""

import math
import numbers
import os
import re
import unicodedata

import psutil

from .errors import InvalidInput

_UNITS = {"": 1 << 20, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_memory(value, *, minimum: int = 1, what: str = "메모리(memory)") -> int:
    """Bytes from '256M', '1G', '512MiB' or a plain number of MiB; rejected with a Korean reason."""
    if isinstance(value, bool):
        raise InvalidInput(f"{what} 크기로 {value!r}는 쓸 수 없습니다.", "예: '256M', '1G'")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise InvalidInput(f"{what} 크기 {value!r}는 유한한 수가 아닙니다.", "예: '256M', '1G'")
        size = int(value) << 20 if value < 1 << 20 else int(value)
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise InvalidInput(
                f"{what} 크기 {value!r}를 이해할 수 없습니다.",
                "숫자와 단위로 적어 주세요. 예: '256M', '1G' (단위가 없으면 MiB)",
            )
        size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size <= 0:
        raise InvalidInput(f"{what} 크기는 0보다 커야 합니다 (받은 값: {value!r}).")
    if size < minimum:
        raise InvalidInput(
            f"{what} {format_bytes(size)}는 너무 작습니다: 최소 {format_bytes(minimum)}가 필요합니다."
        )
    total = psutil.virtual_memory().total
    if size > total:
        raise InvalidInput(
            f"{what} {format_bytes(size)}는 이 호스트(host)의 전체 메모리 {format_bytes(total)}보다 큽니다."
        )
    return size


def parse_cpus(value) -> int:
    """A whole number of (virtual) CPUs between 1 and the host's CPU count."""
    try:
        cpus = int(value)
        if isinstance(value, bool) or cpus != float(value):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(f"CPU 개수 {value!r}는 정수가 아닙니다.", "예: cpus=1") from None
    host = os.cpu_count() or 1
    if cpus < 1:
        raise InvalidInput(f"CPU 개수는 1 이상이어야 합니다 (받은 값: {cpus}).")
    if cpus > host:
        raise InvalidInput(f"CPU 개수 {cpus}는 이 호스트(host)의 CPU 수 {host}보다 많습니다.")
    return cpus


def check_seconds(value, what: str = "제한 시간(timeout)", *, zero: bool = False) -> float:
    """A number of seconds: finite and greater than 0 (or at least 0 with zero=True)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInput(f"{what} {value!r}는 초 단위의 숫자가 아닙니다.", "예: timeout=60")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        bound = "0 이상의" if zero else "0보다 큰"
        raise InvalidInput(f"{what}은(는) {bound} 유한한 초여야 합니다 (받은 값: {value!r}).")
    return float(value)


def check_count(value, what: str, minimum: int = 1) -> int:
    """A whole number (not a bool) of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InvalidInput(f"{what}는 {minimum} 이상의 정수여야 합니다 (받은 값: {value!r}).")
    return int(value)


def check_callback(value, what: str):
    """None, or something callable (a function the caller hands in, e.g. for progress)."""
    if value is not None and not callable(value):
        raise InvalidInput(f"{what}에는 함수(callable)를 주어야 합니다 (받은 값: {value!r}).")
    return value


def check_strings(value, what: str) -> tuple[str, ...]:
    """A list of strings (a command line as separate words), never one string."""
    if isinstance(value, (str, bytes)):
        raise InvalidInput(f"{what}은(는) 문자열 하나가 아니라 목록(list)이어야 합니다 (받은 값: {value!r}).",
                           "단어마다 따로 적어 주세요. 예: ['sh', '-c', 'echo hi']")
    try:
        items = tuple(value)
    except TypeError:
        raise InvalidInput(f"{what}은(는) 문자열(str)의 목록(list)이어야 합니다 (받은 값: {value!r}).") from None
    for item in items:
        if not isinstance(item, str):
            raise InvalidInput(f"{what}의 항목 {item!r}은(는) 문자열(str)이 아닙니다.")
    return items


def format_bytes(size: float) -> str:
    """'256 MiB' style, for messages and tables."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit in ("B", "KiB", "MiB") else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def display_width(text: str) -> int:
    """Terminal columns `text` takes: Hangul and other wide characters count twice."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def pad(text: str, width: int, right: bool = False) -> str:
    """`text` padded to `width` terminal columns (right-aligned if `right`)."""
    fill = " " * max(0, width - display_width(text))
    return fill + text if right else text + fill
