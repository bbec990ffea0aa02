"""`vmkit boot`: boot one guest, show its start-up timeline and cost, shut it down.

Only `guest.arches` (plain data) is imported to build the parser; the VM itself (QMP,
asyncio, psutil) is imported by the handler, so `vmkit --help` and the other subcommands
do not pay for it.
"""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING

from ..guest import arches
from . import emit_json, seconds

if TYPE_CHECKING:
    from ..vm.vm import VM


def add_parser(subparsers) -> None:
    """Register `boot` on the `vmkit` command's subparsers."""
    p = subparsers.add_parser("boot", help="VM을 부팅해 단계별 시간과 자원 사용량을 보여 줍니다")
    p.add_argument("--memory", default="256M", help="게스트 메모리(memory) 크기, 예: 256M, 1G (기본 256M)")
    p.add_argument("--cpus", default="1", help="vCPU 개수 (기본 1)")
    p.add_argument("--accel", default="auto", help="가속기(accelerator): auto, kvm, tcg (기본 auto)")
    p.add_argument("--arch", default=arches.DEFAULT,
                   help=f"게스트 아키텍처(architecture): {', '.join(arches.ARCHES)} (기본 {arches.DEFAULT})")
    p.add_argument("--timeout", type=seconds, default=60.0, help="준비(ready)를 기다릴 최대 초 (기본 60)")
    p.add_argument("--json", action="store_true", help="JSON으로 출력")
    p.set_defaults(handler=cmd_boot)


def boot_report(vm: VM, timeout: float = 60.0, on_phase=None) -> dict:
    """Boot `vm`, look inside, measure, stop; everything `vmkit boot --json` prints."""
    from ..workload import guest_view

    try:
        trace = vm.start(timeout=timeout, on_phase=on_phase)
        kernel = vm.kernel_release()
        usage = vm.usage()
        vcpus = vm.vcpus()
    finally:
        vm.stop()
    guest = guest_view(trace, usage, kernel)
    return {"kind": "vm", "name": vm.name, "arch": vm.arch.name, "accel": trace.accel,
            "accel_reason": trace.accel_reason,
            "memory_bytes": vm.memory_bytes, "cpus": vm.cpus, "ready_s": trace.ready_s,
            "phases": trace.seconds(), "usage": usage.to_dict(), "guest": guest,
            "host": {"kernel": platform.release(), "machine": arches.host_arch()}, "vcpus": vcpus,
            "stop": vm.last_stop}


def cmd_boot(args) -> int:
    from ..units import format_bytes
    from ..vm.vm import PHASE_LABELS, VM

    vm = VM(memory=args.memory, cpus=args.cpus, accel=args.accel, arch=args.arch)  # bad input fails here
    if args.json:
        report = boot_report(vm, args.timeout)
        emit_json(report)
        return 0

    def show(name: str, seconds: float) -> None:
        print(f"  {seconds:7.3f} s  {name:10s} {PHASE_LABELS.get(name, '')}", flush=True)

    print(f"VM {vm.name} 부팅(boot): 아키텍처(architecture) {vm.arch.name},"
          f" 메모리(memory) {format_bytes(vm.memory_bytes)}, vCPU {vm.cpus}, 가속기(accelerator) {vm.accel_request}")
    print("  시각(QEMU 시작부터)  단계(phase)")
    report = boot_report(vm, args.timeout, on_phase=show)
    usage, guest = report["usage"], report["guest"]
    print(f"\n가속기(accelerator): {report['accel'].upper()} — {report['accel_reason']}")
    print(f"준비(ready)까지: {report['ready_s']:.3f} s, 게스트가 잰 가동 시간(uptime): {guest.get('uptime_s')} s")
    print(f"게스트 커널(guest kernel): {guest['kernel']} {guest.get('machine', '')}"
          f"  (호스트 커널(host kernel): {report['host']['kernel']} {report['host']['machine']})")
    if guest.get("mem_total_bytes"):
        share = guest["mem_total_bytes"] / report["memory_bytes"] * 100
        print(f"게스트 메모리(MemTotal): {format_bytes(guest['mem_total_bytes'])}"
              f" / 요청 {format_bytes(report['memory_bytes'])} ({share:.0f}%)")
    print(f"QEMU 프로세스(process): RSS {format_bytes(usage['rss_bytes'])}, PSS {format_bytes(usage['pss_bytes'])},"
          f" CPU user {usage['cpu_user_s']:.2f} s / sys {usage['cpu_system_s']:.2f} s")
    for cpu in report["vcpus"]:
        print(f"  vCPU {cpu['index']}: 호스트 스레드(host thread) {cpu['thread_id']} '{cpu['thread_name']}',"
              f" CPU {(cpu['user_s'] or 0) + (cpu['system_s'] or 0):.2f} s")
    stop = report["stop"]
    print(f"종료(shutdown): {stop.get('method')} ({stop.get('seconds', 0):.3f} s)")
    return 0
