"""Benchmark: vmkit's boot-to-ready against three plain `qemu-system-x86_64` command lines.

All boot the same Debian kernel and the same initramfs to the same `VMKIT-READY` console
line, alternated in one run so that the host's load hits all alike. The baselines
(`baselines.py`) go from what a tutorial shows (typical) through the best q35 a QEMU user
gets (tuned-q35) to vmkit's own machine started by hand without QMP, agent or sandbox
(expert). Goals: vmkit ≤ 1.05 × expert (what QMP, agent and sandbox cost) and ≤ 0.8 ×
tuned-q35. Also measured: vmkit's per-phase medians, the kernel's slowest initcalls (one
`initcall_debug` boot), the QMP `query-status` round trip, QEMU's RSS against the guest's
RAM, and a snapshot's size, save time and restore-to-ready time.

    python benchmarks/bench_vm.py --trials 10 --json out.json

`run(trials)` returns the same dict, for `vmkit bench`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vmkit.guest import artifacts as artifacts_mod  # noqa: E402
from vmkit.vm import qemu  # noqa: E402
from benchmarks import baselines  # noqa: E402
from benchmarks.common import finish, say  # noqa: E402
from vmkit.errors import VmkitError  # noqa: E402
from vmkit.units import parse_memory  # noqa: E402
from vmkit.vm.vm import VM  # noqa: E402

GOALS = {"ready_s": 2.0, "qmp_ms": 5.0}
#: vmkit's ready time over each baseline's, at most (typical has none: it is the reader's own).
RATIO_GOALS = {"expert": 1.05, "tuned-q35": 0.8}


def vmkit_boot(memory: str, accel: str, timeout: float = 60.0) -> dict:
    """Boot with vmkit; ready_s is spawn → VMKIT-READY, as for the plain command."""
    called = time.monotonic()
    vm = VM(memory=memory, accel=accel)
    try:
        trace = vm.start(timeout=timeout)
        wall = time.monotonic() - called
        rss = vm.usage().rss_bytes
        return {"ready_s": trace.ready_s, "start_wall_s": wall, "phases": trace.seconds(),
                "guest_uptime_s": trace.guest.get("uptime_s"), "rss_bytes": rss,
                "accel": trace.accel}
    except VmkitError as exc:
        return {"ready_s": None, "error": str(exc).splitlines()[0]}
    finally:
        vm.stop()


def qmp_round_trip(vm: VM, n: int = 200) -> dict:
    """Milliseconds for `query-status` through vm.qmp (the notebook's synchronous path)."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        vm.qmp("query-status")
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"n": n, "median_ms": statistics.median(times), "p90_ms": times[int(n * 0.9)],
            "min_ms": times[0]}


def snapshot_figures(vm: VM, restores: int = 5) -> dict:
    """Save the running guest, then restore it a few times to ready, phase by phase
    (spawned, qmp_ready, restored = the state read, resumed = `cont`, ready = the agent)."""
    with tempfile.TemporaryDirectory(prefix="vmkit-bench-") as tmp:
        path = Path(tmp) / "guest.vmkit"
        saved = vm.snapshot(path)
        ready, uptimes, phases = [], [], []
        for _ in range(restores):
            restored = VM.restore(path)
            try:
                ready.append(restored.trace.ready_s)
                uptimes.append(restored.trace.guest.get("uptime_s"))
                phases.append(restored.trace.seconds())
            finally:
                restored.stop(graceful=False)
        names = list(phases[0]) if phases else []
        return {"bytes": saved["bytes"], "save_s": saved["seconds"],
                "guest_uptime_at_save_s": saved["guest_uptime_s"],
                "restore_ready_s": ready, "restore_ready_median_s": statistics.median(ready),
                "restore_phases_median_s": {name: _median(p.get(name) for p in phases)
                                            for name in names},
                "guest_uptime_after_restore_s": uptimes}


