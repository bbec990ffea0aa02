"""Benchmark: the memory one VM costs, and what a smaller TCG translation buffer saves.

For each translation-buffer setting (QEMU's default, and the sizes asked for): N cold boots
of a 128 MiB vmkit VM one after another (the success rate: a setting is adopted only if every
boot succeeds), one idle VM's PSS broken down from smaps (guest RAM touched, the mapped
kernel, the translation buffer, the QEMU binary, libraries, the rest), and the per-VM PSS
with 8 and 16 idle VMs at once, from which how many 128 MiB VMs fit in 4 GiB.

    python benchmarks/vm_memory.py --boots 50 --tb-sizes 0 16 --json out.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import finish, say  # noqa: E402
from vmkit import smaps  # noqa: E402
from vmkit.errors import VmkitError  # noqa: E402
from vmkit.vm import VM  # noqa: E402

MiB = 1 << 20
MEMORY = "128M"
SETTLE_S = 3.0  # an idle guest's memory stops moving a second or two after ready


@contextmanager
def with_tb_size(mib: int):
    """Run the block with vmkit asking for a `mib` MiB translation buffer (0: QEMU's default)."""
    old = os.environ.get("VMKIT_TCG_TB_SIZE")
    os.environ["VMKIT_TCG_TB_SIZE"] = str(mib)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("VMKIT_TCG_TB_SIZE", None)
        else:
            os.environ["VMKIT_TCG_TB_SIZE"] = old


def boots(n: int, tb_sizes: tuple[int, ...], progress=say) -> dict[int, dict]:
    """n cold boots per setting, the settings alternated so that the host's load hits all alike."""
    ready: dict[int, list[float]] = {mib: [] for mib in tb_sizes}
    errors: dict[int, list[str]] = {mib: [] for mib in tb_sizes}
    for index in range(n):
        for mib in tb_sizes[index % len(tb_sizes):] + tb_sizes[:index % len(tb_sizes)]:
            with with_tb_size(mib):
                vm = VM(memory=MEMORY)
                try:
                    ready[mib].append(vm.start(timeout=60).ready_s)
                except VmkitError as exc:
                    errors[mib].append(str(exc).splitlines()[0])
                finally:
                    vm.stop(graceful=False)
        if (index + 1) % 10 == 0:
            progress(f"  부팅 {index + 1}/{n}: " + ", ".join(
                f"{label(mib)} 성공 {len(ready[mib])}" for mib in tb_sizes))
    return {mib: {"boots": n, "succeeded": len(ready[mib]), "errors": errors[mib],
                  "ready_median_s": statistics.median(ready[mib]) if ready[mib] else None}
            for mib in tb_sizes}


def label(mib: int) -> str:
    return f"tb-size={mib}" if mib else "QEMU 기본값"


def idle(count: int) -> dict:
    """`count` idle VMs at once: the per-VM PSS (median) and one VM's breakdown."""
    with ExitStack() as stack:
        vms = []
        for _ in range(count):
            vm = VM(memory=MEMORY)
            stack.callback(vm.stop, graceful=False)
            vm.start(timeout=120)
            vms.append(vm)
        time.sleep(SETTLE_S)
        each = [smaps.of_vm(vm) for vm in vms]
    totals = sorted(entry["total"] for entry in each)
    return {"vms": count, "per_vm_pss_bytes": statistics.median(totals),
            "breakdown_bytes": each[len(each) // 2]}


def run(boot_count: int = 50, tb_sizes: tuple[int, ...] = (0, 16), counts=(1, 8, 16),
        progress=say) -> dict:
    progress(f"128 MiB VM을 설정마다 {boot_count}번, 번갈아 부팅: {', '.join(map(label, tb_sizes))}…")
    booted = boots(boot_count, tb_sizes, progress)
    settings = {}
    for mib in tb_sizes:
        with with_tb_size(mib):
            progress(f"{label(mib)}: 유휴(idle) VM {', '.join(map(str, counts))}개의 PSS…")
            at_once = {str(count): idle(count) for count in counts}
        per_vm_8 = at_once.get("8", at_once[str(counts[-1])])["per_vm_pss_bytes"]
        settings[str(mib)] = {"tb_size_mib": mib or None, "boots": booted[mib], "idle": at_once,
                              "fit_in_4_gib": int((4 << 30) // per_vm_8)}
    base = booted[tb_sizes[0]]["ready_median_s"]
    for mib in tb_sizes:
        entry = settings[str(mib)]
        entry["boot_slowdown"] = (round(entry["boots"]["ready_median_s"] / base - 1, 3)
                                  if base and entry["boots"]["ready_median_s"] else None)
    return {"memory": MEMORY, "settings": settings}


def rows(result: dict) -> list[tuple[str, str, str]]:
    out = []
    for mib, entry in result["settings"].items():
        setting = f"tb-size={mib} MiB" if int(mib) else "QEMU 기본 번역 버퍼"
        boot = entry["boots"]
        out.append((f"VM 메모리, {setting}: 부팅 성공", f"{boot['succeeded']}/{boot['boots']}",
                    f"준비 중앙값 {boot['ready_median_s'] or 0:.2f} s"
                    f" (첫 설정 대비 {(entry['boot_slowdown'] or 0) * 100:+.1f}%)"))
        one = entry["idle"].get("1")
        if one:
            parts = one["breakdown_bytes"]
            out.append((f"  유휴 VM 1개 PSS", f"{one['per_vm_pss_bytes'] / MiB:.0f} MiB",
                        ", ".join(f"{name} {parts[name] / MiB:.0f}" for name in smaps.KINDS)))
        for count, at_once in entry["idle"].items():
            if count != "1":
                out.append((f"  유휴 VM {count}개 동시, 하나당 PSS",
                            f"{at_once['per_vm_pss_bytes'] / MiB:.0f} MiB", ""))
        out.append(("  4 GiB에 들어가는 128 MiB VM", f"{entry['fit_in_4_gib']}개", "8개 동시의 하나당 PSS로"))
    return out


def table(result: dict) -> str:
    return "\n".join(f"{name}: {value}   {note}" for name, value, note in rows(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="VM 하나의 메모리와 TCG 번역 버퍼(tb-size) 벤치마크")
    parser.add_argument("--boots", type=int, default=50)
    parser.add_argument("--tb-sizes", type=int, nargs="+", default=[0, 16],
                        help="번역 버퍼 크기 MiB (0: QEMU 기본값)")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    return finish(lambda: run(args.boots, tuple(args.tb_sizes), tuple(args.counts)), table, args.json)


if __name__ == "__main__":
    sys.exit(main())
