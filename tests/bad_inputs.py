"""The bad-input catalogue: every public parameter and `vmkit` flag, the bad values tried,
and the Korean message each gets — with nothing started.

One `Case` per row. `tests/test_bad_inputs.py` runs every row; `docs/bad-inputs.md` is this
module's table, regenerated with

    .venv/bin/python tests/bad_inputs.py > docs/bad-inputs.md

and a test checks that the committed file equals this module's output.

A row is either an API call (`call`; for a parameter checked only at start time it calls
`start()` too) that must raise `error`, a `VmkitError` subclass, or a `vmkit` command line
(`argv`) that must exit with status 2 and print the message on stderr. A row may set or
unset environment variables (`env`): class mode's refusals (`VMKIT_MODE=class`). `expect` is a part of
the Korean message that does not depend on the host (its memory, CPU count and paths are
left out). Nothing here is imported or called until a row runs.
"""

from __future__ import annotations

import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from vmkit.errors import EngineError, InvalidInput, VmkitError, WorkloadError

ROOT = Path(__file__).resolve().parent.parent
#: A file that exists and is not a vmkit snapshot (relative to the repository).
NOT_A_SNAPSHOT = "pyproject.toml"
#: A path that does not exist.
MISSING = "/nonexistent/vmkit-bad-input"


@dataclass(frozen=True)
class Case:
    target: str  # "VM", "VM.start", "compare", "ComparePanel", "vmkit boot", ...
    parameter: str  # "memory", "--memory", ...
    bad: str  # the bad value (or the whole command line) as the table shows it
    expect: str  # a part of the Korean message
    error: type[VmkitError] | None = None  # API rows; None for command lines (exit status 2)
    call: Callable[[], Any] | None = None
    argv: tuple[str, ...] | None = None
    env: tuple[tuple[str, str | None], ...] = ()  # (name, value); None: unset

    @property
    def id(self) -> str:
        if self.argv is not None:
            return self.bad  # the command line as typed, environment included
        return f"{self.target}({self.parameter}={self.bad})"


CASES: list[Case] = []


# ---------------------------------------------------------------- how rows are made

def _vmkit(name: str):
    """`vmkit.<name>` (or `vmkit.widgets.<name>`), imported when the row runs."""
    if name.endswith("Panel"):
        import vmkit.widgets

        return getattr(vmkit.widgets, name)
    import vmkit

    return getattr(vmkit, name)


def api(target: str, parameter: str, value: Any, expect: str, *, error=InvalidInput,
        shown: str | None = None, **fixed) -> None:
    """`target(parameter=value, **fixed)` must raise `error` with `expect` in its message."""
    kwargs = {**fixed, parameter: value}
    shown = shown or repr(value)
    if fixed:
        shown += " (" + ", ".join(f"{k}={v!r}" for k, v in fixed.items()) + ")"
    CASES.append(Case(target, parameter, shown, expect, error,
                      lambda: _vmkit(target)(**kwargs)))


def start(target: str, parameter: str, value: Any, expect: str, *, error=InvalidInput,
          shown: str | None = None) -> None:
    """`VM().start(parameter=value)` / `Container().start(...)`: refused before anything starts."""
    kind = target.split(".")[0]
    CASES.append(Case(target, parameter, shown or repr(value), expect, error,
                      lambda: _vmkit(kind)().start(**{parameter: value})))


def method(target: str, parameter: str, shown: str, expect: str, call: Callable[[], Any], *,
           error=InvalidInput, env: tuple[tuple[str, str | None], ...] = ()) -> None:
    """Any other call (classmethods, methods of a VM that never started), in `env` if given."""
    CASES.append(Case(target, parameter, shown, expect, error, call, env=env))


def _environment(words: list[str]) -> tuple[tuple[tuple[str, str | None], ...], list[str]]:
    """A shell command's leading `env -u NAME` and `NAME=value` words, and the rest."""
    env = []
    if words[:1] == ["env"]:
        words = words[1:]
    while words and (words[0] == "-u" or "=" in words[0]):
        if words[0] == "-u":
            env.append((words[1], None))
            words = words[2:]
        else:
            name, _, value = words.pop(0).partition("=")
            env.append((name, value))
    return tuple(env), words


