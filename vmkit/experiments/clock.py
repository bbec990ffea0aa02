"""A guest's clock against the host's.

A guest measures time with the clock its (virtual) hardware gives it. While the
hypervisor holds a VM's vCPUs (QMP `stop`), the host's time goes on but the guest runs no
instruction, and QEMU holds the guest's virtual clock with them: after `cont` the
guest's uptime has grown by less than the host's time, by about the time it was paused.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import InvalidInput, WorkloadError


@dataclass(frozen=True)
class ClockReading:
    """The host's monotonic clock and the guest's uptime, read at (about) the same moment.

    The host time is taken halfway through the guest agent's round trip, so it is off by
    at most half of `rtt_s`.
    """

    host_s: float
    guest_s: float
    rtt_s: float


def guest_uptime(vm, timeout: float = 5.0) -> float:
    """The guest's uptime in seconds (/proc/uptime, read by the guest agent)."""
    out = vm.guest("cat /proc/uptime", timeout)
    try:
        return float(out.split()[0])
    except (ValueError, IndexError):
        raise WorkloadError(f"게스트(guest)의 /proc/uptime을 읽지 못했습니다: {out[:80]!r}") from None


def read(vm, timeout: float = 5.0) -> ClockReading:
    """Both clocks now (the guest must be running: a paused guest cannot answer)."""
    before = time.monotonic()
    guest = guest_uptime(vm, timeout)
    after = time.monotonic()
    return ClockReading(host_s=(before + after) / 2, guest_s=guest, rtt_s=after - before)


@dataclass(frozen=True)
class PauseGap:
    """What a pause did to the guest's clock: the host's elapsed time between two readings,
    the guest's, and how long the guest was held (`paused_s`, on the host's clock)."""

    host_s: float
    guest_s: float
    paused_s: float

    @property
    def lost_s(self) -> float:
        """Host seconds the guest did not see."""
        return self.host_s - self.guest_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lost_s": self.lost_s}


def pause_gap(vm, seconds: float = 2.0) -> PauseGap:
    """Read both clocks, pause the VM for `seconds`, resume, read again."""
    if not 0 < seconds <= 60:
        raise InvalidInput(f"일시 정지(pause) 시간 {seconds!r}초는 쓸 수 없습니다.", "0초보다 길고 60초 이하로 주세요.")
    first = read(vm)
    held = time.monotonic()
    vm.pause()
    try:
        time.sleep(seconds)
    finally:
        vm.resume()
        held = time.monotonic() - held
    second = read(vm)
    return PauseGap(host_s=second.host_s - first.host_s, guest_s=second.guest_s - first.guest_s,
                    paused_s=held)
