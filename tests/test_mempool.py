"""Guest memory as a pool (`vmkit.experiments.mempool`) and the second lab's panel (`vmkit.widgets.pool`),
on real QEMU guests.

`TestPool` shares two 256 MiB guests (fixture `shared_vm`, see test_sched). The panel
tests boot the panel's own guests and check that its Stop leaves nothing running.
"""

from __future__ import annotations

import time

import pytest

from vmkit.experiments import mempool
from vmkit.errors import InvalidInput
from conftest import qemu_children
from test_sched import assert_gone, two_guests

pytestmark = pytest.mark.integration
MiB = 1 << 20


@pytest.fixture(scope="class")
def shared_vm(guest_artifacts):
    """Two 256 MiB guests for the tests of `TestPool`."""
    with two_guests("256M") as vms:
        yield vms


def balloons(vms) -> dict[str, int]:
    return {label: vm.memory()["balloon_actual_bytes"] // MiB for label, vm in vms.items()}


class TestPool:
    def test_view(self, shared_vm):
        rows = mempool.view(shared_vm)
        assert [row["vm"] for row in rows] == ["A", "B"]
        for row in rows:
            assert row["ram_bytes"] == 256 * MiB
            assert 0.7 * row["ram_bytes"] <= row["mem_total_bytes"] <= row["balloon_bytes"] <= row["ram_bytes"]
            assert 0 < row["mem_available_bytes"] < row["mem_total_bytes"]
            assert row["rss_bytes"] > 0 and 0 < row["pss_bytes"] <= row["rss_bytes"]
        assert mempool.lent_bytes(rows) == sum(r["balloon_bytes"] for r in rows)

    def test_transfer_moves_memory_from_a_to_b(self, shared_vm):
        a, b = shared_vm["A"], shared_vm["B"]
        seen = []
        records = mempool.transfer(a, b, "128M", "64M", on_stage=lambda stage, rows: seen.append(stage))
        assert seen == list(mempool.STAGES)
        assert len(records) == 2 * len(mempool.STAGES)
        stage = {name: mempool.stage_rows(records, name) for name in mempool.STAGES}
        lent = [mempool.lent_bytes(list(rows.values())) // MiB for rows in stage.values()]
        assert lent == [512, 384, 384, 256, 384, 384]
        assert stage["b_used"]["A"]["balloon_bytes"] == 128 * MiB
        assert stage["b_used"]["B"]["balloon_bytes"] == 256 * MiB

        def change(vm, key, before, after):
            return (stage[after][vm][key] - stage[before][vm][key]) / MiB

        # the guests see the balloon as RAM going and coming
        assert abs(change("A", "mem_total_bytes", "a_used", "a_shrunk") + 128) <= 4
        assert abs(change("B", "mem_total_bytes", "start", "b_shrunk") + 128) <= 4
        assert abs(change("B", "mem_total_bytes", "a_shrunk", "b_grown") - 128) <= 4
        # the host: pages used and freed inside stay resident until the balloon takes them
        assert change("A", "rss_bytes", "start", "a_used") >= 32
        assert change("A", "rss_bytes", "a_shrunk", "a_used") >= 24
        assert change("B", "rss_bytes", "b_grown", "b_used") >= 32
        assert change("B", "mem_available_bytes", "b_grown", "b_used") <= -48
        steps = [row["step"] for row in records]
        assert steps == sorted(steps) and [row["seconds"] for row in records] == sorted(r["seconds"] for r in records)
        assert {row["label"] for row in records} == set(mempool.STAGES.values())

        # a second run starts from both guests at full size again
        again = mempool.transfer(a, b, "64M", "32M")
        start = mempool.stage_rows(again, "start")
        assert start["A"]["balloon_bytes"] == start["B"]["balloon_bytes"] == 256 * MiB
        assert balloons(shared_vm) == {"A": 192, "B": 256}

    def test_stop_ends_the_transfer_after_a_step(self, shared_vm):
        import threading

        stop = threading.Event()
        records = mempool.transfer(shared_vm["A"], shared_vm["B"], "64M", "16M",
                                   on_stage=lambda stage, rows: stop.set() if stage == "b_shrunk" else None,
                                   stop=stop)
        assert [r["stage"] for r in records] == ["start", "start", "b_shrunk", "b_shrunk"]

    def test_move_checks_before_changing_anything(self, shared_vm):
        a, b = shared_vm["A"], shared_vm["B"]
        for vm in (a, b):
            mempool.resize(vm, vm.memory_bytes)
        with pytest.raises(InvalidInput, match="받을 자리가 없습니다"):
            mempool.move(a, b, "64M")
        with pytest.raises(InvalidInput, match="최소"):
            mempool.move(a, b, "250M")
        with pytest.raises(InvalidInput, match="이해할 수 없습니다"):
            mempool.move(a, b, "lots")
        assert balloons(shared_vm) == {"A": 256, "B": 256}
        mempool.resize(b, 192 * MiB)
        result = mempool.move(a, b, "64M")
        assert result["moved_bytes"] == 64 * MiB and result["src"]["reached"] and result["dst"]["reached"]
        assert balloons(shared_vm) == {"A": 192, "B": 256}

    @pytest.mark.parametrize("amount, use, words", [
        ("200M", "16M", "최소"),
        ("128M", "200M", "너무 큽니다"),
        ("0", "16M", "0보다 커야"),
        ("128M", "x", "이해할 수 없습니다"),
    ])
    def test_transfer_refuses_bad_sizes_before_anything(self, shared_vm, amount, use, words):
        before = balloons(shared_vm)
        with pytest.raises(InvalidInput) as info:
            mempool.transfer(shared_vm["A"], shared_vm["B"], amount, use)
        assert words in str(info.value)
        assert balloons(shared_vm) == before

    def test_fill_and_release(self, shared_vm):
        b = shared_vm["B"]
        with pytest.raises(InvalidInput, match="까지만 채울 수 있습니다"):
            mempool.fill(b, "200M")
        before = b.meminfo()["MemAvailable"]
        mempool.fill(b, "32M")
        assert b.meminfo()["MemAvailable"] <= before - 24 * MiB
        mempool.release(b)
        assert b.meminfo()["MemAvailable"] >= before - 8 * MiB


# ---------------------------------------------------------------- the lab's panel, headless

def wait_for(condition, timeout: float = 30.0) -> bool:
    """Poll `condition` until it holds (the panel's live loop ticks every second or so)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_panel_runs_the_balloon_experiment_and_stop_stops_everything(guest_artifacts):
    from vmkit.widgets.pool import PoolPanel

    panel = PoolPanel(key="test")
    try:
        panel.run_balloon()
        panel.wait(180)
        assert "풍선 실험이 끝났습니다" in panel.memory_status.value, panel.status.value
        assert "+128 MiB" in panel.memory_status.value and "-128 MiB" in panel.memory_status.value
        assert len(panel.records) == 2 * len(mempool.STAGES)
        assert bytes(panel.memory_plot.value[:4]) == b"\x89PNG"
        assert "MemTotal" in panel.memory_view.value
        pids = [vm.pid for vm in panel.vms.values()]
        assert all(pids) and panel.live.busy
        # live CPU tab: spin A, pin both; the monitor applies it within a tick or two
        panel.spin["A"].value = True
        panel.pin_toggle.value = True
        assert wait_for(lambda: "A" in panel._spinning and panel._pinned_to is not None)
        ticks = len(panel.samples)
        assert wait_for(lambda: len(panel.samples) >= ticks + 2)
        assert "예" in panel.cpu_view.value and bytes(panel.cpu_plot.value[:4]) == b"\x89PNG"
        assert len(panel.samples) >= 2 and panel.samples[-1].rates["A"] > panel.samples[-1].rates["B"]
        # QMP tab: pause B, its clock stands still, resume
        panel.target.value = "B"
        panel.command("stop")
        panel.wait(30)
        assert "paused" in panel.qmp_view.value
        paused = time.monotonic()
        assert wait_for(lambda: "멈춤" in panel.clock_view.value), panel.cpu_status.value
        time.sleep(max(0.0, 2.0 - (time.monotonic() - paused)))
        panel.command("cont")
        panel.wait(30)
        held = time.monotonic() - paused
        resumed = time.monotonic()
        record = panel._clocks["B"]
        assert wait_for(lambda: record["last"].host_s > resumed)
        first, last = record["first"], record["last"]
        lost = (last.host_s - first.host_s) - (last.guest_s - first.guest_s)
        assert held - 1.0 <= lost <= held + 1.0, (lost, held)
        panel.command("query-balloon")
        panel.wait(30)
        assert "actual" in panel.qmp_view.value and "query-balloon" in panel.qmp_status.value
    finally:
        panel.stop_all()
    assert not panel.vms and not panel.live.busy and not panel.job.busy
    assert "중지했습니다" in panel.status.value
    assert_gone(pids)
    panel.close()


def test_rerunning_the_cell_stops_the_previous_panel(guest_artifacts):
    from vmkit.widgets.pool import PoolPanel

    first = PoolPanel(key="rerun")
    first.boot()
    first.wait(120)
    pids = [vm.pid for vm in first.vms.values()]
    assert len(pids) == 2 and all(pids)
    second = PoolPanel(key="rerun")  # what running the cell again does
    try:
        assert not first.vms and not first.live.busy
        assert_gone(pids)
    finally:
        second.close()


def test_stop_during_boot_ends_quietly(guest_artifacts):
    from vmkit.widgets.pool import PoolPanel

    panel = PoolPanel(key="stop-early")
    panel.boot()
    assert wait_for(lambda: not panel.stop_button.disabled, 5), "Stop can be pressed while booting"
    time.sleep(0.3)
    panel.stop_all()
    assert not panel.job.busy and not panel.vms and not qemu_children()
    assert "오류" not in panel.status.value
    panel.close()


def test_stop_in_the_middle_of_the_balloon_experiment(guest_artifacts):
    from vmkit.widgets.pool import PoolPanel

    panel = PoolPanel(key="stop-balloon")
    panel.run_balloon()
    assert wait_for(lambda: len(panel.records) >= 4, 120), panel.status.value
    panel.stop_all()
    assert not panel.job.busy and not panel.live.busy and not panel.vms and not qemu_children()
    assert len(panel.records) < 2 * len(mempool.STAGES)
    assert "오류" not in panel.status.value and "오류" not in panel.memory_status.value
    panel.close()
