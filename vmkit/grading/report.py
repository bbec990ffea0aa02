"""What grading writes: the grade sheet (CSV), the per-student summary, Korean feedback, a table."""

from __future__ import annotations

import csv
from pathlib import Path

from ..units import display_width, pad
from .grade import Grades
from .run import NotebookResult

COLUMNS = ["student", "lab", "exercise", "passed", "points", "max_points", "message"]
SUMMARY_COLUMNS = ["student", "total", "max"]


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
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, COLUMNS)
        writer.writeheader()
        writer.writerows(rows(grades))


def write_summary(grades: Grades, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(SUMMARY_COLUMNS)
        for student, (points, most) in totals(grades).items():
            writer.writerow([student, points, most])


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
        path.write_text(feedback(student, [r for r in grades.results if r.student == student]),
                        encoding="utf-8")
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


def write_all(grades: Grades, out: Path) -> dict[str, Path]:
    """The grade sheet at `out`, `grades-summary.csv` and `feedback/` beside it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary, feedback_dir = out.parent / "grades-summary.csv", out.parent / "feedback"
    write_csv(grades, out)
    write_summary(grades, summary)
    write_feedback(grades, feedback_dir)
    return {"grades": out, "summary": summary, "feedback": feedback_dir}
