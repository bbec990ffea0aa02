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
import errno
import hashlib
import itertools
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import psutil

from ..errors import InvalidInput, MissingComponent, WorkloadError, WorkloadTimeout
from ..guest import arches
from ..guest import artifacts as artifacts_mod
from ..host import background, memguard, paths, reaper
from ..units import check_callback, check_seconds, check_strings, format_bytes, parse_cpus, parse_memory
from ..workload import CONSOLE_LINE_MAX, Trace, Usage, Workload, live, parse_meminfo, process_usage
from . import qemu
from .agent_channel import Replies, request_line
from .qmp import QMPSession

MiB = 1 << 20
#: The guest did not boot in 64 MiB; 96 MiB was enough (DESIGN.md).
MIN_MEMORY = 96 * MiB
#: The balloon may not squeeze the guest below this (its kernel and initramfs live in RAM).
MIN_BALLOON = 64 * MiB
ACCELERATORS = ("auto", "kvm", "tcg")
SNAPSHOT_MAGIC = b"VMKIT-SNAPSHOT 1\n"
SNAPSHOT_HEADER = 4096
SNAPSHOT_FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_KERNEL_LINE = re.compile(rb"^\[\s*\d+\.\d+\]|^Linux version ")

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
        if artifacts is not None and not isinstance(artifacts, artifacts_mod.Artifacts):
            raise InvalidInput(
                f"아티팩트(artifacts)에는 vmkit.guest.artifacts.Artifacts를 주어야 합니다 (받은 값: {artifacts!r}).",
                "보통은 비워 두세요: vmkit이 현재 아티팩트를 찾습니다.")
        if artifacts is not None and artifacts.arch != self.arch.name:
            raise InvalidInput(
                f"아티팩트(artifacts) {artifacts.version}는 아키텍처(architecture) {artifacts.arch}용인데 "
                f"VM은 {self.arch.name}입니다.", f"arch={artifacts.arch!r}로 만들거나 그 아키텍처의 아티팩트를 주세요.")
        super().__init__(name=_check_name(name) if name is not None else f"vm-{secrets.token_hex(4)}")
        self.memory_bytes = parse_memory(memory, minimum=MIN_MEMORY)
        self.memory_mib = -(-self.memory_bytes // MiB)
        self.cpus = parse_cpus(cpus)
        self.accel_request = _check_accel(accel)
        self.accel: str | None = None
        self.accel_reason: str | None = None
        if not isinstance(kernel_args, str):
            raise InvalidInput(f"커널 인자(kernel_args)는 문자열(str)이어야 합니다 (받은 값: {kernel_args!r}).",
                               "예: kernel_args='quiet loglevel=3'")
        if "\n" in kernel_args:
            raise InvalidInput("커널 인자(kernel_args)에는 줄바꿈을 넣을 수 없습니다.")
        self.kernel_args = kernel_args.strip()
        self.qemu_args = check_strings(qemu_args, "QEMU 인자(qemu_args)")
        if free_page_reporting is not None and not isinstance(free_page_reporting, bool):
            raise InvalidInput(
                f"빈 페이지 보고(free_page_reporting)는 True나 False여야 합니다 (받은 값: {free_page_reporting!r}).",
                "보통은 비워 두세요: 켜져 있으면 게스트가 풀어 준 메모리가 몇 초 안에 호스트로 돌아갑니다.")
        self.free_page_reporting = (qemu.free_page_reporting() if free_page_reporting is None
                                    else free_page_reporting)
        self.artifacts = artifacts
        self.proc: subprocess.Popen | None = None
        self._spawned: subprocess.Popen | None = None  # kept after stop, for error reports
        self.runtime_dir: Path | None = None
        self.last_stop: dict[str, Any] = {}
        self.last_rc: int | None = None
        self._qmp: QMPSession | None = None
        self._agent: socket.socket | None = None
        self._replies = Replies()
        self._agent_eof = False
        self._agent_cond = threading.Condition()
        self._agent_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._stderr: deque = deque(maxlen=200)
        self._console_cond = threading.Condition()
        self._console_eof = False
        self._threads: list[threading.Thread] = []
        self._dispatch: ThreadPoolExecutor | None = None
        self._stop_lock = threading.RLock()
        self._paused = False
        self._ready = False
        self._graceful = True
        self._stop_requested = False
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
        return self._paused

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
        self._ready = self._paused = self._stop_requested = False
        self._console_eof = self._agent_eof = False
        self._replies = Replies()
        self._stderr.clear()
        # Preflight: everything that can be refused is refused before QEMU starts.
        binary = qemu.qemu_binary(self.arch)
        arts = self.artifacts or artifacts_mod.require(self.arch)
        self.accel, self.accel_reason = resolve_accel(self.accel_request, self.arch)
        trace.accel, trace.accel_reason = self.accel, self.accel_reason
        if self._snapshot_stamp is not None:
            _check_stamp(self._snapshot_stamp, self._stamp(arts, binary), self._snapshot_path)
        cleanup_stale()
        self.runtime_dir = _new_runtime_dir(self.name)
        incoming_fd = None
        if self._snapshot_path is not None:
            incoming_fd = os.open(self._snapshot_path, os.O_RDONLY | os.O_CLOEXEC)
            os.lseek(incoming_fd, SNAPSHOT_HEADER, os.SEEK_SET)
        argv = self._argv(arts, incoming=f"fd:{incoming_fd}" if incoming_fd is not None else None)
        self._dispatch = ThreadPoolExecutor(1, thread_name_prefix=f"vmkit-{self.name}-events")
        trace.origin = time.monotonic()
        rundir = self.runtime_dir
        try:
            proc = self.proc = self._spawned = background.spawn(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                bufsize=0, cwd=str(rundir),
                pass_fds=(incoming_fd,) if incoming_fd is not None else ())
        finally:
            if incoming_fd is not None:
                os.close(incoming_fd)
        self._track()
        self._threads = [
            threading.Thread(target=self._read_console, args=(proc, trace),
                             name=f"vmkit-{self.name}-console", daemon=True),
            threading.Thread(target=self._read_stderr, args=(proc,),
                             name=f"vmkit-{self.name}-stderr", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        # From here on, stop() may run on another thread at any moment (a widget's Stop
        # button): whatever the boot then trips over, the student sees why it ended.
        try:
            trace.mark("spawned")
            _write_owner(rundir, self.name, proc.pid)
            self._boot(trace, rundir, deadline, timeout)
        except Exception as exc:
            if self._stop_requested:
                raise WorkloadError(f"VM '{self.name}'이(가) 준비(ready)되기 전에 stop()으로 중지되었습니다.") from exc
            if not isinstance(exc, WorkloadError) or isinstance(exc, WorkloadTimeout):
                raise
            if proc.poll() is not None:
                raise self._died_error() from exc
            raise

    def _boot(self, trace: Trace, rundir: Path, deadline: float, timeout: float) -> None:
        proc = self._spawned
        qmp_session = self._qmp = QMPSession(f"vmkit-{self.name}", on_event=self._on_qmp_event)
        qmp_session.connect(rundir / "qmp.sock", deadline, alive=lambda: proc.poll() is None)
        trace.mark("qmp_ready")
        self._connect_agent(rundir, deadline)
        restoring = self._snapshot_path is not None
        if restoring:
            self._wait_incoming(qmp_session, deadline)
            trace.mark("restored")
        qmp_session.execute("cont")
        trace.mark("resumed")
        if not restoring:
            self._wait_marker(deadline, timeout)
        uptime = self._handshake(deadline, timeout)
        self._ready = True
        trace.mark("ready" if restoring else "agent")
        trace.guest["uptime_s"] = uptime
        trace.guest.update(self._guest_info(max(deadline - time.monotonic(), 5.0)))
        if restoring:
            trace.guest["restored_from"] = str(self._snapshot_path)
            trace.guest["uptime_at_snapshot_s"] = self._snapshot_stamp.get("guest_uptime_s")

    def _argv(self, arts: artifacts_mod.Artifacts, incoming: str | None = None,
              runtime_dir: Path | None = None) -> list[str]:
        rundir = runtime_dir or self.runtime_dir
        machine = qemu.Machine(memory_mib=self.memory_mib, cpus=self.cpus, accel=self.accel,
                               free_page_reporting=self.free_page_reporting)
        argv = qemu.argv(machine, arts, qmp_socket=rundir / "qmp.sock",
                         agent_socket=rundir / "agent.sock", paused=True, incoming=incoming,
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
                    since = started
                    method = self._shutdown(proc)
                    shutdown_event = self.wait_event("SHUTDOWN", 0.2, since=since) is not None
            finally:
                if proc.poll() is None:
                    proc.kill()
                    method = "kill"
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
                if self._qmp is not None:
                    self._qmp.close()
                    self._qmp = None
                if self._agent is not None:
                    try:
                        self._agent.close()
                    except OSError:
                        pass
                    self._agent = None
                with self._agent_cond:
                    self._agent_eof = True
                    self._agent_cond.notify_all()
                for thread in self._threads:
                    # Not started: an interrupt (KeyboardInterrupt) landed in the loop starting them.
                    if thread is not threading.current_thread() and thread.ident is not None:
                        thread.join(2)
                for stream in (proc.stdin, proc.stdout, proc.stderr):
                    try:
                        stream and stream.close()
                    except OSError:
                        pass
                if self._dispatch is not None:
                    self._dispatch.shutdown(wait=False)
                self.last_stop = {"method": method, "seconds": time.monotonic() - started,
                                  "shutdown_event": shutdown_event,
                                  "returncode": proc.returncode}
                self._ready = False
                self.proc = None
                self._untrack()
                self._remove_runtime_dir()

    def _shutdown(self, proc: subprocess.Popen) -> str:
        """Power off from inside the guest, else QMP quit; returns how it ended."""
        if self._graceful and self._ready and not self._paused and self._agent is not None:
            try:
                self._agent.sendall(request_line(str(next(self._ids)).encode(), 5, "poweroff"))
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

    # ------------------------------------------------------------ console and stderr
    def _read_console(self, proc: subprocess.Popen, trace: Trace) -> None:
        fd = proc.stdout.fileno()
        partial = b""
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            now = time.monotonic()
            booting = "ready" not in trace.phases and self._snapshot_path is None
            if booting:
                trace.mark("console", now)
            partial += data
            *lines, partial = partial.split(b"\n")
            if len(partial) > CONSOLE_LINE_MAX:
                lines.append(partial)
                partial = b""
            for raw in lines:
                self._console_line(raw, now, trace, booting)
            if booting and qemu.READY_MARKER.encode() in partial:
                with self._console_cond:
                    trace.mark("ready", now)
                    self._console_cond.notify_all()
        if partial:
            self._console_line(partial, time.monotonic(), trace, False)
        with self._console_cond:
            self._console_eof = True
            self._console_cond.notify_all()

    def _console_line(self, raw: bytes, now: float, trace: Trace, booting: bool) -> None:
        raw = raw.rstrip(b"\r")
        if booting and _KERNEL_LINE.match(raw):
            trace.mark("kernel", now)
        line = raw.decode("utf-8", "replace")
        trace.console.append(line)
        if booting and qemu.READY_MARKER in line:
            with self._console_cond:
                trace.mark("ready", now)
                self._console_cond.notify_all()
        for callback in list(self._console_listeners):
            try:
                callback(line)
            except Exception:
                pass

    def _read_stderr(self, proc: subprocess.Popen) -> None:
        for raw in iter(proc.stderr.readline, b""):
            self._stderr.append(raw.decode("utf-8", "replace").rstrip())

    def _wait_marker(self, deadline: float, timeout: float) -> None:
        trace = self.trace
        with self._console_cond:
            while "ready" not in trace.phases:
                if self._console_eof or self._spawned.poll() is not None:
                    raise self._died_error()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WorkloadTimeout(
                        f"게스트(guest)가 {timeout:g}초 안에 준비(ready)되지 않았습니다: "
                        f"콘솔(console)에 {qemu.READY_MARKER}가 나오지 않았습니다.",
                        "커널 인자(kernel_args)나 메모리 크기를 확인하세요. 마지막 콘솔 출력을 보세요.",
                        log=self._last_console())
                self._console_cond.wait(min(remaining, 0.1))

    def _last_console(self, lines: int = 25) -> str:
        return "\n".join(list(self.trace.console)[-lines:]) if self.trace else ""

    def _died_error(self) -> WorkloadError:
        proc = self._spawned
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            pass
        for thread in self._threads:
            thread.join(1)
        stderr = "\n".join(self._stderr)
        log = ""
        if stderr:
            log += f"[QEMU stderr]\n{stderr}\n"
        console = self._last_console()
        if console:
            log += f"[콘솔(console)]\n{console}"
        return WorkloadError(
            f"QEMU가 종료되었습니다 (종료 코드 exit code {proc.returncode}).",
            "아래 QEMU 오류 출력(stderr)과 콘솔 출력을 확인하세요.", log=log.strip())

    # ------------------------------------------------------------ guest agent
    def _connect_agent(self, rundir: Path, deadline: float) -> None:
        path = str(rundir / "agent.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        while True:
            try:
                sock.connect(path)
                break
            except OSError:
                if time.monotonic() >= deadline or self._spawned.poll() is not None:
                    sock.close()
                    raise WorkloadError("게스트 에이전트(agent) 소켓에 연결하지 못했습니다.")
                time.sleep(0.005)
        self._agent = sock
        thread = threading.Thread(target=self._read_agent, args=(sock,),
                                  name=f"vmkit-{self.name}-agent", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _read_agent(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            with self._agent_cond:
                if not data:
                    self._agent_eof = True
                    self._agent_cond.notify_all()
                    return
                self._replies.feed(data)
                self._agent_cond.notify_all()

    def _request(self, command: str, timeout: float, retry: bool = False) -> tuple[int, str]:
        """Send one request to the agent and wait for its answer: (exit status, output).

        retry=True resends (new id, growing interval) until answered: the agent opens its
        port just after printing VMKIT-READY, and virtio-serial drops what arrives earlier.
        The agent kills the command when `timeout` runs out, so the next request is not
        stuck behind it; an answer keeps at most `agent_channel.OUTPUT_LIMIT` bytes.
        """
        agent = self._agent
        if agent is None:
            raise WorkloadError(f"VM '{self.name}'이(가) 실행 중이 아닙니다.", "먼저 start() 하세요.")
        deadline = time.monotonic() + timeout
        interval = 0.025
        wanted: set[bytes] = set()
        with self._agent_lock:
            try:
                while True:
                    rid = str(next(self._ids)).encode()
                    with self._agent_cond:
                        wanted.add(rid)
                        self._replies.want(rid)
                    try:
                        agent.sendall(request_line(rid, deadline - time.monotonic(), command))
                    except OSError:
                        raise WorkloadError("게스트 에이전트(agent) 연결이 끊겼습니다.") from None
                    resend_at = time.monotonic() + interval if retry else deadline
                    interval = min(interval * 2, 1.0)
                    with self._agent_cond:
                        while True:
                            answer = next((self._replies.answers[rid] for rid in wanted
                                           if rid in self._replies.answers), None)
                            if answer is not None and not answer.killed:
                                return answer.rc, answer.text()
                            if self._agent_eof or self._spawned.poll() is not None:
                                raise WorkloadError("게스트 에이전트(agent) 연결이 끊겼습니다: VM이 종료되었을 수 있습니다.")
                            if retry and wanted & self._replies.begun:
                                resend_at = deadline  # received; the guest is working on it
                            now = time.monotonic()
                            if now >= deadline or answer is not None:
                                raise WorkloadTimeout(
                                    f"게스트 명령(command) {command!r}이(가) {timeout:g}초 안에 끝나지 않아 "
                                    "게스트 안에서 강제 종료했습니다 (killed).")
                            if now >= resend_at:
                                break
                            self._agent_cond.wait(min(deadline, resend_at) - now)
            finally:
                with self._agent_cond:
                    self._replies.forget(wanted)

    def _handshake(self, deadline: float, timeout: float) -> float:
        """The first answer on the agent channel: the guest's uptime in seconds.

        `vmkit-uptime` is the agent's builtin (no process started in the guest).
        """
        remaining = max(deadline - time.monotonic(), 0.5)
        try:
            _, out = self._request("vmkit-uptime", remaining, retry=True)
            return float(out.split()[0])
        except (WorkloadTimeout, ValueError, IndexError):
            raise WorkloadTimeout(
                f"게스트(guest)의 에이전트(agent)가 {timeout:g}초 안에 응답하지 않았습니다.",
                log=self._last_console()) from None

    def _guest_info(self, timeout: float) -> dict[str, Any]:
        """What the guest reports about itself: kernel release, machine (`uname -m`), memory."""
        _, out = self._request("uname -r; uname -m; cat /proc/meminfo", timeout)
        lines = out.splitlines() + ["", ""]
        mem = parse_meminfo("\n".join(lines[2:]))
        return {"kernel": lines[0].strip(), "machine": lines[1].strip(),
                "mem_total_bytes": mem.get("MemTotal"),
                "mem_available_bytes": mem.get("MemAvailable")}

    def guest(self, command: str, timeout: float = 10.0, check: bool = False) -> str:
        """Run a shell command in the guest (over virtio-serial) and return its output.

        The exit status is kept in `last_rc`; check=True raises WorkloadError if it is not 0.
        """
        if self._paused:
            raise WorkloadError(f"VM '{self.name}'이(가) 일시 정지(paused) 상태라 명령을 실행할 수 없습니다.",
                                "resume()으로 다시 실행하세요.")
        rc, out = self._request(command, timeout)
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
        args = {key.replace("_", "-"): value for key, value in kwargs.items()}
        args.update(arguments or {})
        return self._require_qmp().execute(command, args, timeout=30.0)

    async def qmp_async(self, command: str, arguments: dict | None = None, **kwargs) -> Any:
        """`qmp` for callers awaiting on their own event loop."""
        args = {key.replace("_", "-"): value for key, value in kwargs.items()}
        args.update(arguments or {})
        return await self._require_qmp().execute_async(command, args)

    def _on_qmp_event(self, event: dict) -> None:
        """On the loop thread: update state now, hand the event to listeners on our thread."""
        name = event.get("event")
        if name == "STOP":
            self._paused = True
        elif name == "RESUME":
            self._paused = False
        dispatch = self._dispatch
        if dispatch is not None:
            try:
                dispatch.submit(self._emit, event)
            except RuntimeError:  # shut down while stopping
                pass

    def iter_events(self, timeout: float | None = None,
                    names: Sequence[str] | None = None) -> Iterator[dict]:
        """Yield QMP events as they arrive, until `timeout` seconds pass without one."""
        import queue

        inbox: queue.Queue = queue.Queue()
        unsubscribe = self.on_event(inbox.put)
        try:
            while True:
                try:
                    event = inbox.get(timeout=timeout)
                except queue.Empty:
                    return
                if names is None or event.get("event") in names:
                    yield event
        finally:
            unsubscribe()

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

    def memory(self) -> dict[str, int]:
        """Guest RAM as QEMU sees it: base size and the balloon's current size."""
        summary = self.qmp("query-memory-size-summary")
        balloon = self.qmp("query-balloon")
        return {"base_bytes": summary["base-memory"],
                "plugged_bytes": summary.get("plugged-memory", 0),
                "balloon_actual_bytes": balloon["actual"]}

    def vcpus(self) -> list[dict[str, Any]]:
        """Each vCPU and the host thread that runs it, with that thread's CPU seconds.

        The hypervisor schedules vCPUs as ordinary host threads. Under single-threaded
        TCG all vCPUs share one host thread.
        """
        cpus = self.qmp("query-cpus-fast")
        threads = {t["tid"]: t for t in self.host_threads()}
        result = []
        for cpu in cpus:
            thread = threads.get(cpu.get("thread-id"), {})
            result.append({"index": cpu.get("cpu-index"), "thread_id": cpu.get("thread-id"),
                           "thread_name": thread.get("name"), "user_s": thread.get("user_s"),
                           "system_s": thread.get("system_s")})
        return result

    def host_threads(self) -> list[dict[str, Any]]:
        """QEMU's host threads: id, name (e.g. 'CPU 0/KVM', 'ALL CPUs/TCG'), CPU seconds."""
        pid = self.pid
        if pid is None:
            return []
        result = []
        try:
            for thread in psutil.Process(pid).threads():
                try:
                    name = Path(f"/proc/{pid}/task/{thread.id}/comm").read_text().strip()
                except OSError:
                    name = ""
                result.append({"tid": thread.id, "name": name, "user_s": thread.user_time,
                               "system_s": thread.system_time})
        except psutil.Error:
            pass
        return result

    def balloon(self, target: str | int, wait: bool = True, timeout: float = 20.0) -> dict[str, Any]:
        """Move guest RAM back to the host with virtio-balloon: shrink the guest to `target`.

        Returns the target, the size reached and how long it took. A larger target gives
        memory back to the guest (up to its configured size).
        """
        size = parse_memory(target, minimum=MIN_BALLOON, what="풍선(balloon) 목표 메모리")
        if size > self.memory_bytes:
            raise InvalidInput(
                f"풍선(balloon) 목표 {format_bytes(size)}는 이 VM의 메모리 "
                f"{format_bytes(self.memory_bytes)}보다 클 수 없습니다.")
        started = time.monotonic()
        self.qmp("balloon", value=size)
        actual = self.qmp("query-balloon")["actual"]
        while wait and not self._paused and abs(actual - size) >= MiB \
                and time.monotonic() - started < timeout:
            time.sleep(0.05)
            actual = self.qmp("query-balloon")["actual"]
        return {"target_bytes": size, "actual_bytes": actual,
                "reached": abs(actual - size) < MiB, "seconds": time.monotonic() - started}

    # ------------------------------------------------------------ measuring
    def usage(self) -> VMUsage:
        """Host cost of the QEMU process (RSS, PSS, CPU) and the guest's own memory view."""
        pid = self.pid
        base = process_usage([pid] if pid else [])
        usage = VMUsage(**base.to_dict(), accel=self.accel, accel_reason=self.accel_reason,
                        guest_ram_bytes=self.memory_bytes)
        if pid and self._ready and not self._paused:
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
        path = Path(path)
        arts = self.artifacts or artifacts_mod.require(self.arch)
        was_running = self.status() == "running"
        stamp = self._stamp(arts, qemu.qemu_binary(self.arch))
        stamp["name"] = self.name
        stamp["created"] = time.time()
        if was_running and self._ready:
            try:
                stamp["guest_uptime_s"] = float(self.guest("cat /proc/uptime", 5).split()[0])
            except (WorkloadError, ValueError, IndexError):
                pass
        header = SNAPSHOT_MAGIC + json.dumps(stamp).encode() + b"\n"
        if len(header) > SNAPSHOT_HEADER:
            raise WorkloadError("스냅샷 헤더(header)가 너무 큽니다 (qemu_args가 너무 깁니다).")
        started = time.monotonic()
        if was_running:
            self.pause()
        saved = False
        try:
            self._write_snapshot(qmp_session, path, header, timeout)
            saved = True
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                raise self._no_space_error(path) from None
            raise WorkloadError(f"스냅샷 파일(snapshot file) '{path}'을(를) 쓸 수 없습니다: "
                                f"{exc.strerror or exc}",
                                "쓸 수 있는 디렉터리(directory)와 남은 디스크 공간을 확인하세요.") from None
        finally:
            if was_running and (resume or not saved) and self.running:
                self.resume()  # a failed snapshot never leaves the guest paused
        seconds = time.monotonic() - started
        return {"path": str(path), "bytes": path.stat().st_size, "seconds": seconds,
                "guest_uptime_s": stamp.get("guest_uptime_s")}

    def _write_snapshot(self, qmp_session: QMPSession, path: Path, header: bytes,
                        timeout: float) -> None:
        """The header, then QEMU's migration stream through a passed fd; renamed into place."""
        partial = path.with_name(path.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, header.ljust(SNAPSHOT_HEADER, b"\0"))
            fdname = f"snapshot{next(self._ids)}"
            qmp_session.send_fd(fd, fdname)
            self.qmp("migrate-set-parameters", max_bandwidth=1 << 40)
            self.qmp("migrate", uri=f"fd:{fdname}")
            self._wait_migration(timeout)
        except BaseException as exc:
            full = isinstance(exc, Exception) and _out_of_space(partial, exc)  # before unlinking
            try:
                self.qmp("migrate_cancel")
            except WorkloadError:
                pass
            partial.unlink(missing_ok=True)
            if full:
                raise self._no_space_error(path) from exc
            raise
        finally:
            os.close(fd)
        os.replace(partial, path)

    def _no_space_error(self, path: Path) -> WorkloadError:
        return WorkloadError(
            f"스냅샷 파일(snapshot file) '{path}'을(를) 저장하지 못했습니다: 디스크 공간(disk space)이 "
            "부족합니다 (No space left on device). 쓰다 만 파일(partial file)은 지웠고 VM은 그대로입니다.",
            f"'{path.parent}'에 공간을 마련하거나 공간이 넉넉한 다른 디렉터리(directory)에 저장하세요. "
            f"스냅샷에는 대략 게스트가 쓰는 메모리만큼(이 VM은 최대 {format_bytes(self.memory_bytes)}) "
            "공간이 필요합니다.")

    def _wait_migration(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            info = self.qmp("query-migrate")
            status = info.get("status")
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                raise WorkloadError(f"스냅샷(snapshot) 저장이 실패했습니다: {info.get('error-desc', status)}")
            if time.monotonic() >= deadline:
                raise WorkloadTimeout(f"스냅샷(snapshot) 저장이 {timeout:g}초 안에 끝나지 않았습니다.")
            time.sleep(0.01)

    def _wait_incoming(self, qmp_session: QMPSession, deadline: float) -> None:
        while qmp_session.execute("query-status")["status"] == "inmigrate":
            if self._spawned.poll() is not None:
                raise self._died_error()
            if time.monotonic() >= deadline:
                raise WorkloadTimeout("스냅샷(snapshot) 적재(load)가 제때 끝나지 않았습니다.",
                                      log="\n".join(self._stderr))
            time.sleep(0.005)
        if self._spawned.poll() is not None:
            raise self._died_error()

    def _stamp(self, arts: artifacts_mod.Artifacts, binary: str) -> dict[str, Any]:
        """What must match between a snapshot and the QEMU that restores it."""
        argv = self._argv(arts, runtime_dir=Path("/RUNTIME"))
        argv[0] = self.arch.qemu
        argv = [arg.replace(str(arts.root), "/ARTIFACTS") for arg in argv]
        argv = [arg.replace(f"{self.name},debug-threads", "NAME,debug-threads") for arg in argv]
        digest = hashlib.sha256(json.dumps(argv).encode()).hexdigest()[:16]
        return {"format": SNAPSHOT_FORMAT, "arch": self.arch.name, "artifacts": arts.version,
                "kernel_release": arts.kernel_release, "qemu_version": qemu.qemu_version(binary),
                "memory_mib": self.memory_mib, "cpus": self.cpus, "accel": self.accel,
                "kernel_args": self.kernel_args, "qemu_args": list(self.qemu_args),
                "options": digest}

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
        stamp = read_snapshot_stamp(path)
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


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _out_of_space(partial: Path, exc: Exception) -> bool:
    """Whether writing `partial` failed for want of disk space (checked while it still exists).

    An OSError says so by its errno. QEMU's migration reports its write error as text
    ("Unable to write to file: No space left on device"); failing that, a file system left
    with under 1 MiB free tells the same.
    """
    if isinstance(exc, OSError):
        return exc.errno in _NO_SPACE
    if not isinstance(exc, WorkloadError):
        return False
    if any(os.strerror(code) in str(exc) for code in _NO_SPACE):
        return True
    try:
        found = os.statvfs(partial.parent)
    except OSError:
        return False
    return found.f_bavail * found.f_frsize < MiB


def read_snapshot_stamp(path: str | os.PathLike) -> dict[str, Any]:
    """The compatibility stamp at the start of a vmkit snapshot file."""
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            head = stream.read(SNAPSHOT_HEADER)
    except FileNotFoundError:
        raise InvalidInput(f"스냅샷 파일(snapshot file) '{path}'이(가) 없습니다.") from None
    except OSError as exc:
        raise InvalidInput(f"스냅샷 파일(snapshot file) '{path}'을(를) 읽을 수 없습니다: {exc.strerror}") from None
    if not head.startswith(SNAPSHOT_MAGIC):
        raise InvalidInput(f"'{path}'은(는) vmkit 스냅샷(snapshot) 파일이 아닙니다.",
                           "vm.snapshot(path)로 만든 파일을 주세요.")
    try:
        stamp = json.loads(head[len(SNAPSHOT_MAGIC):].split(b"\n", 1)[0])
        if stamp.get("format") != SNAPSHOT_FORMAT:
            raise ValueError
        int(stamp["memory_mib"]), int(stamp["cpus"]), str(stamp["accel"])
        stamp.setdefault("arch", arches.DEFAULT)  # made before there were two architectures
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InvalidInput(f"스냅샷(snapshot) '{path}'의 헤더(header)가 손상되었거나 다른 형식입니다.") from None
    return stamp


def _check_stamp(saved: dict, current: dict, path: Path | None) -> None:
    """Refuse a snapshot whose artifacts, QEMU or options differ from this restore's."""
    checks = [
        ("arch", "아키텍처(architecture)", "스냅샷을 만든 VM과 같은 arch로 복원하세요."),
        ("artifacts", "게스트 아티팩트(artifacts: 커널·initramfs)", "같은 아티팩트로 새로 부팅해서 스냅샷을 다시 만드세요."),
        ("qemu_version", "QEMU 버전(version)", "스냅샷을 만든 것과 같은 QEMU로 복원하세요."),
        ("options", "QEMU 옵션(options: 머신·장치·커널 인자)", "같은 vmkit과 같은 설정으로 스냅샷을 다시 만드세요."),
    ]
    for key, what, hint in checks:
        if key == "options" and (saved.get("qemu_args") or saved.get("kernel_args")):
            hint = (f"이 스냅샷의 헤더(header)에는 qemu_args={saved.get('qemu_args')!r}, "
                    f"kernel_args={saved.get('kernel_args')!r}라고 적혀 있습니다. vmkit은 파일에 적힌 "
                    "옵션을 QEMU에 넘기지 않습니다(보안). 믿을 수 있는 값이면 "
                    "VM.restore(path, qemu_args=..., kernel_args=...)로 직접 주세요.")
        if saved.get(key) != current.get(key):
            raise InvalidInput(
                f"스냅샷(snapshot) '{path}'은(는) 다른 {what}로 만들어져 복원(restore)할 수 없습니다: "
                f"스냅샷 {saved.get(key)!r} ≠ 지금 {current.get(key)!r}", hint)


# ---------------------------------------------------------------- runtime directories

def runtime_root() -> Path:
    """Where each running VM keeps its sockets (0700): `state_dir()/run`.

    Unix socket paths are limited to about 100 bytes, so a long state dir falls back
    to a private directory under /tmp.
    """
    root = paths.state_dir() / "run"
    if len(str(root)) > 60:
        root = Path(tempfile.gettempdir()) / f"vmkit-{os.getuid()}" / "run"
        paths.private_dir(root.parent)
    return paths.private_dir(root)


def _new_runtime_dir(name: str) -> Path:
    path = runtime_root() / name
    for _ in range(2):
        try:
            path.mkdir(mode=0o700)
            path.chmod(0o700)
            return path
        except FileExistsError:
            if _owner_alive(path):
                raise InvalidInput(f"이름(name)이 '{name}'인 VM이 이미 실행 중입니다.",
                                   "다른 이름을 주거나 name을 비워 두세요.") from None
            shutil.rmtree(path, ignore_errors=True)
    raise WorkloadError(f"실행 디렉터리(runtime dir) {path}를 만들 수 없습니다.")


def _write_owner(path: Path, name: str, qemu_pid: int) -> None:
    me = psutil.Process()
    (path / "owner.json").write_text(json.dumps(
        {"name": name, "pid": me.pid, "pid_start": me.create_time(), "qemu_pid": qemu_pid}))


def _owner_alive(path: Path) -> bool:
    try:
        owner = json.loads((path / "owner.json").read_text())
    except (OSError, ValueError):
        # Being created right now, or left half-made long ago.
        try:
            return time.time() - path.stat().st_mtime < 60
        except OSError:
            return False
    try:
        proc = psutil.Process(owner["pid"])
        # A zombie has ended (SIGKILLed, its parent not yet told): its VMs are gone.
        return abs(proc.create_time() - owner["pid_start"]) < 1.0 and \
            proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, KeyError, TypeError):
        return False


def cleanup_stale() -> list[str]:
    """Remove runtime dirs whose owning Python process is gone (and any QEMU left in them).

    Returns the names of the VMs cleaned up. Running VMs of live processes are untouched.
    """
    removed = []
    root = runtime_root()
    for path in root.iterdir():
        if not path.is_dir() or _owner_alive(path):
            continue
        try:
            qemu_pid = json.loads((path / "owner.json").read_text()).get("qemu_pid")
            proc = psutil.Process(qemu_pid)
            if any(str(path) in arg for arg in proc.cmdline()):
                proc.kill()
                proc.wait(5)
        except (OSError, ValueError, TypeError, psutil.Error):
            pass
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed


def running() -> list[VM]:
    """The VMs this Python process is running now."""
    return live("vm")
