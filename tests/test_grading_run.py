"""`vmkit grade` on a small lab without VMs: hidden checks, tampering, timeouts, dead kernels, the CLI.

Real kernels run every notebook (nbclient), so these cover the grader's own logic quickly;
tests/test_grading_class.py grades real lab 01 submissions, locally and on a Dask cluster.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from vmkit.errors import InvalidInput
from submissions import solved, student_of, tagged, without
from vmkit.grading import grade, prepare, report, variant

LAB = "01-double.ipynb"


def instructor_lab() -> nbformat.NotebookNode:
    return new_notebook(cells=[
        new_markdown_cell("# 실습 1: 두 배"),
        new_code_cell("x = 2"),
        tagged(new_markdown_cell, "### 연습 1. 두 배\n\n`answer_1`에 x의 두 배를 넣으세요.", "exercise-1"),
        tagged(new_code_cell, "answer_1 = x * 2", "exercise-1", "solution"),
        tagged(new_code_cell, 'assert answer_1 == 4, "x의 두 배는 4입니다."', "exercise-1", "check"),
        tagged(new_code_cell, 'assert isinstance(answer_1, int), "정수여야 합니다."',
              "exercise-1", "check", "hidden"),
        tagged(new_markdown_cell, "### 연습 2. 인사\n\n`answer_2`에 'ok'를 넣으세요.", "exercise-2", "points-3"),
        tagged(new_code_cell, 'answer_2 = "ok"', "exercise-2", "solution"),
        tagged(new_code_cell, 'assert answer_2 == "ok", "answer_2는 \'ok\'여야 합니다."', "exercise-2", "check"),
        new_markdown_cell("## 정리"),
    ])


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Seven students' submissions of the small lab, graded by two local workers."""
    root = tmp_path_factory.mktemp("grading")
    labs, subs = root / "labs", root / "subs"
    labs.mkdir()
    teacher = instructor_lab()
    nbformat.write(teacher, labs / LAB)
    good = solved(teacher)
    moved = copy.deepcopy(good)  # exercise 2's cells moved before exercise 1's: graded all the same
    block = moved.cells[5:8]
    moved.cells = moved.cells[:2] + block + moved.cells[2:5] + moved.cells[8:]
    tampered = solved(teacher, exercise_1="answer_1 = 5")
    for cell in tampered.cells:
        if "check" in cell.metadata.get("tags", []):
            cell.source = "pass  # the student emptied the check"
    copied = solved(teacher, exercise_1="answer_1 = 4.0")  # passes the visible check, not the hidden one
    slow = solved(teacher)
    slow.cells.insert(6, new_code_cell("import time\ntime.sleep(120)"))
    syntax = solved(teacher, exercise_1="answer_1 = (x *")
    dies = solved(teacher)
    dies.cells.insert(6, new_code_cell("import os\nos._exit(3)"))
    submissions = {"good": moved, "tampered": tampered, "copied": copied, "slow": slow, "syntax": syntax,
                   "dies": dies, "nocheck": without(good, 2, "check"), "stub": student_of(teacher)}
    for student, nb in submissions.items():
        (subs / student).mkdir(parents=True)
        nbformat.write(nb, subs / student / LAB)
    (subs / "garbage").mkdir()
    (subs / "garbage" / LAB).write_text("this is not a notebook")
    (subs / "absent").mkdir()
    (subs / "absent" / "99-unknown.ipynb").write_text("{}")
    grades = grade.grade(subs, labs, workers=2, timeout=25)
    out = root / "out" / "grades.csv"
    report.write_all(grades, out)
    return grades, out, {r.student: r for r in grades.results}, (subs, labs)


def _row(results, student):
    return [(ex.number, ex.passed, ex.points, ex.max_points, ex.message) for ex in results[student].exercises]


def test_correct_submission_passes_every_exercise_even_reordered(graded):
    _, _, results, _ = graded
    assert _row(results, "good") == [(1, True, 1, 1, ""), (2, True, 3, 3, "")]
    assert results["good"].problem == "" and results["good"].cell_errors == []


def test_an_emptied_check_is_put_back_and_fails_the_wrong_answer(graded):
    _, _, results, _ = graded
    assert _row(results, "tampered") == [(1, False, 0, 1, "x의 두 배는 4입니다."), (2, True, 3, 3, "")]


