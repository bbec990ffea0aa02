"""Grading a class for real: lab 01 submissions boot real VMs and containers, graded on two local
workers and on a real Dask cluster (a `dask scheduler` and two `dask worker` processes on
127.0.0.1); and the instructor's five labs pass every exercise (`benchmarks/labs_repeat.py` repeats
that N times in a row, to find flakes).
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from submissions import block, solved, student_of, without
from vmkit.container import engine
from vmkit.host import runs
from vmkit.grading import grade, report

LABS_DIR = Path(__file__).resolve().parent.parent / "labs"
LAB01 = "01-vm-and-container.ipynb"

pytestmark = pytest.mark.timeout(1500)


def _container_cell(nb) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.source.startswith('with vmkit.Container(memory="256M") as box:'))


def class_submissions(root: Path) -> Path:
    """Seven students' lab 01, each a different case the grader must get right."""
    teacher = nbformat.read(LABS_DIR / LAB01, as_version=4)
    correct = solved(teacher)
    cells = block(correct, 3)  # exercise 3 moved ahead of exercise 1: still graded per exercise
    first = block(correct, 1)[0]
    moved = [correct.cells[i] for i in cells]
    rest = [c for i, c in enumerate(correct.cells) if i not in cells]
    correct.cells = rest[:first] + moved + rest[first:]
    exception = solved(teacher)
    index = _container_cell(exception)
    exception.cells[index].source = 'raise RuntimeError("학생 코드에서 난 오류")\n' + exception.cells[index].source
    leaky = solved(teacher)
    leaky.cells.append(new_code_cell('left_vm = vmkit.VM(memory="128M")\nleft_vm.start()\n'
                                     'left_box = vmkit.Container(memory="64M")\nleft_box.start()'))
    found = {
        "correct": correct,
        # twice what the container saw: wrong with or without an applied limit (a throwaway user's
        # rootless Podman applies none)
        "wrong": solved(teacher, exercise_2='answer_2 = 2 * ct_trace.guest["mem_total_bytes"]\n'
                                            "answer_2_survives = False"),
        "unfinished": student_of(teacher),
        "exception": exception,
        "nocheck": without(solved(teacher), 3, "check"),
        "leaky": leaky,
        "copier": solved(teacher, exercise_4="answer_4_prediction = my_memory_mib * answer_1 / 100\n"
                                             "answer_4 = 0.9 * my_memory_mib"),
    }
    subs = root / "subs"
    for student, nb in found.items():
        (subs / student).mkdir(parents=True)
        nbformat.write(nb, subs / student / LAB01)
    return subs


def _rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def _nothing_left(results) -> None:
    """No QEMU and no container of any graded notebook's run is left."""
    client = engine.client()
    try:
        for result in results:
            assert result.run_id and not runs.qemus(result.run_id), result.student
            assert not runs.containers(client, result.run_id), result.student
    finally:
        client.close()


@pytest.fixture(scope="module")
def local_grades(tmp_path_factory, docker_engine, guest_artifacts):
    root = tmp_path_factory.mktemp("class")
    subs = class_submissions(root)
    started = time.monotonic()
    grades = grade.grade(subs, LABS_DIR, workers=2)
    print(f"\n[figures] lab 01: {len(grades.results)} submissions graded by 2 local workers in "
          f"{time.monotonic() - started:.1f} s")
    out = root / "local" / "grades.csv"
    report.write_all(grades, out)
    return subs, grades, out


def test_six_kinds_of_submission_graded_exactly(local_grades):
    _, grades, out = local_grades
    _nothing_left(grades.results)
    got = {(r["student"], int(r["exercise"])): (r["passed"], int(r["points"]), r["message"]) for r in _rows(out)}
    points = {1: 1, 2: 1, 3: 1, 4: 2}
    ok = {n: ("true", p, "") for n, p in points.items()}
    expected = {
        "correct": ok, "leaky": ok,
        "wrong": {**ok, 2: ("false", 0, "숨은 검사: 컨테이너가 보는 MemTotal은 호스트 전체 메모리와 같습니다.")},
        "unfinished": {n: ("false", 0, f"NotImplementedError: 연습 {n}의 답을 아직 쓰지 않았습니다.") for n in points},
        "exception": {**ok, 2: ("false", 0, "NameError: name 'ct_trace' is not defined")},
        "nocheck": {**ok, 3: ("false", 0, "검사(check) 셀이 지워졌습니다: 지운 검사는 통과로 치지 않습니다.")},
    }
    for student, exercises in expected.items():
        for number, value in exercises.items():
            assert got[(student, number)] == value, (student, number)
    copier = got[("copier", 4)]
    assert copier[:2] == ("false", 0) and copier[2].startswith("숨은 검사: 학번이 정한 크기("), copier
    assert all(got[("copier", n)][0] == "true" for n in (1, 2, 3))
    assert len(_rows(out)) == 7 * 4


