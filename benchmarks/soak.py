"""Soak: N start/stop cycles of each kind in one process; nothing may pile up.

Kinds, each run N times (default 100) in this one Python process:

- `vm`: cold boot of a 128 MiB VM, the guest agent answers `echo`, stop;
- `vm-restore`: restore from one snapshot (saved once, before this kind's warm-up), the
  agent answers, stop;
- `container`: start a 64 MiB container, an exec answers `echo`, stop.

Per kind: one warm-up cycle (lazy imports, vmkit's loop thread, the engine's event-stream
thread, docker-py's connection pool, the image check — all made once per process), then
the baseline (cycle 0), then the same figures after cycle 10 and cycle N:

- `fds`: open file descriptors of this process (`/proc/self/fd`);
- `threads`: `threading.active_count()`; `os_threads`: `Threads:` in `/proc/self/status`
  (native threads too);
- `rss_bytes`: this process's RSS;
- `tmp_entries`: entries in the temp dir. The run gets a private `TMPDIR` (and
  `tempfile.tempdir`), so every entry there was made by vmkit or what it started, and other
  runs sharing /tmp cannot disturb the count; `runtime_dirs`: this run's VMs' directories
  under vmkit's runtime root (`vm.rundir.runtime_root()`, i.e. `$VMKIT_STATE/run`), found by the
  run's name prefix or an owner.json naming this process;
- `children`: direct children of this process, zombies included (an unreaped child is a
  leak too); vmkit spawns QEMU as a direct child and nothing else, and grandchildren are
  left out so that a test process's other children (a Jupyter server, a browser) and what
  they start or reap on their own cannot move the count; `qemus`: running QEMU with this
  run's `VMKIT_RUN` (`runs.qemus`), wherever it is in the process tree;
- `containers`: the engine's containers (any state) labelled with this run's `VMKIT_RUN`;
- `workloads`: `VM`/`Container` objects still alive after `gc.collect()` (a direct check
  for a stopped workload kept by a listener, a registry or a thread).

Bounds on the growth from cycle 0 (`BOUNDS`), checked at cycle 10 and at cycle N:
fds ≤ 2, threads ≤ 1 (both counts), RSS ≤ 16 MiB, and 0 for temp entries, runtime dirs,
processes, containers and live workload objects. Why 16 MiB of RSS after 100 cycles: RSS
is the allocators' view, not Python's. pymalloc frees a 1 MiB arena only once every object
in it is gone, so a few long-lived objects made during a cycle (a psutil or docker-py
cache entry, an interned string) pin whole arenas; glibc gives each thread that allocates
its own malloc arena (up to 8 × cores = 16 here) and trims them lazily, and every VM cycle
runs four short-lived threads (console, stderr, agent, QMP events) that land in whichever
arena is free. Both are bounded but not flat, a few MiB each. What the first cycle loads
once (docker, requests, qemu.qmp, psutil; pandas or matplotlib are never imported by a
cycle) is in the baseline, through the warm-up. A leak of 160 KiB or more per cycle
passes 16 MiB within 100 cycles; a whole VM or container kept alive after its stop (its
Trace with up to 500 console lines, its buffers) may cost less, and is caught by
`workloads`, which counts the objects themselves. Measured here: +0.1 to +1.3 MiB after
100 cycles.

Each sample is taken after `gc.collect()`, once the counts have settled (two reads 0.2 s
apart agree, at most 3 s): a thread that is ending or a child being reaped is not a leak.

    python benchmarks/soak.py --cycles 100 --json soak.json     # about 7 minutes here (TCG)
    python benchmarks/soak.py --cycles 20 --kinds vm container

`run(cycles, kinds)` returns the same dict (tests/test_soak.py runs 10 cycles of each kind).
Exit status 1 if a bound is exceeded or a cycle failed, 2 on a vmkit error.
"""

from __future__ import annotations

import gc
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from benchmarks.common import finish, say  # noqa: E402
from vmkit.container import engine
from vmkit.host import runs  # noqa: E402
from vmkit.vm.rundir import runtime_root  # noqa: E402
from vmkit.cli import KoreanArgumentParser, check_output_file, integer, seconds  # noqa: E402
from vmkit.container.container import Container  # noqa: E402
from vmkit.errors import InvalidInput, VmkitError, WorkloadError  # noqa: E402
from vmkit.units import pad  # noqa: E402
from vmkit.vm.vm import VM  # noqa: E402
from vmkit.workload import Workload  # noqa: E402

