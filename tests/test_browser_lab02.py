"""Lab 02's panel as a student sees it: JupyterLab in headless Chromium, the balloon
experiment clicked, the live CPU and QMP tabs used, screenshots taken, Stop clicked,
nothing left running."""

import re

from browser import MARKS, panel_in_jupyterlab
from conftest import qemu_children

pytestmark = MARKS


def test_pool_panel_balloon_in_jupyterlab(jupyter_lab, tmp_path):
    with panel_in_jupyterlab(jupyter_lab, tmp_path, "lab02-pool",
                             "from vmkit.widgets.pool import PoolPanel\n"
                             "panel = PoolPanel()\n"
                             "panel",
                             "풍선 실험 시작") as (page, button, shots):
        stop = page.get_by_role("button", name="중지")
        stopped = page.get_by_text("중지했습니다: 두 VM을 껐습니다")
        try:
            button.click()
            page.get_by_text("풍선 실험이 끝났습니다").wait_for(timeout=180_000)
            output = page.locator(".jp-OutputArea").first
            text = output.inner_text()
            assert "+128 MiB" in text and "-128 MiB" in text and "384 MiB → 384 MiB" in text
            assert "MemTotal" in text and "호스트 RSS" in text
            image = output.locator("img").first
            assert image.evaluate("img => img.naturalWidth") > 600
            # the plot is scaled to the output area, never overflowing it
            assert image.bounding_box()["width"] <= output.bounding_box()["width"] + 1
            page.screenshot(path=str(shots / "lab02-pool.png"), full_page=True)
            assert qemu_children(), "the panel's two VMs run until Stop"
            # the live CPU tab: A's busy loop on, both vCPU threads pinned to one core
            page.get_by_role("tab", name="CPU 스케줄링").click()
            page.get_by_role("button", name="A 바쁘게 (busy loop)").click()
            page.get_by_text("이 코어 하나에 고정").click()
            page.get_by_text(re.compile(r"^코어 \d+에 고정$")).wait_for(timeout=30_000)
            page.wait_for_timeout(3_000)  # a few more live ticks on the plot
            assert "허용 코어(affinity)" in output.inner_text()
            page.screenshot(path=str(shots / "lab02-cpu.png"), full_page=True)
            # the QMP tab: pause A, its clock stands still while the host's goes on
            page.get_by_role("tab", name="QMP와 시계").click()
            page.get_by_role("button", name="일시 정지 (stop)").click()
            page.get_by_text("멈춤 (paused)").wait_for(timeout=30_000)
            page.screenshot(path=str(shots / "lab02-qmp.png"), full_page=True)
            stop.click()
            stopped.wait_for(timeout=60_000)
        finally:
            if qemu_children():  # a failed step: still stop the panel's VMs
                stop.click()
                stopped.wait_for(timeout=60_000)
    assert (shots / "lab02-pool.png").stat().st_size > 50_000
    assert not qemu_children(), "Stop leaves no QEMU behind"
    assert jupyter_lab.kernel_pids(), "the notebook kernel should still be running"
