"""The cheat catalogue: submissions that try to get marks without the work, or break the grader.

One `Cheat` per row, each a student of one small class graded by the real grader (real
kernels, local workers). `tests/test_cheats.py` grades the class and checks every row: the
attacked exercises score 0 with the row's Korean message, the student's other exercises
pass, the honest students' grades are what they would be alone, and nothing the notebooks
started is left. `docs/cheats.md` is this file's `markdown()`:

    .venv/bin/python tests/cheats.py > docs/cheats.md
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

sys.path.insert(0, str(Path(__file__).resolve().parent))
from submissions import solved, student_of, tagged  # noqa: E402

from vmkit.grading import variant  # noqa: E402

LAB = "01-cheat.ipynb"
CHOICES = [3, 5, 7, 11, 13]
#: A process the "daemon" row leaves behind; found by this argument after grading.
DAEMON_MARK = "301.25"
#: What exercise 1's hidden check says to a wrong answer.
HIDDEN_1 = "숨은 검사: x의 두 배인 정수 4여야 합니다."


def instructor_lab() -> nbformat.NotebookNode:
    """Three exercises: a number (with a hidden check), a string, and a seeded variant."""
    return new_notebook(cells=[
        new_markdown_cell("# 실습 1: 채점기 시험"),
        new_code_cell('STUDENT_ID = "2026000000"\n\nfrom vmkit.grading import variant\n\n'
                      f'my_n = variant.pick(variant.student_id(STUDENT_ID), "cheat-n", {CHOICES!r})'),
        new_code_cell("x = 2"),
        tagged(new_markdown_cell, "### 연습 1. 두 배\n\n`answer_1`에 x의 두 배를 넣으세요.", "exercise-1"),
        tagged(new_code_cell, "answer_1 = x * 2", "exercise-1", "solution"),
        tagged(new_code_cell, 'assert isinstance(answer_1, (int, float)), "answer_1은 수입니다."',
              "exercise-1", "check"),
        tagged(new_code_cell, 'assert abs(answer_1 - 4) < 1e-9 and isinstance(answer_1, int), '
                             '"x의 두 배인 정수 4여야 합니다."', "exercise-1", "check", "hidden"),
        tagged(new_markdown_cell, "### 연습 2. 인사\n\n`answer_2`에 'ok'를 넣으세요.", "exercise-2"),
        tagged(new_code_cell, 'answer_2 = "ok"', "exercise-2", "solution"),
        tagged(new_code_cell, 'assert answer_2 == "ok", "answer_2는 \'ok\'여야 합니다."', "exercise-2", "check"),
        tagged(new_markdown_cell, "### 연습 3. 내 변형\n\n`answer_3`에 `my_n`의 열 배를 넣으세요.", "exercise-3"),
        tagged(new_code_cell, "answer_3 = my_n * 10", "exercise-3", "solution"),
        tagged(new_code_cell, 'assert isinstance(answer_3, int), "answer_3은 정수입니다."', "exercise-3", "check"),
        tagged(new_code_cell, 'assert answer_3 == my_n * 10, "학번이 정한 my_n의 열 배가 아닙니다."',
              "exercise-3", "check", "hidden"),
        new_markdown_cell("## 정리"),
    ])


def _tags(cell) -> set[str]:
    return set(cell.metadata.get("tags", []))


def _find(nb, number: int, role: str) -> int:
    return next(i for i, c in enumerate(nb.cells)
                if {f"exercise-{number}", role} <= _tags(c) and "hidden" not in _tags(c))


def _answer(nb, number: int, source: str) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    nb.cells[_find(nb, number, "solution")].source = source
    return nb


def _before(nb, source: str) -> nbformat.NotebookNode:
    """`nb` with a cell of `source` before the first exercise."""
    nb = copy.deepcopy(nb)
    first = next(i for i, c in enumerate(nb.cells) if any(t.startswith("exercise-") for t in _tags(c)))
    nb.cells.insert(first, new_code_cell(source))
    return nb


def _after(nb, source: str) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    nb.cells.append(new_code_cell(source))
    return nb


def _retyped(nb, number: int, role: str, maker) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    index = _find(nb, number, role)
    old = nb.cells[index]
    new = maker(old.source)
    new.metadata = copy.deepcopy(old.metadata)
    nb.cells[index] = new
    return nb


def _tagged(nb, number: int, role: str, *tags: str) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    nb.cells[_find(nb, number, role)].metadata["tags"] += list(tags)
    return nb


def _last(nb, number: int) -> nbformat.NotebookNode:
    """`nb` with exercise `number`'s cells moved to the end: what kills the kernel there
    cannot stop the other exercises (the grader matches cells by tags, not by place)."""
    nb = copy.deepcopy(nb)
    mine = [c for c in nb.cells if f"exercise-{number}" in _tags(c)]
    nb.cells = [c for c in nb.cells if f"exercise-{number}" not in _tags(c)] + mine
    return nb


def neighbour_of(student: str) -> tuple[str, int]:
    """Another id whose variant differs from `student`'s, and that variant."""
    mine = variant.pick(student, "cheat-n", CHOICES)
    for n in range(100):
        other = f"2026{n:06d}"
        if variant.pick(other, "cheat-n", CHOICES) != mine:
            return other, variant.pick(other, "cheat-n", CHOICES)
    raise AssertionError("no neighbour with another variant")