MiB = 1 << 20
KINDS = ("vm", "vm-restore", "container")
VM_MEMORY = "128M"
CONTAINER_MEMORY = "64M"
#: The middle checkpoint; the others are cycle 0 (after the warm-up) and cycle N.
CHECKPOINT = 10
#: Allowed growth from cycle 0 (see the module docstring for the RSS figure).
BOUNDS = {"fds": 2, "threads": 1, "os_threads": 1, "rss_bytes": 16 * MiB, "tmp_entries": 0,
          "runtime_dirs": 0, "children": 0, "qemus": 0, "containers": 0, "workloads": 0}
#: docker-py keeps up to 25 idle connection pools per client, one per request URL (most URLs
#: name one container or exec), each holding a socket to the engine: a container cycle leaves
#: about 6 behind until the cap, so the container kind's fd bound is that cap plus 2. (Sharing
#: one pool across URLs removed them, but an OOM test then failed 2 of 13 runs; see README.)
DOCKER_IDLE_POOLS = 25
KIND_BOUNDS = {"container": {"fds": BOUNDS["fds"] + DOCKER_IDLE_POOLS}}
#: Figures that must have settled (two equal reads) before a sample counts.
COUNTS = ("fds", "threads", "os_threads", "tmp_entries", "runtime_dirs", "children", "qemus",
          "containers")
SETTLE_S = 3.0
LABELS = {
    "fds": "열린 파일 디스크립터(fd)",
    "threads": "스레드 (threading)",
    "os_threads": "스레드 (/proc Threads)",
    "rss_bytes": "RSS (이 파이썬 프로세스)",
    "tmp_entries": "임시 디렉터리 항목 (TMPDIR)",
    "runtime_dirs": "VM 실행 디렉터리(runtime dir)",
    "children": "자식 프로세스",
    "qemus": "이 실행(VMKIT_RUN)의 QEMU",
    "containers": "이 실행의 컨테이너",
    "workloads": "살아 있는 VM·컨테이너 객체",
}
TITLES = {"vm": f"VM 콜드 부팅 ({VM_MEMORY[:-1]} MiB)",
          "vm-restore": f"VM 스냅샷 복원 ({VM_MEMORY[:-1]} MiB)",
          "container": f"컨테이너 ({CONTAINER_MEMORY[:-1]} MiB)"}


class _Probe:
    """Reads this run's figures (see the module docstring)."""

    def __init__(self, run_id: str, prefix: str, tmpdir: Path):
        self.run_id, self.prefix, self.tmpdir = run_id, prefix, tmpdir
        self.me = psutil.Process()
        self.client = engine.client() if engine.find() is not None else None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def read(self) -> dict:
        return {
            "fds": len(os.listdir("/proc/self/fd")),
            "threads": threading.active_count(),
            "os_threads": _status_threads(),
            "rss_bytes": self.me.memory_info().rss,
            "tmp_entries": len(os.listdir(self.tmpdir)),
            "runtime_dirs": len(self._runtime_dirs()),
            "children": len(self.me.children()),
            "qemus": len(runs.qemus(self.run_id)),
            "containers": (len(runs.containers(self.client, self.run_id))
                           if self.client is not None else 0),
        }

    def _runtime_dirs(self) -> list[str]:
        found = []
        for path in runtime_root().iterdir():
            mine = path.name.startswith(self.prefix)
            if not mine:
                try:
                    mine = f'"pid": {os.getpid()},' in (path / "owner.json").read_text()
                except OSError:
                    pass
            if mine:
                found.append(path.name)
        return found

    def sample(self) -> dict:
        """The figures after gc.collect(), once the counts agree twice in a row."""
        gc.collect()
        deadline = time.monotonic() + SETTLE_S
        last = self.read()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = self.read()
            settled = all(now[key] == last[key] for key in COUNTS)
            last = now
            if settled:
                break
        last["workloads"] = sum(isinstance(obj, Workload) for obj in gc.get_objects())
        return last


