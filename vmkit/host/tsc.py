"""The rate of this host's time-stamp counter (TSC), which an x86 guest's clock runs on.

An x86 guest kernel turns TSC ticks into time with the rate it believes the TSC has. vmkit
tells it that rate on the command line (`tsc_early_khz`): microvm has no PIT or HPET to
calibrate against, and without the option about half of the TCG boots hung. Under TCG QEMU
hands the guest the host's own TSC (`cpu_get_host_ticks`), and under KVM the guest's TSC
ticks at the host's rate too, so the right value is the host's TSC rate. A fixed 2 GHz
made the guest's clock run 1.30 s per host second on a 2.6 GHz host: a guest paused for
2 s then seemed to have lost nothing once the run was long enough.

The rate is measured once per process against CLOCK_MONOTONIC, by executing RDTSC through
a few bytes of machine code (x86_64 hosts only; elsewhere, or if the host refuses
executable memory, the old fixed rate stands).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import mmap
import platform
import time

log = logging.getLogger(__name__)

#: What the guest is told when the host's rate cannot be measured (kHz).
FALLBACK_KHZ = 2_000_000
#: How long one measurement counts ticks (s): 50 ms gives the rate to about 0.01 %.
WINDOW = 0.05
#: rdtsc; shl rdx, 32; or rax, rdx; ret — the 64-bit counter in rax (System V ABI).
_RDTSC = bytes.fromhex("0f31" "48c1e220" "4809d0" "c3")


def _rdtsc_function():
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(_RDTSC)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    function = ctypes.CFUNCTYPE(ctypes.c_uint64)(address)
    function.page = page  # the code lives as long as the function
    return function


def _reading(rdtsc) -> tuple[float, int]:
    """(host nanoseconds, TSC) taken together: the time is the middle of the TSC read."""
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    ticks = rdtsc()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    return (before + after) / 2, ticks


def measure_khz(window: float = WINDOW) -> int | None:
    """The host's TSC rate in kHz, counted over `window` seconds; None where it can't be."""
    if platform.machine() != "x86_64":
        return None
    try:
        rdtsc = _rdtsc_function()
    except (OSError, ValueError) as exc:  # e.g. executable memory refused (SELinux execmem)
        log.debug("cannot run RDTSC: %s", exc)
        return None
    start_ns, start_ticks = _reading(rdtsc)
    time.sleep(window)
    end_ns, end_ticks = _reading(rdtsc)
    khz = (end_ticks - start_ticks) / (end_ns - start_ns) * 1e6
    if not 100_000 <= khz <= 10_000_000:  # not a TSC that a guest could use
        log.debug("implausible TSC rate: %.0f kHz", khz)
        return None
    return round(khz)


@functools.cache
def guest_khz() -> int:
    """The TSC rate an x86_64 guest on this host should be told (kHz), measured once."""
    return measure_khz() or FALLBACK_KHZ
