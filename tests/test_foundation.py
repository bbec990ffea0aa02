"""Foundation: units, the cpio writer, artifacts and their cache, the CLI, doctor, the engine."""

import gzip
import json
import os
import platform
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vmkit.guest import artifacts
from vmkit import cli
from vmkit.container import engine
from vmkit.vm import accel, qemu
from vmkit.guest.cpio import CpioWriter, read_names
from vmkit.errors import InvalidInput, MissingComponent
from vmkit.units import parse_cpus, parse_memory

VMKIT = [sys.executable, "-m", "vmkit"]


# ------------------------------------------------------------------ units

@pytest.mark.parametrize("text,expected", [("256M", 256 << 20), ("1G", 1 << 30), ("512MiB", 512 << 20),
                                           ("128", 128 << 20), (64, 64 << 20), ("1.5g", 3 << 29)])
def test_parse_memory_accepts_common_forms(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["abc", "", "12X", "-5M", "M"])
def test_parse_memory_rejects_garbage_in_korean(text):
    with pytest.raises(InvalidInput) as err:
        parse_memory(text)
    assert "메모리(memory)" in str(err.value)


def test_parse_memory_rejects_zero_and_more_than_host():
    with pytest.raises(InvalidInput, match="0보다"):
        parse_memory("0")
    with pytest.raises(InvalidInput, match="전체 메모리"):
        parse_memory("64T")
    with pytest.raises(InvalidInput, match="최소"):
        parse_memory("4M", minimum=96 << 20)


@pytest.mark.parametrize("value", [0, -1, "two", 1.5, 10_000])
def test_parse_cpus_rejects(value):
    with pytest.raises(InvalidInput, match="CPU"):
        parse_cpus(value)


def test_parse_cpus_accepts_host_range():
    assert parse_cpus("1") == 1
    assert parse_cpus(os.cpu_count()) == os.cpu_count()


# ------------------------------------------------------------------ cpio

def test_cpio_round_trip_with_device_node_and_symlink():
    import io

    buf = io.BytesIO()
    writer = CpioWriter(buf)
    writer.file("etc/vmkit/modules", b"virtio\n")
    writer.symlink("bin/sh", "busybox")
    writer.chardev("dev/console", 5, 1)
    writer.close()
    data = buf.getvalue()
    assert len(data) % 4 == 0
    entries = {name: (mode, body) for name, mode, body in read_names(data)}
    assert {"etc", "etc/vmkit", "etc/vmkit/modules", "bin", "bin/sh", "dev", "dev/console"} <= set(entries)
    assert entries["etc/vmkit/modules"][1] == b"virtio\n"
    assert stat.S_ISLNK(entries["bin/sh"][0]) and entries["bin/sh"][1] == b"busybox"
    assert stat.S_ISCHR(entries["dev/console"][0])
    assert stat.S_ISDIR(entries["etc"][0])


# ------------------------------------------------------------------ artifact helpers

def test_module_depends_reads_modinfo():
    fake = b"\x7fELF...\0license=GPL\0depends=virtio,virtio_ring\0vermagic=6.1\0"
    assert artifacts.module_depends(fake) == ["virtio", "virtio_ring"]
    assert artifacts.module_depends(b"\0depends=\0") == []


def test_version_key_changes_with_any_input():
    k = artifacts.Package("linux-image-x", "1", "a" * 64, 1)
    b = artifacts.Package("busybox-static", "1", "b" * 64, 1)
    base = artifacts.version_key(k, b)
    assert base == artifacts.version_key(k, b)
    assert base != artifacts.version_key(artifacts.Package("linux-image-x", "2", "a" * 64, 1), b)
    assert base != artifacts.version_key(k, artifacts.Package("busybox-static", "1", "c" * 64, 1))


def test_incomplete_artifact_dir_is_not_taken_for_good(tmp_path, monkeypatch, guest_artifacts):
    monkeypatch.setenv("VMKIT_CACHE", str(tmp_path))
    half = tmp_path / guest_artifacts.version
    half.mkdir()
    (half / "vmlinux").write_bytes(b"half written")
    assert artifacts.load(half) is None  # no manifest
    manifest = json.loads((guest_artifacts.root / artifacts.MANIFEST).read_text())
    (half / artifacts.MANIFEST).write_text(json.dumps(manifest))
    assert artifacts.load(half) is None  # sizes do not match the manifest


