"""The book's diagrams, drawn from this source at build time (matplotlib, Korean labels).

Each function returns a matplotlib Figure of layered boxes: the hardware at the bottom,
what runs on it above. A chapter's hidden code cell shows one as SVG (`svg(...)`), with the
Hangul turned into outlines so no font is needed to read it.
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from vmkit.experiments import plots

#: Fill colours by role, the same in every diagram.
COLORS = {"hw": "#cfd8dc", "hyper": "#d1495b", "os": "#8ecae6", "guest": "#edae49",
          "app": "#f6f1d1", "runtime": "#00798c", "note": "#ffffff"}
LIGHT_TEXT = {"hyper", "runtime"}

#: A layer box: (label, role, left, width) in a stack 3 units wide; rows go bottom to top.
Row = list[tuple[str, str, float, float]]


def _draw(ax, title: str, rows: list[Row]) -> None:
    for level, row in enumerate(rows):
        for label, role, left, width in row:
            ax.add_patch(FancyBboxPatch((left + 0.04, level + 0.06), width - 0.08, 0.88,
                                        boxstyle="round,pad=0,rounding_size=0.08",
                                        facecolor=COLORS[role], edgecolor="#37474f", linewidth=1))
            ax.text(left + width / 2, level + 0.5, label, ha="center", va="center", fontsize=13,
                    color="white" if role in LIGHT_TEXT else "#1b1b1b", wrap=True)
    ax.set_xlim(0, 3)
    ax.set_ylim(0, len(rows))
    ax.set_title(title, fontsize=15, pad=8)
    ax.axis("off")


def _figure(panels: list[tuple[str, list[Row]]], height: float = 4.2) -> Figure:
    fig, axes = plots.figure(1, len(panels), size=(5.2 * len(panels), height))
    for ax, (title, rows) in zip(axes, panels):
        _draw(ax, title, rows)
    return fig


def hypervisor_types() -> Figure:
    """Type 1 (on the hardware; Xen's dom0 / Hyper-V's root partition beside the guests) and type 2."""
    type1 = [
        [("하드웨어 (CPU · 메모리 · 저장 장치)", "hw", 0, 3)],
        [("유형 1 하이퍼바이저\n(ESXi · Hyper-V · Xen)", "hyper", 0, 3)],
        [("관리 OS\n(Xen dom0 ·\nHyper-V 루트)", "os", 0, 1), ("게스트 OS", "guest", 1, 1),
         ("게스트 OS", "guest", 2, 1)],
        [("장치 드라이버", "app", 0, 1), ("앱", "app", 1, 1), ("앱", "app", 2, 1)],
    ]
    type2 = [
        [("하드웨어 (CPU · 메모리 · 저장 장치)", "hw", 0, 3)],
        [("호스트 운영 체제 (Windows · macOS · Linux)", "os", 0, 3)],
        [("유형 2 하이퍼바이저\n(VirtualBox · VMware Workstation)", "hyper", 0, 2), ("일반 앱", "app", 2, 1)],
        [("게스트 OS", "guest", 0, 1), ("게스트 OS", "guest", 1, 1)],
        [("앱", "app", 0, 1), ("앱", "app", 1, 1)],
    ]
    return _figure([("유형 1: 베어 메탈(bare metal)", type1), ("유형 2: 호스트형(hosted)", type2)],
                   height=4.6)


def vm_and_container_stacks() -> Figure:
    """What a VM carries (its own kernel) beside what a container shares (the host's)."""
    vm = [
        [("하드웨어", "hw", 0, 3)],
        [("호스트 OS + 하이퍼바이저 (QEMU · KVM)", "hyper", 0, 3)],
        [("게스트 커널 A", "guest", 0, 1.5), ("게스트 커널 B", "guest", 1.5, 1.5)],
        [("BusyBox · 앱 A", "app", 0, 1.5), ("BusyBox · 앱 B", "app", 1.5, 1.5)],
    ]
    container = [
        [("하드웨어", "hw", 0, 3)],
        [("호스트 커널 (네임스페이스 · cgroup)", "os", 0, 3)],
        [("컨테이너 런타임 (도커 엔진 · runc)", "runtime", 0, 3)],
        [("BusyBox · 앱 A", "app", 0, 1.5), ("BusyBox · 앱 B", "app", 1.5, 1.5)],
    ]
    return _figure([("가상 머신(VM): 게스트마다 자기 커널", vm),
                    ("컨테이너: 모두 호스트의 커널 하나", container)])


def qemu_and_kvm() -> Figure:
    """Who does what: QEMU in user space, KVM in the kernel, the CPU's virtualization mode."""
    with_kvm = [
        [("CPU (VT-x / AMD-V)", "hw", 0, 3)],
        [("Linux 커널 + KVM 모듈", "os", 0, 3)],
        [("QEMU: 장치 흉내 · QMP", "hyper", 0, 2), ("vCPU = 스레드", "runtime", 2, 1)],
        [("게스트 OS (명령어는 CPU가 직접 실행)", "guest", 0, 3)],
    ]
    with_tcg = [
        [("CPU", "hw", 0, 3)],
        [("Linux 커널", "os", 0, 3)],
        [("QEMU: 장치 흉내 · QMP", "hyper", 0, 2), ("TCG: 명령어 번역", "runtime", 2, 1)],
        [("게스트 OS (명령어를 소프트웨어로 번역)", "guest", 0, 3)],
    ]
    return _figure([("QEMU + KVM (하드웨어 가상화)", with_kvm), ("QEMU + TCG (에뮬레이션)", with_tcg)])


def svg(fig: Figure):
    """The figure as an SVG image for a notebook cell (text drawn as paths)."""
    from IPython.display import SVG

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    return SVG(buffer.getvalue())
