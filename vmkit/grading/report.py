"""What grading writes: the grade sheet (CSV), the per-student summary, Korean feedback, the
results as JSON (what `--resume` reads back), a Canvas gradebook import, and a table.

Every file is written whole to a temporary name and then renamed, so a run interrupted at
any moment leaves valid files. A CSV cell that a spreadsheet would run as a formula (it
starts with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from ..units import display_width, pad
from .grade import Grades
from .run import NotebookResult

COLUMNS = ["student", "lab", "exercise", "passed", "points", "max_points", "message"]
SUMMARY_COLUMNS = ["student", "total", "max"]
#: Canvas's gradebook import: the identifying columns, then one column per assignment.
CANVAS_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """`value` as a CSV cell no spreadsheet will run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8", newline="")
    os.replace(temporary, path)


def _csv_text(header: list[str], body: list[list]) -> str:
    stream = io.StringIO()
    writer = csv.writer(stream)
    writer.writerow(header)
    writer.writerows([[safe_cell(cell) for cell in row] for row in body])
    return stream.getvalue()


def rows(grades: Grades) -> list[dict]:
    """One row per (student, lab, exercise), in that order."""
    return [{"student": r.student, "lab": r.lab, "exercise": ex.number,
             "passed": "true" if ex.passed else "false", "points": ex.points,
             "max_points": ex.max_points, "message": ex.message}
            for r in grades.results for ex in sorted(r.exercises, key=lambda e: e.number)]


def totals(grades: Grades) -> dict[str, tuple[int, int]]:
    """student -> (points, max points) over every graded lab."""
    found: dict[str, tuple[int, int]] = {}
    for r in grades.results:
        points, most = found.get(r.student, (0, 0))
        found[r.student] = (points + r.points, most + r.max_points)
    return dict(sorted(found.items()))


def write_csv(grades: Grades, path: Path) -> None:
    _write_atomically(path, _csv_text(COLUMNS, [[row[c] for c in COLUMNS] for row in rows(grades)]))


def write_summary(grades: Grades, path: Path) -> None:
    _write_atomically(path, _csv_text(SUMMARY_COLUMNS, [[s, p, m] for s, (p, m) in totals(grades).items()]))


def write_canvas(grades: Grades, path: Path) -> None:
    """A Canvas gradebook import: the student's id as SIS User ID and SIS Login ID, one column
    per lab (a new assignment on import), and the "Points Possible" row."""
    labs = grades.labs
    most = {lab: max(r.max_points for r in grades.results if r.lab == lab) for lab in labs}
    body = [["Points Possible", "", "", "", "", *[most[lab] for lab in labs]]]
    for student in grades.students:
        mine = {r.lab: r.points for r in grades.results if r.student == student}
        body.append(["", "", student, student, "", *[mine.get(lab, 0) for lab in labs]])
    _write_atomically(path, _csv_text(CANVAS_COLUMNS + [lab.removesuffix(".ipynb") for lab in labs], body))


def write_json(grades: Grades, path: Path) -> None:
    """Every result in full, and the notes: for other tools, and for `vmkit grade --resume`."""
    data = {"results": [r.to_dict() for r in grades.results], "notes": grades.notes}
    _write_atomically(path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")


def read_json(path: Path) -> list[NotebookResult]:
    """The results a (possibly interrupted) run wrote with `write_json`; [] if there is none."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    return [NotebookResult.from_dict(item) for item in data.get("results", [])]


def _workloads(counts: dict[str, int]) -> str:
    return f"VM {counts.get('vms', 0)}대, 컨테이너 {counts.get('containers', 0)}개"


def notebook_feedback(r: NotebookResult) -> list[str]:
    """The Markdown section for one lab of one student."""
    lines = [f"## {r.lab} — {r.points} / {r.max_points}점", ""]
    if r.problem:
        lines += [f"**노트북을 끝까지 실행하지 못했습니다.** {r.problem}", ""]
    for ex in sorted(r.exercises, key=lambda e: e.number):
        mark = "통과" if ex.passed else "실패"
        line = f"- [{mark}] {ex.title} ({ex.points}/{ex.max_points}점)"
        lines.append(line + (f": {ex.message}" if not ex.passed else ""))
    if r.cell_errors:
        lines += ["", "연습 밖의 셀에서 난 오류(뒤의 연습이 실패한 까닭일 수 있습니다):",
                  *[f"- {error}" for error in r.cell_errors]]
    if any(r.leftover.values()):
        lines += ["", f"노트북이 끝났을 때 {_workloads(r.leftover)}가 아직 켜져 있어 채점기가 껐습니다. "
                      "`with` 블록을 쓰거나 `stop()`을 불러 직접 끄세요."]
    return lines + [""]


def feedback(student: str, results: list[NotebookResult]) -> str:
    """One student's feedback file (Korean Markdown)."""
    points, most = sum(r.points for r in results), sum(r.max_points for r in results)
    lines = [f"# 채점 결과: {student}", "", f"총점: **{points} / {most}점**", ""]
    for r in sorted(results, key=lambda r: r.lab):
        lines += notebook_feedback(r)
    return "\n".join(lines)


def write_feedback(grades: Grades, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for student in grades.students:
        path = directory / f"{student}.md"
        _write_atomically(path, feedback(student, [r for r in grades.results if r.student == student]))
        written.append(path)
    return written


def table(grades: Grades) -> str:
    """The terminal's final table: one line per student, points per lab and in total."""
    labs = grades.labs
    heads = ["학생", *[lab.split("-")[0] for lab in labs], "총점", "남긴 것"]
    body = []
    for student, (points, most) in totals(grades).items():
        mine = {r.lab: r for r in grades.results if r.student == student}
        left = {"vms": 0, "containers": 0}
        for r in mine.values():
            for key in left:
                left[key] += r.leftover[key]
        body.append([student, *[f"{mine[lab].points}/{mine[lab].max_points}" if lab in mine else "-"
                                for lab in labs],
                     f"{points}/{most}", _workloads(left) if any(left.values()) else ""])
    widths = [max(display_width(row[i]) for row in [heads, *body]) for i in range(len(heads))]
    return "\n".join("  ".join(pad(cell, w) for cell, w in zip(row, widths)).rstrip()
                     for row in [heads, *body])


def paths(out: Path) -> dict[str, Path]:
    """Where `write_all` puts each file, for the grade sheet `out`."""
    out = Path(out)
    return {"grades": out, "summary": out.parent / "grades-summary.csv", "json": out.parent / "grades.json",
            "canvas": out.parent / "grades-canvas.csv", "feedback": out.parent / "feedback"}


def write_all(grades: Grades, out: Path) -> dict[str, Path]:
    """The grade sheet at `out`; `grades-summary.csv`, `grades.json`, `grades-canvas.csv` and
    `feedback/` beside it."""
    where = paths(out)
    where["grades"].parent.mkdir(parents=True, exist_ok=True)
    write_csv(grades, where["grades"])
    write_summary(grades, where["summary"])
    write_json(grades, where["json"])
    write_canvas(grades, where["canvas"])
    write_feedback(grades, where["feedback"])
    return where
