"""The cost of emulation (vmkit.experiments.emulation) and lab 3's panel, with real QEMU and the real engine."""

import threading
import time

import pytest

from vmkit.experiments import emulation, plots
from vmkit.errors import InvalidInput, MissingComponent

from conftest import qemu_children, session_containers


def hangul(text: str) -> bool:
    return any("\uac00" <= ch <= "\ud7a3" for ch in text)


def records(container, vm):
    """Synthetic records: seconds per trial for the container and the TCG VM."""
    return ([{"runner": "container", "seconds": s, "overhead_s": 0.05} for s in container]
            + [{"runner": "vm-tcg", "seconds": s, "overhead_s": 0.02} for s in vm])


# ---------------------------------------------------------------- input, before anything starts

@pytest.mark.parametrize("size,expected", [(None, 50), (12, 12), ("12", 12), (" 7 ", 7), (8.0, 8)])
def test_sizes_that_are_accepted(size, expected):
    assert emulation.check_size("loop", size) == expected


@pytest.mark.parametrize("size", ["abc", 0, -3, True, 2.5, "", [10], 501])
def test_sizes_that_are_refused_in_korean(size):
    with pytest.raises(InvalidInput) as info:
        emulation.check_size("loop", size)
    assert hangul(str(info.value))


def test_bad_input_is_refused_before_anything_starts():
    for kwargs in ({"size": "abc"}, {"size": 0}, {"task": "nope"}, {"trials": 0},
                   {"trials": "3"}, {"memory": "64M"}, {"accels": ["xen"]}, {"accels": []}):
        with pytest.raises(InvalidInput) as info:
            emulation.measure(**kwargs)
        assert hangul(str(info.value)), kwargs
    assert not qemu_children() and not session_containers()


def test_runners_follow_the_kvm_probe(monkeypatch):
    from vmkit.vm import accel

    monkeypatch.setattr(accel, "kvm_status", lambda: (False, "KVM을 쓸 수 없습니다: 시험"))
    assert emulation.resolve_runners("auto") == ("container", "vm-tcg")
    assert emulation.resolve_runners(["tcg", "tcg"]) == ("container", "vm-tcg")
    with pytest.raises(MissingComponent, match="kvm"):
        emulation.measure(accels=["tcg", "kvm"])
    monkeypatch.setattr(accel, "kvm_status", lambda: (True, "KVM으로 시험 부팅"))
    assert emulation.resolve_runners("auto") == ("container", "vm-tcg", "vm-kvm")
    assert not qemu_children()


def test_medians_and_slowdowns_come_from_the_records():
    recs = records([0.1, 0.3, 0.2], [2.0, 1.0, 4.0])
    assert emulation.medians(recs) == {"container": 0.2, "vm-tcg": 2.0}
    assert emulation.slowdowns(recs) == {"vm-tcg": pytest.approx(10.0)}
    assert emulation.slowdowns(records([], [1.0])) == {}


def test_what_a_guest_sees_is_parsed():
    tcg_vm = ("hypervisor\n@@\nreadable\n@@\n"
              "model name\t: QEMU Virtual CPU version 2.5+\n")
    assert emulation.parse_view(tcg_vm) == {"hypervisor_flag": True, "log_readable": True,
                                            "hypervisor_line": None,
                                            "cpu_model": "QEMU Virtual CPU version 2.5+"}
    host = "@@\nreadable\n[    0.000000] Hypervisor detected: KVM\n@@\nmodel name\t: Xeon\n"
    view = emulation.parse_view(host)
    assert view["hypervisor_line"] == "Hypervisor detected: KVM" and not view["hypervisor_flag"]
    container = "hypervisor\n@@\n@@\nmodel name\t: Xeon\n"
    assert emulation.parse_view(container)["log_readable"] is False
    assert emulation.parse_view("")["cpu_model"] is None