def restore_goal(result: dict) -> dict:
    """Restore-to-agent against 0.5 × (the cold boot's spawn → QMP, plus the state read)."""
    cold = result["vmkit"]["phases_median_s"].get("qmp_ready")
    phases = result["snapshot"]["restore_phases_median_s"]
    read = (phases.get("restored") or 0) - (phases.get("qmp_ready") or 0)
    ready = result["snapshot"]["restore_ready_median_s"]
    bound = 0.5 * (cold + read) if cold is not None else None
    return {"state_read_s": round(read, 4), "bound_s": bound,
            "met": None if bound is None else ready <= bound}


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def run(trials: int = 10, memory: str = "256M", accel: str = "auto",
        progress=None) -> dict:
    """The whole benchmark; returns a JSON-ready dict (see the module docstring)."""
    say = progress or (lambda text: None)
    arts = artifacts_mod.require()
    memory_bytes = parse_memory(memory)
    argvs = {name: baselines.ARGV[name](arts, memory_bytes >> 20) for name in baselines.NAMES}
    kinds = ("vmkit", *baselines.NAMES)
    runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
    for trial in range(trials):
        shift = trial % len(kinds)  # each kind goes first in turn
        for kind in kinds[shift:] + kinds[:shift]:
            runs[kind].append(vmkit_boot(memory, accel) if kind == "vmkit"
                              else baselines.boot(argvs[kind]))
            runs[kind][-1].pop("console", None)
            say(f"[{trial + 1}/{trials}] {kind:<10} ready {runs[kind][-1]['ready_s']}")

    vmkit_runs = runs["vmkit"]
    vmkit_median = _median(r["ready_s"] for r in vmkit_runs)
    phase_names = [name for name in (vmkit_runs[0].get("phases") or {})]
    phases_median = {name: _median(r.get("phases", {}).get(name) for r in vmkit_runs)
                     for name in phase_names}
    plain = {}
    for name in baselines.NAMES:
        median = _median(r["ready_s"] for r in runs[name])
        ratio = vmkit_median / median if vmkit_median and median else None
        goal = RATIO_GOALS.get(name)
        plain[name] = {
            "command": baselines.command(argvs[name]),
            "ready_s": [r["ready_s"] for r in runs[name]], "ready_median_s": median,
            "first_output_median_s": _median(r.get("first_output_s") for r in runs[name]),
            "rss_median_bytes": _median(r.get("rss_bytes") for r in runs[name]),
            "failures": sum(r["ready_s"] is None for r in runs[name]),
            "ratio": ratio, "goal": goal,
            "met": None if goal is None or ratio is None else ratio <= goal,
            "missed_by": None if goal is None or ratio is None or ratio <= goal
            else round(ratio / goal - 1, 3)}
    say("initcall_debug로 한 번 부팅해 커널의 느린 initcall을 봅니다…")
    initcalls = baselines.initcalls(arts, memory_bytes >> 20)

    vm = VM(memory=memory, accel=accel)
    try:
        vm.start()
        rtt = qmp_round_trip(vm)
        usage = vm.usage()
        say(f"QMP query-status median {rtt['median_ms']:.2f} ms")
        snap = snapshot_figures(vm)
        say(f"snapshot {snap['bytes'] / 2**20:.0f} MiB, restore ready {snap['restore_ready_median_s']:.3f} s")
    finally:
        vm.stop()

    return {
        "host": {"kernel": platform.release(), "cpus": os.cpu_count(),
                 "qemu": qemu.qemu_version(qemu.qemu_binary())},
        "trials": trials, "memory_bytes": memory_bytes, "accel": vmkit_runs[0].get("accel"),
        "vmkit": {"ready_s": [r["ready_s"] for r in vmkit_runs], "ready_median_s": vmkit_median,
                  "start_wall_median_s": _median(r.get("start_wall_s") for r in vmkit_runs),
                  "phases_median_s": phases_median,
                  "guest_uptime_median_s": _median(r.get("guest_uptime_s") for r in vmkit_runs),
                  "rss_median_bytes": _median(r.get("rss_bytes") for r in vmkit_runs),
                  "failures": sum(r["ready_s"] is None for r in vmkit_runs),
                  "errors": [r["error"] for r in vmkit_runs if "error" in r]},
        "baselines": plain,
        "initcalls": initcalls,
        "qmp": rtt,
        "memory": {"guest_ram_bytes": memory_bytes, "qemu_rss_bytes": usage.rss_bytes,
                   "qemu_pss_bytes": usage.pss_bytes,
                   "rss_over_guest_ram": usage.rss_bytes / memory_bytes,
                   "guest_mem_total_bytes": usage.guest_mem_total_bytes},
        "snapshot": snap,
        "goals": {**{f"vs_{name}_le_{goal}": plain[name]["met"] for name, goal in RATIO_GOALS.items()},
                  "ready_le_2s": vmkit_median is not None and vmkit_median <= GOALS["ready_s"],
                  "qmp_le_5ms": rtt["median_ms"] <= GOALS["qmp_ms"]},
    }


def baseline_lines(result: dict) -> list[str]:
    """Each baseline: its median, vmkit's ratio against it with the goal, its command line."""
    lines = []
    for name, b in result["baselines"].items():
        verdict = ""
        if b["goal"] is not None and b["ratio"] is not None:
            verdict = (f", 목표 ≤ {b['goal']} ✔" if b["met"] else
                       f", 목표 ≤ {b['goal']} ✘ ({b['missed_by'] * 100:.0f}% 넘음)")
        ratio = f"{b['ratio']:.2f}" if b["ratio"] is not None else "-"
        lines.append(f"  {name:<10} {b['ready_median_s'] or 0:.3f} s (첫 콘솔 출력 "
                     f"{b['first_output_median_s'] or 0:.3f} s, 실패 {b['failures']}), "
                     f"vmkit/{name} = {ratio}{verdict}")
        if b["met"] is False:
            lines.append(f"             왜: {why(result, name)}")
        lines.append(f"             $ {b['command']}")
    return lines


