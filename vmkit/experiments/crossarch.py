"""Another architecture on this host: booted in a VM, refused in a container.

A VM carries its own CPU: QEMU emulates an aarch64 machine and its arm64 kernel boots on
it (`boot_times` measures that against the x86_64 guest). A container is a group of this
host's processes, run by this host's kernel, which only starts executables for its own
CPU: the arm64 BusyBox of vmkit's aarch64 artifacts, loaded as an image marked
`linux/arm64`, fails in a container on an amd64 host with the kernel's `ENOEXEC`
("exec format error") as the runtime reports it (`container_run`).

The one exception is binfmt_misc: a handler registered for the binary's format (e.g.
qemu-user's `qemu-aarch64`) makes the kernel run it through that emulator instead.
`binfmt()` reads /proc/sys/fs/binfmt_misc and says whether that is so.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from ..container import engine
from ..errors import EngineError
from ..guest import arches
from ..guest import artifacts as artifacts_mod
from ..host import cleanup

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
EXEC_FORMAT_ERROR = "exec format error"
MEMORY_LIMIT = 32 << 20


@dataclass(frozen=True)
class Binfmt:
    """Whether this host's kernel would hand a binary to a binfmt_misc emulator, and why."""

    #: Whether binfmt_misc is mounted (its `status` file exists) and enabled.
    enabled: bool
    #: Enabled handlers whose magic matches the binary: (name, interpreter).
    handlers: tuple[tuple[str, str], ...]
    #: Korean: what the kernel will do with the binary.
    reason: str

    @property
    def emulated(self) -> bool:
        """Whether the kernel would run the binary through an emulator."""
        return self.enabled and bool(self.handlers)


def _handler(path: Path) -> dict[str, str]:
    """One binfmt_misc handler file as {'enabled': '', 'interpreter': ..., 'magic': ...}."""
    fields = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        fields[key.rstrip(":")] = value.strip()
    return fields


def _matches(handler: dict[str, str], header: bytes) -> bool:
    """Whether a magic-type handler's (offset, magic, mask) matches the file's first bytes."""
    if "magic" not in handler:
        return False  # an extension-type handler (by file name), not by content
    magic = bytes.fromhex(handler["magic"])
    mask = bytes.fromhex(handler.get("mask", "ff" * len(magic)))
    offset = int(handler.get("offset", "0"))
    window = header[offset:offset + len(magic)]
    return len(window) == len(magic) and all(b & m == g & m for b, g, m in zip(window, magic, mask))


def binfmt(header: bytes, root: Path = BINFMT_DIR) -> Binfmt:
    """What this host's kernel does with an executable that starts with `header`."""
    machine = artifacts_mod.elf_machine(header)
    if any(a.native and a.elf_machine == machine for a in arches.ARCHES.values()):
        return Binfmt(False, (), f"이 호스트 CPU({arches.host_arch()})용 실행 파일이라 커널이 바로 실행합니다.")
    try:
        enabled = (root / "status").read_text().strip() == "enabled"
    except OSError:
        return Binfmt(False, (), f"binfmt_misc가 마운트되어 있지 않아({root}), 커널은 자기 CPU의 "
                                 "실행 파일만 실행합니다: 다른 아키텍처의 파일은 exec format error입니다.")
    handlers = []
    for path in sorted(root.iterdir()):
        if path.name in ("status", "register"):
            continue
        try:
            fields = _handler(path)
        except OSError:
            continue
        if "enabled" in fields and _matches(fields, header):
            handlers.append((path.name, fields.get("interpreter", "")))
    if enabled and handlers:
        names = ", ".join(f"{name}({interpreter})" for name, interpreter in handlers)
        return Binfmt(True, tuple(handlers), f"binfmt_misc 처리기(handler) {names}가 등록되어 있어, 커널이 "
                                              "이 파일을 그 에뮬레이터(emulator)로 실행합니다.")
    why = "꺼져 있어" if not enabled else "이 형식을 맡은 처리기(handler)가 없어"
    return Binfmt(enabled, tuple(handlers), f"binfmt_misc가 {why}, 커널은 자기 CPU의 실행 파일만 "
                                            "실행합니다: 다른 아키텍처의 파일은 exec format error입니다.")


def busybox_header(arts: artifacts_mod.Artifacts, size: int = 128) -> bytes:
    """The first bytes of the set's BusyBox binary (its ELF header)."""
    with tarfile.open(arts.rootfs) as tar:
        member = tar.extractfile("bin/busybox")
        return member.read(size) if member else b""


# ---------------------------------------------------------------- the image