def cli(command: str, expect: str, parameter: str | None = None, target: str | None = None) -> None:
    """The command line `command` (it starts with `vmkit`, or sets the environment first with
    `NAME=value` or `env -u NAME ...`) must exit 2 with `expect` on stderr.

    target: the (sub)command whose flag it is (default: `vmkit` and the first word after it).
    """
    env, words = _environment(shlex.split(command))
    argv = tuple(words)
    if target is None:
        target = " ".join(["vmkit", *[w for w in argv[1:2] if not w.startswith("-")]])
    if parameter is None:
        flags = [w.split("=")[0] for w in argv[1:] if w.startswith("--") and len(w) > 2]
        parameter = flags[-1] if flags else "(arguments)"
    CASES.append(Case(target, parameter, command, expect, argv=argv, env=env))


# ---------------------------------------------------------------- vmkit.VM
for value, expect in [
    ("abc", "메모리(memory) 크기 'abc'를 이해할 수 없습니다"),
    ("", "메모리(memory) 크기 ''를 이해할 수 없습니다"),
    ("0", "메모리(memory) 크기는 0보다 커야 합니다"),
    ("-1M", "메모리(memory) 크기 '-1M'를 이해할 수 없습니다"),
    ("1.5X", "메모리(memory) 크기 '1.5X'를 이해할 수 없습니다"),
    (-1, "메모리(memory) 크기는 0보다 커야 합니다"),
    (None, "메모리(memory) 크기 None를 이해할 수 없습니다"),
    (True, "메모리(memory) 크기로 True는 쓸 수 없습니다"),
    (1.5, "메모리(memory) 1 MiB는 너무 작습니다: 최소 96 MiB가 필요합니다"),
    ("64M", "메모리(memory) 64 MiB는 너무 작습니다: 최소 96 MiB가 필요합니다"),
    (math.nan, "메모리(memory) 크기 nan는 유한한 수가 아닙니다"),
    (math.inf, "메모리(memory) 크기 inf는 유한한 수가 아닙니다"),
]:
    api("VM", "memory", value, expect)
api("VM", "memory", 10**15, "메모리(memory) 931322.6 GiB는 이 호스트(host)의 전체 메모리", shown="10**15")
for value, expect in [
    (0, "CPU 개수는 1 이상이어야 합니다"),
    (-1, "CPU 개수는 1 이상이어야 합니다"),
    ("two", "CPU 개수 'two'는 정수가 아닙니다"),
    (True, "CPU 개수 True는 정수가 아닙니다"),
    (1.5, "CPU 개수 1.5는 정수가 아닙니다"),
    (None, "CPU 개수 None는 정수가 아닙니다"),
    (math.inf, "CPU 개수 inf는 정수가 아닙니다"),
]:
    api("VM", "cpus", value, expect)
api("VM", "cpus", 10**6, "CPU 개수 1000000는 이 호스트(host)의 CPU 수", shown="10**6")
for value in ("xen", "", None, 1):
    api("VM", "accel", value, f"가속기(accelerator) {value!r}는 알 수 없습니다")
for value, shown in (("my vm", None), ("", None), ("a" * 40, "'a' * 40"), ("-vm", None), (42, None)):
    api("VM", "name", value, f"VM 이름(name) {value!r}은(는) 쓸 수 없습니다", shown=shown)
for value in ("sparc", "", 64):
    api("VM", "arch", value, f"아키텍처(architecture) {value!r}는 vmkit이 부팅할 수 없습니다")
api("VM", "kernel_args", "quiet\ninit=/bin/sh", "커널 인자(kernel_args)에는 줄바꿈을 넣을 수 없습니다")
api("VM", "kernel_args", None, "커널 인자(kernel_args)는 문자열(str)이어야 합니다")
api("VM", "kernel_args", ["quiet"], "커널 인자(kernel_args)는 문자열(str)이어야 합니다")
api("VM", "qemu_args", "-smp 2", "QEMU 인자(qemu_args)은(는) 문자열 하나가 아니라 목록(list)이어야 합니다")
api("VM", "qemu_args", None, "QEMU 인자(qemu_args)은(는) 문자열(str)의 목록(list)이어야 합니다")
api("VM", "qemu_args", ["-m", None], "QEMU 인자(qemu_args)의 항목 None은(는) 문자열(str)이 아닙니다")
api("VM", "free_page_reporting", "yes", "빈 페이지 보고(free_page_reporting)는 True나 False여야 합니다")
api("VM", "free_page_reporting", 1, "빈 페이지 보고(free_page_reporting)는 True나 False여야 합니다")
api("VM", "artifacts", "x86_64", "아티팩트(artifacts)에는 vmkit.guest.artifacts.Artifacts를 주어야 합니다")

