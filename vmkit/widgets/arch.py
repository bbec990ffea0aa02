"""Lab 05's panel: boot a guest of the chosen architecture and see which CPU it thinks it has."""

from __future__ import annotations

import html
import platform
import threading
from typing import Any

import ipywidgets as W

from ..guest import arches
from .base import MEMORY_CHOICES, Background, Panel, check_choice, table_html
from .compare import _phase_table

#: How much of the guest's /proc/cpuinfo the panel shows.
CPUINFO_LINES = 8


class ArchPanel(Panel):
    """Choose an architecture, boot its guest, watch the phases arrive, read `uname -m`, stop.

    The Stop button works during the boot too: the VM is stopped and the boot ends with
    vmkit's Korean error. Headless (nbval, the book), call `boot()`, `wait()` and `stop()`;
    `result` then holds what the panel shows.
    """

    def __init__(self, arch: str = "aarch64", memory: str = "256M", key: str = ""):
        check_choice(memory, MEMORY_CHOICES, "메모리(memory)")
        self.vm = None
        self.result: dict[str, Any] = {}
        self._lock = threading.Lock()
        options = [(f"{a.name} ({'호스트와 같은 CPU' if a.native else 'QEMU가 흉내 낸 CPU'})", a.name)
                   for a in arches.ARCHES.values()]
        self.arch_select = W.ToggleButtons(options=options, value=arches.lookup(arch).name,
                                           description="아키텍처", style={"button_width": "auto", "description_width": "initial"})
        self.memory_select = W.Dropdown(options=MEMORY_CHOICES, value=memory, description="메모리",
                                        layout=W.Layout(width="200px"))
        self.boot_button = W.Button(description="부팅", button_style="success", icon="play")
        self.stop_button = W.Button(description="중지", button_style="danger", icon="stop", disabled=True)
        self.status = W.HTML(f"아키텍처(architecture)를 고르고 <b>부팅</b>을 누르세요. "
                             f"이 호스트의 CPU: <b>{html.escape(arches.host_arch())}</b>")
        self.phases = W.HTML()
        self.machine = W.HTML()
        self.machine.add_class("vmkit-arch-machine")
        self.cpuinfo = W.HTML()
        self.job = Background(self.status)
        self.boot_button.on_click(lambda _b: self.boot())
        self.stop_button.on_click(lambda _b: self.stop())
        super().__init__([self.arch_select, self.memory_select,
                          W.HBox([self.boot_button, self.stop_button]),
                          self.status, self.phases, self.machine, self.cpuinfo], key=key)

    def boot(self) -> None:
        """Boot the chosen architecture's guest in the background (as the Boot button does)."""
        if self.job.busy or self.vm is not None:
            return
        from ..vm.vm import VM

        rows: list[tuple[str, float]] = []
        self.result = {}
        self.boot_button.disabled = self.arch_select.disabled = True
        self.stop_button.disabled = False
        self.phases.value = self.machine.value = self.cpuinfo.value = ""
        vm = self.vm = VM(memory=self.memory_select.value, arch=self.arch_select.value)
        self.status.value = f"{vm.arch.name} 게스트를 부팅하는 중… (단계가 나오는 대로 아래에 보입니다)"

        def on_phase(name: str, seconds: float) -> None:
            rows.append((name, seconds))
            self.phases.value = _phase_table(rows)

        def job() -> None:
            trace = vm.start(on_phase=on_phase)
            machine = vm.guest("uname -m").strip()
            cpuinfo = vm.guest(f"head -n {CPUINFO_LINES} /proc/cpuinfo")
            self.result = {"arch": vm.arch.name, "machine": machine, "kernel": trace.guest.get("kernel"),
                           "ready_s": trace.ready_s, "accel": trace.accel, "phases": trace.seconds(),
                           "cpuinfo": cpuinfo}
            self.status.value = (f"<b>준비 완료</b>: {trace.ready_s:.2f}초, 가속기(accelerator) "
                                 f"{html.escape(str(trace.accel).upper())} — {html.escape(trace.accel_reason or '')}")
            self.machine.value = table_html(("", "uname -m", "커널(kernel)"), [
                ("게스트(guest)", machine, trace.guest.get("kernel")),
                ("호스트(host)", arches.host_arch(), platform.release())])
            self.cpuinfo.value = (f"<div>게스트의 /proc/cpuinfo (앞 {CPUINFO_LINES}줄)</div>"
                                  f"<pre style='margin:0'>{html.escape(cpuinfo)}</pre>")

        def done() -> None:
            if not self.result:
                self.stop()  # a failed or stopped boot: nothing may stay running
            self.boot_button.disabled = self.arch_select.disabled = self.vm is not None

        self.job.run(job, done)

    def wait(self, timeout: float | None = 120) -> dict[str, Any]:
        """Block until the boot started by `boot()` has ended; returns `result`."""
        self.job.wait(timeout)
        return self.result

    def stop(self) -> None:
        """Stop the guest now, whether it is booting or ready."""
        with self._lock:
            vm, self.vm = self.vm, None
        if vm is not None:
            vm.stop()
            self.status.value = f"{vm.arch.name} 게스트를 중지했습니다."
        self.stop_button.disabled = True
        self.boot_button.disabled = self.arch_select.disabled = self.job.busy

    def stop_all(self) -> None:
        self.stop()
        self.job.wait(60)
