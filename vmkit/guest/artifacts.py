"""Guest artifacts, built locally from the distribution's packages and cached.

One BusyBox userland serves both sides of every comparison: the VM boots it as an
initramfs on Debian's cloud kernel, and the container image is imported from the very
same files. Everything lands under `cache_dir()/<version>/`; a version directory counts
only once its `manifest.json` is written, and it is built under a temporary name and
renamed into place, so an interrupted build never passes for a good one.

The packages come from apt's current candidates, but a start never depends on them: when
apt offers newer packages (after `apt-get update`) whose set is not built yet, the newest
complete set built by this vmkit stays in use until `vmkit fetch` builds the new one.
Only Debian 12 (bookworm) is supported: the cloud kernel package is Debian's.

Each guest architecture (`arches`) has sets of its own. The host's own architecture is
built from the system's apt; another one (arm64 on an amd64 host) from a private apt state
under the cache dir, so the system's dpkg architectures are never changed.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

from ..errors import ArtifactError, MissingComponent
from ..host.paths import cache_dir, cache_file
from . import arches
from .cpio import CpioWriter

#: Bump when the layout of the artifacts changes; part of every version key.
SCHEMA = 3
KERNEL_META_PACKAGE = arches.X86_64.kernel_meta_package
BUSYBOX_PACKAGE = "busybox-static"
IMAGE_REPOSITORY = arches.X86_64.image_repository
SUPPORTED_SYSTEM = "Debian 12 (bookworm)"
OS_RELEASE = Path("/etc/os-release")
#: Drivers the x86_64 guest needs: virtio over MMIO (microvm) or PCI (q35), the console and
#: virtio-serial port for the agent, and the balloon. Their dependencies are added.
GUEST_MODULES = arches.X86_64.modules
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Package:
    """One Debian package as apt describes it: enough to download and verify it."""

    name: str
    version: str
    sha256: str
    size: int

    @property
    def spec(self) -> str:
        """`name=version`, as apt-get takes it."""
        return f"{self.name}={self.version}"


@dataclass(frozen=True)
class Artifacts:
    """A complete, verified set of guest artifacts (see the module docstring)."""

    version: str
    root: Path
    kernel_release: str
    kernel_package: str
    busybox_version: str
    modules: tuple[str, ...]
    #: `guest_key()` of the vmkit that built the set; "" for sets built before it existed.
    guest_key: str = ""
    #: The guest architecture (`arches`); sets built before there were two are x86_64.
    arch: str = arches.DEFAULT

    @property
    def kernel(self) -> Path:
        """The kernel file QEMU boots (`-kernel`): vmlinux on x86_64, Image on aarch64."""
        return self.root / arches.lookup(self.arch).kernel_file

    @property
    def vmlinuz(self) -> Path:
        """The distribution's compressed kernel (bzImage), bootable on q35."""
        return self.root / "vmlinuz"

    @property
    def vmlinux(self) -> Path:
        """The same kernel uncompressed (ELF with a PVH entry), bootable on microvm."""
        return self.root / "vmlinux"

    @property
    def initrd(self) -> Path:
        """The gzip-compressed newc initramfs: BusyBox, the agent, the virtio modules."""
        return self.root / "initramfs.cpio.gz"

    @property
    def rootfs(self) -> Path:
        """The same BusyBox userland as a tar, the source of the container image."""
        return self.root / "rootfs.tar"

    @property
    def image(self) -> str:
        """The container image tag imported from `rootfs`."""
        return f"{arches.lookup(self.arch).image_repository}:{self.version}"

    def files(self) -> dict[str, Path]:
        """Every file of the set by name (the keys of the manifest's sizes)."""
        arch = arches.lookup(self.arch)
        kept = {"vmlinuz": self.vmlinuz} if KERNEL_FORMATS[arch.kernel_format].keep_vmlinuz else {}
        return {**kept, arch.kernel_file: self.kernel, "initrd": self.initrd, "rootfs": self.rootfs}

    def sizes(self) -> dict[str, int]:
        return {name: path.stat().st_size for name, path in self.files().items()}


