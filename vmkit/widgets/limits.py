"""Lab 04's panel: a container's resource limits at work, live.

The memory experiment starts a container with the chosen memory limit and makes a process
in it take memory at a steady rate, past the limit, until the engine reports the kernel's
OOM kill; the CPU experiment measures a busy loop under the chosen CPU quota. Both run
through `vmkit.experiments.isolation`, the same functions the lab's headless cells call.
"""

from __future__ import annotations

import html
import threading
import time

import ipywidgets as W

from ..container import limits as container_limits
from ..container.container import Container
from ..errors import VmkitError
from ..experiments import isolation, isolation_plots, plots
from ..units import format_bytes
from .base import Background, Panel, check_number

MiB = 1 << 20
#: How fast the memory experiment takes memory (bytes per second).
OOM_RATE = "16M"
#: Least time between two redraws of the live plot (drawn on a thread of its own, so that
#: drawing never delays the sampling).
REDRAW_S = 0.5
#: Engine events not worth showing to a student (vmkit's own looking inside).
QUIET_EVENTS = ("EXEC_CREATE", "EXEC_START", "EXEC_DIE", "ATTACH", "CREATE", "START",
                "INIT", "CLEANUP")  # the last two: Podman's own
_WIDE = {"description_width": "initial"}


class LimitsPanel(Panel):
    """Memory limit → OOM kill (live), and CPU quota → CPU rate, each in a fresh container."""

    def __init__(self, memory: int = 64, cpus: float = 0.5, key: str = ""):
        check_number(memory, 16, 256, "메모리 한도(memory, MiB)는")
        check_number(cpus, 0.1, 1.0, "CPU 할당량(cpus)은", whole=False)
        self.memory_slider = W.IntSlider(value=memory, min=16, max=256, step=16, style=_WIDE,
                                         description="메모리 한도(MiB)")
        self.oom_button = W.Button(description="OOM 실험 시작", button_style="warning", icon="play",
                                   layout=W.Layout(width="auto"))
        self.cpu_slider = W.FloatSlider(value=cpus, min=0.1, max=1.0, step=0.1, style=_WIDE,
                                        description="CPU 할당량(quota)")
        self.cpu_button = W.Button(description="CPU 측정", icon="tachometer", layout=W.Layout(width="auto"))
        self.stop_button = W.Button(description="중지", button_style="danger", icon="stop", disabled=True)
        self.status = W.HTML("메모리 한도를 고르고 <b>OOM 실험 시작</b>을 누르세요.")
        self.meter = W.FloatProgress(value=0, min=0, max=1, description="사용 / 한도", style=_WIDE)
        self.meter_label = W.HTML()
        self.events = W.HTML()
        self.plot = W.Image(format="png", layout=W.Layout(max_width="100%", height="auto"))
        self.container: Container | None = None
        self.result: isolation.OomRun | None = None
        self.cpu_result: isolation.CpuRates | None = None
        self._event_lines: list[list] = []  # [event name, seconds, how many in a row]
        self._began = 0.0
        self._lock = threading.Lock()
        self.job = Background(self.status)
        self.oom_button.on_click(lambda _b: self.start_oom())
        self.cpu_button.on_click(lambda _b: self.start_cpu())
        self.stop_button.on_click(lambda _b: self.stop())
        super().__init__([W.HBox([self.memory_slider, self.oom_button]),
                          W.HBox([self.cpu_slider, self.cpu_button]),
                          self.stop_button, self.status,
                          W.HBox([self.meter, self.meter_label]), self.events, self.plot], key=key)

    # ------------------------------------------------------------ memory → OOM
    def start_oom(self) -> None:
        """Start the memory experiment in the background; it is shown live."""
        if self.job.busy:
            return
        limit = self.memory_slider.value * MiB
        self.result = None
        self._event_lines = []
        self.events.value = self.meter_label.value = ""
        self.meter.value, self.meter.bar_style = 0, "info"
        self._busy(True)
        self.status.value = f"메모리 한도 {format_bytes(limit)}인 컨테이너를 시작하는 중…"

        def job() -> None:
            box = self.container = Container(memory=limit)
            painter = _Painter(self.plot)
            try:  # the job stops its own container: Stop may come before start() made it
                box.start()
                if box.limits_enforced["memory"] is False:
                    self.status.value = html.escape(
                        f"메모리 {container_limits.NOT_APPLIED}: {container_limits.why_not(box.engine)}. "
                        "한도를 넘어도 커널이 강제 종료(OOM kill)하지 않으므로 실험하지 않습니다.")
                    return
                self._began = time.monotonic()
                box.on_event(self._on_event)
                self.status.value = (f"컨테이너 안의 프로세스가 메모리를 초당 {OOM_RATE}iB씩 더 쓰는 중… "
                                     f"(한도 {format_bytes(limit)})")
                self.result = isolation.oom_experiment(
                    box, rate=OOM_RATE, stop=self.job.stop_event,
                    on_update=lambda run: (self._show(run), painter.want(run)))
                self._show(self.result, final=True)
            except VmkitError:
                if not self.job.stop_event.is_set():
                    raise
                self.status.value = "중지했습니다."  # stopped while the container was starting
            finally:
                painter.close(self.result)
                box.stop()

        self.job.run(job, self._done)

    def _on_event(self, event: dict) -> None:
        """An engine event for the panel's container (on the watcher's thread); repeats are counted."""
        name = event.get("event", "")
        if name in QUIET_EVENTS:
            return
        seconds = event["time"] - self._began
        signal = (event.get("data") or {}).get("signal")
        if signal:
            name += f" (signal {signal})"
        with self._lock:
            lines = self._event_lines
            if lines and lines[-1][0] == name:
                lines[-1][2] += 1
            else:
                lines.append([name, seconds, 1])
            self.events.value = "<br>".join(_event_html(*line) for line in lines[-6:])

    def _show(self, run: isolation.OomRun, final: bool = False) -> None:
        """Meter and status from the run so far."""
        if run.samples:
            used = run.samples[-1][1]
            self.meter.value = min(used / run.limit_bytes, 1.0)
            self.meter.bar_style = "danger" if used > 0.85 * run.limit_bytes else "info"
            self.meter_label.value = (f"&nbsp;지금 {format_bytes(used)} / 한도 {format_bytes(run.limit_bytes)}"
                                      f" (최고 {format_bytes(run.peak_bytes)})")
        if run.oom_after_s is not None:
            self.status.value = (f"<b style='color:#b00020'>OOM 이벤트 도착</b>: 시작 후 {run.oom_after_s:.2f}초. "
                                 f"한도 {format_bytes(run.limit_bytes)}를 넘자 커널이 메모리를 쓰던 "
                                 "프로세스를 강제 종료했습니다(OOM kill).")
        if final:
            self.status.value += ("" if run.oom_after_s is not None else
                                  " 중지했습니다." if run.cancelled else " OOM 이벤트가 오지 않았습니다.")
            if run.alive:
                self.status.value += " 컨테이너 자체(PID 1 에이전트)는 살아 있습니다."

    # ------------------------------------------------------------ CPU quota
    def start_cpu(self) -> None:
        """Measure a busy loop under the chosen CPU quota, in a fresh container."""
        if self.job.busy:
            return
        quota = round(self.cpu_slider.value, 2)
        self._busy(True)
        self.status.value = f"CPU 할당량 {quota:g}인 컨테이너에서 바쁜 루프(busy loop)를 재는 중…"

        def on_sample(sample: isolation.CpuSample) -> None:
            self.status.value = (f"측정 {sample.round + 1}회: CPU 할당량 {sample.quota:g} → "
                                 f"{sample.rate:.2f} CPU-초/초")

        def job() -> None:
            rates = isolation.cpu_quota_rates((quota,), rounds=2, max_rounds=2, on_sample=on_sample,
                                              stop=self.job.stop_event)
            self.cpu_result = rates
            if rates.samples:
                self.plot.value = plots.png(isolation_plots.cpu_rates(rates))
            best = rates.best(quota) or 0.0
            busy = " (호스트가 다른 일로 바빠 할당량보다 적게 얻었습니다)" if best < 0.85 * min(quota, 1.0) else ""
            if rates.applied is False:
                busy = f" — CPU {container_limits.NOT_APPLIED}: 할당량과 관계없이 얻은 값입니다"
            self.status.value = ("중지했습니다." if rates.cancelled else
                                 f"<b>CPU 할당량 {quota:g}</b>: 바쁜 루프가 실제 1초에 최대 "
                                 f"{best:.2f} CPU-초를 얻었습니다{busy}.")

        self.job.run(job, self._done)

    # ------------------------------------------------------------ stopping
    def _busy(self, busy: bool) -> None:
        self.oom_button.disabled = self.cpu_button.disabled = busy
        self.stop_button.disabled = not busy

    def _done(self) -> None:
        self._stop_container()
        self._busy(False)

    def _stop_container(self) -> None:
        box, self.container = self.container, None
        if box is not None:
            box.stop()

    def stop(self) -> None:
        """Stop the running experiment now (its container too)."""
        self.job.stop_event.set()
        self._stop_container()

    def stop_all(self) -> None:
        self.stop()
        self.job.wait(60)


