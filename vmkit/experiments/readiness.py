"""`vmkit doctor`: what this host can do for the labs, each answer with a reason to read.

One report over every layer: QEMU and the guest artifacts, which accelerators boot a
guest (`vm.accel`), the container engine and whether it applies limits, and the host's
memory merging (KSM). The labs start with it; the CLI prints it.
"""

from __future__ import annotations

import os
import platform

from ..container import engine
from ..container import limits as container_limits
from ..errors import VmkitError
from ..guest import artifacts as artifacts_mod
from ..host import ksm, mode
from ..vm import accel, qemu


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
        accelerators = {name: accel.accel_status(name, refresh) for name in ("kvm", "tcg")}
    else:
        why = "QEMU 또는 게스트 아티팩트가 없어 시험 부팅(boot probe)을 하지 못했습니다."
        accelerators = {name: accel.unusable(name, why) for name in ("kvm", "tcg")}
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
