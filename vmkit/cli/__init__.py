"""The `vmkit` command: doctor, fetch, engine, and the workload commands.

Every subcommand takes `--json` for scripts; human output is Korean. Errors vmkit raises
on purpose (VmkitError) print as a Korean message and exit 2, never as a traceback.

Imports: everything below, as the top of the front ends (experiments, vm, container,
guest, host, the vocabulary, and the grading front end it runs); nothing imports it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import sys
from importlib import import_module
from pathlib import Path

from .. import __version__
from ..errors import VmkitError

#: Modules that add their own subcommands through `add_parser(subparsers)`.
SUBCOMMAND_MODULES = ("vm", "container", "compare", "grading")


#: argparse's own (English) error messages, in Korean: (pattern, template).
_PARSER_MESSAGES = [
    (r"argument (?P<name>.+?): (?P<rest>.*)", "인자(argument) {name}: {rest}"),
    (r"the following arguments are required: (?P<names>.*)", "필요한 인자(argument)가 빠졌습니다: {names}"),
    (r"one of the arguments (?P<names>.*) is required", "다음 인자(argument) 중 하나가 필요합니다: {names}"),
    (r"unrecognized arguments: (?P<words>.*)", "알 수 없는 인자(argument): {words}"),
    (r"invalid choice: (?P<value>.*) \(choose from (?P<choices>.*)\)",
     "고를 수 없는 값 {value}입니다 (고를 수 있는 값: {choices})"),
    (r"invalid (?P<type>\S+) value: (?P<value>.*)", "{value}는 올바른 {type} 값이 아닙니다"),
    (r"expected one argument", "값이 하나 필요합니다"),
    (r"expected at least one argument", "값이 하나 이상 필요합니다"),
    (r"expected at most one argument", "값은 하나까지만 줄 수 있습니다"),
    (r"expected (?P<count>\d+) arguments?", "값이 {count}개 필요합니다"),
    (r"not allowed with argument (?P<other>.*)", "{other}와 함께 쓸 수 없습니다"),
    (r"ignored explicit argument (?P<value>.*)", "값을 받지 않는데 {value}가 주어졌습니다"),
    (r"ambiguous option: (?P<option>\S+) could match (?P<matches>.*)",
     "옵션(option) {option}이(가) 여럿과 맞습니다: {matches}"),
]


def korean_parser_message(message: str) -> str:
    """argparse's error `message` in Korean (the argument names and values kept as they are)."""
    for pattern, template in _PARSER_MESSAGES:
        match = re.fullmatch(pattern, message, re.DOTALL)
        if match:
            parts = match.groupdict()
            if "rest" in parts:
                parts["rest"] = korean_parser_message(parts["rest"])
            return template.format(**parts)
    if re.search("[\uac00-\ud7a3]", message):  # already Korean (our own `type=` converters)
        return message
    return f"명령줄(command line)을 이해할 수 없습니다: {message}"


class _KoreanHelpFormatter(argparse.HelpFormatter):
    def add_usage(self, usage, actions, groups, prefix=None):
        super().add_usage(usage, actions, groups, "사용법(usage): " if prefix is None else prefix)


class KoreanArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors (and those of its subcommands' parsers) are Korean; exit 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _KoreanHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: 오류: {korean_parser_message(message)}\n")


def integer(text: str) -> int:
    """`type=` for whole numbers, refused in Korean (the range is checked by what gets it)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}는 정수(integer)가 아닙니다.") from None


def seconds(text: str) -> float:
    """`type=` for time limits: a finite number of seconds greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}는 초 단위의 숫자가 아닙니다. 예: 60") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"0보다 큰 유한한 초여야 합니다 (받은 값: {text!r}).")
    return value


