"""Benchmark: the memory one VM costs, and what free page reporting, KSM and a smaller TCG
translation buffer save.

For each setting ("plain": QEMU's defaults; "reporting": free page reporting, vmkit's
default; "tb-size=N": reporting with an N MiB translation buffer): N cold boots of a 128 MiB
vmkit VM, the settings alternated (the success rate: a setting is adopted only if every boot
succeeds, and only if it slows the boot by at most 5 %), one idle VM's PSS broken down from
smaps (guest RAM touched, the mapped kernel, the translation buffer, the QEMU binary,
libraries, the rest), and the per-VM PSS with 8 and 16 idle VMs at once, from which how many
128 MiB VMs fit in 4 GiB. Then, where KSM exists and this runs as root (or KSM already runs),
the same with KSM merging the VMs' identical pages, and what ksmd costs in CPU.

    python benchmarks/vm_memory.py --boots 50 --settings plain reporting --json out.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import finish, say  # noqa: E402
from vmkit.host import ksm
from vmkit.vm import smaps  # noqa: E402
from vmkit.errors import VmkitError  # noqa: E402
from vmkit.vm.vm import VM  # noqa: E402

MiB = 1 << 20
MEMORY = "128M"
SETTLE_S = 3.0  # an idle guest's memory stops moving a second or two after ready
ADOPTED = "reporting"
BOOT_SLOWDOWN_GOAL = 0.05
PER_VM_GOAL_MIB = 100
KSM_SCAN = 2000  # pages per ksmd wake-up while the benchmark waits for KSM to settle
KSMD_SAMPLE_S = 10.0


def setting_env(name: str) -> dict[str, str]:
    """The environment a setting's VMs start with: 'plain', 'reporting' or 'tb-size=N'."""
    if name == "plain":
        return {"VMKIT_FREE_PAGE_REPORTING": "0", "VMKIT_TCG_TB_SIZE": "0"}
    if name == "reporting":
        return {"VMKIT_FREE_PAGE_REPORTING": "1", "VMKIT_TCG_TB_SIZE": "0"}
    if name.startswith("tb-size=") and name[8:].isdigit():
        return {"VMKIT_FREE_PAGE_REPORTING": "1", "VMKIT_TCG_TB_SIZE": name[8:]}
    raise ValueError(f"unknown setting {name!r}: plain, reporting or tb-size=N")


LABELS = {"plain": "QEMU 기본값(반환 없음)", "reporting": "빈 페이지 보고(free page reporting)"}


def label(name: str) -> str:
    return LABELS.get(name, f"빈 페이지 보고 + {name}")


@contextmanager
def with_setting(name: str):
    """Run the block with vmkit's VMs started under setting `name`."""
    env = setting_env(name)
    old = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def boots(n: int, names: tuple[str, ...], progress=say) -> dict[str, dict]:
    """n cold boots per setting, the settings alternated so that the host's load hits all alike."""
    ready: dict[str, list[float]] = {name: [] for name in names}
    errors: dict[str, list[str]] = {name: [] for name in names}
    for index in range(n):
        for name in names[index % len(names):] + names[:index % len(names)]:
            with with_setting(name):
                vm = VM(memory=MEMORY)
                try:
                    ready[name].append(vm.start(timeout=60).ready_s)
                except VmkitError as exc:
                    errors[name].append(str(exc).splitlines()[0])
                finally:
                    vm.stop(graceful=False)
        if (index + 1) % 10 == 0:
            progress(f"  부팅 {index + 1}/{n}: " + ", ".join(
                f"{label(name)} 성공 {len(ready[name])}" for name in names))
    return {name: {"boots": n, "succeeded": len(ready[name]), "errors": errors[name],
                   "ready_median_s": statistics.median(ready[name]) if ready[name] else None}
            for name in names}


