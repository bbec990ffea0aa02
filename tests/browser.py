"""Shared pieces of the browser tests: JupyterLab on loopback, headless Chromium, notebooks.

Uses Debian's Chromium (`make setup` installs it) driven by Playwright. Screenshots land in
`$VMKIT_SCREENSHOTS` if set (to look at them), else in the test's temporary directory.
One JupyterLab server serves the whole test session (`jupyter_lab` fixture in conftest);
each test writes the notebook it opens into the server's root.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: Marks for every browser test module.
MARKS = [pytest.mark.integration,
         pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed")]


@dataclass
class JupyterLab:
    """A running JupyterLab server: where it answers and which folder it serves."""

    url: str
    token: str
    root: Path
    server: subprocess.Popen

    def notebook(self, name: str, *sources: str) -> str:
        """Write a notebook of code cells into the server's root; returns its lab URL."""
        cells = [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                  "source": source} for source in sources]
        nb = {"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}
        (self.root / name).write_text(json.dumps(nb))
        # A workspace of its own, reset: tabs another test left open are not restored here.
        workspace = Path(name).stem
        return f"{self.url}/lab/workspaces/{workspace}/tree/{name}?reset&token={self.token}"

    def kernel_pids(self) -> list[int]:
        """The server's notebook kernels (ipykernel processes)."""
        return [c.pid for c in psutil.Process(self.server.pid).children(recursive=True)
                if "ipykernel" in " ".join(c.cmdline())]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_jupyter_lab(base: Path):
    """Start JupyterLab on 127.0.0.1 with its own config/runtime dirs under `base`; stop it after."""
    root = base / "lab"
    root.mkdir(parents=True)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(base / "config"),
               JUPYTER_RUNTIME_DIR=str(base / "runtime"), JUPYTER_DATA_DIR=str(base / "data"),
               JUPYTERLAB_SETTINGS_DIR=str(base / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"))
    news = base / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false"}))  # no "news?" pop-up over the widgets
    log_path = base / "jupyter.log"
    with open(log_path, "wb") as log:
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
                    assert server.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, "JupyterLab did not answer in 60 s"
                    time.sleep(0.3)
            yield JupyterLab(url, token, root, server)
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


@contextmanager
def chromium_page(width: int = 1400, height: int = 1800):
    """A page in headless Chromium (Debian's binary, Korean locale)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield browser.new_page(viewport={"width": width, "height": height}, locale="ko-KR")
        finally:
            browser.close()


def run_notebook_until(page, url: str, ready, shots: Path, name: str, attempts: int = 6) -> None:
    """Open the notebook at `url`, run all its cells until the locator `ready` shows.

    The kernel may still be starting when the page opens: run again until it answers.
    """
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=60_000)
    for _attempt in range(attempts):
        page.click(".jp-Cell .cm-content")  # the first cell, then command mode: run each in turn
        page.keyboard.press("Escape")
        for _cell in range(page.locator(".jp-Notebook .jp-Cell").count()):
            page.keyboard.press("Shift+Enter")
        try:
            ready.wait_for(timeout=15_000)
            return
        except Exception:
            page.screenshot(path=str(shots / f"{name}-waiting.png"))
    raise AssertionError(f"{name}: the widget never appeared")


def screenshots_dir(tmp_path: Path) -> Path:
    shots = Path(os.environ.get("VMKIT_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    return shots


@contextmanager
def panel_in_jupyterlab(lab: JupyterLab, tmp_path: Path, name: str, source: str, button: str,
                        height: int = 1800):
    """Open a notebook showing a lab's panel (`source`) and run it until `button` shows.

    Yields (page, the button's locator, the screenshot folder); screenshots are `name`-*.png.
    """
    shots = screenshots_dir(tmp_path)
    url = lab.notebook(f"{name}.ipynb", source)
    with chromium_page(height=height) as page:
        locator = page.get_by_role("button", name=button)
        run_notebook_until(page, url, locator, shots, name)
        yield page, locator, shots
