"""vmkit's snapshot file: a compatibility stamp, then QEMU's migration stream.

Why a module of its own: a snapshot outlives the VM that wrote it and is loaded by another
QEMU, perhaps in another session, so its format is a contract apart from any one VM's
lifecycle. The file starts with a `HEADER`-byte block holding `MAGIC` and the stamp (what
must match between the snapshot and the QEMU that restores it: artifacts, QEMU version, a
digest of the command line), then the stream QMP `migrate` writes to a passed fd. Written
to `<name>.partial` and renamed into place; a full disk leaves no partial file and says so.
`VM.snapshot`, `VM.from_snapshot` and `VM.restore` are the public way in.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import InvalidInput, WorkloadError, WorkloadTimeout
from ..guest import arches
from ..guest.artifacts import Artifacts
from ..units import format_bytes
from . import qemu
from .console import ConsoleReader
from .qmp import QMPSession

MAGIC = b"VMKIT-SNAPSHOT 1\n"
HEADER = 4096
FORMAT = 1
#: What stands for the runtime directory in the stamp's command line (it differs per run).
RUNTIME = Path("/RUNTIME")
_MiB = 1 << 20
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
#: Names of the fds passed to QEMU for writing (unique in this process).
_fd_names = itertools.count(1)


def stamp_for(vm, argv: list[str], arts: Artifacts, binary: str) -> dict[str, Any]:
    """What must match between a snapshot of `vm` and the QEMU that restores it.

    argv: the VM's QEMU command line with `RUNTIME` for its runtime directory.
    """
    argv = [vm.arch.qemu, *argv[1:]]
    argv = [arg.replace(str(arts.root), "/ARTIFACTS") for arg in argv]
    argv = [arg.replace(f"{vm.name},debug-threads", "NAME,debug-threads") for arg in argv]
    digest = hashlib.sha256(json.dumps(argv).encode()).hexdigest()[:16]
    return {"format": FORMAT, "arch": vm.arch.name, "artifacts": arts.version,
            "kernel_release": arts.kernel_release, "qemu_version": qemu.qemu_version(binary),
            "memory_mib": vm.memory_mib, "cpus": vm.cpus, "accel": vm.accel,
            "kernel_args": vm.kernel_args, "qemu_args": list(vm.qemu_args),
            "options": digest}


def save(vm, session: QMPSession, path: Path, stamp: dict[str, Any], *, ready: bool,
         resume: bool, timeout: float) -> dict[str, Any]:
    """Save the running `vm` to `path` (pause, migrate to the file, resume); see `VM.snapshot`.

    ready: whether the guest agent answers (then the stamp keeps the guest's uptime).
    """
    was_running = vm.status() == "running"
    if was_running and ready:
        try:
            stamp["guest_uptime_s"] = float(vm.guest("cat /proc/uptime", 5).split()[0])
        except (WorkloadError, ValueError, IndexError):
            pass
    header = MAGIC + json.dumps(stamp).encode() + b"\n"
    if len(header) > HEADER:
        raise WorkloadError("스냅샷 헤더(header)가 너무 큽니다 (qemu_args가 너무 깁니다).")
    started = time.monotonic()
    if was_running:
        vm.pause()
    saved = False
    try:
        _write(vm, session, path, header, timeout)
        saved = True
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            raise _no_space_error(path, vm.memory_bytes) from None
        raise WorkloadError(f"스냅샷 파일(snapshot file) '{path}'을(를) 쓸 수 없습니다: "
                            f"{exc.strerror or exc}",
                            "쓸 수 있는 디렉터리(directory)와 남은 디스크 공간을 확인하세요.") from None
    finally:
        if was_running and (resume or not saved) and vm.running:
            vm.resume()  # a failed snapshot never leaves the guest paused
    seconds = time.monotonic() - started
    return {"path": str(path), "bytes": path.stat().st_size, "seconds": seconds,
            "guest_uptime_s": stamp.get("guest_uptime_s")}


def _write(vm, session: QMPSession, path: Path, header: bytes, timeout: float) -> None:
    """The header, then QEMU's migration stream through a passed fd; renamed into place."""
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, header.ljust(HEADER, b"\0"))
        fdname = f"snapshot{next(_fd_names)}"
        session.send_fd(fd, fdname)
        vm.qmp("migrate-set-parameters", max_bandwidth=1 << 40)
        vm.qmp("migrate", uri=f"fd:{fdname}")
        _wait_migration(vm, timeout)
    except BaseException as exc:
        full = isinstance(exc, Exception) and _out_of_space(partial, exc)  # before unlinking
        try:
            vm.qmp("migrate_cancel")
        except WorkloadError:
            pass
        partial.unlink(missing_ok=True)
        if full:
            raise _no_space_error(path, vm.memory_bytes) from exc
        raise
    finally:
        os.close(fd)
    os.replace(partial, path)