def _status_threads() -> int:
    with open("/proc/self/status") as stream:
        for line in stream:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def _answers(workload: Workload, i: int) -> None:
    """The workload runs a command and its answer comes back."""
    out = workload.guest(f"echo soak-{i}").strip()
    if out != f"soak-{i}":
        raise WorkloadError(f"'{workload.name}'의 답이 틀립니다: {out[:80]!r} (기대: 'soak-{i}')")


def _up_and_down(workload: Workload, start, i: int) -> float:
    """start(), the answer, stop() (also when something failed); seconds the stop took."""
    try:
        start()
        _answers(workload, i)
    except BaseException:
        workload.stop()
        raise
    began = time.monotonic()
    workload.stop()
    return time.monotonic() - began


def _cycle_vm(ctx: dict, i: int) -> float:
    vm = VM(memory=VM_MEMORY, name=f"{ctx['prefix']}-b{i}")
    return _up_and_down(vm, lambda: vm.start(timeout=ctx["timeout"]), i)


def _cycle_restore(ctx: dict, i: int) -> float:
    vm = VM.from_snapshot(ctx["snapshot"], name=f"{ctx['prefix']}-r{i}")  # VM.restore = this + start()
    return _up_and_down(vm, lambda: vm.start(timeout=ctx["timeout"]), i)


def _cycle_container(ctx: dict, i: int) -> float:
    container = Container(memory=CONTAINER_MEMORY, name=f"{ctx['prefix']}-c{i}")
    return _up_and_down(container, lambda: container.start(timeout=ctx["timeout"]), i)


CYCLES = {"vm": _cycle_vm, "vm-restore": _cycle_restore, "container": _cycle_container}


def _save_snapshot(ctx: dict, path: Path) -> dict:
    """Boot one VM, save it to `path`, stop it: what every vm-restore cycle starts from."""
    vm = VM(memory=VM_MEMORY, name=f"{ctx['prefix']}-snap")
    try:
        vm.start(timeout=ctx["timeout"])
        return vm.snapshot(path)
    finally:
        vm.stop()


def soak_kind(kind: str, cycles: int, ctx: dict, probe: _Probe, bounds: dict,
              progress=say) -> dict:
    """Warm-up, baseline, then `cycles` cycles of `kind`; the samples and what exceeded its bound."""
    bounds = {**bounds, **KIND_BOUNDS.get(kind, {})}
    cycle = CYCLES[kind]
    started = time.monotonic()
    cycle(ctx, 0)  # warm-up: a failure here means there is nothing to measure
    checkpoints = sorted({0, min(CHECKPOINT, cycles), cycles})
    samples = {0: probe.sample()}
    progress(f"[{kind}] 기준(cycle 0): " + _brief(samples[0]))
    seconds, stops, errors = [], [], []
    for i in range(1, cycles + 1):
        began = time.monotonic()
        try:
            stops.append(cycle(ctx, i))
        except VmkitError as exc:
            errors.append(f"{i}: {str(exc).splitlines()[0]}")
            progress(f"[{kind}] {i}/{cycles} 실패: {errors[-1]}")
        seconds.append(time.monotonic() - began)
        if i in checkpoints:
            samples[i] = probe.sample()
            progress(f"[{kind}] {i}/{cycles}: " + _brief(samples[i], samples[0]))
        elif i % 10 == 0:
            progress(f"[{kind}] {i}/{cycles}, 주기 {seconds[-1]:.2f} s")
    growth = {at: {key: samples[at][key] - samples[0][key] for key in samples[0]}
              for at in checkpoints if at}
    exceeded = [{"kind": kind, "figure": key, "cycle": at, "growth": value, "bound": bounds[key]}
                for at, row in growth.items() for key, value in row.items()
                if key in bounds and value > bounds[key]]
    return {"kind": kind, "cycles": cycles, "checkpoints": checkpoints, "bounds": bounds,
            "samples": {str(at): row for at, row in samples.items()},
            "growth": {str(at): row for at, row in growth.items()},
            "exceeded": exceeded, "failures": len(errors), "errors": errors[:20],
            "cycle_median_s": statistics.median(seconds) if seconds else None,
            "cycle_max_s": max(seconds) if seconds else None,
            "stop_median_s": statistics.median(stops) if stops else None,
            "seconds": round(time.monotonic() - started, 1)}


