"""Infrastructure faults (issue 12, part 1): the engine going away in the middle of a
comparison, a full disk while a snapshot is saved, and a corrupted artifact cache.

Each test checks afterwards that nothing of its own is left (no QEMU, no container, no
runtime dir, no snapshot temp file) and that the next start works. None touches what other
test runs on this host share: the engine test starts a second private dockerd of its own
(own state dir under /tmp, stopped by its pid, its data-root removed), the snapshot test
writes to a tmpfs of its own, the cache test corrupts a copy of the artifact cache.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import docker
import psutil
import pytest

from conftest import RUN_ID, daemons_of
from vmkit.guest import artifacts
from vmkit.container import engine
from vmkit.host import paths, runs
from vmkit.experiments import readiness
from vmkit.experiments.compare import compare
from vmkit.errors import MissingComponent, WorkloadError
from vmkit.vm.vm import VM

VMKIT = [sys.executable, "-m", "vmkit"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dockerd and mount need root")
pytestmark = pytest.mark.integration


# ------------------------------------------------------------------ helpers

def remove(path: Path) -> None:
    """rm -rf, staying on this file system (never into a mount left under `path`)."""
    subprocess.run(["/bin/rm", "-rf", "--one-file-system", str(path)], check=False)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` (this mount namespace)."""
    found = []
    with open("/proc/self/mountinfo") as stream:
        for line in stream:
            point = line.split()[4]
            if point == str(path) or point.startswith(f"{path}/"):
                found.append(point)
    return found


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# ------------------------------------------------------------------ 1. engine stopped mid-compare

#: One comparison in a process of its own (own VMKIT_RUN, DOCKER_HOST = the test's engine).
#: Prints one JSON event a line. With "hold KIND N", the workload of KIND ("vm" or
#: "container") in trial N (from 0), once running, announces itself and waits for a line on
#: stdin before it is measured: the test stops the engine right then.
DRIVER = r"""
import json, sys
import vmkit
from vmkit.container.container import Container
from vmkit.errors import VmkitError
from vmkit.vm.vm import VM

def say(**event):
    print(json.dumps(event, ensure_ascii=False), flush=True)

if sys.argv[1] == "hold":
    cls = {"vm": VM, "container": Container}[sys.argv[2]]
    real_usage, seen, hold = cls.usage, [], int(sys.argv[3])

    def usage(self, *args, **kwargs):
        if id(self) not in seen:
            seen.append(id(self))
            if len(seen) == hold + 1:
                say(event="running", kind=sys.argv[2], trial=hold)
                sys.stdin.readline()
        return real_usage(self, *args, **kwargs)

    cls.usage = usage

try:
    result = vmkit.compare(trials=3, kinds=("vm", "container"), memory="128M",
                           on_result=lambda r: say(event="record", kind=r["kind"], trial=r["trial"]))
except VmkitError as exc:
    say(event="error", type=type(exc).__name__, message=str(exc))
    sys.exit(3)
say(event="done", records=len(result.records))
"""


class Driver:
    """The DRIVER subprocess and its events, read with deadlines."""

    def __init__(self, mode: list[str], env: dict, log: Path):
        self.log = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-c", DRIVER, *mode], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True)
        self.events: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.events.put({"event": "noise", "line": line})
        self.events.put({"event": "eof"})

    def until(self, name: str, timeout: float) -> dict:
        """The next event called `name`; fails if the process ends or time runs out first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {name!r} event within {timeout:g} s; seen {self.seen}; "
                            f"stderr: {Path(self.log.name).read_text()[-3000:]}")
            self.seen.append(event)
            if event["event"] == name:
                return event
            if event["event"] in ("eof", "error", "done"):
                pytest.fail(f"expected {name!r}, got {event}; seen {self.seen}; "
                            f"stderr: {Path(self.log.name).read_text()[-3000:]}")

    def finish(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the comparison did not end within {timeout:g} s; seen {self.seen}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # its QEMU dies with it (PR_SET_PDEATHSIG)
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.log):
            try:
                stream.close()
            except OSError:
                pass


@contextmanager
def second_engine_env(state: Path):
    """vmkit's engine functions aimed at the private engine of `state` (not the shared one)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VMKIT_STATE", str(state))
        patch.delenv("DOCKER_HOST", raising=False)
        yield


