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
- The `singlehtml` page is moved to the build's root (index.html), where its links work;
  the `html` build's root index.html redirects to the first page, in Korean (lang="ko").
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

#: Where the served files live, relative to the build's `_static/` (Sphinx resolves script
#: paths there); the copy in the build is `_static/_vendor/...`.
VENDOR = "_vendor"
#: Prefix given to embed-amd.js for widget modules it does not bundle (served locally or 404).
WIDGET_MODULES = f"{VENDOR}/widget-modules/"
EMBED_AMD = f"{VENDOR}/@jupyter-widgets/html-manager/dist/embed-amd.js"
REQUIRE_JS = f"{VENDOR}/requirejs/require.js"
MATHJAX_JS = f"{VENDOR}/mathjax/tex-mml-chtml.js"

#: Served path -> source under node_modules/.
WIDGET_FILES = {
    REQUIRE_JS: "requirejs/require.js",
    EMBED_AMD: "@jupyter-widgets/html-manager/dist/embed-amd.js",
}
#: The manager's Font Awesome fonts (button icons; woff2, woff as fallback): its CSS loads them
#: relative to the RequireJS module that asks, @jupyter-widgets/html-manager/dist/... or
#: @jupyter-widgets/..., so they are served in both folders.
WIDGET_FONTS = ("@jupyter-widgets/html-manager/dist", ("*.woff2", "*.woff"),
                (f"{VENDOR}/@jupyter-widgets/html-manager/dist", f"{VENDOR}/@jupyter-widgets"))
#: Served folder -> folder under node_modules/, copied whole, only if a page loads MathJax.
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


def served_files(root: Path, mathjax: bool = True) -> dict[str, Path]:
    """Every file this extension serves: path under `_static/` -> its file in `root`
    (node_modules/). The widget scripts and fonts always, MathJax if `mathjax`."""
    files = {target: root / source for target, source in WIDGET_FILES.items()}
    source_dir, patterns, targets = WIDGET_FONTS
    for pattern in patterns:
        for font in sorted((root / source_dir).glob(pattern)):
            files.update({f"{target}/{font.name}": font for target in targets})
    if mathjax:
        for target, source in MATHJAX_FILES.items():
            path = root / source
            if path.is_dir():
                files.update({f"{target}/{child.relative_to(path).as_posix()}": child
                              for child in sorted(path.rglob("*")) if child.is_file()})
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
    for target, source in served_files(node_modules(app), mathjax=False).items():
        _copy(source, Path(app.outdir) / "_static" / target)


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
        for target, source in served_files(node_modules(app)).items():
            if target.startswith(f"{VENDOR}/mathjax/"):
                _copy(source, outdir / "_static" / target)


def _redirect(page: Path, target: Path, language: str) -> None:
    href = os.path.relpath(target, page.parent).replace(os.sep, "/")
    page.write_text(f'<!DOCTYPE html><html lang="{language}"><head><meta charset="utf-8">'
                    f'<meta http-equiv="refresh" content="0; url={href}"></head>'
                    f'<body><a href="{href}">{href}</a></body></html>\n', encoding="utf-8")


def index_at_root(app: Sphinx, exception: Exception | None) -> None:
    """An index.html at the build's root, in the book's language.

    html: a redirect to the root document (sphinx-external-toc would write one without a
    language). singlehtml: the page itself. Sphinx writes the one page under the root
    document's name (book/intro.html) but makes every link in it relative to the build's
    root, so in book/ it finds none of its scripts, styles or images; it is moved to
    index.html and the old name redirects there.
    """
    if exception is not None or app.builder.format != "html":
        return
    language = app.config.language or "en"
    page = Path(app.builder.get_outfilename(app.config.root_doc))
    index = Path(app.outdir) / "index.html"
    if page == index or not page.is_file():
        return
    if app.builder.name == "singlehtml":
        shutil.move(page, index)
        _redirect(page, index, language)
    elif not index.exists():
        _redirect(index, page, language)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", check_config, priority=900)
    app.connect("builder-inited", copy_widget_scripts)
    app.connect("html-page-context", adjust_page, priority=900)
    app.connect("build-finished", copy_mathjax)
    # before sphinx-external-toc's build-finished writes its own index.html
    app.connect("build-finished", index_at_root, priority=400)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": False}
