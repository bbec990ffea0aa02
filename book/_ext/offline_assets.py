"""Serve the book's third-party JavaScript from the book itself: no CDN, ever.

MyST-NB loads RequireJS and the ipywidgets HTML manager (`embed-amd.js`) from public CDNs
by default, and Sphinx loads MathJax from one; a classroom behind a firewall would then see
no widgets and no formulas. `_config.yml` points `nb_ipywidgets_js` and `mathjax_path` at
paths under `_vendor/` instead (Sphinx reads them relative to the build's `_static/`), and
this extension puts the files there, copied from
`node_modules/` (installed by `make setup` with `npm ci` from the committed, integrity-checked
package-lock.json; nothing is vendored in git and nothing is downloaded at build time).

Not under a book-level `_static/`: Jupyter Book 1 would inject every .js/.css found there into
every page.

What else it takes care of:

- `embed-amd.js` falls back to a CDN (`data-jupyter-widgets-cdn`) for widget modules it does
  not bundle. It bundles `@jupyter-widgets/base`, `controls` and `output` (every standard
  control); the fallback prefix is rewritten per page to a local folder, so an unknown module
  fails locally instead of reaching out. A lab that needs a third-party widget library must add
  it to package.json and serve it at `_static/_vendor/widget-modules/<name>@<version>/dist/
  index.js`.
- The manager finds its Font Awesome fonts (button icons) relative to where RequireJS says its
  modules live, the page's folder by default: each widget page sets RequireJS's `baseUrl` to
  `_static/_vendor/`, where the fonts are served.
- The `singlehtml` builder (the PDF) renders every notebook into one page, but MyST-NB only
  adds the widget state of the page's own document: this adds every document's state.
- The `singlehtml` page is moved to the build's root (index.html), where its links work.
- MathJax is copied only when a page loads it; the `singlehtml` builder loads it on every
  page (Jupyter Book sets the "always" asset policy), so it is dropped there when no
  document has an equation.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.errors import ConfigError, ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: Where the served files live, relative to the build's `_static/` (Sphinx resolves script
#: paths there); the copy in the build is `_static/_vendor/...`.
VENDOR = "_vendor"
#: Prefix given to embed-amd.js for widget modules it does not bundle (served locally or 404).
WIDGET_MODULES = f"{VENDOR}/widget-modules/"
EMBED_AMD = f"{VENDOR}/@jupyter-widgets/html-manager/dist/embed-amd.js"
REQUIRE_JS = f"{VENDOR}/requirejs/require.js"
MATHJAX_JS = f"{VENDOR}/mathjax/tex-mml-chtml.js"

#: Served path -> source under node_modules/ (a file, or a folder copied whole).
WIDGET_FILES = {
    REQUIRE_JS: "requirejs/require.js",
    EMBED_AMD: "@jupyter-widgets/html-manager/dist/embed-amd.js",
}
#: Font Awesome fonts (woff2, woff fallback), which the manager's CSS loads relative to the
#: RequireJS module that asked: @jupyter-widgets/html-manager/dist/... or @jupyter-widgets/...
WIDGET_FONTS = ("1551f4f60c37af51121f.woff2", "7a3337626410ca2f4071.woff2",
                "d878b0a6a1144760244f.woff2", "2285773e6b4b172f07d9.woff",
                "bb58e57c48a3e911f15f.woff", "eeccf4f66002c6f2ba24.woff")
for _font in WIDGET_FONTS:
    for _folder in ("@jupyter-widgets/html-manager/dist", "@jupyter-widgets"):
        WIDGET_FILES[f"{VENDOR}/{_folder}/{_font}"] = f"@jupyter-widgets/html-manager/dist/{_font}"
MATHJAX_FILES = {
    MATHJAX_JS: "mathjax/es5/tex-mml-chtml.js",
    f"{VENDOR}/mathjax/output/chtml/fonts/woff-v2": "mathjax/es5/output/chtml/fonts/woff-v2",
    f"{VENDOR}/mathjax/input/tex/extensions": "mathjax/es5/input/tex/extensions",
    f"{VENDOR}/mathjax/input/mml/extensions": "mathjax/es5/input/mml/extensions",
}


def node_modules(app: Sphinx) -> Path:
    """The npm install folder: $VMKIT_NODE_MODULES, else node_modules/ beside _config.yml."""
    configured = os.environ.get("VMKIT_NODE_MODULES")
    return Path(configured) if configured else Path(app.confdir) / "node_modules"


def served_files(app: Sphinx) -> dict[str, Path]:
    """Every file this extension may serve: path under `_static/` -> installed file."""
    root = node_modules(app)
    files: dict[str, Path] = {}
    for table in (WIDGET_FILES, MATHJAX_FILES):
        for target, source in table.items():
            path = root / source
            if path.is_dir():
                for child in sorted(path.rglob("*")):
                    if child.is_file():
                        files[f"{target}/{child.relative_to(path).as_posix()}"] = child
            else:
                files[target] = path
    return files


def _is_remote(uri: str) -> bool:
    return "://" in uri or uri.startswith("//")


def check_config(app: Sphinx, config: Any) -> None:
    """The widget and MathJax scripts must be the local paths this extension serves."""
    for uri in config.nb_ipywidgets_js:
        if _is_remote(uri) or uri not in WIDGET_FILES:
            raise ConfigError(f"nb_ipywidgets_js: {uri!r} is not served by the book "
                              f"(offline_assets serves {sorted(WIDGET_FILES)})")
    if config.mathjax_path != MATHJAX_JS:
        raise ConfigError(f"mathjax_path must be {MATHJAX_JS!r} (served by the book), "
                          f"not {config.mathjax_path!r}")


def _copy(source: Path, target: Path) -> None:
    if not source.is_file():
        raise ExtensionError(f"{source} is missing: run `make setup` (npm ci installs it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() or _sha256(target) != _sha256(source):
        shutil.copyfile(source, target)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_widget_scripts(app: Sphinx) -> None:
    """Before any page is written, so Sphinx can add its ?v=checksum to their URLs."""
    app.vmkit_mathjax_seen = False
    if app.builder.format != "html":
        return
    root = node_modules(app)
    for target, source in WIDGET_FILES.items():
        _copy(root / source, Path(app.outdir) / "_static" / target)


def _doc_data(app: Sphinx) -> dict[str, dict]:
    from myst_nb.sphinx_ import NbMetadataCollector

    return NbMetadataCollector.get_doc_data(app.env)


def adjust_page(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any],
                doctree: Any) -> None:
    """Runs after MyST-NB and sphinx.ext.mathjax have added their scripts to this page."""
    if app.builder.format != "html" or "script_files" not in context:
        return
    from sphinx.builders.html._assets import _JavaScript

    if app.builder.name == "singlehtml" and pagename == app.config.root_doc:
        _add_every_documents_widgets(app)
        domain = app.env.get_domain("math")
        if not any(domain.has_equations(doc) for doc in app.env.found_docs):
            context["script_files"][:] = [js for js in context["script_files"]
                                          if _static_path(js) != MATHJAX_JS]
    pathto = context["pathto"]
    scripts = context["script_files"]
    for index, js in reversed(list(enumerate(scripts))):
        filename = _static_path(js)
        if filename == EMBED_AMD:
            attributes = dict(js.attributes)
            attributes["data-jupyter-widgets-cdn"] = pathto(f"_static/{WIDGET_MODULES}", 1)
            scripts[index] = _JavaScript(js.filename, priority=js.priority, **attributes)
        elif filename == REQUIRE_JS:
            base = json.dumps(pathto(f"_static/{VENDOR}/", 1))
            scripts.insert(index + 1, _JavaScript(
                "", priority=js.priority, body=f"require.config({{baseUrl: {base}}});"))
        elif filename == MATHJAX_JS:
            app.vmkit_mathjax_seen = True


def _static_path(js: Any) -> str:
    """A page script's path relative to `_static/` ("" for remote or inline scripts)."""
    filename = os.fspath(getattr(js, "filename", js) or "")
    return filename.removeprefix("_static/") if filename.startswith("_static/") else ""