for target in ("VM.start", "Container.start"):
    for value in (0, -1, math.nan, math.inf):
        start(target, "timeout", value, "제한 시간(timeout)은(는) 0보다 큰 유한한 초여야 합니다")
    for value in ("x", None, True):
        start(target, "timeout", value, f"제한 시간(timeout) {value!r}는 초 단위의 숫자가 아닙니다")
    start(target, "on_phase", "print", "on_phase에는 함수(callable)를 주어야 합니다")

method("VM.from_snapshot", "path", repr(MISSING), "스냅샷 파일(snapshot file)",
       lambda: _vmkit("VM").from_snapshot(MISSING))
method("VM.from_snapshot", "path", repr(NOT_A_SNAPSHOT), "은(는) vmkit 스냅샷(snapshot) 파일이 아닙니다",
       lambda: _vmkit("VM").from_snapshot(ROOT / NOT_A_SNAPSHOT))
method("VM.restore", "path", repr(MISSING), "이(가) 없습니다",
       lambda: _vmkit("VM").restore(MISSING))
method("VM.balloon", "target", "'abc'", "풍선(balloon) 목표 메모리 크기 'abc'를 이해할 수 없습니다",
       lambda: _vmkit("VM")().balloon("abc"))
method("VM.balloon", "target", "'32M'", "풍선(balloon) 목표 메모리 32 MiB는 너무 작습니다",
       lambda: _vmkit("VM")().balloon("32M"))
method("VM.balloon", "target", "'512M' (memory='256M')", "이 VM의 메모리 256 MiB보다 클 수 없습니다",
       lambda: _vmkit("VM")(memory="256M").balloon("512M"))
method("VM.guest", "(VM not started)", "'uname -r'", "이(가) 실행 중이 아닙니다",
       lambda: _vmkit("VM")().guest("uname -r"), error=WorkloadError)
method("VM.snapshot", "(VM not started)", repr(MISSING), "이(가) 실행 중이 아닙니다",
       lambda: _vmkit("VM")().snapshot(MISSING), error=WorkloadError)

# ---------------------------------------------------------------- vmkit.Container
for value, expect in [
    ("abc", "메모리 한도(memory limit) 크기 'abc'를 이해할 수 없습니다"),
    ("0", "메모리 한도(memory limit) 크기는 0보다 커야 합니다"),
    ("1M", "메모리 한도(memory limit) 1 MiB는 너무 작습니다: 최소 6 MiB가 필요합니다"),
    (None, "메모리 한도(memory limit) 크기 None를 이해할 수 없습니다"),
    (math.nan, "메모리 한도(memory limit) 크기 nan는 유한한 수가 아닙니다"),
]:
    api("Container", "memory", value, expect)
api("Container", "memory", 10**15, "메모리 한도(memory limit) 931322.6 GiB는 이 호스트(host)의 전체 메모리",
    shown="10**15")
for value, expect in [
    (0, "CPU 할당량(cpus)은 0.01 이상이어야 합니다"),
    (-1, "CPU 할당량(cpus)은 0.01 이상이어야 합니다"),
    (math.nan, "CPU 할당량(cpus)은 0.01 이상이어야 합니다"),
    ("two", "CPU 개수 'two'는 숫자가 아닙니다"),
    (True, "CPU 개수 True는 숫자가 아닙니다"),
]:
    api("Container", "cpus", value, expect)
api("Container", "cpus", 10**6, "CPU 할당량(cpus) 1e+06는 이 호스트(host)의 CPU 수", shown="10**6")
for value in ("my image", "", "BusyBox", "vmkit/busybox:", 42):
    api("Container", "image", value, f"이미지(image) 이름 {value!r}를 쓸 수 없습니다")