# ------------------------------------------------------------------ real artifacts

@pytest.mark.integration
def test_artifacts_are_complete_and_consistent(guest_artifacts):
    a = guest_artifacts
    assert a.vmlinux.read_bytes()[:4] == b"\x7fELF"
    assert a.vmlinuz.stat().st_size > 1 << 20
    entries = {name: (mode, body) for name, mode, body in read_names(gzip.decompress(a.initrd.read_bytes()))}
    assert stat.S_ISREG(entries["init"][0]) and entries["init"][0] & 0o111
    assert stat.S_ISCHR(entries["dev/console"][0])
    assert entries["bin/busybox"][1][:4] == b"\x7fELF"
    order = entries["etc/vmkit/modules"][1].decode().split()
    assert order == list(a.modules)
    assert order.index("virtio") < order.index("virtio_console")
    assert order.index("virtio_ring") < order.index("virtio_balloon")
    # the container's rootfs carries the very same BusyBox binary and agent
    import tarfile

    with tarfile.open(a.rootfs) as tar:
        assert tar.extractfile("bin/busybox").read() == entries["bin/busybox"][1]
        assert tar.extractfile("vmkit/agent").read() == entries["vmkit/agent"][1]


@pytest.mark.integration
def test_second_fetch_is_a_fast_no_op(guest_artifacts):
    before = guest_artifacts.root.stat().st_mtime_ns
    started = time.monotonic()
    out = subprocess.run([*VMKIT, "fetch", "--json"], capture_output=True, text=True, check=True)
    elapsed = time.monotonic() - started
    assert json.loads(out.stdout)["version"] == guest_artifacts.version
    assert guest_artifacts.root.stat().st_mtime_ns == before
    assert elapsed < 10  # the goal is < 2 s; measured ~0.3 s, bound loose for busy CI


@pytest.mark.integration
def test_tcg_boot_reaches_ready_and_runs_guest_kernel(guest_artifacts):
    result = accel.boot_to_ready("tcg", guest_artifacts, timeout=30)
    assert result.ok, result.console_tail
    assert 0.3 < result.seconds < 30


# ------------------------------------------------------------------ engine and image

@pytest.mark.integration
def test_private_engine_runs_the_busybox_image_to_ready(docker_engine, guest_artifacts):
    client = engine.client()
    try:
        image = engine.ensure_image(client, guest_artifacts)
        assert image == guest_artifacts.image
        container = client.containers.run(image, detach=True, network_mode="none")
        try:
            deadline = time.monotonic() + 20
            while b"VMKIT-READY" not in container.logs() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert b"VMKIT-READY" in container.logs()
            rc, out = container.exec_run(["uname", "-r"])
            assert rc == 0 and out.decode().strip() == os.uname().release
        finally:
            container.remove(force=True)
        assert not client.containers.list(all=True, filters={"id": container.id})
    finally:
        client.close()


@pytest.mark.integration
def test_engine_status_reports_the_endpoint(docker_engine):
    out = subprocess.run([*VMKIT, "engine", "status", "--json"], capture_output=True, text=True, check=True)
    status = json.loads(out.stdout)
    assert status["usable"] is True and status["endpoint"]


