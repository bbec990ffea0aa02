"""What a student sees: JupyterLab in headless Chromium, a widget clicked, a screenshot taken."""

from browser import MARKS, panel_in_jupyterlab
from conftest import qemu_children

pytestmark = MARKS


def test_compare_widget_in_jupyterlab(jupyter_lab, tmp_path):
    with panel_in_jupyterlab(jupyter_lab, tmp_path, "compare-widget",
                             "from vmkit.widgets import ComparePanel\n"
                             "panel = ComparePanel(trials=1)\n"
                             "panel.kinds.value = ('vm', 'container')\n"
                             "panel",
                             "비교 시작") as (page, button, shots):
        button.click()
        page.get_by_text("끝났습니다").wait_for(timeout=180_000)
        images = page.locator(".jp-OutputArea img")
        assert images.count() >= 3
        assert all(images.nth(i).evaluate("img => img.naturalWidth") > 200 for i in range(3))
        assert "컨테이너" in page.locator(".jp-OutputArea").first.inner_text()
        page.screenshot(path=str(shots / "compare-widget.png"), full_page=True)
    assert (shots / "compare-widget.png").stat().st_size > 50_000
    # the comparison stopped everything it started: no QEMU under the server's kernel,
    # no container created by that kernel
    from vmkit.host import cleanup
    from vmkit.container import engine

    assert not qemu_children()
    kernels = jupyter_lab.kernel_pids()
    assert kernels, "the notebook kernel should still be running"
    client = engine.client()
    try:
        for pid in kernels:
            assert not client.containers.list(all=True, filters={"label": f"{cleanup.PID}={pid}"})
    finally:
        client.close()