def _wait_migration(vm, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        info = vm.qmp("query-migrate")
        status = info.get("status")
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise WorkloadError(f"스냅샷(snapshot) 저장이 실패했습니다: {info.get('error-desc', status)}")
        if time.monotonic() >= deadline:
            raise WorkloadTimeout(f"스냅샷(snapshot) 저장이 {timeout:g}초 안에 끝나지 않았습니다.")
        time.sleep(0.01)


def _no_space_error(path: Path, memory_bytes: int) -> WorkloadError:
    return WorkloadError(
        f"스냅샷 파일(snapshot file) '{path}'을(를) 저장하지 못했습니다: 디스크 공간(disk space)이 "
        "부족합니다 (No space left on device). 쓰다 만 파일(partial file)은 지웠고 VM은 그대로입니다.",
        f"'{path.parent}'에 공간을 마련하거나 공간이 넉넉한 다른 디렉터리(directory)에 저장하세요. "
        f"스냅샷에는 대략 게스트가 쓰는 메모리만큼(이 VM은 최대 {format_bytes(memory_bytes)}) "
        "공간이 필요합니다.")


def _out_of_space(partial: Path, exc: Exception) -> bool:
    """Whether writing `partial` failed for want of disk space (checked while it still exists).

    An OSError says so by its errno. QEMU's migration reports its write error as text
    ("Unable to write to file: No space left on device"); failing that, a file system left
    with under 1 MiB free tells the same.
    """
    if isinstance(exc, OSError):
        return exc.errno in _NO_SPACE
    if not isinstance(exc, WorkloadError):
        return False
    if any(os.strerror(code) in str(exc) for code in _NO_SPACE):
        return True
    try:
        found = os.statvfs(partial.parent)
    except OSError:
        return False
    return found.f_bavail * found.f_frsize < _MiB


# ---------------------------------------------------------------- restoring

def read_stamp(path: str | os.PathLike) -> dict[str, Any]:
    """The compatibility stamp at the start of a vmkit snapshot file."""
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            head = stream.read(HEADER)
    except FileNotFoundError:
        raise InvalidInput(f"스냅샷 파일(snapshot file) '{path}'이(가) 없습니다.") from None
    except OSError as exc:
        raise InvalidInput(f"스냅샷 파일(snapshot file) '{path}'을(를) 읽을 수 없습니다: {exc.strerror}") from None
    if not head.startswith(MAGIC):
        raise InvalidInput(f"'{path}'은(는) vmkit 스냅샷(snapshot) 파일이 아닙니다.",
                           "vm.snapshot(path)로 만든 파일을 주세요.")
    try:
        stamp = json.loads(head[len(MAGIC):].split(b"\n", 1)[0])
        if stamp.get("format") != FORMAT:
            raise ValueError
        int(stamp["memory_mib"]), int(stamp["cpus"]), str(stamp["accel"])
        stamp.setdefault("arch", arches.DEFAULT)  # made before there were two architectures
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InvalidInput(f"스냅샷(snapshot) '{path}'의 헤더(header)가 손상되었거나 다른 형식입니다.") from None
    return stamp


def check_stamp(saved: dict, current: dict, path: Path | None) -> None:
    """Refuse a snapshot whose artifacts, QEMU or options differ from this restore's."""
    checks = [
        ("arch", "아키텍처(architecture)", "스냅샷을 만든 VM과 같은 arch로 복원하세요."),
        ("artifacts", "게스트 아티팩트(artifacts: 커널·initramfs)", "같은 아티팩트로 새로 부팅해서 스냅샷을 다시 만드세요."),
        ("qemu_version", "QEMU 버전(version)", "스냅샷을 만든 것과 같은 QEMU로 복원하세요."),
        ("options", "QEMU 옵션(options: 머신·장치·커널 인자)", "같은 vmkit과 같은 설정으로 스냅샷을 다시 만드세요."),
    ]
    for key, what, hint in checks:
        if key == "options" and (saved.get("qemu_args") or saved.get("kernel_args")):
            hint = (f"이 스냅샷의 헤더(header)에는 qemu_args={saved.get('qemu_args')!r}, "
                    f"kernel_args={saved.get('kernel_args')!r}라고 적혀 있습니다. vmkit은 파일에 적힌 "
                    "옵션을 QEMU에 넘기지 않습니다(보안). 믿을 수 있는 값이면 "
                    "VM.restore(path, qemu_args=..., kernel_args=...)로 직접 주세요.")
        if saved.get(key) != current.get(key):
            raise InvalidInput(
                f"스냅샷(snapshot) '{path}'은(는) 다른 {what}로 만들어져 복원(restore)할 수 없습니다: "
                f"스냅샷 {saved.get(key)!r} ≠ 지금 {current.get(key)!r}", hint)


@contextmanager
def incoming(path: Path | None) -> Iterator[int | None]:
    """An fd on the snapshot's migration stream (past the header), for QEMU's `-incoming fd:`.

    Closed on leaving: QEMU, spawned inside, holds its own copy. None when `path` is None.
    """
    if path is None:
        yield None
        return
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.lseek(fd, HEADER, os.SEEK_SET)
        yield fd
    finally:
        os.close(fd)


def wait_incoming(session: QMPSession, console: ConsoleReader, deadline: float) -> None:
    """Wait until QEMU has loaded the stream (no longer `inmigrate`); why, if it died."""
    proc = console.proc
    while session.execute("query-status")["status"] == "inmigrate":
        if proc.poll() is not None:
            raise console.died_error()
        if time.monotonic() >= deadline:
            raise WorkloadTimeout("스냅샷(snapshot) 적재(load)가 제때 끝나지 않았습니다.",
                                  log=console.stderr())
        time.sleep(0.005)
    if proc.poll() is not None:
        raise console.died_error()
