"""Benchmark: a class on the hub — 1 and then 3 students running lab 01 at the same time.

For each class size: real unix users, the class hub (deploy/jupyterhub) on 127.0.0.1, every
student's lab 01 executed at once in their own kernel (classrun). Prints the wall time, each
student's peak memory (PSS of server + kernel + VM + engine + containers, at the moment their
sum was largest) and CPU time (their cgroup), and from those figures an estimate of how many
students a 64-core, 256 GiB server with KVM would hold, with its arithmetic shown.

    sudo .venv/bin/python benchmarks/bench_class.py --students 1 3
"""

from __future__ import annotations

import argparse
import json
import sys
from statistics import median_high
import tempfile
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "deploy" / "jupyterhub"))

import classrun  # noqa: E402
from benchmarks.common import finish, say  # noqa: E402
from tests import unix_users  # noqa: E402

LAB = ROOT / "labs" / "01-vm-and-container.ipynb"
MiB = 1 << 20
#: The server the estimate is for, and what its host keeps for itself.
SERVER = {"cores": 64, "ram_bytes": 256 << 30, "host_reserve_bytes": 16 << 30}


def run_class(count: int, progress=say) -> dict:
    names = [f"vmkit-bench{n}" for n in range(count)]
    notebook = json.loads(LAB.read_text())
    with tempfile.TemporaryDirectory(prefix="vmkit-bench-hub-") as state, ExitStack() as stack:
        users = {name: stack.enter_context(unix_users.student(name)) for name in names}
        hub = classrun.Hub(Path(state))
        stack.callback(hub.stop)
        hub.start()
        for name in names:
            stack.callback(hub.stop_server, name)
        progress(f"수업 허브: 학생 {count}명이 lab 01을 동시에 실행…")
        runs, sampler, wall = classrun.run_class(
            hub, {name: user.uid for name, user in users.items()}, notebook)
    students = []
    for run in runs:
        peak = sampler.peaks[run.student]
        students.append({
            "student": run.student, "seconds": round(run.seconds, 1), "errors": len(run.errors),
            "peak_pss_bytes": peak.pss_bytes, "peak_parts_bytes": peak.parts,
            "peak_cgroup_bytes": peak.cgroup_bytes,
            "cpu_s": round(sampler.cpu_s[run.student], 1),
            "vm_cpu_s": round(sampler.vm_cpu_s(run.student), 1)})
    return {"students": count, "wall_s": round(wall, 1), "per_student": students}


def estimate(one: dict, many: dict) -> dict:
    """Students a 64-core, 256 GiB KVM server holds, from the measured figures (shown)."""
    peak = median_high([s["peak_pss_bytes"] for s in many["per_student"]])
    cpu = median_high([s["cpu_s"] for s in many["per_student"]])
    vm_cpu = median_high([s["vm_cpu_s"] for s in many["per_student"]])
    wall_one = one["wall_s"]
    by_memory = (SERVER["ram_bytes"] - SERVER["host_reserve_bytes"]) // peak
    # CPU: all students start the lab together and should finish within the time one student
    # takes alone (here, under TCG). Under KVM the guest's code runs on the CPU directly, so
    # QEMU's share of the measured time (TCG translating the guest) mostly goes away: the
    # bound is shown with it (as measured) and without it.
    by_cpu_tcg = int(SERVER["cores"] * wall_one // cpu)
    by_cpu_kvm = int(SERVER["cores"] * wall_one // max(cpu - vm_cpu, 1e-9))
    return {
        "server": SERVER, "peak_pss_bytes": peak, "cpu_s": cpu, "vm_cpu_s": vm_cpu,
        "wall_one_s": wall_one, "by_memory": int(by_memory), "by_cpu_tcg": by_cpu_tcg,
        "by_cpu_kvm": by_cpu_kvm, "students": int(min(by_memory, by_cpu_kvm)),
        "arithmetic": [
            f"메모리: (256 GiB − 16 GiB) / 학생당 최대 PSS {peak / MiB:.0f} MiB = {by_memory}명",
            f"CPU(TCG 그대로): 64코어 × {wall_one:.0f} s / 학생당 CPU {cpu:.0f} s = {by_cpu_tcg}명",
            f"CPU(KVM, QEMU 번역 몫 {vm_cpu:.0f} s 제외): 64 × {wall_one:.0f} / "
            f"{max(cpu - vm_cpu, 0):.0f} = {by_cpu_kvm}명",
        ],
    }


def run(sizes: tuple[int, ...] = (1, 3), progress=say) -> dict:
    classes = [run_class(count, progress) for count in sizes]
    result = {"lab": LAB.name, "classes": classes}
    if len(classes) > 1:
        result["estimate"] = estimate(classes[0], classes[-1])
    return result


def rows(result: dict) -> list[tuple[str, str, str]]:
    out = []
    for entry in result["classes"]:
        each = entry["per_student"]
        out.append((f"수업 허브, lab 01 학생 {entry['students']}명 동시", f"{entry['wall_s']:.1f} s",
                    f"학생당 최대 PSS {median_high([s['peak_pss_bytes'] for s in each]) / MiB:.0f} MiB, "
                    f"CPU {median_high([s['cpu_s'] for s in each]):.0f} s "
                    f"(QEMU {median_high([s['vm_cpu_s'] for s in each]):.0f} s), "
                    f"오류 {sum(s['errors'] for s in each)}"))
    if result.get("estimate"):
        guess = result["estimate"]
        out.append(("  64코어·256 GiB KVM 서버 추정", f"{guess['students']}명",
                    " · ".join(guess["arithmetic"])))
    return out


def table(result: dict) -> str:
    return "\n".join(f"{name}: {value}   {note}" for name, value, note in rows(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="수업 허브 벤치마크 (root로 실행)")
    parser.add_argument("--students", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--json", metavar="OUT", default="bench-class.json")
    args = parser.parse_args(argv)
    return finish(lambda: run(tuple(args.students)), table, args.json)


if __name__ == "__main__":
    sys.exit(main())
