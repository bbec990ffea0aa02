"""Benchmark: vmkit's boot-to-ready against a plain `qemu-system-x86_64` command line.

Both boot the same Debian kernel and the same initramfs to the same `VMKIT-READY`
console line, alternated in one run so that the host's load hits both alike. The plain
command is what a user would type: q35, the compressed bzImage, `console=ttyS0`,
`-nographic`, QEMU's defaults for everything else (firmware, TCG threads, devices).
Also measured: the QMP `query-status` round trip, QEMU's RSS against the guest's RAM,
and a snapshot's size, save time and restore-to-ready time.

    python benchmarks/bench_vm.py --trials 10 --json out.json

`run(trials)` returns the same dict, for `vmkit bench`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from vmkit import artifacts as artifacts_mod  # noqa: E402
from vmkit import background, qemu  # noqa: E402
from benchmarks.common import finish, say  # noqa: E402
from vmkit.errors import VmkitError  # noqa: E402
from vmkit.units import parse_memory  # noqa: E402
from vmkit.vm import VM  # noqa: E402

GOALS = {"ratio": 1.0, "ready_s": 2.0, "qmp_ms": 5.0}


def plain_argv(arts: artifacts_mod.Artifacts, memory_mib: int) -> list[str]:
    """The command a user would type to boot the same kernel and initramfs."""
    return [qemu.qemu_binary(), "-machine", "q35", "-m", f"{memory_mib}M",
            "-kernel", str(arts.vmlinuz), "-initrd", str(arts.initrd),
            "-append", "console=ttyS0", "-nographic"]


def plain_boot(argv: list[str], timeout: float = 60.0) -> dict:
    """Spawn the plain command, wait for VMKIT-READY on its console, kill it."""
    started = time.monotonic()
    proc = background.spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, bufsize=0)
    seen = b""
    ready = None
    rss = None
    try:
        fd = proc.stdout.fileno()
        os.set_blocking(fd, True)
        while time.monotonic() - started < timeout:
            data = os.read(fd, 65536)
            if not data:
                break
            seen = (seen + data)[-4096:]
            if qemu.READY_MARKER.encode() in seen:
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
    return {"ready_s": ready, "rss_bytes": rss}


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


def snapshot_figures(vm: VM, restores: int = 3) -> dict:
    """Save the running guest, then restore it a few times to ready."""
    with tempfile.TemporaryDirectory(prefix="vmkit-bench-") as tmp:
        path = Path(tmp) / "guest.vmkit"
        saved = vm.snapshot(path)
        ready, uptimes = [], []
        for _ in range(restores):
            restored = VM.restore(path)
            try:
                ready.append(restored.trace.ready_s)
                uptimes.append(restored.trace.guest.get("uptime_s"))
            finally:
                restored.stop(graceful=False)
        return {"bytes": saved["bytes"], "save_s": saved["seconds"],
                "guest_uptime_at_save_s": saved["guest_uptime_s"],
                "restore_ready_s": ready, "restore_ready_median_s": statistics.median(ready),
                "guest_uptime_after_restore_s": uptimes}


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def run(trials: int = 10, memory: str = "256M", accel: str = "auto",
        progress=None) -> dict:
    """The whole benchmark; returns a JSON-ready dict (see the module docstring)."""
    say = progress or (lambda text: None)
    arts = artifacts_mod.require()
    memory_bytes = parse_memory(memory)
    argv = plain_argv(arts, memory_bytes >> 20)
    vmkit_runs, plain_runs = [], []
    for trial in range(trials):
        order = ("vmkit", "plain") if trial % 2 == 0 else ("plain", "vmkit")
        for which in order:
            if which == "vmkit":
                vmkit_runs.append(vmkit_boot(memory, accel))
                say(f"[{trial + 1}/{trials}] vmkit  ready {vmkit_runs[-1]['ready_s']}")
            else:
                plain_runs.append(plain_boot(argv))
                say(f"[{trial + 1}/{trials}] plain  ready {plain_runs[-1]['ready_s']}")

    vmkit_median = _median(r["ready_s"] for r in vmkit_runs)
    plain_median = _median(r["ready_s"] for r in plain_runs)
    phase_names = [name for name in (vmkit_runs[0].get("phases") or {})]
    phases_median = {name: _median(r.get("phases", {}).get(name) for r in vmkit_runs)
                     for name in phase_names}

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

    ratio = vmkit_median / plain_median if vmkit_median and plain_median else None
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
        "plain": {"command": [Path(argv[0]).name, *argv[1:]],
                  "ready_s": [r["ready_s"] for r in plain_runs], "ready_median_s": plain_median,
                  "rss_median_bytes": _median(r.get("rss_bytes") for r in plain_runs),
                  "failures": sum(r["ready_s"] is None for r in plain_runs)},
        "ratio": ratio,
        "qmp": rtt,
        "memory": {"guest_ram_bytes": memory_bytes, "qemu_rss_bytes": usage.rss_bytes,
                   "qemu_pss_bytes": usage.pss_bytes,
                   "rss_over_guest_ram": usage.rss_bytes / memory_bytes,
                   "guest_mem_total_bytes": usage.guest_mem_total_bytes},
        "snapshot": snap,
        "goals": {"ratio_le_1": ratio is not None and ratio <= GOALS["ratio"],
                  "ready_le_2s": vmkit_median is not None and vmkit_median <= GOALS["ready_s"],
                  "qmp_le_5ms": rtt["median_ms"] <= GOALS["qmp_ms"]},
    }


def summary(result: dict) -> str:
    """A short Korean summary of `run()`'s result."""
    v, p, m, s = result["vmkit"], result["plain"], result["memory"], result["snapshot"]
    lines = [
        f"부팅→준비(ready) 중앙값(median), {result['trials']}회 번갈아 측정, 가속기 {result['accel']}:",
        f"  vmkit        {v['ready_median_s']:.3f} s  (start() 전체 {v['start_wall_median_s']:.3f} s, 실패 {v['failures']})",
        f"  일반 QEMU    {p['ready_median_s']:.3f} s  (실패 {p['failures']}): {' '.join(p['command'])}",
        f"  비율(ratio)  {result['ratio']:.2f}",
        f"QMP query-status 왕복(round trip): 중앙값 {result['qmp']['median_ms']:.2f} ms, p90 {result['qmp']['p90_ms']:.2f} ms",
        f"메모리: 게스트 RAM {m['guest_ram_bytes'] / 2**20:.0f} MiB, QEMU RSS {m['qemu_rss_bytes'] / 2**20:.0f} MiB"
        f" ({m['rss_over_guest_ram']:.2f}배), 일반 QEMU RSS {(p['rss_median_bytes'] or 0) / 2**20:.0f} MiB",
        f"스냅샷(snapshot): {s['bytes'] / 2**20:.1f} MiB, 저장 {s['save_s']:.3f} s,"
        f" 복원→준비 중앙값 {s['restore_ready_median_s']:.3f} s",
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
