"""vCPU threads, pinning and CPU rates (`vmkit.host.sched`), and the guest's clock against the
host's (`vmkit.experiments.clock`), on real QEMU guests.

Two guests are shared by the tests of `TestTwoGuests` (fixture `shared_vm`: conftest's
per-test leak check skips tests that use it; the fixture checks its own guests are gone).
Rates are checked by relations that hold on a busy machine too, never by exact values.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

import psutil
import pytest

from vmkit.experiments import clock
from vmkit.host import tsc
from vmkit.host import sched
from vmkit.errors import InvalidInput, WorkloadError
from vmkit.vm.vm import VM

pytestmark = pytest.mark.integration


def assert_gone(pids) -> None:
    """No QEMU of these pids runs any more."""
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@contextmanager
def two_guests(memory: str):
    """Two booted guests, {"A": vm, "B": vm}; on exit both are stopped and their QEMUs gone."""
    vms = {label: VM(memory=memory) for label in ("A", "B")}
    pids = []
    try:
        for vm in vms.values():
            vm.start(timeout=60)
            pids.append(vm.pid)
        yield vms
    finally:
        for vm in vms.values():
            vm.stop()
    assert_gone(pids)


@pytest.fixture(scope="class")
def shared_vm(guest_artifacts):
    """Two 128 MiB guests for the tests of `TestTwoGuests`."""
    with two_guests("128M") as vms:
        yield vms


class TestTwoGuests:
    def test_each_vcpu_is_a_thread_of_its_qemu(self, shared_vm):
        for vm in shared_vm.values():
            threads = sched.vcpu_threads(vm)
            assert len(threads) == 1 and threads[0].vcpus == (0,)
            assert threads[0].pid == vm.pid
            assert threads[0].tid in {t.id for t in psutil.Process(vm.pid).threads()}
            assert threads[0].tid == vm.qmp("query-cpus-fast")[0]["thread-id"]
            assert sched.affinity(threads[0]) == set(sched.host_cores())

    def test_busy_guest_gets_cpu_time_and_pinning_shares_one_core(self, shared_vm):
        a, b = shared_vm["A"], shared_vm["B"]
        meter = sched.CpuMeter(shared_vm)
        seen: list[sched.CpuSample] = []
        try:
            sched.spin(a)
            loop = a.guest(f"cat {sched.SPIN_PIDFILE}").strip()
            sched.spin(a)  # a second call starts no second loop
            assert a.guest(f"cat {sched.SPIN_PIDFILE}").strip() == loop
            assert sched.spinning(a) and not sched.spinning(b)
            solo = meter.measure(2.0, interval=0.5, on_sample=seen.append)
            sched.spin(b)
            both = meter.measure(2.0)
            core = sched.host_cores()[-1]
            with sched.pinned(shared_vm, core):
                assert meter.affinity() == {"A": [core], "B": [core]}
                assert all(sched.affinity(t) == {core} for t in meter.threads["A"])
                pinned = meter.measure(2.0)
            assert meter.affinity() == {"A": sched.host_cores(), "B": sched.host_cores()}
        finally:
            sched.stop_spin(a)
            sched.stop_spin(b)
        assert not sched.spinning(a) and not sched.spinning(b)
        assert 3 <= len(seen) <= 5 and all(s.seconds > 0 for s in seen)
        assert [s.t for s in seen] == sorted(s.t for s in seen)
        assert solo.rates["B"] < 0.2, solo
        assert solo.rates["A"] > 0.25 and solo.rates["A"] > 4 * solo.rates["B"], solo
        for m in (solo, both, pinned):
            assert all(0 <= r <= 1.05 for r in m.rates.values()), m
            assert all(0 <= c <= 1 for c in m.cores.values()) and m.others >= 0
            assert set(m.to_dict()) >= {"rates", "cores", "affinity", "others", "seconds"}
        # One core hands out at most one CPU-second per second, fairly.
        assert sum(pinned.rates.values()) <= 1.05, pinned
        assert 0.5 <= pinned.rates["A"] / pinned.rates["B"] <= 2, pinned
        if len(sched.host_cores()) >= 2 and both.others < 0.5:  # a quiet host: both got a core
            assert sum(both.rates.values()) > sum(pinned.rates.values()) + 0.3, (both, pinned)

    def test_pin_and_unpin(self, shared_vm):
        a = shared_vm["A"]
        core = sched.host_cores()[0]
        previous = sched.pin(a, core)
        try:
            (thread,) = sched.vcpu_threads(a)
            assert previous == {thread.tid: set(sched.host_cores())}
            assert sched.affinity(thread) == {core}
            assert sched.affinity(sched.vcpu_threads(shared_vm["B"])[0]) == set(sched.host_cores())
        finally:
            sched.unpin(a)
        assert sched.affinity(thread) == set(sched.host_cores())

    @pytest.mark.parametrize("cores, words", [
        ([], "하나 이상"),
        ([4096], "쓸 수 없습니다"),
        ([-1], "쓸 수 없습니다"),
        (["0"], "쓸 수 없습니다"),
        ([True], "쓸 수 없습니다"),
        ("zero", "쓸 수 없습니다"),
        (None, "이해할 수 없습니다"),
    ])
    def test_bad_cores_are_refused_and_nothing_changes(self, shared_vm, cores, words):
        a = shared_vm["A"]
        with pytest.raises(InvalidInput) as info:
            sched.pin(a, cores)
        assert words in str(info.value) and "코어(core)" in str(info.value)
        assert "쓸 수 있는 코어(core) 번호" in str(info.value)  # the hint names the cores
        assert sched.affinity(sched.vcpu_threads(a)[0]) == set(sched.host_cores())

    def test_bad_measure_window(self, shared_vm):
        meter = sched.CpuMeter(shared_vm)
        for seconds, interval in ((0, 0.5), (1, 2), (1, 0), (601, 1)):
            with pytest.raises(InvalidInput, match="측정 시간"):
                meter.measure(seconds, interval)

    def test_stop_ends_a_measurement_early(self, shared_vm):
        import threading

        stop = threading.Event()
        meter = sched.CpuMeter(shared_vm)
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        result = meter.measure(30.0, interval=0.1, stop=stop)
        assert time.monotonic() - started < 5
        assert 0 < result.seconds < 5 and set(result.rates) == {"A", "B"}

    def test_pause_stops_the_guest_clock_only(self, shared_vm):
        a = shared_vm["A"]
        first = clock.read(a)
        assert first.guest_s > 0 and 0 < first.rtt_s < 5
        gap = clock.pause_gap(a, 1.0)
        assert a.status() == "running"
        assert 0.9 <= gap.paused_s < 5
        assert gap.host_s >= gap.paused_s
        assert 0 <= gap.guest_s < gap.host_s - 0.7, gap
        assert abs(gap.lost_s - gap.paused_s) < 0.5, gap
        assert gap.to_dict()["lost_s"] == gap.lost_s
        # while running, both clocks advance alike
        later = clock.read(a)
        assert abs((later.host_s - first.host_s) - (later.guest_s - first.guest_s) - gap.lost_s) < 0.5

    def test_the_guest_clock_runs_at_the_host_rate(self, shared_vm):
        """Told the host's TSC rate (`host.tsc`), the guest's uptime grows one second per host
        second: told a fixed 2 GHz, it grew 1.30 s per second on a 2.6 GHz host."""
        b = shared_vm["B"]
        first = clock.read(b)
        time.sleep(4.0)
        last = clock.read(b)
        rate = (last.guest_s - first.guest_s) / (last.host_s - first.host_s)
        assert abs(rate - 1.0) < 0.03, (rate, tsc.guest_khz())


def test_bad_input_needs_no_vm():
    with pytest.raises(InvalidInput, match="CpuMeter"):
        sched.CpuMeter({})
    with pytest.raises(InvalidInput, match="CpuMeter"):
        sched.CpuMeter([1, 2])
    for seconds in (0, -1, 61):
        with pytest.raises(InvalidInput, match="일시 정지"):
            clock.pause_gap(None, seconds)
    assert sched.check_cores(sched.host_cores()[0]) == {sched.host_cores()[0]}
    assert sched.host_cores() == sorted(os.sched_getaffinity(0))


def test_a_stopped_vm_is_a_korean_error(guest_artifacts):
    vm = VM(memory="128M")
    with pytest.raises(WorkloadError, match="실행 중이 아닙니다"):
        sched.vcpu_threads(vm)
    vm.start(timeout=60)
    try:
        (thread,) = sched.vcpu_threads(vm)
        assert sched.thread_cpu_seconds(thread) > 0
        meter = sched.CpuMeter({"vm": vm})
    finally:
        vm.stop()
    with pytest.raises(WorkloadError, match="스레드"):
        sched.thread_cpu_seconds(thread)
    with pytest.raises(WorkloadError, match="스레드"):
        meter.sample()
    with pytest.raises(WorkloadError, match="스레드"):
        sched.affinity(thread)
    with pytest.raises(WorkloadError, match="실행 중이 아닙니다"):
        sched.pin(vm, sched.host_cores()[0])
    with pytest.raises(WorkloadError):
        clock.read(vm)
