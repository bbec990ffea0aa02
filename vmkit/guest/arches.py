"""Guest architectures as data: everything that differs between an x86_64 and an aarch64 guest.

An `Arch` is looked up once (`lookup`, which refuses unknown names in Korean) and its fields
are read where they matter: `artifacts` takes the Debian architecture, the packages and the
modules; `qemu` takes the binary, the machine and the kernel arguments. Nothing else in
vmkit branches on an architecture's name.

Both machines attach vmkit's virtio devices the same way, as virtio-mmio devices
(`-device virtio-serial-device`, `-device virtio-balloon-device`): microvm and virt each
provide the MMIO transports, so there are no PCI variants to choose between.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

from ..errors import InvalidInput

#: What every guest's kernel command line ends with: no reboot loop on panic, vmkit's init,
#: and the boot-time self-tests measured as slow under TCG (see `qemu`).
KERNEL_ARGS_TAIL = ("panic=-1 rdinit=/init cryptomgr.notests=1 "
                    "initcall_blacklist=crypto_kdf108_init,init_kprobe_trace,tracer_init_tracefs")


@dataclass(frozen=True)
class Arch:
    """One guest architecture: its names, how QEMU boots it, what its artifacts are made of."""

    #: The kernel's name for it, as `uname -m` prints it in the guest.
    name: str
    #: Debian's name for it (the architecture of its packages).
    debian: str
    #: `e_machine` of its ELF executables (62: x86-64, 183: AArch64).
    elf_machine: int
    #: The QEMU system emulator, the Debian package that has it, and the variable that overrides it.
    qemu: str
    qemu_package: str
    qemu_env: str
    #: Machine type and CPU model (QEMU arguments).
    machine_args: tuple[str, ...]
    #: The whole kernel command line vmkit gives the guest (the console differs: ttyS0 / ttyAMA0).
    kernel_args: str
    #: Debian's meta package that points at the current cloud kernel.
    kernel_meta_package: str
    #: How the kernel file QEMU boots is made from Debian's vmlinuz (see `artifacts.KERNEL_FORMATS`).
    kernel_format: str
    #: Name of that file in an artifact set.
    kernel_file: str
    #: Drivers loaded at boot (their dependencies are added).
    modules: tuple[str, ...]
    #: Repository of the container image made from its BusyBox userland.
    image_repository: str
    #: Whether the guest is told the host's TSC rate (`tsc_early_khz`, see `host.tsc`).
    tells_tsc_rate: bool = False

    @property
    def platform(self) -> str:
        """The OCI platform of its container images, e.g. 'linux/arm64'."""
        return f"linux/{self.debian}"

    @property
    def native(self) -> bool:
        """Whether this host's CPU runs it natively (so KVM could accelerate it)."""
        return host_arch() == self.name


X86_64 = Arch(
    name="x86_64", debian="amd64", elf_machine=62,
    qemu="qemu-system-x86_64", qemu_package="qemu-system-x86", qemu_env="VMKIT_QEMU",
    # microvm with the uncompressed PVH kernel: no firmware, no PCI (DESIGN.md).
    machine_args=("-machine", "microvm,pit=off,pic=off,rtc=on"),
    # The TSC's rate is told (`tells_tsc_rate`), because microvm has no PIT/HPET to calibrate
    # against (without it about half the TCG boots hung); no PS/2 aux probe.
    kernel_args=("console=ttyS0 quiet tsc=reliable no_timer_check i8042.noaux "
                 f"{KERNEL_ARGS_TAIL}"),
    tells_tsc_rate=True,
    kernel_meta_package="linux-image-cloud-amd64", kernel_format="bzimage-lz4",
    kernel_file="vmlinux",
    modules=("virtio_mmio", "virtio_pci", "virtio_console", "virtio_balloon"),
    image_repository="vmkit/busybox",
)

AARCH64 = Arch(
    name="aarch64", debian="arm64", elf_machine=183,
    qemu="qemu-system-aarch64", qemu_package="qemu-system-arm", qemu_env="VMKIT_QEMU_AARCH64",
    # cortex-a57 booted in about 2.6 s under TCG; `-cpu max` took about 10.5 s (DESIGN.md):
    # it emulates pointer authentication and other costly extensions.
    machine_args=("-machine", "virt", "-cpu", "cortex-a57"),
    kernel_args=f"console=ttyAMA0 quiet {KERNEL_ARGS_TAIL}",
    kernel_meta_package="linux-image-cloud-arm64", kernel_format="arm64-image",
    kernel_file="Image",
    modules=("virtio_mmio", "virtio_console", "virtio_balloon"),
    image_repository="vmkit/busybox-arm64",
)

#: Every architecture vmkit can boot, the default first.
ARCHES: dict[str, Arch] = {arch.name: arch for arch in (X86_64, AARCH64)}
DEFAULT = X86_64.name
#: Other spellings students meet (Debian's, Docker's) for the same architectures.
ALIASES = {"amd64": "x86_64", "x86-64": "x86_64", "arm64": "aarch64"}


def host_arch() -> str:
    """This host's architecture as the kernel names it (`uname -m`)."""
    return platform.machine()


def lookup(arch: "str | Arch | None" = None) -> Arch:
    """The `Arch` called `arch` (default x86_64; Debian's names too), or a Korean InvalidInput."""
    if isinstance(arch, Arch):
        return arch
    name = DEFAULT if arch is None else str(arch).strip().lower()
    found = ARCHES.get(ALIASES.get(name, name))
    if found is None:
        raise InvalidInput(
            f"아키텍처(architecture) {arch!r}는 vmkit이 부팅할 수 없습니다.",
            f"{', '.join(repr(a) for a in ARCHES)} 중 하나를 고르세요.")
    return found