# ---------------------------------------------------------------- apt: find, fetch, check

def _run(argv: list[str], what: str, **kwargs) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    except FileNotFoundError:
        raise MissingComponent(
            f"{what}에 필요한 프로그램 `{argv[0]}`이(가) 없습니다.",
            f"{SUPPORTED_SYSTEM}에서 `make setup`으로 준비하세요.",
        ) from None
    if done.returncode != 0:
        raise ArtifactError(f"{what} 실패: `{' '.join(argv)}`\n{done.stderr.strip()[-2000:]}")
    return done.stdout


APT_LISTS = Path("/var/lib/apt/lists")


def _apt_show(name: str, *options: str) -> dict[str, str]:
    """`apt-cache show` fields of the candidate version, memoized until apt's lists change.

    options: apt `-o` settings of a private state (`apt_options`); none for the system's apt.
    apt-cache takes about 0.6 s a call here; the memo keeps a second `vmkit fetch` fast.
    """
    lists = Path(_option(options, "Dir::State::Lists") or APT_LISTS)
    try:
        lists_key = str(lists.stat().st_mtime_ns)
    except OSError:
        lists_key = "none"
    memo_path = cache_file(f"apt-memo-{_option(options, 'APT::Architecture')}.json"
                           if options else "apt-memo.json")
    try:
        memo = json.loads(memo_path.read_text())
        if memo.get("lists") != lists_key:
            memo = {"lists": lists_key}
    except (OSError, ValueError):
        memo = {"lists": lists_key}
    if name not in memo:
        text = _run(["apt-cache", *options, "show", "--no-all-versions", name],
                    f"패키지(package) {name} 조회")
        fields: dict[str, str] = {}
        for line in text.splitlines():
            if ":" in line and not line.startswith(" "):
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
        memo[name] = fields
        try:
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            memo_path.write_text(json.dumps(memo))
        except OSError:
            pass
    return memo[name]


def resolve_package(name: str, *options: str) -> Package:
    """Ask apt (with `options`, see `_apt_show`) which version of `name` it would install."""
    fields = _apt_show(name, *options)
    if "Version" not in fields or "SHA256" not in fields:
        raise ArtifactError(
            f"apt가 패키지(package) {name}을(를) 모릅니다.",
            "`apt-get update`로 패키지 목록을 새로 받아 주세요 (`make setup`이 합니다).",
        )
    return Package(fields.get("Package", name), fields["Version"], fields["SHA256"],
                   int(fields.get("Size", 0)))


def os_release() -> dict[str, str]:
    """The fields of `OS_RELEASE` (ID, PRETTY_NAME, ...); empty if it cannot be read."""
    try:
        text = OS_RELEASE.read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            fields[key.strip()] = value.strip().strip("\"'")
    return fields


def _kernel_unknown(meta: str, apt_said: str = "") -> ArtifactError:
    """apt cannot name the cloud kernel `meta` points at: on Debian, refresh the lists; elsewhere, use Debian."""
    info = os_release()
    if info.get("ID") == "debian":
        return ArtifactError(
            f"apt에서 게스트 커널 패키지(package) {meta}가 가리키는 커널을 "
            "찾지 못했습니다." + (f"\n{apt_said}" if apt_said else ""),
            "`apt-get update`로 패키지 목록을 새로 받은 뒤 다시 시도하세요 (`make setup`이 합니다).",
        )
    name = info.get("PRETTY_NAME") or info.get("ID") or "알 수 없는 배포판"
    return ArtifactError(
        f"이 시스템({name})의 apt는 게스트 커널 패키지(package) {meta}를 모릅니다. "
        f"이 패키지는 Debian에만 있어서 vmkit은 {SUPPORTED_SYSTEM}만 지원합니다 "
        "(Ubuntu는 지원하지 않습니다).",
        f"Ubuntu 등에서는 {SUPPORTED_SYSTEM} 안에서 실행하세요: Debian 12 가상 머신(VM), "
        "WSL의 Debian 12, 또는 Debian 12 호스트(host)나 컨테이너(container)에서 "
        "저장소를 받아 `make setup`을 실행하면 됩니다.",
    )


