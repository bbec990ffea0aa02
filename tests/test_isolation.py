"""vmkit.experiments.isolation on real containers (and one VM): namespaces, CPU quota, pids and memory limits."""

from __future__ import annotations

import re
import threading
import time

import psutil
import pytest

from conftest import qemu_children, session_containers
from vmkit.experiments import isolation, isolation_plots, plots
from vmkit.container.container import Container
from vmkit.errors import InvalidInput, WorkloadError
from vmkit.experiments.isolation import CpuRates, CpuSample, MemoryView, OomRun

MiB = 1 << 20
HANGUL = re.compile("[가-힣]")


@pytest.fixture
def engine(docker_engine, guest_artifacts):
    """The engine and the image; every test ends with no container of this session."""
    yield docker_engine
    assert not session_containers(), "containers left behind"


@pytest.mark.integration
def test_namespaces_inside_and_out(engine):
    with Container(memory="32M") as box:
        view = isolation.namespaces(box)
        assert [p["command"] for p in view.inside_processes if p["pid"] == 1] == ["agent"]
        assert view.interfaces_inside == ["lo"]
        assert len(view.inside_processes) < view.host_process_count
        # the same process, seen from the host: an ordinary process with a pid of its own
        assert view.host_pid == box.host_pid != 1 and view.host_pid in psutil.pids()
        assert isolation.nspid(box.host_pid)[0] == box.host_pid
        assert isolation.nspid(box.host_pid)[-1] == 1 == view.inside_pid_of(box.host_pid)
        assert (1, box.host_pid, "agent") in view.pid_map
        assert view.host_process["parent"].startswith("containerd-shim")
        assert view.hostname_inside == box.short_id != view.hostname_host
        assert set(isolation.CORE_NAMESPACES) <= set(view.separate)
        assert "user" in view.shared  # root inside is the host's root: hence least privilege
        for inside, host, ours in view.links.values():
            assert inside == host, "read inside and from the host, the same process has the same ids"
        assert {row["namespace"] for row in view.rows() if row["separate"]} == set(view.separate)


@pytest.mark.integration
def test_cpu_quota_caps_a_busy_loop(engine):
    seen = []
    rates = isolation.cpu_quota_rates((1.0, 0.5), seconds=1.0, on_sample=seen.append)
    assert seen == rates.samples and len(rates.samples) >= 4 and not rates.cancelled
    assert {s.quota for s in rates.samples} == {1.0, 0.5}
    assert rates.best(0.5) <= 0.6, "a quota of 0.5 is a ceiling"
    if rates.best(1.0) >= 0.8:  # the host had a core to spare at least once
        assert 0.3 <= rates.ratio(0.5, 1.0) <= 0.7
    assert all(0 < s.wall_s and s.cpu_s >= 0 for s in rates.samples)


@pytest.mark.integration
def test_cpu_measurement_stops_when_asked(engine):
    stop = threading.Event()
    timer = threading.Timer(1.5, stop.set)
    timer.start()
    began = time.monotonic()
    rates = isolation.cpu_quota_rates((0.5,), seconds=1.0, rounds=30, max_rounds=30, stop=stop)
    assert rates.cancelled and time.monotonic() - began < 15


@pytest.mark.integration
def test_fork_probe_meets_the_pids_limit(engine):
    with Container(memory="32M", pids_limit=16) as box:
        probe = isolation.fork_probe(box, attempts=40)
        assert probe.stopped_by_limit and "fork" in probe.error
        assert 0 < probe.started < probe.limit == 16
        assert probe.peak_pids == 16
        deadline = time.monotonic() + 5
        while box.usage(inside=False).pids_current > 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert box.usage(inside=False).pids_current <= 4, "the probe's sleeps are cleaned up"
        # below the limit the loop simply finishes
        probe = isolation.fork_probe(box, attempts=3)
        assert probe.started == 3 and probe.error is None and not probe.stopped_by_limit


@pytest.mark.integration
def test_oom_experiment_sees_the_event_live(engine):
    updates = []
    with Container(memory="32M") as box:
        run = isolation.oom_experiment(box, rate="32M", on_update=lambda r: updates.append(len(r.samples)))
        assert run.oom_event is not None and run.oom_event["event"] == "OOM"
        assert 0 < run.oom_after_s < 30
        assert run.killed and run.alive and not run.cancelled
        assert 0 < run.peak_bytes <= run.limit_bytes == 32 * MiB
        assert len(updates) >= 3
        assert box.running


@pytest.mark.integration
def test_oom_experiment_stops_when_asked(engine):
    stop = threading.Event()
    with Container(memory="256M") as box:
        threading.Timer(0.8, stop.set).start()
        began = time.monotonic()
        run = isolation.oom_experiment(box, rate="16M", stop=stop)
        assert run.cancelled and run.oom_event is None and time.monotonic() - began < 5


