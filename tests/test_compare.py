"""compare, density, plots and the compare widget, with real QEMU and the real engine."""

import json
import subprocess
import sys
import threading
import time

import pytest

from vmkit.experiments import compare, plots
from vmkit.errors import InvalidInput

from conftest import qemu_children, session_containers


@pytest.fixture(scope="module")
def comparison(docker_engine, guest_artifacts):
    """One real 2-trial comparison of all three kinds, shared by the read-only tests."""
    seen = []
    result = compare.compare(trials=2, memory="128M", on_result=seen.append)
    return result, seen


@pytest.mark.integration
def test_compare_returns_every_kind_with_consistent_medians(comparison):
    result, _ = comparison
    frame = result.frame
    assert list(frame["kind"]) == ["vm", "vm-restore", "container"] * 2
    summary = result.summary()
    for kind in compare.KINDS:
        row = summary.loc[(kind, "ready_s")]
        assert row["count"] == 2
        assert 0 < row["min"] <= row["median"] <= row["p90"] <= row["max"]
        assert summary.loc[(kind, "usage.rss_bytes"), "median"] > 1 << 20
    # the lesson in figures: a container starts faster than a cold-booted VM, and a
    # snapshot restore beats the cold boot
    med = {k: summary.loc[(k, "ready_s"), "median"] for k in compare.KINDS}
    assert med["container"] < med["vm"]
    assert med["vm-restore"] < med["vm"]
    kernels = dict(zip(frame["kind"], frame["kernel"]))
    import os

    assert kernels["container"] == os.uname().release
    assert kernels["vm"] != os.uname().release
    assert not qemu_children() and not session_containers()


@pytest.mark.integration
def test_on_result_called_once_per_trial_in_order(comparison):
    result, seen = comparison
    assert [(r["kind"], r["trial"]) for r in seen] == [(r["kind"], r["trial"]) for r in result.records]
    assert len(seen) == 6


@pytest.mark.integration
def test_compare_json_shape(comparison):
    data = json.loads(json.dumps(comparison[0].to_dict()))
    for kind in compare.KINDS:
        assert data[kind]["ready_s"]["median"] > 0
        assert data[kind]["usage"]["rss_bytes"]["median"] > 0
    assert len(data["trials"]) == 6


@pytest.mark.integration
def test_plots_are_written_with_a_hangul_font(comparison, tmp_path):
    family = plots.korean_font()
    assert plots.font_has_hangul(family)
    path = plots.overview(comparison[0].records, tmp_path / "compare.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    for fig in (plots.phases(comparison[0].records), plots.ready_times(comparison[0].records),
                plots.memory(comparison[0].records)):
        texts = [t.get_text() for ax in fig.axes for t in ax.texts + [ax.title, ax.xaxis.label]]
        assert any(any("\uac00" <= ch <= "\ud7a3" for ch in t) for t in texts)


@pytest.mark.integration
def test_stopping_a_comparison_midway_leaves_nothing_running(docker_engine, guest_artifacts):
    stop = threading.Event()
    seen = []

    def on_result(record):
        seen.append(record)
        stop.set()  # ask to stop after the first trial

    result = compare.compare(trials=3, memory="128M", kinds=("container", "vm"), on_result=on_result,
                             stop=stop)
    assert result.cancelled and len(result.records) == 1 == len(seen)
    assert not qemu_children() and not session_containers()


@pytest.mark.integration
@pytest.mark.parametrize("kind,count", [("vm", 2), ("container", 3)])
def test_density_with_a_small_count(docker_engine, guest_artifacts, kind, count):
    result = compare.density(kind, count, memory="128M")
    assert result.started == count and not result.failures, result.failures
    assert result.total_pss_bytes > 0 and result.per_instance_pss_bytes > 0
    assert result.last_ready_s is not None and result.last_ready_s > 0
    assert not qemu_children() and not session_containers()