def resolve_kernel_package(arch: arches.Arch = arches.X86_64, *options: str) -> Package:
    """The concrete cloud kernel package the architecture's meta package points at."""
    meta = arch.kernel_meta_package
    try:
        depends = _apt_show(meta, *options).get("Depends", "")
    except ArtifactError as exc:
        raise _kernel_unknown(meta, str(exc)) from None
    for item in depends.split(","):
        name = item.strip().split(" ")[0]
        if name.startswith("linux-image-"):
            return resolve_package(name, *options)
    raise _kernel_unknown(meta)


def _option(options: tuple[str, ...], key: str) -> str | None:
    """The value of `-o key=value` among apt `options`, if there."""
    prefix = f"{key}="
    return next((o[len(prefix):] for o in options if o.startswith(prefix)), None)


def apt_options(arch: arches.Arch) -> tuple[str, ...]:
    """apt `-o` settings for `arch`'s packages: none on its own host, else a private state.

    The private state (its own package lists and cache under `cache_dir()/apt-<debian>`)
    knows only that architecture; the system's apt and dpkg stay as they are.
    """
    if arch.native:
        return ()
    state = cache_dir() / f"apt-{arch.debian}"
    return ("-o", f"APT::Architecture={arch.debian}", "-o", f"APT::Architectures::={arch.debian}",
            "-o", f"Dir::State::Lists={state / 'lists'}", "-o", f"Dir::Cache={state / 'cache'}")


def refresh_apt(arch: arches.Arch) -> None:
    """Bring a private apt state's package lists up to date (`apt-get update`).

    Done when they are missing or the system's lists changed since (the system ran
    `apt-get update`), so a second `vmkit fetch` asks the network nothing.
    """
    options = apt_options(arch)
    if not options:
        return
    lists, cache = Path(_option(options, "Dir::State::Lists")), Path(_option(options, "Dir::Cache"))
    stamp = lists / "vmkit-system-lists"
    try:
        system_key = str(APT_LISTS.stat().st_mtime_ns)
    except OSError:
        system_key = "none"
    try:
        if stamp.read_text() == system_key:
            return
    except OSError:
        pass
    for path in (lists / "partial", cache / "archives" / "partial"):
        path.mkdir(parents=True, exist_ok=True)
    try:
        _run(["apt-get", *options, "update", "-q"],
             f"{arch.debian} 패키지 목록(package lists) 받기")
    except ArtifactError as exc:
        raise ArtifactError(
            f"아키텍처(architecture) {arch.name}({arch.debian})용 패키지 목록을 받지 못했습니다: {exc}",
            "네트워크와 /etc/apt/sources.list(.d)의 Debian 저장소를 확인하세요.") from None
    stamp.write_text(system_key)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_and_extract(package: Package, workdir: Path, *options: str) -> Path:
    """`apt-get download` the package (apt `options` as in `_apt_show`), check its SHA256
    against apt's, unpack it."""
    _run(["apt-get", *options, "download", "-q", package.spec],
         f"{package.name} 내려받기(download)", cwd=workdir)
    debs = list(workdir.glob(f"{package.name}_*.deb"))
    if len(debs) != 1:
        raise ArtifactError(f"{package.name}의 .deb 파일을 찾지 못했습니다: {debs}")
    actual = sha256_file(debs[0])
    if actual != package.sha256:
        raise ArtifactError(
            f"{debs[0].name}의 체크섬(SHA256)이 apt의 값과 다릅니다: {actual} ≠ {package.sha256}"
        )
    tree = workdir / package.name
    _run(["dpkg-deb", "-x", str(debs[0]), str(tree)], f"{package.name} 풀기(extract)")
    debs[0].unlink()
    return tree


# ---------------------------------------------------------------- kernel pieces

LZ4_LEGACY_MAGIC = b"\x02\x21\x4c\x18"


