"""Plots of comparisons and densities, with Korean labels in a font that has Hangul.

matplotlib's default font (DejaVu Sans) has no Hangul, so labels would turn into boxes:
`korean_font()` registers a Korean font installed by `make setup` (fonts-nanum) and every
plot here uses it. Each function takes records (a list of dicts or a DataFrame) and
returns a matplotlib Figure, so widgets can redraw live and the book can save PNGs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..container import limits as container_limits
from ..errors import MissingComponent
from .compare import KIND_LABELS, KINDS

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
    "/usr/share/fonts/truetype/nanum/NanumBarunGothic.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansKR-Regular.ttf",
)
KIND_COLORS = {"vm": "#d1495b", "vm-restore": "#edae49", "container": "#00798c"}
PHASE_LABELS = {
    "spawned": "QEMU 프로세스 생성", "qmp_ready": "QMP 연결", "resumed": "실행 시작(cont)",
    "console": "첫 콘솔 출력", "kernel": "커널 시작", "ready": "준비(VMKIT-READY)",
    "create": "컨테이너 생성", "started": "시작(start)", "first_output": "첫 출력",
    "incoming": "스냅샷 적재", "restored": "상태 복원 완료", "agent": "에이전트 응답",
}
MiB = 1 << 20


@lru_cache(maxsize=1)
def korean_font() -> str:
    """Register a Hangul-capable font with matplotlib and make it the default; its family."""
    import matplotlib
    from matplotlib import font_manager

    for candidate in FONT_CANDIDATES:
        if Path(candidate).exists():
            font_manager.fontManager.addfont(candidate)
            family = font_manager.FontProperties(fname=candidate).get_name()
            matplotlib.rcParams["font.family"] = [family, "DejaVu Sans"]
            matplotlib.rcParams["axes.unicode_minus"] = False
            return family
    raise MissingComponent("한글 글꼴(Korean font)이 없어 그래프의 한글이 네모로 보입니다.",
                           "`sudo apt-get install fonts-nanum` 또는 `make setup`으로 설치하세요.")


def font_has_hangul(family: str | None = None) -> bool:
    """Whether the font matplotlib resolves for `family` has glyphs for Hangul."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    path = font_manager.findfont(font_manager.FontProperties(family=family or korean_font()),
                                 fallback_to_default=False)
    charmap = FT2Font(path).get_charmap()
    return all(ord(ch) in charmap for ch in "가상머신컨테이너")


def _frame(records):
    import pandas as pd

    return records if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))


def _kinds(frame) -> list[str]:
    present = list(dict.fromkeys(frame["kind"])) if "kind" in frame else []
    return [k for k in KINDS if k in present] + [k for k in present if k not in KINDS]


