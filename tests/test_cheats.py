"""The cheat catalogue (`tests/cheats.py`), graded by the real grader: every attempt fails
where it attacks and nowhere else, honest students keep their grades, nothing survives."""

from __future__ import annotations

import csv
import dataclasses
import time
from pathlib import Path

import psutil
import pytest

import cheats
from vmkit.grading import grade, report, sandbox

ROOT = Path(__file__).resolve().parent.parent


def _isolated() -> bool:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VMKIT_GRADE_USER", "1")
        return sandbox.isolated()


def _daemons() -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [])[-1:] == [cheats.DAEMON_MARK]]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    # every notebook as its own throwaway user where the grader can make one (root and the
    # class environment), even on cgroup v1: no row needs a container limit
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VMKIT_GRADE_USER", "1")
        yield _grade_class(tmp_path_factory)


def _grade_class(tmp_path_factory):
    root = tmp_path_factory.mktemp("cheats")
    labs, subs = cheats.write_class(root)
    jobs, notes = grade.collect(subs, labs, timeout=60)
    timeouts = {c.student: c.timeout for c in cheats.CHEATS}
    jobs = [dataclasses.replace(job, timeout=timeouts.get(job.student, job.timeout)) for job in jobs]
    started = time.monotonic()
    grades = grade.grade_jobs(jobs, notes, workers=2)
    print(f"\n[figures] cheat catalogue: {len(jobs)} notebooks graded by 2 local workers in "
          f"{time.monotonic() - started:.1f} s")
    out = root / "out" / "grades.csv"
    report.write_all(grades, out)
    return grades, {r.student: r for r in grades.results}, out, (labs, subs)


def test_the_docs_are_the_catalogue():
    assert (ROOT / "docs" / "cheats.md").read_text() == cheats.markdown(), \
        "regenerate: .venv/bin/python tests/cheats.py > docs/cheats.md"


def test_the_catalogue_has_twenty_rows_or_more():
    assert len(cheats.CHEATS) >= 20 and len({c.student for c in cheats.CHEATS}) == len(cheats.CHEATS)


@pytest.mark.parametrize("cheat", cheats.CHEATS, ids=lambda c: c.student)
def test_each_attempt_fails_where_it_attacks_and_nowhere_else(graded, cheat):
    _, by, _, _ = graded
    result = by[cheat.student]
    attacked, message, note = cheat.expected(_isolated())
    for ex in result.exercises:
        if ex.number in attacked:
            assert not ex.passed and ex.points == 0, (ex.number, ex.message)
            assert message in ex.message, (ex.number, ex.message)
        else:
            assert ex.passed, (ex.number, ex.message)
    if note:
        said = result.cell_errors + graded[0].notes
        assert any(note in line for line in said), said


def test_honest_students_are_graded_as_alone(graded):
    grades, by, _, (labs, subs) = graded
    assert [ex.passed for ex in by["h-correct"].exercises] == [True, True, True]
    assert [ex.passed for ex in by["h-unfinished"].exercises] == [False, False, False]
    # graded once more after every cheat has run: the startup files did not follow it
    jobs, _ = grade.collect(subs, labs, timeout=60)
    again = grade.grade_jobs([j for j in jobs if j.student == "h-unfinished"], workers=1)
    assert [ex.passed for ex in again.results[0].exercises] == [False, False, False]


def test_junk_folders_and_copies_are_reported(graded):
    grades, by, _, _ = graded
    assert "__MACOSX" not in by
    assert "__MACOSX/: 학생의 제출 폴더가 아니라서 건너뛰었습니다." in grades.notes


def test_a_formula_never_reaches_a_spreadsheet_raw(graded):
    _, _, out, _ = graded
    with open(out, encoding="utf-8") as stream:
        messages = [row["message"] for row in csv.DictReader(stream)]
    assert "'=HYPERLINK(\"http://example.com\", \"x\")" in messages
    assert not any(m.startswith(("=", "+", "-", "@")) for m in messages)


def test_nothing_any_notebook_started_is_left(graded):
    grades, by, _, _ = graded
    assert not _daemons(), "the daemon survived grading"
    if sandbox.enforced():
        assert any("채점기가 끝냈습니다" in line for line in by["c20-daemon"].cell_errors)
        for result in (r for r in grades.results if r.run_id):
            assert not sandbox.Sandbox(Path("/"), result.run_id).cgroup_exists(), result.student
    assert not list(Path("/tmp").glob("vmkit-grade-grade-*"))