def run_labels(url: str, run_id: str) -> list[dict]:
    client = docker.DockerClient(base_url=url, timeout=30)
    try:
        return runs.containers(client, run_id)
    finally:
        client.close()


ORDER = [(kind, trial) for trial in range(3) for kind in ("vm", "container")]


@needs_root
@pytest.mark.parametrize("hold", [("container", 2), ("vm", 1)], ids=["under-last-container", "under-a-vm"])
def test_engine_stopped_and_restarted_mid_compare(guest_artifacts, hold):
    """The engine stops under the comparison's last container (nothing after it would notice),
    or while one of its VMs runs (the next container trial meets no engine)."""
    base = Path(tempfile.mkdtemp(prefix="vk-fault-", dir="/tmp"))  # short: socket paths
    state, tmpdir = base / "state", base / "tmp"
    state.mkdir()
    tmpdir.mkdir()
    for probe_cache in paths.state_dir().glob("accel-*.json"):  # no KVM probe boot again
        shutil.copy(probe_cache, state / probe_cache.name)
    shared_pid = engine.private_pid()  # the engine other test runs use: never touched
    run1, run2 = f"{RUN_ID}-engine-stop", f"{RUN_ID}-engine-again"
    drivers: list[Driver] = []
    try:
        with second_engine_env(state):
            endpoint = engine.start(private=True)
            url, pid = endpoint.url, engine.private_pid()
            assert pid and pid != shared_pid and str(state) in " ".join(psutil.Process(pid).cmdline())
            assert url == f"unix://{state}/engine/docker.sock"
            client = docker.DockerClient(base_url=url, timeout=60)
            try:
                assert engine.ensure_image(client, guest_artifacts) == guest_artifacts.image
            finally:
                client.close()
        env = dict(os.environ, VMKIT_STATE=str(state), DOCKER_HOST=url, TMPDIR=str(tmpdir))

        # The first comparison: the engine stops at the hold point.
        first = Driver(["hold", hold[0], str(hold[1])], dict(env, VMKIT_RUN=run1), base / "first.log")
        drivers.append(first)
        assert first.until("running", 180) == {"event": "running", "kind": hold[0], "trial": hold[1]}
        done = ORDER[:ORDER.index(hold)]
        assert [(e["kind"], e["trial"]) for e in first.seen if e["event"] == "record"] == done
        held_containers = [c["Id"] for c in run_labels(url, run1)]
        assert len(held_containers) == (hold[0] == "container")  # earlier trials' are removed
        with second_engine_env(state):
            assert engine.private_pid() == pid  # that engine, by its pid
            assert engine.stop()
        assert not alive(pid) and not daemons_of(state)
        first.proc.stdin.write("go\n")
        first.proc.stdin.flush()
        error = first.until("error", 180)
        assert first.finish(30) == 3
        assert error["type"] == "EngineError", error
        assert "도커 엔진(Docker Engine)" in error["message"], error
        records = [(e["kind"], e["trial"]) for e in first.seen if e["event"] == "record"]
        # A VM trial still completes without the engine; no container trial does.
        assert records == (done if hold[0] == "container" else done + [hold])
        assert not runs.qemus(run1), "QEMU of the failed comparison still runs"
        assert not list((state / "run").iterdir()), "runtime dirs left"
        assert not list(tmpdir.iterdir()), "temp files left"

        # The engine again (same state dir: a container it stopped is still in its data),
        # and a new comparison that works; its start sweeps the dead comparison's container.
        with second_engine_env(state):
            assert engine.start(private=True).url == url
            pid = engine.private_pid()
            assert pid and pid != shared_pid
        assert [c["Id"] for c in run_labels(url, run1)] == held_containers
        second = Driver(["plain"], dict(env, VMKIT_RUN=run2), base / "second.log")
        drivers.append(second)
        assert second.until("done", 240)["records"] == 6
        assert second.finish(30) == 0
        assert not runs.qemus(run1) and not runs.qemus(run2)
        assert run_labels(url, run1) == [], "the stopped comparison's container was not removed"
        assert run_labels(url, run2) == []
        assert not list((state / "run").iterdir()), "runtime dirs left"
        assert not list(tmpdir.iterdir()), "temp files left"
    finally:
        for driver in drivers:
            driver.close()
        for run_id in (run1, run2):
            runs.remove(run_id)
        with second_engine_env(state):
            engine.stop()
            engine._unmount_data_root()
        for point in reversed(mounts_under(base)):
            subprocess.run(["umount", point], check=False, capture_output=True)
        leftover_mounts = mounts_under(base)
        remove(base)
    assert not daemons_of(state)
    assert not leftover_mounts
    assert not base.exists()


