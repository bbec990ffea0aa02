"""The grader's sandbox seen from inside a graded notebook, a worker killed mid-run, and a run
stopped by SIGTERM then finished with `--resume` (the small lab of `tests/cheats.py`)."""

from __future__ import annotations

import csv
import json
import os
import pwd
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell

import cheats
from submissions import solved
from vmkit.grading import grade, sandbox

ROOT = Path(__file__).resolve().parent.parent
VMKIT = [sys.executable, "-m", "vmkit"]


def _class(root: Path, students: dict[str, nbformat.NotebookNode]) -> tuple[Path, Path]:
    labs, subs = root / "labs", root / "subs"
    labs.mkdir(parents=True)
    nbformat.write(cheats.instructor_lab(), labs / cheats.LAB)
    for student, nb in students.items():
        (subs / student).mkdir(parents=True)
        nbformat.write(nb, subs / student / cheats.LAB)
    return labs, subs


def _probe(labs: Path, subs: Path, mark: str, other: str) -> nbformat.NotebookNode:
    """An honest submission whose extra cells assert what the sandbox must hold, from inside."""
    nb = solved(cheats.instructor_lab())
    nb.cells[2:2] = [
        new_code_cell("import os, subprocess, time\n"
                      f"mine = subprocess.Popen(['sleep', '{mark}'], start_new_session=True)\n"
                      "time.sleep(4)  # the other notebook has started its own by now"),
        new_code_cell(f"for path in ({str(labs)!r}, {str(subs)!r}):\n"
                      "    try:\n"
                      "        os.listdir(path)\n"
                      "        raise AssertionError(f'{path}를 읽을 수 있습니다')\n"
                      "    except (PermissionError, FileNotFoundError):\n"
                      "        pass\n"
                      "assert os.getuid() != 0, '노트북이 root로 돕니다'"),
        new_code_cell(f"for path in ('/etc/vmkit-probe', {str(ROOT / 'probe.txt')!r}, '/var/lib/vmkit-probe'):\n"
                      "    try:\n"
                      "        open(path, 'w').write('x')\n"
                      "        raise AssertionError(f'{path}에 쓸 수 있습니다')\n"
                      "    except PermissionError:\n"
                      "        pass\n"
                      "open('/tmp/probe-private.txt', 'w').write('x')  # its own private /tmp\n"
                      "open(os.path.expanduser('~/left.txt'), 'w').write('x')"),
        new_code_cell("seen = [open(f'/proc/{p}/cmdline').read() for p in os.listdir('/proc') if p.isdigit()]\n"
                      f"assert any({mark!r} in c for c in seen), '자기 프로세스가 보이지 않습니다'\n"
                      f"assert not any({other!r} in c for c in seen), '다른 노트북의 프로세스가 보입니다'"),
    ]
    return nb


def _users() -> list[str]:
    return [entry.pw_name for entry in pwd.getpwall() if entry.pw_name.startswith("vg-")]


def _markers(*marks: str) -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"]) if any(m in (p.info["cmdline"] or []) for m in marks)]


@pytest.fixture
def as_users(monkeypatch):
    """Each graded notebook as its own user, even on cgroup v1 (these notebooks need no limits)."""
    monkeypatch.setenv("VMKIT_GRADE_USER", "1")
    if not sandbox.isolated():
        pytest.skip("needs root and the class environment (make class-env)")


def test_the_sandbox_holds_from_inside_and_nothing_is_left(tmp_path, as_users):
    labs, subs = tmp_path / "labs", tmp_path / "subs"
    marks = ("123.25", "123.5")
    _class(tmp_path, {"p-one": _probe(labs, subs, marks[0], marks[1]),
                      "p-two": _probe(labs, subs, marks[1], marks[0])})
    jobs, notes = grade.collect(subs, labs, timeout=120)
    grades = grade.grade_jobs(jobs, notes, workers=2)
    for result in grades.results:
        # every probe cell passed; the one note is the probe's own `sleep`, killed by the grader
        assert result.problem == "" and len(result.cell_errors) == 1, (result.student, result.cell_errors)
        assert "프로세스 1개를 채점기가 끝냈습니다" in result.cell_errors[0] and "(sleep)" in result.cell_errors[0]
        assert all(ex.passed for ex in result.exercises), result.student
    assert not _markers(*marks), "a notebook's process outlived it"
    assert not _users(), "a throwaway user was left"
    assert not (ROOT / "probe.txt").exists() and not Path("/tmp/probe-private.txt").exists()
    assert not list(sandbox.BASE.glob("vmkit-grade-*")), "a work dir was left"
    for result in grades.results:
        assert not sandbox.Sandbox(Path("/"), result.run_id).cgroup_exists()