def idle(count: int, while_idle=dict) -> dict:
    """`count` idle VMs at once: the per-VM PSS (median) and one VM's breakdown.

    while_idle: called once the VMs have settled, before their PSS is read; what it returns
    (e.g. how KSM settled) is part of the result.
    """
    with ExitStack() as stack:
        vms = []
        for _ in range(count):
            vm = VM(memory=MEMORY)
            stack.callback(vm.stop, graceful=False)
            vm.start(timeout=120)
            vms.append(vm)
        time.sleep(SETTLE_S)
        extra = while_idle()
        each = [smaps.of_vm(vm) for vm in vms]
    totals = sorted(entry["total"] for entry in each)
    return {"vms": count, **extra, "per_vm_pss_bytes": statistics.median(totals),
            "breakdown_bytes": each[len(each) // 2]}


def ksmd_cpu_percent(seconds: float = KSMD_SAMPLE_S) -> float | None:
    """ksmd's CPU use, % of one core, over `seconds`."""
    ksmd = next((p for p in psutil.process_iter(["name", "ppid"])
                 if p.info["name"] == "ksmd" and p.info["ppid"] == 2), None)
    if ksmd is None:
        return None
    before = sum(ksmd.cpu_times()[:2])
    time.sleep(seconds)
    return round((sum(ksmd.cpu_times()[:2]) - before) / seconds * 100, 1)


def why_no_merging() -> str | None:
    """None if KSM can be measured here, else why not (Korean)."""
    state = ksm.status()
    if not state["available"]:
        return state["reason"]
    if not state["running"] and os.geteuid() != 0:
        return "KSM이 꺼져 있고 root가 아니라 켤 수 없어, KSM 측정은 건너뜁니다."
    return None


def merged_idle(count: int) -> dict:
    """`idle(count)` with KSM merging: as the host runs it, or (root) turned on for the
    measurement at a quick scan rate, put back to the host's own rate before ksmd's CPU is
    read, and switched back off afterwards."""
    def settle_then_sample(scan_rate: int | None) -> dict:
        settled = ksm.settle()
        if scan_rate is not None:
            ksm.write("pages_to_scan", scan_rate)
        return {"ksm": settled, "ksm_pages_to_scan": ksm.read("pages_to_scan"),
                "ksmd_cpu_percent": ksmd_cpu_percent()}

    if ksm.status()["running"]:
        return idle(count, lambda: settle_then_sample(None))
    with ksm.enabled(pages_to_scan=KSM_SCAN) as saved:
        return idle(count, lambda: settle_then_sample(saved["pages_to_scan"]))


def fit_in_4_gib(at_once: dict) -> int:
    """How many 128 MiB VMs fit in 4 GiB at the per-VM PSS of 8 at once (else the most)."""
    per_vm = at_once.get("8", at_once[max(at_once, key=int)])["per_vm_pss_bytes"]
    return int((4 << 30) // per_vm)


def run(boot_count: int = 50, names: tuple[str, ...] = ("plain", ADOPTED), counts=(1, 8, 16),
        progress=say) -> dict:
    progress(f"128 MiB VM을 설정마다 {boot_count}번, 번갈아 부팅: {', '.join(map(label, names))}…")
    booted = boots(boot_count, names, progress)
    settings = {}
    for name in names:
        with with_setting(name):
            progress(f"{label(name)}: 유휴(idle) VM {', '.join(map(str, counts))}개의 PSS…")
            at_once = {str(count): idle(count) for count in counts}
        settings[name] = {"env": setting_env(name), "boots": booted[name], "idle": at_once,
                          "fit_in_4_gib": fit_in_4_gib(at_once)}
    base = booted[names[0]]["ready_median_s"]
    for entry in settings.values():
        entry["boot_slowdown"] = (round(entry["boots"]["ready_median_s"] / base - 1, 3)
                                  if base and entry["boots"]["ready_median_s"] else None)
    result = {"memory": MEMORY, "settings": settings, "adopted": ADOPTED}
    skipped = why_no_merging() or (None if ADOPTED in names else f"{ADOPTED} 설정을 재지 않았습니다.")
    if skipped:
        progress(skipped)
        result["ksm"] = {"skipped": skipped}
    else:
        merged_counts = [count for count in counts if count > 1]
        progress(f"{label(ADOPTED)} + KSM: 유휴 VM {', '.join(map(str, merged_counts))}개, "
                 "KSM이 더 합칠 것이 없을 때까지 기다린 뒤의 PSS…")
        with with_setting(ADOPTED):
            merged = {str(count): merged_idle(count) for count in merged_counts}
        result["ksm"] = {"idle": merged, "fit_in_4_gib": fit_in_4_gib(merged)}
    result["goal"] = goal(result)
    return result


def goal(result: dict) -> dict:
    """The issue's goal for the adopted setting: per-VM PSS ≤ 100 MiB with 8 idle VMs, the
    boot at most 5 % slower than QEMU's defaults, every boot succeeding."""
    adopted = result["settings"].get(result["adopted"])
    if adopted is None or "8" not in adopted["idle"]:
        return {}
    boots_ok = adopted["boots"]["succeeded"] == adopted["boots"]["boots"]
    slowdown = adopted["boot_slowdown"] or 0
    per_vm = {"alone": adopted["idle"]["8"]["per_vm_pss_bytes"] / MiB}
    merged = (result.get("ksm") or {}).get("idle", {}).get("8")
    if merged:
        per_vm["ksm"] = merged["per_vm_pss_bytes"] / MiB
    return {"boots_ok": boots_ok, "boot_slowdown": slowdown,
            "boot_ok": slowdown <= BOOT_SLOWDOWN_GOAL,
            "per_vm_at_8_mib": {key: round(value, 1) for key, value in per_vm.items()},
            "per_vm_ok": {key: value <= PER_VM_GOAL_MIB for key, value in per_vm.items()}}


def _breakdown(parts: dict) -> str:
    return ", ".join(f"{name} {parts[name] / MiB:.0f}" for name in smaps.KINDS)


def rows(result: dict) -> list[tuple[str, str, str]]:
    out = []
    for name, entry in result["settings"].items():
        boot = entry["boots"]
        adopted = " (채택)" if name == result.get("adopted") else ""
        out.append((f"VM 메모리, {label(name)}{adopted}: 부팅 성공", f"{boot['succeeded']}/{boot['boots']}",
                    f"준비 중앙값 {boot['ready_median_s'] or 0:.2f} s"
                    f" (첫 설정 대비 {(entry['boot_slowdown'] or 0) * 100:+.1f}%)"))
        one = entry["idle"].get("1")
        if one:
            out.append(("  유휴 VM 1개 PSS", f"{one['per_vm_pss_bytes'] / MiB:.0f} MiB",
                        _breakdown(one["breakdown_bytes"])))
        for count, at_once in entry["idle"].items():
            if count != "1":
                out.append((f"  유휴 VM {count}개 동시, 하나당 PSS",
                            f"{at_once['per_vm_pss_bytes'] / MiB:.0f} MiB", ""))
        out.append(("  4 GiB에 들어가는 128 MiB VM", f"{entry['fit_in_4_gib']}개", "8개 동시의 하나당 PSS로"))
    merged = result.get("ksm") or {}
    if merged.get("skipped"):
        out.append(("VM 메모리 + KSM(같은 페이지 병합)", "건너뜀", merged["skipped"]))
    for count, at_once in merged.get("idle", {}).items():
        settled = at_once["ksm"]
        out.append((f"VM 메모리 + KSM: 유휴 VM {count}개 동시, 하나당 PSS",
                    f"{at_once['per_vm_pss_bytes'] / MiB:.0f} MiB",
                    f"{_breakdown(at_once['breakdown_bytes'])}; 병합 {settled['seconds']} s"
                    f"{'' if settled['settled'] else ' (시간 초과)'}, 공유 페이지 {settled['pages_sharing']}, "
                    f"ksmd CPU {at_once['ksmd_cpu_percent']}% (pages_to_scan {at_once['ksm_pages_to_scan']})"))
    if merged.get("idle"):
        out.append(("  4 GiB에 들어가는 128 MiB VM (KSM)", f"{merged['fit_in_4_gib']}개", "8개 동시의 하나당 PSS로"))
    target = result.get("goal") or {}
    if target:
        verdicts = ", ".join(f"{'KSM 켬' if key == 'ksm' else 'KSM 없이'} {value:.0f} MiB "
                             f"{'✔' if target['per_vm_ok'][key] else '✘'}"
                             for key, value in target["per_vm_at_8_mib"].items())
        out.append((f"목표: VM 8개 동시 하나당 ≤ {PER_VM_GOAL_MIB} MiB", verdicts,
                    f"부팅 {target['boot_slowdown'] * 100:+.1f}% "
                    f"{'✔' if target['boot_ok'] else '✘'} (≤ +5%), 부팅 성공 "
                    f"{'✔' if target['boots_ok'] else '✘'}"))
    return out


def table(result: dict) -> str:
    return "\n".join(f"{name}: {value}   {note}" for name, value, note in rows(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="VM 하나의 메모리: 빈 페이지 보고, KSM, TCG 번역 버퍼(tb-size)")
    parser.add_argument("--boots", type=int, default=50)
    parser.add_argument("--settings", nargs="+", default=["plain", ADOPTED],
                        help="plain, reporting, tb-size=N (첫 설정이 부팅 시간의 기준)")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    for name in args.settings:
        try:
            setting_env(name)
        except ValueError as exc:
            parser.error(str(exc))
    return finish(lambda: run(args.boots, tuple(args.settings), tuple(args.counts)), table, args.json)


if __name__ == "__main__":
    sys.exit(main())