method("Container.start", "image", "'vmkit/no-such-image:1'",
       "이미지(image) 'vmkit/no-such-image:1'가 도커 엔진(Docker Engine)에 없습니다",
       lambda: _vmkit("Container")(image="vmkit/no-such-image:1").start())
for value in ("my box", "-box", 42):
    api("Container", "name", value, f"컨테이너 이름(name) {value!r}는 쓸 수 없습니다")
for value, expect in [
    (0, "프로세스 수 한도(pids_limit)는 4 이상이어야 합니다"),
    ("many", "프로세스 수 한도(pids_limit) 'many'는 정수가 아닙니다"),
    (2.5, "프로세스 수 한도(pids_limit) 2.5는 정수가 아닙니다"),
    (math.inf, "프로세스 수 한도(pids_limit) inf는 정수가 아닙니다"),
]:
    api("Container", "pids_limit", value, expect)
api("Container", "read_only", "no", "읽기 전용(read_only)은 True나 False여야 합니다")
api("Container", "command", "echo hi", "명령(command)은(는) 문자열 하나가 아니라 목록(list)이어야 합니다")
api("Container", "command", ["sleep", 5], "명령(command)의 항목 5은(는) 문자열(str)이 아닙니다")
for value, expect in [
    ("x", "중지 대기 시간(stop_timeout) 'x'는 초 단위의 숫자가 아닙니다"),
    (-1, "중지 대기 시간(stop_timeout)은(는) 0 이상의 유한한 초여야 합니다"),
    (math.nan, "중지 대기 시간(stop_timeout)은(는) 0 이상의 유한한 초여야 합니다"),
]:
    api("Container", "stop_timeout", value, expect)
api("Container", "artifacts", "x86_64", "아티팩트(artifacts)에는 vmkit.guest.artifacts.Artifacts를 주어야 합니다")
method("Container.guest", "(container not started)", "'uname -r'", "실행 중이 아닙니다",
       lambda: _vmkit("Container")().guest("uname -r"), error=WorkloadError)

# ---------------------------------------------------------------- vmkit.compare
for value in (0, -3, "3", 1.5, True, None):
    api("compare", "trials", value, f"시행 횟수(trials)는 1 이상의 정수여야 합니다 (받은 값: {value!r})")
api("compare", "kinds", ("vm", "banana"), "비교할 종류(kind) ['banana']를 모릅니다")
api("compare", "kinds", (), "비교할 종류(kind) (없음)를 모릅니다")
api("compare", "kinds", "vm", "종류(kinds)는 문자열 하나가 아니라 목록(list)이어야 합니다")
api("compare", "kinds", None, "종류(kinds)는 목록(list)이어야 합니다")
api("compare", "memory", "abc", "메모리(memory) 크기 'abc'를 이해할 수 없습니다")
api("compare", "memory", "64M", "메모리(memory) 64 MiB는 너무 작습니다: 최소 96 MiB가 필요합니다")
api("compare", "memory", "4M", "메모리(memory) 4 MiB는 너무 작습니다: 최소 6 MiB가 필요합니다",
    kinds=("container",))
api("compare", "cpus", "two", "CPU 개수 'two'는 정수가 아닙니다")
api("compare", "cpus", 0, "CPU 개수는 1 이상이어야 합니다")
api("compare", "accel", "xen", "가속기(accelerator) 'xen'는 알 수 없습니다",
    kinds=("container", "vm"))
for value in (0, -1):
    api("compare", "timeout", value, "제한 시간(timeout)은(는) 0보다 큰 유한한 초여야 합니다")
api("compare", "timeout", "x", "제한 시간(timeout) 'x'는 초 단위의 숫자가 아닙니다")
api("compare", "image", "my image", "이미지(image) 이름 'my image'를 쓸 수 없습니다")
api("compare", "on_result", "print", "on_result에는 함수(callable)를 주어야 합니다")
api("compare", "stop", True, "stop에는 threading.Event를 주어야 합니다")

