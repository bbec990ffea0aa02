"""Which accelerators QEMU can use here (KVM, TCG), each answer with a reason a student can read.

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

from ..errors import VmkitError
from ..guest import artifacts as artifacts_mod
from ..host import background
from ..host.paths import state_dir
from . import qemu

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


def unusable(accel: str, why: str) -> dict:
    """An accelerator status that was decided without a probe boot; the reason names it."""
    return {"usable": False, "reason": f"{_CANNOT_USE[accel]}: {why}", "probe_s": None,
            "cached": False}


def accel_status(accel: str, refresh: bool = False) -> dict:
    """{'usable', 'reason', 'probe_s', 'cached'} for 'kvm' or 'tcg', cached per host key."""
    if accel == "kvm":
        if not KVM_DEVICE.exists():
            return unusable(accel, f"{KVM_DEVICE}이 없습니다. CPU 가상화 확장(VT-x/AMD-V)이 "
                                   "꺼져 있거나 kvm 모듈(module)이 없습니다.")
        if not os.access(KVM_DEVICE, os.R_OK | os.W_OK):
            return unusable(accel, f"{KVM_DEVICE}에 읽기/쓰기 권한(permission)이 없습니다 "
                                   "(kvm 그룹(group)에 들어가야 합니다).")
    try:
        arts = artifacts_mod.require()
        key = _host_key(accel, arts)
    except VmkitError as exc:
        return unusable(accel, f"시험 부팅(boot probe)을 할 수 없습니다: {exc}")
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