def test_a_worker_killed_mid_run_costs_nothing_but_a_retry(tmp_path):
    teacher = cheats.instructor_lab()
    slow = solved(teacher)
    slow.cells.insert(2, new_code_cell("import time\ntime.sleep(3)"))
    labs, subs = _class(tmp_path, {f"s{n}": slow for n in range(4)})
    jobs, notes = grade.collect(subs, labs, timeout=120)
    me = psutil.Process()
    killed: list[int] = []

    def kill_one():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for child in me.children():
                if child.children(recursive=True):  # a worker whose kernel is up
                    child.kill()
                    killed.append(child.pid)
                    return
            time.sleep(0.2)

    thread = threading.Thread(target=kill_one)
    thread.start()
    grades = grade.grade_jobs(jobs, notes, workers=2)
    thread.join()
    assert killed, "no worker was found to kill"
    assert [r.student for r in grades.results] == ["s0", "s1", "s2", "s3"]
    for result in grades.results:
        assert all(ex.passed for ex in result.exercises), (result.student, result.exercises)
    assert not _users()


def _csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_sigterm_then_resume_grades_everyone_exactly_once(tmp_path):
    teacher = cheats.instructor_lab()
    paced = solved(teacher)
    paced.cells.insert(2, new_code_cell("import time\ntime.sleep(2)"))
    labs, subs = _class(tmp_path, {f"r{n}": paced for n in range(5)})
    out = tmp_path / "out" / "grades.csv"
    argv = [*VMKIT, "grade", str(subs), "--labs", str(labs), "--out", str(out), "--workers", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = out.parent / "grades.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if results.exists() and len(json.loads(results.read_text())["results"]) >= 2:
            break
        time.sleep(0.2)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)
    assert first.returncode != 0 and "--resume" in err, err
    done = json.loads(results.read_text())["results"]
    assert 2 <= len(done) < 5
    assert len(_csv(out)) == 3 * len(done), "the grade sheet holds every finished notebook"
    assert not _users()

    second = subprocess.run([*argv, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert f"이미 채점한 노트북 {len(done)}개는 건너뜁니다" in second.stderr
    final = json.loads(results.read_text())["results"]
    assert sorted(r["student"] for r in final) == [f"r{n}" for n in range(5)]
    before = {r["student"]: r["run_id"] for r in done}
    assert all(r["run_id"] == before[r["student"]] for r in final if r["student"] in before), "graded twice"

    again = tmp_path / "again" / "grades.csv"
    whole = subprocess.run([*VMKIT, "grade", str(subs), "--labs", str(labs), "--out", str(again), "--workers", "2"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    assert _csv(out) == _csv(again), "a resumed run writes the same grade sheet as an uninterrupted one"
    canvas = _csv(out.parent / "grades-canvas.csv")
    assert canvas[0]["Student"] == "Points Possible" and canvas[0]["01-cheat"] == "3"
    assert [row["SIS User ID"] for row in canvas[1:]] == [f"r{n}" for n in range(5)]


def test_a_grader_that_cannot_make_cgroups_still_grades(monkeypatch):
    """cgroup v2 refuses controllers to a cgroup that holds processes (EBUSY): the grader then
    grades without limits, says so, and fails no notebook for it."""
    from vmkit.grading import run

    def busy(self, mem_limit, tasks_max):
        raise OSError(16, "Device or resource busy")

    monkeypatch.setattr(sandbox.ChildCgroup, "create", busy)
    sandbox.cgroup_problem.cache_clear()
    try:
        assert not sandbox.enforced() and not sandbox.isolated()
        if os.geteuid() == 0:
            assert "cgroup을 만들 수 없어(OSError: [Errno 16] Device or resource busy)" in sandbox.limitations()[0]
        teacher = cheats.instructor_lab()
        job = run.Job("h-correct", cheats.LAB, nbformat.writes(teacher), nbformat.writes(solved(teacher)), 60)
        result = run.grade_notebook(job)
        assert [ex.passed for ex in result.exercises] == [True, True, True], result.exercises
    finally:
        sandbox.cgroup_problem.cache_clear()
