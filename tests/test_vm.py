"""vmkit.VM with real QEMU under TCG: boot, look inside, control, snapshot, faults.

Read-only checks share one booted guest (`shared_vm`, class scope); every test that changes a guest
boots its own short-lived one. conftest's `no_qemu_left_behind` asserts after each test
that no QEMU descended from this process is left; the tests below also check by pid and
by the VM's runtime directory.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from vmkit.vm import qemu, snapshot
from vmkit.vm import vm as vm_mod
from vmkit.errors import InvalidInput, MissingComponent, WorkloadError, WorkloadTimeout
from vmkit.vm.rundir import cleanup_stale
from vmkit.vm.vm import VM

REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20
BOOT_PHASES = ["spawned", "qmp_ready", "resumed", "console", "ready", "agent"]
RESTORE_PHASES = ["spawned", "qmp_ready", "restored", "resumed", "ready"]


def assert_monotonic(trace, expected):
    seconds = trace.seconds()
    names = [name for name in seconds if name in expected]
    assert names == expected, seconds
    values = list(seconds.values())
    assert values == sorted(values), seconds
    assert all(v >= 0 for v in values)


def assert_gone(vm: VM, pid: int | None, runtime_dir: Path | None) -> None:
    """This VM's QEMU (by pid) and its runtime dir are gone."""
    assert vm.proc is None and vm.pid is None
    if pid is not None:
        try:
            proc = psutil.Process(pid)
            assert proc.status() == psutil.STATUS_ZOMBIE or "qemu" not in proc.name(), \
                f"QEMU {pid} still runs"
        except psutil.NoSuchProcess:
            pass
    if runtime_dir is not None:
        assert not runtime_dir.exists()


@pytest.fixture(scope="class")
def shared_vm(guest_artifacts):
    """One booted guest for the read-only checks of `TestSharedGuest` (class scope, so
    it is stopped before the tests that boot their own guests look for leftovers)."""
    vm = VM(memory="256M", cpus=1, accel="auto", name=f"test-shared-{os.getpid()}")
    vm.start(timeout=60)
    pid, rundir = vm.pid, vm.runtime_dir
    yield vm
    vm.stop()
    assert_gone(vm, pid, rundir)


@pytest.fixture
def fresh(guest_artifacts):
    """Boot short-lived VMs for a test; every one is stopped and checked afterwards."""
    made: list[tuple[VM, int | None, Path | None]] = []

    def boot(**kwargs) -> VM:
        kwargs.setdefault("accel", "tcg")
        vm = VM(**kwargs)
        vm.start(timeout=60)
        made.append((vm, vm.pid, vm.runtime_dir))
        return vm

    yield boot
    for vm, pid, rundir in made:
        vm.stop()
        assert_gone(vm, pid, rundir)


# ------------------------------------------------------------ bad input: nothing starts

@pytest.mark.parametrize("kwargs, words", [
    ({"memory": "abc"}, "이해할 수 없습니다"),
    ({"memory": "0"}, "0보다 커야"),
    ({"memory": "64M"}, "너무 작습니다"),
    ({"memory": "100T"}, "전체 메모리"),
    ({"cpus": 0}, "1 이상"),
    ({"cpus": 4096}, "CPU 수"),
    ({"cpus": "two"}, "정수가 아닙니다"),
    ({"accel": "xen"}, "가속기(accelerator)"),
    ({"name": "bad name/../x"}, "이름(name)"),
])
def test_bad_input_is_refused_before_anything_starts(kwargs, words):
    with pytest.raises(InvalidInput) as info:
        VM(**kwargs)
    assert words in str(info.value)


@pytest.mark.integration
def test_missing_artifacts(monkeypatch, tmp_path, guest_artifacts):
    monkeypatch.setenv("VMKIT_CACHE", str(tmp_path / "empty-cache"))
    vm = VM(accel="tcg")
    with pytest.raises(MissingComponent) as info:
        vm.start()
    assert "아티팩트" in str(info.value)
    assert vm.proc is None and vm.runtime_dir is None


