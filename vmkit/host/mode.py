"""Single-user or class mode: who provides the container engine vmkit uses.

- "single" (the default): one person's machine. vmkit uses `$DOCKER_HOST`, the system's
  Docker Engine, or starts a private dockerd of its own (as root).
- "class": a student's JupyterHub single-user server. Each student has a rootless Podman
  service of their own, which the instructor's deployment starts (see `deploy/jupyterhub/`),
  and `$DOCKER_HOST` points at it. vmkit never starts a daemon and never needs root there;
  QEMU runs as the student, with KVM only if the student may open /dev/kvm.

`VMKIT_MODE=class` or `VMKIT_MODE=single` decides; without it, a JupyterHub single-user
server (`$JUPYTERHUB_USER` set) is class mode.
"""

from __future__ import annotations

import os

from ..errors import EngineError, InvalidInput

MODES = ("single", "class")
LABELS = {"single": "단일 사용자 모드(single)", "class": "수업 모드(class mode)"}
#: What the instructor sets up for each student (shown in class mode's errors).
SETUP = ("강사(instructor)가 학생마다 루트리스(rootless) 포드맨(Podman) 서비스를 켜 두어야 합니다: "
         "`podman system service --time=0 unix://$XDG_RUNTIME_DIR/podman/podman.sock`, "
         "그리고 DOCKER_HOST=unix://$XDG_RUNTIME_DIR/podman/podman.sock "
         "(deploy/jupyterhub/ 참고). 강사에게 알려 주세요.")


def mode() -> str:
    """"class" or "single" (see the module docstring)."""
    requested = os.environ.get("VMKIT_MODE", "").strip().lower()
    if requested in MODES:
        return requested
    if requested:
        raise InvalidInput(f"환경 변수 VMKIT_MODE의 값 {os.environ['VMKIT_MODE']!r}는 알 수 없습니다.",
                           "'single' 또는 'class'로 정하거나 지우세요(unset).")
    return "class" if os.environ.get("JUPYTERHUB_USER") else "single"


def is_class() -> bool:
    return mode() == "class"


def refused(what: str) -> EngineError:
    """Class mode does not start (or stop) an engine: `what` was asked, e.g. "`vmkit engine start`"."""
    return EngineError(f"수업 모드(class mode)에서는 vmkit이 컨테이너 엔진을 시작하지 않습니다: "
                       f"{what}은(는) 쓸 수 없습니다.", SETUP)


def no_engine(url: str | None) -> EngineError:
    """Class mode's error when `$DOCKER_HOST` is not set (`url` None) or does not answer."""
    if url is None:
        return EngineError("수업 모드(class mode)인데 DOCKER_HOST가 설정되지 않아 "
                           "컨테이너 엔진(container engine)을 찾을 수 없습니다.", SETUP)
    return EngineError(f"수업 모드(class mode): DOCKER_HOST({url})의 컨테이너 엔진(container engine)이 "
                       "응답하지 않습니다.", SETUP)


def engine_hint() -> str:
    """What to do when the engine went away, in the current mode."""
    if is_class():
        return "포드맨(Podman) 서비스가 멈췄을 수 있습니다. " + SETUP
    return "`vmkit engine start`로 엔진을 켜세요."
