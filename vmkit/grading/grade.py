"""Grade a class: find the submissions, run each on an executor, collect the results.

`SUBMISSIONS_DIR/<student>/<lab file name>.ipynb` is graded against the instructor's lab
of the same name. The executor is either local worker processes (`workers`) or an
existing Dask distributed cluster (`scheduler`), where each notebook asks for one unit
of the worker resource `VM`, so a worker started with `--resources VM=2` never runs more
than two notebooks at once. Both call the same `run.grade_notebook`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import psutil

from ..errors import InvalidInput, VmkitError
from .assign import find_labs
from .prepare import prepare
from .run import DEFAULT_TIMEOUT, Job, NotebookResult, grade_notebook, results

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


def collect(submissions_dir: str | Path, labs_dir: str | Path,
            timeout: float = DEFAULT_TIMEOUT) -> tuple[list[Job], list[str]]:
    """One Job per (student, handed-in lab); notes (Korean) on files that are not graded."""
    submissions_dir, labs = Path(submissions_dir), {p.name: p for p in find_labs(Path(labs_dir))}
    if not submissions_dir.is_dir():
        raise InvalidInput(f"제출물 디렉터리(directory)가 없습니다: {submissions_dir}",
                           hint="SUBMISSIONS_DIR/<학생>/<실습 파일 이름>.ipynb 꼴로 모으세요.")
    if not timeout or timeout <= 0:
        raise InvalidInput(f"노트북 제한 시간(timeout)은 0보다 커야 합니다: {timeout}")
    students = sorted(d for d in submissions_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    handed = {nb.name for s in students for nb in s.glob("*.ipynb")}
    notes = [f"{name}: 같은 이름의 강사용 실습이 없어 채점하지 않습니다." for name in sorted(handed - labs.keys())]
    graded = sorted(handed & labs.keys())
    if not graded:
        raise InvalidInput(f"{submissions_dir}에 채점할 제출물이 없습니다.",
                           hint="SUBMISSIONS_DIR/<학생>/<실습 파일 이름>.ipynb 꼴이어야 합니다 "
                                f"(실습: {', '.join(sorted(labs))}).")
    instructor = {name: labs[name].read_text() for name in graded}
    jobs = []
    for student in students:
        for name in graded:
            path = student / name
            jobs.append(Job(student.name, name, instructor[name],
                            path.read_text(errors="replace") if path.is_file() else None, timeout))
    return jobs, notes


def failure(job: Job, message: str) -> NotebookResult:
    """The result of a notebook whose grading itself failed (a worker died, the cluster left)."""
    import nbformat

    instructor = nbformat.reads(job.instructor, as_version=4)
    nb, plans = prepare(instructor, instructor, job.lab)
    return NotebookResult(job.student, job.lab, results(nb, plans, 0, message), problem=message)


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


def _grade_in_worker(job: Job) -> NotebookResult:
    """`grade_notebook` in a local worker; a worker whose grader died ends once it has cleaned up."""
    try:
        return grade_notebook(job)
    finally:
        if _parent is not None and os.getppid() != _parent:
            os._exit(1)  # orphaned: nobody will read the result or send another job


def local(jobs: list[Job], workers: int) -> Iterator[NotebookResult]:
    """Grade on `workers` fresh local processes (spawned: no state shared with this one).

    If grading is interrupted (Ctrl-C, SIGTERM to `vmkit grade`), queued notebooks are
    cancelled and each worker gets SIGTERM: its running notebook's kernel is shut down and
    that notebook's VMs and containers are removed before the worker ends.
    """
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                               initializer=_worker_started)
    try:
        futures = {pool.submit(_grade_in_worker, job): job for job in jobs}
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:
                yield failure(futures[future], f"채점 작업자(worker)에서 오류가 났습니다: {type(exc).__name__}: {exc}")
    except BaseException:
        processes = list((pool._processes or {}).values())  # no public way to reach them
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(60)
        raise
    finally:
        pool.shutdown(wait=True)


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
        futures = client.map(grade_notebook, jobs, pure=False, retries=0, resources={RESOURCE: 1},
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
               scheduler: str | None = None,
               on_result: Callable[[NotebookResult], None] | None = None) -> Grades:
    """Grade jobs from `collect` (the executor checked with `check_executor`)."""
    stream = dask(jobs, scheduler) if scheduler else local(jobs, workers or safe_workers())
    found = []
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