def extract_vmlinux(bzimage: bytes) -> bytes:
    """Decompress the LZ4 (legacy frame) payload of a bzImage into its ELF vmlinux.

    An ELF vmlinux carries the PVH entry note, so QEMU's microvm can start it directly,
    with no firmware and no decompression inside the slow emulated guest.
    """
    import lz4.block

    start = bzimage.find(LZ4_LEGACY_MAGIC)
    if start < 0:
        raise ArtifactError("커널 이미지(bzImage)에서 LZ4 데이터를 찾지 못했습니다.")
    pos, out = start + 4, bytearray()
    block_max = 8 << 20
    while pos + 4 <= len(bzimage):
        size = int.from_bytes(bzimage[pos:pos + 4], "little")
        if size == int.from_bytes(LZ4_LEGACY_MAGIC, "little") or size == 0 \
                or size > block_max + block_max // 255 + 16 or pos + 4 + size > len(bzimage):
            break
        try:
            out += lz4.block.decompress(bzimage[pos + 4:pos + 4 + size],
                                        uncompressed_size=block_max)
        except lz4.block.LZ4BlockError:
            break
        pos += 4 + size
    if not out.startswith(b"\x7fELF"):
        raise ArtifactError("커널의 LZ4 데이터를 풀었지만 ELF vmlinux가 아닙니다.")
    return bytes(out)


ARM64_IMAGE_MAGIC = (0x38, b"ARM\x64")


def arm64_image(vmlinuz: bytes) -> bytes:
    """The arm64 kernel `Image` QEMU's virt boots: Debian ships it as is (gunzipped if not)."""
    image = gzip.decompress(vmlinuz) if vmlinuz[:2] == b"\x1f\x8b" else vmlinuz
    at, magic = ARM64_IMAGE_MAGIC
    if image[at:at + len(magic)] != magic:
        raise ArtifactError("커널 파일이 arm64 Image 형식이 아닙니다 (ARM\\x64 표시가 없습니다).")
    return image


@dataclass(frozen=True)
class KernelFormat:
    """How the kernel file QEMU boots is made from Debian's vmlinuz."""

    boot_kernel: Callable[[bytes], bytes]
    #: Whether the set keeps Debian's vmlinuz too (x86_64: the bzImage q35 boots).
    keep_vmlinuz: bool


#: By `Arch.kernel_format`.
KERNEL_FORMATS = {"bzimage-lz4": KernelFormat(extract_vmlinux, keep_vmlinuz=True),
                  "arm64-image": KernelFormat(arm64_image, keep_vmlinuz=False)}


def elf_machine(binary: bytes) -> int | None:
    """`e_machine` of a little-endian ELF file (62: x86-64, 183: AArch64), else None."""
    if binary[:4] != b"\x7fELF" or binary[5] != 1:
        return None
    return int.from_bytes(binary[18:20], "little")


def module_depends(ko: bytes) -> list[str]:
    """The `depends=` list from a kernel module's .modinfo strings."""
    at = ko.find(b"\0depends=")
    if at < 0:
        return []
    value = ko[at + 9:ko.index(b"\0", at + 1)].decode()
    return [name for name in value.split(",") if name]


def module_load_order(kernel_tree: Path, release: str, wanted=GUEST_MODULES) -> list[tuple[str, Path]]:
    """`wanted` and their dependencies, each after what it depends on."""
    index = {p.name[:-3].replace("-", "_"): p
             for p in (kernel_tree / "lib/modules" / release).rglob("*.ko")}
    order: list[tuple[str, Path]] = []

    def visit(name: str, seen: tuple[str, ...] = ()) -> None:
        if any(done == name for done, _ in order):
            return
        if name in seen:
            raise ArtifactError(f"커널 모듈(kernel module) 의존성이 순환합니다: {seen + (name,)}")
        if name not in index:
            raise ArtifactError(f"커널 패키지에 모듈(module) {name}.ko가 없습니다.")
        for dep in module_depends(index[name].read_bytes()):
            visit(dep, seen + (name,))
        order.append((name, index[name]))

    for name in wanted:
        visit(name)
    return order