def image_archive(arts: artifacts_mod.Artifacts) -> bytes:
    """A `docker save`-format archive of the set's rootfs as one layer, marked with its platform.

    `docker import` on Docker 20.10 records the engine's own architecture whatever
    `--platform` says; a loaded archive keeps the architecture its config states.
    """
    arch = arches.lookup(arts.arch)
    layer = arts.rootfs.read_bytes()
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": arch.debian, "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Cmd": ["/vmkit/agent", "container"],
                   "Labels": {"org.vmkit.guest.artifacts": arts.version}},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        "history": [{"created": "1970-01-01T00:00:00Z",
                     "created_by": f"vmkit: BusyBox userland of guest artifacts {arts.version}"}],
    }, sort_keys=True).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [arts.image],
                            "Layers": [f"{layer_digest}/layer.tar"]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in (("manifest.json", manifest), (config_name, config),
                           (f"{layer_digest}/layer.tar", layer)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def ensure_image(client, arts: artifacts_mod.Artifacts) -> str:
    """Load the set's rootfs as `<repository>:<version>` with its platform, if missing."""
    import docker

    try:
        client.images.get(arts.image)
    except docker.errors.ImageNotFound:
        client.images.load(image_archive(arts))
    return arts.image


# ---------------------------------------------------------------- running it

@dataclass(frozen=True)
class ContainerRun:
    """One command of another architecture's userland run in a container on this host."""

    arch: str
    host_arch: str
    image: str
    image_arch: str
    command: list[str]
    exit_code: int
    #: What the program printed, or the engine's/runtime's error text when it could not start.
    output: str
    binfmt: Binfmt
    seconds: float

    @property
    def exec_format_error(self) -> bool:
        """Whether the kernel refused the executable ("exec format error")."""
        return EXEC_FORMAT_ERROR in self.output.lower()

    def to_dict(self) -> dict:
        return {**asdict(self), "exec_format_error": self.exec_format_error}


def container_run(arch: str = "aarch64", command: tuple[str, ...] = ("uname", "-m"),
                  timeout: float = 30.0) -> ContainerRun:
    """Run `command` from `arch`'s BusyBox userland in a container here; report how it ended.

    A plain `docker run --rm --network none` of the image, as a student would type it; the
    container carries vmkit's labels, so an interrupted run is swept like any other.
    """
    import docker

    arch = arches.lookup(arch)
    arts = artifacts_mod.require(arch)
    header = busybox_header(arts)
    client = engine.client(timeout=timeout)
    try:
        image = ensure_image(client, arts)
        image_arch = client.images.get(image).attrs.get("Architecture", "")
        started = time.monotonic()
        try:
            out = client.containers.run(image, list(command), remove=True, network_mode="none",
                                        mem_limit=MEMORY_LIMIT, labels=cleanup.labels("container"),
                                        stdout=True, stderr=True)
            code = 0
        except docker.errors.ContainerError as exc:
            code, out = exc.exit_status, exc.stderr or b""
        except docker.errors.APIError as exc:  # refused before the program ran
            code, out = -1, str(exc.explanation or exc).encode()
        seconds = time.monotonic() - started
    except docker.errors.DockerException as exc:
        raise EngineError(f"도커 엔진(Docker Engine)에서 {arch.name} 컨테이너를 실행하지 못했습니다: {exc}") from exc
    finally:
        client.close()
    text = out.decode("utf-8", "replace").strip() if isinstance(out, bytes) else str(out).strip()
    return ContainerRun(arch.name, arches.host_arch(), image, image_arch, list(command), code, text,
                      binfmt(header), seconds)


# ---------------------------------------------------------------- the same in a VM

def kind_label(arch: str) -> str:
    """The record kind (and plot label) of one architecture's VM, e.g. 'aarch64 VM'."""
    return f"{arches.lookup(arch).name} VM"


def boot_times(archs: Iterable[str] = tuple(arches.ARCHES), trials: int = 2, memory: str = "256M",
               on_result: Callable[[dict[str, Any]], None] | None = None,
               stop: threading.Event | None = None) -> list[dict[str, Any]]:
    """Cold-boot each architecture's guest `trials` times, interleaved; one record per boot.

    Records are `compare.measure`'s (kind `kind_label(arch)`, phases, usage) plus `arch`
    and the guest's own `machine` (`uname -m`), so `compare.summarize` and `vmkit.experiments.plots`
    take them as they are. `stop` set ends the run after the boot in progress.
    """
    from ..vm.vm import VM
    from .compare import measure

    names = [arches.lookup(a).name for a in archs]
    records: list[dict[str, Any]] = []
    for trial in range(trials):
        for name in names:
            if stop is not None and stop.is_set():
                return records
            vm = VM(memory=memory, arch=name)
            record = measure(vm, kind_label(name), trial)
            record.update(arch=name, machine=vm.trace.guest.get("machine"))
            records.append(record)
            if on_result is not None:
                on_result(record)
    return records


def plot_boot_times(records):
    """The start-up timeline of each architecture's VM (median phases), Korean labels."""
    from . import plots

    fig = plots.phases(records)
    fig.axes[0].set_title("아키텍처(architecture)별 VM 부팅 단계(phase) 시간 (중앙값)")
    return fig
