"""The first lab's panels: one workload's phases live, and the side-by-side comparison."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from ..container import limits as container_limits
from ..experiments import compare as compare_mod
from ..experiments import plots
from ..units import format_bytes
from .base import MEMORY_CHOICES, TABLE_STYLE, Background, Panel, check_choice, check_number


class WorkloadPanel(Panel):
    """Start one VM or container, watch its phases arrive live, look inside, stop it."""

    def __init__(self, kind: str = "vm", memory: str = "256M", key: str = ""):
        check_choice(kind, ("vm", "container"), "종류(kind)")
        check_choice(memory, MEMORY_CHOICES, "메모리(memory)")
        self.kind = kind
        self.workload = None
        self.kind_select = W.ToggleButtons(options=[("VM (QEMU)", "vm"), ("컨테이너 (Docker)", "container")],
                                           value=kind, description="종류")
        self.memory_select = W.Dropdown(options=MEMORY_CHOICES, value=memory, description="메모리")
        self.start_button = W.Button(description="시작", button_style="success", icon="play")
        self.stop_button = W.Button(description="중지", button_style="danger", icon="stop", disabled=True)
        self.status = W.HTML("준비되면 <b>시작</b>을 누르세요.")
        self.phases = W.HTML()
        self.details = W.HTML()
        self.job = Background(self.status)
        self.start_button.on_click(lambda _b: self.start())
        self.stop_button.on_click(lambda _b: self.stop())
        super().__init__([W.HBox([self.kind_select, self.memory_select]),
                          W.HBox([self.start_button, self.stop_button]),
                          self.status, self.phases, self.details], key=key)

    def _factory(self):
        from ..container.container import Container
        from ..vm.vm import VM

        cls = VM if self.kind_select.value == "vm" else Container
        return cls(memory=self.memory_select.value)

    def start(self) -> None:
        """Start in the background; phases appear in the panel as they happen."""
        if self.job.busy or self.workload is not None:
            return
        rows: list[tuple[str, float]] = []
        self.start_button.disabled = True
        self.status.value = "시작하는 중…"
        self.phases.value = self.details.value = ""

        def on_phase(name: str, seconds: float) -> None:
            rows.append((name, seconds))
            self.phases.value = _phase_table(rows)

        def job() -> None:
            workload = self._factory()
            self.workload = workload
            trace = workload.start(on_phase=on_phase)
            usage = workload.usage()
            self.status.value = (f"<b>준비 완료</b>: {trace.ready_s:.2f}초"
                                 + (f" (가속기 accelerator: {trace.accel})" if trace.accel else ""))
            self.details.value = _details_html(trace.guest, usage)
            self.stop_button.disabled = False

        def done() -> None:
            if self.workload is not None and self.stop_button.disabled:
                self.stop()  # failed start: nothing may stay running
            self.start_button.disabled = self.workload is not None

        self.job.run(job, done)

    def stop(self) -> None:
        """Stop what this panel started."""
        workload, self.workload = self.workload, None
        if workload is not None:
            workload.stop()
            self.status.value = "중지했습니다."
        self.stop_button.disabled = True
        self.start_button.disabled = False

    def stop_all(self) -> None:
        if self.workload is not None:
            self.workload.stop()  # safe mid-start: that start then ends with an error
        self.job.wait(60)
        self.stop()


class ComparePanel(Panel):
    """Run `vmkit.experiments.compare` live: each trial redraws the plots and the summary table."""

    def __init__(self, trials: int = 3, memory: str = "128M", key: str = ""):
        check_number(trials, 1, 10, "시행 횟수(trials)는")
        check_choice(memory, MEMORY_CHOICES, "메모리(memory)")
        self.trials = W.IntSlider(value=trials, min=1, max=10, description="시행 횟수")
        self.memory_select = W.Dropdown(options=MEMORY_CHOICES, value=memory, description="메모리")
        self.kinds = W.SelectMultiple(options=[(compare_mod.KIND_LABELS[k], k) for k in compare_mod.KINDS],
                                      value=compare_mod.KINDS, description="종류", rows=3)
        self.start_button = W.Button(description="비교 시작", button_style="success", icon="play")
        self.stop_button = W.Button(description="중지", button_style="danger", icon="stop", disabled=True)
        self.progress = W.IntProgress(value=0, min=0, max=1, description="진행")
        self.status = W.HTML("시행 횟수와 메모리를 고른 뒤 <b>비교 시작</b>을 누르세요.")
        # Hidden until the first trial draws them (an empty image shows as a broken icon).
        self.timeline, self.ready_plot, self.memory_plot = (
            W.Image(format="png", layout=W.Layout(max_width="100%", height="auto", display="none"))
            for _ in range(3))
        self.table = W.HTML()
        self.records: list[dict[str, Any]] = []
        self.result: compare_mod.Comparison | None = None
        self.job = Background(self.status)
        self.start_button.on_click(lambda _b: self.start())
        self.stop_button.on_click(lambda _b: self.job.stop_event.set())
        super().__init__([W.HBox([self.trials, self.memory_select]), self.kinds,
                          W.HBox([self.start_button, self.stop_button, self.progress]), self.status,
                          self.table, self.timeline, self.ready_plot, self.memory_plot], key=key)

    def start(self) -> None:
        """Start the comparison in the background."""
        if self.job.busy:
            return
        kinds = tuple(self.kinds.value)
        self.records = []
        self.progress.max, self.progress.value = self.trials.value * len(kinds), 0
        self.start_button.disabled, self.stop_button.disabled = True, False
        self.status.value = "측정하는 중… (VM 스냅샷 복원을 고르면 먼저 스냅샷을 하나 만듭니다)"

        def on_result(record: dict) -> None:
            self.records.append(record)
            self.progress.value = len(self.records)
            self.status.value = (f"{compare_mod.KIND_LABELS[record['kind']]} #{record['trial'] + 1}: "
                                 f"{record['ready_s']:.2f}초")
            self.redraw()

        def job() -> None:
            self.result = compare_mod.compare(trials=self.trials.value, memory=self.memory_select.value,
                                              kinds=kinds, on_result=on_result,
                                              stop=self.job.stop_event)
            self.status.value = (("중지했습니다: " if self.result.cancelled else "끝났습니다: ")
                                 + f"시행 {len(self.records)}번, {self.result.seconds:.1f}초")

        def done() -> None:
            self.start_button.disabled, self.stop_button.disabled = False, True

        self.job.run(job, done)

    def redraw(self) -> None:
        """Redraw the plots and the table from the records so far."""
        if not self.records:
            return
        for image, draw in ((self.timeline, plots.phases), (self.ready_plot, plots.ready_times),
                            (self.memory_plot, plots.memory)):
            image.value = plots.png(draw(self.records))
            image.layout.display = ""
        self.table.value = summary_html(self.records)

    def stop_all(self) -> None:
        self.job.stop_event.set()
        self.job.wait(120)


def summary_html(records) -> str:
    """Median ready time and memory per kind, as a small Korean HTML table."""
    table = compare_mod.summarize(plots._frame(records))
    rows = []
    for kind in plots._kinds(plots._frame(records)):
        def med(metric: str) -> float | None:
            try:
                return table.loc[(kind, metric), "median"]
            except KeyError:
                return None
        ready, rss = med("ready_s"), med("usage.rss_bytes")
        rows.append(f"<tr><td>{compare_mod.KIND_LABELS[kind]}</td>"
                    f"<td>{'' if ready is None else f'{ready:.3f}'}</td>"
                    f"<td>{'' if rss is None else format_bytes(rss)}</td>"
                    f"<td>{int(table.loc[(kind, 'ready_s'), 'count'])}</td></tr>")
    applied = container_limits.combined(r.get("limits_enforced") for r in records)
    note = ("" if applied is None or all(applied.values()) else
            f"<div>컨테이너의 한도(limits): {html.escape(container_limits.summary(applied))}</div>")
    return (f"<table style='{TABLE_STYLE}'><tr><th>종류</th><th>준비 시간 중앙값(초)</th>"
            "<th>호스트 RSS 중앙값</th><th>시행</th></tr>" + "".join(rows) + "</table>" + note)


def _phase_table(rows: list[tuple[str, float]]) -> str:
    body = "".join(f"<tr><td>{plots.PHASE_LABELS.get(n, n)}</td><td>{s:.3f}초</td></tr>"
                   for n, s in rows)
    return f"<table style='{TABLE_STYLE}'><tr><th>단계(phase)</th><th>시작 요청부터</th></tr>{body}</table>"


def _details_html(guest: dict, usage) -> str:
    applied = getattr(usage, "limits_enforced", None)  # containers only
    limit = applied and container_limits.shown(
        format_bytes(usage.mem_limit_bytes) if usage.mem_limit_bytes else "-", applied["memory"])
    items = [("커널(kernel) 릴리스", guest.get("kernel")),
             ("안에서 보이는 MemTotal", usage.guest_mem_total_bytes and format_bytes(usage.guest_mem_total_bytes)),
             ("메모리 한도(memory limit)", limit),
             ("호스트 RSS", format_bytes(usage.rss_bytes)), ("호스트 PSS", format_bytes(usage.pss_bytes)),
             ("CPU 시간(user+sys)", f"{usage.cpu_user_s + usage.cpu_system_s:.2f}초")]
    body = "".join(f"<tr><td>{k}</td><td>{html.escape(str(v))}</td></tr>" for k, v in items if v)
    return f"<table style='{TABLE_STYLE}'>{body}</table>"
