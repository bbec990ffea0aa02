"""Drive the class hub from outside: start it, start students' servers, run a notebook in each.

Used by tests/test_class_hub.py and benchmarks/class_hub.py, and by an instructor as a smoke
test of a new deployment (run as root, with the students already created):

    .venv/bin/python deploy/jupyterhub/classrun.py labs/01-vm-and-container.ipynb kim lee park

`Hub` starts `jupyterhub -f jupyterhub_config.py` on 127.0.0.1 with a service token and talks
to its REST API; `run_notebook` uploads a notebook into a student's server (Contents API) and
executes its code cells one by one in a new kernel over the kernel's websocket, as JupyterLab
would; `Sampler` watches, once a second, the processes of each student's cgroup (uid, PSS,
what they are) while the notebooks run.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from vmkit_class import StudentCgroup  # noqa: E402


def free_port() -> int:
    """A free TCP port on 127.0.0.1 whose next two (the proxy's API, the hub) are free too."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with socket.socket() as other:
            try:
                other.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue


class HubError(RuntimeError):
    pass


class Hub:
    """The class hub as a child process, and a client of its REST API (as the service)."""

    def __init__(self, state: Path, prefix: str = "/opt/vmkit-class", **env: str):
        self.state = state
        self.port = free_port()
        self.token = secrets.token_hex(32)
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "VMKIT_HUB_STATE": str(state), "VMKIT_HUB_PORT": str(self.port),
                    "VMKIT_HUB_SERVICE_TOKEN": self.token, "VMKIT_CLASS_PREFIX": prefix, **env}
        self.proc: subprocess.Popen | None = None
        self.proxy_pid: int | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start the hub and wait for its API; on failure nothing it started is left."""
        self.state.mkdir(parents=True, exist_ok=True)
        jupyterhub = Path(sys.executable).with_name("jupyterhub")
        self.log = open(self.state / "hub.log", "ab")
        self.proc = subprocess.Popen(
            [str(jupyterhub), "-f", str(HERE / "jupyterhub_config.py")], cwd=self.state,
            env=self.env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._find_proxy()
                if self.proc.poll() is not None:
                    raise HubError(f"the hub exited ({self.proc.returncode}): {self.log_tail()}")
                try:
                    self.api("GET", "/")  # the version: needs no scope
                    break
                except (OSError, HubError):
                    if time.monotonic() > deadline:
                        raise HubError(f"the hub did not answer in {timeout} s: {self.log_tail()}")
                    time.sleep(0.3)
        except BaseException:
            self.stop()
            raise

    def _find_proxy(self) -> None:
        """Remember the proxy's pid (a failed hub leaves it behind, so it is stopped by pid)."""
        if self.proxy_pid is None:
            try:
                for child in psutil.Process(self.proc.pid).children(recursive=True):
                    if "configurable-http-proxy" in " ".join(child.cmdline()):
                        self.proxy_pid = child.pid
            except psutil.Error:
                pass

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.state / "hub.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def api(self, method: str, path: str, body: dict | None = None, timeout: float = 30.0):
        """Call the hub's REST API (`/hub/api` + path) as the service; the decoded answer."""
        return http(method, f"{self.url}/hub/api{path}", self.token, body, timeout)

    def add_user(self, name: str) -> None:
        try:
            self.api("POST", f"/users/{name}")
        except HubError as exc:
            if "409" not in str(exc):  # already there
                raise

    def start_server(self, name: str, timeout: float = 180.0) -> None:
        self.api("POST", f"/users/{name}/server")
        deadline = time.monotonic() + timeout
        while True:
            server = self.api("GET", f"/users/{name}").get("servers", {}).get("")
            if server and server.get("ready"):
                return
            if time.monotonic() > deadline:
                raise HubError(f"{name}'s server did not become ready: {self.log_tail()}")
            time.sleep(0.5)

    def stop_server(self, name: str, timeout: float = 120.0) -> None:
        try:
            self.api("DELETE", f"/users/{name}/server")
        except HubError as exc:
            if "400" not in str(exc):  # not running
                raise
        deadline = time.monotonic() + timeout
        while self.api("GET", f"/users/{name}").get("servers"):
            if time.monotonic() > deadline:
                raise HubError(f"{name}'s server did not stop: {self.log_tail()}")
            time.sleep(0.5)

    def server_url(self, name: str) -> str:
        return f"{self.url}/user/{name}/"

    def pids(self) -> list[int]:
        """The hub's and the proxy's pids, those still alive."""
        return [pid for pid in (self.proc.pid if self.proc else None, self.proxy_pid)
                if pid and psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the hub (it stops the proxy it started); SIGKILL what is left, by pid."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proxy_pid and psutil.pid_exists(self.proxy_pid):
            try:
                proxy = psutil.Process(self.proxy_pid)
                proxy.terminate()
                proxy.wait(10)
            except psutil.TimeoutExpired:
                proxy.kill()
            except psutil.NoSuchProcess:
                pass
        self.log.close()


def http(method: str, url: str, token: str, body: dict | None = None, timeout: float = 30.0):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"token {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            payload = answer.read()
    except urllib.error.HTTPError as exc:
        raise HubError(f"{method} {url}: {exc.code} {exc.read()[:500]!r}") from None
    return json.loads(payload) if payload else None


# ------------------------------------------------------------------ notebooks in a server

@dataclass
class CellRun:
    index: int  # the cell's position in the notebook
    status: str  # "ok" or "error"
    error: str = ""
    stdout: str = ""


@dataclass
class NotebookRun:
    student: str
    seconds: float = 0.0
    cells: list[CellRun] = field(default_factory=list)

    @property
    def errors(self) -> list[CellRun]:
        return [cell for cell in self.cells if cell.status != "ok"]


def upload(server_url: str, token: str, name: str, notebook: dict) -> None:
    http("PUT", f"{server_url}api/contents/{name}", token,
         {"type": "notebook", "format": "json", "content": notebook})


class Kernel:
    """A kernel in a student's server, driven over its websocket channels."""

    def __init__(self, server_url: str, token: str):
        self.server_url, self.token = server_url, token
        self.session = uuid.uuid4().hex
        self.id: str | None = None
        self.ws = None

    async def __aenter__(self) -> Kernel:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        answer = await asyncio.to_thread(http, "POST", f"{self.server_url}api/kernels",
                                         self.token, {"name": "python3"})
        self.id = answer["id"]
        ws_url = self.server_url.replace("http://", "ws://") + \
            f"api/kernels/{self.id}/channels?session_id={self.session}"
        self.ws = await websocket_connect(HTTPRequest(
            ws_url, headers={"Authorization": f"token {self.token}"}), max_message_size=1 << 26)
        return self

    async def __aexit__(self, *exc) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.id:
            await asyncio.to_thread(http, "DELETE", f"{self.server_url}api/kernels/{self.id}",
                                    self.token, None, 120.0)

    async def execute(self, code: str, timeout: float = 600.0) -> CellRun:
        """Run `code`; wait for its reply and for the kernel to be idle again."""
        msg_id = uuid.uuid4().hex
        await self.ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": self.session,
                       "username": "vmkit-class", "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": False}}))
        run, replied, idle = CellRun(-1, "ok"), False, False
        deadline = time.monotonic() + timeout
        while not (replied and idle):
            raw = await asyncio.wait_for(self.ws.read_message(), deadline - time.monotonic())
            if raw is None:
                raise HubError("the kernel's websocket closed")
            if isinstance(raw, bytes):
                continue  # a message with binary buffers (widgets' comms), never a reply
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["header"]["msg_type"], message["content"]
            if kind == "execute_reply":
                replied = True
                if content["status"] != "ok":
                    run.status = "error"
                    run.error = f"{content.get('ename')}: {content.get('evalue')}"
            elif kind == "status" and content.get("execution_state") == "idle":
                idle = True
            elif kind == "stream" and content.get("name") == "stdout":
                run.stdout += content["text"]
        return run


