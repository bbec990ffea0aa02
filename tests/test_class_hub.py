"""A class on the hub: three real students run lab 01 at once, each in their own world.

The module fixture does what a class does, once (it is the slowest test of the suite): it
creates three unix users, starts deploy/jupyterhub's hub on 127.0.0.1 with a service token,
starts the students' servers through the REST API, uploads lab 01 into each and executes it
in each student's own kernel, all three at once, while a sampler watches every process in
the students' cgroups. Then each student keeps a VM and a container running, and each tries
the others' QMP and engine sockets from their own kernel. Then the servers are stopped through
the API and the hub is stopped. The tests below assert on what was recorded; the users and
their homes are removed at the end, even on failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "deploy" / "jupyterhub"))

import classrun  # noqa: E402
import unix_users  # noqa: E402
from vmkit_class import StudentCgroup  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "labs" / "01-vm-and-container.ipynb"
PREFIX = os.environ.get("VMKIT_CLASS_PREFIX", "/opt/vmkit-class")
STUDENTS = ("vmkit-kim", "vmkit-lee", "vmkit-park")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="the hub runs as root to start servers as students"),
]

#: Run in each student's kernel after the lab: a VM and a container that stay up.
HOLD = """
import json, os, vmkit
held_vm = vmkit.VM(memory="128M"); held_vm.start()
held_ct = vmkit.Container(memory="64M"); held_ct.start()
report = vmkit.doctor()
print(json.dumps({"uid": os.getuid(), "qmp": str(held_vm.qmp_socket), "qemu_pid": held_vm.pid,
                  "engine": os.environ["DOCKER_HOST"].removeprefix("unix://"),
                  "container": held_ct.id, "doctor": {"mode": report["mode"], **report["engine"]},
                  "kvm": report["accelerators"]["kvm"], "accel": held_vm.trace.accel}))
"""

#: Run in a student's kernel: try to connect to other students' sockets.
PROBE = """
import json, socket
def attempt(path):
    client = socket.socket(socket.AF_UNIX)
    try:
        client.connect(path)
        return "connected"
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
print(json.dumps({path: attempt(path) for path in PATHS}))
"""


@dataclass
class ClassRun:
    users: dict[str, unix_users.Student]
    runs: list[classrun.NotebookRun] = field(default_factory=list)
    wall_s: float = 0.0
    sampler: classrun.Sampler | None = None
    held: dict[str, dict] = field(default_factory=dict)
    probes: dict[str, dict[str, str]] = field(default_factory=dict)
    engine_lists: dict[str, set[str]] = field(default_factory=dict)
    after_stop: dict[str, dict] = field(default_factory=dict)
    hub_pids_after: list[int] = field(default_factory=list)


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for this sandbox's init to reap it does not)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def engine_containers(user: unix_users.Student) -> set[str]:
    """Ids of every container in the student's own engine (asked as root, over its socket)."""
    import docker

    client = docker.DockerClient(base_url=f"unix://{user.podman_socket}", timeout=30)
    try:
        return {info["Id"] for info in client.api.containers(all=True)}
    finally:
        client.close()


def stored_containers(user: unix_users.Student) -> list:
    """The containers Podman's storage still holds for the student (no podman started to ask)."""
    path = user.home / ".local/share/containers/storage/vfs-containers/containers.json"
    return json.loads(path.read_text()) if path.exists() else []


