"""The notebook the grader runs: a student's submission with the instructor's checks put back.

Cells are matched by their exercise marks (tags), never by position, so a student who
moved cells is still graded per exercise. Every graded cell is put back as the instructor
wrote it: a code cell (whatever type the student turned it into) with the instructor's
metadata (no skip tags of the student's), the check with the instructor's source (an edited
check cannot pass by itself), the solution with the student's. The instructor's hidden
checks are inserted right after the check. Each check, visible or hidden, starts by setting
the student's variant values as the grader computed them from the submission's name, so a
notebook cannot grade itself against a neighbour's variant. A missing solution or check
cell fails that exercise: nothing is put in its place.
"""

from __future__ import annotations

import ast
import copy
import re
from dataclasses import dataclass, field

import nbformat

from . import guard, variant
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
        if "hidden" in tags(cell):
            continue  # never run from a submission (see prepare)
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
    if place:
        return f"셀 {place}"
    return "채점기의 준비 셀" if cell.metadata.get(GRADE_KEY, {}).get("role") == "setup" else "숨은 검사(hidden check) 셀"


def _mark(cell, number: int, role: str) -> None:
    cell.metadata[GRADE_KEY] = {"exercise": number, "role": role}


def _graded_cell(student_cell, instructor_cell, source: str, place: int):
    """A graded cell as the instructor made it: code, the instructor's metadata, `source`."""
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata = copy.deepcopy(instructor_cell.metadata)
    cell.metadata[ORIGIN_KEY] = place
    cell.pop("id", None)
    return cell


def variant_statements(instructor, student: str | None) -> list[tuple[set[str], set[str], str]]:
    """The `my_…` assignments of the instructor's variant cells, with the grader's own picks:
    (names assigned, names read, source line) each.

    A variant cell is a code cell that calls `variant.pick(variant.student_id(STUDENT_ID),
    KEY, CHOICES)`; each of its top-level assignments to a `my_…` name is kept, every such
    pick replaced by the value the grader computes for `student` (KEY and CHOICES must be
    literals). [] without a student.
    """
    if not student:
        return []
    found = []
    for cell in instructor.cells:
        if cell.cell_type != "code" or "variant.pick(" not in cell.source:
            continue
        for stmt in ast.parse(cell.source).body:
            names = [t.id for t in getattr(stmt, "targets", []) if isinstance(t, ast.Name)]
            if not isinstance(stmt, ast.Assign) or not names or not all(n.startswith("my_") for n in names):
                continue
            stmt = _PickToLiteral(student).visit(stmt)
            found.append((set(names), _reads(stmt.value), ast.unparse(stmt)))
    return found


def _reads(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def variant_source(statements: list[tuple[set[str], set[str], str]], check_source: str) -> str:
    """The variant assignments `check_source` needs (and those they need), in order; "" if none."""
    try:
        wanted = _reads(ast.parse(check_source))
    except SyntaxError:
        wanted = set()
    chosen: set[int] = set()
    for _ in statements:  # to a fixed point: a chosen statement may read another's name
        for i, (targets, reads, _line) in enumerate(statements):
            if i not in chosen and targets & wanted:
                chosen.add(i)
                wanted |= reads
    if not chosen:
        return ""
    lines = [line for i, (_, _, line) in enumerate(statements) if i in chosen]
    return "# 채점기가 제출 이름으로 정한 변형(variant)\n" + "\n".join(lines) + "\n"


class _PickToLiteral(ast.NodeTransformer):
    """`variant.pick(<anything>, "key", [choices])` -> the grader's pick for the student."""

    def __init__(self, student: str):
        self.student = student

    def visit_Call(self, node: ast.Call):
        node = self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "pick" and len(node.args) == 3:
            key, choices = ast.literal_eval(node.args[1]), ast.literal_eval(node.args[2])
            return ast.Constant(variant.pick(self.student, key, choices))
        return node


def prepare(submission, instructor, name: str = "노트북",
            student: str | None = None) -> tuple[nbformat.NotebookNode, list[Plan]]:
    """The notebook to run (a new one, outputs cleared) and one Plan per instructor exercise.

    `student` (the submission's name) fixes the variant values every check starts with.
    """
    exercises = read_marks(instructor, name)
    by_number = {ex.number: ex for ex in exercises}
    guard_name = guard.new_name()
    statements = variant_statements(instructor, student)

    def checked(source: str, number: int) -> str:
        """A check's source as it runs: the guard, the grader's variant values, the asserts."""
        variants = variant_source(statements, source)
        return guard.call_source(guard_name, variants + source, number) + variants + source

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
            replaced[checks[0]] = checked(instructor.cells[ex.check].source, ex.number)
            inserted[checks[0]] = [copy.deepcopy(instructor.cells[i]) for i in ex.hidden]
    setup = nbformat.v4.new_code_cell(guard.setup_source(guard_name))
    setup.pop("id", None)
    _mark(setup, 0, "setup")
    cells = [setup]
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
        if number in plans and not plans[number].missing and _role(cell) in ("solution", "check"):
            role = _role(cell)
            ex = by_number[number]
            theirs = cell.source if isinstance(cell.source, str) else "".join(cell.source)
            cell = _graded_cell(cell, instructor.cells[ex.solution if role == "solution" else ex.check],
                                replaced.get(index, theirs), index + 1)
            _mark(cell, number, role)
        position = len(cells)
        cells.append(cell)
        if role == "solution":
            plans[number].solution = position
        elif role == "check":
            plans[number].checks.append(position)
            for hidden in inserted.get(index, []):
                hidden.outputs, hidden.execution_count = [], None
                hidden.source = checked(hidden.source, number)
                _mark(hidden, number, "hidden")
                plans[number].checks.append(len(cells))
                cells.append(hidden)
    for plan in plans.values():
        if not plan.missing and (plan.solution is None or not plan.checks):
            plan.missing = "답 셀이나 검사 셀을 실행할 수 없는 꼴로 바꾸었습니다: 실행되지 않은 검사는 통과로 치지 않습니다."
    prepared = copy.deepcopy(submission)
    prepared.cells = cells
    return prepared, [plans[ex.number] for ex in exercises]