async def run_notebook(server_url: str, token: str, student: str, notebook: dict,
                       name: str = "lab.ipynb", extra_cells: tuple[str, ...] = ()) -> NotebookRun:
    """Upload `notebook` as `name` and run its code cells (then `extra_cells`) in a new kernel."""
    await asyncio.to_thread(upload, server_url, token, name, notebook)
    result = NotebookRun(student)
    start = time.monotonic()
    async with Kernel(server_url, token) as kernel:
        for index, cell in enumerate(notebook["cells"]):
            if cell["cell_type"] == "code":
                run = await kernel.execute("".join(cell["source"]))
                run.index = index
                result.cells.append(run)
        result.seconds = time.monotonic() - start
        for code in extra_cells:
            result.cells.append(await kernel.execute(code))
    return result


# ------------------------------------------------------------------ what the students run

@dataclass
class Peak:
    """One student's largest total PSS seen, and its parts at that moment."""

    pss_bytes: int = 0
    parts: dict[str, int] = field(default_factory=dict)
    cgroup_bytes: int = 0


def role(proc: psutil.Process) -> str:
    """What a process of a student's server is, for the memory breakdown."""
    cmdline = " ".join(proc.cmdline())
    name = proc.name()
    if name.startswith("qemu-system"):
        return "vm"
    if "ipykernel" in cmdline:
        return "kernel"
    if "jupyterhub-singleuser" in cmdline:
        return "server"
    if name in ("podman", "conmon", "catatonit", "slirp4netns") or "podman" in cmdline:
        return "engine"
    if "vmkit-singleuser" in cmdline:
        return "launcher"
    return "container"


