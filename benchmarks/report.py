"""The benchmark report (`make bench`): every speed and memory figure in one table.

Runs, in one go on this host:
- vmkit VM boot vs three plain `qemu-system-x86_64` baselines, typical, tuned q35 and
  expert (bench_vm, baselines), with vmkit's phases, the kernel's slowest initcalls, the QMP
  round trip, QEMU's RSS against guest RAM, and snapshot save/restore;
- vmkit container start vs `docker run --rm` (bench_container);
- density: N concurrent 128 MiB VMs and M concurrent 64 MiB containers;
- one VM's memory: 50 boots per TCG translation-buffer size (the success rate), an idle VM's
  PSS from smaps by kind, per-VM PSS with 8 and 16 at once (vm_memory);
- with `--soak N` (off by default): N start/stop cycles of each kind, nothing piling up (soak);
- as root, a class on the hub: 1 and 3 students running lab 01 at once, memory and CPU per
  student, and what a 64-core KVM server would hold (bench_class).
Prints one Korean table of medians and ratios and writes everything to a JSON file.

    python benchmarks/report.py --trials 10 --json bench-results.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_class, bench_container, bench_grading, bench_vm, soak, vm_memory  # noqa: E402
from benchmarks.common import finish, say  # noqa: E402
from vmkit.experiments import compare  # noqa: E402
from vmkit.units import pad  # noqa: E402

MiB = 1 << 20
#: Published anchors the README puts beside these figures (all with hardware virtualization).
ANCHORS = {
    "firecracker_boot_s": 0.125, "firecracker_vmm_overhead_mib": 5,
    "qemu_qboot_pvh_userspace_s": 0.134, "docker_lightvm_s": 0.150,
    "crun_s": 0.044, "runc_s": 0.075,
}


def run(trials: int, vms: int, containers: int, grading: int = 4, say=say, soak_cycles: int = 0,
        class_sizes: tuple[int, ...] = (1, 3), memory_boots: int = 50,
        memory_settings: tuple[str, ...] = ("plain", vm_memory.ADOPTED)) -> dict:
    started = time.monotonic()
    say("== VM: vmkit vs plain qemu-system-x86_64 ==")
    vm = bench_vm.run(trials, memory="256M", progress=say)
    say("== 컨테이너: vmkit vs docker run ==")
    container = bench_container.run(trials, memory="256M", progress=say)
    say(f"== 밀도(density): VM {vms}개 (128 MiB), 컨테이너 {containers}개 (64 MiB) ==")
    density = [compare.density("vm", vms, memory="128M", parallel=4).to_dict(),
               compare.density("container", containers, memory="64M", parallel=8).to_dict()]
    memory = None
    if memory_boots:
        say(f"== VM 하나의 메모리: {', '.join(map(vm_memory.label, memory_settings))}, "
            f"설정마다 {memory_boots}번 부팅, 그리고 KSM ==")
        memory = vm_memory.run(memory_boots, memory_settings, counts=(1, 8, 16), progress=say)
    grades = None
    if grading:
        say(f"== 채점(grading): lab 01 제출물 {grading}개, 워커 1개와 2개 ==")
        grades = bench_grading.run(grading, progress=say)
    soaked = None
    if soak_cycles:
        say(f"== 소크(soak): 종류마다 시작·중지 {soak_cycles}번 ==")
        soaked = soak.run(soak_cycles, progress=say)
    hub = None
    if class_sizes and os.geteuid() == 0:
        say(f"== 수업 허브(JupyterHub): 학생 {', '.join(map(str, class_sizes))}명이 lab 01을 동시에 ==")
        hub = bench_class.run(class_sizes, progress=say)
    elif class_sizes:
        say("수업 허브 벤치마크는 root로만 돌립니다 (학생 계정을 만들기 때문): 건너뜀")
    return {"vm": vm, "container": container, "density": density, "vm_memory": memory,
            "grading": grades, "soak": soaked,
            "class_hub": hub,
            "anchors": ANCHORS, "seconds": round(time.monotonic() - started, 1)}


def table(result: dict) -> str:
    """One Korean table of medians and ratios."""
    vm, ct = result["vm"], result["container"]
    rows = [
        ("VM 부팅→준비, vmkit", f"{vm['vmkit']['ready_median_s']:.3f} s", ""),
        *[(f"VM 부팅→준비, QEMU 기준선 {name}", f"{b['ready_median_s'] or 0:.3f} s",
           f"vmkit/{name} {b['ratio'] or 0:.2f}" + (f", 목표 ≤ {b['goal']} {'✔' if b['met'] else '✘'}"
                                                   if b["goal"] else "")
           + ("" if b["met"] in (True, None) else f" · 왜: {bench_vm.why(vm, name)}")
           + f" · $ {b['command']}")
          for name, b in vm["baselines"].items()],
        ("VM 단계(phase) 중앙값, vmkit", "", bench_vm.phases_text(vm)),
        ("커널 initcall (initcall_debug 1회)", f"{vm['initcalls']['total_s']:.2f} s",
         bench_vm.initcalls_text(vm)),
        ("VM 스냅샷 복원→준비", f"{vm['snapshot']['restore_ready_median_s']:.3f} s",
         f"스냅샷 {vm['snapshot']['bytes'] / MiB:.0f} MiB · " + bench_vm.restore_text(vm)),
        ("QMP query-status 왕복", f"{vm['qmp']['median_ms']:.2f} ms", "목표 ≤ 5 ms"),
        ("QEMU RSS / 게스트 RAM", f"{vm['memory']['qemu_rss_bytes'] / MiB:.0f} / "
         f"{vm['memory']['guest_ram_bytes'] / MiB:.0f} MiB", f"{vm['memory']['rss_over_guest_ram']:.2f}배"),
    ]
    vk, dr = ct["results"].get("vmkit", {}), ct["results"].get("docker run", {})
    if vk and dr:
        same = ct["results"].get("docker run (vmkit flags)", {})
        rows += [
            ("컨테이너 시작→준비, vmkit", f"{vk['median_s']:.3f} s", ""),
            ("컨테이너 시작→준비, docker run --rm", f"{dr['median_s']:.3f} s", ""),
            ("  비율 vmkit / docker run", f"{ct['ratio']:.2f}", "목표 ≤ 0.85"),
            ("컨테이너, docker run + vmkit 격리 옵션", f"{same.get('median_s', 0):.3f} s",
             f"비율 {ct.get('ratio_vs_same_flags') or 0:.2f}"),
        ]
    for d in result["density"]:
        rows.append((f"밀도 {d['kind']} ×{d['requested']} ({d['memory_bytes'] / MiB:.0f} MiB)",
                     f"{d['started']}개 성공, 실패 {len(d['failures'])}",
                     f"하나당 PSS {(d['per_instance_pss_bytes'] or 0) / MiB:.1f} MiB, "
                     f"전체 {d['total_pss_bytes'] / MiB:.0f} MiB, 마지막 준비 {d['last_ready_s'] or 0:.1f} s"))
    if result.get("vm_memory"):
        rows += vm_memory.rows(result["vm_memory"])
    if result.get("grading"):
        rows += bench_grading.rows(result["grading"])
    if result.get("soak"):
        rows += soak.rows(result["soak"])
    if result.get("class_hub"):
        rows += bench_class.rows(result["class_hub"])
    return "\n".join(f"{pad(name, 40)}{pad(value, 22, right=True)}   {note}" for name, value, note in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="vmkit 벤치마크 보고서")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--vms", type=int, default=16, help="밀도: 동시에 띄울 VM 수")
    parser.add_argument("--containers", type=int, default=200, help="밀도: 동시에 띄울 컨테이너 수")
    parser.add_argument("--grading", type=int, default=4, help="채점: lab 01 제출물 수 (0이면 건너뜀)")
    parser.add_argument("--soak", type=int, default=0, metavar="N",
                        help="소크(soak): 종류마다 시작·중지 N번 (기본 0: 건너뜀)")
    parser.add_argument("--memory-boots", type=int, default=50, metavar="N",
                        help="VM 메모리: 설정마다 부팅할 횟수 (0이면 건너뜀)")
    parser.add_argument("--memory-settings", nargs="+", default=["plain", vm_memory.ADOPTED],
                        metavar="SETTING", help="VM 메모리: plain, reporting, tb-size=N")
    parser.add_argument("--class-students", type=int, nargs="*", default=[1, 3], metavar="N",
                        help="수업 허브: 동시에 lab 01을 돌릴 학생 수들 (비우면 건너뜀, root 필요)")
    parser.add_argument("--json", metavar="OUT", default="bench-results.json")
    args = parser.parse_args(argv)
    return finish(lambda: run(args.trials, args.vms, args.containers, args.grading, say=say,
                              soak_cycles=args.soak, class_sizes=tuple(args.class_students),
                              memory_boots=args.memory_boots,
                              memory_settings=tuple(args.memory_settings)),
                  table, args.json)

if __name__ == "__main__":
    sys.exit(main())