# ---------------------------------------------------------------- vmkit.density
api("density", "kind", "banana", "비교할 종류(kind) ['banana']를 모릅니다", count=2)
api("density", "kind", "vm-restore", "밀도(density) 측정은 'vm'과 'container'만 지원합니다", count=2)
api("density", "kind", None, "비교할 종류(kind) [None]를 모릅니다", count=2)
for value in (0, -1, "3", 1.5, True):
    api("density", "count", value, f"개수(count)는 1 이상의 정수여야 합니다 (받은 값: {value!r})",
        kind="vm")
api("density", "memory", "abc", "메모리(memory) 크기 'abc'를 이해할 수 없습니다", kind="vm", count=2)
api("density", "memory", "32M", "메모리(memory) 32 MiB는 너무 작습니다: 최소 96 MiB가 필요합니다",
    kind="vm", count=2)
api("density", "cpus", "two", "CPU 개수 'two'는 정수가 아닙니다", kind="container", count=2)
for value in (0, "x", True):
    api("density", "parallel", value, f"동시 시작 수(parallel)는 1 이상의 정수여야 합니다 (받은 값: {value!r})",
        kind="container", count=2)
api("density", "timeout", 0, "제한 시간(timeout)은(는) 0보다 큰 유한한 초여야 합니다", kind="container", count=2)
api("density", "timeout", "x", "제한 시간(timeout) 'x'는 초 단위의 숫자가 아닙니다", kind="container", count=2)
api("density", "on_progress", 42, "on_progress에는 함수(callable)를 주어야 합니다", kind="container", count=2)
api("density", "accel", "xen", "가속기(accelerator) 'xen'는 알 수 없습니다", kind="vm", count=2)

# ---------------------------------------------------------------- vmkit.widgets
api("WorkloadPanel", "kind", "banana", "종류(kind) 'banana'는 고를 수 없습니다")
api("WorkloadPanel", "kind", "vm-restore", "종류(kind) 'vm-restore'는 고를 수 없습니다")
api("WorkloadPanel", "memory", "1G", "메모리(memory) '1G'는 고를 수 없습니다")
api("WorkloadPanel", "memory", "abc", "메모리(memory) 'abc'는 고를 수 없습니다")
for value in (0, 11, "3", True):
    api("ComparePanel", "trials", value, f"시행 횟수(trials)는 1~10 사이의 정수여야 합니다 (받은 값: {value!r})")
api("ComparePanel", "memory", "64M", "메모리(memory) '64M'는 고를 수 없습니다")
api("EmulationPanel", "task", "banana", "작업(task) 'banana'은(는) 없습니다")
api("EmulationPanel", "size", -5, "작업 크기(size) -5는", task="loop")
api("EmulationPanel", "size", "big", "작업 크기(size) 'big'는 정수가 아닙니다", task="loop")
for value in (0, 9, 2.5):
    api("EmulationPanel", "trials", value, f"시행 횟수(trials)는 1~5 사이의 정수여야 합니다 (받은 값: {value!r})")
for value in (8, 1000, "64M", None):
    api("LimitsPanel", "memory", value, f"메모리 한도(memory, MiB)는 16~256 사이의 정수여야 합니다 (받은 값: {value!r})")
for value in (0, 2, "half", math.nan):
    api("LimitsPanel", "cpus", value, f"CPU 할당량(cpus)은 0.1~1.0 사이의 수여야 합니다 (받은 값: {value!r})")
api("PoolPanel", "memory", "128M", "메모리(memory) '128M'는 고를 수 없습니다")
api("PoolPanel", "memory", None, "메모리(memory) None는 고를 수 없습니다")
api("ArchPanel", "arch", "sparc", "아키텍처(architecture) 'sparc'는 vmkit이 부팅할 수 없습니다")
api("ArchPanel", "memory", "1G", "메모리(memory) '1G'는 고를 수 없습니다")
for panel, value in (("WorkloadPanel", []), ("ComparePanel", 3), ("EmulationPanel", None),
                     ("LimitsPanel", ("lab", 4)), ("PoolPanel", b"lab"), ("ArchPanel", 1.5)):
    api(panel, "key", value, "패널 키(key)는 문자열(str)이어야 합니다")