@pytest.mark.integration
def test_missing_qemu_binary(monkeypatch, guest_artifacts):
    monkeypatch.setenv("VMKIT_QEMU", "/nonexistent/qemu-system-x86_64")
    vm = VM(accel="tcg")
    with pytest.raises(MissingComponent) as info:
        vm.start()
    assert "QEMU" in str(info.value)
    assert vm.proc is None


@pytest.mark.integration
def test_kvm_fails_fast_when_unusable(guest_artifacts):
    usable, reason = vm_mod.kvm_status()
    if usable:
        pytest.skip("KVM is usable on this host")
    vm = VM(accel="kvm")
    started = time.monotonic()
    with pytest.raises(MissingComponent) as info:
        vm.start()
    assert time.monotonic() - started < 30
    assert "KVM" in str(info.value) and reason in str(info.value)
    assert vm.proc is None


# ------------------------------------------------------------ one shared guest, read-only

@pytest.mark.integration
class TestSharedGuest:
    """Read-only checks on one guest."""

    def test_boot_phases_are_monotonic(self, shared_vm):
        trace = shared_vm.trace
        assert_monotonic(trace, [p for p in BOOT_PHASES if p in trace.phases])
        assert set(BOOT_PHASES) <= set(trace.phases)
        assert trace.accel in ("kvm", "tcg") and trace.accel_reason
        assert 0 < trace.ready_s < 60
        # The guest's own clock started after QEMU did, so its uptime is below ready_s.
        assert 0 < trace.guest["uptime_s"] <= trace.seconds()["agent"]

    def test_auto_accel_follows_the_probe_and_qemu_agrees(self, shared_vm):
        """accel='auto' took what the host probe decided, said why, and QEMU runs that way."""
        usable, reason = vm_mod.kvm_status()
        assert shared_vm.accel == ("kvm" if usable else "tcg")
        assert reason in shared_vm.trace.accel_reason
        assert shared_vm.qmp("query-kvm")["enabled"] is usable
        cmdline = psutil.Process(shared_vm.pid).cmdline()
        assert cmdline[cmdline.index("-accel") + 1].split(",")[0] == shared_vm.accel

    def test_guest_memory_is_70_to_100_percent(self, shared_vm):
        total = shared_vm.meminfo()["MemTotal"]
        assert 0.70 * 256 * MiB <= total <= 256 * MiB
        assert shared_vm.trace.guest["mem_total_bytes"] == total

    def test_guest_runs_its_own_kernel(self, shared_vm, guest_artifacts):
        release = shared_vm.guest("uname -r").strip()
        assert release == guest_artifacts.kernel_release
        assert shared_vm.kernel_release() == release
        assert shared_vm.trace.guest["kernel"] == release
        if release == platform.release():
            pytest.skip("host happens to run the same kernel")

    def test_usage_is_plausible(self, shared_vm):
        usage = shared_vm.usage()
        assert 32 * MiB < usage.rss_bytes < 2048 * MiB
        assert 0 < usage.pss_bytes <= usage.rss_bytes * 1.01
        assert usage.cpu_user_s + usage.cpu_system_s > 0
        assert usage.processes == 1 and usage.accel == shared_vm.accel
        assert usage.guest_ram_bytes == 256 * MiB
        assert 0 < usage.guest_mem_available_bytes < usage.guest_mem_total_bytes
        assert usage.to_dict()["rss_bytes"] == usage.rss_bytes

    def test_qmp_inspection(self, shared_vm):
        assert shared_vm.status() == "running"
        assert shared_vm.qmp("query-status")["running"] is True
        memory = shared_vm.memory()
        assert memory["base_bytes"] == 256 * MiB and memory["balloon_actual_bytes"] == 256 * MiB
        vcpus = shared_vm.vcpus()
        assert len(vcpus) == 1
        tids = {t["tid"] for t in shared_vm.host_threads()}
        assert vcpus[0]["thread_id"] in tids and vcpus[0]["user_s"] is not None
        with pytest.raises(WorkloadError) as info:
            shared_vm.qmp("no-such-command")
        assert "QMP" in str(info.value)

    def test_guest_channel(self, shared_vm):
        assert shared_vm.guest("echo one; echo two") == "one\ntwo\n"
        assert shared_vm.guest("printf 'a\\nb'\necho c; exit 3") == "a\nbc\n"
        assert shared_vm.last_rc == 3
        with pytest.raises(WorkloadError):
            shared_vm.guest("false", check=True)
        assert "VMKIT-READY" in shared_vm.console_log()
        assert shared_vm.trace.console.maxlen is not None

    def test_security_defaults(self, shared_vm):
        rundir = shared_vm.runtime_dir
        assert rundir.stat().st_mode & 0o777 == 0o700
        assert (rundir / "qmp.sock").is_socket()
        cmdline = psutil.Process(shared_vm.pid).cmdline()
        assert "-sandbox" in cmdline and not any("tcp:" in arg for arg in cmdline)
        assert "-netdev" not in cmdline and "-nic" not in cmdline