def test_leftover_vm_and_container_are_counted_and_removed(local_grades):
    _, grades, out = local_grades
    by = {r.student: r for r in grades.results}
    assert by["leaky"].leftover == {"vms": 1, "containers": 1}
    assert all(r.leftover == {"vms": 0, "containers": 0} for r in grades.results if r.student != "leaky")
    feedback = (out.parent / "feedback" / "leaky.md").read_text()
    assert "VM 1대, 컨테이너 1개가 아직 켜져 있어 채점기가 껐습니다" in feedback
    table = report.table(grades)
    assert any(line.startswith("leaky") and line.rstrip().endswith("VM 1대, 컨테이너 1개") for line in table.splitlines())


def test_feedback_names_the_failing_cell_not_a_traceback(local_grades):
    subs, grades, out = local_grades
    by = {r.student: r for r in grades.results}
    cell = next(i for i, c in enumerate(nbformat.read(subs / "exception" / LAB01, as_version=4).cells)
                if c.source.startswith("raise RuntimeError")) + 1
    assert by["exception"].cell_errors[0] == f"셀 {cell}: RuntimeError: 학생 코드에서 난 오류"
    text = (out.parent / "feedback" / "exception.md").read_text()
    assert f"- 셀 {cell}: RuntimeError: 학생 코드에서 난 오류" in text and "Traceback" not in text
    with open(out.parent / "grades-summary.csv", encoding="utf-8") as stream:
        summary = {r["student"]: (r["total"], r["max"]) for r in csv.DictReader(stream)}
    assert summary == {"copier": ("3", "5"), "correct": ("5", "5"), "exception": ("4", "5"), "leaky": ("5", "5"),
                       "nocheck": ("4", "5"), "unfinished": ("0", "5"), "wrong": ("4", "5")}


def _spawn(argv: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_dask_cluster_gives_the_same_grade_sheet(local_grades, tmp_path):
    subs, _, local_out = local_grades
    scheduler_file = tmp_path / "scheduler.json"
    dask = [sys.executable, "-m", "dask"]
    procs = [_spawn([*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(scheduler_file)], tmp_path / "scheduler.log")]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert scheduler_file.exists(), (tmp_path / "scheduler.log").read_text()
        import json

        address = json.loads(scheduler_file.read_text())["address"]
        for n in range(2):
            procs.append(_spawn([*dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                 "--no-nanny", "--no-dashboard", "--resources", "VM=1", "--name", f"w{n}"],
                                tmp_path / f"worker{n}.log"))
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        started = time.monotonic()
        grades = grade.grade(subs, LABS_DIR, scheduler=address)
        print(f"\n[figures] lab 01: {len(grades.results)} submissions graded on a Dask cluster "
              f"(2 workers, VM=1 each) in {time.monotonic() - started:.1f} s")
        out = tmp_path / "dask" / "grades.csv"
        report.write_all(grades, out)
        assert _rows(out) == _rows(local_out)
        assert (out.parent / "grades-summary.csv").read_text() == (local_out.parent / "grades-summary.csv").read_text()
        assert {r.worker for r in grades.results} == {f"{os.uname().nodename}/w{n}" for n in range(2)}
        _nothing_left(grades.results)
    finally:
        _stop(procs)
    assert all(proc.poll() is not None for proc in procs)


def test_instructor_labs_pass_every_exercise(docker_engine, guest_artifacts):
    """The instructor copies graded like a student's, one at a time; benchmarks/labs_repeat.py runs it N times."""
    from benchmarks import labs_repeat

    result = labs_repeat.run(times=1)
    print(f"\n[figures] instructor labs graded once in {result['seconds']:.1f} s: "
          + ", ".join(f"{lab[:2]} {e['seconds'][0]} s" for lab, e in result["per_lab"].items()))
    assert not result["failures"]
    assert all(e["passed_all"] == e["runs"] == 1 for e in result["per_lab"].values())
    _nothing_left(result["results"])
