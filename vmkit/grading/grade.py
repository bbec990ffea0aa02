"""Grade a class: find the submissions, run each on an executor, collect the results.

`SUBMISSIONS_DIR/<student>/<lab file name>.ipynb` is graded against the instructor's lab
of the same name (a near name such as `01-… (1).ipynb` or `…-Copy1.ipynb` is matched and
reported; folders such as `__MACOSX/` are skipped). The executor is either local worker
processes (`workers`), a fresh one per notebook so that a notebook that kills its worker
fails alone (retried once), or an existing Dask distributed cluster (`scheduler`), where
each notebook asks for one unit of the worker resource `VM`, so a worker started with
`--resources VM=2` never runs more than two notebooks at once. Both call the same
`run.grade_notebook`. Results already graded (`done`, e.g. from `--resume`) are not run again.
"""

from __future__ import annotations

import os
import re
import secrets
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from multiprocessing.connection import wait
from pathlib import Path

import psutil

from ..errors import InvalidInput, VmkitError
from . import sandbox
from .assign import find_labs
from .prepare import prepare
from .run import DEFAULT_TIMEOUT, Job, NotebookResult, abandon, grade_notebook, new_run_id, results

#: What one lab notebook may need at once (its VMs, containers and kernel), for `safe_workers`.
NOTEBOOK_MEMORY = 1 << 30
HOST_RESERVE = 1 << 30
RESOURCE = "VM"


@dataclass
class Grades:
    """A graded class: one result per (student, lab), and notes on what was skipped."""

    results: list[NotebookResult]
    notes: list[str] = field(default_factory=list)

    @property
    def students(self) -> list[str]:
        return sorted({r.student for r in self.results})

    @property
    def labs(self) -> list[str]:
        return sorted({r.lab for r in self.results})