# ------------------------------------------------------------ guests that change

@pytest.mark.integration
def test_pause_resume_events_and_shutdown(fresh):
    vm = fresh()
    seen, streamed = [], []
    vm.on_event(seen.append)
    reader = threading.Thread(target=lambda: streamed.extend(
        itertools.islice(vm.iter_events(timeout=10, names=["STOP", "RESUME"]), 2)))
    reader.start()
    time.sleep(0.2)  # the iterator subscribes on its first step
    vm.pause()
    assert vm.status() == "paused"
    assert vm.wait_event("STOP", 2) is not None
    with pytest.raises(WorkloadError):
        vm.guest("true")
    vm.resume()
    assert vm.status() == "running"
    assert vm.wait_event("RESUME", 2) is not None
    assert vm.guest("echo back").strip() == "back"
    names = [e["event"] for e in seen]
    assert names.index("STOP") < names.index("RESUME")
    reader.join(10)
    assert [e["event"] for e in streamed] == ["STOP", "RESUME"]
    pid = vm.pid
    vm.stop()
    assert vm.last_stop["method"] == "guest-poweroff" and vm.last_stop["shutdown_event"]
    assert vm.last_stop["seconds"] < 10
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    vm.stop()  # again: harmless


@pytest.mark.integration
def test_balloon_lowers_guest_memory(fresh):
    vm = fresh(memory="256M")
    before = vm.meminfo()
    result = vm.balloon("128M")
    assert result["reached"], result
    after = vm.meminfo()
    assert after["MemTotal"] <= before["MemTotal"] - 64 * MiB
    assert vm.memory()["balloon_actual_bytes"] == 128 * MiB
    vm.balloon("256M")
    assert vm.meminfo()["MemTotal"] >= before["MemTotal"] - 4 * MiB
    with pytest.raises(InvalidInput):
        vm.balloon("512M")


@pytest.mark.integration
def test_snapshot_restore_keeps_uptime(fresh, tmp_path, guest_artifacts):
    vm = fresh(memory="128M")
    path = tmp_path / "guest.vmkit"
    saved = vm.snapshot(path)
    assert path.stat().st_size == saved["bytes"] > 4096
    assert vm.status() == "running"  # the original runs on
    stamp = snapshot.read_stamp(path)
    assert stamp["artifacts"] == guest_artifacts.version and stamp["memory_mib"] == 128
    vm.stop()

    restored = VM.restore(path, name=f"restored-{os.getpid()}")
    try:
        assert_monotonic(restored.trace, RESTORE_PHASES)
        assert restored.guest("uname -r").strip() == guest_artifacts.kernel_release
        uptime = float(restored.guest("cat /proc/uptime").split()[0])
        # The guest's clock goes on from where it was saved, not from zero.
        assert saved["guest_uptime_s"] <= restored.trace.guest["uptime_s"] <= uptime
        assert uptime < saved["guest_uptime_s"] + 30
        pid, rundir = restored.pid, restored.runtime_dir
    finally:
        restored.stop()
    assert_gone(restored, pid, rundir)