@dataclass(frozen=True)
class Cheat:
    """One student of the catalogue's class: what they did, and what grading must show."""

    student: str
    what: str  # the attempt, in English, for docs/cheats.md
    build: Callable[[nbformat.NotebookNode], nbformat.NotebookNode | str]
    attacked: tuple[int, ...]  # exercises that must score 0
    message: str  # a part of each attacked exercise's Korean message
    filename: str = LAB
    timeout: float = 60.0
    note: str = ""  # a part of a note (grades.notes) or of the result's cell errors
    #: (attacked, message) where notebooks do not run as their own user (no root or no class env)
    unsandboxed: tuple[tuple[int, ...], str] | None = None

    def expected(self, isolated: bool) -> tuple[tuple[int, ...], str, str]:
        """(attacked exercises, their message, note) on a grader that does or does not isolate."""
        if self.unsandboxed and not isolated:
            return (*self.unsandboxed, "")
        return self.attacked, self.message, self.note


def _forged_variant(teacher):
    _, theirs = neighbour_of("c17-forged-variant")
    return _answer(solved(teacher), 3, f"my_n = {theirs}  # the neighbour's variant\nanswer_3 = my_n * 10")


def _env_variant(teacher):
    neighbour, _ = neighbour_of("c18-env-variant")
    return _answer(solved(teacher), 3, f'import os\nos.environ["VMKIT_STUDENT_ID"] = "{neighbour}"\n'
                                       f'my_n = variant.pick(variant.student_id(STUDENT_ID), "cheat-n", {CHOICES!r})\n'
                                       "answer_3 = my_n * 10")


STARTUP = ('import os, pathlib\n'
           'for base in (os.environ.get("IPYTHONDIR", ""), os.path.expanduser("~/.ipython")):\n'
           '    if base:\n'
           '        folder = pathlib.Path(base) / "profile_default" / "startup"\n'
           '        folder.mkdir(parents=True, exist_ok=True)\n'
           '        (folder / "00-answers.py").write_text("answer_1 = 4\\nanswer_2 = \'ok\'\\n")')