# ---------------------------------------------------------------- userland pieces

def guest_script(name: str) -> bytes:
    """The text of `vmkit/guest/<name>` (init or agent)."""
    return resources.files("vmkit").joinpath("guest", name).read_bytes()


def busybox_applets(busybox: Path) -> list[str]:
    """Install paths of every applet (`bin/sh`, `sbin/poweroff`, ...) the binary offers.

    A BusyBox this host cannot run (another architecture: "exec format error") is read
    instead (`foreign_applets`).
    """
    try:
        text = _run([str(busybox), "--list-full"], "BusyBox 애플릿(applet) 목록")
    except OSError as exc:
        if exc.errno != errno.ENOEXEC:
            raise
        return foreign_applets(busybox.read_bytes())
    return sorted({line.strip().lstrip("/") for line in text.splitlines() if line.strip()})


def foreign_applets(binary: bytes) -> list[str]:
    """Applet install paths of a BusyBox of another architecture, without running it.

    The names come from the binary's own sorted applet name table ("[", "[[", "acpid",
    ...); the directory of each from this host's BusyBox (`busybox --list-full`, the same
    Debian source), and `bin/` for a name the host's build lacks.
    """
    start = binary.find(b"\0[\0[[\0")
    end = binary.find(b"\0\0", start + 1)
    if start < 0 or end < 0:
        raise ArtifactError("BusyBox 실행 파일에서 애플릿(applet) 이름표를 찾지 못했습니다.")
    names = binary[start + 1:end].decode("ascii", "replace").split("\0")
    host = shutil.which("busybox")
    known = {Path(p).name: p for p in (busybox_applets(Path(host)) if host else [])}
    return sorted(known.get(name, f"bin/{name}") for name in names)


def userland_entries(busybox: bytes, applets: list[str]):
    """The shared userland as (kind, path, payload, mode) entries, in a stable order."""
    yield ("file", "bin/busybox", busybox, 0o755)
    for applet in applets:
        if applet != "bin/busybox":
            depth = applet.count("/")
            yield ("link", applet, "../" * depth + "bin/busybox", 0)
    yield ("file", "vmkit/agent", guest_script("agent"), 0o755)
    for directory in ("proc", "sys", "dev", "tmp", "run", "etc", "root"):
        yield ("dir", directory, None, 0o1777 if directory == "tmp" else 0o755)


def write_initramfs(path: Path, entries, modules: list[tuple[str, Path]]) -> None:
    """The VM's initramfs: the userland, /init, the modules and /dev/console."""
    raw = io.BytesIO()
    cpio = CpioWriter(raw)
    for kind, name, payload, mode in entries:
        if kind == "file":
            cpio.file(name, payload, mode)
        elif kind == "link":
            cpio.symlink(name, payload)
        else:
            cpio.mkdir(name, mode)
    cpio.chardev("dev/console", 5, 1)
    cpio.file("init", guest_script("init"), 0o755)
    for name, ko in modules:
        cpio.file(f"lib/modules/{name}.ko", ko.read_bytes())
    cpio.file("etc/vmkit/modules", "".join(f"{name}\n" for name, _ in modules).encode())
    cpio.close()
    with open(path, "wb") as stream:
        with gzip.GzipFile(fileobj=stream, mode="wb", compresslevel=6, mtime=0) as gz:
            gz.write(raw.getvalue())


