"""A second guest architecture: the arches table, arm64 artifacts, a real aarch64 boot under
TCG, `vmkit boot --arch`, and the arm64 userland refused by this host's kernel in a container."""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict
from pathlib import Path

import psutil
import pytest

from conftest import qemu_children, session_containers
from test_vm import BOOT_PHASES, assert_gone, assert_monotonic
from vmkit.guest import arches, artifacts
from vmkit import cli
from vmkit.experiments import crossarch
from vmkit.vm import qemu, snapshot
from vmkit.vm.rundir import runtime_root
from vmkit.guest.cpio import read_names
from vmkit.errors import InvalidInput, MissingComponent
from vmkit.vm.vm import VM

REPO = Path(__file__).resolve().parent.parent
VMKIT = [sys.executable, "-m", "vmkit"]
ARM_PHASES = [p for p in BOOT_PHASES if p != "kernel"]


@pytest.fixture(scope="module")
def arm_artifacts():
    """The aarch64 guest artifacts, built if missing (as `vmkit fetch` does)."""
    return artifacts.fetch(progress=False, arch="aarch64")


def fake_arm_set(cache: Path, version: str, age: float, arch: str = "aarch64") -> Path:
    """A complete (tiny) artifact set of `arch` in `cache`, `age` seconds old."""
    root = cache / version
    root.mkdir(parents=True)
    arts = artifacts.Artifacts(version, root, f"6.1.0-1-cloud-{arches.lookup(arch).debian}",
                               f"linux-image-x={version}", "1:1.0-1", ("virtio",),
                               artifacts.guest_key(arch), arch)
    for name, path in arts.files().items():
        path.write_bytes(name.encode())
    (root / artifacts.MANIFEST).write_text(json.dumps({**asdict(arts), "root": None, "sizes": arts.sizes()}))
    os.utime(root, (time.time() - age,) * 2)
    return root


# ------------------------------------------------------------ the table, and bad input

def test_every_architecture_is_one_row_of_data():
    assert arches.lookup() is arches.X86_64 and arches.DEFAULT == "x86_64"
    assert arches.lookup("arm64") is arches.lookup("AArch64") is arches.AARCH64
    assert arches.lookup(arches.AARCH64) is arches.AARCH64
    assert arches.X86_64.kernel_args == qemu.KERNEL_ARGS  # x86's command line is unchanged
    for arch in arches.ARCHES.values():
        assert arch.kernel_args.endswith(arches.KERNEL_ARGS_TAIL)
        assert arch.platform == f"linux/{arch.debian}"
    assert "console=ttyAMA0" in arches.AARCH64.kernel_args
    assert arches.X86_64.native == (arches.host_arch() == "x86_64")


@pytest.mark.parametrize("bad", ["sparc", "", "riscv64", 64])
def test_bad_arch_is_refused_in_korean_before_anything_starts(bad):
    before = set(runtime_root().iterdir())
    with pytest.raises(InvalidInput) as info:
        VM(arch=bad)
    assert "아키텍처(architecture)" in str(info.value) and "x86_64" in str(info.value)
    with pytest.raises(InvalidInput):
        artifacts.require(arch=bad)
    assert not qemu_children() and set(runtime_root().iterdir()) == before


def test_cli_bad_arch_exits_2_with_a_korean_message(capsys):
    assert cli.main(["boot", "--arch", "sparc", "--json"]) == 2
    err = capsys.readouterr().err
    assert "아키텍처(architecture) 'sparc'" in err and "Traceback" not in err
    assert not qemu_children()


def test_qemu_command_line_comes_from_the_table(tmp_path):
    arts = artifacts.Artifacts("v", tmp_path, "r", "k", "b", (), "", "aarch64")
    argv = qemu.argv(qemu.Machine(memory_mib=256), arts, agent_socket=tmp_path / "a.sock")
    assert Path(argv[0]).name == "qemu-system-aarch64"
    assert argv[argv.index("-machine") + 1] == "virt" and argv[argv.index("-cpu") + 1] == "cortex-a57"
    assert argv[argv.index("-kernel") + 1] == str(tmp_path / "Image")
    assert "console=ttyAMA0" in argv[argv.index("-append") + 1]
    assert {qemu.Machine().balloon_device(), "virtio-serial-device"} <= set(argv)  # virtio-mmio
    x86 = qemu.argv(qemu.Machine(), artifacts.Artifacts("v", tmp_path, "r", "k", "b", ()))
    assert Path(x86[0]).name == "qemu-system-x86_64" and "-cpu" not in x86
    assert x86[x86.index("-kernel") + 1] == str(tmp_path / "vmlinux")


