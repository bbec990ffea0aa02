"""The second lab's panel and plots: two VMs on one host, their memory as one pool, their
vCPUs as host threads the host schedules, and QEMU's answers over QMP.

`PoolPanel` boots two guests (A and B). Its tabs: the balloon moves memory from A to B
(`mempool.transfer`); busy loops and pinning change what each vCPU thread gets, plotted
live (`sched.CpuMeter`); QMP commands answer as tables, and pausing a guest freezes its
clock while the host's goes on (`clock`). The plots work on the same records in a
notebook without the panel.
"""

from __future__ import annotations

import html
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping

import ipywidgets as W

from ..errors import WorkloadError
from ..experiments import clock, mempool, plots
from ..host import sched
from ..units import format_bytes
from .base import Background, Panel, check_choice, table_html

MiB = 1 << 20
VM_COLORS = {"A": "#d1495b", "B": "#00798c"}
POOL_MEMORY_CHOICES = ["256M", "512M"]
#: QMP commands the panel offers, with what each answers (Korean).
QMP_COMMANDS = {
    "query-status": "실행 상태(run state)",
    "query-cpus-fast": "vCPU와 그 호스트 스레드(thread)",
    "query-balloon": "풍선(balloon)이 게스트에 남겨 둔 메모리",
    "query-memory-size-summary": "게스트 RAM의 크기",
}
#: Seconds between two live updates (plot, rates, clocks).
TICK = 1.0
HISTORY = 90


# ---------------------------------------------------------------- plots

def _stage_axis(ax, labels: list[str]) -> None:
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def memory_figure(records: list[dict[str, Any]]):
    """`mempool.transfer` records: what the host lends each VM (balloon sizes, stacked),
    what each guest sees (MemTotal, MemAvailable) and what each costs the host (RSS, PSS)."""
    fig, (lent, inside, host) = plots.figure(1, 3, size=(12, 4.3))
    stages = list(dict.fromkeys(row["stage"] for row in records))
    labels = [mempool.STAGES.get(s, s) for s in stages]
    xs = range(len(stages))
    by = {(row["stage"], row["vm"]): row for row in records}
    vms = list(dict.fromkeys(row["vm"] for row in records))

    def series(vm: str, key: str) -> list[float]:
        return [(by[(s, vm)].get(key) or float("nan")) / MiB for s in stages]

    bottom = [0.0] * len(stages)
    for vm in vms:
        values = series(vm, "balloon_bytes")
        lent.bar(xs, values, bottom=bottom, color=VM_COLORS.get(vm), label=f"VM {vm}", width=0.6)
        bottom = [b + v for b, v in zip(bottom, values)]
    for x, total in zip(xs, bottom):
        lent.text(x, total, f"{total:.0f}", ha="center", va="bottom", fontsize=8)
    lent.set_title("하이퍼바이저가 빌려준 메모리\n(query-balloon의 actual, 두 VM 합)", fontsize=10)
    lent.set_ylabel("MiB")
    lent.set_ylim(0, max(bottom) * 1.15)
    for vm in vms:
        color = VM_COLORS.get(vm)
        inside.plot(xs, series(vm, "mem_total_bytes"), "-o", color=color, label=f"{vm} MemTotal")
        inside.plot(xs, series(vm, "mem_available_bytes"), "--s", color=color, alpha=0.7,
                    label=f"{vm} MemAvailable")
        host.plot(xs, series(vm, "rss_bytes"), "-o", color=color, label=f"{vm} RSS")
        host.plot(xs, series(vm, "pss_bytes"), ":", color=color, alpha=0.7, label=f"{vm} PSS")
    inside.set_title("게스트가 보는 메모리\n(/proc/meminfo)", fontsize=10)
    host.set_title("호스트가 내는 메모리\n(QEMU 프로세스의 RSS·PSS)", fontsize=10)
    inside.set_ylim(bottom=0)
    for ax in (lent, inside, host):
        _stage_axis(ax, labels)
        ax.legend(fontsize=7, frameon=False, loc="best")
    return fig