@lru_cache(maxsize=1)
def _show_figures_in_ipython() -> None:
    """Let a notebook cell that returns a Figure show it as a picture.

    IPython knows how to draw pyplot's figures only once `%matplotlib inline` has run;
    vmkit's figures are made without pyplot, so register the PNG formatter for them.
    """
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import print_figure
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        from matplotlib.figure import Figure

        shell.display_formatter.formatters["image/png"].for_type(
            Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight"))


def figure(rows: int = 1, cols: int = 1, size=(8, 4)):
    """A pyplot-free Figure and its axes, with the Korean font (safe from a background thread)."""
    korean_font()
    _show_figures_in_ipython()
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(rows, cols)
    return fig, axes


def phases(records):
    """Median start-up timeline per kind, up to ready: one bar per kind, a segment per phase."""
    frame = _frame(records)
    fig, ax = figure(size=(9, 3.6))
    kinds = _kinds(frame)
    palette = [matplotlib_color(i) for i in range(20)]
    colors: dict[str, str] = {}
    added: set[str] = set()
    for row, kind in enumerate(kinds):
        group = frame[frame["kind"] == kind]
        ready = group["ready_s"].median()
        cols = [c for c in group.columns if c.startswith("phase.") and group[c].notna().any()]
        medians = sorted((group[c].median(), c[6:]) for c in cols)
        left = 0.0
        for end, name in medians:
            if end > ready + 1e-9:
                continue  # after ready (e.g. the agent's first answer): not start-up
            label = PHASE_LABELS.get(name, name)
            color = colors.setdefault(name, palette[len(colors) % len(palette)])
            ax.barh(row, max(end - left, 0.0), left=left, color=color, edgecolor="white",
                    label=None if label in added else label)
            added.add(label)
            left = max(left, end)
        ax.text(left, row, f"  준비 {ready:.2f}초", va="center", fontsize=9)
    ax.set_yticks(range(len(kinds)), [KIND_LABELS.get(k, k) for k in kinds])
    ax.invert_yaxis()
    ax.set_xlabel("시작 요청부터 걸린 시간 (초, 중앙값)")
    ax.set_title("시작 단계(phase)별 시간: VM과 컨테이너")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlim(0, max(frame["ready_s"].max() * 1.18, 0.1))
    return fig


def matplotlib_color(index: int) -> str:
    """The i-th colour of matplotlib's 'tab20' map, as hex."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    return to_hex(colormaps["tab20"](index % 20))


def ready_times(records):
    """Every trial's time to ready, per kind, on a log scale (strip plot with medians)."""
    frame = _frame(records)
    fig, ax = figure(size=(7, 3.6))
    kinds = _kinds(frame)
    for i, kind in enumerate(kinds):
        values = frame.loc[frame["kind"] == kind, "ready_s"].dropna()
        jitter = [(j % 5 - 2) * 0.04 for j in range(len(values))]
        ax.scatter([i + d for d in jitter], values, color=KIND_COLORS.get(kind, "gray"),
                   alpha=0.75, s=28, zorder=3)
        if len(values):
            med = values.median()
            ax.hlines(med, i - 0.3, i + 0.3, color="black", linewidth=2, zorder=4)
            ax.text(i + 0.33, med, f"{med:.2f}초", va="center", fontsize=9)
    ax.set_xticks(range(len(kinds)), [KIND_LABELS.get(k, k) for k in kinds])
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _pos: f"{value:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(FuncFormatter(
        lambda value, _pos: f"{value:g}" if str(f"{value:g}")[0] in "25" else ""))
    ax.set_ylabel("준비까지 걸린 시간 (초, 로그 눈금)")
    ax.set_title("시작 시간 분포 (점: 시행 하나, 막대: 중앙값)")
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.set_xlim(-0.6, len(kinds) - 0.2)
    return fig


