"""Artifact sets across apt updates, the Debian-only guest kernel, and why KVM is unusable."""

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from vmkit.guest import artifacts
from vmkit import cli
from vmkit.experiments import readiness
from vmkit.vm import accel
from vmkit.container.container import Container
from vmkit.errors import ArtifactError, MissingComponent
from vmkit.host.paths import cache_dir
from vmkit.vm.vm import VM

#: A kernel apt might offer after the next `apt-get update`; never built here.
NEW_KERNEL = artifacts.Package("linux-image-6.1.0-99-cloud-amd64", "6.1.999-1", "9" * 64, 1)
FAKE_BUSYBOX = artifacts.Package("busybox-static", "1:9.9-1", "8" * 64, 1)


def apt_offers(monkeypatch, kernel: artifacts.Package, busybox: artifacts.Package | None = None):
    """Make apt offer `kernel` (through the meta package) and `busybox` (else the real one)."""
    real = artifacts._apt_show
    answers = {artifacts.KERNEL_META_PACKAGE: {"Depends": f"{kernel.name} (= {kernel.version})"}}
    for package in filter(None, (kernel, busybox)):
        answers[package.name] = {"Package": package.name, "Version": package.version,
                                 "SHA256": package.sha256, "Size": str(package.size)}
    monkeypatch.setattr(artifacts, "_apt_show", lambda name: answers.get(name) or real(name))


def fake_set(cache: Path, version: str, guest_key: str | None, age: float) -> Path:
    """A complete (tiny) artifact set in `cache`, `age` seconds old; no guest_key if None."""
    root = cache / version
    root.mkdir(parents=True)
    arts = artifacts.Artifacts(version, root, "6.1.0-1-cloud-amd64", f"linux-image-x={version}",
                               "1:1.0-1", ("virtio",), guest_key or "")
    for name, path in arts.files().items():
        path.write_bytes(name.encode())
    manifest = {**asdict(arts), "root": None, "sizes": arts.sizes()}
    if guest_key is None:
        del manifest["guest_key"]
    (root / artifacts.MANIFEST).write_text(json.dumps(manifest))
    stamp = time.time() - age
    os.utime(root, (stamp, stamp))
    return root


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("VMKIT_CACHE", str(cache))
    return cache


# ------------------------------------------------------------------ 1. apt offers a newer set

def test_current_falls_back_to_the_newest_set_this_vmkit_built(tmp_cache, monkeypatch):
    key = artifacts.guest_key()
    fake_set(tmp_cache, "older0000000", key, age=300)
    fake_set(tmp_cache, "newer0000000", key, age=200)
    fake_set(tmp_cache, "othercode000", "0" * 64, age=100)  # other guest scripts: not usable
    fake_set(tmp_cache, "legacy000000", None, age=50)  # built before guest_key: not usable
    apt_offers(monkeypatch, NEW_KERNEL, FAKE_BUSYBOX)
    wanted = artifacts.candidate()
    assert not (tmp_cache / wanted.version).exists()

    status = artifacts.status()
    assert status.artifacts.version == "newer0000000" and status.unbuilt == wanted
    assert artifacts.current().version == artifacts.require().version == "newer0000000"
    note = status.update_note()
    for text in (wanted.version, NEW_KERNEL.spec, FAKE_BUSYBOX.version, "newer0000000",
                 "`vmkit fetch`"):
        assert text in note

    # Once the candidate's set is built it is used, however old, and nothing is left to say.
    fake_set(tmp_cache, wanted.version, key, age=1000)
    status = artifacts.status()
    assert status.artifacts.version == wanted.version
    assert status.unbuilt is None and status.update_note() is None

    # Without apt (offline): the newest set this vmkit built.
    def no_apt(name):
        raise ArtifactError("apt 없음")

    monkeypatch.setattr(artifacts, "_apt_show", no_apt)
    assert artifacts.current().version == "newer0000000"
    with pytest.raises(ArtifactError):
        artifacts.current(offline_ok=False)


def test_fetch_still_builds_the_candidate_while_an_older_set_is_in_use(tmp_cache, monkeypatch):
    fake_set(tmp_cache, "inuse0000000", artifacts.guest_key(), age=0)
    apt_offers(monkeypatch, NEW_KERNEL, FAKE_BUSYBOX)
    downloads = []

    class Stop(Exception):
        pass

    def download(package, workdir):
        downloads.append(package)
        raise Stop

    monkeypatch.setattr(artifacts, "download_and_extract", download)
    with pytest.raises(Stop):
        artifacts.fetch(progress=False)
    assert downloads == [NEW_KERNEL]
    assert [p.name for p in tmp_cache.iterdir()] == ["inuse0000000"]  # no partial build left


def test_a_set_another_fetch_finished_first_is_kept(tmp_cache, tmp_path):
    key = artifacts.guest_key()
    final = fake_set(tmp_cache, "same00000000", key, age=0)
    ours = fake_set(tmp_path / "build", "same00000000", key, age=0)
    (ours / "vmlinux").write_bytes(b"ours")  # tells the two apart (and makes ours incomplete)
    artifacts._move_into_place(ours, final, replace=False)
    assert (final / "vmlinux").read_bytes() == b"vmlinux" and artifacts.load(final)
    artifacts._move_into_place(ours, final, replace=True)  # `vmkit fetch --force`
    assert (final / "vmlinux").read_bytes() == b"ours" and not ours.exists()