@pytest.mark.integration
def test_same_request_vm_ram_and_container_limit(engine):
    from vmkit.vm.vm import VM

    with VM(memory="128M") as vm:
        vm_view = isolation.memory_view(vm)
        vm_alloc = isolation.allocate(vm, "512M")
        assert vm_alloc.killed  # by the guest's own kernel
    with Container(memory="128M") as box:
        ct_view = isolation.memory_view(box)
        since = time.monotonic()
        ct_alloc = isolation.allocate(box, "512M")
        assert ct_alloc.killed and box.wait_event("OOM", timeout=5, since=since) is not None
        assert isolation.allocate(box, "8M").rc == 0  # within the limit: nothing happens
    assert 0.6 * 128 * MiB <= vm_view.mem_total_bytes <= 128 * MiB and vm_view.limit_bytes is None
    host = psutil.virtual_memory().total
    assert ct_view.limit_bytes == 128 * MiB and abs(ct_view.mem_total_bytes - host) <= 0.01 * host
    assert HANGUL.search(vm_view.describe()["cgroup 한도(limit)"])
    assert not qemu_children()


@pytest.mark.integration
def test_bad_input_is_refused_in_korean(engine):
    with Container(memory="32M") as box:
        for call in (lambda: isolation.cpu_rate(box, seconds=0),
                     lambda: isolation.cpu_rate(box, seconds="soon"),
                     lambda: isolation.fork_probe(box, attempts=0),
                     lambda: isolation.fork_probe(box, attempts=True),
                     lambda: isolation.allocate(box, total="lots"),
                     lambda: isolation.allocate(box, pause=-1),
                     lambda: isolation.oom_experiment(box, rate="0"),
                     lambda: isolation.oom_experiment(box, interval=0)):
            with pytest.raises(InvalidInput) as caught:
                call()
            assert HANGUL.search(str(caught.value)), caught.value
    for call in (lambda: isolation.cpu_quota_rates(()),
                 lambda: isolation.cpu_quota_rates((0,)),
                 lambda: isolation.cpu_quota_rates((1.0, 99)),
                 lambda: isolation.cpu_quota_rates(rounds=0),
                 lambda: isolation.cpu_quota_rates(budget_s=-1)):
        with pytest.raises(InvalidInput) as caught:
            call()
        assert HANGUL.search(str(caught.value)), caught.value
    stopped = Container(memory="32M")
    for call in (lambda: isolation.namespaces(stopped), lambda: isolation.fork_probe(stopped),
                 lambda: isolation.memory_view(stopped), lambda: isolation.cpu_rate(stopped)):
        with pytest.raises(WorkloadError) as caught:
            call()
        assert HANGUL.search(str(caught.value))


def test_plots_have_hangul_labels():
    assert plots.font_has_hangul(plots.korean_font())
    run = OomRun(limit_bytes=32 * MiB, rate_bytes_s=32 * MiB,
                 samples=[(0.0, MiB), (0.5, 16 * MiB), (1.0, 31 * MiB), (1.2, MiB)], oom_after_s=1.1)
    rates = CpuRates((1.0, 0.5), [CpuSample(1.0, 0.98, 1.0), CpuSample(0.5, 0.5, 1.0)])
    views = [MemoryView("vm", 128 * MiB, 93 * MiB, None, 24 << 30),
             MemoryView("container", 128 * MiB, 24 << 30, 128 * MiB, 24 << 30)]
    for fig in (isolation_plots.oom_timeline(run), isolation_plots.cpu_rates(rates),
                isolation_plots.memory_views(views)):
        texts = [t.get_text() for ax in fig.axes for t in [ax.title, ax.xaxis.label, ax.yaxis.label]]
        assert any(HANGUL.search(t) for t in texts)
        assert plots.png(fig)[:4] == b"\x89PNG"
    assert rates.ratio(0.5, 1.0) == pytest.approx(0.5 / 0.98)
    assert rates.best(2.0) is None and rates.ratio(2.0, 1.0) is None


@pytest.mark.integration
def test_limits_panel_runs_stops_and_cleans_up(engine):
    from vmkit.widgets.limits import LimitsPanel

    panel = LimitsPanel(memory=32)
    panel.start_oom()
    panel.job.wait(90)
    assert "OOM 이벤트 도착" in panel.status.value, panel.status.value
    assert "OOM" in panel.events.value and panel.plot.value[:4] == b"\x89PNG"
    assert panel.container is None and panel.stop_button.disabled and not panel.oom_button.disabled
    # Stop really stops, mid-experiment
    panel.memory_slider.value = 256
    panel.start_oom()
    deadline = time.monotonic() + 30
    while (panel.container is None or not panel.container.running) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    began = time.monotonic()
    panel.stop()
    panel.job.wait(20)
    assert not panel.job.busy and time.monotonic() - began < 10
    assert "중지" in panel.status.value and panel.result.cancelled
    # the CPU quota measurement
    panel.cpu_slider.value = 0.5
    panel.start_cpu()
    panel.job.wait(90)
    assert "CPU 할당량 0.5" in panel.status.value and panel.cpu_result.best(0.5) <= 0.6
    # a second panel for the same cell stops the first one's work
    panel.start_oom()
    LimitsPanel(memory=32).close()
    assert not panel.job.busy and panel.container is None
