"""The book's two editions: the student edition (the default) and the instructor edition.

    make book                       # student edition: no solutions, no hidden checks
    make book EDITION=instructor    # instructor edition: the labs as the instructor has them

The labs in `labs/` are the instructor's: each exercise has a solution cell and may have hidden
checks (`vmkit.grading.marks`). Every lab still runs whole while the book builds (the figures
the chapters quote come from it), so the student edition does not change what runs, only what
is published:

- each solution cell and hidden check gets MyST-NB's `remove-cell` tag as the notebook is read
  (Sphinx's `source-read`): it runs, but its source and outputs are not in the page, the
  search index, the single-page HTML or the PDF;
- the notebook a reader downloads from the page (`_sources/labs/*.ipynb`) is the student copy
  that `vmkit assign` hands out (solution stubs, hidden checks gone), written after the build.

The edition comes from $VMKIT_EDITION (`student` unless set); anything else is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

EDITIONS = ("student", "instructor")
DEFAULT = "student"
#: Cell tags whose cells the student edition does not publish (see `vmkit.grading.marks`).
WITHHELD = ("solution", "hidden")
LAB_PREFIX = "labs/"


class EditionError(ValueError):
    """An edition the book cannot build (Korean message)."""


def edition(env=os.environ) -> str:
    """The edition to build, from VMKIT_EDITION, checked."""
    name = env.get("VMKIT_EDITION", "").strip() or DEFAULT
    if name not in EDITIONS:
        raise EditionError(f"판(edition) {name!r}은 만들 수 없습니다: VMKIT_EDITION은 "
                           f"{' 또는 '.join(EDITIONS)}이어야 합니다 (기본값 {DEFAULT}).")
    return name


def withheld(cell: dict) -> bool:
    """Whether the student edition leaves this cell out of what it publishes."""
    tags = cell.get("metadata", {}).get("tags", [])
    return cell.get("cell_type") == "code" and any(tag in tags for tag in WITHHELD)


def hide_withheld(text: str) -> str:
    """The notebook `text` with `remove-cell` on every withheld cell (JSON in, JSON out)."""
    notebook = json.loads(text)
    for cell in notebook["cells"]:
        if withheld(cell):
            tags = cell.setdefault("metadata", {}).setdefault("tags", [])
            if "remove-cell" not in tags:
                tags.append("remove-cell")
    return json.dumps(notebook, ensure_ascii=False, indent=1)


def _source_read(app, docname: str, source: list[str]) -> None:
    if app.config.vmkit_edition == "student" and docname.startswith(LAB_PREFIX) \
            and str(app.env.doc2path(docname)).endswith(".ipynb"):
        source[0] = hide_withheld(source[0])


def publish_student_copies(html_dir: Path, labs_dir: Path) -> list[Path]:
    """Overwrite the downloadable lab notebooks under `html_dir/_sources/labs/` with the student
    copies (`vmkit.grading.assign.student_copy`); returns the files written."""
    import nbformat

    from vmkit.grading.assign import student_copy

    written = []
    for target in sorted((html_dir / "_sources" / "labs").glob("*.ipynb")):
        lab = labs_dir / target.name
        student, _ = student_copy(nbformat.read(lab, as_version=4), lab.name)
        nbformat.write(student, target)
        written.append(target)
    return written


def _build_finished(app, exception) -> None:
    if exception is None and app.config.vmkit_edition == "student" and app.builder.format == "html":
        publish_student_copies(Path(app.outdir), Path(app.srcdir) / "labs")


def setup(app):
    app.add_config_value("vmkit_edition", edition(), "env")
    app.connect("source-read", _source_read)
    app.connect("build-finished", _build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
