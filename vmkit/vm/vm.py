"""`VM`: one QEMU guest, booted from vmkit's artifacts and steered over QMP.

A VM is a `Workload` (see `workload`): `start()` blocks until the guest is ready and
returns its `Trace`; `stop()` is always safe. Underneath:

- QEMU starts paused (`-S`) with its QMP monitor and the guest agent's virtio-serial
  port on unix sockets in a private 0700 runtime directory; its console is its stdout.
- vmkit connects QMP (`qemu.qmp` on vmkit's background loop), issues `cont`, and watches
  the console for the kernel and for `VMKIT-READY`; then the guest agent answers a
  first request (its uptime, kernel release, memory) over virtio-serial.
- Stopping follows QEMU's own `QEMUMachine`: ask the guest to power off, then QMP
  `quit`, then SIGKILL, each with a bounded wait, and clean up in `finally`.
- QEMU is spawned with PR_SET_PDEATHSIG, so it dies with the Python process even when
  that process is SIGKILLed (a notebook kernel restarted mid-boot).

Phases of a cold boot, in order: `spawned` (QEMU process exists), `qmp_ready` (QMP
greeting and negotiation done), `resumed` (`cont` answered: the vCPU runs), `console`
(first byte on the serial console), `kernel` (first kernel log line on the console;
with `quiet` the kernel prints its buffered early lines once the serial console is
registered), `ready` (`VMKIT-READY`: userland is up), `agent` (the agent answered).
A restore from a snapshot has `spawned`, `qmp_ready`, `restored` (incoming migration
loaded), `resumed`, `ready` (the agent answered).

The guest's architecture (`arch`, default x86_64) picks its artifacts, and through them
QEMU's binary, machine and kernel arguments (`arches`); the phases and the guest agent are
the same for every architecture. A guest of another architecture than the host's always
runs under TCG: KVM runs only the host CPU's own instructions.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..errors import InvalidInput, MissingComponent, WorkloadError, WorkloadTimeout
from ..guest import arches
from ..guest import artifacts as artifacts_mod
from ..host import background, memguard, reaper
from ..units import check_callback, check_seconds, check_strings, format_bytes, parse_cpus, parse_memory
from ..workload import Trace, Usage, Workload, live, process_usage
from . import events, qemu, resources, rundir, snapshot
from .agent_channel import AgentClient
from .console import ConsoleReader, close_stdio
from .events import QMPEvents
from .qmp import QMPSession, qmp_arguments
from .rundir import cleanup_stale

MiB = 1 << 20
#: The guest did not boot in 64 MiB; 96 MiB was enough (DESIGN.md).
MIN_MEMORY = 96 * MiB
ACCELERATORS = ("auto", "kvm", "tcg")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")

#: Korean labels for the phases, for widgets and the CLI.
PHASE_LABELS = {
    "spawned": "QEMU 프로세스 생성",
    "qmp_ready": "QMP 연결",
    "restored": "스냅샷 상태 적재",
    "resumed": "vCPU 실행 시작",
    "console": "첫 콘솔 출력",
    "kernel": "첫 커널 메시지",
    "ready": "게스트 준비 완료",
    "agent": "게스트 에이전트 응답",
}


@dataclass
class VMUsage(Usage):
    """`Usage` plus what only a VM has: its accelerator and its configured RAM."""

    accel: str | None = None
    accel_reason: str | None = None
    guest_ram_bytes: int = 0


class VM(Workload):
    """A QEMU guest (see the module docstring).

    memory: guest RAM ('256M', '1G', or MiB as a number); cpus: vCPUs; accel: 'auto'
    (KVM when the probe found it usable, else TCG), 'kvm' (fail fast if unusable) or
    'tcg'; name: unique among running VMs (default: a random one); arch: the guest's
    architecture, 'x86_64' or 'aarch64' (see `arches`). kernel_args are appended to the
    kernel command line; qemu_args to QEMU's (advanced; no shell). free_page_reporting:
    whether the balloon hands pages the guest frees back to the host within seconds
    (default `qemu.FREE_PAGE_REPORTING`; off, freed pages stay until the balloon inflates).
    """

    kind = "vm"

    def __init__(self, memory: str | int = "256M", cpus: int = 1, accel: str = "auto",
                 name: str | None = None, *, arch: str = arches.DEFAULT,
                 artifacts: artifacts_mod.Artifacts | None = None,
                 kernel_args: str = "", qemu_args: Sequence[str] = (),
                 free_page_reporting: bool | None = None):
        self.arch = arches.lookup(arch)
        self.artifacts = _check_artifacts(artifacts, self.arch)
        super().__init__(name=_check_name(name) if name is not None else f"vm-{secrets.token_hex(4)}")
        self.memory_bytes = parse_memory(memory, minimum=MIN_MEMORY)
        self.memory_mib = -(-self.memory_bytes // MiB)
        self.cpus = parse_cpus(cpus)
        self.accel_request = _check_accel(accel)
        self.accel: str | None = None
        self.accel_reason: str | None = None
        self.kernel_args = _check_kernel_args(kernel_args)
        self.qemu_args = check_strings(qemu_args, "QEMU 인자(qemu_args)")
        self.free_page_reporting = _check_free_page_reporting(free_page_reporting)
        self.proc: subprocess.Popen | None = None
        self._spawned: subprocess.Popen | None = None  # kept after stop, for error reports
        self.runtime_dir: Path | None = None
        self.last_stop: dict[str, Any] = {}
        self.last_rc: int | None = None
        self._qmp: QMPSession | None = None
        self._agent: AgentClient | None = None
        self._console: ConsoleReader | None = None  # kept after stop, for error reports
        self._qmp_events: QMPEvents | None = None
        self._stop_lock = threading.RLock()
        self._ready = self._stop_requested = False
        self._graceful = True
        self._snapshot_path: Path | None = None
        self._snapshot_stamp: dict | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (f"<VM {self.name} {self.arch.name} {format_bytes(self.memory_bytes)} cpus={self.cpus} "
                f"accel={self.accel or self.accel_request} {state}>")

    # ------------------------------------------------------------ properties
    @property
    def pid(self) -> int | None:
        """QEMU's process id while it runs."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    @property
    def running(self) -> bool:
        """Whether this VM's QEMU process is alive."""
        return self.pid is not None

    @property
    def paused(self) -> bool:
        """Whether the vCPUs are stopped (QMP STOP seen, no RESUME since)."""
        return self._qmp_events is not None and self._qmp_events.paused

    @property
    def qmp_socket(self) -> Path | None:
        return self.runtime_dir / "qmp.sock" if self.runtime_dir else None

    # ------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 60.0,
              on_phase: Callable[[str, float], None] | None = None) -> Trace:
        """Boot (or restore) and block until the guest is ready; returns the Trace."""
        if self.running:
            raise WorkloadError(f"VM '{self.name}'은(는) 이미 실행 중입니다.")
        timeout = check_seconds(timeout)
        check_callback(on_phase, "on_phase")
        with memguard.admit(self):  # refused (nothing started) when the host can't hold it
            return super().start(timeout, on_phase)

    def _start(self, timeout: float) -> None:
        reaper.install()  # a SIGTERM to this process stops its workloads first
        deadline = time.monotonic() + timeout
        trace = self.trace
        self._ready = self._stop_requested = False
        self._qmp_events = QMPEvents(self.name, self._emit)
        # Preflight: everything that can be refused is refused before QEMU starts.
        binary = qemu.qemu_binary(self.arch)
        arts = self.artifacts or artifacts_mod.require(self.arch)
        self.accel, self.accel_reason = resolve_accel(self.accel_request, self.arch)
        trace.accel, trace.accel_reason = self.accel, self.accel_reason
        if self._snapshot_stamp is not None:
            snapshot.check_stamp(self._snapshot_stamp, self._stamp(arts, binary), self._snapshot_path)
        cleanup_stale()
        self.runtime_dir = rundir.create(self.name)
        path = self.runtime_dir
        with snapshot.incoming(self._snapshot_path) as fd:
            argv = self._argv(arts, incoming=f"fd:{fd}" if fd is not None else None)
            trace.origin = time.monotonic()
            proc = self.proc = self._spawned = background.spawn(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                bufsize=0, cwd=str(path), pass_fds=(fd,) if fd is not None else ())
        self._track()
        boot = self._snapshot_path is None
        self._console = ConsoleReader(proc, trace, self.name, self._console_listeners, boot=boot)
        self._console.start()
        # From here on, stop() may run on another thread at any moment (a widget's Stop
        # button): whatever the boot then trips over, the student sees why it ended.
        try:
            trace.mark("spawned")
            rundir.write_owner(path, self.name, proc.pid)
            self._boot(trace, path, deadline, timeout)
        except Exception as exc:
            if self._stop_requested:
                raise WorkloadError(f"VM '{self.name}'이(가) 준비(ready)되기 전에 stop()으로 중지되었습니다.") from exc
            if not isinstance(exc, WorkloadError) or isinstance(exc, WorkloadTimeout):
                raise
            if proc.poll() is not None:
                raise self._died_error() from exc
            raise

    def _boot(self, trace: Trace, path: Path, deadline: float, timeout: float) -> None:
        proc, console = self._spawned, self._console
        qmp_session = self._qmp = QMPSession(f"vmkit-{self.name}", on_event=self._qmp_events.submit)
        qmp_session.connect(path / "qmp.sock", deadline, alive=lambda: proc.poll() is None)
        trace.mark("qmp_ready")
        agent = self._agent = AgentClient(self.name, alive=lambda: proc.poll() is None)
        agent.connect(path / "agent.sock", deadline)
        restoring = self._snapshot_path is not None
        if restoring:
            snapshot.wait_incoming(qmp_session, console, deadline)
            trace.mark("restored")
        qmp_session.execute("cont")
        trace.mark("resumed")
        if not restoring:
            console.wait_ready(deadline, timeout)
        uptime = agent.handshake(deadline, timeout, log=console.last)
        self._ready = True
        trace.mark("ready" if restoring else "agent")
        trace.guest["uptime_s"] = uptime
        trace.guest.update(agent.guest_info(max(deadline - time.monotonic(), 5.0)))
        if restoring:
            trace.guest["restored_from"] = str(self._snapshot_path)
            trace.guest["uptime_at_snapshot_s"] = self._snapshot_stamp.get("guest_uptime_s")

    def _argv(self, arts: artifacts_mod.Artifacts, incoming: str | None = None,
              runtime_dir: Path | None = None) -> list[str]:
        path = runtime_dir or self.runtime_dir
        machine = qemu.Machine(memory_mib=self.memory_mib, cpus=self.cpus, accel=self.accel,
                               free_page_reporting=self.free_page_reporting)
        argv = qemu.argv(machine, arts, qmp_socket=path / "qmp.sock",
                         agent_socket=path / "agent.sock", paused=True, incoming=incoming,
                         extra_append=self.kernel_args)
        # Thread names ("CPU 0/KVM"; "ALL CPUs/TCG" under single-threaded TCG) show in `top -H`.
        return argv + ["-name", f"{self.name},debug-threads=on", *self.qemu_args]

    def _stop_at_exit(self) -> None:
        self.stop(graceful=False)

    def stop(self, graceful: bool = True) -> None:
        """Shut the guest down (power off, then QMP quit, then kill) and clean up.

        Safe to call at any time, repeatedly. graceful=False skips the guest power-off.
        """
        self._graceful = graceful
        super().stop()

    def _stop(self) -> None:
        self._stop_requested = True
        with self._stop_lock:
            proc = self.proc
            if proc is None:
                if self._qmp is not None:  # made by a boot that stop() cut short
                    self._qmp.close()
                    self._qmp = None
                self._remove_runtime_dir()
                return
            started = time.monotonic()
            method = "exited"
            shutdown_event = False
            try:
                if proc.poll() is None:
                    method = self._shutdown(proc)
                    shutdown_event = self.wait_event("SHUTDOWN", 0.2, since=started) is not None
            finally:
                if proc.poll() is None:
                    proc.kill()
                    method = "kill"
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
                for part in (self._qmp, self._agent, self._console, self._qmp_events):
                    if part is not None:
                        part.close()
                close_stdio(proc)
                self._qmp = self._agent = None
                self.last_stop = {"method": method, "seconds": time.monotonic() - started,
                                  "shutdown_event": shutdown_event,
                                  "returncode": proc.returncode}
                self._ready = False
                self.proc = None
                self._untrack()
                self._remove_runtime_dir()

    def _shutdown(self, proc: subprocess.Popen) -> str:
        """Power off from inside the guest, else QMP quit; returns how it ended."""
        if self._graceful and self._ready and not self.paused and self._agent is not None:
            try:
                self._agent.send("poweroff", 5)
                proc.wait(3.0)
                return "guest-poweroff"
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self._qmp is not None and self._qmp.connected:
            try:
                self._qmp.execute("quit", timeout=2.0)
            except WorkloadError:
                pass
            try:
                proc.wait(2.0)
                return "quit"
            except subprocess.TimeoutExpired:
                pass
        proc.kill()
        return "kill"

    def _remove_runtime_dir(self) -> None:
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None

    # ------------------------------------------------------------ inside the guest
    def _died_error(self) -> WorkloadError:
        """Why QEMU ended (exit code, stderr, console), for a boot or a measurement it cut short."""
        return self._console.died_error()

    def guest(self, command: str, timeout: float = 10.0, check: bool = False) -> str:
        """Run a shell command in the guest (over virtio-serial) and return its output.

        The exit status is kept in `last_rc`; check=True raises WorkloadError if it is not 0.
        """
        if self.paused:
            raise WorkloadError(f"VM '{self.name}'이(가) 일시 정지(paused) 상태라 명령을 실행할 수 없습니다.",
                                "resume()으로 다시 실행하세요.")
        agent = self._agent
        if agent is None:
            raise WorkloadError(f"VM '{self.name}'이(가) 실행 중이 아닙니다.", "먼저 start() 하세요.")
        rc, out = agent.request(command, timeout)
        self.last_rc = rc
        if check and rc != 0:
            raise WorkloadError(f"게스트 명령(command) {command!r}이(가) 종료 코드 {rc}로 실패했습니다.", log=out)
        return out

    # ------------------------------------------------------------ QMP
    def _require_qmp(self) -> QMPSession:
        if self._qmp is None or not self.running:
            raise WorkloadError(f"VM '{self.name}'이(가) 실행 중이 아닙니다.", "먼저 start() 하세요.")
        return self._qmp

    def qmp(self, command: str, arguments: dict | None = None, **kwargs) -> Any:
        """Run a raw QMP command, e.g. `vm.qmp("query-status")`; returns its `return` value.

        Keyword names get '-' for '_' (`thread_id` → `thread-id`); pass `arguments` for exact names.
        """
        return self._require_qmp().execute(command, qmp_arguments(arguments, kwargs), timeout=30.0)

    async def qmp_async(self, command: str, arguments: dict | None = None, **kwargs) -> Any:
        """`qmp` for callers awaiting on their own event loop."""
        return await self._require_qmp().execute_async(command, qmp_arguments(arguments, kwargs))

    def iter_events(self, timeout: float | None = None,
                    names: Sequence[str] | None = None) -> Iterator[dict]:
        """Yield QMP events as they arrive, until `timeout` seconds pass without one."""
        return events.iterate(self, timeout, names)

    def status(self) -> str:
        """QEMU's run state: 'running', 'paused', 'postmigrate', ... (query-status)."""
        return self.qmp("query-status")["status"]

    def pause(self, timeout: float = 5.0) -> None:
        """Stop the vCPUs (QMP `stop`); returns once the STOP event arrived."""
        since = time.monotonic()
        if self.status() == "running":
            self.qmp("stop")
            if self.wait_event("STOP", timeout, since=since) is None:
                raise WorkloadTimeout("STOP 이벤트(event)가 오지 않았습니다.")

    def resume(self, timeout: float = 5.0) -> None:
        """Run the vCPUs again (QMP `cont`); returns once the RESUME event arrived."""
        since = time.monotonic()
        if self.status() != "running":
            self.qmp("cont")
            if self.wait_event("RESUME", timeout, since=since) is None:
                raise WorkloadTimeout("RESUME 이벤트(event)가 오지 않았습니다.")

    # ------------------------------------------------------------ resources (see `resources`)
    def memory(self) -> dict[str, int]:
        """Guest RAM as QEMU sees it: base size and the balloon's current size."""
        return resources.memory(self)

    def vcpus(self) -> list[dict[str, Any]]:
        """Each vCPU and the host thread that runs it, with that thread's CPU seconds.

        The hypervisor schedules vCPUs as ordinary host threads. Under single-threaded
        TCG all vCPUs share one host thread.
        """
        return resources.vcpus(self)

    def host_threads(self) -> list[dict[str, Any]]:
        """QEMU's host threads: id, name (e.g. 'CPU 0/KVM', 'ALL CPUs/TCG'), CPU seconds."""
        return resources.host_threads(self.pid)

    def balloon(self, target: str | int, wait: bool = True, timeout: float = 20.0) -> dict[str, Any]:
        """Move guest RAM back to the host with virtio-balloon: shrink the guest to `target`.

        Returns the target, the size reached and how long it took. A larger target gives
        memory back to the guest (up to its configured size).
        """
        return resources.balloon(self, target, wait, timeout)

    # ------------------------------------------------------------ measuring
    def usage(self) -> VMUsage:
        """Host cost of the QEMU process (RSS, PSS, CPU) and the guest's own memory view."""
        pid = self.pid
        base = process_usage([pid] if pid else [])
        usage = VMUsage(**base.to_dict(), accel=self.accel, accel_reason=self.accel_reason,
                        guest_ram_bytes=self.memory_bytes)
        if pid and self._ready and not self.paused:
            self._read_inside_memory(usage)
        return usage

    # ------------------------------------------------------------ snapshot and restore
    def snapshot(self, path: str | os.PathLike, resume: bool = True,
                 timeout: float = 60.0) -> dict[str, Any]:
        """Save the whole running guest to `path` (pause, QMP migrate to a file).

        The file starts with a compatibility stamp (artifacts, QEMU version, options),
        then QEMU's migration stream. resume=True lets this VM run on afterwards.
        Returns the path, its size in bytes and the seconds it took.
        """
        qmp_session = self._require_qmp()
        arts = self.artifacts or artifacts_mod.require(self.arch)
        stamp = dict(self._stamp(arts, qemu.qemu_binary(self.arch)), name=self.name, created=time.time())
        return snapshot.save(self, qmp_session, Path(path), stamp, ready=self._ready,
                             resume=resume, timeout=timeout)

    def _stamp(self, arts: artifacts_mod.Artifacts, binary: str) -> dict[str, Any]:
        """What must match between a snapshot and the QEMU that restores it."""
        return snapshot.stamp_for(self, self._argv(arts, runtime_dir=snapshot.RUNTIME), arts, binary)

    @classmethod
    def from_snapshot(cls, path: str | os.PathLike, *, name: str | None = None,
                      artifacts: artifacts_mod.Artifacts | None = None, kernel_args: str = "",
                      qemu_args: Sequence[str] = ()) -> "VM":
        """A VM that `start()` will restore from `path` instead of booting (not started yet).

        From the file's stamp come only values checked like any caller's (memory, vCPUs,
        accelerator). Command-line options are never taken from a file, which anyone can
        write: pass the kernel_args and qemu_args the snapshot was made with; the stamp's
        digest of the whole command line then decides whether the restore may go ahead.
        """
        stamp = snapshot.read_stamp(path)
        vm = cls(memory=stamp["memory_mib"], cpus=stamp["cpus"], accel=stamp["accel"],
                 name=name, arch=stamp["arch"], artifacts=artifacts, kernel_args=kernel_args,
                 qemu_args=qemu_args)
        vm._snapshot_path = Path(path).resolve()
        vm._snapshot_stamp = stamp
        return vm

    @classmethod
    def restore(cls, path: str | os.PathLike, *, name: str | None = None, timeout: float = 60.0,
                on_phase: Callable[[str, float], None] | None = None,
                artifacts: artifacts_mod.Artifacts | None = None, kernel_args: str = "",
                qemu_args: Sequence[str] = ()) -> "VM":
        """Start a new QEMU from a snapshot (`-incoming`) and resume it; returns the VM.

        Its `trace` is the restore's: its `ready` point is the guest agent answering.
        kernel_args and qemu_args: as in `from_snapshot`.
        """
        vm = cls.from_snapshot(path, name=name, artifacts=artifacts, kernel_args=kernel_args,
                               qemu_args=qemu_args)
        vm.start(timeout, on_phase)
        return vm

    # ------------------------------------------------------------ async variants
    async def start_async(self, timeout: float = 60.0,
                          on_phase: Callable[[str, float], None] | None = None) -> Trace:
        """`start` without blocking the caller's event loop."""
        return await asyncio.to_thread(self.start, timeout, on_phase)

    async def stop_async(self, graceful: bool = True) -> None:
        await asyncio.to_thread(self.stop, graceful)

    async def guest_async(self, command: str, timeout: float = 10.0) -> str:
        return await asyncio.to_thread(self.guest, command, timeout)


