"""Fabricated student submissions: a lab's student copy, filled in (or not) like a student would."""

from __future__ import annotations

import copy

import nbformat

from vmkit.grading import assign


def tagged(maker, source: str, *tags: str):
    """A new cell (`maker`: nbformat's new_code_cell, new_markdown_cell, ...) with `tags`."""
    cell = maker(source)
    cell.metadata["tags"] = list(tags)
    return cell


def tags(cell) -> set[str]:
    return set(cell.metadata.get("tags", []))


def student_of(nb) -> nbformat.NotebookNode:
    """The student copy as handed out (`vmkit assign`)."""
    student, _ = assign.student_copy(nb)
    return student


def solution(nb, number: int) -> str:
    """The instructor's solution source of exercise `number`."""
    return next(c.source for c in nb.cells if {f"exercise-{number}", "solution"} <= tags(c))


def solved(nb, **answers: str) -> nbformat.NotebookNode:
    """The student copy with each solution filled in: `exercise_N=source`, else the instructor's."""
    student = student_of(nb)
    for cell in student.cells:
        if "solution" in tags(cell):
            number = int(next(t for t in tags(cell) if t.startswith("exercise-")).split("-")[1])
            cell.source = answers.get(f"exercise_{number}", solution(nb, number))
    return student


def without(nb, number: int, role: str) -> nbformat.NotebookNode:
    """`nb` with exercise `number`'s (visible) `role` cell deleted."""
    out = copy.deepcopy(nb)
    out.cells = [c for c in out.cells if not ({f"exercise-{number}", role} <= tags(c) and "hidden" not in tags(c))]
    return out


def block(nb, number: int) -> list[int]:
    """Indices of exercise `number`'s cells (prompt, solution, check), in order."""
    return [i for i, c in enumerate(nb.cells) if f"exercise-{number}" in tags(c)]