async def hold_and_probe(hub: classrun.Hub, record: ClassRun) -> None:
    """Each student holds a VM and a container; then each tries everyone else's sockets."""
    async with AsyncExitStack() as stack:
        kernels = {name: await stack.enter_async_context(
            classrun.Kernel(hub.server_url(name), hub.token)) for name in record.users}
        held = await asyncio.gather(*(kernel.execute(HOLD, timeout=300)
                                      for kernel in kernels.values()))
        for name, cell in zip(kernels, held):
            assert cell.status == "ok", f"{name}: {cell.error}"
            record.held[name] = json.loads(cell.stdout.strip().splitlines()[-1])
        for name in record.users:
            record.engine_lists[name] = engine_containers(record.users[name])
        for name, kernel in kernels.items():
            paths = [path for other, info in record.held.items() if other != name
                     for path in (info["qmp"], info["engine"])]
            cell = await kernel.execute(f"PATHS = {paths!r}\n{PROBE}", timeout=60)
            assert cell.status == "ok", f"{name}: {cell.error}"
            record.probes[name] = json.loads(cell.stdout.strip().splitlines()[-1])
        # The servers are stopped with the VMs and containers still running.
        for kernel in kernels.values():
            kernel.id = None  # leave the kernels to the server's shutdown
            kernel.ws.close()
            kernel.ws = None


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    if not Path(PREFIX, "bin", "vmkit-singleuser").exists():
        pytest.fail(f"the students' environment is missing: run `make class-env` ({PREFIX})")
    notebook = json.loads(LAB.read_text())
    with ExitStack() as stack:
        users = {name: stack.enter_context(unix_users.student(name)) for name in STUDENTS}
        record = ClassRun(users)
        hub = classrun.Hub(tmp_path_factory.mktemp("hub"), prefix=PREFIX)
        stack.callback(hub.stop)
        hub.start()
        uids = {name: user.uid for name, user in users.items()}
        record.runs, record.sampler, record.wall_s = classrun.run_class(hub, uids, notebook)
        asyncio.run(hold_and_probe(hub, record))
        for name, user in users.items():
            hub.stop_server(name)
            record.after_stop[name] = {
                "processes": unix_users.processes_of(user.uid),
                "runtime_dir": user.runtime_dir.exists(),
                "cgroup": [str(path) for path in StudentCgroup(name).dirs.values()
                           if path.exists()],
                "stored_containers": stored_containers(user),
                "qemu_alive": name in record.held and alive(record.held[name]["qemu_pid"]),
            }
        hub.stop()
        record.hub_pids_after = hub.pids()
        print(f"\nclass of {len(users)}: lab 01 at once in {record.wall_s:.1f} s; " + ", ".join(
            f"{run.student} {run.seconds:.1f} s, peak PSS "
            f"{record.sampler.peaks[run.student].pss_bytes / 2**20:.0f} MiB" for run in record.runs))
        yield record
    for name in STUDENTS:
        assert not unix_users.exists(name), f"user {name} was not removed"
        assert not Path("/home", name).exists(), f"{name}'s home was not removed"


def test_lab_01_runs_in_every_students_kernel_at_once(class_run):
    assert [run.student for run in class_run.runs] == list(STUDENTS)
    for run in class_run.runs:
        assert len(run.cells) == sum(cell["cell_type"] == "code"
                                     for cell in json.loads(LAB.read_text())["cells"])
        assert not run.errors, f"{run.student}: " + "; ".join(
            f"cell {cell.index}: {cell.error}" for cell in run.errors)
    # Run at once: the wall time is shorter than the three runs one after the other.
    assert class_run.wall_s < sum(run.seconds for run in class_run.runs)


def test_each_students_qemu_ran_as_that_student(class_run):
    for name, user in class_run.users.items():
        assert class_run.sampler.qemu_uids[name] == {user.uid}, name
        assert class_run.held[name]["uid"] == user.uid
    assert class_run.sampler.foreign == []


def test_vmkit_runs_in_class_mode_on_the_students_rootless_podman(class_run):
    for name, info in class_run.held.items():
        doctor = info["doctor"]
        assert (doctor["mode"], doctor["kind"], doctor["rootless"], doctor["usable"]) == \
            ("class", "podman", True, True), name
        if doctor["cgroup_version"] == 1:  # rootless Podman cannot apply limits there
            assert doctor["limits_enforced"] is False
        # Students are in no kvm group: unless /dev/kvm is open to all, they get TCG and the
        # reason says what would give them KVM.
        if not Path("/dev/kvm").exists() or os.stat("/dev/kvm").st_mode & 0o006 != 0o006:
            assert info["accel"] == "tcg"
            assert not info["kvm"]["usable"]
            assert "kvm 그룹" in info["kvm"]["reason"] or "/dev/kvm" in info["kvm"]["reason"]


def test_each_students_containers_are_only_in_their_own_engine(class_run):
    for name, info in class_run.held.items():
        assert info["container"] in class_run.engine_lists[name]
        assert info["engine"] == str(class_run.users[name].podman_socket)
        for other, listed in class_run.engine_lists.items():
            if other != name:
                assert info["container"] not in listed, f"{other}'s engine lists {name}'s container"
                assert not listed & class_run.engine_lists[name]


def test_a_student_cannot_reach_another_students_sockets(class_run):
    for name, attempts in class_run.probes.items():
        assert len(attempts) == 2 * (len(STUDENTS) - 1)
        for path, outcome in attempts.items():
            assert outcome == "permission denied", f"{name} → {path}: {outcome}"


def test_nothing_of_any_student_is_left_after_their_server_stops(class_run):
    for name, after in class_run.after_stop.items():
        assert after == {"processes": [], "runtime_dir": False, "cgroup": [],
                         "stored_containers": [], "qemu_alive": False}, name


def test_the_hub_and_its_proxy_are_stopped(class_run):
    assert class_run.hub_pids_after == []


def test_memory_per_student_is_measured(class_run):
    for name in STUDENTS:
        peak = class_run.sampler.peaks[name]
        # server + kernel + VM + engine were all seen at the peak, and add up.
        assert {"server", "kernel", "vm", "engine"} <= set(peak.parts), peak.parts
        assert peak.pss_bytes == sum(peak.parts.values())
        assert peak.parts["vm"] > 64 * 2**20  # a booted 128–256 MiB guest
