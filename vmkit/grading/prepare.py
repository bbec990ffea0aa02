"""The notebook the grader runs: a student's submission with the instructor's checks put back.

Cells are matched by their exercise marks (tags), never by position, so a student who
moved cells is still graded per exercise. Each check cell the student kept gets the
instructor's source back (an edited check cannot pass by itself), and the instructor's
hidden checks are inserted right after it. A missing solution or check cell fails that
exercise: nothing is put in its place.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

import nbformat

from .marks import Exercise, _number, _role, read_marks, tags

#: Metadata key on graded cells of the prepared notebook: which exercise and role it is.
GRADE_KEY = "vmkit_grade"
#: Metadata key on every cell that came from the submission: its 1-based place there.
ORIGIN_KEY = "vmkit_origin"
HEADING = re.compile(r"^\s*#+\s*(.+?)\s*$", re.M)


@dataclass
class Plan:
    """One exercise as it will be graded: its cells in the prepared notebook, or why not."""

    number: int
    title: str
    points: int
    solution: int | None = None
    checks: list[int] = field(default_factory=list)  # the visible check, then the hidden ones
    missing: str = ""  # Korean reason the exercise fails before running, or ""


def title(ex: Exercise, nb) -> str:
    """The exercise's name: the first heading of its prompt."""
    found = HEADING.search(nb.cells[ex.prompt].source)
    return found.group(1) if found else f"연습 {ex.number}"


def _student_cells(nb) -> dict[tuple[int, str], list[int]]:
    """(exercise number, role) -> indices, read leniently (a submission may be broken)."""
    found: dict[tuple[int, str], list[int]] = {}
    for index, cell in enumerate(nb.cells):
        try:
            number = _number(cell)
        except Exception:
            continue
        if number is not None:
            found.setdefault((number, _role(cell)), []).append(index)
    return found


def origin(cell) -> str:
    """Where the student finds this cell: "셀 N" in their notebook, or the hidden check's name."""
    place = cell.metadata.get(ORIGIN_KEY)
    return f"셀 {place}" if place else "숨은 검사(hidden check) 셀"


def _mark(cell, number: int, role: str) -> None:
    cell.metadata[GRADE_KEY] = {"exercise": number, "role": role}


def prepare(submission, instructor, name: str = "노트북") -> tuple[nbformat.NotebookNode, list[Plan]]:
    """The notebook to run (a new one, outputs cleared) and one Plan per instructor exercise."""
    exercises = read_marks(instructor, name)
    student = _student_cells(submission)
    plans = {ex.number: Plan(ex.number, title(ex, instructor), ex.points) for ex in exercises}
    inserted: dict[int, list] = {}  # submission index -> cells to put after it
    replaced: dict[int, str] = {}
    for ex in exercises:
        plan = plans[ex.number]
        solutions = student.get((ex.number, "solution"), [])
        checks = student.get((ex.number, "check"), [])
        if len(solutions) != 1:
            plan.missing = ("답(solution) 셀이 지워졌습니다." if not solutions
                            else f"답(solution) 셀이 {len(solutions)}개입니다: 하나만 남기세요.")
        elif len(checks) != 1:
            plan.missing = ("검사(check) 셀이 지워졌습니다: 지운 검사는 통과로 치지 않습니다." if not checks
                            else f"검사(check) 셀이 {len(checks)}개입니다: 하나만 남기세요.")
        else:
            replaced[checks[0]] = instructor.cells[ex.check].source
            inserted[checks[0]] = [copy.deepcopy(instructor.cells[i]) for i in ex.hidden]
    cells = []
    for index, original in enumerate(submission.cells):
        if "hidden" in tags(original):
            continue  # only the instructor's hidden checks run (an instructor copy carries them too)
        cell = copy.deepcopy(original)
        cell.metadata[ORIGIN_KEY] = index + 1
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        number, role = None, None
        try:
            number = _number(cell)
        except Exception:
            pass
        if number in plans and not plans[number].missing and cell.cell_type == "code":
            role = _role(cell)
            _mark(cell, number, role)
            if index in replaced:
                cell.source = replaced[index]
        position = len(cells)
        cells.append(cell)
        if role == "solution":
            plans[number].solution = position
        elif role == "check":
            plans[number].checks.append(position)
            for hidden in inserted.get(index, []):
                hidden.outputs, hidden.execution_count = [], None
                _mark(hidden, number, "hidden")
                plans[number].checks.append(len(cells))
                cells.append(hidden)
    prepared = copy.deepcopy(submission)
    prepared.cells = cells
    return prepared, [plans[ex.number] for ex in exercises]
