"""`vmkit assign`: student copies of the labs (no VMs: the real labs are read, a synthetic one runs)."""

from __future__ import annotations

import ast
import copy
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from vmkit.errors import InvalidInput
from vmkit.grading import assign
from vmkit.grading.marks import Exercise, answer_names, read_marks

LABS_DIR = Path(__file__).resolve().parent.parent / "labs"
LABS = sorted(LABS_DIR.glob(assign.LAB_GLOB))


def test_marks_of_every_real_lab():
    for lab in LABS:
        marks = read_marks(nbformat.read(lab, as_version=4), lab.name)
        assert len(marks) >= 3 and [ex.number for ex in marks] == list(range(1, len(marks) + 1)), lab
        assert all(ex.check == ex.solution + 1 and ex.prompt < ex.solution and ex.points >= 1
                   for ex in marks), lab


def test_answer_names_come_from_the_assignment_targets():
    source = "x = 1\nanswer_1, (answer_1_b, y) = 2, (3, 4)\nanswer_1 += 1\nanswer_2: int = 5\ndef f():\n    answer_9 = 0"
    assert answer_names(source) == ["answer_1", "answer_1_b", "answer_2"]
    nested = "with open('f') as f:\n    answer_3 = 1\nif True:\n    pass\nelse:\n    answer_4 = 2\nclass C:\n    answer_8 = 0"
    assert answer_names(nested) == ["answer_3", "answer_4"]
    with pytest.raises(InvalidInput):
        answer_names("answer_1 = (")


@pytest.fixture(scope="module")
def assigned(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    return out, assign.assign(LABS_DIR, out)


def test_assign_writes_a_student_copy_of_every_real_lab(assigned):
    out, written = assigned
    assert [lab.target for lab in written] == [out / lab.name for lab in LABS]
    for lab in LABS:
        teacher = nbformat.read(lab, as_version=4)
        student = nbformat.read(out / lab.name, as_version=4)
        nbformat.validate(student)
        marks = read_marks(teacher, lab.name)
        hidden = {i for ex in marks for i in ex.hidden}
        kept = [i for i in range(len(teacher.cells)) if i not in hidden]
        assert [student.cells[j].get("id") for j in range(len(kept))] == [teacher.cells[i].get("id") for i in kept]
        assert not any("hidden" in c.metadata.get("tags", []) for c in student.cells)
        changed = {ex.prompt for ex in marks} | {ex.solution for ex in marks}
        for j, i in enumerate(kept):
            if i not in changed:
                assert student.cells[j] == teacher.cells[i], (lab.name, i)
        for ex in read_marks(student, lab.name):
            solution = student.cells[ex.solution]
            names = answer_names(teacher.cells[kept[ex.solution]].source)
            assert solution.source == assign.stub(ex.number, names) and names
            assert solution.source.startswith("# 여기에 답을 쓰세요\n") and "NotImplementedError" in solution.source
            assert solution.outputs == [] and solution.execution_count is None
            assert student.cells[ex.prompt].source.split("\n")[0].endswith(f" ({ex.points}점)")


def test_every_real_check_fails_on_the_stub_answers(assigned):
    """Run each stub as the student copy would, then the check's statements in order: an assert fails."""
    out, _ = assigned
    for lab in LABS:
        student = nbformat.read(out / lab.name, as_version=4)
        for ex in read_marks(student, lab.name):
            namespace: dict = {}
            with pytest.raises(NotImplementedError):
                exec(student.cells[ex.solution].source, namespace)
            with pytest.raises(AssertionError):
                for stmt in ast.parse(student.cells[ex.check].source).body:
                    exec(compile(ast.Module([stmt], []), "check", "exec"), namespace)


def _tagged(cell, *tags):
    cell.metadata["tags"] = list(tags)
    return cell


def synthetic_lab() -> nbformat.NotebookNode:
    """A small instructor lab: pure-Python exercises, one with points, one with a hidden check."""
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                               "language": "python"}})
    nb.cells = [
        new_markdown_cell("# 실습 9: 합성 실습"),
        new_code_cell("data = [3, 1, 2]"),
        _tagged(new_markdown_cell("### 연습 1. 정렬\n\n`data`를 정렬해 `answer_1`에 넣으세요."),
                "exercise-1", "points-2"),
        _tagged(new_code_cell("answer_1 = sorted(data)"), "exercise-1", "solution"),
        _tagged(new_code_cell('assert answer_1 == [1, 2, 3], "정렬한 목록이 아닙니다."'), "exercise-1", "check"),
        _tagged(new_code_cell('assert isinstance(answer_1, list), "목록이어야 합니다."'),
                "exercise-1", "check", "hidden"),
        _tagged(new_markdown_cell("### 연습 2. 가장 큰 값과 합\n\n두 값을 구하세요."), "exercise-2"),
        _tagged(new_code_cell("answer_2, answer_2_sum = max(data), sum(data)"), "exercise-2", "solution"),
        _tagged(new_code_cell('assert (answer_2, answer_2_sum) == (3, 6), "값이 다릅니다."'),
                "exercise-2", "check"),
        _tagged(new_markdown_cell("### 연습 3. 제곱\n\n함수를 써도 됩니다."), "exercise-3", "points-3"),
        _tagged(new_code_cell("def square(x):\n    return x * x\n\nanswer_3 = [square(x) for x in data]"),
                "exercise-3", "solution"),
        _tagged(new_code_cell('assert answer_3 == [9, 1, 4], "제곱한 목록이 아닙니다."'), "exercise-3", "check"),
        new_markdown_cell("## 정리"),
    ]
    return nb