# ---------------------------------------------------------------- checks

def _check_artifacts(artifacts, arch: arches.Arch) -> artifacts_mod.Artifacts | None:
    if artifacts is not None and not isinstance(artifacts, artifacts_mod.Artifacts):
        raise InvalidInput(
            f"아티팩트(artifacts)에는 vmkit.guest.artifacts.Artifacts를 주어야 합니다 (받은 값: {artifacts!r}).",
            "보통은 비워 두세요: vmkit이 현재 아티팩트를 찾습니다.")
    if artifacts is not None and artifacts.arch != arch.name:
        raise InvalidInput(
            f"아티팩트(artifacts) {artifacts.version}는 아키텍처(architecture) {artifacts.arch}용인데 "
            f"VM은 {arch.name}입니다.", f"arch={artifacts.arch!r}로 만들거나 그 아키텍처의 아티팩트를 주세요.")
    return artifacts


def _check_kernel_args(kernel_args: str) -> str:
    if not isinstance(kernel_args, str):
        raise InvalidInput(f"커널 인자(kernel_args)는 문자열(str)이어야 합니다 (받은 값: {kernel_args!r}).",
                           "예: kernel_args='quiet loglevel=3'")
    if "\n" in kernel_args:
        raise InvalidInput("커널 인자(kernel_args)에는 줄바꿈을 넣을 수 없습니다.")
    return kernel_args.strip()


