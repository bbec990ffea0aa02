"""Print the book's `singlehtml` build to one PDF with Debian's Chromium (no LaTeX).

    python book/_ext/print_pdf.py _build/singlehtml _build/pdf/vmkit-textbook.pdf

The build is served on 127.0.0.1 and opened in headless Chromium (Playwright, the system's
`chromium`; no browser is downloaded). Every request that leaves the book is refused, so the
PDF shows exactly what an offline reader sees. The widgets are rendered from their stored
state and the fonts loaded before printing; Hangul comes from the system's fonts (fonts-nanum)
and Chromium embeds the glyphs it uses.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FOOTER = ('<div style="width:100%; font-size:8pt; color:#555; text-align:center;">'
          '<span class="pageNumber"></span> / <span class="totalPages"></span></div>')
#: Hide the screen-only parts of the page (search, navigation, buttons) on paper.
PRINT_CSS = """
@media print {
  .bd-header, .bd-sidebar-primary, .bd-sidebar-secondary, .header-article, .bd-footer,
  .bd-footer-article, .prev-next-area, .search-button-field, .theme-switch-button,
  .copybtn, .toggle-button, .headerlink { display: none !important; }
  .bd-main .bd-content .bd-article-container { max-width: 100% !important; }
  pre, .cell_output, .widget-subarea, figure, img { break-inside: avoid; }
  h1, h2, h3 { break-after: avoid; }
  /* Paper has no horizontal scroll bar: long code lines wrap instead of being cut off. */
  pre, pre code, .highlight pre { white-space: pre-wrap !important; overflow-wrap: anywhere;
                                  overflow: visible !important; }
}
"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextmanager
def serving(folder: Path):
    """An HTTP server for `folder` on 127.0.0.1 (a free port); yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def page_of(build: Path) -> str:
    """The singlehtml page: index.html (offline_assets moves it there)."""
    index = build / "index.html"
    if not index.is_file() or index.stat().st_size < 4096:  # missing, or only a redirect
        raise SystemExit(f"{build}: no singlehtml page (build it with --builder singlehtml)")
    return "index.html"


def wait_until_rendered(page, timeout_s: float = 60) -> None:
    """Until every stored widget view is drawn and every font and image has loaded."""
    deadline = time.monotonic() + timeout_s
    views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
    while page.locator(".widget-subarea").count() < views:
        if time.monotonic() > deadline:
            raise SystemExit(f"widgets not rendered after {timeout_s:.0f} s")
        time.sleep(0.2)
    page.wait_for_load_state("networkidle")
    page.evaluate("document.fonts.ready.then(() => true)")
    page.wait_for_function("Array.from(document.images).every(i => i.complete)",
                           timeout=timeout_s * 1000)


def print_pdf(build: Path, output: Path) -> list[str]:
    """Print the singlehtml build to `output`; returns the requests refused (off the book)."""
    from playwright.sync_api import sync_playwright

    refused: list[str] = []
    output.parent.mkdir(parents=True, exist_ok=True)
    with serving(build) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS,
                                     headless=True)
        try:
            page = browser.new_page(locale="ko-KR", viewport={"width": 1100, "height": 1400})

            def only_the_book(route):
                url = route.request.url
                if url.startswith(base) or url.startswith(("data:", "blob:")):
                    route.continue_()
                else:
                    refused.append(url)
                    route.abort()

            page.route("**/*", only_the_book)
            page.goto(base + page_of(build), wait_until="load")
            page.add_style_tag(content=PRINT_CSS)
            wait_until_rendered(page)
            page.emulate_media(media="print")
            page.pdf(path=str(output), format="A4", print_background=True,
                     display_header_footer=True, header_template="<span></span>",
                     footer_template=FOOTER,
                     margin={"top": "16mm", "bottom": "16mm", "left": "14mm", "right": "14mm"})
        finally:
            browser.close()
    return refused


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path, help="the singlehtml build folder")
    parser.add_argument("output", type=Path, help="the PDF to write")
    args = parser.parse_args(argv)
    refused = print_pdf(args.build, args.output)
    for url in refused:
        print(f"refused (off the book): {url}", file=sys.stderr)
    print(f"PDF: {args.output} ({args.output.stat().st_size / 2**20:.1f} MiB)")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