def test_missing_aarch64_qemu_names_its_package(monkeypatch):
    monkeypatch.setenv("VMKIT_QEMU_AARCH64", "/nonexistent/qemu-system-aarch64")
    with pytest.raises(MissingComponent) as info:
        qemu.qemu_binary("aarch64")
    assert "qemu-system-aarch64" in str(info.value) and "qemu-system-arm" in str(info.value)


def test_artifacts_of_another_arch_are_refused(tmp_path):
    x86 = artifacts.Artifacts("v", tmp_path, "r", "k", "b", ())
    with pytest.raises(InvalidInput) as info:
        VM(arch="aarch64", artifacts=x86)
    assert "아키텍처(architecture)" in str(info.value)


def test_a_snapshot_of_another_arch_is_refused():
    saved = {"arch": "aarch64", "artifacts": "a", "qemu_version": "7", "options": "o"}
    with pytest.raises(InvalidInput) as info:
        snapshot.check_stamp(saved, dict(saved, arch="x86_64"), Path("guest.vmkit"))
    assert "아키텍처(architecture)" in str(info.value)


def test_snapshots_made_before_arch_was_stamped_are_x86(tmp_path):
    stamp = {"format": 1, "artifacts": "a", "memory_mib": 128, "cpus": 1, "accel": "tcg"}
    path = tmp_path / "old.vmkit"
    path.write_bytes((snapshot.MAGIC + json.dumps(stamp).encode() + b"\n")
                     .ljust(snapshot.HEADER, b"\0"))
    assert snapshot.read_stamp(path)["arch"] == "x86_64"
    assert VM.from_snapshot(path).arch is arches.X86_64
    path.write_bytes((snapshot.MAGIC + json.dumps(dict(stamp, arch="sparc")).encode() + b"\n")
                     .ljust(snapshot.HEADER, b"\0"))
    with pytest.raises(InvalidInput, match="아키텍처"):
        VM.from_snapshot(path)


# ------------------------------------------------------------ artifact sets per architecture

