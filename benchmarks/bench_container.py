"""Benchmark: vmkit's container start-to-ready against `docker run --rm <image>`.

Both run the same image (vmkit's BusyBox) with the same command (its CMD, the agent)
to the same `VMKIT-READY` line on stdout, alternated in one run so the host's load hits
all alike. Measured per start:

- `vmkit`: `Container.start()`; ready_s runs from the create request to the marker
  (the Trace); `call_to_ready_s` from the start() call (preflight included: cached
  client, image check, leftover sweep); `start_wall_s` also includes the first exec
  that reads the container's own view (kernel, memory, cgroup limits).
- `docker run`: the CLI as a user types it, from spawning `docker` to the marker on its
  stdout; `docker run (vmkit flags)`: the CLI with vmkit's limits and least-privilege
  flags (`--network none` is the CLI's only way to say "no network").
- `vmkit (network none)`: vmkit with network mode "none" but without `network_disabled`,
  which makes dockerd's libnetwork prepare the namespace in a prestart hook.

With `--breakdown`, a few extra starts run while `perf` records the kernel's exec events
(nothing is slowed) to show where the engine's time goes: containerd-shim start,
`runc create` (and `runc init` inside it), `runc start`, the agent.

    python benchmarks/bench_container.py --trials 15 --json out.json

`run(trials)` returns the same dict, for `vmkit bench`.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vmkit.guest import artifacts as artifacts_mod  # noqa: E402
from vmkit.container import engine  # noqa: E402
from vmkit.container.container import Container  # noqa: E402
from vmkit.container.settings import TMPFS_SIZE  # noqa: E402
from benchmarks.common import finish, say  # noqa: E402
from vmkit.errors import VmkitError  # noqa: E402
from vmkit.units import parse_memory  # noqa: E402

GOALS = {"ratio": 0.85}
MARKER = b"VMKIT-READY"


class _NetworkNone(Container):
    """vmkit with network mode "none" only (libnetwork's sandbox and its prestart hook)."""

    network_disabled = False


def vmkit_start(memory: str, cls=Container) -> dict:
    """One vmkit start: phases from the Trace, and the wall time of the start() call."""
    container = cls(memory=memory)
    called = time.monotonic()
    try:
        trace = container.start(timeout=60)
        wall = time.monotonic() - called
        return {"ready_s": trace.ready_s, "call_to_ready_s": trace.phases["ready"] - called,
                "start_wall_s": wall, "phases": trace.seconds()}
    except VmkitError as exc:
        return {"ready_s": None, "error": str(exc).splitlines()[0]}
    finally:
        container.stop()


def docker_argv(image: str, flags: list[str], name: str) -> list[str]:
    return ["docker", "run", "--rm", "--name", name, *flags, image]


def vmkit_flags(memory_bytes: int) -> list[str]:
    """The `docker run` flags closest to what vmkit asks of the engine."""
    return ["--network", "none", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--read-only", "--tmpfs", f"/tmp:size={TMPFS_SIZE},mode=1777",
            "--memory", str(memory_bytes), "--memory-swap", str(memory_bytes),
            "--cpus", "1", "--pids-limit", "64"]


def docker_run(image: str, flags: list[str], url: str, client, timeout: float = 60.0) -> dict:
    """Spawn `docker run`, wait for the marker on its stdout, end it (SIGTERM is proxied)."""
    name = f"vmkit-bench-{secrets.token_hex(4)}"
    env = dict(os.environ, DOCKER_HOST=url)
    started = time.monotonic()
    proc = subprocess.Popen(docker_argv(image, flags, name), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, bufsize=0)
    seen, ready = b"", None
    try:
        while time.monotonic() - started < timeout:
            chunk = proc.stdout.read1(4096) if hasattr(proc.stdout, "read1") else os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
            if MARKER in seen:
                ready = time.monotonic() - started
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        try:
            client.api.remove_container(name, force=True)
        except Exception:
            pass  # normally --rm already removed it
    result = {"ready_s": ready}
    if ready is None:
        result["error"] = (proc.stderr.read() or b"").decode(errors="replace")[-300:]
    return result


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _summary(runs: list[dict], key: str = "ready_s") -> dict:
    values = sorted(r[key] for r in runs if r.get(key) is not None)
    if not values:
        return {"median_s": None, "failures": len(runs)}
    return {"median_s": statistics.median(values), "min_s": values[0], "max_s": values[-1],
            "p90_s": values[min(len(values) - 1, int(0.9 * len(values)))],
            "samples_s": [round(v, 4) for v in values], "failures": len(runs) - len(values)}


def breakdown(memory: str, runs: int = 7) -> dict | None:
    """Where a start's time goes inside the engine: exec times of the runtime's programs.

    `perf record` of the kernel's sched_process_exec/exit tracepoints, system-wide, on the
    monotonic clock (cheap: nothing is slowed). Needs root and perf; else None.
    """
    perf = shutil.which("perf")
    if not perf or os.geteuid() != 0:
        return None
    with tempfile.TemporaryDirectory(prefix="vmkit-perf-") as folder:
        data = os.path.join(folder, "perf.data")
        recorder = subprocess.Popen([perf, "record", "-q", "-e", "sched:sched_process_exec",
                                     "-e", "sched:sched_process_exit", "-a",
                                     "-k", "CLOCK_MONOTONIC", "-o", data],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        windows = []
        try:
            for _ in range(runs):
                container = Container(memory=memory)
                try:
                    trace = container.start(timeout=60)
                    windows.append((trace.origin, trace.phases["create"], trace.phases["ready"]))
                finally:
                    container.stop()
                time.sleep(0.1)
        finally:
            recorder.send_signal(signal.SIGINT)
            recorder.wait(20)
        try:
            script = subprocess.run([perf, "script", "-i", data, "-F", "time,event,trace"],
                                    capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError):
            return None
    execs = []  # (time, program, pid); exits come as ("exit", pid)
    for line in script.splitlines():
        match = re.search(r"([\d.]+):\s+sched:sched_process_exec:\s+filename=(\S+) pid=(\d+)", line)
        if match:
            execs.append((float(match.group(1)), os.path.basename(match.group(2)), int(match.group(3))))
            continue
        match = re.search(r"([\d.]+):\s+sched:sched_process_exit:\s+comm=\S+ pid=(\d+)", line)
        if match:
            execs.append((float(match.group(1)), "exit", int(match.group(2))))
    gaps: dict[str, list[float]] = {}
    for origin, created, ready in windows:
        marks = [("create 요청", origin), ("create 응답 (attach, start 요청)", created)]
        shims = runcs = inits = 0
        create_pid = None
        for when, name, pid in execs:
            if not created <= when <= ready:
                continue
            if name == "exit":
                if pid == create_pid:
                    marks.append(("runc create 끝남", when))
            elif name.startswith("containerd-shim"):
                shims += 1
                marks.append((f"containerd-shim 실행 #{shims}", when))
            elif name == "runc":
                runcs += 1
                marks.append(("runc create 실행" if runcs == 1 else "runc start 실행", when))
                create_pid = pid if runcs == 1 else create_pid
            elif name == "exe" and runcs == 1 and not inits:  # later ones: BusyBox re-executing itself
                inits += 1
                marks.append(("runc init 실행", when))
            elif name == "agent":
                marks.append(("컨테이너의 /vmkit/agent 실행", when))
        marks.append(("VMKIT-READY 읽음", ready))
        for (first, t0), (second, t1) in zip(marks, marks[1:]):
            gaps.setdefault(f"{first} → {second}", []).append((t1 - t0) * 1000)
    for items in gaps.values():
        items.sort()
    return {"note": "perf sched_process_exec/exit, 단위 ms, 시작마다 잰 값의 중앙값",
            "starts": len(windows),
            "gaps_median_ms": {k: round(statistics.median(v), 1) for k, v in gaps.items()
                               if len(v) == len(windows)}}


def run(trials: int = 15, memory: str = "256M", progress=None, with_breakdown: bool = False) -> dict:
    """The whole benchmark; returns a JSON-ready dict (see the module docstring)."""
    say = progress or (lambda text: None)
    endpoint = engine.require()
    memory_bytes = parse_memory(memory)
    arts = artifacts_mod.require()
    client = engine.client()
    try:
        image = engine.ensure_image(client, arts)
        have_cli = shutil.which("docker") is not None
        kinds = {"vmkit": lambda: vmkit_start(memory),
                 "vmkit (network none)": lambda: vmkit_start(memory, _NetworkNone)}
        if have_cli:
            kinds["docker run"] = lambda: docker_run(image, [], endpoint.url, client)
            kinds["docker run (vmkit flags)"] = lambda: docker_run(
                image, vmkit_flags(memory_bytes), endpoint.url, client)
        for fn in kinds.values():  # warm-up: page cache, client connections, image check
            fn()
        runs: dict[str, list[dict]] = {name: [] for name in kinds}
        names = list(kinds)
        for trial in range(trials):
            order = names[trial % len(names):] + names[:trial % len(names)]  # rotate
            for name in order:
                runs[name].append(kinds[name]())
                say(f"[{trial + 1}/{trials}] {name:26s} ready {runs[name][-1]['ready_s']}")
        extra = breakdown(memory) if with_breakdown else None
        leftovers = client.api.containers(all=True, filters={"name": "vmkit-bench-"})
    finally:
        client.close()

    results = {name: _summary(r) for name, r in runs.items()}
    vm = runs["vmkit"]
    results["vmkit"]["call_to_ready"] = _summary(vm, "call_to_ready_s")
    results["vmkit"]["start_wall"] = _summary(vm, "start_wall_s")
    phase_names = list(next((r["phases"] for r in vm if r.get("phases")), {}))
    results["vmkit"]["phases_median_s"] = {
        name: _median(r.get("phases", {}).get(name) for r in vm) for name in phase_names}
    base = results.get("docker run", {}).get("median_s")
    same = results.get("docker run (vmkit flags)", {}).get("median_s")
    mine = results["vmkit"]["median_s"]
    ratio = mine / base if mine and base else None
    return {
        "host": {"kernel": platform.release(), "cpus": os.cpu_count()},
        "engine": {"url": endpoint.url, "version": endpoint.version},
        "image": image, "memory_bytes": memory_bytes, "trials": trials,
        "commands": {"docker run": docker_argv(image, [], "NAME"),
                     "docker run (vmkit flags)": docker_argv(image, vmkit_flags(memory_bytes), "NAME")},
        "results": results,
        "ratio": ratio,
        "ratio_call_to_ready": (results["vmkit"]["call_to_ready"]["median_s"] / base
                                if base and results["vmkit"]["call_to_ready"].get("median_s") else None),
        "ratio_vs_same_flags": mine / same if mine and same else None,
        "network_hook_cost_s": ((results["vmkit (network none)"]["median_s"] or 0) - (mine or 0)
                                if mine else None),
        "breakdown": extra,
        "errors": [r["error"] for rs in runs.values() for r in rs if "error" in r][:10],
        "left_behind": len(leftovers),
        "goals": {"ratio_le_0.85": ratio is not None and ratio <= GOALS["ratio"]},
    }


def summary(result: dict) -> str:
    """A short Korean summary of `run()`'s result."""
    r = result["results"]
    lines = [f"시작→준비(VMKIT-READY) 중앙값(median), {result['trials']}회 번갈아 측정"
             f" (엔진 {result['engine']['version']}):"]
    for name, data in r.items():
        if data.get("median_s") is None:
            lines.append(f"  {name:26s} 실패 {data.get('failures')}")
            continue
        lines.append(f"  {name:26s} {data['median_s'] * 1000:6.1f} ms"
                     f"  (최소 {data['min_s'] * 1000:.1f}, p90 {data['p90_s'] * 1000:.1f}, 실패 {data['failures']})")
    v = r["vmkit"]
    lines.append(f"  vmkit start() 호출부터 준비까지 {v['call_to_ready']['median_s'] * 1000:.1f} ms,"
                 f" 첫 exec까지 포함한 start() 전체 {v['start_wall']['median_s'] * 1000:.1f} ms")
    lines.append("  vmkit 단계(phase) 중앙값: " + ", ".join(
        f"{k} {val * 1000:.1f} ms" for k, val in v["phases_median_s"].items() if val is not None))
    if result["ratio"] is not None:
        lines.append(f"비율(ratio) vmkit / docker run = {result['ratio']:.2f}"
                     f" (호출부터: {result['ratio_call_to_ready']:.2f}),"
                     f" 같은 플래그의 docker run 대비 {result['ratio_vs_same_flags']:.2f}")
    if result["network_hook_cost_s"] is not None:
        lines.append(f"network mode none만 쓸 때 더 드는 시간(libnetwork prestart hook):"
                     f" {result['network_hook_cost_s'] * 1000:.1f} ms")
    if result.get("breakdown"):
        lines.append(f"엔진 안의 시간 분해 — {result['breakdown']['note']}:")
        for step, ms in result["breakdown"]["gaps_median_ms"].items():
            lines.append(f"  {ms:7.1f} ms  {step}")
    lines.append("목표(goals): " + ", ".join(f"{k} {'✔' if ok else '✘'}" for k, ok in result["goals"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="vmkit 컨테이너 시작 속도 벤치마크(benchmark)")
    parser.add_argument("--trials", type=int, default=15, help="번갈아 잴 횟수 (기본 15)")
    parser.add_argument("--memory", default="256M", help="메모리 한도 (기본 256M)")
    parser.add_argument("--breakdown", action="store_true",
                        help="perf로 엔진 안의 시간(shim, runc)을 나눠 봅니다 (root, perf 필요)")
    parser.add_argument("--json", metavar="OUT", help="결과를 JSON 파일로 저장")
    args = parser.parse_args(argv)
    return finish(lambda: run(args.trials, args.memory, progress=say, with_breakdown=args.breakdown),
                  summary, args.json)

if __name__ == "__main__":
    sys.exit(main())
