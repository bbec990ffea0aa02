"""Shared fixtures: the guest artifacts, the Docker Engine, a rootless Podman, and leak checks.

Every process this test run starts inherits VMKIT_RUN (nbval's lab kernels, CLI
subprocesses, Jupyter servers): containers carry it as a label and QEMU in its
environment, so the final leak check finds what any of them left, not only what this
process made.
"""

import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from vmkit.guest import artifacts as artifacts_mod
from vmkit.container import engine
from vmkit.host import runs

REPO = Path(__file__).resolve().parent.parent
RUN_ID = os.environ.setdefault("VMKIT_RUN", f"pytest-{os.getpid()}-{secrets.token_hex(4)}")


def run_qemus() -> list[psutil.Process]:
    """Running QEMU processes started by anything in this test run (by VMKIT_RUN)."""
    return runs.qemus(RUN_ID)


def run_containers() -> list[str]:
    """Names of containers (running or not) made by anything in this test run."""
    if engine.find() is None:
        return []
    client = engine.client()
    try:
        return runs.container_names(runs.containers(client, RUN_ID))
    finally:
        client.close()


def daemons_of(state) -> list[int]:
    """Live dockerd/containerd processes whose command line names `state` (an engine's dir)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if proc.info["status"] != psutil.STATUS_ZOMBIE and str(state) in cmdline and \
                (proc.info["name"] or "").startswith(("dockerd", "containerd")):
            found.append(proc.pid)
    return found


def session_containers() -> list[str]:
    """Ids of containers this test process created (by vmkit's session label)."""
    from vmkit.host import cleanup

    if engine.find() is None:
        return []
    client = engine.client()
    try:
        found = client.api.containers(
            all=True, filters={"label": f"{cleanup.SESSION}={cleanup.session_id()}"})
        return [info["Id"] for info in found]
    finally:
        client.close()


def qemu_children() -> list[psutil.Process]:
    """QEMU processes descended from this test process (never other people's QEMU)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name().startswith("qemu-system") and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.fixture(autouse=True)
def no_qemu_left_behind(request):
    """Every test must end with no QEMU of its own still running."""
    yield
    if "shared_vm" in request.fixturenames:
        return  # a module-scoped VM is checked when its module ends
    left = qemu_children()
    assert not left, f"QEMU left running after the test: {[p.pid for p in left]}"


@pytest.fixture(scope="session", autouse=True)
def nothing_left_at_the_end():
    """After the whole run: no QEMU and no container that anything in this run started."""
    yield
    left = run_qemus()
    assert not left, f"QEMU of this test run still running: {[p.pid for p in left]}"
    names = run_containers()
    assert not names, f"containers of this test run still exist: {names}"


@pytest.fixture(scope="session")
def guest_artifacts():
    """The current guest artifacts, built if missing (as `vmkit fetch` does)."""
    return artifacts_mod.fetch(progress=False)


#: The students' environment (`make class-env`): Debian's python3 with vmkit's dependencies,
#: readable by every user wherever this checkout lives.
CLASS_PREFIX = Path(os.environ.get("VMKIT_CLASS_PREFIX", "/opt/vmkit-class"))


@dataclass(frozen=True)
class OtherUserPython:
    """How another uid runs this checkout's vmkit: `python` with `PYTHONPATH=pythonpath`."""

    python: str
    pythonpath: str

    def env(self, **base: str) -> dict[str, str]:
        return {**base, "PYTHONPATH": self.pythonpath}


@pytest.fixture(scope="session")
def other_user_python():
    """An interpreter and a world-readable copy of this checkout's `vmkit`, for tests that
    run Python as another uid.

    The checkout and its venv may sit where other users cannot enter (a clone under /root,
    a 0700 temp dir): the code is copied to a 0755 directory under /tmp, and the interpreter
    is the class environment's, which has vmkit's dependencies and is readable by all.
    """
    python = CLASS_PREFIX / "venv" / "bin" / "python"
    if not os.access(python, os.X_OK):
        pytest.skip(f"no class environment at {CLASS_PREFIX} (make class-env)")
    root = Path(tempfile.mkdtemp(prefix="vmkit-readable-", dir="/tmp"))
    try:
        shutil.copytree(REPO / "vmkit", root / "vmkit",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield OtherUserPython(str(python), str(root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_engine():
    """An engine that answers; vmkit's private one is started (and later stopped) if needed."""
    started = engine.find() is None
    endpoint = engine.start()
    os.environ.setdefault("DOCKER_HOST", endpoint.url)
    yield endpoint
    if started:
        engine.stop()


def user_namespaces_work() -> str | None:
    """Why rootless Podman cannot run here (no podman, no unprivileged user namespaces), or None."""
    import shutil
    import subprocess

    if not shutil.which("podman"):
        return "podman is not installed"
    if os.geteuid() != 0:
        return "making a unix user for rootless Podman needs root"
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           "unshare", "-Ur", "true"], capture_output=True, text=True, timeout=30)
    return None if done.returncode == 0 else f"unprivileged user namespaces fail: {done.stderr.strip()}"


@dataclass(frozen=True)
class PodmanEngine:
    """A real user's rootless Podman service (its Docker-compatible API at `url`)."""

    url: str
    user: object  # unix_users.Student
    pid: int


@pytest.fixture(scope="session")
def podman_engine():
    """The user `vmkit-podman` and its rootless Podman service, for the whole session.

    Everything goes at the end, even after a failure: the service, every process of the
    user, its runtime dir, its home and the account. Containers this run left on it fail
    the session.
    """
    from unix_users import podman_service, student

    if (why := user_namespaces_work()) is not None:
        pytest.skip(why)
    with student("vmkit-podman") as user:
        proc, url = podman_service(user)
        try:
            yield PodmanEngine(url, user, proc.pid)
            import docker

            left = docker.DockerClient(base_url=url, timeout=30)
            try:
                names = runs.container_names(runs.containers(left, RUN_ID))
            finally:
                left.close()
            assert not names, f"containers of this test run left on Podman: {names}"
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except Exception:
                proc.kill()
                proc.wait(5)


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory, docker_engine, guest_artifacts):
    """One JupyterLab server on loopback for every browser test of the session."""
    from browser import running_jupyter_lab

    with running_jupyter_lab(tmp_path_factory.mktemp("jupyter")) as lab:
        yield lab