@pytest.mark.integration
def test_labs_keep_working_after_apt_offers_a_new_kernel(guest_artifacts, docker_engine,
                                                         monkeypatch, capsys):
    """The real set stays in use: a VM boots, a container starts, doctor names the update."""
    apt_offers(monkeypatch, NEW_KERNEL)  # BusyBox: what the real apt says
    assert artifacts.require() == guest_artifacts
    with VM(accel="tcg", memory="128M") as vm:
        assert vm.trace.ready_s > 0
        assert vm.guest("uname -r").strip() == guest_artifacts.kernel_release
    assert not vm.running
    with Container(memory="32M") as container:
        assert container.trace.ready_s > 0 and container.image == guest_artifacts.image
    assert not container.running

    wanted = artifacts.candidate()
    assert wanted.version != guest_artifacts.version
    assert not (cache_dir() / wanted.version).exists()

    assert cli.main(["doctor", "--json"]) == 0
    guest = json.loads(capsys.readouterr().out)["guest"]
    assert guest["ready"] and guest["version"] == guest_artifacts.version
    update = guest["update"]
    assert update["version"] == wanted.version and update["kernel_package"] == NEW_KERNEL.spec
    assert NEW_KERNEL.spec in update["reason"] and "`vmkit fetch`" in update["reason"]
    assert cli.main(["doctor"]) == 0
    assert update["reason"] in capsys.readouterr().out


# ------------------------------------------------------------------ 2. Debian 12 only

@pytest.fixture
def apt_without_kernel(tmp_path, monkeypatch, tmp_cache):
    """A real apt with empty package lists: like Ubuntu's, it has no linux-image-cloud-amd64."""
    lists, apt_cache = tmp_path / "apt-lists", tmp_path / "apt-cache"
    (lists / "partial").mkdir(parents=True)
    apt_cache.mkdir()
    conf = tmp_path / "apt.conf"
    conf.write_text(f'Dir::State::Lists "{lists}";\nDir::Cache "{apt_cache}";\n')
    monkeypatch.setenv("APT_CONFIG", str(conf))


def os_release(tmp_path, monkeypatch, text: str) -> None:
    path = tmp_path / "os-release"
    path.write_text(text)
    monkeypatch.setattr(artifacts, "OS_RELEASE", path)


def test_fetch_on_ubuntu_says_only_debian_12_is_supported(tmp_path, monkeypatch, capsys,
                                                          apt_without_kernel):
    os_release(tmp_path, monkeypatch,
               'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\nPRETTY_NAME="Ubuntu 24.04.1 LTS"\n')
    with pytest.raises(ArtifactError) as err:
        artifacts.fetch(progress=False)
    text = str(err.value)
    for part in ("Ubuntu 24.04.1 LTS", artifacts.KERNEL_META_PACKAGE, "Debian 12 (bookworm)만 지원",
                 "Debian 12 가상 머신(VM)", "WSL"):
        assert part in text
    assert cli.main(["fetch", "--quiet"]) == 2
    assert "Debian 12 (bookworm)만 지원" in capsys.readouterr().err


def test_fetch_on_debian_without_the_kernel_asks_for_apt_get_update(tmp_path, monkeypatch,
                                                                    apt_without_kernel):
    os_release(tmp_path, monkeypatch, 'ID=debian\nVERSION_ID="12"\n')
    with pytest.raises(ArtifactError) as err:
        artifacts.fetch(progress=False)
    assert "`apt-get update`" in str(err.value) and "Ubuntu" not in str(err.value)


# ------------------------------------------------------------------ 3. every KVM reason names KVM

@pytest.fixture
def kvm_device(tmp_path, monkeypatch) -> Path:
    """probe.KVM_DEVICE moved to a temporary path (not created), and a fresh probe cache."""
    device = tmp_path / "kvm"
    monkeypatch.setattr(accel, "KVM_DEVICE", device)
    monkeypatch.setenv("VMKIT_STATE", str(tmp_path / "state"))
    return device


def kvm_unusable(why: str) -> dict:
    status = accel.accel_status("kvm")
    assert status["usable"] is False
    assert status["reason"].startswith("KVM을 쓸 수 없습니다: "), status["reason"]
    assert why in status["reason"]
    return status


def test_kvm_reason_when_the_device_is_absent(kvm_device):
    kvm_unusable(f"{kvm_device}이 없습니다")


def test_kvm_reason_without_permission(kvm_device, monkeypatch):
    kvm_device.touch(mode=0)
    if os.geteuid() == 0:  # root may open any file: deny this one as it would be denied
        real = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw:
                            False if Path(path) == kvm_device else real(path, mode, **kw))
    kvm_unusable("읽기/쓰기 권한(permission)이 없습니다")


def test_kvm_reason_when_the_probe_boot_fails(kvm_device, monkeypatch, guest_artifacts):
    kvm_device.touch()
    monkeypatch.setattr(accel, "boot_to_ready", lambda which, arts: accel.BootResult(
        False, 15.0, "15초 안에 VMKIT-READY에 이르지 못했습니다"))
    status = kvm_unusable("시험 부팅(boot probe)이 실패했습니다: 15초 안에")
    assert status["probe_s"] == 15.0 and status["cached"] is False
    assert kvm_unusable("시험 부팅(boot probe)이 실패했습니다")["cached"] is True


def test_kvm_reason_when_no_probe_boot_is_possible(kvm_device, monkeypatch):
    kvm_device.touch()

    def no_artifacts():
        raise MissingComponent("게스트 아티팩트(guest artifacts)가 아직 없습니다.")

    monkeypatch.setattr(artifacts, "require", no_artifacts)
    kvm_unusable("시험 부팅(boot probe)을 할 수 없습니다")


def test_doctor_without_qemu_names_each_accelerator(monkeypatch):
    monkeypatch.setenv("VMKIT_QEMU", "/nonexistent/qemu-system-x86_64")
    accelerators = readiness.doctor()["accelerators"]
    assert accelerators["kvm"]["reason"].startswith("KVM을 쓸 수 없습니다: ")
    assert accelerators["tcg"]["reason"].startswith("TCG를 쓸 수 없습니다: ")
