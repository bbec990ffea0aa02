"""The memory guard: its arithmetic with injected numbers, and real refusals before anything starts."""

from __future__ import annotations

import contextlib
import re
from types import SimpleNamespace

import psutil
import pytest

import vmkit
from vmkit.experiments import compare
from vmkit.host import memguard
from vmkit.vm.rundir import runtime_root
from vmkit.errors import InsufficientMemory, InvalidInput, VmkitError
from vmkit.host.memguard import Running, assess, refusal

from conftest import qemu_children, session_containers

MiB = 1 << 20
GiB = 1 << 30


@pytest.fixture(autouse=True)
def default_reserve(monkeypatch):
    """Every test starts from the default reserve (no environment, no module setting)."""
    monkeypatch.delenv(memguard.ENV, raising=False)
    monkeypatch.setattr(memguard, "RESERVE", None)


def kib(size: int) -> str:
    """A size the way a student would type it, exact to the KiB."""
    return f"{size // 1024}K"


# ------------------------------------------------------------ the arithmetic, injected

def test_refuses_when_the_reserve_would_be_touched():
    a = assess(available=3 * GiB, request=2 * GiB, reserve=GiB)
    assert a.ok and a.spare == 2 * GiB  # exactly down to the reserve is still fine
    a = assess(available=3 * GiB, request=2 * GiB + 1, reserve=GiB)
    assert not a.ok
    assert assess(available=3 * GiB, request=3 * GiB, reserve=0).ok
    assert not assess(available=GiB // 2, request=0, reserve=GiB).ok  # already under it


def test_promised_but_untouched_memory_of_own_workloads_counts():
    running = [
        Running("vm", "vm-a", resident_bytes=200 * MiB, headroom_bytes=28 * MiB),
        Running("vm", "vm-b", resident_bytes=0, headroom_bytes=228 * MiB, starting=True),
        Running("container", "c-1", resident_bytes=MiB, headroom_bytes=0),
        # another process's QEMU: already inside `available`, no promise of ours
        Running("vm", "qemu-other", resident_bytes=500 * MiB, ours=False, headroom_bytes=999 * MiB),
    ]
    a = assess(available=2 * GiB, request=800 * MiB, reserve=GiB, running=running)
    assert a.committed == 256 * MiB
    assert a.spare == GiB - 256 * MiB and not a.ok  # 800 MiB > 768 MiB
    assert assess(2 * GiB, 800 * MiB, GiB).ok  # the same request without those promises fits
    assert assess(2 * GiB, 768 * MiB, GiB, running).ok  # down to the reserve exactly
    assert a.fits(228 * MiB) == (768 * MiB) // (228 * MiB) == 3
    assert a.fits(0) == 0
    assert assess(available=GiB, request=0, reserve=2 * GiB).fits(8 * MiB) == 0


def test_requests_vm_ram_plus_overhead_container_not_its_limit():
    assert memguard.request_for("vm", 128 * MiB) == 128 * MiB + memguard.QEMU_OVERHEAD
    assert memguard.request_for("vm-restore", 256 * MiB) == 256 * MiB + memguard.QEMU_OVERHEAD
    assert memguard.request_for("container", 64 * MiB) == memguard.CONTAINER_COST
    assert memguard.request_for("container", 4 * GiB) == memguard.CONTAINER_COST
    # what `make bench` asks for must be a few GiB, not the 12.5 GiB of container limits
    assert 200 * memguard.request_for("container", 64 * MiB) <= 2 * GiB
    assert 16 * memguard.request_for("vm", 128 * MiB) <= 4 * GiB


def test_refusal_names_what_runs_in_korean():
    running = [Running("vm", f"vm-{i}", 216 * MiB, headroom_bytes=12 * MiB) for i in range(6)]
    running += [Running("vm", "lab-guest", 300 * MiB, ours=False),
                Running("container", "vmkit-ab12", 2 * MiB),
                Running("container", "vmkit-cd34", 3 * MiB, ours=False)]
    a = assess(1400 * MiB, 2 * GiB, GiB, running)
    detail = "게스트 메모리(guest RAM) 1.9 GiB + QEMU 오버헤드(overhead) 약 100 MiB"
    text = str(refusal(a, running, "VM 'big'", detail))
    assert text.startswith("메모리(memory)가 부족해 VM 'big'을(를) 시작하지 않았습니다: 요청 2.0 GiB")
    assert "사용 가능(available) 1.4 GiB" in text and "남겨 둘 여유(reserve) 1.0 GiB" in text
    assert "앞으로 더 쓸 수 있는 72 MiB" in text
    assert "이 프로세스의 VM 6대 (QEMU RSS 합 1.3 GiB: vm-0 216 MiB" in text and "외 2개" in text
    assert "호스트의 다른 QEMU 프로세스 1개 (RSS 합 300 MiB: lab-guest 300 MiB)" in text
    assert "이 프로세스의 컨테이너 1개 (메모리 사용 합 2 MiB" in text
    assert "다른 vmkit 컨테이너 1개" in text
    assert "쓰지 않는 VM과 컨테이너를 끄거나(stop) 메모리를 줄이세요." in text
    assert memguard.ENV in text  # the hint says how to change the reserve
    quiet = str(refusal(assess(GiB, 2 * GiB, GiB), [], "VM 'x'"))
    assert "실행 중인 vmkit VM·컨테이너와 QEMU 프로세스는 없습니다" in quiet


def test_batch_refusal_says_how_many_fit():
    each = 228 * MiB
    a = assess(available=3 * GiB, request=100 * each, reserve=GiB)
    text = str(refusal(a, [], "밀도(density) 측정 (VM 100개)", count=100, each=each))
    assert "요청 100개 × 228 MiB = 22.3 GiB" in text
    assert "지금은 최대 8개까지 띄울 수 있습니다." in text  # 2 GiB // 228 MiB


# ------------------------------------------------------------ the reserve setting

def test_reserve_default_environment_module_setting_and_argument(monkeypatch):
    assert memguard.reserve_bytes() == GiB
    for text, expected in [("512M", 512 * MiB), ("2G", 2 * GiB), ("0", 0), ("0M", 0),
                           ("768", 768 * MiB), (" 1.5GiB ", 3 * GiB // 2)]:
        monkeypatch.setenv(memguard.ENV, text)
        assert memguard.reserve_bytes() == expected, text
    monkeypatch.setattr(memguard, "RESERVE", "256M")
    assert memguard.reserve_bytes() == 256 * MiB  # the module setting beats the environment
    assert memguard.reserve_bytes("64M") == 64 * MiB  # an argument beats both
    assert memguard.reserve_bytes(0) == 0


@pytest.mark.parametrize("value", ["abc", "-1G", "1X", "100T"])
def test_bad_reserve_is_a_korean_invalid_input(monkeypatch, value):
    monkeypatch.setenv(memguard.ENV, value)
    with pytest.raises(InvalidInput) as info:
        memguard.reserve_bytes()
    text = str(info.value)
    assert memguard.ENV in text and "여유 메모리(reserve)" in text
    assert "예: '512M'" in text or "전체 메모리" in text
    with pytest.raises(InvalidInput):
        memguard.parse_reserve(value)
    with pytest.raises(InvalidInput):
        memguard.parse_reserve(float("nan"))


# ------------------------------------------------------------ admission, injected

def test_starting_workloads_are_counted_until_their_start_ends(monkeypatch):
    """Parallel starts (density, widgets) each see the others' promises, not the same free memory."""
    monkeypatch.setattr(memguard.psutil, "virtual_memory",
                        lambda: SimpleNamespace(available=GiB + 1536 * MiB, total=32 * GiB))
    monkeypatch.setattr(memguard, "running_workloads", lambda: [])
    fakes = [SimpleNamespace(kind="vm", name=f"fake-{i}", memory_bytes=128 * MiB, pid=None, id=None)
             for i in range(7)]
    with contextlib.ExitStack() as stack:
        for fake in fakes[:6]:  # 6 × 228 MiB = 1368 MiB ≤ 1536 MiB
            stack.enter_context(memguard.admit(fake))
        assert not memguard.fits(228 * MiB)
        with pytest.raises(InsufficientMemory, match="VM 'fake-6'"):
            with memguard.admit(fakes[6]):
                pytest.fail("admitted over the reserve")
    assert not memguard._starting  # released when their starts ended
    with memguard.admit(fakes[6]):
        pass
    small = SimpleNamespace(kind="container", name="c", memory_bytes=64 * MiB, id=None)
    with memguard.admit(small, reserve=GiB + 1536 * MiB - memguard.CONTAINER_COST):
        pass
    with pytest.raises(InsufficientMemory, match="컨테이너"):
        with memguard.admit(small, reserve=GiB + 1536 * MiB - memguard.CONTAINER_COST + 1):
            pass


# ------------------------------------------------------------ real refusals: nothing starts

def assert_nothing_started(vm) -> None:
    assert vm.proc is None and vm.pid is None and vm.runtime_dir is None and vm.trace is None
    assert not (runtime_root() / vm.name).exists()
    assert not qemu_children()


@pytest.mark.integration
def test_vm_asking_for_more_than_the_host_has_is_refused(guest_artifacts):
    total = psutil.virtual_memory().total
    # More than the whole host: refused when the VM is made (units.parse_memory).
    with pytest.raises(InvalidInput, match="전체 메모리"):
        vmkit.VM(memory=total + GiB, accel="tcg").start()
    # Within the host's total but more than is available now: refused by the guard at start.
    memory = min(total, psutil.virtual_memory().available + GiB)  # a margin: other tests free memory too
    vm = vmkit.VM(memory=memory, accel="tcg")
    with pytest.raises(InsufficientMemory) as info:
        vm.start()
    text = str(info.value)
    assert f"VM '{vm.name}'을(를) 시작하지 않았습니다" in text and "QEMU 오버헤드(overhead)" in text
    assert "사용 가능(available)" in text and "남겨 둘 여유(reserve) 1.0 GiB" in text
    assert "실행 중" in text and "쓰지 않는 VM과 컨테이너를 끄거나" in text
    assert_nothing_started(vm)


@pytest.mark.integration
def test_container_asking_for_more_than_the_host_has_is_refused(docker_engine, guest_artifacts,
                                                                monkeypatch):
    total = psutil.virtual_memory().total
    with pytest.raises(InvalidInput, match="전체 메모리"):
        vmkit.Container(memory=total + GiB).start()
    # The limit is a ceiling, not a cost: only a host with less than its cost to spare refuses.
    monkeypatch.setenv(memguard.ENV, kib(psutil.virtual_memory().available))
    container = vmkit.Container(memory="64M")
    with pytest.raises(InsufficientMemory) as info:
        container.start()
    assert f"컨테이너(container) '{container.name}'을(를) 시작하지 않았습니다" in str(info.value)
    assert "상한일 뿐 미리 잡지 않습니다" in str(info.value)
    assert container.id is None and container.state == "new"
    assert not session_containers()


@pytest.mark.integration
def test_density_is_refused_up_front_with_how_many_fit(guest_artifacts):
    each = memguard.request_for("vm", 128 * MiB)
    with pytest.raises(InsufficientMemory) as info:
        compare.density("vm", 10**4, memory="128M")
    text = str(info.value)
    assert "밀도(density) 측정 (VM 10000개)" in text and "10000개 × 228 MiB" in text
    fit = int(re.search(r"최대 (\d+)개까지 띄울 수 있습니다", text).group(1))
    assert 0 <= fit <= psutil.virtual_memory().total // each
    assert not qemu_children()


@pytest.mark.integration
def test_compare_is_refused_before_anything_starts(docker_engine, guest_artifacts, monkeypatch):
    monkeypatch.setenv(memguard.ENV, kib(psutil.virtual_memory().available + 256 * MiB))
    with pytest.raises(InsufficientMemory, match=r"비교\(compare\)") as info:
        compare.compare(trials=1, memory="128M", kinds=("container", "vm"))
    assert "가장 큰 것: 게스트 메모리(guest RAM) 128 MiB" in str(info.value)
    assert not qemu_children() and not session_containers()


@pytest.mark.integration
def test_reserve_from_the_environment_refuses_then_lets_a_small_vm_boot(guest_artifacts,
                                                                        monkeypatch):
    monkeypatch.setenv(memguard.ENV, kib(psutil.virtual_memory().available + 256 * MiB))
    vm = vmkit.VM(memory="128M", accel="tcg")
    with pytest.raises(InsufficientMemory, match="시작하지 않았습니다"):
        vm.start()
    assert_nothing_started(vm)
    monkeypatch.setenv(memguard.ENV, "0")
    try:
        trace = vm.start(timeout=60)
        assert trace.ready_s > 0 and vm.running
    finally:
        vm.stop()
    assert not qemu_children()


@pytest.mark.integration
@pytest.mark.parametrize("value", ["abc", "-1G"])
def test_bad_reserve_refuses_the_start_in_korean(guest_artifacts, monkeypatch, value):
    monkeypatch.setenv(memguard.ENV, value)
    vm = vmkit.VM(memory="128M", accel="tcg")
    with pytest.raises(InvalidInput, match=memguard.ENV) as info:
        vm.start()
    assert isinstance(info.value, VmkitError) and "이해할 수 없습니다" in str(info.value)
    assert_nothing_started(vm)