def _brief(row: dict, base: dict | None = None) -> str:
    def one(key: str, scale: int = 1) -> str:
        value = row[key] // scale
        return str(value) if base is None else f"{value}({(row[key] - base[key]) // scale:+d})"
    return (f"fd {one('fds')}, 스레드 {one('threads')}/{one('os_threads')}, RSS {one('rss_bytes', MiB)} MiB, "
            f"임시 {one('tmp_entries')}, 실행 디렉터리 {one('runtime_dirs')}, 자식 {one('children')}, "
            f"QEMU {one('qemus')}, 컨테이너 {one('containers')}, 객체 {one('workloads')}")


@contextmanager
def _private_tmp():
    """A private root for this run: `tmp/` becomes TMPDIR (and tempfile.tempdir) meanwhile."""
    root = Path(tempfile.mkdtemp(prefix="vmkit-soak-"))
    tmp = root / "tmp"
    tmp.mkdir()
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = str(tmp)
    try:
        yield root, tmp
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(root, ignore_errors=True)


def check_kinds(kinds) -> tuple[str, ...]:
    """The kinds asked for, in a stable order, or a Korean InvalidInput."""
    if isinstance(kinds, str):
        kinds = [kinds]
    wanted = [part.strip() for item in kinds for part in str(item).split(",") if part.strip()]
    unknown = [kind for kind in wanted if kind not in KINDS]
    if unknown or not wanted:
        raise InvalidInput(f"종류(kinds) {unknown or list(kinds)!r}는 알 수 없습니다.",
                           f"{', '.join(KINDS)} 중에서 고르세요.")
    return tuple(kind for kind in KINDS if kind in wanted)


def run(cycles: int = 100, kinds=KINDS, bounds: dict | None = None, timeout: float = 60.0,
        progress=say) -> dict:
    """Soak each kind for `cycles` cycles in this process; JSON-ready (see the module docstring).

    Uses this process's VMKIT_RUN, or sets a fresh one for the run's duration.
    `bounds` overrides entries of BOUNDS (the test's looser RSS bound for 10 cycles).
    """
    if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 1:
        raise InvalidInput(f"주기 수(cycles)는 1 이상의 정수여야 합니다 (받은 값: {cycles!r}).")
    kinds = check_kinds(kinds)
    bounds = {**BOUNDS, **(bounds or {})}
    started = time.monotonic()
    own_run = runs.current() is None
    if own_run:
        os.environ[runs.VARIABLE] = f"soak-{os.getpid()}-{secrets.token_hex(4)}"
    run_id = runs.current()
    prefix = f"soak{secrets.token_hex(3)}"
    results = {}
    try:
        with _private_tmp() as (root, tmp):
            ctx = {"prefix": prefix, "timeout": timeout, "snapshot": root / "soak.vmkit"}
            probe = _Probe(run_id, prefix, tmp)
            try:
                for kind in kinds:
                    progress(f"== {TITLES[kind]} × {cycles} ==")
                    if kind == "vm-restore":
                        saved = _save_snapshot(ctx, ctx["snapshot"])
                        progress(f"스냅샷 {saved['bytes'] / MiB:.0f} MiB 저장 ({saved['seconds']:.2f} s)")
                    results[kind] = soak_kind(kind, cycles, ctx, probe, bounds, progress)
            finally:
                probe.close()
    finally:
        if own_run:
            os.environ.pop(runs.VARIABLE, None)
    exceeded = [row for result in results.values() for row in result["exceeded"]]
    failures = sum(result["failures"] for result in results.values())
    return {"run_id": run_id, "cycles": cycles, "kinds": results, "bounds": bounds,
            "exceeded": exceeded, "failures": failures, "ok": not exceeded and not failures,
            "seconds": round(time.monotonic() - started, 1)}


def _value(key: str, value: int) -> str:
    return f"{value / MiB:.1f} MiB" if key == "rss_bytes" else str(value)


def _growth(key: str, value: int) -> str:
    return f"{value / MiB:+.1f} MiB" if key == "rss_bytes" else f"{value:+d}"