def test_engine_start_as_non_root_is_refused_in_korean(monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)  # else a system engine's URL decides
    monkeypatch.setattr(engine, "find", lambda: None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(engine.EngineError, match="root"):
        engine.start()


def test_private_engine_lifecycle_in_its_own_state_dir(tmp_path, monkeypatch):
    """Start a second private dockerd in a temporary state dir, then stop it by pid."""
    if os.geteuid() != 0:
        pytest.skip("dockerd needs root")
    state = Path("/tmp") / f"vmkit-engine-test-{os.getpid()}"  # short: socket paths are limited
    monkeypatch.setenv("VMKIT_STATE", str(state))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(engine, "SYSTEM_SOCKET", f"unix://{state}/no-such.sock")
    try:
        endpoint = engine.start()
        pid = engine.private_pid()
        assert endpoint.private and pid
        assert engine.stop() is True
        assert engine.private_pid() is None
        assert not Path(f"/proc/{pid}").exists() or \
            open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    finally:
        engine.stop()
        subprocess.run(["rm", "-rf", str(state)], check=False)


# ------------------------------------------------------------------ doctor and CLI

@pytest.mark.integration
def test_doctor_json_on_this_host(docker_engine, guest_artifacts):
    out = subprocess.run([*VMKIT, "doctor", "--json"], capture_output=True, text=True, timeout=120)
    report = json.loads(out.stdout)
    assert out.returncode == 0, out.stderr
    assert report["qemu"]["path"] and report["qemu"]["version"]
    assert report["accelerators"]["tcg"]["usable"] is True
    kvm = report["accelerators"]["kvm"]
    assert isinstance(kvm["usable"], bool) and kvm["reason"]
    if not kvm["usable"]:
        assert kvm["reason"].startswith("KVM을 쓸 수 없습니다: ")  # every path names KVM
    assert report["mode"] == "single"
    engine = report["engine"]
    assert engine["usable"] is True and engine["endpoint"] and engine["version"]
    assert engine["kind"] == "docker" and engine["rootless"] is False and engine["limits_enforced"] is True
    assert engine["cgroup_version"] in (1, 2)
    assert report["guest"]["ready"] is True
    assert report["guest"]["kernel"] and report["guest"]["initrd"] and report["guest"]["image"]
    assert report["guest"]["update"] is None  # the fixture built apt's candidate set


def test_accelerator_probe_is_cached(guest_artifacts):
    first = accel.accel_status("tcg")
    second = accel.accel_status("tcg")
    assert second["cached"] is True and second["usable"] == first["usable"]


def test_missing_qemu_is_a_korean_error(monkeypatch):
    monkeypatch.setenv("VMKIT_QEMU", "/nonexistent/qemu-system-x86_64")
    with pytest.raises(MissingComponent, match="QEMU"):
        qemu.qemu_binary()


def test_cli_rejects_unknown_subcommand_and_bad_engine_action(capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(["no-such-command"])
    assert err.value.code == 2
    with pytest.raises(SystemExit):
        cli.main(["engine", "explode"])


def test_python_dash_m_vmkit_works():
    out = subprocess.run([*VMKIT, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("vmkit ")


def test_fetch_reports_a_full_disk_in_korean(monkeypatch):
    import errno

    def full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(artifacts, "_fetch", full)
    with pytest.raises(artifacts.ArtifactError, match="디스크 공간"):
        artifacts.fetch(progress=False)


@pytest.mark.integration
def test_interrupted_fetch_leaves_no_partial_version(tmp_path, monkeypatch):
    """A build that dies midway (here: the initramfs step) leaves nothing that loads."""
    monkeypatch.setenv("VMKIT_CACHE", str(tmp_path))

    def boom(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(artifacts, "write_initramfs", boom)
    with pytest.raises(KeyboardInterrupt):
        artifacts.fetch(progress=False)
    assert artifacts.installed() == []
    assert [p.name for p in tmp_path.iterdir()] == ["apt-memo.json"]


def test_x86_guests_are_told_the_host_tsc_rate(guest_artifacts):
    """The kernel command line carries the TSC rate measured on this host (`host.tsc`)."""
    from vmkit.host import tsc

    khz = tsc.measure_khz()
    if platform.machine() == "x86_64":
        assert khz is not None and 100_000 <= khz <= 10_000_000
        assert abs(tsc.measure_khz() - khz) / khz < 0.01  # two measurements agree
    append = qemu.argv(qemu.Machine(memory_mib=128, cpus=1, accel="tcg"), guest_artifacts)
    append = append[append.index("-append") + 1]
    assert f"tsc_early_khz={tsc.guest_khz()}" in append.split()
