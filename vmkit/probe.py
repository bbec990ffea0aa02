"""What this host can do (`vmkit doctor`), each answer with a reason a student can read.

"KVM usable" is decided by a real, time-boxed boot of the guest, not by `/dev/kvm`
existing: on a host whose KVM is paravirtual (`kvm_pvm`) a stock kernel hangs right
after "Decompressing Linux". The verdict is cached per host key (host kernel release,
QEMU version, the identity of /dev/kvm, the guest artifacts), so only the first doctor
on a host pays for the probe.
"""

from __future__ import annotations

import json
import os
import platform
import selectors
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import artifacts as artifacts_mod
from . import background, container_limits, engine, ksm, mode, qemu
from .errors import VmkitError
from .paths import state_dir

PROBE_TIMEOUT = 15.0
PROBE_MEMORY_MIB = 128
KVM_DEVICE = Path("/dev/kvm")


@dataclass(frozen=True)
class BootResult:
    """Outcome of one console-only probe boot."""

    ok: bool
    seconds: float
    reason: str
    console_tail: str = ""


def boot_to_ready(accel: str, arts: artifacts_mod.Artifacts, timeout: float = PROBE_TIMEOUT) -> BootResult:
    """Boot the guest with `accel`, wait for VMKIT-READY on the console, then kill it."""
    machine = qemu.Machine(memory_mib=PROBE_MEMORY_MIB, cpus=1, accel=accel)
    start = time.monotonic()
    proc = background.spawn(qemu.argv(machine, arts), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tail: list[str] = []
    buffer = b""
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while (left := start + timeout - time.monotonic()) > 0:
                if not sel.select(left):
                    break
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    proc.wait(2)
                    return BootResult(False, time.monotonic() - start,
                                      f"QEMU가 끝났습니다 (exit {proc.returncode})",
                                      (buffer.decode(errors="replace"))[-1500:])
                buffer = (buffer + chunk)[-8192:]
                if qemu.READY_MARKER.encode() in buffer:
                    return BootResult(True, time.monotonic() - start, "")
        tail = buffer.decode(errors="replace").splitlines()[-8:]
        return BootResult(False, time.monotonic() - start,
                          f"{timeout:.0f}초 안에 {qemu.READY_MARKER}에 이르지 못했습니다",
                          "\n".join(tail))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        proc.stdout.close()


def _kvm_identity() -> str:
    try:
        st = KVM_DEVICE.stat()
        return f"{st.st_rdev}:{st.st_ino}:{int(st.st_ctime)}"
    except OSError:
        return "absent"


def _host_key(accel: str, arts: artifacts_mod.Artifacts) -> str:
    return "|".join([accel, platform.release(), qemu.qemu_version(qemu.qemu_binary()),
                     _kvm_identity(), arts.version, qemu.KERNEL_ARGS])


def _kvm_module_note() -> str:
    """A hint when the host's KVM is a paravirtual flavour a stock guest cannot use."""
    flavours = [m for m in ("kvm_pvm",) if Path(f"/sys/module/{m}").exists()]
    if flavours:
        return (f" 이 호스트의 KVM 모듈은 {', '.join(flavours)}(반가상화 paravirtual KVM)이라 "
                "특별히 빌드한 게스트 커널만 부팅합니다.")
    return ""


_CANNOT_USE = {"kvm": "KVM을 쓸 수 없습니다", "tcg": "TCG를 쓸 수 없습니다"}


def _unusable(accel: str, why: str) -> dict:
    """An accelerator status that was decided without a probe boot; the reason names it."""
    return {"usable": False, "reason": f"{_CANNOT_USE[accel]}: {why}", "probe_s": None,
            "cached": False}


def accel_status(accel: str, refresh: bool = False) -> dict:
    """{'usable', 'reason', 'probe_s', 'cached'} for 'kvm' or 'tcg', cached per host key."""
    if accel == "kvm":
        if not KVM_DEVICE.exists():
            return _unusable(accel, f"{KVM_DEVICE}이 없습니다. CPU 가상화 확장(VT-x/AMD-V)이 "
                                   "꺼져 있거나 kvm 모듈(module)이 없습니다.")
        if not os.access(KVM_DEVICE, os.R_OK | os.W_OK):
            return _unusable(accel, f"{KVM_DEVICE}에 읽기/쓰기 권한(permission)이 없습니다 "
                                   "(kvm 그룹(group)에 들어가야 합니다).")
    try:
        arts = artifacts_mod.require()
        key = _host_key(accel, arts)
    except VmkitError as exc:
        return _unusable(accel, f"시험 부팅(boot probe)을 할 수 없습니다: {exc}")
    cache_file = state_dir() / f"accel-{accel}.json"
    if not refresh:
        try:
            cached = json.loads(cache_file.read_text())
            if cached.get("key") == key:
                return {**cached["status"], "cached": True}
        except (OSError, ValueError, KeyError):
            pass
    result = boot_to_ready(accel, arts)
    if result.ok:
        reason = (f"{accel.upper()}로 게스트를 시험 부팅(boot probe)해 "
                  f"{result.seconds:.1f}초 만에 준비되었습니다.")
    else:
        reason = f"{_CANNOT_USE[accel]}: 시험 부팅(boot probe)이 실패했습니다: {result.reason}." + \
            (_kvm_module_note() if accel == "kvm" else "")
    status = {"usable": result.ok, "reason": reason, "probe_s": round(result.seconds, 3)}
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=cache_file.parent, delete=False) as tmp:
            json.dump({"key": key, "status": status}, tmp)
        os.replace(tmp.name, cache_file)
    except OSError:
        pass
    return {**status, "cached": False}


