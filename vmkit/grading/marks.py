"""The exercise marks of a lab notebook, read from its cell tags (README: "Lab notebook conventions").

An exercise N is a markdown prompt tagged `exercise-N` (optionally `points-P`, default 1), a
code cell tagged `exercise-N` + `solution`, the code cell right after it tagged `exercise-N` +
`check`, and any hidden checks: code cells tagged `exercise-N` + `check` + `hidden`.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from ..errors import InvalidInput

EXERCISE_TAG = re.compile(r"exercise-(\d+)$")
POINTS_TAG = re.compile(r"points-(\d+)$")
DEFAULT_POINTS = 1


@dataclass(frozen=True)
class Exercise:
    """One exercise: cell indices into the notebook's `cells`, and its points."""

    number: int
    prompt: int
    solution: int
    check: int
    hidden: tuple[int, ...] = ()
    points: int = DEFAULT_POINTS


def tags(cell) -> set[str]:
    """The cell's tags."""
    return set(cell.get("metadata", {}).get("tags", []))


def _number(cell) -> int | None:
    found = [int(m.group(1)) for t in tags(cell) if (m := EXERCISE_TAG.match(t))]
    if len(found) > 1:
        raise InvalidInput(f"셀 하나에 연습(exercise) 태그가 여럿입니다: {sorted(found)}")
    return found[0] if found else None


def _role(cell) -> str:
    t = tags(cell)
    if "check" in t:
        return "hidden" if "hidden" in t else "check"
    return "solution" if "solution" in t else "prompt"


def _points(cell) -> int:
    found = [int(m.group(1)) for t in tags(cell) if (m := POINTS_TAG.match(t))]
    if len(found) > 1 or (found and found[0] < 1):
        raise InvalidInput(f"배점(points) 태그가 잘못되었습니다: {sorted(tags(cell))}")
    return found[0] if found else DEFAULT_POINTS


def read_marks(nb, name: str = "노트북") -> list[Exercise]:
    """The notebook's exercises, by number; a malformed exercise is a Korean InvalidInput."""
    cells: dict[int, dict[str, list[int]]] = {}
    for index, cell in enumerate(nb.cells):
        number = _number(cell)
        if number is not None:
            cells.setdefault(number, {}).setdefault(_role(cell), []).append(index)
    exercises = []
    for number in sorted(cells):
        roles = cells[number]
        where = f"{name}의 연습 {number}"
        for role in ("prompt", "solution", "check"):
            if len(roles.get(role, [])) != 1:
                raise InvalidInput(f"{where}에는 {role} 셀이 꼭 하나 있어야 합니다 "
                                   f"({len(roles.get(role, []))}개 있음).")
        (prompt,), (solution,), (check,) = roles["prompt"], roles["solution"], roles["check"]
        if nb.cells[prompt].cell_type != "markdown" or any(
                nb.cells[i].cell_type != "code" for i in (solution, check, *roles.get("hidden", []))):
            raise InvalidInput(f"{where}: 문제(prompt)는 markdown 셀, 답과 검사(check)는 code 셀이어야 합니다.")
        if check != solution + 1:
            raise InvalidInput(f"{where}: 검사(check) 셀은 답(solution) 셀 바로 다음에 있어야 합니다.")
        exercises.append(Exercise(number, prompt, solution, check, tuple(roles.get("hidden", [])),
                                  _points(nb.cells[prompt])))
    return exercises


def _statements(body: list[ast.stmt]):
    """Statements in order, into `with`/`if`/`for`/`try` blocks but not into functions or classes."""
    for stmt in body:
        yield stmt
        if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for name in ("body", "orelse", "finalbody"):
                yield from _statements(getattr(stmt, name, []) or [])
            for handler in getattr(stmt, "handlers", []) or []:
                yield from _statements(handler.body)


def answer_names(source: str) -> list[str]:
    """The `answer_…` names a solution assigns (outside functions and classes), in order."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise InvalidInput(f"답(solution) 셀을 파이썬으로 읽을 수 없습니다: {exc}") from None
    names: list[str] = []
    for stmt in _statements(tree.body):
        targets = (stmt.targets if isinstance(stmt, ast.Assign)
                   else [stmt.target] if isinstance(stmt, (ast.AnnAssign, ast.AugAssign)) else [])
        for target in targets:
            for node in ast.walk(target):
                if isinstance(node, ast.Name) and node.id.startswith("answer_") and node.id not in names:
                    names.append(node.id)
    return names