# ---------------------------------------------------------------- the vmkit command
cli("vmkit", "필요한 인자(argument)가 빠졌습니다: 명령", parameter="(subcommand)")
cli("vmkit banana", "인자(argument) 명령: 고를 수 없는 값 'banana'입니다", parameter="(subcommand)", target="vmkit")
cli("vmkit doctor --bogus", "알 수 없는 인자(argument): --bogus")
cli("vmkit doctor --json=yes", "값을 받지 않는데 'yes'가 주어졌습니다")
cli("vmkit fetch --arch sparc", "아키텍처(architecture) 'sparc'는 vmkit이 부팅할 수 없습니다")
cli("vmkit fetch --arch", "인자(argument) --arch: 값이 하나 필요합니다")
cli("vmkit engine banana", "인자(argument) 동작: 고를 수 없는 값 'banana'입니다", parameter="(action)")
cli("vmkit engine exec", "실행할 명령(command)을 주세요", parameter="command", target="vmkit engine exec")
cli("vmkit engine exec --", "실행할 명령(command)을 주세요", parameter="command", target="vmkit engine exec")
cli("vmkit boot --memory abc", "메모리(memory) 크기 'abc'를 이해할 수 없습니다")
cli("vmkit boot --memory 64M", "메모리(memory) 64 MiB는 너무 작습니다")
cli("vmkit boot --memory", "인자(argument) --memory: 값이 하나 필요합니다")
cli("vmkit boot --cpus two", "CPU 개수 'two'는 정수가 아닙니다")
cli("vmkit boot --cpus 0", "CPU 개수는 1 이상이어야 합니다")
cli("vmkit boot --accel xen", "가속기(accelerator) 'xen'는 알 수 없습니다")
cli("vmkit boot --arch sparc", "아키텍처(architecture) 'sparc'는 vmkit이 부팅할 수 없습니다")
cli("vmkit boot --timeout x", "인자(argument) --timeout: 'x'는 초 단위의 숫자가 아닙니다")
cli("vmkit boot --timeout 0", "인자(argument) --timeout: 0보다 큰 유한한 초여야 합니다")
cli("vmkit boot --timeout -1", "인자(argument) --timeout: 0보다 큰 유한한 초여야 합니다")
cli("vmkit boot --timeout nan", "인자(argument) --timeout: 0보다 큰 유한한 초여야 합니다")
cli("vmkit boot --bogus 1", "알 수 없는 인자(argument): --bogus 1")
cli("vmkit run --memory 1M", "메모리 한도(memory limit) 1 MiB는 너무 작습니다")
cli("vmkit run --cpus 0", "CPU 할당량(cpus)은 0.01 이상이어야 합니다")
cli("vmkit run --cpus lots", "CPU 개수 'lots'는 숫자가 아닙니다")
cli("vmkit run --pids-limit x", "인자(argument) --pids-limit: 'x'는 정수(integer)가 아닙니다")
cli("vmkit run --pids-limit 2", "프로세스 수 한도(pids_limit)는 4 이상이어야 합니다")
cli("vmkit run --image 'my image'", "이미지(image) 이름 'my image'를 쓸 수 없습니다")
cli("vmkit run --image vmkit/no-such-image:1", "이미지(image) 'vmkit/no-such-image:1'가 도커 엔진(Docker Engine)에 없습니다")
cli("vmkit run --timeout 0", "인자(argument) --timeout: 0보다 큰 유한한 초여야 합니다")
cli("vmkit cleanup --dry-run=yes", "값을 받지 않는데 'yes'가 주어졌습니다")
cli("vmkit compare --trials 0", "시행 횟수(trials)는 1 이상의 정수여야 합니다")
cli("vmkit compare --trials x", "인자(argument) --trials: 'x'는 정수(integer)가 아닙니다")
cli("vmkit compare --memory abc", "메모리(memory) 크기 'abc'를 이해할 수 없습니다")
cli("vmkit compare --cpus two", "CPU 개수 'two'는 정수가 아닙니다")
cli("vmkit compare --accel xen", "가속기(accelerator) 'xen'는 알 수 없습니다")
cli("vmkit compare --kinds banana", "인자(argument) --kinds: 고를 수 없는 값 'banana'")
cli("vmkit compare --kinds", "인자(argument) --kinds: 값이 하나 이상 필요합니다")
cli(f"vmkit compare --plot {NOT_A_SNAPSHOT}/plot.png",
    f"그림 파일(--plot) '{NOT_A_SNAPSHOT}/plot.png'을(를) 만들 수 없습니다")