@pytest.mark.integration
def test_foreign_snapshot_is_refused(tmp_path, guest_artifacts):
    garbage = tmp_path / "garbage.vmkit"
    garbage.write_bytes(b"not a snapshot" * 100)
    with pytest.raises(InvalidInput) as info:
        VM.from_snapshot(garbage)
    assert "스냅샷" in str(info.value)
    with pytest.raises(InvalidInput):
        VM.from_snapshot(tmp_path / "missing.vmkit")

    def forged(**changes) -> Path:
        stamp = {"format": 1, "artifacts": guest_artifacts.version, "qemu_version": "0",
                 "memory_mib": 128, "cpus": 1, "accel": "tcg", "kernel_args": "",
                 "qemu_args": [], "options": "0"}
        stamp.update(changes)
        path = tmp_path / f"forged-{len(list(tmp_path.iterdir()))}.vmkit"
        header = snapshot.MAGIC + json.dumps(stamp).encode() + b"\n"
        path.write_bytes(header.ljust(snapshot.HEADER, b"\0") + b"QEVM")
        return path

    for path, words in [(forged(artifacts="0123456789ab"), "아티팩트"), (forged(), "QEMU")]:
        vm = VM.from_snapshot(path)
        with pytest.raises(InvalidInput) as info:
            vm.start()
        assert words in str(info.value)
        assert vm.proc is None and vm.runtime_dir is None


@pytest.mark.integration
def test_two_vms_at_once(fresh):
    name = f"twin-{os.getpid()}"
    first, second = fresh(name=name), fresh(memory="128M")
    assert first.pid != second.pid and first.runtime_dir != second.runtime_dir
    assert first.guest("echo a").strip() == "a" and second.guest("echo b").strip() == "b"
    assert set(vm_mod.running()) >= {first, second}
    with pytest.raises(InvalidInput) as info:
        VM(name=name, accel="tcg").start()
    assert "이미 실행 중" in str(info.value)
    assert first.running


@pytest.mark.integration
def test_runaway_guest_command_is_killed_and_its_output_bounded(fresh):
    """`guest("yes")`: the host keeps a bounded answer, the guest kills the command at the
    timeout, and the next request is not stuck behind it."""
    from vmkit.vm.agent_channel import OUTPUT_LIMIT

    vm = fresh(memory="128M")
    rss_before = psutil.Process().memory_info().rss
    started = time.monotonic()
    with pytest.raises(WorkloadTimeout) as info:
        vm.guest("yes", timeout=3)
    assert "강제 종료" in str(info.value)
    assert vm.guest("echo next", timeout=10).strip() == "next"
    assert time.monotonic() - started < 10
    assert vm.guest("pidof yes; echo rc=$?").strip() == "rc=1", "yes still runs in the guest"
    out = vm.guest("head -c 1500000 /dev/zero | tr '\\0' x", timeout=60)
    assert out.startswith("x" * 1000) and "output truncated" in out
    assert OUTPUT_LIMIT <= len(out) < OUTPUT_LIMIT + 500
    assert psutil.Process().memory_info().rss - rss_before < 64 * MiB
    # The handshake's builtin answers /proc/uptime's line from the agent's own shell: the
    # guest's last pid does not move (no fork), unlike for a real command.
    last_pid = lambda: int(vm.guest("cat /proc/loadavg").split()[-1])  # noqa: E731
    before = last_pid()
    up, idle = (float(x) for x in vm.guest("vmkit-uptime").split())
    assert 0 < up and 0 <= idle
    after = last_pid()
    assert after - before <= last_pid() - after, "vmkit-uptime started a process"