def memory(records):
    """Per kind: host RSS and PSS of the workload against the memory it may use inside.

    "Inside" is the guest's MemTotal for a VM and the cgroup limit for a container (whose
    MemTotal is simply the host's, which the plot notes).
    """
    frame = _frame(records)
    fig, ax = figure(size=(8, 3.8))
    kinds = _kinds(frame)

    def med(kind: str, column: str) -> float:
        if column not in frame:
            return float("nan")
        return frame.loc[frame["kind"] == kind, column].median()

    applied = [_memory_limit_applied(frame, kind) for kind in kinds]
    inside = []
    for kind, ok in zip(kinds, applied):
        limit = med(kind, "usage.mem_limit_bytes")
        inside.append(0.0 if ok is False else  # no limit: the host's MemTotal is no limit either
                      (limit if limit == limit else med(kind, "usage.guest_mem_total_bytes")) / MiB)
    series = [([med(k, "usage.rss_bytes") / MiB for k in kinds], "호스트 RSS", "#495057"),
              ([med(k, "usage.pss_bytes") / MiB for k in kinds], "호스트 PSS", "#adb5bd"),
              (inside, "안에서 쓸 수 있는 메모리 (VM: MemTotal, 컨테이너: cgroup 한도)", "#8ecae6")]
    width = 0.8 / len(series)
    for s, (values, label, color) in enumerate(series):
        bars = ax.bar([i + (s - 1) * width for i in range(len(kinds))], values, width,
                      label=label, color=color)
        texts = ax.bar_label(bars, labels=[container_limits.shown(f"{v:.0f}", ok if values is inside else None)
                                           for v, ok in zip(values, applied)], fontsize=8, padding=2)
        for text in texts:
            if text.get_text() == container_limits.NOT_APPLIED:
                text.set_rotation(90)  # a word, not a number: upright along the empty bar
    for i, kind in enumerate(kinds):
        host_view = med(kind, "usage.guest_mem_total_bytes")
        if med(kind, "usage.mem_limit_bytes") == med(kind, "usage.mem_limit_bytes") and host_view == host_view:
            ax.annotate(f"/proc/meminfo의 MemTotal은\n호스트 전체({host_view / 2**30:.1f} GiB)",
                        (i - 0.2, 0), xytext=(0, 24), textcoords="offset points", ha="center", fontsize=8,
                        color="#555")
    ax.set_xticks(range(len(kinds)), [KIND_LABELS.get(k, k) for k in kinds])
    ax.set_ylabel("MiB (중앙값)")
    ax.set_title("워크로드 하나의 메모리: 호스트가 내는 비용과 안에서 쓸 수 있는 크기")
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylim(0, max(v for values, _, _ in series for v in values if v == v) * 1.35)
    return fig


def _memory_limit_applied(frame, kind: str) -> bool | None:
    """Whether the memory limit applied in every trial of `kind` (None: not a container, or unknown)."""
    if "limits_enforced" not in frame:
        return None
    verdict = container_limits.combined(frame.loc[frame["kind"] == kind, "limits_enforced"])
    return None if verdict is None else verdict["memory"]


def density(results):
    """Density results (Density objects or dicts): host memory per instance and in total."""
    rows = [r.to_dict() if hasattr(r, "to_dict") else dict(r) for r in results]
    fig, (left, right) = figure(1, 2, size=(10, 3.8))
    labels = [f"{KIND_LABELS.get(r['kind'], r['kind'])}\n×{r['started']}" for r in rows]
    colors = [KIND_COLORS.get(r["kind"], "gray") for r in rows]
    per = [(r["per_instance_pss_bytes"] or 0) / MiB for r in rows]
    total = [r["total_pss_bytes"] / MiB for r in rows]
    bars = left.bar(labels, per, color=colors)
    left.bar_label(bars, fmt="%.1f", fontsize=9)
    left.set_ylabel("인스턴스 하나당 호스트 PSS (MiB)")
    left.set_title("하나당 메모리")
    bars = right.bar(labels, total, color=colors)
    right.bar_label(bars, fmt="%.0f", fontsize=9)
    right.set_ylabel("모두 합친 호스트 PSS (MiB)")
    right.set_title("동시에 띄웠을 때 전체 메모리")
    for ax in (left, right):
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("밀도(density): 각 VM은 자기 OS를 싣고, 컨테이너는 커널 하나를 나눠 씁니다")
    return fig


def save(fig, path) -> Path:
    """Write a figure to PNG or SVG (by suffix)."""
    path = Path(path)
    fig.savefig(path, dpi=130)
    return path


def png(fig) -> bytes:
    """A figure as PNG bytes (for ipywidgets.Image)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def overview(records, path) -> Path:
    """The three comparison plots stacked in one image (what `vmkit compare --plot` writes)."""
    import matplotlib.image
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    images = []
    for fig in (phases(records), ready_times(records), memory(records)):
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        images.append(np.asarray(canvas.buffer_rgba()))

    width = max(img.shape[1] for img in images)
    padded = [np.pad(img, ((0, 0), (0, width - img.shape[1]), (0, 0)), constant_values=255)
              for img in images]
    path = Path(path)
    matplotlib.image.imsave(path, np.concatenate(padded, axis=0))
    return path