def kvm_status() -> tuple[bool, str]:
    """(usable, reason) for KVM; what `accel="auto"` decides by."""
    status = accel_status("kvm")
    return status["usable"], status["reason"]


def doctor(refresh: bool = False) -> dict:
    """Everything `vmkit doctor` reports, as a JSON-ready dict."""
    report: dict = {"mode": mode.mode(),
                    "host": {"kernel": platform.release(), "cpus": os.cpu_count(),
                             "machine": platform.machine()}}
    try:
        binary = qemu.qemu_binary()
        report["qemu"] = {"usable": True, "path": binary, "version": qemu.qemu_version(binary),
                          "reason": "QEMU를 찾았습니다."}
    except VmkitError as exc:
        report["qemu"] = {"usable": False, "path": None, "version": None, "reason": str(exc)}

    arts_status = artifacts_mod.status()
    arts, unbuilt, note = arts_status.artifacts, arts_status.unbuilt, arts_status.update_note()
    if arts:
        report["guest"] = {"ready": True, "version": arts.version,
                           "kernel": str(arts.vmlinux), "kernel_bzimage": str(arts.vmlinuz),
                           "kernel_release": arts.kernel_release,
                           "kernel_package": arts.kernel_package,
                           "busybox_version": arts.busybox_version, "initrd": str(arts.initrd),
                           "image": arts.image, "image_present": None,
                           "reason": "게스트 아티팩트(guest artifacts)가 준비되어 있습니다."}
    else:
        report["guest"] = {"ready": False, "version": None, "kernel": None, "initrd": None,
                           "image": None, "image_present": False,
                           "reason": arts_status.damage_note() or
                           "게스트 아티팩트(guest artifacts)가 없습니다: `vmkit fetch`로 만드세요."}
    report["guest"]["update"] = None if note is None else {
        "version": unbuilt.version, "kernel_package": unbuilt.kernel.spec,
        "busybox_version": unbuilt.busybox.version, "reason": note}

    if report["qemu"]["usable"] and arts:
        accelerators = {name: accel_status(name, refresh) for name in ("kvm", "tcg")}
    else:
        why = "QEMU 또는 게스트 아티팩트가 없어 시험 부팅(boot probe)을 하지 못했습니다."
        accelerators = {name: _unusable(name, why) for name in ("kvm", "tcg")}
    report["accelerators"] = accelerators

    # "docker" is the same report under the name the labs (and students' copies of them) use.
    report["engine"] = report["docker"] = engine_status()
    if report["engine"]["usable"] and arts:
        report["guest"]["image_present"] = _image_present(engine.find(), arts.image)
    report["ksm"] = ksm.status()
    report["ok"] = bool(accelerators["tcg"]["usable"] and report["engine"]["usable"])
    return report


def engine_status() -> dict:
    """The container engine vmkit would use: its kind, version, rootless, cgroup version,
    whether it applies limits, and a reason to read (see `engine_kinds`)."""
    endpoint = engine.find()
    if endpoint is None:
        return {"usable": False, "kind": None, "label": None, "version": None, "api_version": None,
                "rootless": None, "cgroup_version": None, "limits_enforced": None,
                "endpoint": None, "source": None, "reason": _engine_missing_reason()}
    info = engine.describe(endpoint)
    reason = f"{info.label} {info.version}이(가) 응답합니다 ({_SOURCE_NAMES[endpoint.source]})."
    if not info.limits_enforced:
        reason += (f" 단, {container_limits.why_not(info)}. 컨테이너의 메모리·CPU·프로세스 수: "
                   f"{container_limits.NOT_APPLIED}. 일시 정지(pause)도 할 수 없습니다.")
    return {"usable": True, **info.to_dict(), "endpoint": endpoint.url, "source": endpoint.source,
            "reason": reason}


def _engine_missing_reason() -> str:
    """Why no engine answers, and what to do: the same words `engine.require()` raises."""
    try:
        engine.require()
    except VmkitError as exc:
        return f"{exc.args[0]} {exc.hint or ''}".strip()
    return "도커 엔진(Docker Engine)이 방금 응답하기 시작했습니다. 다시 점검하세요."


_SOURCE_NAMES = {"DOCKER_HOST": "환경 변수 DOCKER_HOST", "system": "시스템 기본 소켓",
                 "private": "vmkit 전용 엔진"}


def _image_present(endpoint: engine.Endpoint, image: str) -> bool:
    import docker

    client = engine.client(timeout=10, endpoint=endpoint)
    try:
        client.images.get(image)
        return True
    except docker.errors.ImageNotFound:
        return False
    finally:
        client.close()