def write_rootfs_tar(path: Path, entries) -> None:
    """The container's root file system: the same userland entries, as a tar."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, payload, mode in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if kind == "file":
                info.size, info.mode = len(payload), mode
                tar.addfile(info, io.BytesIO(payload))
            elif kind == "link":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, payload, 0o777
                tar.addfile(info)
            else:
                info.type, info.mode = tarfile.DIRTYPE, mode
                tar.addfile(info)


# ---------------------------------------------------------------- versions and the cache

def guest_key(arch: "str | arches.Arch | None" = None) -> str:
    """A hash of vmkit's own share of a set: the layout, the architecture's modules, the guest scripts."""
    digest = hashlib.sha256()
    for part in (str(SCHEMA).encode(), ",".join(arches.lookup(arch).modules).encode(),
                 guest_script("init"), guest_script("agent")):
        digest.update(part + b"\0")
    return digest.hexdigest()


def version_key(kernel: Package, busybox: Package, arch: "str | arches.Arch | None" = None) -> str:
    """A short hash of everything that shapes the artifacts: the packages and `guest_key()`."""
    digest = hashlib.sha256()
    for part in (kernel.name, kernel.version, kernel.sha256, busybox.version, busybox.sha256,
                 guest_key(arch)):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:12]


def load(root: Path) -> Artifacts | None:
    """The artifacts in `root` if its manifest is there, names this set and every file matches it."""
    return _load(root)[0]


def _load(root: Path) -> tuple[Artifacts | None, str | None]:
    """(artifacts, None), or (None, why not)."""
    try:
        text = (root / MANIFEST).read_text()
    except FileNotFoundError:
        return None, f"{MANIFEST}이(가) 없습니다"
    except OSError as exc:
        return None, f"{MANIFEST}을(를) 읽을 수 없습니다 ({exc.strerror or exc})"
    try:
        manifest = json.loads(text)
        artifacts = Artifacts(
            version=manifest["version"], root=root, kernel_release=manifest["kernel_release"],
            kernel_package=manifest["kernel_package"],
            busybox_version=manifest["busybox_version"], modules=tuple(manifest["modules"]),
            guest_key=manifest.get("guest_key", ""), arch=manifest.get("arch", arches.DEFAULT))
        expected = manifest["sizes"]
        files = artifacts.files()
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, f"{MANIFEST}이(가) 손상되었거나 형식이 다릅니다"
    if artifacts.version != root.name:  # another set's manifest: its files are not these
        return None, f"{MANIFEST}이(가) 다른 아티팩트 {artifacts.version}의 것입니다"
    if not isinstance(expected, dict) or set(expected) != set(files):
        return None, f"{MANIFEST}의 파일 목록(sizes)이 맞지 않습니다"
    for name, path in files.items():
        try:
            size = path.stat().st_size
        except OSError:
            return None, f"{path.name} 파일이 없습니다"
        if size != expected[name]:
            return None, f"{path.name} 크기가 {MANIFEST}와 다릅니다 ({size} ≠ {expected[name]} 바이트)"
    return artifacts, None


def installed(arch: "str | arches.Arch | None" = None) -> list[Artifacts]:
    """Every complete artifact set in the cache (of `arch` if given), newest first."""
    name = None if arch is None else arches.lookup(arch).name
    found = [a for a in (load(p) for p in cache_dir().glob("*/")) if a and name in (None, a.arch)]
    return sorted(found, key=lambda a: a.root.stat().st_mtime, reverse=True)


def newest_built(arch: "str | arches.Arch | None" = None) -> Artifacts | None:
    """The newest complete set of `arch` built by this vmkit (same `guest_key()`), whatever its packages."""
    arch = arches.lookup(arch)
    key = guest_key(arch)
    return next((a for a in installed(arch) if a.guest_key == key), None)


@dataclass(frozen=True)
class Candidate:
    """The set `vmkit fetch` builds now: from apt's candidate kernel and BusyBox."""

    version: str
    kernel: Package
    busybox: Package
    arch: str = arches.DEFAULT


def candidate(arch: "str | arches.Arch | None" = None) -> Candidate:
    """Ask apt for the architecture's candidate packages and name the set they make."""
    arch = arches.lookup(arch)
    options = apt_options(arch)
    kernel = resolve_kernel_package(arch, *options)
    busybox = resolve_package(BUSYBOX_PACKAGE, *options)
    return Candidate(version_key(kernel, busybox, arch), kernel, busybox, arch.name)