def _check_free_page_reporting(value: bool | None) -> bool:
    """True or False as given; None: vmkit's default (`qemu.free_page_reporting()`)."""
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(
            f"빈 페이지 보고(free_page_reporting)는 True나 False여야 합니다 (받은 값: {value!r}).",
            "보통은 비워 두세요: 켜져 있으면 게스트가 풀어 준 메모리가 몇 초 안에 호스트로 돌아갑니다.")
    return qemu.free_page_reporting() if value is None else value

def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            f"VM 이름(name) {name!r}은(는) 쓸 수 없습니다.",
            "영문자·숫자로 시작하고 영문자, 숫자, '-', '_', '.'만 써서 32자까지 적어 주세요.")
    return name


def _check_accel(accel: str) -> str:
    value = str(accel).strip().lower()
    if value not in ACCELERATORS:
        raise InvalidInput(
            f"가속기(accelerator) {accel!r}는 알 수 없습니다.",
            "'auto', 'kvm', 'tcg' 중 하나를 고르세요.")
    return value


def resolve_accel(request: str, arch: "arches.Arch | str | None" = None) -> tuple[str, str]:
    """(accelerator, Korean reason) a VM of `arch` asking for `request` ('auto', 'kvm', 'tcg') gets.

    'auto' takes KVM only where a probe boot proved it usable (and the caller may open
    /dev/kvm); the reason for falling back to TCG is kept, for the student to read.
    """
    arch = arches.lookup(arch)
    if request == "tcg":
        return "tcg", "요청대로 TCG(소프트웨어 에뮬레이션)를 씁니다."
    usable, reason = kvm_status() if arch.native else (False, (
        f"KVM을 쓸 수 없습니다: 게스트의 아키텍처(architecture) {arch.name}가 호스트"
        f"({arches.host_arch()})와 달라, 호스트 CPU가 게스트의 명령어를 직접 실행할 수 없습니다."))
    if request == "kvm":
        if not usable:  # the probe's reason already begins "KVM을 쓸 수 없습니다: ..."
            raise MissingComponent(
                f"가속기(accelerator) 요청 accel='kvm' — {reason}",
                "accel='tcg'(느린 소프트웨어 에뮬레이션)나 accel='auto'로 부팅하세요.")
        return "kvm", reason
    if usable:
        return "kvm", f"KVM으로 가속합니다 — {reason}"
    return "tcg", f"TCG(소프트웨어 에뮬레이션)로 대신 실행합니다 — {reason}"


def kvm_status() -> tuple[bool, str]:
    """(usable, reason) from the host probe; never assumes KVM works without it."""
    try:
        from . import accel as probe
        status = probe.kvm_status
    except (ImportError, AttributeError):
        return False, "KVM 검사(probe)를 할 수 없어 KVM이 동작하는지 확인하지 못했습니다."
    return status()


def running() -> list[VM]:
    """The VMs this Python process is running now."""
    return live("vm")
