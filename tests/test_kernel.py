"""vmkit inside a real Jupyter kernel (jupyter_client + ipykernel), as a student runs it.

Jupyter's "Interrupt" sends SIGINT to the kernel's whole process group; a VM booted in
the kernel must survive an interrupt of an unrelated cell and still answer.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

pytestmark = pytest.mark.integration

jupyter_client = pytest.importorskip("jupyter_client")


@pytest.fixture
def kernel(guest_artifacts):
    """A real ipykernel, shut down (and its VMs with it) after the test."""
    manager = jupyter_client.KernelManager(kernel_name="python3")
    manager.start_kernel(env=dict(os.environ))
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    yield manager, client
    client.stop_channels()
    manager.shutdown_kernel(now=False)


def run(client, code: str, timeout: float = 90.0) -> tuple[str, list[str], dict]:
    """Execute `code`; returns (status, stdout chunks, error content if any)."""
    reply = client.execute_interactive(code, timeout=timeout, output_hook=lambda msg: outputs.append(msg))
    return reply["content"]["status"], _stdout(), reply["content"]


outputs: list[dict] = []


def _stdout() -> list[str]:
    text = [m["content"]["text"] for m in outputs if m["msg_type"] == "stream"]
    outputs.clear()
    return text


def boot_vm(client, shown: str) -> list[str]:
    """Boot `vm` in the kernel; returns the printed words of `shown`."""
    status, out, _ = run(client, "from vmkit import VM\nvm = VM(memory='128M', accel='tcg')\n"
                                 f"vm.start()\nprint({shown})\n")
    assert status == "ok", out
    return out[-1].split()


def test_interrupting_a_cell_leaves_the_vm_running(kernel):
    manager, client = kernel
    qemu = psutil.Process(int(boot_vm(client, "vm.pid")[0]))
    assert os.getpgid(qemu.pid) != os.getpgid(manager.provisioner.pid), \
        "QEMU shares the kernel's process group: Jupyter's interrupt reaches it"

    msg_id = client.execute("import time\nwhile True: time.sleep(0.1)")
    time.sleep(1.0)  # the cell is running
    manager.interrupt_kernel()
    reply = client.get_shell_msg(timeout=30)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = client.get_shell_msg(timeout=30)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"

    time.sleep(0.5)
    assert qemu.is_running() and qemu.status() != psutil.STATUS_ZOMBIE, "the interrupt killed QEMU"
    outputs.clear()
    status, out, _ = run(client, "print(vm.running, vm.guest('echo alive').strip(), vm.status())")
    assert status == "ok"
    assert out[-1].split() == ["True", "alive", "running"]
    status, _, _ = run(client, "vm.stop()")
    assert status == "ok"
    assert not qemu.is_running() or qemu.status() == psutil.STATUS_ZOMBIE


def test_sigterm_to_the_kernel_stops_its_vm(kernel):
    """A forced shutdown's SIGTERM: the kernel stops its VMs before it dies."""
    manager, client = kernel
    pid, rundir = boot_vm(client, "vm.pid, vm.runtime_dir")
    qemu = psutil.Process(int(pid))
    os.kill(manager.provisioner.pid, signal.SIGTERM)
    qemu.wait(30)
    deadline = time.monotonic() + 10
    while os.path.exists(rundir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(rundir), "the VM's runtime dir was left behind: not stopped cleanly"
