"""`vmkit compare` and `vmkit density`: VMs and containers measured side by side.

The experiments (VMs, containers, psutil) are imported by the handlers, not to build the parser.
"""

from __future__ import annotations

import sys

from . import check_output_file, emit_json, integer

#: `experiments.compare.KINDS`, spelled out so that building the parser needs no experiment
#: (a test checks the two agree).
KINDS = ("vm", "vm-restore", "container")


def cmd_compare(args) -> int:
    from ..container.limits import shown
    from ..experiments import compare as compare_mod
    from ..units import format_bytes, pad

    def progress(record: dict) -> None:
        if not args.json:
            print(f"  {compare_mod.KIND_LABELS[record['kind']]:<12} #{record['trial'] + 1}: "
                  f"준비 {record['ready_s']:.3f}초, 호스트 RSS {format_bytes(record['usage.rss_bytes'])}",
                  file=sys.stderr, flush=True)

    if args.plot:
        check_output_file(args.plot, "그림 파일(--plot)")
    if not args.json:
        print(f"비교: 종류마다 {args.trials}번, 메모리 {args.memory}, 번갈아 실행합니다…", file=sys.stderr)
    result = compare_mod.compare(trials=args.trials, memory=args.memory, cpus=args.cpus,
                                 kinds=args.kinds, on_result=progress, accel=args.accel)
    if args.plot:
        from ..experiments import plots

        plots.overview(result.records, args.plot)
    data = result.to_dict()
    if args.json:
        emit_json(data)
        return 0
    widths = (16, 12, 10, 10, 12, 18)
    header = ("종류", "준비 중앙값", "최소", "최대", "호스트 RSS", "안에서 쓸 메모리")
    print("\n" + "".join(pad(h, w, right=i > 0) for i, (h, w) in enumerate(zip(header, widths))))
    for kind in result.kinds:
        k = data[kind]
        usage = k.get("usage", {})
        inside = (usage.get("mem_limit_bytes") or usage.get("guest_mem_total_bytes") or {}).get("median")
        applied = (k.get("limits_enforced") or {}).get("memory")
        cells = (compare_mod.KIND_LABELS[kind], f"{k['ready_s']['median']:.3f}초",
                 f"{k['ready_s']['min']:.3f}초", f"{k['ready_s']['max']:.3f}초",
                 format_bytes(usage["rss_bytes"]["median"]),
                 shown(format_bytes(inside) if inside else "-", applied))
        print("".join(pad(c, w, right=i > 0) for i, (c, w) in enumerate(zip(cells, widths))))
    print("(안에서 쓸 메모리: VM은 게스트의 MemTotal, 컨테이너는 cgroup 메모리 한도)")
    print(f"환경(environment): {describe_environment(data['environment'])}")
    print(f"\n전체 {result.seconds:.1f}초" + (f", 그림: {args.plot}" if args.plot else ""))
    return 0


def describe_environment(env: dict) -> str:
    """One Korean line: mode, engine (rootless or not), cgroup version, accelerator."""
    from ..host.mode import LABELS

    parts = [LABELS[env["mode"]], f"cgroup v{env['cgroup_version']}"]
    if env.get("engine"):
        engine = env["engine"]
        parts.insert(1, f"{engine['label']} {engine['version']}"
                        + (" 루트리스(rootless)" if engine["rootless"] else ""))
    if env.get("accelerator"):
        parts.append(f"가속기(accelerator) {env['accelerator'].upper()} — {env['accel_reason']}")
    return ", ".join(parts)


def cmd_density(args) -> int:
    from ..experiments import compare as compare_mod
    from ..units import format_bytes

    def progress(done: int, total: int) -> None:
        if not args.json:
            print(f"\r  준비된 {args.kind}: {done}/{total}", end="", file=sys.stderr, flush=True)

    result = compare_mod.density(args.kind, args.count, memory=args.memory,
                                 parallel=args.parallel, on_progress=progress, accel=args.accel)
    if args.json:
        emit_json(result.to_dict())
    else:
        print(file=sys.stderr)
        print(f"{args.kind} {result.started}/{result.requested}개 동시 실행, 실패 {len(result.failures)}개")
        if result.limit:
            print(f"  한계(limit): {result.limit}")
        print(f"  마지막 준비까지 {result.last_ready_s or 0:.2f}초, 전체 PSS {format_bytes(result.total_pss_bytes)}"
              f", 하나당 PSS {format_bytes(result.per_instance_pss_bytes or 0)}")
        print(f"  환경(environment): {describe_environment(result.environment)}")
    return 0 if result.started == result.requested and not result.failures else 1


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="VM 콜드 부팅, VM 스냅샷 복원, 컨테이너를 번갈아 재고 비교합니다")
    p.add_argument("--trials", type=integer, default=3, help="종류마다 시행 횟수 (기본 3)")
    p.add_argument("--memory", default="128M", help="메모리 크기 (기본 128M)")
    p.add_argument("--cpus", default=1, help="CPU 개수 (기본 1)")
    p.add_argument("--accel", default="auto", help="VM 가속기(accelerator): auto, kvm, tcg")
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS), help="비교할 종류")
    p.add_argument("--plot", metavar="FILE", help="그래프를 PNG로 저장")
    p.add_argument("--json", action="store_true", help="JSON으로 출력")
    p.set_defaults(handler=cmd_compare)

    p = sub.add_parser("density", help="같은 종류를 한꺼번에 여러 개 띄워 메모리를 잽니다")
    p.add_argument("kind", choices=["vm", "container"])
    p.add_argument("count", type=integer)
    p.add_argument("--memory", default="128M", help="하나의 메모리 크기 (기본 128M)")
    p.add_argument("--parallel", type=integer, default=8, help="동시에 시작하는 개수 (기본 8)")
    p.add_argument("--accel", default="auto", help="VM 가속기(accelerator)")
    p.add_argument("--json", action="store_true", help="JSON으로 출력")
    p.set_defaults(handler=cmd_density)