@dataclass(frozen=True)
class Status:
    """The set in use, and the candidate when its set is not built yet."""

    artifacts: Artifacts | None
    unbuilt: Candidate | None = None
    #: Why the candidate's set in the cache does not load (truncated file, wrong manifest).
    damaged: str | None = None

    def damage_note(self) -> str | None:
        """Korean: the candidate's set is damaged and `vmkit fetch` rebuilds it (None if not)."""
        if self.damaged is None or self.unbuilt is None:
            return None
        return (f"게스트 아티팩트(guest artifacts) {self.unbuilt.version}이(가) 손상되었습니다"
                f"(corrupted): {self.damaged}. `vmkit fetch`로 다시 만드세요.")

    def update_note(self) -> str | None:
        """Korean: a different set can be built with `vmkit fetch` (None if nothing to say)."""
        a, c = self.artifacts, self.unbuilt
        if a is None or c is None:
            return None
        if self.damaged is not None:
            return f"{self.damage_note()} 그동안은 전에 만든 {a.version}을(를) 씁니다."
        return (f"apt에 새 패키지(package)가 있어 새 게스트 아티팩트(guest artifacts) {c.version}을(를) "
                f"만들 수 있습니다: 커널(kernel) {c.kernel.spec}, BusyBox {c.busybox.version} "
                f"(지금 쓰는 {a.version}: 커널 {a.kernel_package}, BusyBox {a.busybox_version}). "
                "`vmkit fetch`로 만드세요.")


def status(offline_ok: bool = True, arch: "str | arches.Arch | None" = None) -> Status:
    """The candidate's set of `arch` if built, else the newest set this vmkit built (see `Status`).

    Without apt (offline, no lists) the newest built set is used unless `offline_ok` is False.
    """
    arch = arches.lookup(arch)
    try:
        wanted = candidate(arch)
    except (ArtifactError, MissingComponent):
        if not offline_ok:
            raise
        return Status(newest_built(arch))
    root = cache_dir() / wanted.version
    built, why = _load(root)
    if built:
        return Status(built)
    return Status(newest_built(arch), wanted, why if root.is_dir() else None)


def current(offline_ok: bool = True, arch: "str | arches.Arch | None" = None) -> Artifacts | None:
    """The artifacts of `arch` to use now (see `status`), or None when no usable set is built."""
    return status(offline_ok, arch).artifacts


def require(arch: "str | arches.Arch | None" = None) -> Artifacts:
    """The artifacts of `arch` to use now (see `status`), or a Korean error that says how to get them."""
    arch = arches.lookup(arch)
    found = status(arch=arch)
    artifacts = found.artifacts
    if artifacts is None:
        which = "" if arch.native else f"{arch.name}용 "
        if found.damaged is not None:
            raise MissingComponent(
                f"{which}게스트 아티팩트(guest artifacts) {found.unbuilt.version}이(가) "
                f"손상되었습니다(corrupted): {found.damaged}.",
                "`vmkit fetch`로 다시 만드세요: 손상된 것을 지우고 새로 만듭니다 (`make setup`도 합니다).")
        raise MissingComponent(
            f"{which}게스트 아티팩트(guest artifacts: 커널, initramfs, 컨테이너 이미지)가 아직 없습니다.",
            "`vmkit fetch`로 만드세요 (`make setup`이 합니다).",
        )
    return artifacts


def fetch(progress: bool = True, force: bool = False,
          arch: "str | arches.Arch | None" = None) -> Artifacts:
    """Build apt's candidate set of `arch` into the cache unless it is already there.

    Without `arch`, every architecture's set is built (what `vmkit fetch` and `make setup`
    need), the default architecture's first, and that one is returned.
    A failure (disk full, an interrupted download, ...) leaves no partial version behind:
    the build happens in a temporary directory that is removed on any error.
    """
    targets = [arches.lookup(arch)] if arch is not None else list(arches.ARCHES.values())
    try:
        built = [_fetch(target, progress, force) for target in targets]
    except OSError as exc:
        why = "디스크 공간이 부족합니다" if exc.errno == errno.ENOSPC else f"파일 작업 실패 ({exc})"
        raise ArtifactError(f"게스트 아티팩트(guest artifacts)를 만들지 못했습니다: {why}.",
                            f"캐시 위치: {cache_dir()} (VMKIT_CACHE로 바꿀 수 있습니다)") from exc
    return built[0]


