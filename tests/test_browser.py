"""What a student sees: JupyterLab in headless Chromium, a widget clicked, a screenshot taken.

Uses Debian's Chromium (`make setup` installs it) driven by Playwright. Screenshots land in
`$VMKIT_SCREENSHOTS` if set (to look at them), else in the test's temporary directory.
"""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from conftest import qemu_children

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed")]

WIDGET_NOTEBOOK = {
    "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
               "source": "from vmkit.widgets import ComparePanel\n"
                         "panel = ComparePanel(trials=1)\n"
                         "panel.kinds.value = ('vm', 'container')\n"
                         "panel"}],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def jupyter_lab(tmp_path, docker_engine, guest_artifacts):
    """A JupyterLab server on loopback serving a notebook with the compare widget."""
    root = tmp_path / "lab"
    root.mkdir()
    (root / "widget.ipynb").write_text(json.dumps(WIDGET_NOTEBOOK))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_DATA_DIR=str(tmp_path / "data"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    log = open(tmp_path / "jupyter.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}", "--allow-root",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "jupyter.log").read_text()
                assert time.monotonic() < deadline, "JupyterLab did not answer in 60 s"
                time.sleep(0.3)
        yield url, token
    finally:
        family = psutil.Process(server.pid).children(recursive=True) if server.poll() is None else []
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        for child in family:  # kernels the server did not shut down
            if child.is_running():
                child.kill()
        log.close()


def test_compare_widget_in_jupyterlab(jupyter_lab, tmp_path):
    from playwright.sync_api import sync_playwright

    url, token = jupyter_lab
    shots = Path(os.environ.get("VMKIT_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS,
                                    headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800}, locale="ko-KR")
            page.goto(f"{url}/lab/tree/widget.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=60_000)
            button = page.get_by_role("button", name="비교 시작")
            for _attempt in range(6):  # the kernel may still be starting: run until it answers
                page.click(".jp-Cell .cm-content")
                page.keyboard.press("Shift+Enter")
                try:
                    button.wait_for(timeout=15_000)
                    break
                except Exception:
                    page.screenshot(path=str(shots / "compare-widget-waiting.png"))
            button.click()
            page.get_by_text("끝났습니다").wait_for(timeout=180_000)
            images = page.locator(".jp-OutputArea img")
            assert images.count() >= 3
            assert all(images.nth(i).evaluate("img => img.naturalWidth") > 200 for i in range(3))
            assert "컨테이너" in page.locator(".jp-OutputArea").first.inner_text()
            page.screenshot(path=str(shots / "compare-widget.png"), full_page=True)
        finally:
            browser.close()
    assert (shots / "compare-widget.png").stat().st_size > 50_000
    # the comparison stopped everything it started: no QEMU under the server's kernel,
    # no container created by that kernel
    from vmkit import cleanup, engine

    assert not qemu_children()
    kernels = [c.pid for c in psutil.Process().children(recursive=True) if "ipykernel" in " ".join(c.cmdline())]
    assert kernels, "the notebook kernel should still be running"
    client = engine.client()
    try:
        for pid in kernels:
            assert not client.containers.list(all=True, filters={"label": f"{cleanup.PID}={pid}"})
    finally:
        client.close()