def test_hidden_check_runs_though_the_student_never_saw_it(graded):
    _, _, results, _ = graded
    assert _row(results, "copied") == [(1, False, 0, 1, "숨은 검사: 정수여야 합니다."), (2, True, 3, 3, "")]


def test_deleted_check_counts_as_failed(graded):
    _, _, results, _ = graded
    assert _row(results, "nocheck") == [
        (1, True, 1, 1, ""), (2, False, 0, 3, "검사(check) 셀이 지워졌습니다: 지운 검사는 통과로 치지 않습니다.")]


def test_stub_fails_with_its_korean_message(graded):
    _, _, results, _ = graded
    assert _row(results, "stub") == [
        (1, False, 0, 1, "NotImplementedError: 연습 1의 답을 아직 쓰지 않았습니다."),
        (2, False, 0, 3, "NotImplementedError: 연습 2의 답을 아직 쓰지 않았습니다.")]


def test_timeout_says_where_and_fails_what_did_not_run(graded):
    _, _, results, _ = graded
    slow = results["slow"]
    assert slow.problem == "시간 초과(timeout): 셀 7이 노트북 제한 시간 25초 안에 끝나지 않았습니다."
    assert slow.exercises[0].passed and not slow.exercises[1].passed
    assert slow.exercises[1].message == f"답(solution) 셀에 이르기 전에 실행이 멈췄습니다: {slow.problem}"
    assert slow.seconds < 60


def test_syntax_error_and_dead_kernel_are_named(graded):
    _, _, results, _ = graded
    assert results["syntax"].exercises[0].message.startswith("SyntaxError")
    assert results["syntax"].exercises[1].passed
    dies = results["dies"]
    assert dies.problem == "커널이 죽었습니다(kernel died): 셀 7을 실행하던 중이었습니다."
    assert dies.exercises[0].passed and not dies.exercises[1].passed


def test_unreadable_and_missing_submissions(graded):
    grades, _, results, _ = graded
    assert results["garbage"].problem.startswith("노트북 파일을 읽을 수 없습니다")
    assert [ex.passed for ex in results["garbage"].exercises] == [False, False]
    assert results["absent"].problem == "제출물이 없습니다."
    assert {ex.message for ex in results["absent"].exercises} == {"제출하지 않았습니다."}
    assert grades.notes == ["absent/99-unknown.ipynb: 어느 실습과도 이름이 맞지 않아 채점하지 않았습니다 "
                            "(실습: 01-double.ipynb)."]