# ------------------------------------------------------------------ 2. disk full while saving a snapshot

@pytest.fixture
def tiny_disk(tmp_path):
    """A 16 MiB tmpfs of this test's own, unmounted at the end whatever happened."""
    point = tmp_path / "tiny"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(point)],
                   check=True, capture_output=True)
    try:
        yield point
    finally:
        subprocess.run(["umount", str(point)], check=False, capture_output=True)
        assert not mounts_under(point)


def assert_disk_space_error(error: Exception, directory: Path) -> None:
    text = str(error)
    assert "디스크 공간(disk space)" in text, text
    assert str(directory) in text, text


@needs_root
def test_disk_full_while_saving_a_snapshot(tiny_disk, tmp_path, guest_artifacts, monkeypatch):
    vm = VM(memory="128M")
    vm.start()
    try:
        runtime_dir = vm.runtime_dir
        # Not enough room for the guest's memory: QEMU's migration stream hits ENOSPC.
        with pytest.raises(WorkloadError) as failed:
            vm.snapshot(tiny_disk / "guest.snap")
        assert_disk_space_error(failed.value, tiny_disk)
        assert list(tiny_disk.iterdir()) == []  # the partial file is gone
        assert vm.status() == "running" and not vm.paused
        assert vm.guest("echo alive").strip() == "alive"

        # No room at all: even the header cannot be written.
        filler = tiny_disk / "filler"
        with open(filler, "wb") as stream:
            with pytest.raises(OSError):
                while True:
                    stream.write(b"\0" * (1 << 20))
                    stream.flush()
        with pytest.raises(WorkloadError) as failed:
            vm.snapshot(tiny_disk / "guest.snap")
        assert_disk_space_error(failed.value, tiny_disk)
        assert [p.name for p in tiny_disk.iterdir()] == ["filler"]
        assert vm.guest("echo still alive").strip() == "still alive"

        # The guest is intact: a snapshot where there is room works and restores.
        saved = vm.snapshot(tmp_path / "guest.snap")
        assert saved["bytes"] > 16 << 20
    finally:
        vm.stop()
    assert vm.last_stop["method"] in ("guest-poweroff", "quit"), vm.last_stop
    assert not runtime_dir.exists()
    assert not (tmp_path / "guest.snap.partial").exists()

    # A comparison's snapshot goes to a temporary dir (TMPDIR): full there, it fails the
    # same way and leaves no temporary snapshot dir behind.
    filler.unlink()
    with monkeypatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(tiny_disk))
        with pytest.raises(WorkloadError) as failed:
            compare(trials=1, kinds=("vm-restore",), memory="128M")
    assert_disk_space_error(failed.value, tiny_disk)
    assert list(tiny_disk.iterdir()) == []
    assert not runs.qemus(RUN_ID)

    # The next start works: the snapshot saved where there was room restores.
    restored = VM.restore(tmp_path / "guest.snap")
    try:
        assert restored.guest("echo restored").strip() == "restored"
        runtime_dir = restored.runtime_dir
    finally:
        restored.stop()
    assert not restored.running and not runtime_dir.exists()