cli("vmkit compare --plot tests", "그림 파일(--plot) 'tests'은(는) 디렉터리(directory)입니다")
cli("vmkit density vm 0", "개수(count)는 1 이상의 정수여야 합니다", parameter="count")
cli("vmkit density vm three", "인자(argument) count: 'three'는 정수(integer)가 아닙니다", parameter="count")
cli("vmkit density banana 2", "인자(argument) kind: 고를 수 없는 값 'banana'", parameter="kind")
cli("vmkit density vm", "필요한 인자(argument)가 빠졌습니다: count", parameter="count")
cli("vmkit density vm 2 --memory abc", "메모리(memory) 크기 'abc'를 이해할 수 없습니다")
cli("vmkit density vm 2 --parallel 0", "동시 시작 수(parallel)는 1 이상의 정수여야 합니다")
cli("vmkit density vm 2 --parallel x", "인자(argument) --parallel: 'x'는 정수(integer)가 아닙니다")
cli("vmkit density vm 2 --accel xen", "가속기(accelerator) 'xen'는 알 수 없습니다")
cli(f"vmkit assign {MISSING} out", "실습 디렉터리(directory)가 없습니다", parameter="labs_dir")
cli("vmkit assign labs labs/student", "안에 있습니다", parameter="out_dir")
cli("vmkit grade submissions --workers 0", "워커(worker) 수는 1 이상의 정수여야 합니다")
cli("vmkit grade submissions --workers x", "인자(argument) --workers: 'x'는 정수(integer)가 아닙니다")
cli("vmkit grade submissions --workers 2 --scheduler tcp://h:8786",
    "인자(argument) --scheduler: --workers와 함께 쓸 수 없습니다")
cli("vmkit grade submissions --scheduler h:8786", "Dask 스케줄러 주소는 tcp://HOST:PORT 꼴이어야 합니다")
cli(f"vmkit grade {MISSING}", "제출물 디렉터리(directory)가 없습니다", parameter="submissions_dir")
cli(f"vmkit grade tests --labs {MISSING}", "실습 디렉터리(directory)가 없습니다")
cli("vmkit grade tests --timeout 0", "인자(argument) --timeout: 0보다 큰 유한한 초여야 합니다")
cli("vmkit grade tests --timeout x", "인자(argument) --timeout: 'x'는 초 단위의 숫자가 아닙니다")
cli("vmkit grade tests --timeout nan", "인자(argument) --timeout: 0보다 큰 유한한 초여야 합니다")
cli(f"vmkit grade tests --out {NOT_A_SNAPSHOT}/grades.csv",
    f"성적표 파일(--out) '{NOT_A_SNAPSHOT}/grades.csv'을(를) 만들 수 없습니다")
cli("vmkit grade tests --out tests", "성적표 파일(--out) 'tests'은(는) 디렉터리(directory)입니다")


# ---------------------------------------------------------------- class mode
#: A student's server in class mode: no engine of its own to start, DOCKER_HOST or nothing.
CLASS = (("VMKIT_MODE", "class"),)
NO_HOST = (("DOCKER_HOST", None),)
DEAD_HOST = (("DOCKER_HOST", f"unix://{MISSING}.sock"),)
method("Container.start", "(environment)", "VMKIT_MODE=class, DOCKER_HOST unset",
       "수업 모드(class mode)인데 DOCKER_HOST가 설정되지 않아", lambda: _vmkit("Container")().start(),
       error=EngineError, env=CLASS + NO_HOST)
method("Container.start", "(environment)", f"VMKIT_MODE=class, DOCKER_HOST=unix://{MISSING}.sock",
       "의 컨테이너 엔진(container engine)이 응답하지 않습니다", lambda: _vmkit("Container")().start(),
       error=EngineError, env=CLASS + DEAD_HOST)
