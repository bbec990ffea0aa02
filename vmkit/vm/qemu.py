"""The QEMU binary and the command lines vmkit gives it.

Kept apart from `vm` so that the KVM probe, the VM class and the benchmark's "plain QEMU"
baseline all take their options from one place. What differs between guest architectures
(binary, machine, CPU, kernel arguments) comes from the artifacts' `arches.Arch`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MissingComponent
from ..guest import arches
from ..guest.artifacts import Artifacts
from ..host import tsc

QEMU_NAME = arches.X86_64.qemu
READY_MARKER = "VMKIT-READY"
AGENT_PORT = "org.vmkit.agent"

#: The x86_64 guest's kernel arguments (`arches`), which trim the emulated boot (DESIGN.md):
#: no slow clock calibration, no PS/2 aux probe, and a fixed TSC frequency because microvm
#: has no PIT/HPET to calibrate against (without it about half the TCG boots hung).
#: Measured with `initcall_debug` under TCG: the crypto self-tests (`cryptomgr.notests`)
#: took about 0.3 s of a 1.3 s kernel boot, and two initcalls that only self-test a KDF and
#: set up kprobe tracing another 0.2 s; skipping them brought the ready median from about
#: 1.7 s to about 1.4-1.5 s. `tracer_init_tracefs` would fill /sys/kernel/tracing with about
#: 8,300 inodes for the trace events, 9 MiB of the guest's slab (25 MiB → 16 MiB): without
#: it an idle 128 MiB guest holds 66 MiB of host memory instead of 75, and nothing in vmkit
#: or the labs traces the guest's kernel. Unknown initcall names are ignored by other kernels; every
#: architecture's arguments end the same way (`arches.KERNEL_ARGS_TAIL`).
KERNEL_ARGS = arches.X86_64.kernel_args


def qemu_binary(arch: "str | arches.Arch | None" = None) -> str:
    """Path of the architecture's QEMU (e.g. qemu-system-x86_64; `Arch.qemu_env` overrides),
    or a Korean error."""
    arch = arches.lookup(arch)
    path = os.environ.get(arch.qemu_env) or shutil.which(arch.qemu)
    if not path or not os.access(path, os.X_OK):
        raise MissingComponent(
            f"QEMU 실행 파일(`{arch.qemu}`)을 찾을 수 없습니다.",
            f"`sudo apt-get install {arch.qemu_package}` 또는 `make setup`으로 설치하세요.",
        )
    return path


_versions: dict[str, str] = {}


def qemu_version(binary: str) -> str:
    """'7.2.22' from `qemu-system-x86_64 --version` (remembered once it answered).

    It runs in a session of its own: Jupyter's interrupt (SIGINT to the kernel's process
    group) must not kill it under a widget's background thread, and an answer that did not
    come ("unknown") is not remembered, or the probe's cache key and the snapshot stamps
    of this process would carry it.
    """
    if binary in _versions:
        return _versions[binary]
    out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                         check=False, start_new_session=True).stdout
    match = re.search(r"version (\S+)", out)
    if not match:
        return "unknown"
    _versions[binary] = match.group(1)
    return match.group(1)


def option_value(value: object) -> str:
    """`value` inside a QEMU `key=value,...` option: a comma is written twice."""
    return str(value).replace(",", ",,")


#: TCG's translation buffer in MiB (`-accel tcg,tb-size=N`); None leaves QEMU's default
#: (1 GiB reserved in QEMU 7.2, of which an idle guest touches about 38 MiB).
#: `VMKIT_TCG_TB_SIZE` (MiB, 0 for QEMU's default) overrides it, for the memory benchmark.
TB_SIZE_MIB: int | None = None


def tb_size_mib() -> int | None:
    """The translation buffer size vmkit asks for (`VMKIT_TCG_TB_SIZE`, else TB_SIZE_MIB)."""
    value = os.environ.get("VMKIT_TCG_TB_SIZE", "").strip()
    if value.isdigit():
        return int(value) or None
    return TB_SIZE_MIB


#: Free page reporting (virtio-balloon `free-page-reporting=on`): the guest tells QEMU which
#: of its pages are free and QEMU gives them back to the host, so an idle 128 MiB guest holds
#: about 66 MiB of host memory instead of 82. The guest agent lowers the reported block size
#: to 128 KiB once the guest is ready (see vmkit/guest/agent). `VMKIT_FREE_PAGE_REPORTING=0`
#: turns it off, for the memory benchmark's comparison.
FREE_PAGE_REPORTING = True


def free_page_reporting() -> bool:
    """Whether vmkit's balloon reports free pages (`VMKIT_FREE_PAGE_REPORTING`, else the default)."""
    value = os.environ.get("VMKIT_FREE_PAGE_REPORTING", "").strip()
    if value in ("0", "1"):
        return value == "1"
    return FREE_PAGE_REPORTING