def test_grade_sheet_summary_and_feedback_files(graded):
    grades, out, _, _ = graded
    with open(out, encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == report.COLUMNS
    assert len(rows) == 2 * len(grades.students)
    assert rows[0] == {"student": "absent", "lab": LAB, "exercise": "1", "passed": "false", "points": "0",
                       "max_points": "1", "message": "제출하지 않았습니다."}
    with open(out.parent / "grades-summary.csv", encoding="utf-8") as stream:
        summary = {r["student"]: (int(r["total"]), int(r["max"])) for r in csv.DictReader(stream)}
    assert summary["good"] == (4, 4) and summary["tampered"] == (3, 4) and summary["stub"] == (0, 4)
    text = (out.parent / "feedback" / "tampered.md").read_text()
    assert "# 채점 결과: tampered" in text and "총점: **3 / 4점**" in text
    assert "- [실패] 연습 1. 두 배 (0/1점): x의 두 배는 4입니다." in text
    assert "Traceback" not in text
    assert "커널이 죽었습니다" in (out.parent / "feedback" / "dies.md").read_text()


def test_prepare_matches_by_tag_and_marks_inserted_hidden_checks():
    teacher = instructor_lab()
    nb, plans = prepare.prepare(solved(teacher), teacher)
    assert [p.number for p in plans] == [1, 2] and [p.points for p in plans] == [1, 3]
    assert plans[0].title == "연습 1. 두 배"
    hidden = nb.cells[plans[0].checks[1]]
    assert hidden.metadata[prepare.GRADE_KEY] == {"exercise": 1, "role": "hidden"}
    assert prepare.origin(hidden) == "숨은 검사(hidden check) 셀"
    assert prepare.origin(nb.cells[plans[0].checks[0]]) == "셀 5"
    again, plans = prepare.prepare(teacher, teacher)  # an instructor copy: its hidden check runs once
    assert sum("hidden" in c.metadata.get("tags", []) for c in again.cells) == 1 and len(plans[0].checks) == 2


def test_variant_is_stable_per_student_and_the_grader_id_wins(monkeypatch):
    choices = list(range(100))
    assert variant.pick("kim", "k", choices) == variant.pick("kim", "k", choices)
    assert len({variant.pick(f"s{i}", "k", choices) for i in range(20)}) > 5
    monkeypatch.delenv(variant.VARIABLE, raising=False)
    assert variant.student_id("2026001") == "2026001"
    with pytest.raises(InvalidInput):
        variant.student_id("  ")
    monkeypatch.setenv(variant.VARIABLE, "lee")
    assert variant.student_id("2026001") == "lee"


@pytest.mark.parametrize("kwargs, text", [
    ({"workers": 0}, "워커(worker) 수는 1 이상"),
    ({"workers": "2"}, "워커(worker) 수는 1 이상"),
    ({"workers": 2, "scheduler": "tcp://127.0.0.1:1"}, "함께 쓸 수 없습니다"),
    ({"scheduler": "127.0.0.1:8786"}, "tcp://HOST:PORT"),
    ({"timeout": 0}, "제한 시간(timeout)"),
])
def test_bad_grading_options_are_korean_errors(tmp_path, kwargs, text):
    (tmp_path / "s" / "kim").mkdir(parents=True)
    nbformat.write(instructor_lab(), tmp_path / "s" / "kim" / LAB)
    (tmp_path / "labs").mkdir()
    nbformat.write(instructor_lab(), tmp_path / "labs" / LAB)
    with pytest.raises(InvalidInput, match=re.escape(text)):
        grade.grade(tmp_path / "s", tmp_path / "labs", **kwargs)


def test_unreachable_scheduler_is_a_korean_error(tmp_path):
    (tmp_path / "s" / "kim").mkdir(parents=True)
    (tmp_path / "labs").mkdir()
    for where in (tmp_path / "s" / "kim", tmp_path / "labs"):
        nbformat.write(instructor_lab(), where / LAB)
    with pytest.raises(Exception, match="Dask 스케줄러\\(scheduler\\) tcp://127.0.0.1:9에 연결할 수 없습니다"):
        grade.grade(tmp_path / "s", tmp_path / "labs", scheduler="tcp://127.0.0.1:9")


def test_cli_writes_the_files_and_prints_a_table(tmp_path):
    (tmp_path / "labs").mkdir()
    teacher = instructor_lab()
    nbformat.write(teacher, tmp_path / "labs" / LAB)
    for student, nb in {"kim": solved(teacher), "lee": student_of(teacher)}.items():
        (tmp_path / "subs" / student).mkdir(parents=True)
        nbformat.write(nb, tmp_path / "subs" / student / LAB)
    out = tmp_path / "result" / "grades.csv"
    done = subprocess.run([sys.executable, "-m", "vmkit", "grade", str(tmp_path / "subs"), "--labs",
                           str(tmp_path / "labs"), "--out", str(out), "--workers", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "채점: 노트북 2개, 로컬 워커(worker) 1개" in done.stderr and "2/2" in done.stderr  # progress bar
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["학생", "01", "총점", "남긴", "것"]
    assert lines[1].split() == ["kim", "4/4", "4/4"] and lines[2].split() == ["lee", "0/4", "0/4"]
    assert out.exists() and (out.parent / "grades-summary.csv").exists()
    assert sorted(p.name for p in (out.parent / "feedback").iterdir()) == ["kim.md", "lee.md"]
    bad = subprocess.run([sys.executable, "-m", "vmkit", "grade", str(tmp_path / "nowhere"), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "제출물 디렉터리(directory)가 없습니다" in bad.stderr
    as_json = subprocess.run([sys.executable, "-m", "vmkit", "grade", str(tmp_path / "subs"), "--labs",
                              str(tmp_path / "labs"), "--out", str(out), "--json"],
                             capture_output=True, text=True, timeout=120)
    data = json.loads(as_json.stdout)
    assert [(r["student"], r["points"], r["max_points"]) for r in data["results"]] == [("kim", 4, 4), ("lee", 0, 4)]


def test_dask_local_cluster_with_two_threads_per_worker_grades_the_same(graded):
    """One worker process running two notebooks at once (threads, resource VM=2) agrees with local grading."""
    from distributed import LocalCluster

    grades, _, _, (subs, labs) = graded
    with LocalCluster(n_workers=1, threads_per_worker=2, resources={"VM": 2}, dashboard_address=None,
                      host="127.0.0.1") as cluster:
        on_dask = grade.grade(subs, labs, scheduler=cluster.scheduler_address, timeout=25)
    strip = [(r.student, r.lab, [(e.number, e.passed, e.message) for e in r.exercises], r.problem)
             for r in grades.results]
    assert [(r.student, r.lab, [(e.number, e.passed, e.message) for e in r.exercises], r.problem)
            for r in on_dask.results] == strip



def _run_of_student(student: str) -> str | None:
    """The run id (VMKIT_RUN) of a QEMU whose kernel grades `student`, once one runs."""
    import psutil

    marker = f"VMKIT_STUDENT_ID={student}".encode()
    for proc in psutil.process_iter(["name"]):
        try:
            if (proc.info["name"] or "").startswith("qemu-system"):
                with open(f"/proc/{proc.pid}/environ", "rb") as stream:
                    env = stream.read().split(b"\0")
                if marker in env:
                    return next(v.split(b"=", 1)[1].decode() for v in env if v.startswith(b"VMKIT_RUN="))
        except (OSError, psutil.Error, StopIteration):
            pass
    return None


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGKILL"])
def test_killing_vmkit_grade_stops_the_running_notebook_and_its_workloads(tmp_path, docker_engine,
                                                                          guest_artifacts, signum):
    """SIGTERM: the grader SIGTERMs its workers. SIGKILL: the workers get SIGTERM as their parent dies."""
    import secrets
    import signal
    import time

    from vmkit.container import engine
    from vmkit.host import runs

    student = f"sigterm-{secrets.token_hex(4)}"
    teacher = instructor_lab()
    nb = solved(teacher)
    nb.cells.insert(2, new_code_cell('import time, vmkit\nbox = vmkit.Container(memory="64M")\nbox.start()\n'
                                     'vm = vmkit.VM(memory="128M")\nvm.start()\ntime.sleep(300)'))
    (tmp_path / "labs").mkdir()
    nbformat.write(teacher, tmp_path / "labs" / LAB)
    (tmp_path / "subs" / student).mkdir(parents=True)
    nbformat.write(nb, tmp_path / "subs" / student / LAB)
    # as root with the grader's engine, where this test finds the notebook's container
    cli = subprocess.Popen([sys.executable, "-m", "vmkit", "grade", str(tmp_path / "subs"), "--labs",
                            str(tmp_path / "labs"), "--out", str(tmp_path / "out" / "grades.csv"), "--workers", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "VMKIT_GRADE_USER": "0"})
    client = engine.client()
    try:
        deadline, run_id = time.monotonic() + 120, None
        while time.monotonic() < deadline and not (run_id and runs.containers(client, run_id, running_only=True)):
            assert cli.poll() is None, cli.communicate()[1]
            run_id = _run_of_student(student)
            time.sleep(0.2)
        assert run_id and runs.qemus(run_id) and runs.containers(client, run_id)  # the notebook's VM and container
        cli.send_signal(getattr(signal, signum))
        _, stderr = cli.communicate(timeout=90)
        if signum == "SIGTERM":
            assert cli.returncode == 128 + signal.SIGTERM, stderr
            assert "중단했습니다 (SIGTERM)" in stderr
        else:
            assert cli.returncode == -signal.SIGKILL
        deadline = time.monotonic() + 60  # SIGKILL: the orphaned worker cleans up on its own
        while time.monotonic() < deadline and (runs.qemus(run_id) or runs.containers(client, run_id)):
            time.sleep(0.2)
        assert not runs.qemus(run_id) and not runs.containers(client, run_id)
        assert not _grading_workers(cli.pid)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        client.close()


def _grading_workers(parent: int) -> list[int]:
    """Worker processes a grader with pid `parent` spawned that are still alive (orphans included)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "multiprocessing" in cmd and "spawn_main" in cmd:
            try:
                env = open(f"/proc/{proc.pid}/environ", "rb").read()
            except OSError:
                continue
            if proc.ppid() in (parent, 1) and b"VMKIT_RUN=" in env:
                found.append(proc.pid)
    return found
