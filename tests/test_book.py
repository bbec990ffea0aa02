"""The built book: it passes with warnings as errors, loads nothing from outside itself,
is Korean, finds Korean words with their particles, and prints to a PDF.

The book is built once per test session into a temporary folder (the `html` and `singlehtml`
builders, then the PDF), from the repository's _config.yml and _toc.yml. `make book` runs
every lab for real (execute_notebooks: force); to keep `make test` fast this build uses
jupyter-cache for the chapters' figure cells (`VMKIT_BOOK_EXECUTE`, default "cache", kept in
_build/.jupyter_cache) and the labs' stored outputs, which come from real runs (nbval grades
the labs themselves in the same `make test`).

When chapters land, extend SEARCH below: the pages each query must find are also computed from
what the built pages say, so the table only names the pages that must never drop out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from browser import CHROMIUM, chromium_page, screenshots_dir

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "book" / "_ext"))

import hub_launch  # noqa: E402  (book/_ext)
import korean_search  # noqa: E402
import offline_assets  # noqa: E402
import print_pdf  # noqa: E402

JUPYTER_BOOK = Path(sys.executable).with_name("jupyter-book")
NODE_MODULES = REPO / "node_modules"
LAB01 = "labs/01-vm-and-container"
HANGUL = re.compile("[\uac00-\ud7a3]")
#: The test build is `make book VMKIT_HUB_URL=… VMKIT_HUB_REPO=…`: lab pages get the hub's button.
HUB_SETTINGS = hub_launch.settings({"VMKIT_HUB_URL": "https://hub.example.edu",
                                    "VMKIT_HUB_REPO": "https://github.com/example/vmkit-class-labs"})

#: Search checks: (query typed into search.html, the word it stands for, pages it must find).
#: Every page of _toc.yml whose text uses the word, with or without a particle or ending
#: after it, must be found too; no page that lacks the word may be.
HYPERVISOR, TYPES, COMPARISON, DEEPER = ("book/hypervisor", "book/hypervisor-types",
                                         "book/containers-and-vms", "book/deeper")
SEARCH = [
    ("하이퍼바이저", "하이퍼바이저", ["book/intro", HYPERVISOR, TYPES, LAB01]),
    ("하이퍼바이저는", "하이퍼바이저", ["book/intro", HYPERVISOR, TYPES, LAB01]),
    ("컨테이너", "컨테이너", ["book/intro", COMPARISON, LAB01]),
    ("컨테이너와", "컨테이너", ["book/intro", COMPARISON, LAB01]),
    ("게스트", "게스트", [HYPERVISOR, TYPES, LAB01]),
    ("게스트의", "게스트", [HYPERVISOR, TYPES, LAB01]),
    ("스케줄링", "스케줄링", [HYPERVISOR]),
    ("커널", "커널", [HYPERVISOR, COMPARISON, DEEPER, LAB01]),
    ("커널을", "커널", [HYPERVISOR, COMPARISON, DEEPER, LAB01]),
    ("KVM", "KVM", [HYPERVISOR, TYPES, DEEPER, LAB01]),
    ("QMP", "QMP", [TYPES, DEEPER, LAB01]),
    ("cgroup", "cgroup", [COMPARISON, DEEPER, LAB01]),
]
#: Widget modules embed-amd.js bundles; any other would be looked up under _vendor/widget-modules/.
BUNDLED_WIDGET_MODULES = {"@jupyter-widgets/base", "@jupyter-widgets/controls",
                          "@jupyter-widgets/output"}
REMOTE = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)
CSS_REMOTE = re.compile(r"""(?:@import\s+(?:url\()?|url\()\s*['"]?\s*((?:[a-z]+:)?//[^'")\s]*)""",
                        re.IGNORECASE)

needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="Chromium is not installed")


# --- the build -----------------------------------------------------------------------------


class Build:
    """One test build: its html and singlehtml folders, the PDF, and how long each took."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.html = root / "_build" / "html"
        self.singlehtml = root / "_build" / "singlehtml"
        self.pdf = root / "_build" / "pdf" / "vmkit-textbook.pdf"
        self.seconds: dict[str, float] = {}
        self.pdf_refused: list[str] = []

    def pages(self, folder: Path | None = None) -> list[Path]:
        """Every HTML page of a build (not the theme's template fragments in _static/)."""
        folder = folder or self.html
        return sorted(page for page in folder.rglob("*.html")
                      if page.relative_to(folder).parts[0] != "_static")


def toc_docs() -> list[str]:
    """Every document _toc.yml names (root, chapters, sections), in order."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text(encoding="utf-8"))
    found: list[str] = [toc["root"]]

    def walk(node) -> None:
        if isinstance(node, dict):
            if "file" in node:
                found.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [re.sub(r"\.(md|ipynb)$", "", doc) for doc in found]


def build_config(folder: Path) -> Path:
    """_config.yml as `make book VMKIT_HUB_URL=…` has it (launch buttons, extension paths made
    absolute), with this test's execution mode."""
    config = hub_launch.hub_config(
        yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8")), *HUB_SETTINGS)
    execute = config.setdefault("execute", {})
    execute["execute_notebooks"] = os.environ.get("VMKIT_BOOK_EXECUTE", "cache")
    execute["cache"] = str(REPO / "_build" / ".jupyter_cache")
    if execute["execute_notebooks"] == "cache":
        # The labs keep the outputs of their last real run (nbval grades them in this same
        # `make test`); only the chapters' figure cells run here. `make book` runs everything.
        execute["exclude_patterns"] = ["labs/*"]
    path = folder / "_config.yml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def jupyter_book(builder: str, config: Path, out: Path) -> float:
    """Build with warnings as errors; returns the seconds it took (fails with the log)."""
    log = out / f"build-{builder}.log"
    started = time.monotonic()
    with open(log, "wb") as stream:
        done = subprocess.run(
            [str(JUPYTER_BOOK), "build", str(REPO), "--config", str(config),
             "--toc", str(REPO / "_toc.yml"), "--path-output", str(out), "--builder", builder,
             "--warningiserror", "--keep-going", "--all"],
            stdout=stream, stderr=subprocess.STDOUT, cwd=REPO, timeout=3000)
    text = log.read_text(encoding="utf-8", errors="replace")
    problems = [line for line in text.splitlines() if "WARNING" in line or "ERROR" in line]
    assert done.returncode == 0, (f"jupyter-book build --builder {builder} failed "
                                  f"(log: {log}):\n" + "\n".join(problems[-30:] or
                                                                text.splitlines()[-30:]))
    return time.monotonic() - started


@pytest.fixture(scope="session")
def book(tmp_path_factory, request) -> Build:
    """The book, built once: html, singlehtml, and the PDF printed from the singlehtml."""
    if os.environ.get("VMKIT_BOOK_EXECUTE", "cache") != "off":  # labs may run: engine needed
        request.getfixturevalue("guest_artifacts")
        request.getfixturevalue("docker_engine")
    root = tmp_path_factory.mktemp("book")
    build = Build(root)
    config = build_config(root)
    build.seconds["html"] = jupyter_book("html", config, root)
    build.seconds["singlehtml"] = jupyter_book("singlehtml", config, root)
    if Path(CHROMIUM).exists():
        started = time.monotonic()
        build.pdf_refused = print_pdf.print_pdf(build.singlehtml, build.pdf)
        build.seconds["pdf"] = time.monotonic() - started
    print(f"\nbook built in {root}: " +
          ", ".join(f"{name} {seconds:.0f} s" for name, seconds in build.seconds.items()))
    return build


@pytest.fixture(scope="session")
def served_book(book):
    """The html build on http://127.0.0.1:<port>/ (its base URL)."""
    with print_pdf.serving(book.html) as base:
        yield base


# --- HTML parsing helpers ------------------------------------------------------------------


class Resources(HTMLParser):
    """Every URL a page would load by itself (not links a reader follows), and its CSS text."""

    LOADS = {"src", "href", "srcset", "data", "poster", "action", "background",
             "data-jupyter-widgets-cdn"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, url)
        self.css: list[str] = []
        self.lang: str | None = None
        self._in_style = False

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        if tag == "html":
            self.lang = attrs.get("lang")
        if tag == "style":
            self._in_style = True
        if attrs.get("style"):
            self.css.append(attrs["style"])
        if tag == "a":  # a link the reader may follow is not a load
            return
        for name, value in attrs.items():
            if name in self.LOADS and value:
                for url in (value.split(",") if name == "srcset" else [value]):
                    self.urls.append((tag, name, url.strip().split(" ")[0]))

    def handle_endtag(self, tag) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data) -> None:
        if self._in_style:
            self.css.append(data)


class Links(HTMLParser):
    """Every link of a page (<a href>)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


class ArticleText(HTMLParser):
    """The text of a page's article (what the reader reads: no navigation, no scripts)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._depth = 0
        self._skip = 0

    def handle_starttag(self, tag, attrs) -> None:
        if self._depth:
            self._depth += tag == "article"
            self._skip += tag in {"script", "style"}
        elif tag == "article" and "bd-article" in (dict(attrs).get("class") or ""):
            self._depth = 1

    def handle_endtag(self, tag) -> None:
        if self._depth:
            self._skip -= tag in {"script", "style"}
            self._depth -= tag == "article"

    def handle_data(self, data) -> None:
        if self._depth and not self._skip:
            self.parts.append(data)


def parse(parser: HTMLParser, path: Path) -> HTMLParser:
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def article_text(path: Path) -> str:
    return " ".join(parse(ArticleText(), path).parts)


def uses_word(text: str, word: str) -> bool:
    """Whether `text` has `word` starting a word (anything, e.g. a particle, may follow a
    Korean word; an English one must end there, 은/는 and other Hangul aside)."""
    end = "" if HANGUL.match(word) else r"(?![A-Za-z0-9_])"
    return re.search(rf"(?<![\w\uac00-\ud7a3]){re.escape(word)}{end}", text, re.I) is not None


def widget_states(path: Path) -> list[dict]:
    html = path.read_text(encoding="utf-8")
    return [json.loads(body) for body in re.findall(
        r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', html, re.S)]


# --- npm: pinned, integrity-checked, nothing vendored in git --------------------------------


def test_npm_packages_are_pinned_and_integrity_checked():
    package = json.loads((REPO / "package.json").read_text(encoding="utf-8"))
    lock = json.loads((REPO / "package-lock.json").read_text(encoding="utf-8"))
    for name, version in package["dependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name}: not an exact version: {version}"
    assert lock["lockfileVersion"] >= 2
    assert lock["packages"][""]["dependencies"] == package["dependencies"], \
        "package-lock.json is out of date: run `npm install --ignore-scripts`"
    entries = {path: entry for path, entry in lock["packages"].items() if path}
    assert {f"node_modules/{name}" for name in package["dependencies"]} <= set(entries)
    for path, entry in entries.items():
        assert re.fullmatch(r"sha512-[A-Za-z0-9+/]+={0,2}", entry.get("integrity", "")), \
            f"{path}: no sha512 integrity in package-lock.json"
        assert len(base64.b64decode(entry["integrity"][7:])) == 64
        assert "version" in entry, path


def test_node_modules_is_what_the_lock_says():
    """What `npm ci` installed: every locked package, at its locked version and hash."""
    if not NODE_MODULES.is_dir():
        pytest.fail("node_modules/ is missing: run `make setup` (npm ci)")
    lock = json.loads((REPO / "package-lock.json").read_text(encoding="utf-8"))
    installed = json.loads((NODE_MODULES / ".package-lock.json").read_text(encoding="utf-8"))
    for path, entry in lock["packages"].items():
        if not path:
            continue
        manifest = json.loads((REPO / path / "package.json").read_text(encoding="utf-8"))
        assert manifest["version"] == entry["version"], f"{path}: installed {manifest['version']}"
        assert installed["packages"][path]["integrity"] == entry["integrity"], path


def test_no_third_party_javascript_in_git():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.splitlines()
    served = {Path(source).name for source in
              offline_assets.served_files(NODE_MODULES).values()}
    assert not [f for f in tracked if f.startswith("node_modules/") or "/node_modules/" in f]
    assert not [f for f in tracked if Path(f).name in served and f.endswith(".js")], \
        "third-party JavaScript is committed: it comes from npm (package-lock.json)"


# --- Korean search: the same split and stems in Python and in the browser -------------------


@pytest.mark.parametrize("word, stem", [
    ("하이퍼바이저는", "하이퍼바이저"), ("컨테이너와", "컨테이너"), ("게스트의", "게스트"),
    ("커널을", "커널"), ("스케줄링을", "스케줄링"), ("컨테이너들에서는", "컨테이너"),
    ("하이퍼바이저입니다", "하이퍼바이저"), ("속도", "속도"), ("결과", "결과"),
    ("가상화", "가상화"), ("이미지", "이미지"),
])
def test_korean_stems(word, stem):
    assert korean_search.SearchKorean({}).stem(word) == stem


def test_korean_split_separates_scripts_and_drops_bare_particles():
    assert korean_search.split("VM은 cgroup으로 KVM과 QEMU가 커널을 x86_64에서") == \
        ["VM", "cgroup", "KVM", "QEMU", "커널을", "x86_64"]


# --- the build ------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(3600)
def test_build_passes_with_warnings_as_errors(book):
    """The fixture fails on any warning (-W); here: it produced both builds."""
    assert (book.html / "index.html").is_file() and (book.singlehtml / "index.html").is_file()


@pytest.mark.integration
@pytest.mark.timeout(3600)
def test_every_toc_entry_became_a_page(book):
    docs = toc_docs()
    assert LAB01 in docs, f"{LAB01} is not in _toc.yml: the book's first lab must be in the book"
    missing = [doc for doc in docs if not (book.html / f"{doc}.html").is_file()]
    assert not missing, f"in _toc.yml but not built: {missing}"


@pytest.mark.integration
@pytest.mark.timeout(3600)
def test_lab_pages_and_only_they_open_in_the_class_hub(book):
    """The nbgitpuller link (tests/test_hub_launch.py builds the config and a small book)."""
    pulls = {doc: [href for href in parse(Links(), book.html / f"{doc}.html").hrefs
                   if "/hub/user-redirect/git-pull?" in href] for doc in toc_docs()}
    for doc, links in pulls.items():
        if doc.startswith("labs/"):
            assert links == [hub_launch.launch_url(*HUB_SETTINGS, f"{doc}.ipynb")], doc
        else:
            assert not links, f"{doc}: a hub button on a page that is not a lab"


@pytest.mark.integration
@pytest.mark.timeout(3600)
def test_pages_are_korean(book):
    for folder in (book.html, book.singlehtml):
        for page in book.pages(folder):
            lang = parse(Resources(), page).lang
            assert lang == "ko", f"{page.relative_to(book.root)}: <html lang={lang!r}>"


@pytest.mark.integration
@pytest.mark.timeout(3600)
def test_no_page_loads_anything_from_outside_the_book(book):
    """Every .html of both builds; the book's CSS too. Links a reader follows (<a>) aside."""
    offending: list[str] = []
    for folder in (book.html, book.singlehtml):
        for page in book.pages(folder):
            found = parse(Resources(), page)
            name = page.relative_to(book.root)
            offending += [f"{name}: <{tag} {attr}={url!r}>" for tag, attr, url in found.urls
                          if REMOTE.match(url)]
            offending += [f"{name}: CSS {url!r}" for css in found.css
                          for url in CSS_REMOTE.findall(css)]
        for sheet in sorted(folder.rglob("*.css")):
            offending += [f"{sheet.relative_to(book.root)}: {url!r}"
                          for url in CSS_REMOTE.findall(sheet.read_text(encoding="utf-8",
                                                                        errors="replace"))]
    assert not offending, "loaded from outside the book:\n" + "\n".join(offending)


@pytest.mark.integration
@pytest.mark.timeout(3600)
def test_served_javascript_is_the_installed_npm_packages(book):
    """_static/_vendor/ holds exactly what offline_assets serves, byte for byte."""
    for folder in (book.html, book.singlehtml):
        vendor = folder / "_static" / offline_assets.VENDOR
        served = {path.relative_to(folder / "_static").as_posix(): path
                  for path in vendor.rglob("*") if path.is_file()}
        expected = offline_assets.served_files(NODE_MODULES)
        assert offline_assets.EMBED_AMD in served and offline_assets.REQUIRE_JS in served
        assert set(served) <= set(expected), set(served) - set(expected)
        for target, path in served.items():
            assert hashlib.sha256(path.read_bytes()).digest() == \
                hashlib.sha256(expected[target].read_bytes()).digest(), target


@pytest.mark.integration
@pytest.mark.timeout(3600)
def test_widget_state_is_stored_and_needs_only_bundled_modules(book):
    states = widget_states(book.html / f"{LAB01}.html")
    assert states, f"{LAB01}: no widget state in the page (store_widget_state)"
    for page in book.pages():
        for state in widget_states(page):
            modules = {model["model_module"] for model in state["state"].values()}
            assert modules <= BUNDLED_WIDGET_MODULES, \
                f"{page.name}: widget modules the book does not serve: {modules - BUNDLED_WIDGET_MODULES}"


@pytest.mark.integration
@pytest.mark.timeout(3600)
def test_no_page_shows_a_figure_as_text(book):
    """A matplotlib Figure that reached the page as its text repr was never drawn."""
    shown = [f"{page.relative_to(book.html)}: {text}" for page in book.pages()
             for text in re.findall(r"&lt;Figure size [^<]*", page.read_text(encoding="utf-8"))]
    assert not shown, "figures shown as text instead of images:\n" + "\n".join(shown)


# --- in the browser, with every request off the book refused -------------------------------


class Offline:
    """A page that may load only from the book; what it tried elsewhere, and what failed."""

    def __init__(self, page, base: str) -> None:
        self.page, self.base = page, base
        self.refused: list[str] = []
        self.failed: list[str] = []
        page.route("**/*", self._route)
        page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.status} {r.url}"))

    def _route(self, route) -> None:
        url = route.request.url
        if url.startswith(self.base) or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.refused.append(url)
            route.abort()


def platform_fonts(page, selector: str) -> set[str]:
    """The fonts Chromium really drew `selector`'s text with (DevTools protocol)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    return {font["familyName"] for font in
            cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]}


def hangul_fonts() -> set[str]:
    listed = subprocess.run(["fc-list", ":lang=ko", "family"], capture_output=True, text=True)
    return {name.strip() for line in listed.stdout.splitlines() for name in line.split(",")}


@pytest.mark.integration
@pytest.mark.timeout(3600)
@needs_chromium
def test_lab01_renders_offline_with_hangul_plots_and_widgets(book, served_book, tmp_path):
    shots = screenshots_dir(tmp_path)
    with chromium_page(1300, 1800) as page:
        offline = Offline(page, served_book)
        page.goto(f"{served_book}{LAB01}.html", wait_until="load")
        views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
        assert views, f"{LAB01}: no widget output on the page"
        page.wait_for_function(f"document.querySelectorAll('.widget-subarea').length >= {views}",
                               timeout=30_000)
        page.wait_for_load_state("networkidle")
        page.evaluate("document.fonts.ready.then(() => true)")
        page.screenshot(path=str(shots / "book-lab01.png"), full_page=True)

        assert not offline.refused, f"requests off the book: {offline.refused}"
        assert not offline.failed, f"failed requests: {offline.failed}"
        drawn = platform_fonts(page, "article h1")
        assert drawn & hangul_fonts(), f"the title's Hangul was drawn with {drawn}, no Korean font"
        widgets = page.evaluate("""Array.from(document.querySelectorAll('.widget-subarea'))
            .map(w => [w.getBoundingClientRect().height, w.querySelectorAll('.jupyter-widgets').length])""")
        assert all(height > 0 and count > 0 for height, count in widgets), \
            f"widget outputs not drawn (height, controls): {widgets}"
        images = page.evaluate("""Array.from(document.querySelectorAll('article img')).map(i =>
            [i.closest('.widget-subarea') ? 'widget' : 'plot', i.complete && i.naturalWidth > 0,
             (i.getAttribute('src') || '').slice(0, 60)])""")
        plots = [ok for kind, ok, _src in images if kind == "plot"]
        assert plots, f"{LAB01}: no plot drawn as an image (see {shots / 'book-lab01.png'})"
        broken = [(kind, src) for kind, ok, src in images if not ok]
        assert not broken, f"{LAB01}: images that show nothing: {broken}"


@pytest.mark.integration
@pytest.mark.timeout(3600)
@needs_chromium
def test_no_page_asks_for_anything_off_the_book_in_the_browser(book, served_book):
    """What the pages' scripts load at run time too (widgets, fonts, theme), page by page."""
    asked: list[str] = []
    with chromium_page() as page:
        offline = Offline(page, served_book)
        for doc in toc_docs():
            page.goto(f"{served_book}{doc}.html", wait_until="load")
            page.wait_for_load_state("networkidle")
            asked += [f"{doc}: {url}" for url in offline.refused]
            offline.refused.clear()
    assert not asked, "requests off the book:\n" + "\n".join(asked)


def search(page, base: str, query: str) -> set[str]:
    """The pages search.html lists for `query` (docnames, e.g. book/intro)."""
    page.goto(f"{base}search.html?q={urllib.parse.quote(query)}", wait_until="load")
    page.wait_for_function("(document.querySelector('#search-results .search-summary') || {})"
                           ".innerText", timeout=30_000)
    hrefs = page.eval_on_selector_all("#search-results ul.search li > a",
                                      "links => links.map(a => a.getAttribute('href'))")
    return {re.sub(r"\.html$", "", href.split("#")[0].split("?")[0]) for href in hrefs}


@pytest.mark.integration
@pytest.mark.timeout(3600)
@needs_chromium
def test_search_finds_korean_words_with_particles_and_english_terms(book, served_book):
    texts = {doc: article_text(book.html / f"{doc}.html") for doc in toc_docs()
             if (book.html / f"{doc}.html").is_file()}
    report, wrong = [], []
    with chromium_page() as page:
        offline = Offline(page, served_book)
        for query, word, named in SEARCH:
            uses = {doc for doc, text in texts.items() if uses_word(text, word)}
            stale = set(named) - uses
            assert not stale, f"SEARCH table: {stale} no longer use {word!r}; update the table"
            found = search(page, served_book, query)
            has_word = {doc for doc, text in texts.items() if word.lower() in text.lower()}
            report.append(f"{query}: {len(found)} pages {sorted(found)}")
            if not uses <= found:
                wrong.append(f"{query!r} misses {sorted(uses - found)}")
            if not found <= has_word:
                wrong.append(f"{query!r} finds pages without {word!r}: {sorted(found - has_word)}")
        assert not offline.refused, f"requests off the book: {offline.refused}"
    size = (book.html / "searchindex.js").stat().st_size
    print(f"\nsearchindex.js: {size} bytes\n" + "\n".join(report))
    assert not wrong, "\n".join(wrong)


@pytest.mark.integration
@pytest.mark.timeout(3600)
@needs_chromium
def test_browser_splits_and_stems_like_the_index(book, served_book):
    """splitQuery and Stemmer in language_data.js agree with korean_search.py on every word
    of every page."""
    stemmer = korean_search.SearchKorean({})
    with chromium_page() as page:
        Offline(page, served_book)
        page.goto(f"{served_book}search.html", wait_until="load")
        for doc in toc_docs():
            text = article_text(book.html / f"{doc}.html")
            in_browser = page.evaluate("""text => { const stemmer = new Stemmer();
                return splitQuery(text).map(w => stemmer.stemWord(w.toLowerCase())); }""", text)
            in_python = [stemmer.stem(word).lower() for word in korean_search.split(text)]
            assert in_browser == in_python, next(
                (f"{doc}: word {i}: browser {b!r}, index {p!r}"
                 for i, (b, p) in enumerate(zip(in_browser, in_python)) if b != p),
                f"{doc}: {len(in_browser)} words in the browser, {len(in_python)} in the index")


# --- the PDF --------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(3600)
@needs_chromium
def test_pdf_has_the_whole_book_with_hangul_embedded(book):
    assert book.pdf.is_file(), "no PDF was printed"
    assert not book.pdf_refused, f"printing asked for things off the book: {book.pdf_refused}"
    if not shutil.which("pdftotext"):
        pytest.fail("pdftotext is missing: `make setup` installs poppler-utils")
    info = subprocess.run(["pdfinfo", str(book.pdf)], capture_output=True, text=True, check=True)
    pages = int(re.search(r"^Pages:\s+(\d+)", info.stdout, re.M).group(1))
    assert pages >= 1
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(book.pdf), "-"],
                          capture_output=True, text=True, check=True).stdout
    assert len(HANGUL.findall(text)) > 100, "the PDF's text has (almost) no Hangul"
    squeezed = re.sub(r"\s+", "", text)
    for doc in toc_docs():  # every page's title made it into the one document
        title = parse(TitleOf(), book.html / f"{doc}.html").title
        assert re.sub(r"\s+", "", title) in squeezed, f"{doc}: title {title!r} not in the PDF"
    import nbformat

    import edition

    long_lines = [line for cell in nbformat.read(REPO / f"{LAB01}.ipynb", as_version=4).cells
                  if cell.cell_type == "code" and not edition.withheld(cell)
                  and not {"remove-cell", "remove-input"} & set(cell.metadata.get("tags", []))
                  for line in cell.source.splitlines() if len(line) > 90]
    assert long_lines, "lab 01 has long code lines to look for"
    # pdftotext joins a line wrapped after a hyphen and drops the hyphen: compare without them.
    unhyphenated = squeezed.replace("-", "")
    cut = [line for line in long_lines if re.sub(r"[\s-]+", "", line) not in unhyphenated]
    assert not cut, f"code lines cut off on paper (no wrapping): {cut[:3]}"
    fonts = subprocess.run(["pdffonts", str(book.pdf)], capture_output=True, text=True,
                           check=True).stdout.splitlines()[2:]
    assert fonts and all(line.split()[-5] == "yes" for line in fonts), \
        "fonts not embedded:\n" + "\n".join(fonts)
    print(f"\nPDF: {pages} pages, {book.pdf.stat().st_size} bytes")


class TitleOf(HTMLParser):
    """A page's first <h1> text (its title)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self._in = 0

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "h1" and not self.title:
            self._in = 1
        elif self._in and tag == "a":  # the ¶ permalink
            self._in = 2

    def handle_endtag(self, tag) -> None:
        if tag == "h1":
            self._in = 0
        elif tag == "a" and self._in == 2:
            self._in = 1

    def handle_data(self, data) -> None:
        if self._in == 1:
            self.title += data


# --- the student edition ---------------------------------------------------------------------


class PageText(HTMLParser):
    """A page's text as a reader (or a search engine) sees it: tags gone, entities decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data) -> None:
        self.parts.append(data)


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def withheld_lines() -> dict[str, set[str]]:
    """Per lab, the lines of its solution cells and hidden checks (shorter ones, `else:` or
    `import statistics`, say nothing; comments neither)."""
    import nbformat

    import edition

    found = {}
    for lab in sorted((REPO / "labs").glob("[0-9][0-9]-*.ipynb")):
        cells = nbformat.read(lab, as_version=4).cells
        found[lab.name] = {squeeze(line) for c in cells if edition.withheld(c)
                           for line in c.source.splitlines()
                           if len(squeeze(line)) >= 20 and not line.lstrip().startswith("#")}
    return found


@pytest.mark.integration
@pytest.mark.timeout(3600)
def test_the_student_edition_gives_no_answer_away(book):
    """No solution cell's or hidden check's source in the pages, the search index, the single
    page, the PDF or the downloadable notebooks; those are the student copies."""
    import nbformat

    lines = withheld_lines()
    assert all(lines.values()), f"every lab has withheld lines to look for: {lines}"
    texts = {str(page.relative_to(book.root)): squeeze(" ".join(parse(PageText(), page).parts))
             for folder in (book.html, book.singlehtml) for page in book.pages(folder)}
    texts["searchindex.js"] = squeeze((book.html / "searchindex.js").read_text(encoding="utf-8"))
    if book.pdf.is_file() and shutil.which("pdftotext"):
        texts["pdf"] = squeeze(subprocess.run(["pdftotext", "-enc", "UTF-8", str(book.pdf), "-"],
                                              capture_output=True, text=True, check=True).stdout)
    leaked = {(where, lab): line for lab, withheld in lines.items() for line in withheld
              for where, text in texts.items() if line in text}
    assert not leaked, f"answers in the student edition: {list(leaked.items())[:5]}"
    for lab in lines:
        download = book.html / "_sources" / "labs" / lab
        assert download.is_file(), f"{lab} cannot be downloaded from its page"
        copy = nbformat.read(download, as_version=4)
        assert not any("hidden" in c.metadata.get("tags", []) for c in copy.cells), lab
        solutions = [c.source for c in copy.cells if "solution" in c.metadata.get("tags", [])]
        assert solutions and all("NotImplementedError" in s for s in solutions), lab


def test_editions_are_chosen_and_checked():
    import edition

    assert edition.edition({}) == "student" and edition.edition({"VMKIT_EDITION": "instructor"}) == "instructor"
    with pytest.raises(edition.EditionError, match="VMKIT_EDITION"):
        edition.edition({"VMKIT_EDITION": "teacher"})
    lab = (REPO / "labs" / "03-hypervisor-types.ipynb").read_text(encoding="utf-8")
    before, after = json.loads(lab)["cells"], json.loads(edition.hide_withheld(lab))["cells"]
    removed = ["remove-cell" in c["metadata"].get("tags", []) for c in after]
    was = ["remove-cell" in c["metadata"].get("tags", []) for c in before]
    newly = [a for a, r, w in zip(after, removed, was) if r and not w]
    assert newly and all(edition.withheld(c) for c in newly)
    assert all(r for c, r in zip(after, removed) if edition.withheld(c))


@pytest.mark.integration
@pytest.mark.timeout(3600)
@needs_chromium
def test_search_excerpts_show_where_the_word_is(book, served_book):
    """Each result's excerpt is the text around the word as typed (with its particle), taken
    from the page's body: not the title and the page's contents list it begins with."""
    with chromium_page() as page:
        Offline(page, served_book)
        search(page, served_book, "컨테이너를")
        page.wait_for_function("document.querySelectorAll('#search-results p.context').length >= 3",
                               timeout=30_000)
        results = page.eval_on_selector_all(
            "#search-results ul.search li",
            "items => items.map(li => [li.querySelector('a').getAttribute('href'),"
            " li.querySelector('a').innerText, (li.querySelector('p.context') || {}).innerText || ''])")
    assert len(results) >= 3, results
    for href, title, excerpt in results:
        doc = re.sub(r"\.html$", "", href.split("#")[0].split("?")[0])
        assert "컨테이너" in excerpt, (doc, excerpt)
        assert not excerpt.lstrip(".").startswith(title), (doc, excerpt)
        if "컨테이너를" in article_text(book.html / f"{doc}.html"):
            assert "컨테이너를" in excerpt, (doc, excerpt)
