"""The plain QEMU command lines vmkit's boot is compared with, and booting one by hand.

Three baselines, from what a user types to what an expert would choose, all booting the same
kernel and initramfs to the same `VMKIT-READY` console line:

- typical: q35, the compressed bzImage, `console=ttyS0`, `-nographic`, QEMU's defaults for
  everything else (firmware, devices, TCG threads) — what a tutorial shows;
- tuned-q35: the same kernel arguments as vmkit, `-nodefaults`, single-thread TCG — the best a
  QEMU user gets without changing the machine type;
- expert: vmkit's own command line (microvm, the PVH `vmlinux`, the same arguments and
  devices), started by hand with no QMP, no agent channel and no sandbox — the floor for
  vmkit's choice of machine. What vmkit adds on top (QMP, agent, sandbox) is the difference.

`boot(argv)` spawns one, reads its console until the marker, and kills it. `initcalls()` boots
the expert line once with `initcall_debug` and returns the kernel's slowest initcalls.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import psutil

from vmkit.guest import arches
from vmkit.host import background
from vmkit.vm import qemu
from vmkit.guest import artifacts as artifacts_mod

NAMES = ("typical", "tuned-q35", "expert")


def typical_argv(arts: artifacts_mod.Artifacts, memory_mib: int) -> list[str]:
    return [qemu.qemu_binary(), "-machine", "q35", "-m", f"{memory_mib}M",
            "-kernel", str(arts.vmlinuz), "-initrd", str(arts.initrd),
            "-append", "console=ttyS0", "-nographic"]


def tuned_q35_argv(arts: artifacts_mod.Artifacts, memory_mib: int) -> list[str]:
    kernel_args = qemu.kernel_command_line(arches.lookup(arts.arch))
    return [qemu.qemu_binary(), "-machine", "q35", "-accel", "tcg,thread=single",
            "-m", f"{memory_mib}M", "-nodefaults", "-no-user-config", "-nographic",
            "-serial", "stdio", "-kernel", str(arts.vmlinuz), "-initrd", str(arts.initrd),
            "-append", kernel_args]


def expert_argv(arts: artifacts_mod.Artifacts, memory_mib: int, extra_append: str = "") -> list[str]:
    return qemu.argv(qemu.Machine(memory_mib=memory_mib), arts, sandbox=False,
                     extra_append=extra_append)


ARGV = {"typical": typical_argv, "tuned-q35": tuned_q35_argv, "expert": expert_argv}


def command(argv: list[str]) -> str:
    """The command line as a reader would type it (the binary by name)."""
    return " ".join([Path(argv[0]).name, *argv[1:]])


def boot(argv: list[str], timeout: float = 60.0, keep: int = 4096) -> dict:
    """Spawn `argv`, wait for VMKIT-READY on its console, kill it.

    {"ready_s", "first_output_s" (the console's first byte), "rss_bytes", "console" (the
    last `keep` bytes, all of them if keep is 0)}; ready_s is None if the marker never came.
    """
    started = time.monotonic()
    proc = background.spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, bufsize=0)
    seen, ready, first, rss = b"", None, None, None
    try:
        fd = proc.stdout.fileno()
        os.set_blocking(fd, True)
        while time.monotonic() - started < timeout:
            data = os.read(fd, 65536)
            if not data:
                break
            if first is None:
                first = time.monotonic() - started
            seen = seen + data if not keep else (seen + data)[-keep:]
            if qemu.READY_MARKER.encode() in seen[-len(data) - 64:]:
                ready = time.monotonic() - started
                try:
                    rss = psutil.Process(proc.pid).memory_info().rss
                except psutil.Error:
                    pass
                break
    finally:
        proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout):
            stream.close()
    return {"ready_s": ready, "first_output_s": first, "rss_bytes": rss,
            "console": seen.decode(errors="replace")}


INITCALL = re.compile(r"initcall (\S+?)(?:\+0x[0-9a-f]+/0x[0-9a-f]+)? returned -?\d+ after (\d+) usecs")


def parse_initcalls(console: str) -> list[tuple[str, float]]:
    """[(initcall, seconds)] from a kernel log printed with `initcall_debug`, slowest first."""
    found = [(name, int(usecs) / 1e6) for name, usecs in INITCALL.findall(console)]
    return sorted(found, key=lambda item: item[1], reverse=True)


def initcalls(arts: artifacts_mod.Artifacts, memory_mib: int = 256, top: int = 10) -> dict:
    """Boot the expert line once with `initcall_debug`: the `top` slowest initcalls and their sum."""
    run = boot(expert_argv(arts, memory_mib, "initcall_debug ignore_loglevel"), keep=0)
    calls = parse_initcalls(run["console"])
    return {"ready_s": run["ready_s"], "count": len(calls),
            "total_s": round(sum(seconds for _, seconds in calls), 3),
            "top": [{"initcall": name, "seconds": seconds} for name, seconds in calls[:top]]}