@dataclass(frozen=True)
class Machine:
    """What to boot: the hardware QEMU emulates for one guest."""

    memory_mib: int = 256
    cpus: int = 1
    accel: str = "tcg"  # "tcg" or "kvm"; "auto" is resolved before a Machine is made
    tb_size_mib: int | None = field(default_factory=tb_size_mib)
    free_page_reporting: bool = field(default_factory=free_page_reporting)

    def balloon_device(self) -> str:
        reporting = ",free-page-reporting=on" if self.free_page_reporting else ""
        return f"virtio-balloon-device,id=balloon0{reporting}"

    def accel_args(self) -> list[str]:
        if self.accel == "kvm":
            return ["-accel", "kvm"]
        # microvm under -sandbox on hung with multi-threaded TCG (DESIGN.md).
        tb_size = f",tb-size={self.tb_size_mib}" if self.tb_size_mib else ""
        return ["-accel", f"tcg,thread=single{tb_size}"]


def kernel_command_line(arch: arches.Arch) -> str:
    """The kernel command line vmkit gives a guest of `arch`: the architecture's arguments and,
    where the guest must be told it, this host's TSC rate (its clock runs at the rate it is
    told, see `host.tsc`)."""
    if arch.tells_tsc_rate:
        return f"{arch.kernel_args} tsc_early_khz={tsc.guest_khz()}"
    return arch.kernel_args


def argv(machine: Machine, artifacts: Artifacts, *, qmp_socket: Path | None = None,
         agent_socket: Path | None = None, paused: bool = False, sandbox: bool = True,
         incoming: str | None = None, extra_append: str = "") -> list[str]:
    """The full QEMU command line for one vmkit guest of the artifacts' architecture.

    x86_64: microvm with the uncompressed PVH kernel: no firmware, no PCI, so the guest
    reaches userland in about 1.4 s under TCG against about 2.1 s for q35 with the bzImage.
    aarch64: virt with a Cortex-A57 and the arm64 Image. Both attach virtio-mmio devices.
    """
    arch = arches.lookup(artifacts.arch)
    args = [
        qemu_binary(arch),
        *arch.machine_args,
        *machine.accel_args(),
        "-m", f"{machine.memory_mib}M",
        "-smp", str(machine.cpus),
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-serial", "stdio",
        "-kernel", str(artifacts.kernel),
        "-initrd", str(artifacts.initrd),
        "-append", f"{kernel_command_line(arch)} {extra_append}".strip(),
        "-device", machine.balloon_device(),
    ]
    if agent_socket is not None:
        args += [
            "-device", "virtio-serial-device",
            "-chardev", f"socket,id=agent,path={option_value(agent_socket)},server=on,wait=off",
            "-device", f"virtserialport,chardev=agent,name={AGENT_PORT}",
        ]
    if qmp_socket is not None:
        args += ["-qmp", f"unix:{option_value(qmp_socket)},server=on,wait=off"]
    if sandbox:
        args += ["-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"]
    if paused:
        args.append("-S")
    if incoming:
        args += ["-incoming", incoming]
    return args