CHEATS = [
    Cheat("c01-check-markdown", "Exercise 1's check cell turned into Markdown (tags kept) and a wrong answer",
          lambda t: _retyped(_answer(solved(t), 1, "answer_1 = 0"), 1, "check", new_markdown_cell),
          (1,), HIDDEN_1),
    Cheat("c02-check-raw", "Exercise 1's check cell turned into a Raw cell and a wrong answer",
          lambda t: _retyped(_answer(solved(t), 1, "answer_1 = 0"), 1, "check", new_raw_cell),
          (1,), HIDDEN_1),
    Cheat("c03-solution-markdown", "Exercise 1's (unanswered) solution cell turned into Markdown, which "
          "crashed the grader for the whole lab",
          lambda t: _retyped(_answer(solved(t), 1, student_of(t).cells[_find(t, 1, "solution")].source),
                             1, "solution", new_markdown_cell),
          (1,), "NotImplementedError: 연습 1의 답을 아직 쓰지 않았습니다."),
    Cheat("c04-skip-tags", "Solution and check tagged `skip-execution` (nbclient's skip tag)",
          lambda t: _tagged(_tagged(_answer(solved(t), 1, "answer_1 = 0"), 1, "solution", "skip-execution"),
                            1, "check", "skip-execution"),
          (1,), HIDDEN_1),
    Cheat("c05-custom-exc", "`set_custom_exc` swallows every exception, so failing checks print no error",
          lambda t: _before(_answer(solved(t), 1, "answer_1 = 0"),
                            "get_ipython().set_custom_exc((BaseException,), lambda *args, **kwargs: None)"),
          (1,), HIDDEN_1),
    Cheat("c06-shadow-builtin", "Variables `abs` and `isinstance` that make any answer look right",
          lambda t: _before(_answer(solved(t), 1, "answer_1 = 0"),
                            "abs = lambda x: 0\nisinstance = lambda *args: True"),
          (1,), HIDDEN_1),
    Cheat("c07-patch-builtins", "`builtins.abs` replaced for the whole kernel",
          lambda t: _before(_answer(solved(t), 1, "answer_1 = 0"), "import builtins\nbuiltins.abs = lambda x: 0"),
          (1,), HIDDEN_1),
    Cheat("c08-magic-int", "An `int` subclass whose `__eq__` is always True",
          lambda t: _answer(solved(t), 1, "class Four(int):\n    def __eq__(self, other):\n        return True\n"
                                          "    __hash__ = int.__hash__\n\nanswer_1 = Four(0)"),
          (1,), "직접 만든 클래스(class)의 객체를 쓸 수 없습니다"),
    Cheat("c09-magic-str-by-type", "A `str` subclass made with `type()` whose `__eq__` is always True",
          lambda t: _answer(solved(t), 2, 'answer_2 = type("S", (str,), {"__eq__": lambda s, o: True, '
                                          '"__hash__": str.__hash__})("no")'),
          (2,), "직접 만든 클래스(class)의 객체를 쓸 수 없습니다"),
    Cheat("c10-kill-kernel-in-check", "The kernel kills itself as the check starts (an IPython event), "
          "which used to count as a check that ran",
          lambda t: _last(_answer(solved(t), 1, "answer_1 = 0\nimport os\nget_ipython().events.register("
                                                "'pre_run_cell', lambda info: os._exit(0) "
                                                "if 'abs(answer_1 - 4)' in info.raw_cell else None)"), 1),
          (1,), "커널이 죽었습니다(kernel died)"),
    Cheat("c11-hang-in-check", "The check hangs until the notebook's time runs out",
          lambda t: _last(_answer(solved(t), 1, "answer_1 = 0\nimport time\nget_ipython().events.register("
                                                "'pre_run_cell', lambda info: time.sleep(3600) "
                                                "if 'abs(answer_1 - 4)' in info.raw_cell else None)"), 1),
          (1,), "시간 초과(timeout)", timeout=40.0),
    Cheat("c12-solution-tagged-hidden", "The solution cell tagged `hidden` (the grader drops student cells "
          "tagged so)", lambda t: _tagged(solved(t), 1, "solution", "hidden"),
          (1,), "답(solution) 셀이 지워졌습니다."),
    Cheat("c13-check-deleted", "Exercise 1's check cell deleted",
          lambda t: _deleted(_answer(solved(t), 1, "answer_1 = 0"), 1, "check"),
          (1,), "검사(check) 셀이 지워졌습니다"),
    Cheat("c14-second-check", "A second cell tagged as exercise 1's check, asserting nothing",
          lambda t: _second_check(_answer(solved(t), 1, "answer_1 = 0")),
          (1,), "검사(check) 셀이 2개입니다"),
    Cheat("c15-edited-check", "Exercise 1's check edited to `assert True`",
          lambda t: _edited_check(_answer(solved(t), 1, "answer_1 = 0")),
          (1,), HIDDEN_1),
    Cheat("c16-hardcoded-neighbour", "A neighbour's answer to the variant, typed in",
          lambda t: _answer(solved(t), 3, f"answer_3 = {neighbour_of('c16-hardcoded-neighbour')[1] * 10}"),
          (3,), "숨은 검사: 학번이 정한 my_n의 열 배가 아닙니다."),
    Cheat("c17-forged-variant", "`my_n` set to a neighbour's variant in the solution, which answers from it",
          _forged_variant, (3,), "숨은 검사: 학번이 정한 my_n의 열 배가 아닙니다."),
    Cheat("c18-env-variant", "`VMKIT_STUDENT_ID` overwritten inside the notebook to take a neighbour's variant",
          _env_variant, (3,), "숨은 검사: 학번이 정한 my_n의 열 배가 아닙니다."),
    Cheat("c19-startup-file", "Unanswered, but writes IPython startup files that answer for every later "
          "notebook (the next students' and its own next run)",
          lambda t: _before(student_of(t), STARTUP), (1, 2, 3), "NotImplementedError: 연습"),
    Cheat("c20-daemon", "Leaves a process running in a new session (`start_new_session=True`)",
          lambda t: _after(solved(t), "import subprocess\nsubprocess.Popen(['sleep', '" + DAEMON_MARK + "'], "
                                      "start_new_session=True, stdin=subprocess.DEVNULL, "
                                      "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)"),
          (), "", note="채점기가 끝냈습니다"),
    Cheat("c21-kill-worker", "Kills the grading worker process (its kernel's parent)",
          lambda t: _before(solved(t), "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"),
          (), "", note="PermissionError",
          unsandboxed=((1, 2, 3), "채점 작업자(worker)가 이 노트북을 채점하다 2번 모두 끝나 버렸습니다")),
    Cheat("c22-output-flood", "Prints 40 MiB", lambda t: _before(solved(t), 'print("x" * (40 << 20))'),
          (), "", note="출력이 너무 많아"),
    Cheat("c23-fork-bomb", "Starts processes without end (a shell fork loop, in its own session) and carries on",
          lambda t: _after(solved(t), "import subprocess, time\nsubprocess.Popen(['sh', '-c', "
                                      "'while :; do sleep 30 & done'], start_new_session=True, "
                                      "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\ntime.sleep(3)"),
          (), "", note="채점기가 끝냈습니다"),
    Cheat("c24-memory-hog", "Allocates 3 GiB after the exercises",
          lambda t: _after(solved(t), "hog = bytearray(3 << 30)"), (), ""),
    Cheat("c25-formula-message", "A failure message that a spreadsheet would run as a formula",
          lambda t: _answer(solved(t), 2, 'raise AssertionError(\'=HYPERLINK("http://example.com", "x")\')'),
          (2,), '=HYPERLINK("http://example.com", "x")'),
    Cheat("c26-garbage", "Not a notebook at all", lambda t: "this is not JSON", (1, 2, 3),
          "노트북 파일을 읽을 수 없습니다"),
    Cheat("c27-renamed-copy", "Handed in as `01-cheat (1).ipynb` (a browser's copy name)",
          lambda t: solved(t), (), "", filename="01-cheat (1).ipynb", note="이름이 조금 다르지만 01-cheat.ipynb로"),
]