def _add_every_documents_widgets(app: Sphinx) -> None:
    """singlehtml: the widget state of every notebook, and the manager once."""
    loaders: dict[str, dict] = {}
    for docname, data in sorted(_doc_data(app).items()):
        for key, (uri, kwargs) in data.get("js_files", {}).items():
            if uri is None:  # the state script: its JSON is in "body"
                app.add_js_file(None, **kwargs)
            else:
                loaders.setdefault(uri, kwargs)
    for uri, kwargs in loaders.items():
        app.add_js_file(uri, **kwargs)


def copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    """After the pages: MathJax, if a page loads it."""
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    if getattr(app, "vmkit_mathjax_seen", False):
        for target, source in served_files(app).items():
            if target.startswith(f"{VENDOR}/mathjax/"):
                _copy(source, outdir / "_static" / target)


def singlehtml_at_root(app: Sphinx, exception: Exception | None) -> None:
    """singlehtml: move the page to index.html at the root, where its relative links work.

    Sphinx writes the one page under the root document's name (book/intro.html) but makes
    every link in it relative to the build's root, so in book/ it finds none of its scripts,
    styles or images. The old name becomes a redirect to the moved page.
    """
    if exception is not None or app.builder.name != "singlehtml":
        return
    page = Path(app.builder.get_outfilename(app.config.root_doc))
    index = Path(app.outdir) / "index.html"
    if page == index or not page.is_file():
        return
    shutil.move(page, index)
    target = os.path.relpath(index, page.parent).replace(os.sep, "/")
    page.write_text(f'<!DOCTYPE html><html lang="{app.config.language or "en"}"><head>'
                    f'<meta charset="utf-8"><meta http-equiv="refresh" content="0; url={target}">'
                    f'</head><body><a href="{target}">{target}</a></body></html>\n',
                    encoding="utf-8")


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", check_config, priority=900)
    app.connect("builder-inited", copy_widget_scripts)
    app.connect("html-page-context", adjust_page, priority=900)
    app.connect("build-finished", copy_mathjax)
    # before sphinx-external-toc's build-finished writes a redirect as index.html
    app.connect("build-finished", singlehtml_at_root, priority=400)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": False}