def why(result: dict, name: str) -> str:
    """Where vmkit's extra time against a baseline goes: before the console's first byte
    (QEMU start, firmware, early kernel) and from there to ready (the rest of the boot)."""
    b, phases = result["baselines"][name], result["vmkit"]["phases_median_s"]
    console, ready = phases.get("console"), result["vmkit"]["ready_median_s"]
    if None in (console, ready, b["first_output_median_s"], b["ready_median_s"]):
        return "단계를 잴 수 없었습니다"
    before = console - b["first_output_median_s"]
    after = (ready - console) - (b["ready_median_s"] - b["first_output_median_s"])
    return (f"첫 콘솔 출력까지 {before:+.3f} s, 그 뒤 준비까지 {after:+.3f} s "
            f"(vmkit − {name}; vmkit {console:.3f} + {ready - console:.3f} s, "
            f"{name} {b['first_output_median_s']:.3f} + "
            f"{b['ready_median_s'] - b['first_output_median_s']:.3f} s)")


def _seconds_text(phases: dict) -> str:
    return ", ".join(f"{name} {seconds:.3f}" for name, seconds in phases.items() if seconds is not None)


def phases_text(result: dict) -> str:
    """vmkit's per-phase medians, seconds from spawn."""
    return _seconds_text(result["vmkit"]["phases_median_s"])


def initcalls_text(result: dict) -> str:
    """The kernel's slowest initcalls, in milliseconds."""
    return ", ".join(f"{c['initcall']} {c['seconds'] * 1000:.0f} ms" for c in result["initcalls"]["top"])


def restore_text(result: dict) -> str:
    """The restore's per-phase medians, the state read, and the goal's verdict."""
    goal = restore_goal(result)
    verdict = ("" if goal["met"] is None else
               f"; 목표 ≤ 0.5 × (콜드 부팅의 QMP까지 + 상태 읽기) = {goal['bound_s']:.3f} s "
               f"{'✔' if goal['met'] else '✘'}")
    return (_seconds_text(result["snapshot"]["restore_phases_median_s"]) +
            f" (상태 읽기 {goal['state_read_s']:.3f} s){verdict}")


def summary(result: dict) -> str:
    """A short Korean summary of `run()`'s result."""
    v, m, s = result["vmkit"], result["memory"], result["snapshot"]
    lines = [
        f"부팅→준비(ready) 중앙값(median), {result['trials']}회 번갈아 측정, 가속기 {result['accel']}:",
        f"  vmkit      {v['ready_median_s']:.3f} s  (start() 전체 {v['start_wall_median_s']:.3f} s, 실패 {v['failures']})",
        *baseline_lines(result),
        f"vmkit 단계(phase) 중앙값: {phases_text(result)}",
        f"커널 initcall {result['initcalls']['count']}개 합계 {result['initcalls']['total_s']:.2f} s, "
        f"느린 10개: {initcalls_text(result)}",
        f"QMP query-status 왕복(round trip): 중앙값 {result['qmp']['median_ms']:.2f} ms, p90 {result['qmp']['p90_ms']:.2f} ms",
        f"메모리: 게스트 RAM {m['guest_ram_bytes'] / 2**20:.0f} MiB, QEMU RSS {m['qemu_rss_bytes'] / 2**20:.0f} MiB"
        f" ({m['rss_over_guest_ram']:.2f}배)",
        f"스냅샷(snapshot): {s['bytes'] / 2**20:.1f} MiB, 저장 {s['save_s']:.3f} s,"
        f" 복원→준비 중앙값 {s['restore_ready_median_s']:.3f} s",
        f"복원 단계(restore phase) 중앙값: {restore_text(result)}",
        "목표(goals): " + ", ".join(f"{k} {'✔' if ok else '✘'}" for k, ok in result["goals"].items()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="vmkit 부팅 속도 벤치마크(benchmark)")
    parser.add_argument("--trials", type=int, default=10, help="번갈아 잴 횟수 (기본 10)")
    parser.add_argument("--memory", default="256M", help="게스트 메모리 (기본 256M)")
    parser.add_argument("--accel", default="auto", help="vmkit 쪽 가속기 auto|kvm|tcg (기본 auto)")
    parser.add_argument("--json", metavar="OUT", help="결과를 JSON 파일로 저장")
    args = parser.parse_args(argv)
    return finish(lambda: run(args.trials, args.memory, args.accel, progress=say), summary, args.json)

if __name__ == "__main__":
    sys.exit(main())