def test_each_arch_uses_only_its_own_sets(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("VMKIT_CACHE", str(cache))
    fake_arm_set(cache, "arm000000000", age=100)
    fake_arm_set(cache, "x86000000000", age=50, arch="x86_64")

    def offline(name, *options):
        raise artifacts.ArtifactError("apt 없음")

    monkeypatch.setattr(artifacts, "_apt_show", offline)
    assert artifacts.require(arch="aarch64").version == "arm000000000"
    assert artifacts.require().version == "x86000000000"  # never the aarch64 set
    assert [a.version for a in artifacts.installed("arm64")] == ["arm000000000"]
    arm = artifacts.require(arch="aarch64")
    assert set(arm.files()) == {"Image", "initrd", "rootfs"} and arm.kernel.name == "Image"
    assert arm.image == f"vmkit/busybox-arm64:{arm.version}"
    assert artifacts.guest_key("aarch64") != artifacts.guest_key() == artifacts.guest_key("x86_64")
    (cache / "arm000000000" / artifacts.MANIFEST).unlink()
    with pytest.raises(MissingComponent) as info:
        artifacts.require(arch="aarch64")
    assert "aarch64용 게스트 아티팩트" in str(info.value) and "`vmkit fetch`" in str(info.value)


def test_foreign_packages_come_from_a_private_apt_state(tmp_path, monkeypatch):
    monkeypatch.setenv("VMKIT_CACHE", str(tmp_path))
    assert artifacts.apt_options(arches.X86_64) == ()  # the system's apt, as before
    options = artifacts.apt_options(arches.AARCH64)
    assert "APT::Architecture=arm64" in options and "APT::Architectures::=arm64" in options
    assert f"Dir::State::Lists={tmp_path / 'apt-arm64' / 'lists'}" in options


def test_kernel_formats():
    image = bytes(0x38) + b"ARM\x64" + bytes(64)
    assert artifacts.arm64_image(image) == image
    assert artifacts.arm64_image(gzip.compress(image)) == image
    with pytest.raises(artifacts.ArtifactError, match="arm64 Image"):
        artifacts.arm64_image(b"MZ" + bytes(100))
    assert artifacts.elf_machine(b"\x7fELF\x02\x01" + bytes(12) + (183).to_bytes(2, "little")) == 183
    assert artifacts.elf_machine(b"#!/bin/sh\n" + bytes(20)) is None


# ------------------------------------------------------------ binfmt_misc

QEMU_AARCH64_HANDLER = """enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: POCF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""


def arm_header() -> bytes:
    return b"\x7fELF\x02\x01\x01" + bytes(9) + (2).to_bytes(2, "little") + (183).to_bytes(2, "little")


def test_binfmt_not_mounted(tmp_path):
    found = crossarch.binfmt(arm_header(), tmp_path / "missing")
    assert not found.emulated and "exec format error" in found.reason


def test_binfmt_with_a_qemu_handler(tmp_path):
    (tmp_path / "status").write_text("enabled\n")
    (tmp_path / "register").write_text("")
    (tmp_path / "qemu-aarch64").write_text(QEMU_AARCH64_HANDLER)
    (tmp_path / "python3.11").write_text("enabled\ninterpreter /usr/bin/python3.11\nflags: \noffset 0\nmagic a70d0d0a\n")
    found = crossarch.binfmt(arm_header(), tmp_path)
    assert found.emulated and found.handlers == (("qemu-aarch64", "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"),)
    assert "qemu-aarch64" in found.reason
    (tmp_path / "qemu-aarch64").write_text(QEMU_AARCH64_HANDLER.replace("enabled", "disabled"))
    assert not crossarch.binfmt(arm_header(), tmp_path).emulated
    (tmp_path / "qemu-aarch64").write_text(QEMU_AARCH64_HANDLER)
    (tmp_path / "status").write_text("disabled\n")
    assert not crossarch.binfmt(arm_header(), tmp_path).emulated


def test_binfmt_says_the_host_runs_its_own_binaries(tmp_path):
    own = arches.lookup(arches.host_arch())
    header = b"\x7fELF\x02\x01\x01" + bytes(11) + own.elf_machine.to_bytes(2, "little")
    found = crossarch.binfmt(header, tmp_path)
    assert not found.emulated and "바로 실행" in found.reason


# ------------------------------------------------------------ real arm64 artifacts

@pytest.mark.integration
def test_arm64_artifacts_are_complete_and_consistent(arm_artifacts, guest_artifacts):
    a = arm_artifacts
    assert a.arch == "aarch64" and a.kernel_release.endswith("-cloud-arm64")
    assert a.kernel_package.startswith(f"linux-image-{a.kernel_release}=")
    assert a.kernel.read_bytes()[0x38:0x3C] == b"ARM\x64"  # the arm64 Image QEMU's virt boots
    assert artifacts.load(a.root) == a and a.sizes()["Image"] > 8 << 20
    entries = {name: (mode, body) for name, mode, body in read_names(gzip.decompress(a.initrd.read_bytes()))}
    busybox = entries["bin/busybox"][1]
    assert artifacts.elf_machine(busybox) == 183  # an AArch64 ELF executable
    assert stat.S_ISREG(entries["init"][0]) and stat.S_ISCHR(entries["dev/console"][0])
    assert entries["init"][1] == artifacts.guest_script("init")  # the same init and agent
    assert entries["vmkit/agent"][1] == artifacts.guest_script("agent")
    order = entries["etc/vmkit/modules"][1].decode().split()
    assert order == list(a.modules) and {"virtio_mmio", "virtio_console", "virtio_balloon"} <= set(order)
    assert order.index("virtio") < order.index("virtio_mmio") < order.index("virtio_console")
    assert all(f"lib/modules/{m}.ko" in entries for m in order)
    # the same applets in the same places as the x86_64 userland, though never run here
    with tarfile.open(a.rootfs) as arm, tarfile.open(guest_artifacts.rootfs) as x86:
        assert arm.extractfile("bin/busybox").read() == busybox
        assert sorted(arm.getnames()) == sorted(x86.getnames())
        assert arm.getmember("sbin/poweroff").linkname == "../bin/busybox"
    assert a.version != guest_artifacts.version and a.guest_key == artifacts.guest_key("aarch64")
    # the system's dpkg was never told about arm64
    foreign = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True)
    assert "arm64" not in foreign.stdout.split()


@pytest.mark.integration
def test_second_fetch_of_both_arches_is_fast_and_offline(arm_artifacts, guest_artifacts):
    before = (arm_artifacts.root.stat().st_mtime_ns, guest_artifacts.root.stat().st_mtime_ns)
    started = time.monotonic()
    assert artifacts.fetch(progress=False) == guest_artifacts  # both arches, x86_64 returned
    assert time.monotonic() - started < 10
    assert artifacts.require(arch="aarch64") == arm_artifacts
    assert (arm_artifacts.root.stat().st_mtime_ns, guest_artifacts.root.stat().st_mtime_ns) == before


@pytest.mark.integration
def test_aarch64_needs_tcg(arm_artifacts):
    vm = VM(arch="aarch64", accel="kvm")
    with pytest.raises(MissingComponent) as info:
        vm.start()
    assert "KVM" in str(info.value) and "aarch64" in str(info.value)
    assert vm.proc is None and vm.runtime_dir is None


# ------------------------------------------------------------ a real aarch64 guest

@pytest.mark.integration
def test_aarch64_guest_boots_to_ready_and_answers(arm_artifacts):
    vm = VM(arch="aarch64", memory="256M", name=f"arm-{os.getpid()}")
    try:
        trace = vm.start(timeout=90)
        assert_monotonic(trace, [p for p in ARM_PHASES if p in trace.phases])
        assert set(ARM_PHASES) <= set(trace.phases) and 0 < trace.ready_s < 90
        assert trace.accel == "tcg" and "aarch64" in trace.accel_reason
        assert vm.guest("uname -m").strip() == "aarch64" == trace.guest["machine"]
        assert vm.kernel_release() == arm_artifacts.kernel_release == trace.guest["kernel"]
        assert "CPU implementer" in vm.guest("cat /proc/cpuinfo")  # an ARM CPU, as QEMU emulates it
        assert 0.7 * 256 * 2**20 <= vm.meminfo()["MemTotal"] <= 256 * 2**20
        assert vm.status() == "running"
        assert [cpu["target"] for cpu in vm.qmp("query-cpus-fast")] == ["aarch64"]
        cmdline = psutil.Process(vm.pid).cmdline()
        assert Path(cmdline[0]).name == "qemu-system-aarch64" and "-sandbox" in cmdline
        pid, rundir = vm.pid, vm.runtime_dir
    finally:
        vm.stop()
    assert vm.last_stop["method"] == "guest-poweroff"
    assert_gone(vm, pid, rundir)


@pytest.mark.integration
def test_vmkit_boot_arch_aarch64_json(arm_artifacts):
    done = subprocess.run([*VMKIT, "boot", "--arch", "aarch64", "--memory", "128M", "--json"],
                          capture_output=True, text=True, timeout=180, cwd=str(REPO))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["arch"] == "aarch64" and report["guest"]["machine"] == "aarch64"
    assert report["guest"]["kernel"] == arm_artifacts.kernel_release
    assert report["accel"] == "tcg" and report["ready_s"] > 0
    assert report["host"]["machine"] == arches.host_arch()
    assert report["stop"]["method"] in ("guest-poweroff", "quit")


@pytest.mark.integration
def test_x86_snapshots_carry_their_arch_and_still_restore(guest_artifacts, tmp_path):
    vm = VM(memory="128M", accel="tcg")
    path = tmp_path / "guest.vmkit"
    try:
        vm.start(timeout=60)
        vm.snapshot(path)
    finally:
        vm.stop()
    assert snapshot.read_stamp(path)["arch"] == "x86_64"
    restored = VM.restore(path)
    try:
        assert restored.arch is arches.X86_64 and restored.guest("uname -m").strip() == "x86_64"
    finally:
        restored.stop()


# ------------------------------------------------------------ the same userland in a container

@pytest.mark.integration
def test_arm64_userland_in_a_container_is_exec_format_error(docker_engine, arm_artifacts, guest_artifacts):
    run = crossarch.container_run("aarch64")
    assert run.image == arm_artifacts.image and run.image_arch == "arm64"
    assert run.host_arch == arches.host_arch() and run.command == ["uname", "-m"]
    if run.binfmt.emulated:  # a binfmt_misc emulator (qemu-user) is registered here
        assert run.exit_code == 0 and run.output == "aarch64"
    else:
        assert run.exit_code != 0 and run.exec_format_error, run.output
        assert "exec format error" in run.binfmt.reason
    assert run.to_dict()["exec_format_error"] == run.exec_format_error
    native = crossarch.container_run(arches.host_arch())
    assert native.exit_code == 0 and native.output == arches.host_arch() and not native.exec_format_error
    assert not session_containers()  # both containers were removed