def test_plot_and_tables_are_korean():
    from vmkit.widgets.emulation import headline_html, records_table

    recs = records([0.1, 0.2], [1.5, 2.5])
    fig = emulation.plot(recs)
    assert plots.font_has_hangul(plots.korean_font())
    texts = [t.get_text() for ax in fig.axes for t in ax.texts + [ax.title, ax.xaxis.label]]
    assert any("배" in t for t in texts) and all(hangul(t) for t in texts if t.strip())
    assert "컨테이너 (네이티브)" in [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert plots.png(fig)[:4] == b"\x89PNG"
    assert "13.3배" in headline_html(recs) and "13.3배" in records_table(recs)
    assert headline_html(records([0.1], [])) == ""


def test_panel_size_follows_the_task():
    from vmkit.widgets.emulation import EmulationPanel

    panel = EmulationPanel(task="loop", size=400)
    assert (panel.size.value, panel.size.min, panel.size.max) == (400, 5, 500)
    assert panel.size.description == "크기(size, 천 번)"
    panel.task_select.value = "sha256"
    assert (panel.size.value, panel.size.min, panel.size.max) == (8, 1, 64)
    assert panel.size.description == "크기(size, MiB)"
    panel.close()
    with pytest.raises(InvalidInput):
        EmulationPanel(task="loop", size=0)


# ---------------------------------------------------------------- real VM, real container

@pytest.fixture(scope="module")
def measured(docker_engine, guest_artifacts):
    """One real measurement (TCG only, the same on any host), shared by the read-only tests."""
    seen = []
    result = emulation.measure("loop", size=10, trials=2, accels=["tcg"], on_result=seen.append)
    return result, seen


@pytest.mark.integration
def test_both_run_the_same_command_and_tcg_is_slower(measured):
    result, seen = measured
    assert result.runners == ("container", "vm-tcg") and not result.cancelled
    assert [(r["runner"], r["trial"]) for r in seen] == \
        [("container", 0), ("vm-tcg", 0), ("container", 1), ("vm-tcg", 1)]
    assert {r["output"] for r in result.records} == {"10000"}
    for record in result.records:
        assert record["seconds"] > 0 and record["wall_s"] > 0 and record["overhead_s"] > 0
    assert {r["accel"] for r in result.records} == {None, "tcg"}
    middle = result.medians()
    assert middle["container"] > 0 and middle["vm-tcg"] > 0
    assert result.slowdowns()["vm-tcg"] == pytest.approx(middle["vm-tcg"] / middle["container"])
    assert result.slowdowns()["vm-tcg"] > 1, "software emulation must be slower than native"
    assert result.to_dict()["slowdowns"]["vm-tcg"] > 1
    assert not qemu_children() and not session_containers()


@pytest.mark.integration
def test_stop_ends_a_running_command_at_once(docker_engine, guest_artifacts):
    stop = threading.Event()
    timer = threading.Timer(1.5, stop.set)

    def on_result(record):
        if record["runner"] == "container":
            timer.start()  # stop while the VM is in the middle of a long command

    started = time.monotonic()
    result = emulation.measure("loop", size=400, trials=2, accels=["tcg"], on_result=on_result,
                               stop=stop)
    elapsed = time.monotonic() - started
    timer.cancel()
    assert result.cancelled and [r["runner"] for r in result.records] == ["container"]
    assert elapsed < 25, f"400k iterations under TCG take far longer; stop took {elapsed:.1f} s"
    assert not qemu_children() and not session_containers()


@pytest.mark.integration
def test_what_a_tcg_guest_and_a_container_see(docker_engine, guest_artifacts):
    import vmkit

    with vmkit.VM(memory="128M", accel="tcg") as vm:
        view = emulation.hypervisor_view(vm)
        assert vm.qmp("query-kvm")["enabled"] is False
    assert view["hypervisor_flag"] and view["log_readable"]
    assert "KVM" not in (view["hypervisor_line"] or ""), "TCG gives the guest no KVM signature"
    assert "QEMU" in view["cpu_model"]
    with vmkit.Container(memory="64M") as box:
        inside = emulation.hypervisor_view(box)
    host = emulation.hypervisor_view()
    assert inside["hypervisor_flag"] == host["hypervisor_flag"]
    assert inside["cpu_model"] == host["cpu_model"]
    assert not inside["log_readable"], "a container may not read the kernel log"
    assert not qemu_children() and not session_containers()


@pytest.mark.integration
def test_panel_measures_live_then_stops_a_long_run(docker_engine, guest_artifacts):
    from vmkit.widgets.emulation import EmulationPanel

    panel = EmulationPanel(task="loop", size=10, trials=1)
    panel.run()
    panel.job.wait(120)
    assert "끝났습니다" in panel.status.value, panel.status.value
    assert panel.progress.value == panel.progress.max == len(panel.records) >= 2
    assert "배</b> 느립니다" in panel.headline.value and "컨테이너 대비" in panel.table.value
    assert panel.plot.value[:4] == b"\x89PNG"
    assert panel.run_button.disabled is False and panel.stop_button.disabled is True

    panel.size.value = 400
    panel.run()
    deadline = time.monotonic() + 60
    while not panel.records and time.monotonic() < deadline:  # the VM's command is running now
        time.sleep(0.05)
    time.sleep(0.5)
    clicked = time.monotonic()
    panel.stop_button.click()
    panel.job.wait(30)
    assert not panel.job.busy and time.monotonic() - clicked < 10
    assert "중지했습니다" in panel.status.value, panel.status.value
    panel.close()
    assert not qemu_children() and not session_containers()


@pytest.mark.integration
def test_closing_the_panel_mid_boot_stops_everything(docker_engine, guest_artifacts):
    from vmkit.widgets.emulation import EmulationPanel

    panel = EmulationPanel(task="loop", size=10, trials=1, key="lab03")
    panel.run()
    time.sleep(0.5)
    again = EmulationPanel(key="lab03")  # the student ran the cell again: the old panel closes
    assert not panel.job.busy
    again.close()
    assert not qemu_children() and not session_containers()