class Sampler:
    """Once a second: each student's processes (via the cgroup), their uids, PSS and roles;
    and the CPU time of each student's cgroup and QEMU processes over the whole run."""

    def __init__(self, students: dict[str, int], interval: float = 1.0):
        self.students = students  # name -> uid
        self.interval = interval
        self.qemu_uids: dict[str, set[int]] = {name: set() for name in students}
        self.foreign: list[str] = []  # a process in a student's cgroup not running as the student
        self.peaks = {name: Peak() for name in students}
        self.cgroups = {name: StudentCgroup(name) for name in students}
        self.cpu_start = {name: cgroup.cpu_seconds() or 0.0 for name, cgroup in self.cgroups.items()}
        self.cpu_s: dict[str, float] = {}  # CPU time each student used while sampled
        self.vm_cpu: dict[str, dict[int, float]] = {name: {} for name in students}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="class-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        for name in self.students:
            self.sample(name, self.students[name])
            self.cpu_s[name] = (self.cgroups[name].cpu_seconds() or 0.0) - self.cpu_start[name]

    def vm_cpu_s(self, name: str) -> float:
        """CPU time of the student's QEMU processes (as last seen alive; a lower bound)."""
        return sum(self.vm_cpu[name].values())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for name, uid in self.students.items():
                self.sample(name, uid)

    def sample(self, name: str, uid: int) -> None:
        cgroup = self.cgroups[name]
        parts: dict[str, int] = {}
        for pid in cgroup.pids():
            try:
                proc = psutil.Process(pid)
                kind = role(proc)
                real_uid = proc.uids().real
                pss = proc.memory_full_info().pss
                times = proc.cpu_times() if kind == "vm" else None
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            if kind == "vm":
                self.qemu_uids[name].add(real_uid)
                self.vm_cpu[name][pid] = times.user + times.system
            if real_uid != uid and real_uid < 100000:  # container processes run as subuids
                self.foreign.append(f"{name}: pid {pid} ({kind}) uid {real_uid}")
            parts[kind] = parts.get(kind, 0) + pss
        total = sum(parts.values())
        if total > self.peaks[name].pss_bytes:
            self.peaks[name] = Peak(total, parts, cgroup.memory_bytes() or 0)


# ------------------------------------------------------------------ one class run

def run_class(hub: Hub, students: dict[str, int], notebook: dict,
              extra_cells: tuple[str, ...] = ()) -> tuple[list[NotebookRun], Sampler, float]:
    """Start every student's server, run `notebook` in all of them at once; (runs, sampler, wall s)."""
    for name in students:
        hub.add_user(name)
    for name in students:
        hub.start_server(name)

    async def everyone():
        return await asyncio.gather(*(
            run_notebook(hub.server_url(name), hub.token, name, notebook,
                         extra_cells=extra_cells) for name in students))

    with Sampler(students) as sampler:
        start = time.monotonic()
        runs = asyncio.run(everyone())
        wall = time.monotonic() - start
    return list(runs), sampler, wall


def main(argv: list[str]) -> int:
    import argparse
    import pwd
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("students", nargs="+", help="existing unix users")
    args = parser.parse_args(argv)
    students = {name: pwd.getpwnam(name).pw_uid for name in args.students}
    notebook = json.loads(args.notebook.read_text())
    with tempfile.TemporaryDirectory(prefix="vmkit-hub-") as state:
        hub = Hub(Path(state))
        hub.start()
        try:
            runs, sampler, wall = run_class(hub, students, notebook)
        finally:
            for name in students:
                hub.stop_server(name)
            hub.stop()
    for run in runs:
        peak = sampler.peaks[run.student]
        print(f"{run.student}: {run.seconds:.1f} s, {len(run.errors)} error(s), "
              f"peak PSS {peak.pss_bytes / 2**20:.0f} MiB")
        for cell in run.errors:
            print(f"  cell {cell.index}: {cell.error}")
    print(f"wall: {wall:.1f} s")
    return 1 if any(run.errors for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
