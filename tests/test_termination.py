"""A `vmkit` command ended by SIGTERM stops what it started (no leaks left for the sweep)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import psutil
import pytest

from vmkit.host import cleanup

pytestmark = pytest.mark.integration
VMKIT = [sys.executable, "-m", "vmkit"]
REPO = Path(__file__).resolve().parent.parent


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([*VMKIT, *args], cwd=str(REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


def test_sigterm_to_density_removes_its_containers(docker_engine, guest_artifacts):
    client = docker.DockerClient(base_url=docker_engine.url)
    try:
        proc = start_cli("density", "container", "40", "--memory", "16M", "--parallel", "2", "--json")
        label = {"label": f"{cleanup.PID}={proc.pid}"}
        wait_for(lambda: len(client.api.containers(all=True, filters=label)) >= 3
                 or proc.poll() is not None, 90, "the first containers")
        assert proc.poll() is None, "density ended before it could be interrupted"
        proc.send_signal(signal.SIGTERM)
        code, err = finish(proc)
        assert code == 128 + signal.SIGTERM, err
        assert "중단했습니다" in err and "SIGTERM" in err
        left = client.api.containers(all=True, filters=label)
        assert not left, f"containers left by the SIGTERMed command: {[c['Names'] for c in left]}"
    finally:
        client.close()


def test_sigterm_to_boot_stops_qemu_and_removes_its_runtime_dir(guest_artifacts):
    proc = start_cli("boot", "--accel", "tcg", "--memory", "128M")

    def qemu():
        children = [p for p in psutil.Process(proc.pid).children(recursive=True)
                    if p.name().startswith("qemu-system")]
        return children[0] if children else None

    child = wait_for(qemu, 60, "QEMU to start")
    rundir = Path(re.search(r"unix:(.*)/qmp\.sock", " ".join(child.cmdline())).group(1).replace(",,", ","))
    assert rundir.is_dir()
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 128 + signal.SIGTERM, err
    try:
        child.wait(10)
    except psutil.TimeoutExpired:
        child.kill()
        raise AssertionError("QEMU outlived the SIGTERMed command")
    except psutil.NoSuchProcess:
        pass
    assert not rundir.exists(), "the VM's runtime dir was left behind"
    assert os.path.isdir(rundir.parent)