def safe_workers() -> int:
    """Notebooks to run at once here: one per two cores (the labs measure CPU time), within memory."""
    cores = os.cpu_count() or 1
    by_memory = (psutil.virtual_memory().available - HOST_RESERVE) // NOTEBOOK_MEMORY
    return max(1, min(cores // 2, by_memory))


#: Folders under the submissions that are never students: archive debris, grader output.
NOT_STUDENTS = {"__MACOSX", "feedback", "__pycache__", ".ipynb_checkpoints"}
#: What file managers and browsers append to a copy's name: " (1)", "-Copy1", " copy", "_사본".
COPY_MARK = re.compile(r"(?:\s*\(\d+\)|[-_ ](?:copy|사본)\d*)+$", re.IGNORECASE)


def match_lab(filename: str, labs: list[str]) -> str | None:
    """The lab a handed-in file is: its exact name, or the same name without copy marks and
    case, or the one lab with its two-digit number; None if none or several fit."""
    if filename in labs:
        return filename
    if not filename.lower().endswith(".ipynb"):
        return None
    stem = COPY_MARK.sub("", filename[:-len(".ipynb")]).strip().lower()
    same = [lab for lab in labs if lab[:-len(".ipynb")].lower() == stem]
    if len(same) == 1:
        return same[0]
    number = re.match(r"(\d{2})(?!\d)", stem)
    numbered = [lab for lab in labs if number and lab.startswith(number.group(1))]
    return numbered[0] if len(numbered) == 1 else None


def _handed_in(student: Path, labs: list[str], notes: list[str]) -> dict[str, Path]:
    """{lab: the file graded for it} of one student's folder, with notes on near names."""
    found: dict[str, list[Path]] = {}
    for path in sorted(student.glob("*.ipynb")):
        lab = match_lab(path.name, labs)
        if lab is None:
            notes.append(f"{student.name}/{path.name}: 어느 실습과도 이름이 맞지 않아 채점하지 않았습니다 "
                         f"(실습: {', '.join(labs)}).")
        else:
            found.setdefault(lab, []).append(path)
    chosen = {}
    for lab, paths in found.items():
        exact = [p for p in paths if p.name == lab]
        pick = exact[0] if exact else max(paths, key=lambda p: p.stat().st_mtime)
        chosen[lab] = pick
        if pick.name != lab:
            notes.append(f"{student.name}/{pick.name}: 이름이 조금 다르지만 {lab}로 채점했습니다.")
        for other in paths:
            if other != pick:
                notes.append(f"{student.name}/{other.name}: {lab}는 {pick.name}을 채점했으므로 이 파일은 채점하지 않았습니다.")
    return chosen


def collect(submissions_dir: str | Path, labs_dir: str | Path, timeout: float = DEFAULT_TIMEOUT,
            exclude: list[str | Path] = ()) -> tuple[list[Job], list[str]]:
    """One Job per (student, lab); notes (Korean) on what is not graded or graded under another name.

    `exclude`: folders that are not students even if they sit among them (the grader's output).
    """
    submissions_dir, labs = Path(submissions_dir), {p.name: p for p in find_labs(Path(labs_dir))}
    if not submissions_dir.is_dir():
        raise InvalidInput(f"제출물 디렉터리(directory)가 없습니다: {submissions_dir}",
                           hint="SUBMISSIONS_DIR/<학생>/<실습 파일 이름>.ipynb 꼴로 모으세요.")
    if not timeout or timeout <= 0:
        raise InvalidInput(f"노트북 제한 시간(timeout)은 0보다 커야 합니다: {timeout}")
    skipped = {Path(p).resolve() for p in exclude}
    students, notes = [], []
    for folder in sorted(d for d in submissions_dir.iterdir() if d.is_dir()):
        if folder.name.startswith(".") or folder.name in NOT_STUDENTS or folder.resolve() in skipped:
            if not folder.name.startswith("."):
                notes.append(f"{folder.name}/: 학생의 제출 폴더가 아니라서 건너뛰었습니다.")
            continue
        students.append(folder)
    handed = {student.name: _handed_in(student, sorted(labs), notes) for student in students}
    graded = sorted({lab for files in handed.values() for lab in files})
    if not graded:
        raise InvalidInput(f"{submissions_dir}에 채점할 제출물이 없습니다.",
                           hint="SUBMISSIONS_DIR/<학생>/<실습 파일 이름>.ipynb 꼴이어야 합니다 "
                                f"(실습: {', '.join(sorted(labs))}).")
    instructor = {name: labs[name].read_text() for name in graded}
    hide = tuple(str(Path(p).resolve()) for p in (labs_dir, submissions_dir, *exclude))
    limited = {name: sandbox.needs_limits(text) for name, text in instructor.items()}
    jobs = []
    for student in students:
        for name in graded:
            path = handed[student.name].get(name)
            jobs.append(Job(student.name, name, instructor[name],
                            path.read_text(errors="replace") if path else None, timeout, hide=hide,
                            needs_limits=limited[name]))
    return jobs, notes


def failure(job: Job, message: str) -> NotebookResult:
    """The result of a notebook whose grading itself failed (a worker died, the cluster left)."""
    import nbformat

    instructor = nbformat.reads(job.instructor, as_version=4)
    nb, plans = prepare(instructor, instructor, job.lab)
    return NotebookResult(job.student, job.lab, results(plans, {}, 0, message), problem=message)


def _worker_started() -> None:
    """In each local worker: SIGTERM/SIGHUP become an exception, so a notebook's cleanup runs;
    and a grader that dies, even by SIGKILL, sends its workers SIGTERM."""
    import signal

    from ..host import background, reaper

    global _parent
    _parent = os.getppid()
    reaper.raise_on_termination()
    background.signal_on_parent_death(signal.SIGTERM)


_parent: int | None = None


def _grade_in_worker(job: Job, send) -> None:
    """In a fresh local process: grade one notebook and send back its result."""
    _worker_started()
    try:
        send.send(grade_notebook(job))
    finally:
        send.close()
        if _parent is not None and os.getppid() != _parent:
            os._exit(1)  # orphaned: nobody will read the result


#: A notebook whose worker died is graded again this many times before it fails.
RETRIES = 1


def local(jobs: list[Job], workers: int) -> Iterator[NotebookResult]:
    """Grade on up to `workers` local processes at once, a fresh (spawned) one per notebook.

    A worker that dies (a notebook killed it, or it ran out of memory) costs only its own
    notebook, which is graded once more and then fails with a message. If grading is
    interrupted (Ctrl-C, SIGTERM to `vmkit grade`), each running worker gets SIGTERM: its
    notebook's kernel is shut down and that notebook's VMs and containers are removed.
    """
    context = get_context("spawn")
    queue = deque((job, 0) for job in jobs)
    running: dict = {}  # receiving end of the pipe -> (process, job, retries so far)
    try:
        while queue or running:
            while queue and len(running) < workers:
                job, retries = queue.popleft()
                job = replace(job, run_id=new_run_id())
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=_grade_in_worker, args=(job, send), daemon=False,
                                          name=f"vmkit-grade-{job.student}")
                process.start()
                send.close()
                running[receive] = (process, job, retries)
            for receive in wait(list(running)):
                process, job, retries = running.pop(receive)
                try:
                    result = receive.recv()
                except (EOFError, OSError):
                    result = None  # the worker ended without a result
                finally:
                    receive.close()
                process.join(60)
                if result is None:
                    abandon(job.run_id)  # the worker could not clean up after its notebook
                if result is not None:
                    yield result
                elif retries < RETRIES:
                    queue.append((job, retries + 1))
                else:
                    yield failure(job, f"채점 작업자(worker)가 이 노트북을 채점하다 {retries + 1}번 모두 "
                                       f"끝나 버렸습니다(종료 코드 {process.exitcode}).")
    except BaseException:
        for process, _, _ in running.values():
            if process.is_alive():
                process.terminate()
        for process, job, _ in running.values():
            process.join(60)
            abandon(job.run_id)
        raise


def dask(jobs: list[Job], scheduler: str, connect_timeout: float = 10.0) -> Iterator[NotebookResult]:
    """Grade on an existing Dask distributed cluster; each notebook holds one `VM` resource."""
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise VmkitError("Dask distributed가 설치되어 있지 않습니다.",
                         hint="pip install 'vmkit[grade]' 또는 make setup") from None
    try:
        client = Client(scheduler, timeout=connect_timeout)
    except OSError as exc:
        raise VmkitError(f"Dask 스케줄러(scheduler) {scheduler}에 연결할 수 없습니다: {exc}",
                         hint="dask scheduler가 떠 있는지, 주소가 tcp://HOST:PORT 꼴인지 확인하세요.") from None
    try:
        workers = client.scheduler_info().get("workers", {})
        if not any(info.get("resources", {}).get(RESOURCE, 0) >= 1 for info in workers.values()):
            raise VmkitError(f"{scheduler}에 자원(resource) {RESOURCE}을 가진 워커(worker)가 없습니다.",
                             hint=f"워커를 dask worker {scheduler} --resources {RESOURCE}=1 처럼 시작하세요.")
        batch = secrets.token_hex(4)
        futures = client.map(grade_notebook, jobs, pure=False, retries=RETRIES, resources={RESOURCE: 1},
                             key=[f"vmkit-grade-{batch}-{i}" for i in range(len(jobs))])
        by_key = dict(zip((f.key for f in futures), jobs))
        for future in dask_completed(futures):
            try:
                yield future.result()
            except Exception as exc:
                yield failure(by_key[future.key],
                              f"Dask 워커(worker)에서 오류가 났습니다: {type(exc).__name__}: {exc}")
    finally:
        client.close()


def grade(submissions_dir: str | Path, labs_dir: str | Path = "labs", *, workers: int | None = None,
          scheduler: str | None = None, timeout: float = DEFAULT_TIMEOUT,
          on_result: Callable[[NotebookResult], None] | None = None) -> Grades:
    """Grade every submission; `scheduler` (tcp://HOST:PORT) uses Dask, else `workers` processes."""
    check_executor(workers, scheduler)
    jobs, notes = collect(submissions_dir, labs_dir, timeout)
    return grade_jobs(jobs, notes, workers=workers, scheduler=scheduler, on_result=on_result)


def grade_jobs(jobs: list[Job], notes: list[str] | None = None, *, workers: int | None = None,
               scheduler: str | None = None, on_result: Callable[[NotebookResult], None] | None = None,
               done: list[NotebookResult] = ()) -> Grades:
    """Grade jobs from `collect` (the executor checked with `check_executor`).

    `done`: results of an earlier, interrupted run; their (student, lab) are not graded again.
    `on_result` sees each new result as it lands (the CLI writes the files there).
    """
    finished = {(r.student, r.lab): r for r in done}
    todo = [job for job in jobs if (job.student, job.lab) not in finished]
    found = [finished[(job.student, job.lab)] for job in jobs if (job.student, job.lab) in finished]
    if todo:
        stream = dask(todo, scheduler) if scheduler else local(todo, workers or safe_workers())
        for result in stream:
            found.append(result)
            if on_result:
                on_result(result)
    found.sort(key=lambda r: (r.student, r.lab))
    return Grades(found, list(notes or []))


def check_executor(workers: int | None, scheduler: str | None) -> None:
    """A Korean InvalidInput unless `workers` and `scheduler` make one executor."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InvalidInput(f"워커(worker) 수는 1 이상의 정수여야 합니다: {workers!r}")
    if scheduler is not None and workers is not None:
        raise InvalidInput("--workers와 --scheduler는 함께 쓸 수 없습니다: "
                           "Dask 클러스터에서는 워커의 자원(VM=N)이 동시 실행 수를 정합니다.")
    if scheduler is not None and not str(scheduler).startswith(("tcp://", "tls://", "ucx://", "inproc://")):
        raise InvalidInput(f"Dask 스케줄러 주소는 tcp://HOST:PORT 꼴이어야 합니다: {scheduler!r}")

