"""Lab 3's panel in JupyterLab (headless Chromium): Run clicked, the slowdown shown, a screenshot."""

from browser import MARKS, panel_in_jupyterlab
from conftest import qemu_children

pytestmark = MARKS


def test_emulation_panel_in_jupyterlab(jupyter_lab, tmp_path):
    with panel_in_jupyterlab(jupyter_lab, tmp_path, "lab03-emulation",
                             "from vmkit.widgets.emulation import EmulationPanel\n"
                             "panel = EmulationPanel(task='loop', size=20, trials=2)\n"
                             "panel",
                             "측정 시작", height=1200) as (page, button, shots):
        button.click()
        page.get_by_text("끝났습니다").wait_for(timeout=180_000)
        output = page.locator(".jp-OutputArea").first
        text = output.inner_text()
        assert "배 느립니다" in text and "컨테이너 (네이티브)" in text and "VM (QEMU+TCG)" in text
        image = output.locator("img")
        assert image.count() == 1 and image.evaluate("img => img.naturalWidth") > 400
        # nothing wider than the output area (no horizontal overflow)
        assert output.evaluate("el => el.scrollWidth <= el.clientWidth + 1")
        page.screenshot(path=str(shots / "lab03-emulation.png"), full_page=True)
    assert (shots / "lab03-emulation.png").stat().st_size > 30_000
    assert not qemu_children()

    from vmkit.host import cleanup
    from vmkit.container import engine

    client = engine.client()
    try:
        for pid in jupyter_lab.kernel_pids():
            assert not client.containers.list(all=True, filters={"label": f"{cleanup.PID}={pid}"})
    finally:
        client.close()
