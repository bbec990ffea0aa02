"""Lab 3's panel: one BusyBox command in a container and in VMs (TCG, KVM), timed live."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from ..experiments import emulation, plots
from .base import Background, Panel, check_number, table_html

_WIDE = {"description_width": "initial"}
_BUTTONS = {"description_width": "initial", "button_width": "auto"}


class EmulationPanel(Panel):
    """Choose a task and its size, run it natively and emulated, watch the slowdown grow.

    `run()` starts the measurement in the background (the Run button does the same);
    the Stop button stops the workloads at once, a running command included.
    """

    def __init__(self, task: str = "loop", size: int | None = None, trials: int = 3, key: str = ""):
        spec = emulation.get_task(task)
        check_number(trials, 1, 5, "시행 횟수(trials)는")
        self.task_select = W.ToggleButtons(
            options=[(t.label, t.name) for t in emulation.TASKS.values()], value=spec.name,
            description="작업(task)", style=_BUTTONS)
        self.size = W.IntSlider(style=_WIDE, continuous_update=False)
        self.trials = W.IntSlider(value=trials, min=1, max=5, description="시행 횟수(trials)",
                                  style=_WIDE)
        self.run_button = W.Button(description="측정 시작", button_style="success", icon="play")
        self.stop_button = W.Button(description="중지", button_style="danger", icon="stop",
                                    disabled=True)
        self.progress = W.IntProgress(value=0, min=0, max=1, description="진행")
        self.status = W.HTML("작업과 크기를 고른 뒤 <b>측정 시작</b>을 누르세요.")
        self.headline = W.HTML()
        self.table = W.HTML()
        self.plot = W.Image(format="png", layout=W.Layout(max_width="100%", height="auto"))
        self.records: list[dict[str, Any]] = []
        self.result: emulation.Emulation | None = None
        self.job = Background(self.status)
        self._use_task(spec, size)
        self.task_select.observe(lambda change: self._use_task(emulation.get_task(change["new"])),
                                 "value")
        self.run_button.on_click(lambda _b: self.run())
        self.stop_button.on_click(lambda _b: self.stop())
        super().__init__([self.task_select, W.HBox([self.size, self.trials]),
                          W.HBox([self.run_button, self.stop_button, self.progress]),
                          self.status, self.headline, self.table, self.plot], key=key)

    def _use_task(self, spec: emulation.Task, size: int | None = None) -> None:
        """Give the size slider the task's range and default (or `size`)."""
        value = emulation.check_size(spec, size)
        self.size.min, self.size.max = 0, spec.maximum  # widen first: min ≤ value ≤ max always
        self.size.value = value
        self.size.min = spec.minimum
        self.size.description = f"크기(size, {spec.unit})"

    def run(self) -> None:
        """Measure in the background; records, table and plot arrive as trials end."""
        if self.job.busy:
            return
        self.records = []
        self.result = None
        self.progress.value = 0
        self.headline.value = self.table.value = ""
        self.plot.value = b""
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.status.value = "컨테이너와 VM을 시작하는 중… (VM은 부팅에 몇 초 걸립니다)"

        def on_start(plan: emulation.Emulation) -> None:
            self.progress.max = plan.trials * len(plan.runners)
            note = "" if "vm-kvm" in plan.runners else \
                " KVM을 쓸 수 없는 호스트라 VM은 TCG로만 잽니다."
            self.status.value = (f"명령 <code>{html.escape(plan.command)}</code>을(를) "
                                 f"{', '.join(emulation.RUNNER_LABELS[r] for r in plan.runners)}에서 "
                                 f"{plan.trials}번씩 잽니다.{note}")

        def on_result(record: dict) -> None:
            self.records.append(record)
            self.progress.value = len(self.records)
            self.redraw()

        def job() -> None:
            self.result = emulation.measure(
                self.task_select.value, self.size.value, self.trials.value,
                on_start=on_start, on_result=on_result, stop=self.job.stop_event)
            self.status.value = (("중지했습니다: " if self.result.cancelled else "끝났습니다: ")
                                 + f"측정 {len(self.result.records)}번, {self.result.seconds:.1f}초")

        def done() -> None:
            self.run_button.disabled, self.stop_button.disabled = False, True

        self.job.run(job, done)

    def stop(self) -> None:
        """Stop the measurement now: the running workloads are stopped, not waited for."""
        self.job.stop_event.set()

    def redraw(self) -> None:
        """The slowdown headline, the table and the plot from the records so far."""
        if not self.records:
            return
        self.headline.value = headline_html(self.records)
        self.table.value = records_table(self.records)
        self.plot.value = plots.png(emulation.plot(self.records))

    def stop_all(self) -> None:
        self.stop()
        self.job.wait(60)

    def close(self) -> None:
        if hasattr(self, "_panel_key"):  # else __init__ refused its arguments: nothing to close
            super().close()


def headline_html(records) -> str:
    """'VM (QEMU+TCG)은 컨테이너보다 N배 느립니다' for each VM runner measured so far."""
    lines = [f"{emulation.RUNNER_LABELS[r]}: 같은 명령이 컨테이너보다 <b>{f:.1f}배</b> 느립니다"
             for r, f in emulation.slowdowns(records).items()]
    return "<div style='font-size:1.2em'>" + "<br>".join(lines) + "</div>" if lines else ""


def records_table(records) -> str:
    """Per runner: median seconds, trials, the round trip subtracted, the slowdown."""
    records = list(records)
    middle, factors = emulation.medians(records), emulation.slowdowns(records)
    rows = []
    for runner, median in middle.items():
        mine = [r for r in records if r["runner"] == runner]
        rows.append([emulation.RUNNER_LABELS[runner], f"{median:.3f}", len(mine),
                     f"{mine[0]['overhead_s']:.3f}",
                     f"{factors[runner]:.1f}배" if runner in factors else "기준(1배)"])
    return table_html(["실행 방식", "중앙값(초)", "시행", "빼 준 왕복 시간(초)", "컨테이너 대비"], rows)