def cpu_figure(measurements: Mapping[str, sched.CpuMeasurement]):
    """Named CPU measurements ({condition: CpuMeasurement}): each VM's CPU-seconds per
    second, and how busy each host core was, per condition."""
    fig, (rates, cores) = plots.figure(1, 2, size=(11, 3.8))
    names = list(measurements)
    vms = list(dict.fromkeys(vm for m in measurements.values() for vm in m.rates))
    width = 0.8 / max(len(vms), 1)
    for i, vm in enumerate(vms):
        values = [measurements[n].rates.get(vm, 0.0) for n in names]
        bars = rates.bar([x + (i - (len(vms) - 1) / 2) * width for x in range(len(names))], values,
                         width, color=VM_COLORS.get(vm), label=f"VM {vm}의 vCPU 스레드")
        rates.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
    rates.axhline(1.0, color="#555", linewidth=0.8, linestyle="--")
    rates.text(len(names) - 0.5, 1.0, "코어 하나 전부", ha="right", va="bottom", fontsize=8, color="#555")
    rates.set_ylabel("CPU 시간 비율 (CPU-초 / 초)")
    rates.set_title("vCPU 스레드가 받은 CPU 시간", fontsize=10)
    rates.set_ylim(0, 1.25)
    core_ids = sorted({c for m in measurements.values() for c in m.cores})
    cwidth = 0.8 / max(len(core_ids), 1)
    for j, core in enumerate(core_ids):
        values = [measurements[n].cores.get(core, 0.0) for n in names]
        cores.bar([x + (j - (len(core_ids) - 1) / 2) * cwidth for x in range(len(names))], values, cwidth,
                  color=plots.matplotlib_color(2 * j + 1), label=f"코어 {core}")
    cores.set_ylabel("바쁜 시간 비율 (호스트 전체)")
    cores.set_title("호스트 코어별 사용률", fontsize=10)
    cores.set_ylim(0, 1.25)
    for ax in (rates, cores):
        ax.set_xticks(range(len(names)), names, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, frameon=False, loc="upper left")
    return fig