method("Container.start", "(environment)", "JUPYTERHUB_USER=kim, DOCKER_HOST unset",
       "수업 모드(class mode)인데 DOCKER_HOST가 설정되지 않아", lambda: _vmkit("Container")().start(),
       error=EngineError, env=(("VMKIT_MODE", None), ("JUPYTERHUB_USER", "kim")) + NO_HOST)
method("Container.start", "(environment)", "VMKIT_MODE=banana",
       "환경 변수 VMKIT_MODE의 값 'banana'는 알 수 없습니다", lambda: _vmkit("Container")().start(),
       env=(("VMKIT_MODE", "banana"),))
cli("VMKIT_MODE=class vmkit engine start", "수업 모드(class mode)에서는 vmkit이 컨테이너 엔진을 시작하지 않습니다",
    parameter="(class mode)", target="vmkit engine start")
cli("VMKIT_MODE=class vmkit engine exec -- true",
    "수업 모드(class mode)에서는 vmkit이 컨테이너 엔진을 시작하지 않습니다", parameter="(class mode)",
    target="vmkit engine exec")
cli("env -u DOCKER_HOST VMKIT_MODE=class vmkit run", "podman system service --time=0",
    parameter="(class mode)")
cli(f"VMKIT_MODE=class DOCKER_HOST=unix://{MISSING}.sock vmkit compare --kinds container",
    "의 컨테이너 엔진(container engine)이 응답하지 않습니다", parameter="(class mode)")


# ---------------------------------------------------------------- the table

def _cell(text: str) -> str:
    return "`" + text.replace("`", "'").replace("|", "\\|").replace("\n", "\\n") + "`"


def markdown() -> str:
    """docs/bad-inputs.md: the catalogue as Markdown tables (English text, Korean messages)."""
    api_rows = [c for c in CASES if c.argv is None]
    cli_rows = [c for c in CASES if c.argv is not None]
    lines = [
        "# Bad inputs and their Korean messages",
        "",
        "<!-- Generated by `.venv/bin/python tests/bad_inputs.py > docs/bad-inputs.md`;",
        "     tests/test_bad_inputs.py fails when this file and tests/bad_inputs.py differ. -->",
        "",
        "Every public parameter of `vmkit.VM`, `vmkit.Container`, `vmkit.compare`, `vmkit.density`,",
        "the lab panels (`vmkit.widgets.*Panel`) and every `vmkit` command-line flag that takes a",
        "value, with the bad values tried and the Korean message each one gets. For every row,",
        "`tests/test_bad_inputs.py` checks the exception type (or, on the command line, exit",
        "status 2 and the message on stderr), that the message contains Hangul and the text shown",
        "here, and that nothing was started: no QEMU process, no container, no VM runtime dir,",
        "nothing in the temporary directory. Parameters checked only when a workload starts are",
        "tried through `start()` (`VM.start`, `Container.start`); they are refused before QEMU",
        "or the container exists. Rows with an environment show class mode's refusals",
        "(`VMKIT_MODE=class`: vmkit starts no engine and uses only `DOCKER_HOST`).",
        "",
        "The message column shows the part of the message that does not depend on the host",
        "(host memory, CPU count and absolute paths are left out); the full message follows",
        "the `오류:` prefix on the command line.",
        "",
        f"{len(CASES)} rows: {len(api_rows)} API calls, {len(cli_rows)} command lines.",
        "",
        "## Python API",
        "",
        "| target | parameter | bad value | error | Korean message (part) |",
        "|---|---|---|---|---|",
    ]
    for case in api_rows:
        lines.append(f"| `{case.target}` | `{case.parameter}` | {_cell(case.bad)} | "
                     f"`{case.error.__name__}` | {case.expect} |")
    lines += [
        "",
        "## Command line",
        "",
        "Each exits with status 2 and prints the message on stderr; the parser's own errors",
        "(missing or unknown arguments, values that are not numbers) are Korean too.",
        "",
        "| command | flag | command line | Korean message (part) |",
        "|---|---|---|---|",
    ]
    for case in cli_rows:
        lines.append(f"| `{case.target}` | `{case.parameter}` | {_cell(case.bad)} | {case.expect} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