class _Painter:
    """Redraws the OOM plot on a thread of its own, at most every REDRAW_S, from the latest run."""

    def __init__(self, image: W.Image):
        self.image = image
        self.run: isolation.OomRun | None = None
        self.drawn: tuple | None = None
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="vmkit-oom-plot", daemon=True)
        self.thread.start()

    def want(self, run: isolation.OomRun) -> None:
        self.run = run

    def _draw(self) -> None:
        run = self.run
        state = run and (len(run.samples), run.oom_after_s)
        if run is not None and state != self.drawn:
            self.drawn = state
            self.image.value = plots.png(isolation_plots.oom_timeline(run))

    def _loop(self) -> None:
        while not self.closed.wait(REDRAW_S):
            self._draw()

    def close(self, run: isolation.OomRun | None) -> None:
        """Stop redrawing; draw `run` (the final state) once more."""
        self.closed.set()
        self.thread.join(10)
        if run is not None:
            self.run = run
            self._draw()


def _event_html(name: str, seconds: float, count: int) -> str:
    style = "color:#b00020;font-weight:bold" if name == "OOM" else "color:#555"
    times = f" ×{count}" if count > 1 else ""
    return (f"<span style='{style}'>{seconds:.2f}초 · 도커 엔진 이벤트(event) "
            f"<code>{html.escape(name)}</code>{times}</span>")
