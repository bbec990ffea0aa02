"""Security review, tested: what a VM, a container, the engine socket, `make lab` and the
package itself may and may not do (README, Developer guide, "Security").

Everything is read from the real thing: the running QEMU's /proc entries and QMP, the
inside of a running container, the engine socket's inode and a connect as `nobody`, a
JupyterLab started with the Makefile's own `lab` arguments, and vmkit's source (`ast`).
One VM (`shared_vm`, class scope, so conftest's leftover check sees it stopped before the
next class) and one container (module scope) serve every assertion about them.
"""

from __future__ import annotations

import ast
import grp
import http.client
import json
import os
import re
import shlex
import socket
import stat
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import psutil
import pytest

import vmkit
from vmkit.container import engine
from vmkit.container.host import parse_status
from vmkit.vm.rundir import runtime_root

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "vmkit"
NOBODY = 65534
ZERO_CAPS = "0000000000000000"

integration = pytest.mark.integration


# ---------------------------------------------------------------- helpers

def option_values(cmdline: list[str], option: str) -> list[str]:
    """Every value given to `option` on a QEMU command line (`-opt value` pairs)."""
    return [cmdline[i + 1] for i, arg in enumerate(cmdline[:-1]) if arg == option]


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process `pid` holds open (from its /proc/<pid>/fd links)."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[len("socket:["):-1])
    return found


def inet_inodes(pid: int) -> set[str]:
    """Inodes of every TCP/UDP socket (v4 and v6) in process `pid`'s network namespace."""
    found = set()
    for table in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9:
                found.add(fields[9])
    return found


def qom_types(vm, root: str = "/machine") -> list[str]:
    """The type of every QOM child object under `root` (the guest's whole device tree)."""
    types, stack = [], [root]
    while stack:
        path = stack.pop()
        for prop in vm.qmp("qom-list", path=path):
            if prop["type"].startswith("child<"):
                types.append(prop["type"][len("child<"):-1])
                stack.append(f"{path}/{prop['name']}")
    return types


def hmp(vm, command: str) -> str:
    return vm.qmp("human-monitor-command", **{"command-line": command})


# ---------------------------------------------------------------- 1. the VM

@pytest.fixture(scope="class")
def shared_vm(guest_artifacts):
    """The one VM every assertion of `TestVM` looks at."""
    vm = vmkit.VM(memory="128M", name=f"test-security-{os.getpid()}")
    vm.start(timeout=120)
    rundir = vm.runtime_dir
    try:
        yield vm
    finally:
        vm.stop()
        assert vm.pid is None and not rundir.exists()


@integration
class TestVM:
    def test_qmp_and_agent_only_on_unix_sockets_in_private_dirs(self, shared_vm):
        pid, rundir = shared_vm.pid, shared_vm.runtime_dir
        cmdline = psutil.Process(pid).cmdline()
        # QMP: one unix socket in the VM's runtime dir; no HMP monitor, gdb stub or display.
        assert option_values(cmdline, "-qmp") == [f"unix:{rundir / 'qmp.sock'},server=on,wait=off"]
        for option in ("-monitor", "-mon", "-gdb", "-s", "-vnc", "-spice", "-display"):
            assert option not in cmdline, f"{option} in {cmdline}"
        for value in option_values(cmdline, "-chardev"):
            assert value.startswith("socket,") and f"path={rundir}/" in value, value
            assert not re.search(r"\b(host|port|to)=", value), value
        assert not any(re.search(r"\b(tcp|udp|telnet|websocket|vsock):", arg) for arg in cmdline), cmdline
        # QEMU's own view of its character devices: the console and two unix sockets.
        for line in hmp(shared_vm, "info chardev").splitlines():
            _, _, target = line.strip().partition(": filename=")
            assert target == "stdio" or target.startswith(f"unix:{rundir}/"), line
        # No TCP/UDP/raw socket among QEMU's open files (its fd links against /proc/net).
        held = socket_inodes(pid)
        assert held, "QEMU holds no socket at all: not the QEMU we booted?"
        assert not held & inet_inodes(pid), "QEMU holds an internet socket"
        assert psutil.Process(pid).net_connections(kind="inet") == []
        # Every unix socket it holds is a file in the runtime dir (none abstract: an abstract
        # socket has no file permissions to protect it).
        unix = psutil.Process(pid).net_connections(kind="unix")
        paths = {conn.laddr for conn in unix if conn.laddr}
        assert paths == {str(rundir / "qmp.sock"), str(rundir / "agent.sock")}, unix
        # The runtime dir and its parent are 0700 and the caller's own.
        for folder in (rundir, runtime_root()):
            info = folder.stat()
            assert stat.S_IMODE(info.st_mode) == 0o700, (folder, oct(info.st_mode))
            assert info.st_uid == os.getuid(), folder
        assert shared_vm.qmp_socket.parent == rundir
        assert stat.S_ISSOCK(shared_vm.qmp_socket.stat().st_mode)
        assert shared_vm.qmp_socket.stat().st_uid == os.getuid()

    def test_qemu_runs_under_its_seccomp_sandbox(self, shared_vm):
        cmdline = psutil.Process(shared_vm.pid).cmdline()
        values = option_values(cmdline, "-sandbox")
        assert len(values) == 1, cmdline
        first, *rest = values[0].split(",")
        assert first == "on"
        assert dict(item.split("=", 1) for item in rest) == {
            "obsolete": "deny", "elevateprivileges": "deny", "spawn": "deny",
            "resourcecontrol": "deny"}
        # In force: the kernel has a seccomp filter on the running QEMU (mode 2).
        status = parse_status(Path(f"/proc/{shared_vm.pid}/status").read_text())
        assert status["Seccomp"] == "2", status.get("Seccomp")

    def test_guest_has_no_network(self, shared_vm):
        cmdline = psutil.Process(shared_vm.pid).cmdline()
        assert "-nodefaults" in cmdline  # else QEMU would add a default NIC
        assert option_values(cmdline, "-netdev") == []
        for option in ("-nic", "-net"):
            assert set(option_values(cmdline, option)) <= {"none"}, cmdline
        assert hmp(shared_vm, "info network").strip() == ""
        assert shared_vm.qmp("query-rx-filter") == []
        nics = [t for t in qom_types(shared_vm)
                if re.search(r"net|nic|e1000|rtl8139|pcnet|vmxnet|ne2k", t)]
        assert nics == [], nics
        # And inside: only the loopback interface.
        assert shared_vm.guest("ls /sys/class/net").split() == ["lo"]

    def test_no_host_directory_or_file_is_shared(self, shared_vm):
        pid = shared_vm.pid
        cmdline = psutil.Process(pid).cmdline()
        for option in ("-virtfs", "-fsdev", "-drive", "-hda", "-hdb", "-cdrom", "-blockdev",
                       "-object", "-mem-path"):
            assert option not in cmdline, f"{option} in {cmdline}"
        for needle in ("vhost-user", "virtio-9p", "virtiofs", "fat:", "memory-backend-file"):
            assert not any(needle in arg for arg in cmdline), needle
        assert shared_vm.qmp("query-block") == []
        shared = [t for t in qom_types(shared_vm) if re.search(r"9p|vhost-user|fs-device|blk|scsi", t)]
        assert shared == [], shared
        # No open file descriptor of QEMU is a directory.
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                is_dir = stat.S_ISDIR(os.stat(f"/proc/{pid}/fd/{fd}").st_mode)
            except OSError:
                continue
            assert not is_dir, os.readlink(f"/proc/{pid}/fd/{fd}")


# ---------------------------------------------------------------- 2. the container

@pytest.fixture(scope="module")
def shared_container(docker_engine, guest_artifacts):
    """The one container every assertion of `TestContainer` looks at."""
    box = vmkit.Container(memory="64M", name=f"test-security-{os.getpid()}")
    box.start(timeout=60)
    try:
        yield box
    finally:
        box.stop()
        assert box.state == "removed"


@integration
class TestContainer:
    def test_only_loopback(self, shared_container):
        rc, out = shared_container.exec(["cat", "/proc/net/dev"])
        assert rc == 0, out
        interfaces = [line.split(":")[0].strip() for line in out.splitlines()[2:] if ":" in line]
        assert interfaces == ["lo"], out
        rc, out = shared_container.exec(["ip", "-o", "link"])
        assert rc == 0 and [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"], out
        settings = shared_container.security()
        assert settings["network_mode"] == "none" and settings["network_disabled"] is True

    @pytest.mark.parametrize("process", ["self", "1"])
    def test_no_capabilities_no_new_privileges_seccomp(self, shared_container, process):
        rc, out = shared_container.exec(["cat", f"/proc/{process}/status"])
        assert rc == 0, out
        status = parse_status(out)
        for caps in ("CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"):
            assert status[caps] == ZERO_CAPS, (caps, status[caps])
        assert status["NoNewPrivs"] == "1"
        # The engine's default seccomp profile: a filter (mode 2), never "unconfined" (0).
        assert status["Seccomp"] == "2", f"seccomp is off in the container: {status['Seccomp']}"
        settings = shared_container.security()
        assert settings["privileged"] is False and settings["cap_drop"] == ["ALL"]
        assert settings["cap_add"] == []
        assert "no-new-privileges" in settings["security_opt"]
        assert not any("unconfined" in opt for opt in settings["security_opt"])

    def test_read_only_root(self, shared_container):
        rc, out = shared_container.exec(["touch", "/x"])
        assert rc != 0 and "Read-only file system" in out, (rc, out)
        assert shared_container.exec(["test", "-e", "/x"])[0] != 0
        assert shared_container.security()["read_only_rootfs"] is True
        # The only writable place is the small /tmp tmpfs.
        assert shared_container.exec(["touch", "/tmp/x"])[0] == 0

    def test_pids_limit(self, shared_container):
        limit = shared_container.security()["pids_limit"]
        assert isinstance(limit, int) and limit > 0
        rc, out = shared_container.exec(
            ["sh", "-c", "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max"])
        assert rc == 0 and out.strip() == str(limit), out

    def test_mount_is_refused(self, shared_container):
        assert shared_container.exec(["mkdir", "-p", "/tmp/m"])[0] == 0
        rc, out = shared_container.exec(["mount", "-t", "tmpfs", "none", "/tmp/m"])
        assert rc != 0 and re.search(r"permission denied|not permitted", out, re.I), (rc, out)
        rc, mounts = shared_container.exec(["cat", "/proc/self/mounts"])
        assert rc == 0 and " /tmp/m " not in mounts

    @pytest.mark.parametrize("flag", ["-n", "-U", "-m"])
    def test_unshare_is_refused(self, shared_container, flag):
        rc, applets = shared_container.exec(["busybox", "--list"])
        assert rc == 0 and "unshare" in applets.split(), "the image has no unshare applet"
        rc, out = shared_container.exec(["unshare", flag, "true"])
        assert rc != 0 and "Operation not permitted" in out, (rc, out)


# ---------------------------------------------------------------- 3. the engine socket

def _engine_sockets(endpoint) -> list[Path]:
    sockets = {engine.private_socket()} if engine.private_socket().exists() else set()
    if endpoint.url.startswith("unix://"):
        sockets.add(Path(endpoint.url[len("unix://"):]))
    return sorted(sockets)


def _connect_as_nobody(path: Path) -> str:
    """Connect to the unix socket `path` from a child running as uid/gid 65534 (nobody).

    Returns what happened: 'PermissionError', 'connected', or another exception's name.
    A forked child rather than a new interpreter: this one may live where nobody cannot read.
    """
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            if os.getuid() != NOBODY or os.geteuid() != NOBODY:
                result = "still-privileged"
            else:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.connect(str(path))
                    result = "connected"
                except OSError as exc:
                    result = type(exc).__name__
                finally:
                    sock.close()
            os.write(write, result.encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        with os.fdopen(read, "rb") as stream:
            result = stream.read().decode()
    finally:
        os.waitpid(child, 0)
    return result


@integration
def test_engine_socket_is_root_only(docker_engine):
    sockets = _engine_sockets(docker_engine)
    assert sockets, f"no unix socket for the engine at {docker_engine.url}"
    allowed_groups = {0}
    try:
        allowed_groups.add(grp.getgrnam("docker").gr_gid)
    except KeyError:
        pass
    for path in sockets:
        info = path.stat()
        assert stat.S_ISSOCK(info.st_mode), path
        assert stat.S_IMODE(info.st_mode) & ~0o660 == 0, (path, oct(info.st_mode))
        assert info.st_uid == 0, (path, info.st_uid)
        assert info.st_gid in allowed_groups, (path, info.st_gid)
        # Root (this test) can connect; nobody cannot.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(path))
        assert _connect_as_nobody(path) == "PermissionError", path


# ---------------------------------------------------------------- 4. make lab

def make_lab_argv() -> list[str]:
    """The jupyter-lab command line `make lab` runs, as make expands it (without `setup`)."""
    out = subprocess.run(["make", "-s", "-n", "-o", "setup", "lab"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    argv = shlex.split(out.replace("\\\n", " "))
    assert "--" in argv and argv[argv.index("--") - 2:argv.index("--")] == ["engine", "exec"], argv
    lab = argv[argv.index("--") + 1:]
    assert Path(lab[0]).name == "jupyter-lab", lab
    return lab


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port: int, path: str) -> tuple[int, str]:
    """(status, Location header) of a GET, redirects not followed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Location") or ""
    finally:
        conn.close()


@integration
def test_make_lab_binds_loopback_and_requires_a_token(tmp_path):
    argv = make_lab_argv()
    assert "--ip=127.0.0.1" in argv and "--no-browser" in argv, argv
    root = tmp_path / "root"
    root.mkdir()
    port = _free_port()
    argv = [str(REPO / argv[0])] + [
        f"--ServerApp.root_dir={root}" if arg.startswith("--ServerApp.root_dir=") else arg
        for arg in argv[1:]] + [f"--port={port}"]
    # Private Jupyter dirs: neither the host's config nor other servers take part.
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_DATA_DIR=str(tmp_path / "data"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    env.pop("JUPYTER_TOKEN", None)
    log_path = tmp_path / "jupyter.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                status, _ = _get(port, "/api/status")
                break
            except OSError:
                assert server.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "JupyterLab did not answer in 90 s"
                time.sleep(0.3)
        # It listens on loopback only.
        listening = [conn.laddr for conn in psutil.Process(server.pid).net_connections(kind="inet")
                     if conn.status == psutil.CONN_LISTEN]
        assert (("127.0.0.1", port)) in [tuple(addr) for addr in listening], listening
        assert all(addr.ip == "127.0.0.1" for addr in listening), listening
        # Without a token: refused.
        assert status == 403
        assert _get(port, "/api/contents")[0] == 403
        status, location = _get(port, "/lab")
        assert status == 403 or (status == 302 and urllib.parse.urlsplit(location).path == "/login"), \
            (status, location)
        assert _get(port, "/api/contents?token=wrong")[0] == 403
        # The token the server generated itself, as `jupyter server list` reports it.
        listed = subprocess.run([sys.executable, "-m", "jupyter_server", "list", "--json"], env=env,
                                capture_output=True, text=True, check=True, timeout=60).stdout
        servers = [json.loads(line) for line in listed.splitlines() if line.strip()]
        ours = [s for s in servers if s.get("pid") == server.pid]
        assert len(ours) == 1, listed
        token = ours[0]["token"]
        assert re.fullmatch(r"[0-9a-f]{32,}", token), "the server generated no (or a short) token"
        assert _get(port, f"/api/contents?token={token}")[0] == 200
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


# ---------------------------------------------------------------- 5. no shell in vmkit

SHELL_PATTERNS = [r"shell\s*=\s*True", r"\bos\.system\(", r"\bos\.popen\(",
                  r"\bsubprocess\.getoutput\b", r"\bsubprocess\.getstatusoutput\b",
                  r"\bgetoutput\(", r"\bgetstatusoutput\(", r"create_subprocess_shell"]
SUBPROCESS_CALLS = {"run", "Popen", "check_output", "check_call", "call"}


def package_sources() -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20, files
    return files


def test_vmkit_never_runs_a_shell_command_line():
    found = []
    for path in package_sources():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for pattern in SHELL_PATTERNS:
                if re.search(pattern, line):
                    found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert found == []


def test_vmkit_subprocess_calls_take_argv_lists():
    checked, wrong = 0, []
    for path in package_sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        imported = {alias.asname or alias.name for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module == "subprocess"
                    for alias in node.names}
        assert not imported & SUBPROCESS_CALLS, f"{path}: call subprocess.X, not a bare import"
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "subprocess"
                    and node.func.attr in SUBPROCESS_CALLS):
                continue
            checked += 1
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            first = node.args[0] if node.args else next(
                (kw.value for kw in node.keywords if kw.arg == "args"), None)
            if not isinstance(first, (ast.List, ast.Tuple, ast.Name, ast.Starred)):
                wrong.append(f"{where}: first argument is {type(first).__name__}")
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    wrong.append(f"{where}: shell={ast.unparse(kw.value)}")
    assert checked >= 5, f"only {checked} subprocess calls found: is the parser looking?"
    assert wrong == []