def _fetch(arch: arches.Arch, progress: bool, force: bool) -> Artifacts:
    from tqdm.auto import tqdm

    refresh_apt(arch)
    options = apt_options(arch)
    wanted = candidate(arch)
    kernel, busybox_pkg, version = wanted.kernel, wanted.busybox, wanted.version
    final = cache_dir() / version
    if not force and (done := load(final)):
        return done
    cache_dir().mkdir(parents=True, exist_ok=True)
    steps = ["커널 패키지 내려받기", "BusyBox 내려받기", f"{arch.kernel_file} 만들기", "모듈 고르기",
             "initramfs 만들기", "rootfs.tar 만들기", "저장"]
    desc = "vmkit fetch" if arch.native else f"vmkit fetch ({arch.name})"
    bar = tqdm(total=len(steps), desc=desc, unit="단계", disable=not progress)
    with tempfile.TemporaryDirectory(prefix=f".{version}.partial-", dir=cache_dir()) as tmp:
        work = Path(tmp)
        out = work / "out"
        out.mkdir()

        def step(i: int) -> None:
            if i:
                bar.update(1)
            bar.set_postfix_str(steps[i])

        step(0)
        kernel_tree = download_and_extract(kernel, work, *options)
        step(1)
        busybox_tree = download_and_extract(busybox_pkg, work, *options)
        release = kernel.name.removeprefix("linux-image-")
        step(2)
        kernel_format = KERNEL_FORMATS[arch.kernel_format]
        vmlinuz = (kernel_tree / "boot" / f"vmlinuz-{release}").read_bytes()
        if kernel_format.keep_vmlinuz:
            (out / "vmlinuz").write_bytes(vmlinuz)
        (out / arch.kernel_file).write_bytes(kernel_format.boot_kernel(vmlinuz))
        step(3)
        modules = module_load_order(kernel_tree, release, arch.modules)
        busybox_bin = busybox_tree / "bin" / "busybox"
        busybox = busybox_bin.read_bytes()
        if elf_machine(busybox) != arch.elf_machine:
            raise ArtifactError(f"{busybox_pkg.spec}의 BusyBox가 {arch.name}용 ELF 실행 파일이 아닙니다 "
                                f"(e_machine {elf_machine(busybox)} ≠ {arch.elf_machine}).")
        entries = list(userland_entries(busybox, busybox_applets(busybox_bin)))
        step(4)
        write_initramfs(out / "initramfs.cpio.gz", entries, modules)
        step(5)
        write_rootfs_tar(out / "rootfs.tar", entries)
        step(6)
        artifacts = Artifacts(version, final, release, kernel.spec, busybox_pkg.version,
                              tuple(name for name, _ in modules), guest_key(arch), arch.name)
        manifest = {**asdict(artifacts), "root": None, "built_at": time.time(),
                    "sizes": {name: (out / p.name).stat().st_size
                              for name, p in artifacts.files().items()}}
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
        _move_into_place(out, final, replace=force)
        bar.update(1)
    bar.close()
    return load(final) or _broken(final)


def _move_into_place(out: Path, final: Path, replace: bool) -> None:
    """Rename a finished build to `final`; a complete set there stays unless `replace`.

    Two fetches of one version at once (two notebooks, two test runs) both finish: the
    second keeps the first one's set rather than deleting it under a running VM.
    """
    if final.exists() and (replace or load(final) is None):
        shutil.rmtree(final)
    try:
        os.rename(out, final)
    except OSError:
        if load(final) is None:
            raise


def _broken(root: Path):
    raise ArtifactError(f"{root}에 쓴 아티팩트(artifact)를 다시 읽지 못했습니다.")