@pytest.mark.integration
def test_failed_snapshot_leaves_the_guest_running(fresh, tmp_path):
    vm = fresh(memory="128M")
    with pytest.raises(WorkloadError) as info:
        vm.snapshot(tmp_path / "no-such-dir" / "guest.vmkit")
    assert "스냅샷 파일(snapshot file)" in str(info.value)
    assert vm.status() == "running"
    assert vm.guest("echo still").strip() == "still"


@pytest.mark.integration
def test_snapshot_file_never_puts_options_on_qemus_command_line(fresh, tmp_path, monkeypatch,
                                                                 guest_artifacts):
    """A snapshot's header is data anyone can write: its qemu_args never reach QEMU."""
    from vmkit.host import background

    vm = fresh(memory="128M")
    path = tmp_path / "guest.vmkit"
    vm.snapshot(path)
    vm.stop()
    marker = tmp_path / "written-by-qemu.log"
    head = path.read_bytes()[:snapshot.HEADER]
    stamp = json.loads(head[len(snapshot.MAGIC):].split(b"\n", 1)[0])

    def forge(**changes) -> Path:
        forged = dict(stamp, **changes)
        header = snapshot.MAGIC + json.dumps(forged).encode() + b"\n"
        with open(path, "r+b") as stream:
            stream.write(header.ljust(snapshot.HEADER, b"\0"))
        return path

    spawned: list[list[str]] = []
    real_spawn = background.spawn
    monkeypatch.setattr(background, "spawn", lambda argv, **kw: spawned.append(argv) or real_spawn(argv, **kw))
    evil = ["-D", str(marker), "-d", "guest_errors"]
    # The options alone changed: they are ignored, the restore runs as made.
    restored = VM.restore(forge(qemu_args=evil, kernel_args="init=/bin/evil"))
    try:
        assert restored.guest("echo ok").strip() == "ok"
    finally:
        restored.stop()
    assert spawned and not any(arg in spawned[-1] for arg in ("-D", str(marker), "init=/bin/evil"))
    assert not marker.exists()
    # The options and their digest changed together: refused before QEMU starts.
    forged_vm = VM(memory=128, accel=stamp["accel"], qemu_args=evil)
    forged_vm.accel = stamp["accel"]
    digest = forged_vm._stamp(guest_artifacts, qemu.qemu_binary())["options"]
    spawned.clear()
    with pytest.raises(InvalidInput) as info:
        VM.restore(forge(qemu_args=evil, options=digest))
    assert "qemu_args" in str(info.value) and "보안" in str(info.value)
    assert not spawned and not marker.exists()


@pytest.mark.integration
def test_comma_in_the_state_path(guest_artifacts, monkeypatch):
    """QEMU splits options at commas: a state dir with one must still work."""
    import tempfile

    state = Path(tempfile.mkdtemp(prefix="vk,comma-", dir="/tmp"))
    monkeypatch.setenv("VMKIT_STATE", str(state))
    try:
        vm = VM(memory="128M", accel="tcg")
        vm.start(timeout=60)
        try:
            assert "," in str(vm.runtime_dir) and vm.runtime_dir.is_relative_to(state)
            assert vm.status() == "running" and vm.guest("echo a,b").strip() == "a,b"
        finally:
            vm.stop()
    finally:
        subprocess.run(["rm", "-rf", str(state)], check=False)


