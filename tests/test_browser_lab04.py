"""Lab 04's panel in JupyterLab: the OOM experiment clicked, the OOM event shown, a screenshot."""

from playwright.sync_api import expect

from browser import MARKS, panel_in_jupyterlab
from conftest import run_containers

pytestmark = MARKS


def test_oom_experiment_in_jupyterlab(jupyter_lab, tmp_path):
    with panel_in_jupyterlab(jupyter_lab, tmp_path, "lab04-oom",
                             "from vmkit.widgets.limits import LimitsPanel\n"
                             "panel = LimitsPanel(memory=32)\n"
                             "panel",
                             "OOM 실험 시작") as (page, button, shots):
        button.click()
        page.get_by_text("OOM 이벤트 도착").wait_for(timeout=120_000)
        page.get_by_text("살아 있습니다").wait_for(timeout=60_000)
        expect(button).to_be_enabled(timeout=60_000)  # the job ended: its container is stopped
        page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea img')]"
                               ".some(img => img.complete && img.naturalWidth > 400)", timeout=30_000)
        output = page.locator(".jp-OutputArea-output").first
        text = output.inner_text()
        assert "도커 엔진 이벤트(event)" in text and "OOM" in text and "메모리 한도" in text
        # nothing overflows the output area: no widget is wider than its place
        assert output.evaluate("el => el.scrollWidth <= el.clientWidth + 1")
        page.screenshot(path=str(shots / "lab04-oom.png"), full_page=True)
    assert (shots / "lab04-oom.png").stat().st_size > 50_000
    # the panel stopped the container it started (the kernel's containers carry this run's label)
    assert jupyter_lab.kernel_pids(), "the notebook kernel should still be running"
    assert not run_containers()