def _bound(key: str, bound: int) -> str:
    if key == "rss_bytes":
        return f"≤ {bound / MiB:.0f} MiB"
    return "= 0" if bound == 0 else f"≤ {bound}"


def table(result: dict) -> str:
    """A Korean table per kind: the figures at 0/10/N, the growth at N and its bound."""
    bounds, lines = result["bounds"], []
    for kind, r in result["kinds"].items():
        points = r["checkpoints"]
        last = str(points[-1])
        stop = f", 그중 중지 {r['stop_median_s']:.2f} s" if r["stop_median_s"] is not None else ""
        lines.append(f"{TITLES[kind]}: {r['cycles']}회, 주기 중앙값 {r['cycle_median_s']:.2f} s{stop} "
                     f"(최대 {r['cycle_max_s']:.2f} s), 실패 {r['failures']}, 전체 {r['seconds']:.0f} s")
        head = pad("항목", 30) + "".join(pad(f"{at}회", 12, right=True) for at in points)
        lines.append("  " + head + pad("증가", 12, right=True) + "   " + pad("한도", 12) + "판정")
        over = {(row["figure"]) for row in r["exceeded"]}
        for key, label in LABELS.items():
            cells = "".join(pad(_value(key, r["samples"][str(at)][key]), 12, right=True) for at in points)
            growth = r["growth"][last][key] if last in r["growth"] else 0
            lines.append("  " + pad(label, 30) + cells + pad(_growth(key, growth), 12, right=True)
                         + "   " + pad(_bound(key, r.get("bounds", bounds)[key]), 12) + ("✘" if key in over else "✔"))
        for error in r["errors"]:
            lines.append(f"  실패한 주기 {error}")
        lines.append("")
    verdict = "모든 한도 안 ✔" if result["ok"] else (
        f"한도 초과 {len(result['exceeded'])}건, 실패한 주기 {result['failures']}개 ✘")
    lines.append(f"판정: {verdict} (실행 id {result['run_id']}, 전체 {result['seconds']:.0f} s)")
    return "\n".join(lines)


def rows(result: dict) -> list[tuple[str, str, str]]:
    """One row per kind for benchmarks/report.py's table."""
    found = []
    for kind, r in result["kinds"].items():
        g = r["growth"][str(r["checkpoints"][-1])]
        ok = not r["exceeded"] and not r["failures"]
        found.append((f"소크 {TITLES[kind]} ×{r['cycles']}",
                      f"fd {g['fds']:+d}, 스레드 {g['threads']:+d}, RSS {g['rss_bytes'] / MiB:+.1f} MiB",
                      f"임시·프로세스·컨테이너 {g['tmp_entries'] + g['runtime_dirs'] + g['children'] + g['qemus'] + g['containers']:+d}, "
                      f"실패 {r['failures']} {'✔' if ok else '✘'}"))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = KoreanArgumentParser(description="vmkit 소크(soak): 시작·중지를 N번 되풀이해 새는 자원을 찾습니다")
    parser.add_argument("--cycles", type=integer, default=100, help="종류마다 주기 수 (기본 100)")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS),
                        help=f"종류: {', '.join(KINDS)} (기본: 모두; 쉼표로도 구분)")
    parser.add_argument("--timeout", type=seconds, default=60.0, help="준비(ready)를 기다릴 최대 초 (기본 60)")
    parser.add_argument("--json", metavar="OUT", help="결과를 JSON 파일로 저장")
    args = parser.parse_args(argv)
    try:
        kinds = check_kinds(args.kinds)
        if args.cycles < 1:
            raise InvalidInput(f"주기 수(--cycles)는 1 이상이어야 합니다 (받은 값: {args.cycles}).")
        if args.json:
            check_output_file(args.json, "JSON 파일")
    except InvalidInput as exc:
        print(f"오류: {exc}", file=sys.stderr)
        return 2
    os.environ[runs.VARIABLE] = f"soak-{os.getpid()}-{secrets.token_hex(4)}"
    outcome = {}

    def measure() -> dict:
        outcome["result"] = run(args.cycles, kinds, timeout=args.timeout, progress=say)
        return outcome["result"]

    status = finish(measure, table, args.json)
    if status == 0 and not outcome["result"]["ok"]:
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