def test_children_are_spawned_without_loading_libraries_after_fork(monkeypatch):
    """preexec_fn runs in a forked copy of a threaded process: no dlopen there."""
    import ctypes

    from vmkit.host import background

    def no_dlopen(*args, **kwargs):
        raise AssertionError("ctypes.CDLL called after fork")

    monkeypatch.setattr(ctypes, "CDLL", no_dlopen)
    proc = background.spawn(["sh", "-c", "grep -E '^(NSpid|Sid)' /proc/self/status; ps -o sid= -p $$"],
                            stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert os.getsid(0) != proc.pid  # it ran in a session of its own


# ------------------------------------------------------------ faults

@pytest.mark.integration
def test_guest_never_ready_times_out_with_console(guest_artifacts):
    vm = VM(accel="tcg", kernel_args="rdinit=/bin/sh")
    with pytest.raises(WorkloadTimeout) as info:
        vm.start(timeout=4)
    assert "준비(ready)" in str(info.value)
    assert info.value.log  # the last console lines
    assert vm.proc is None and vm.runtime_dir is None


@pytest.mark.integration
def test_qemu_dying_reports_stderr(guest_artifacts):
    vm = VM(accel="tcg", qemu_args=["-device", "no-such-device"])
    with pytest.raises(WorkloadError) as info:
        vm.start(timeout=20)
    assert not isinstance(info.value, WorkloadTimeout)
    assert "no-such-device" in info.value.log
    assert vm.proc is None and vm.runtime_dir is None


@pytest.mark.integration
def test_kernel_panic_reports_console(guest_artifacts):
    vm = VM(accel="tcg", kernel_args="rdinit=/no/such/init")
    with pytest.raises(WorkloadError) as info:
        vm.start(timeout=30)
    assert "panic" in info.value.log.lower()
    assert vm.proc is None


@pytest.mark.integration
@pytest.mark.parametrize("phase", ["spawned", "qmp_ready"])
def test_stop_from_another_thread_early_in_the_boot(guest_artifacts, phase):
    """stop() lands between two steps of the boot: the Korean error, not AttributeError."""
    vm = VM(accel="tcg", memory="128M")

    def on_phase(name, _):
        if name == phase:
            stopper = threading.Thread(target=vm.stop)
            stopper.start()
            stopper.join(30)

    with pytest.raises(WorkloadError) as info:
        vm.start(timeout=30, on_phase=on_phase)
    assert "stop()" in str(info.value)
    assert vm.proc is None and vm.runtime_dir is None and vm._qmp is None


@pytest.mark.integration
def test_stop_while_booting(guest_artifacts):
    """A widget's stop button pressed mid-boot: start() fails clearly, nothing is left."""
    vm = VM(accel="tcg")
    errors, resumed = [], threading.Event()

    def boot():
        try:
            vm.start(on_phase=lambda name, _: name == "resumed" and resumed.set())
        except WorkloadError as exc:
            errors.append(exc)

    thread = threading.Thread(target=boot)
    thread.start()
    assert resumed.wait(30)
    vm.stop()
    thread.join(30)
    assert errors and "stop()" in str(errors[0])
    assert vm.proc is None and vm.runtime_dir is None


CHILD = """
import json, sys, time
from vmkit.vm.vm import VM
vm = VM(accel="tcg")
def phase(name, seconds):
    if name == "resumed":
        print(json.dumps({"pid": vm.pid, "dir": str(vm.runtime_dir)}), flush=True)
vm.start(on_phase=phase)
time.sleep(60)
"""


@pytest.mark.integration
def test_sigkilled_parent_leaves_no_qemu(guest_artifacts):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, env=env,
                             cwd=str(REPO), text=True)
    try:
        info = json.loads(child.stdout.readline())  # QEMU is booting now
        qemu = psutil.Process(info["pid"])
        assert "qemu" in qemu.name()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        child.stdout.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            gone = qemu.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            gone = True
        if gone or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert gone, f"QEMU {info['pid']} outlived its SIGKILLed parent"
    # The dead owner's runtime dir is recognised as stale and removed.
    rundir = Path(info["dir"])
    assert rundir.name in cleanup_stale() or not rundir.exists()
    assert not rundir.exists()
