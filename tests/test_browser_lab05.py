"""Lab 05's panel in JupyterLab (headless Chromium): aarch64 chosen, Boot clicked, `uname -m` read."""

import psutil
from playwright.sync_api import expect

from browser import MARKS, panel_in_jupyterlab
from conftest import qemu_children

pytestmark = MARKS


def test_arch_panel_boots_aarch64_in_jupyterlab(jupyter_lab, tmp_path):
    with panel_in_jupyterlab(jupyter_lab, tmp_path, "lab05-arch",
                             "from vmkit.widgets.arch import ArchPanel\n"
                             "panel = ArchPanel(arch='x86_64')\n"
                             "panel",
                             "부팅", height=1200) as (page, boot, shots):
        page.get_by_role("button", name="aarch64 (QEMU가 흉내 낸 CPU)").click()
        boot.click()
        stop = page.get_by_role("button", name="중지")
        expect(stop).to_be_enabled(timeout=10_000)  # Stop works during the boot, not only after it
        machine = page.locator(".vmkit-arch-machine")
        machine.get_by_text("aarch64", exact=True).wait_for(timeout=120_000)
        text = page.locator(".jp-OutputArea").first.inner_text()
        assert "준비 완료" in text and "CPU implementer" in text and "0x41" in text
        assert "x86_64" in machine.inner_text()  # the host's row
        # nothing spills out of the output area sideways
        overflow = page.locator(".jp-OutputArea-output").first.evaluate(
            "el => el.scrollWidth - el.clientWidth")
        assert overflow <= 1, f"the panel overflows by {overflow}px"
        page.screenshot(path=str(shots / "lab05-arch.png"), full_page=True)
        stop.click()
        page.get_by_text("게스트를 중지했습니다").wait_for(timeout=30_000)
    assert (shots / "lab05-arch.png").stat().st_size > 30_000
    assert not qemu_children()
    kernels = jupyter_lab.kernel_pids()
    assert kernels, "the notebook kernel should still be running"
    for pid in kernels:  # the Stop button really stopped the kernel's QEMU
        assert not [c for c in psutil.Process(pid).children(recursive=True)
                    if c.name().startswith("qemu-system")]