def check_output_file(path: str, what: str) -> Path:
    """Refuse, before any work, an output file that could not be written (a Korean InvalidInput)."""
    from ..errors import InvalidInput

    target = Path(path)
    if target.is_dir():
        raise InvalidInput(f"{what} '{path}'은(는) 디렉터리(directory)입니다.", "파일 이름을 주세요.")
    parent = target.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InvalidInput(f"{what} '{path}'을(를) 만들 수 없습니다: '{parent}'은(는) 디렉터리(directory)가 아닙니다.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInput(f"{what} '{path}'을(를) 만들 수 없습니다: '{parent}'에 쓸 권한이 없습니다.")
    return target


def emit_json(data) -> None:
    """One JSON object on stdout (Korean kept readable)."""
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _mark(ok: bool | None) -> str:
    return {True: "✔", False: "✘", None: "·"}[ok]


def cmd_doctor(args) -> int:
    from ..experiments.readiness import doctor

    report = doctor(refresh=args.refresh)
    if args.json:
        emit_json(report)
    else:
        from ..host.mode import LABELS

        q, g, d = report["qemu"], report["guest"], report["engine"]
        print("vmkit doctor — 이 호스트(host)에서 할 수 있는 일\n")
        print(f" · 모드(mode): {LABELS[report['mode']]}")
        print(f" {_mark(q['usable'])} QEMU: {q['path'] or '-'} {q['version'] or ''}")
        for name, st in report["accelerators"].items():
            print(f" {_mark(st['usable'])} 가속기(accelerator) {name.upper()}: {st['reason']}")
        if not report["accelerators"]["kvm"]["usable"] and report["accelerators"]["tcg"]["usable"]:
            print("     → VM은 TCG(소프트웨어 에뮬레이션)로 실행합니다: 느리지만 어디서나 됩니다.")
        print(f" {_mark(d['usable'])} 컨테이너 엔진(container engine): {d['reason']}"
              + (f" [{d['endpoint']}]" if d["endpoint"] else ""))
        if d["usable"]:
            print(f"     종류(kind) {d['label']}, 버전(version) {d['version']} (API {d['api_version']}), "
                  f"{'루트리스(rootless)' if d['rootless'] else 'root로 실행'}, cgroup v{d['cgroup_version']}, "
                  f"컨테이너 한도(limits) {'적용됨' if d['limits_enforced'] else '적용되지 않음'}")
        print(f" {_mark(g['ready'])} 게스트(guest): {g['reason']}")
        if g["ready"]:
            print(f"     커널(kernel) {g['kernel_release']}, 이미지(image) {g['image']}"
                  f" ({'엔진에 있음' if g['image_present'] else '엔진에 아직 없음'})")
        if g["update"]:
            print(f"     → {g['update']['reason']}")
        print(f" · 메모리 병합(KSM): {report['ksm']['reason']}")
        print("\n" + ("준비 완료: VM(TCG)과 컨테이너를 모두 실행할 수 있습니다." if report["ok"]
                      else "준비되지 않은 항목이 있습니다: 위의 ✘ 표시를 보세요."))
    return 0 if report["ok"] else 1


def cmd_fetch(args) -> int:
    import time

    from ..container import engine
    from ..guest import arches, artifacts

    started = time.monotonic()
    names = [arches.lookup(args.arch).name] if args.arch else list(arches.ARCHES)
    # A set in the cache that no longer loads (truncated file, wrong manifest): rebuilt below.
    damaged = {name: why for name in names
               if (why := artifacts.status(arch=name).damaged) is not None}
    sets = {name: artifacts.fetch(progress=not args.json and not args.quiet, force=args.force, arch=name)
            for name in names}
    native = next((arts for arts in sets.values() if arts.arch == arches.lookup().name), None)
    image = None
    if native is not None and engine.find():
        client = engine.client()
        try:
            image = engine.ensure_image(client, native)
        finally:
            client.close()
    described = {name: {"version": arts.version, "root": str(arts.root),
                        "kernel_release": arts.kernel_release, "kernel_package": arts.kernel_package,
                        "busybox_version": arts.busybox_version, "modules": list(arts.modules),
                        "sizes": arts.sizes()} for name, arts in sets.items()}
    result = {**described[native.arch if native else names[0]], "image": image,
              "arches": described, "rebuilt": damaged, "seconds": round(time.monotonic() - started, 3)}
    if args.json:
        emit_json(result)
    elif not args.quiet:
        for name, arts in sets.items():
            if name in damaged:
                print(f"손상된(corrupted) 게스트 아티팩트(guest artifacts) {name} {arts.version}을(를) "
                      f"다시 만들었습니다 (이유: {damaged[name]}).")
            print(f"게스트 아티팩트(guest artifacts) {name} {arts.version}: {arts.root}")
            for part, size in arts.sizes().items():
                print(f"  {part:8s} {size / 2**20:7.1f} MiB")
        if native is not None:
            print(f"  이미지(image): {image or '도커 엔진이 없어 나중에 가져옵니다 (vmkit engine start)'}")
    return 0


def cmd_engine(args) -> int:
    from ..container import engine

    if args.action == "start":
        endpoint = engine.start(keep=True)
        data = {"endpoint": endpoint.url, "version": endpoint.version, "source": endpoint.source,
                "private_pid": engine.private_pid()}
        text = f"도커 엔진(Docker Engine) {endpoint.version}: {endpoint.url}"
    elif args.action == "stop":
        stopped = engine.stop()
        data = {"stopped": stopped}
        text = "vmkit 전용 엔진을 멈췄습니다." if stopped else "실행 중인 vmkit 전용 엔진이 없습니다."
    elif args.action == "status":
        data = engine.status()
        text = (f"사용 가능: {data['endpoint']} ({data['version']}, {data['source']})"
                if data["usable"] else "응답하는 도커 엔진(Docker Engine)이 없습니다.")
    else:  # exec
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            raise VmkitError("`vmkit engine exec -- 명령`처럼 실행할 명령(command)을 주세요.")
        return engine.run_with_engine(command)
    if args.json:
        emit_json(data)
    else:
        print(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = KoreanArgumentParser(
        prog="vmkit", description="하이퍼바이저(hypervisor)와 컨테이너(container)를 나란히 실행하고 비교합니다.")
    parser.add_argument("--version", action="version", version=f"vmkit {__version__}")
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="명령")

    p = sub.add_parser("doctor", help="이 호스트에서 할 수 있는 일을 점검합니다")
    p.add_argument("--json", action="store_true", help="JSON으로 출력")
    p.add_argument("--refresh", action="store_true", help="저장된 시험 부팅 결과를 무시하고 다시 잽니다")
    p.set_defaults(handler=cmd_doctor)

    p = sub.add_parser("fetch", help="게스트 아티팩트(커널, initramfs, 이미지)를 만듭니다")
    p.add_argument("--json", action="store_true", help="JSON으로 출력")
    p.add_argument("--force", action="store_true", help="있어도 다시 만듭니다")
    p.add_argument("--quiet", action="store_true", help="진행 막대와 요약을 숨깁니다")
    p.add_argument("--arch", default=None, help="이 아키텍처(architecture)만: x86_64, aarch64 (기본: 모두)")
    p.set_defaults(handler=cmd_fetch)

    p = sub.add_parser("engine", help="vmkit 전용 도커 엔진(Docker Engine)을 시작/중지합니다")
    actions = p.add_subparsers(dest="action", required=True, metavar="동작")
    for action, text in (("start", "응답하는 엔진이 없으면 vmkit 전용 엔진을 시작합니다 (stop 전까지 켜 둠)"),
                         ("stop", "vmkit 전용 엔진(만)을 멈춥니다"),
                         ("status", "vmkit가 쓸 엔진을 보여 줍니다")):
        a = actions.add_parser(action, help=text)
        a.add_argument("--json", action="store_true", help="JSON으로 출력")
        a.set_defaults(handler=cmd_engine)
    a = actions.add_parser("exec", help="엔진을 켠 채 명령을 실행합니다; exec가 켠 엔진은 마지막 exec가 끝나면 끕니다")
    a.add_argument("command", nargs=argparse.REMAINDER, help="실행할 명령 (-- 뒤에)")
    a.set_defaults(handler=cmd_engine, json=False)

    # Each module imports what its handlers run inside them, so this loads none of it.
    for name in SUBCOMMAND_MODULES:
        import_module(f".{name}", __package__).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # `--help` and bad arguments end here, having imported little
    from ..host import reaper

    reaper.raise_on_termination()  # SIGTERM/SIGHUP stop what this command started
    try:
        return args.handler(args)
    except VmkitError as exc:
        print(f"오류: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"중단했습니다 ({signal.Signals(signum).name}): 시작한 VM과 컨테이너는 정리했습니다.",
              file=sys.stderr)
        return 128 + signum
    except BrokenPipeError:  # `vmkit doctor | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
