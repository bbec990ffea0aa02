"""Where a QEMU process's memory goes, from /proc/PID/smaps: PSS by kind of mapping.

Kinds: `guest_ram` (the anonymous mapping of the guest's RAM size, as far as the guest has
touched it), `kernel` (the mapped guest kernel or initramfs file: page cache, shared between
VMs that boot the same one), `tcg_buffer` (TCG's translation buffer, the anonymous rwx
mapping), `qemu_binary`, `libraries` (shared objects) and `other` (heap, stacks, the rest).
"""

from __future__ import annotations

import re
from pathlib import Path

KINDS = ("guest_ram", "kernel", "tcg_buffer", "qemu_binary", "libraries", "other")
_HEADER = re.compile(r"^[0-9a-f]+-[0-9a-f]+ (\S{4}) \S+ \S+ \S+\s*(.*)$")


def mappings(text: str) -> list[dict]:
    """[{"perms", "path", "size", "pss", "flags"}] (bytes; VmFlags as a tuple, e.g. "mg"
    for memory KSM may merge) from the text of an smaps file."""
    found: list[dict] = []
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            found.append({"perms": header.group(1), "path": header.group(2).strip(),
                          "size": 0, "pss": 0, "flags": ()})
        elif found and line.startswith("VmFlags:"):
            found[-1]["flags"] = tuple(line.split()[1:])
        elif found and line.startswith(("Size:", "Pss:")):
            key = "size" if line.startswith("Size:") else "pss"
            found[-1][key] = int(line.split()[1]) * 1024
    return found


def kind(mapping: dict, guest_ram_bytes: int, kernel_paths: tuple[str, ...] = (),
         qemu_path: str = "") -> str:
    path, perms = mapping["path"], mapping["perms"]
    if path and path in kernel_paths:
        return "kernel"
    if path and (path == qemu_path or Path(path).name.startswith("qemu-system")):
        return "qemu_binary"
    if ".so" in Path(path).name:
        return "libraries"
    if not path and perms.startswith("rwx"):
        return "tcg_buffer"
    if not path and mapping["size"] == guest_ram_bytes:
        return "guest_ram"
    return "other"


def accounting(text: str, guest_ram_bytes: int, kernel_paths: tuple[str, ...] = (),
               qemu_path: str = "") -> dict[str, int]:
    """PSS in bytes per kind (and "total") for one QEMU's smaps text."""
    totals = dict.fromkeys(KINDS, 0)
    for mapping in mappings(text):
        totals[kind(mapping, guest_ram_bytes, kernel_paths, qemu_path)] += mapping["pss"]
    totals["total"] = sum(totals[name] for name in KINDS)
    return totals


def of_pid(pid: int, guest_ram_bytes: int, kernel_paths: tuple[str, ...] = (),
           qemu_path: str = "") -> dict[str, int]:
    return accounting(Path(f"/proc/{pid}/smaps").read_text(), guest_ram_bytes,
                      kernel_paths, qemu_path)


def of_vm(vm) -> dict[str, int]:
    """PSS per kind of a running `vmkit.VM`'s QEMU (its kernel, initramfs and binary known)."""
    from ..guest import artifacts
    from . import qemu

    arts = vm.artifacts or artifacts.require(vm.arch)
    return of_pid(vm.pid, vm.memory_bytes, (str(arts.kernel), str(arts.initrd)),
                  qemu.qemu_binary(arts.arch))
