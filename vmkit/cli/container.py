"""`vmkit run` (one container: timeline, cost, inside view) and `vmkit cleanup` (dead sessions' leftovers).

Building the parser imports nothing of the container side: the handlers import docker-py
and the rest when they run.
"""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING

from . import emit_json, integer, seconds

if TYPE_CHECKING:
    from ..container.container import Container


def add_parser(subparsers) -> None:
    """Register `run` and `cleanup` on the `vmkit` command's subparsers."""
    p = subparsers.add_parser("run", help="컨테이너를 시작해 단계별 시간과 자원 사용량을 보여 줍니다")
    p.add_argument("--memory", default="256M", help="메모리 한도(memory limit), 예: 64M, 1G (기본 256M)")
    p.add_argument("--cpus", default="1", help="CPU 할당량(quota), 소수도 됩니다. 예: 0.5 (기본 1)")
    p.add_argument("--pids-limit", type=integer, default=64, help="프로세스 수 한도(pids limit) (기본 64)")
    p.add_argument("--image", default=None, help="이미지(image) (기본: vmkit의 BusyBox 이미지)")
    p.add_argument("--timeout", type=seconds, default=60.0, help="준비(ready)를 기다릴 최대 초 (기본 60)")
    p.add_argument("--json", action="store_true", help="JSON으로 출력")
    p.set_defaults(handler=cmd_run)

    p = subparsers.add_parser("cleanup", help="끝난 세션(session)이 남긴 컨테이너와 VM 실행 디렉터리를 지웁니다")
    p.add_argument("--dry-run", action="store_true", help="지우지 않고 무엇을 지울지만 보여 줍니다")
    p.add_argument("--json", action="store_true", help="JSON으로 출력")
    p.set_defaults(handler=cmd_cleanup)


def run_report(container: Container, timeout: float = 60.0, on_phase=None) -> dict:
    """Start `container`, look inside, measure, stop and remove it; what `vmkit run --json` prints."""
    from ..workload import guest_view

    try:
        trace = container.start(timeout=timeout, on_phase=on_phase)
        usage = container.usage()
        kernel = container.kernel_release()
        security = container.security()
    finally:
        container.stop()
    guest = guest_view(trace, usage, kernel)
    return {"kind": "container", "name": container.name, "id": container.short_id,
            "image": container.image, "memory_bytes": container.memory_bytes, "cpus": container.cpus,
            "pids_limit": container.pids_limit, "ready_s": trace.ready_s, "phases": trace.seconds(),
            "usage": usage.to_dict(), "guest": guest, "host": {"kernel": platform.release()},
            "engine": container.engine.to_dict(), "limits_enforced": container.limits_enforced,
            "security": security, "warnings": container.warnings, "stop": container.last_stop}


def cmd_run(args) -> int:
    from ..container.container import PHASE_LABELS, Container
    from ..container.limits import summary
    from ..units import format_bytes

    container = Container(memory=args.memory, cpus=args.cpus, image=args.image,
                          pids_limit=args.pids_limit)  # bad input fails here
    if args.json:
        emit_json(run_report(container, args.timeout))
        return 0

    def show(name: str, seconds: float) -> None:
        print(f"  {seconds:7.3f} s  {name:12s} {PHASE_LABELS.get(name, '')}", flush=True)

    print(f"컨테이너(container) {container.name}: 요청한 한도(requested limits) 메모리 "
          f"{format_bytes(container.memory_bytes)}, CPU {container.cpus:g}, 프로세스(pids) {container.pids_limit}")
    print("  시각(요청부터)     단계(phase)")
    report = run_report(container, args.timeout, on_phase=show)
    usage, guest = report["usage"], report["guest"]
    same = "같음" if guest["kernel"] == report["host"]["kernel"] else "다름"
    print(f"\n준비(ready)까지: {report['ready_s']:.3f} s  (이미지 {report['image']}, "
          f"엔진 {container.engine.label} {report['engine']['version']})")
    applied = report["limits_enforced"]
    print(f"적용된 한도(limits applied): {summary(applied, container.engine)}")
    print(f"컨테이너 안의 커널(uname -r): {guest['kernel']}  — 호스트 커널(host kernel) "
          f"{report['host']['kernel']}과 {same}: 컨테이너는 호스트의 커널을 함께 씁니다.")
    if guest.get("mem_limit_bytes"):
        print(f"cgroup 메모리 한도(memory limit, 안에서 읽음): {format_bytes(guest['mem_limit_bytes'])};"
              f" /proc/meminfo의 MemTotal은 {format_bytes(guest.get('mem_total_bytes') or 0)}"
              " (호스트 전체 — 한도는 cgroup이 정합니다)")
    how = "docker stats 방식" if applied["memory"] else "프로세스 RSS의 합: cgroup이 없음"
    print(f"메모리 사용({how}): {format_bytes(usage['mem_bytes'] or 0)};"
          f" 프로세스 {usage['processes']}개 RSS {format_bytes(usage['rss_bytes'])},"
          f" PSS {format_bytes(usage['pss_bytes'])};"
          f" CPU user {usage['cpu_user_s']:.2f} s / sys {usage['cpu_system_s']:.2f} s")
    print(f"호스트 쪽 {container.engine.spec.shims[0]}: RSS {format_bytes(usage['shim_rss_bytes'])}"
          " (컨테이너 cgroup 밖의 비용)")
    stop = report["stop"]
    if stop.get("method") in ("failed", "interrupted"):
        print(f"종료(stop): 컨테이너를 삭제(remove)하지 못했습니다 — {stop.get('error', stop['method'])};"
              " 다음 시작이나 `vmkit cleanup`이 다시 지웁니다.")
    else:
        print(f"종료(stop): {stop.get('method')} ({stop.get('seconds', 0):.3f} s), 컨테이너 삭제(remove)")
    return 0


def cmd_cleanup(args) -> int:
    from ..container import engine
    from ..host import cleanup

    report: dict = {"containers": [], "engine": None, "vm_runtime_dirs": []}
    endpoint = engine.find()
    if endpoint is not None:
        report["engine"] = endpoint.url
        client = engine.client()
        try:
            report["containers"] = cleanup.remove_leftovers(client, dry_run=args.dry_run)
            report["kept"] = [{"id": info["Id"][:12], "name": (info.get("Names") or [""])[0].lstrip("/"),
                               "reason": cleanup.owner_state(info.get("Labels") or {})[1]}
                              for info in cleanup.vmkit_containers(client)
                              if info["Id"] not in {c["id"] for c in report["containers"]}]
        finally:
            client.close()
    if not args.dry_run:
        try:
            from ..vm.rundir import cleanup_stale

            report["vm_runtime_dirs"] = cleanup_stale()
        except Exception as exc:  # the VM side is optional here
            report["vm_error"] = str(exc)
    if args.json:
        emit_json(report)
        return 0
    verb = "지울 것" if args.dry_run else "지움"
    if endpoint is None:
        print("응답하는 도커 엔진(Docker Engine)이 없어 컨테이너는 건너뜁니다.")
    for item in report["containers"]:
        print(f" {verb}: 컨테이너 {item['name']} ({item['id'][:12]}, {item['state']}) — {item['reason']}")
    for item in report.get("kept", []):
        print(f" 남김: 컨테이너 {item['name']} ({item['id']}) — {item['reason']}")
    for name in report["vm_runtime_dirs"]:
        print(f" 지움: VM 실행 디렉터리(runtime dir) {name}")
    if not report["containers"] and not report["vm_runtime_dirs"]:
        print("남은 것(leftover)이 없습니다.")
    return 0