def rate_figure(samples: list[sched.CpuSample], title: str = ""):
    """A live line plot: each VM's CPU-seconds per second over time."""
    fig, ax = plots.figure(size=(8, 3.0))
    vms = list(dict.fromkeys(vm for s in samples for vm in s.rates))
    for vm in vms:
        ax.plot([s.t for s in samples], [s.rates.get(vm, 0.0) for s in samples], "-",
                color=VM_COLORS.get(vm), label=f"VM {vm}", linewidth=2)
    ax.axhline(1.0, color="#555", linewidth=0.8, linestyle="--")
    ax.set_ylim(0, 1.2)
    ax.set_xlabel("시간 (초)")
    ax.set_ylabel("CPU-초 / 초")
    ax.set_title(title or "vCPU 스레드가 받는 CPU 시간 (실시간)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    return fig


# ---------------------------------------------------------------- tables

def memory_table(rows: list[dict[str, Any]]) -> str:
    """`mempool.view` rows as a Korean HTML table."""
    def mib(value) -> str:
        return "" if value is None else f"{value / MiB:.0f}"

    body = [(row["vm"], mib(row["ram_bytes"]), mib(row["balloon_bytes"]), mib(row["mem_total_bytes"]),
             mib(row["mem_available_bytes"]), mib(row["rss_bytes"]), mib(row["pss_bytes"])) for row in rows]
    total = format_bytes(mempool.lent_bytes(rows))
    return (table_html(["VM", "RAM", "빌려준 메모리(actual)", "MemTotal", "MemAvailable", "호스트 RSS", "호스트 PSS"],
                       body) + f"<div>단위 MiB · 두 VM에 빌려준 합계: <b>{total}</b></div>")


def _cell(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return ", ".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else \
            ", ".join(map(str, value))
    return str(value)


def qmp_table(answer: Any) -> str:
    """A QMP answer as a table: a dict as key/value rows, a list of dicts as columns."""
    if isinstance(answer, dict):
        return table_html(["항목", "값"], [(key, _cell(value)) for key, value in answer.items()])
    if isinstance(answer, list) and all(isinstance(item, dict) for item in answer):
        columns = list(dict.fromkeys(key for item in answer for key in item))
        return table_html(columns, [[_cell(item.get(c, "")) for c in columns] for item in answer])
    return f"<pre>{html.escape(repr(answer))}</pre>"


# ---------------------------------------------------------------- the panel

class PoolPanel(Panel):
    """Two VMs (A and B) on this host: the balloon moves memory between them, busy loops and
    pinning show how the host schedules their vCPU threads, QMP answers as tables.

    `boot()`, `run_balloon()`, `command(name)` and the spin/pin toggles do what the buttons
    do; `job` (boot, balloon), `live` (live updates) and `commands` (QMP) are the panel's
    background jobs, `wait()` them in tests.
    """

    def __init__(self, memory: str = "256M", key: str = ""):
        check_choice(memory, POOL_MEMORY_CHOICES, "메모리(memory)")
        self.vms: dict[str, Any] = {}
        self.records: list[dict[str, Any]] = []
        self.samples: deque = deque(maxlen=HISTORY)
        self._clocks: dict[str, dict[str, Any]] = {}
        self._spinning: set[str] = set()
        self._pinned_to: int | None = None
        self._lock = threading.Lock()
        self.memory_select = W.Dropdown(options=POOL_MEMORY_CHOICES, value=memory, description="메모리")
        self.boot_button = W.Button(description="두 VM 시작", button_style="success", icon="play")
        self.stop_button = W.Button(description="중지", button_style="danger", icon="stop", disabled=True)
        self.status = W.HTML("<b>두 VM 시작</b>을 누르거나, 바로 <b>풍선 실험 시작</b>을 누르세요.")
        self.tabs = W.Tab([self._memory_tab(), self._cpu_tab(), self._qmp_tab()])
        for i, title in enumerate(["메모리 풀: 풍선", "CPU 스케줄링", "QMP와 시계"]):
            self.tabs.set_title(i, title)
        self.job = Background(self.status)
        self.live = Background(self.cpu_status)
        self.commands = Background(self.qmp_status)
        self.boot_button.on_click(lambda _b: self.boot())
        self.stop_button.on_click(lambda _b: self.stop_all())
        super().__init__([W.HBox([self.memory_select, self.boot_button, self.stop_button]),
                          self.status, self.tabs], key=key)

    # -- layout
    def _memory_tab(self) -> W.VBox:
        self.balloon_button = W.Button(description="풍선 실험 시작", button_style="primary",
                                       icon="exchange", layout=W.Layout(width="auto"))
        self.memory_status = W.HTML("A의 메모리 절반을 풍선(balloon)으로 회수해서 B에게 건넵니다.")
        self.memory_view = W.HTML()
        self.memory_plot = W.Image(format="png", layout=W.Layout(max_width="100%", height="auto"))
        self.balloon_button.on_click(lambda _b: self.run_balloon())
        return W.VBox([self.balloon_button, self.memory_status, self.memory_view, self.memory_plot])

    def _cpu_tab(self) -> W.VBox:
        self.spin = {vm: W.ToggleButton(description=f"{vm} 바쁘게 (busy loop)", icon="fire",
                                        layout=W.Layout(width="auto")) for vm in ("A", "B")}
        cores = sched.host_cores()
        self.core_select = W.Dropdown(options=cores, value=cores[0], description="코어",
                                      layout=W.Layout(width="140px"))
        self.pin_toggle = W.Checkbox(description="두 vCPU 스레드를 이 코어 하나에 고정 (pin)", indent=False)
        self.cpu_status = W.HTML("VM이 켜지면 1초마다 다시 잽니다.")
        self.cpu_view = W.HTML()
        self.cpu_plot = W.Image(format="png", layout=W.Layout(max_width="100%", height="auto"))
        return W.VBox([W.HBox([*self.spin.values()]), W.HBox([self.core_select, self.pin_toggle]),
                       self.cpu_status, self.cpu_view, self.cpu_plot])

    def _qmp_tab(self) -> W.VBox:
        self.target = W.ToggleButtons(options=["A", "B"], value="A", description="VM")
        buttons = [W.Button(description="일시 정지 (stop)", icon="pause", layout=W.Layout(width="auto")),
                   W.Button(description="재개 (cont)", icon="play", layout=W.Layout(width="auto"))]
        buttons[0].on_click(lambda _b: self.command("stop"))
        buttons[1].on_click(lambda _b: self.command("cont"))
        for name in QMP_COMMANDS:
            button = W.Button(description=name, tooltip=QMP_COMMANDS[name], layout=W.Layout(width="auto"))
            button.on_click(lambda _b, name=name: self.command(name))
            buttons.append(button)
        self.qmp_status = W.HTML("QMP 명령을 누르면 QEMU의 답이 표로 나옵니다.")
        self.qmp_view = W.HTML()
        self.clock_view = W.HTML()
        return W.VBox([self.target, W.HBox(buttons[:2]), W.HBox(buttons[2:]), self.qmp_status,
                       self.qmp_view, W.HTML("<b>시계: 게스트 uptime과 호스트 시간</b>"), self.clock_view])

    # -- VMs
    def _boot_vms(self) -> None:
        """Boot A and B side by side (inside a job); either failing stops both."""
        if self.vms and all(vm.running for vm in self.vms.values()):
            return
        from ..vm.vm import VM

        self.status.value = "A와 B를 부팅하는 중…"
        started = time.monotonic()
        with self._lock:
            if self.job.stop_event.is_set():
                return
            self.vms = {label: VM(memory=self.memory_select.value, **mempool.BALLOON_ONLY)
                        for label in ("A", "B")}
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(vm.start) for vm in self.vms.values()]
            errors = [f.exception() for f in futures if f.exception() is not None]
        if errors or self.job.stop_event.is_set():
            self._stop_vms()
            if errors:
                raise errors[0]
            return
        self._clocks = {label: {"first": clock.read(vm), "last": None} for label, vm in self.vms.items()}
        self.status.value = (f"<b>A와 B가 준비되었습니다</b> ({time.monotonic() - started:.1f}초, "
                             f"각 {format_bytes(self.vms['A'].memory_bytes)}, "
                             f"가속기 {self.vms['A'].accel})")
        self.stop_button.disabled = False
        self.memory_select.disabled = True
        self._start_live()

    def boot(self) -> None:
        """Boot both VMs in the background."""
        if not self.job.busy:
            self.job.run(self._guarded(self._boot_vms), self._job_done)

    def _guarded(self, work):
        """`work` for a job: once Stop was pressed, what it trips over is not an error."""
        def job() -> None:
            self.boot_button.disabled = self.balloon_button.disabled = True
            self.stop_button.disabled = False
            try:
                work()
            except Exception:
                if not self.job.stop_event.is_set():
                    raise
        return job

    def _job_done(self) -> None:
        running = bool(self.vms) and all(vm.running for vm in self.vms.values())
        self.boot_button.disabled = running
        self.balloon_button.disabled = False
        if self.job.stop_event.is_set():
            self.status.value = "중지했습니다."

    def _stop_vms(self) -> None:
        with self._lock:
            vms, self.vms = list(self.vms.values()), {}
        threads = [threading.Thread(target=vm.stop, daemon=True) for vm in vms]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        self._spinning.clear()
        self._pinned_to = None

    def stop_all(self) -> None:
        """Stop the experiment, the live updates and both VMs."""
        for job in (self.job, self.live, self.commands):
            job.stop_event.set()
        self._stop_vms()
        for job in (self.job, self.live, self.commands):
            job.wait(60)
        self._stop_vms()  # any a job made between the first stop and its end
        self.stop_button.disabled = True
        self.boot_button.disabled = self.balloon_button.disabled = self.memory_select.disabled = False
        self.status.value = "중지했습니다: 두 VM을 껐습니다."

    # -- memory
    def run_balloon(self) -> None:
        """Boot if needed, then move half of A's memory to B with the balloon (background)."""
        if self.job.busy:
            return
        self.records = []

        def work() -> None:
            self._boot_vms()
            ram = self.vms["A"].memory_bytes
            amount, use = ram // 2, int(ram * 0.3) // MiB * MiB
            self.memory_status.value = f"풍선 실험 중: A에서 B로 {format_bytes(amount)}를 옮깁니다…"

            def on_stage(stage: str, rows: list[dict]) -> None:
                self.records.extend(rows)
                self.memory_status.value = f"풍선 실험 중: {mempool.STAGES[stage]}"
                self.memory_view.value = memory_table(rows)
                self.memory_plot.value = plots.png(memory_figure(self.records))

            records = mempool.transfer(self.vms["A"], self.vms["B"], amount, use, on_stage=on_stage,
                                       stop=self.job.stop_event)
            if len(records) == 2 * len(mempool.STAGES):
                first = mempool.stage_rows(records, "b_shrunk")
                last = mempool.stage_rows(records, "b_grown")
                self.memory_status.value = (
                    f"<b>풍선 실험이 끝났습니다</b>: A의 MemTotal "
                    f"{(last['A']['mem_total_bytes'] - first['A']['mem_total_bytes']) / MiB:+.0f} MiB, "
                    f"B의 MemTotal {(last['B']['mem_total_bytes'] - first['B']['mem_total_bytes']) / MiB:+.0f} MiB. "
                    f"하이퍼바이저가 빌려준 합계는 {format_bytes(mempool.lent_bytes(list(first.values())))} → "
                    f"{format_bytes(mempool.lent_bytes(list(last.values())))}.")

        self.job.run(self._guarded(work), self._job_done)

    # -- live: CPU rates, spin and pin, clocks
    def _start_live(self) -> None:
        if not self.live.busy:
            self.live.run(self._live_loop, lambda: None)

    def _live_loop(self) -> None:
        vms = dict(self.vms)
        meter = sched.CpuMeter(vms)
        self.samples.clear()
        stop = self.live.stop_event
        while not stop.wait(TICK):
            try:
                states = {label: vm.status() for label, vm in vms.items()}
                self._apply_toggles(vms, states)
                sample = meter.sample()
                self.samples.append(sample)
                self._show_cpu(sample, meter)
                self._show_clocks(vms, states)
            except WorkloadError:
                if stop.is_set() or not all(vm.running for vm in vms.values()):
                    return  # the VMs were stopped: the loop ends with them
                # else a guest was paused mid-tick (its agent cannot answer): next tick

    def _apply_toggles(self, vms: dict, states: dict[str, str]) -> None:
        for label, vm in vms.items():
            wanted = self.spin[label].value
            if wanted != (label in self._spinning) and states[label] == "running":
                (sched.spin if wanted else sched.stop_spin)(vm)
                (self._spinning.add if wanted else self._spinning.discard)(label)
        core = self.core_select.value if self.pin_toggle.value else None
        if core != self._pinned_to:
            if core is None:
                sched.unpin(vms)
            else:
                sched.pin(vms, core)
            self._pinned_to = core

    def _show_cpu(self, sample: sched.CpuSample, meter: sched.CpuMeter) -> None:
        allowed = meter.affinity()
        rows = [(label, f"{rate:.2f}", "예" if label in self._spinning else "아니요",
                 ", ".join(map(str, allowed[label])),
                 ", ".join(f"{t.tid} ({t.name})" for t in meter.threads[label]))
                for label, rate in sample.rates.items()]
        cores = " · ".join(f"코어 {core}: {busy:.0%}" for core, busy in sample.cores.items())
        self.cpu_view.value = (table_html(["VM", "CPU-초/초", "바쁜 루프", "허용 코어(affinity)",
                                           "vCPU 스레드 (tid)"], rows)
                               + f"<div>호스트 코어 사용률 — {cores}</div>")
        pin = f"코어 {self._pinned_to}에 고정" if self._pinned_to is not None else "고정 안 함"
        self.cpu_plot.value = plots.png(rate_figure(list(self.samples), f"vCPU 스레드가 받는 CPU 시간 ({pin})"))
        self.cpu_status.value = f"실시간으로 재는 중 (1초마다) · 두 vCPU 스레드: <b>{pin}</b>"

    def _show_clocks(self, vms: dict, states: dict[str, str]) -> None:
        """Each guest's uptime against the host's clock: a paused guest's stays where it was."""
        now = time.monotonic()
        rows = []
        for label, vm in vms.items():
            record = self._clocks.get(label)
            if record is None:
                continue
            running = states[label] == "running"
            if running:
                record["last"] = clock.read(vm)
            first, last = record["first"], record["last"] or record["first"]
            lost = (last.host_s - first.host_s) - (last.guest_s - first.guest_s)
            paused_at = None if running else next(
                (e["time"] for e in reversed(vm.events()) if e.get("event") == "STOP"), None)
            rows.append((label, "실행 중" if running else f"멈춤 ({states[label]})",
                         f"{now - first.host_s:.1f}", f"{last.guest_s:.2f}", f"{max(lost, 0.0):.1f}",
                         "" if paused_at is None else f"{now - paused_at:.1f}"))
        self.clock_view.value = table_html(
            ["VM", "상태", "호스트 경과 시간(초)", "게스트 uptime(초)", "게스트가 못 본 시간(초)", "멈춘 지(초)"], rows) + (
            "<div>게스트 uptime은 게스트 안의 에이전트(agent)가 읽습니다. 멈춘 게스트는 답하지 못하므로 마지막 값에 머물고, "
            "재개(cont)한 뒤에는 멈춰 있던 시간만큼 호스트 시계보다 뒤처집니다.</div>")

    # -- QMP
    def command(self, name: str) -> None:
        """Run a QMP command on the chosen VM in the background; its answer shows as a table."""
        if self.commands.busy:
            return
        label = self.target.value

        def work() -> None:
            vm = self.vms.get(label)
            if vm is None or not vm.running:
                raise WorkloadError("먼저 두 VM을 시작하세요.")
            if name == "stop":
                vm.pause()
                answer = vm.qmp("query-status")
            elif name == "cont":
                vm.resume()
                answer = vm.qmp("query-status")
            else:
                answer = vm.qmp(name)
            what = QMP_COMMANDS.get(name) or ("vCPU를 멈췄습니다(일시 정지)" if name == "stop" else
                                              "vCPU를 다시 돌립니다(재개)")
            self.qmp_status.value = f"VM {label} — <code>{html.escape(name)}</code>: {html.escape(what)}"
            self.qmp_view.value = qmp_table(answer)

        self.commands.run(work, lambda: None)

    def wait(self, timeout: float = 120.0) -> None:
        """Block until the boot/balloon job and any QMP command are done (tests, nbval)."""
        self.job.wait(timeout)
        self.commands.wait(timeout)
