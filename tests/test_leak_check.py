"""The session-wide leak check sees what subprocesses of the run left, not only this process's."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from conftest import run_containers, run_qemus

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parent.parent

CHILD = """
import json, os, signal, sys, time
from vmkit.container.container import Container
from vmkit.vm.vm import VM
c = Container(memory="16M")
c.start()
vm = VM(memory="128M", accel="tcg")
vm.start()
print(json.dumps({"container": c.name, "qemu": vm.pid}), flush=True)
sys.stdin.read()  # until the test closes stdin
os.kill(os.getpid(), signal.SIGKILL)  # no clean-up: the container stays behind
"""


def test_leak_check_finds_a_subprocesss_container_and_qemu(docker_engine, guest_artifacts):
    child = subprocess.Popen([sys.executable, "-c", CHILD], cwd=str(REPO), text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    client = docker.DockerClient(base_url=docker_engine.url)
    info = {"container": "none-yet"}
    try:
        info = json.loads(child.stdout.readline())
        assert info["qemu"] in [p.pid for p in run_qemus()]
        child.stdin.close()
        assert child.wait(30) == -signal.SIGKILL
        assert info['container'] in run_containers()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        for leftover in client.api.containers(all=True, filters={"name": info["container"]}):
            client.api.remove_container(leftover["Id"], force=True)
        client.close()
    assert info['container'] not in run_containers()