def _deleted(nb, number: int, role: str):
    nb = copy.deepcopy(nb)
    del nb.cells[_find(nb, number, role)]
    return nb


def _second_check(nb):
    nb = copy.deepcopy(nb)
    index = _find(nb, 1, "check")
    extra = new_code_cell("assert True")
    extra.metadata["tags"] = ["exercise-1", "check"]
    nb.cells.insert(index + 1, extra)
    return nb


def _edited_check(nb):
    nb = copy.deepcopy(nb)
    nb.cells[_find(nb, 1, "check")].source = "assert True"
    return nb


#: Students who did nothing wrong, graded in the same class (some after the cheats).
HONEST = {"h-correct": lambda t: solved(t), "h-unfinished": lambda t: student_of(t)}


def write_class(root: Path) -> tuple[Path, Path]:
    """The instructor's lab and every submission (cheats, honest students, a junk folder)."""
    labs, subs = root / "labs", root / "subs"
    labs.mkdir(parents=True)
    teacher = instructor_lab()
    nbformat.write(teacher, labs / LAB)
    for cheat in CHEATS:
        folder = subs / cheat.student
        folder.mkdir(parents=True)
        made = cheat.build(teacher)
        if isinstance(made, str):
            (folder / cheat.filename).write_text(made)
        else:
            nbformat.write(made, folder / cheat.filename)
    for student, build in HONEST.items():
        (subs / student).mkdir(parents=True)
        nbformat.write(build(teacher), subs / student / LAB)
    junk = subs / "__MACOSX" / "c01-check-markdown"
    junk.mkdir(parents=True)
    nbformat.write(solved(teacher), junk / f"._{LAB}")
    return labs, subs