def test_bad_input_is_refused_before_anything_starts():
    with pytest.raises(InvalidInput):
        compare.compare(trials=0)
    with pytest.raises(InvalidInput):
        compare.compare(trials=1, memory="abc")
    with pytest.raises(InvalidInput):
        compare.compare(trials=1, kinds=("vm", "unikernel"))
    with pytest.raises(InvalidInput):
        compare.density("vm-restore", 2)
    assert not qemu_children()


@pytest.mark.integration
def test_compare_panel_draws_live(docker_engine, guest_artifacts):
    from vmkit.widgets import ComparePanel

    panel = ComparePanel(trials=1)
    panel.kinds.value = ("vm", "container")
    panel.start()
    panel.job.wait(120)
    assert panel.progress.value == 2 and len(panel.records) == 2
    assert panel.timeline.value[:4] == b"\x89PNG" and panel.memory_plot.value[:4] == b"\x89PNG"
    assert "컨테이너" in panel.table.value and "끝났습니다" in panel.status.value
    panel.close()
    assert not qemu_children() and not session_containers()


@pytest.mark.integration
def test_cli_compare_json(docker_engine, guest_artifacts, tmp_path):
    plot = tmp_path / "c.png"
    out = subprocess.run([sys.executable, "-m", "vmkit", "compare", "--trials", "1", "--json",
                          "--plot", str(plot)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    for kind in compare.KINDS:
        assert data[kind]["ready_s"]["median"] > 0
        assert data[kind]["usage"]["rss_bytes"]["median"] > 0
    assert plot.stat().st_size > 20_000


def test_missing_engine_is_reported_before_any_vm_boots(monkeypatch, guest_artifacts):
    from vmkit.container import engine
    from vmkit.errors import EngineError

    monkeypatch.setattr(engine, "find", lambda: None)
    with pytest.raises(EngineError, match="vmkit engine start"):
        compare.compare(trials=1, memory="128M")
    with pytest.raises(EngineError):
        compare.density("container", 2, memory="64M")
    assert not qemu_children()


def test_memory_minimum_follows_the_kinds():
    with pytest.raises(InvalidInput, match="최소"):
        compare.compare(trials=1, memory="64M", kinds=("vm", "container"))
    with pytest.raises(InvalidInput, match="최소"):
        compare.density("container", 1, memory="4M")


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["vm", "container"])
def test_workload_panel_starts_shows_phases_and_stops(docker_engine, guest_artifacts, kind):
    from vmkit.widgets import WorkloadPanel

    panel = WorkloadPanel(kind=kind, memory="128M")
    panel.start()
    panel.job.wait(120)
    assert "준비 완료" in panel.status.value, panel.status.value
    assert "단계(phase)" in panel.phases.value and "커널(kernel)" in panel.details.value
    assert panel.workload is not None and not panel.stop_button.disabled
    panel.close()
    assert panel.workload is None
    assert not qemu_children() and not session_containers()


@pytest.mark.integration
def test_running_the_cell_again_stops_the_previous_panels_work(docker_engine, guest_artifacts):
    """A new panel with the same key closes the last one: a re-run cell leaks nothing."""
    from vmkit.widgets import WorkloadPanel

    first = WorkloadPanel(kind="container", memory="128M", key="lab")
    first.start()
    first.job.wait(60)
    running = first.workload
    assert running is not None and running.running
    other = WorkloadPanel(kind="container", key="another cell")  # a different key: untouched
    assert first.workload is running
    second = WorkloadPanel(kind="container", memory="128M", key="lab")
    assert first.workload is None and not running.running
    second.close()
    other.close()
    assert not session_containers()


@pytest.mark.integration
def test_closing_a_panel_mid_boot_stops_the_vm(guest_artifacts):
    from vmkit.widgets import WorkloadPanel

    panel = WorkloadPanel(kind="vm", memory="128M")
    panel.start()
    deadline = time.monotonic() + 30
    while "QEMU 프로세스" not in panel.phases.value and time.monotonic() < deadline:
        time.sleep(0.05)
    panel.close()
    assert panel.workload is None and not panel.job.busy
    assert not qemu_children()
