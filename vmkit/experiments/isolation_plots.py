"""Plots of a container's limits at work (see `isolation`), with Korean labels.

Each function returns a matplotlib Figure drawn without pyplot (safe from a widget's
background thread), in the Hangul-capable font `plots` registers.
"""

from __future__ import annotations

from ..container.limits import NOT_APPLIED, shown
from .isolation import KIND_LABELS
from .plots import KIND_COLORS, figure

MiB = 1 << 20


def oom_timeline(run):
    """Memory in use over time against the limit, with the moment the OOM event arrived."""
    fig, ax = figure(size=(8, 3.6))
    limit = run.limit_bytes / MiB
    xs = [t for t, _ in run.samples]
    ys = [b / MiB for _, b in run.samples]
    ax.plot(xs, ys, color=KIND_COLORS["container"], marker="o", markersize=3, label="쓰는 메모리 (cgroup)")
    ax.axhline(limit, color="#b00020", linestyle="--",
               label=f"메모리 한도(limit) {shown(f'{limit:.0f} MiB', run.limit_applied)}")
    if run.oom_after_s is not None:
        ax.axvline(run.oom_after_s, color="#333", linestyle=":")
        ax.annotate(f"OOM 이벤트 {run.oom_after_s:.2f}초", (run.oom_after_s, limit * 1.12),
                    xytext=(-6, 0), textcoords="offset points", ha="right", fontsize=9)
    ax.set_xlabel("시작부터 지난 시간 (초)")
    ax.set_ylabel("MiB")
    ax.set_title("한도를 넘게 메모리를 쓰면: 커널이 그 프로세스를 강제 종료(OOM kill)")
    ax.set_ylim(0, limit * 1.3)
    ax.set_xlim(0, max(xs[-1] if xs else 1.0, (run.oom_after_s or 0) * 1.2, 1.0))
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def cpu_rates(rates):
    """Per CPU quota: every round's busy-loop rate (dots), the best one (bar), the quota (dashes)."""
    fig, ax = figure(size=(6.5, 3.6))
    quotas = list(rates.quotas)
    for i, quota in enumerate(quotas):
        best = rates.best(quota) or 0.0
        ax.bar(i, best, 0.55, color="#8ecae6")
        ax.text(i, best + 0.04, f"{best:.2f}", ha="center", va="bottom", fontsize=9)
        values = rates.rates(quota)
        ax.scatter([i + (j % 5 - 2) * 0.05 for j in range(len(values))], values, color="#023047",
                   s=16, zorder=3, label="한 번의 측정" if i == 0 else None)
        ax.hlines(quota, i - 0.35, i + 0.35, color="#b00020", linestyle="--",
                  label="할당량(quota)" if i == 0 else None)
    unapplied = f"\n({NOT_APPLIED})" if rates.applied is False else ""
    ax.set_xticks(range(len(quotas)), [(f"CPU 할당량 {q:.2g}" if q < 1 else f"CPU 할당량 {q:.1f}") + unapplied
                                       for q in quotas])
    ax.set_ylabel("CPU-초 / 실제 초")
    ax.set_ylim(0, max(max(quotas), 1.0) * 1.25)
    ax.set_title("바쁜 루프(busy loop) 하나가 얻은 CPU 시간")
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    return fig


def memory_views(views):
    """Per workload: the memory it asked for, the MemTotal it sees inside (log scale), and the
    cgroup limit a container does not see in /proc/meminfo."""
    fig, ax = figure(size=(8, 3.4))
    width = 0.38
    for i, view in enumerate(views):
        for s, (label, size, color) in enumerate((("요청(request)", view.request_bytes, "#adb5bd"),
                                                   ("안에서 본 MemTotal", view.mem_total_bytes or 0, "#219ebc"))):
            bar = ax.barh(i + (s - 0.5) * width, size / MiB, width, color=color,
                          label=label if i == 0 else None)
            ax.bar_label(bar, labels=[f"{size / MiB:,.0f} MiB"], fontsize=8, padding=3)
        if view.limit_bytes:
            ax.vlines(view.limit_bytes / MiB, i - width, i + width, color="#b00020", linewidth=2.5,
                      label="cgroup 한도(limit): 안에서는 안 보임")
        elif view.limit_applied is False:
            ax.text(view.request_bytes / MiB, i, f"  cgroup {NOT_APPLIED}", va="center", fontsize=8,
                    color="#b00020")
    ax.set_yticks(range(len(views)), [KIND_LABELS.get(v.kind, v.kind) for v in views])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(right=max(v.host_mem_total_bytes for v in views) / MiB * 30)
    ax.set_xlabel("MiB (로그 눈금)")
    ax.set_title("같은 메모리 요청: VM에게는 RAM 전부, 컨테이너에게는 보이지 않는 한도")
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    ax.grid(axis="x", alpha=0.3)
    return fig