# ------------------------------------------------------------------ 3. corrupted artifact cache

@pytest.fixture
def cache_copy(tmp_path, monkeypatch, guest_artifacts):
    """A copy of the current x86_64 set alone in a cache of its own (VMKIT_CACHE); no engine."""
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copytree(guest_artifacts.root, cache / guest_artifacts.version)
    memo = paths.cache_dir() / "apt-memo.json"
    if memo.exists():
        shutil.copy(memo, cache / memo.name)
    monkeypatch.setenv("VMKIT_CACHE", str(cache))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # fetch imports nothing
    real = {name: (path.stat().st_size, path.stat().st_mtime_ns)
            for name, path in guest_artifacts.files().items()}
    copied = artifacts.require()
    assert copied.root == cache / guest_artifacts.version and copied.version == guest_artifacts.version
    yield copied
    assert {name: (path.stat().st_size, path.stat().st_mtime_ns)
            for name, path in guest_artifacts.files().items()} == real, "the real cache changed"


def refused(arts: artifacts.Artifacts, *words: str) -> None:
    """require(), doctor and a VM start all say in Korean that the set is damaged; nothing starts."""
    with pytest.raises(MissingComponent) as error:
        artifacts.require()
    text = str(error.value)
    for word in ("손상", arts.version, "`vmkit fetch`", *words):
        assert word in text, text
    report = readiness.doctor()
    assert report["guest"]["ready"] is False
    assert "손상" in report["guest"]["reason"] and arts.version in report["guest"]["reason"]
    vm = VM(memory="128M")
    with pytest.raises(MissingComponent, match="손상"):
        vm.start()
    assert not vm.running and vm.runtime_dir is None


def rebuilt_by_fetch(arts: artifacts.Artifacts) -> None:
    """`vmkit fetch` says it rebuilds the damaged set, and a VM boots from the new one."""
    done = subprocess.run([*VMKIT, "fetch", "--arch", "x86_64"], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300)
    assert done.returncode == 0, done.stderr
    said = done.stdout + done.stderr
    assert "손상" in said and "다시 만들었습니다" in said and arts.version in said, said
    fresh = artifacts.require()
    assert fresh.root == arts.root and fresh.version == arts.version
    assert artifacts.load(arts.root) == fresh
    assert not [p for p in arts.root.parent.iterdir() if ".partial-" in p.name]
    with VM(memory="128M") as vm:
        assert vm.guest("uname -r").strip() == fresh.kernel_release
        runtime_dir = vm.runtime_dir
    assert not vm.running and not runtime_dir.exists()


def test_truncated_kernel_is_detected_and_rebuilt(cache_copy):
    kernel = cache_copy.vmlinux
    size = kernel.stat().st_size
    with open(kernel, "r+b") as stream:
        stream.truncate(size // 3)
    refused(cache_copy, "vmlinux")
    rebuilt_by_fetch(cache_copy)
    assert cache_copy.vmlinux.stat().st_size == size


def test_wrong_manifest_is_detected_and_rebuilt(cache_copy):
    manifest = cache_copy.root / artifacts.MANIFEST
    good = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(good)[:100])  # cut short: not JSON
    refused(cache_copy, artifacts.MANIFEST)
    # Another set's manifest (every size right): the directory is not the set it names.
    manifest.write_text(json.dumps(dict(good, version="0123456789ab")))
    refused(cache_copy, "0123456789ab")
    rebuilt_by_fetch(cache_copy)
    assert json.loads(manifest.read_text())["version"] == cache_copy.version