def markdown() -> str:
    """docs/cheats.md: what each row tries, and what the grader makes of it."""
    lines = [
        "<!-- Generated by `.venv/bin/python tests/cheats.py > docs/cheats.md`;",
        "     tests/test_cheats.py fails when this file and tests/cheats.py differ. -->",
        "# Cheat catalogue: what `vmkit grade` makes of submissions that game it",
        "",
        "Each row is one student of a small class (`tests/cheats.py`), graded by the real grader",
        "with real kernels, together with an honest student and an unfinished one.",
        "`tests/test_cheats.py` checks every row: the attacked exercises score 0 with the Korean",
        "message shown, the student's other exercises pass, the honest students' grades are what",
        "they would be alone, and no process a notebook started is left afterwards.",
        "",
        "| # | Attempt | Attacked exercises (score 0) | Message (a part of it) or note |",
        "|---|---|---|---|",
    ]
    for cheat in CHEATS:
        attacked = ", ".join(map(str, cheat.attacked)) or "none (all pass)"
        said = cheat.message or cheat.note or "the notebook's kernel dies after the exercises; nothing else"
        if cheat.unsandboxed:
            attacked += f" (as its own user); {', '.join(map(str, cheat.unsandboxed[0]))} otherwise"
            said += f" (as its own user); otherwise: {cheat.unsandboxed[1]}"
        said = said.replace("|", "\\|")
        lines.append(f"| {cheat.student[1:3]} | {cheat.what} | {attacked} | {said} |")
    lines += [
        "",
        "## What the grader does about them",
        "",
        "- Pass or fail comes from the kernel's execute reply for every graded cell, never from",
        "  the cells' outputs; a cell that did not finish (timeout, dead kernel) fails.",
        "- Graded cells are put back as the instructor made them: code cells, the instructor's",
        "  metadata (so no skip tag), the check's source.",
        "- Before each check a guard (defined by a setup cell that runs before any student code)",
        "  restores the `builtins` module, removes variables that hide a built-in the check uses,",
        "  drops IPython's custom exception handler, and refuses answers of a class the notebook",
        "  made.",
        "- Variant values in checks are computed by the grader from the submission's folder name.",
        "- Each notebook runs in a fresh work dir (HOME, TMPDIR, IPython and Jupyter dirs) and, as",
        "  root, in a cgroup of its own (2 GiB of memory, 2048 tasks); every process left in it is",
        "  killed by pid afterwards. Each notebook has its own worker process, retried once if it",
        "  dies.",
        "",
        "- As root, each kernel starts in a mount namespace where the instructor's labs, the",
        "  submissions and the output are covered by empty unreadable mounts and `/tmp`, `/var/tmp`",
        "  and `/dev/shm` are private. With the class environment installed (`make class-env`) it",
        "  runs as a throwaway unix user with its own rootless Podman and a `/proc` that shows only",
        "  its own processes; the user and its subordinate ids are deleted afterwards. A lab whose",
        "  checks need container limits (lab 04: rootless Podman applies none without systemd)",
        "  keeps a root kernel.",
        "",
        "## Limits",
        "",
        "Without root, or without the class environment, or for a lab that needs container",
        "limits, a notebook runs as the grader's user (a root one can undo the mounts) and can",
        "read what that user reads (`vmkit grade` prints this at the start). Code written",
        "against the guard itself (it is in `vmkit/grading/guard.py`) can undo it inside its own",
        "kernel; as its own user it still reaches nothing outside its sandbox.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(markdown())
