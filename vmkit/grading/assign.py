"""Student copies of the labs: solutions become stubs, hidden checks go, points show in headings."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..errors import InvalidInput
from .marks import Exercise, answer_names, read_marks

LAB_GLOB = "[0-9][0-9]-*.ipynb"
PLACEHOLDER = "# 여기에 답을 쓰세요"


@dataclass(frozen=True)
class AssignedLab:
    """One student copy written: where from, where to, and what it holds."""

    source: Path
    target: Path
    exercises: int
    points: int
    hidden_removed: int

    def to_dict(self) -> dict:
        return {"source": str(self.source), "target": str(self.target), "exercises": self.exercises,
                "points": self.points, "hidden_removed": self.hidden_removed}


def stub(number: int, names: list[str]) -> str:
    """What the student sees instead of the solution: the names to assign, and a raise."""
    lines = [PLACEHOLDER, *(f"{name} = ...  # 답" for name in names),
             f'raise NotImplementedError("연습 {number}의 답을 아직 쓰지 않았습니다.")']
    return "\n".join(lines)


def with_points(prompt: str, points: int) -> str:
    """The prompt with `(N점)` appended to its first heading line."""
    lines = prompt.split("\n")
    for i, line in enumerate(lines):
        if line.lstrip().startswith("#"):
            lines[i] = f"{line.rstrip()} ({points}점)"
            return "\n".join(lines)
    raise InvalidInput("연습 문제(prompt)에 제목(heading) 줄이 없어 배점을 적을 수 없습니다.")


def student_copy(nb, name: str = "노트북") -> tuple[nbformat.NotebookNode, list[Exercise]]:
    """The student version of an instructor notebook (a new notebook), and its exercises."""
    exercises = read_marks(nb, name)
    student = copy.deepcopy(nb)
    for ex in exercises:
        student.cells[ex.prompt].source = with_points(nb.cells[ex.prompt].source, ex.points)
        cell = student.cells[ex.solution]
        cell.source = stub(ex.number, answer_names(cell.source))
        cell.outputs, cell.execution_count = [], None
    hidden = {i for ex in exercises for i in ex.hidden}
    student.cells = [cell for i, cell in enumerate(student.cells) if i not in hidden]
    nbformat.validate(student)
    return student, exercises


def find_labs(labs_dir: Path) -> list[Path]:
    """The lab notebooks in `labs_dir` (`NN-*.ipynb`), or a Korean error."""
    if not labs_dir.is_dir():
        raise InvalidInput(f"실습 디렉터리(directory)가 없습니다: {labs_dir}")
    labs = sorted(labs_dir.glob(LAB_GLOB))
    if not labs:
        raise InvalidInput(f"{labs_dir}에 실습 노트북(NN-이름.ipynb)이 없습니다.")
    return labs


def assign(labs_dir: str | Path, out_dir: str | Path) -> list[AssignedLab]:
    """Write the student copy of every lab in `labs_dir` to `out_dir`; nothing is written on error."""
    labs_dir, out_dir = Path(labs_dir).resolve(), Path(out_dir).resolve()
    labs = find_labs(labs_dir)
    if out_dir.is_relative_to(labs_dir):
        raise InvalidInput(f"출력 디렉터리 {out_dir}가 실습 디렉터리 {labs_dir} 안에 있습니다.",
                           hint="강사용 실습과 섞이지 않게 다른 곳을 고르세요 (예: _build/student-labs).")
    made = []
    for lab in labs:
        student, exercises = student_copy(nbformat.read(lab, as_version=4), lab.name)
        made.append((lab, student, exercises))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for lab, student, exercises in made:
        target = out_dir / lab.name
        nbformat.write(student, target)
        written.append(AssignedLab(lab, target, len(exercises), sum(ex.points for ex in exercises),
                                   sum(len(ex.hidden) for ex in exercises)))
    return written