def executed(nb) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    NotebookClient(nb, kernel_name="python3", timeout=60, allow_errors=True).execute()
    return nb


def errors(cell) -> list[str]:
    return [out["ename"] for out in cell.get("outputs", []) if out["output_type"] == "error"]


def test_synthetic_lab_instructor_passes_student_fails_and_refilled_passes():
    teacher = synthetic_lab()
    nbformat.validate(teacher)
    marks = read_marks(teacher)
    assert marks[0] == Exercise(1, prompt=2, solution=3, check=4, hidden=(5,), points=2)
    assert [ex.points for ex in marks] == [2, 1, 3]

    ran = executed(teacher)
    assert not any(errors(cell) for cell in ran.cells)

    student, _ = assign.student_copy(teacher)
    student_marks = read_marks(student)
    assert [ex.hidden for ex in student_marks] == [(), (), ()]
    assert student.cells[2].source.startswith("### 연습 1. 정렬 (2점)\n")
    assert student.cells[student_marks[1].solution].source == (
        "# 여기에 답을 쓰세요\nanswer_2 = ...  # 답\nanswer_2_sum = ...  # 답\n"
        'raise NotImplementedError("연습 2의 답을 아직 쓰지 않았습니다.")')
    ran = executed(student)
    for ex in student_marks:
        assert errors(ran.cells[ex.solution]) == ["NotImplementedError"], ex
        assert errors(ran.cells[ex.check]) == ["AssertionError"], ex

    for ex, mine in zip(marks, student_marks):
        student.cells[mine.solution].source = teacher.cells[ex.solution].source
    ran = executed(student)
    assert not any(errors(cell) for cell in ran.cells)


def test_bad_input_is_a_korean_error_and_writes_nothing(tmp_path):
    with pytest.raises(InvalidInput, match="실습 디렉터리"):
        assign.assign(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="실습 노트북"):
        assign.assign(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(InvalidInput, match="안에 있습니다"):
        assign.assign(LABS_DIR, LABS_DIR / "student")
    broken = tmp_path / "broken"
    broken.mkdir()
    nb = synthetic_lab()
    nbformat.write(nb, broken / "01-good.ipynb")
    del nb.cells[4]  # exercise 1 loses its check
    nbformat.write(nb, broken / "02-bad.ipynb")
    with pytest.raises(InvalidInput, match="연습 1"):
        assign.assign(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (LABS_DIR / "student").exists()


def test_cli_assign(tmp_path):
    vmkit = [sys.executable, "-m", "vmkit", "assign"]
    done = subprocess.run([*vmkit, str(LABS_DIR), str(tmp_path / "out"), "--json"],
                          capture_output=True, text=True, check=True)
    assert [Path(lab["target"]).name for lab in json.loads(done.stdout)["labs"]] == [lab.name for lab in LABS]
    done = subprocess.run([*vmkit, str(tmp_path / "missing"), str(tmp_path / "out2")], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("오류: 실습 디렉터리") and "Traceback" not in done.stderr
    assert not (tmp_path / "out2").exists()
