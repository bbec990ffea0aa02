"""Grade one student's notebook: run it in its own kernel, read each exercise's result, clean up.

`grade_notebook(job)` is what every executor calls (a local worker process or a Dask
worker): it takes notebooks as text, so a remote worker needs no shared file system,
and returns plain data. Each notebook gets its own temp dir (the kernel's cwd and
TMPDIR), its own run id (`VMKIT_RUN`, so every VM and container it starts is
recognisable), the student's id for seeded variants, and a time limit. What the notebook
left running when it finished is counted, then removed before the function returns.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, field

import nbformat

from ..host import runs
from . import variant
from .prepare import Plan, origin, prepare

#: One notebook's whole run, in seconds, unless the caller says otherwise.
DEFAULT_TIMEOUT = 900.0
MESSAGE_LIMIT = 300


@dataclass(frozen=True)
class Job:
    """One (student, lab) to grade; notebooks as JSON text. `submission` None: not handed in."""

    student: str
    lab: str
    instructor: str
    submission: str | None
    timeout: float = DEFAULT_TIMEOUT
    kernel: str = "python3"


@dataclass
class ExerciseResult:
    number: int
    title: str
    passed: bool
    points: int
    max_points: int
    message: str = ""


@dataclass
class NotebookResult:
    """What grading one notebook found; `problem` says why it could not run to the end."""

    student: str
    lab: str
    exercises: list[ExerciseResult]
    problem: str = ""
    cell_errors: list[str] = field(default_factory=list)  # errors outside the exercises
    left_running: dict[str, int] = field(default_factory=lambda: {"vms": 0, "containers": 0})
    cleaned: dict[str, int] = field(default_factory=lambda: {"vms": 0, "containers": 0})
    seconds: float = 0.0
    worker: str = ""
    run_id: str = ""  # the VMKIT_RUN its kernel had: how its VMs and containers are found

    @property
    def points(self) -> int:
        return sum(ex.points for ex in self.exercises)

    @property
    def max_points(self) -> int:
        return sum(ex.max_points for ex in self.exercises)

    @property
    def leftover(self) -> dict[str, int]:
        """VMs and containers the notebook left: running at its end, or removed by the grader."""
        return {key: max(self.left_running.get(key, 0), self.cleaned.get(key, 0))
                for key in ("vms", "containers")}

    def to_dict(self) -> dict:
        return {**asdict(self), "points": self.points, "max_points": self.max_points}


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT - 1] + "…"


def error_of(cell) -> str | None:
    """The cell's error as a student should read it (the assertion's own message), or None."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            name, value = output.get("ename", "오류"), output.get("evalue", "")
            if name == "AssertionError":
                return _short(value) if value else "검사의 assert가 통과하지 못했습니다 (AssertionError)."
            return _short(f"{name}: {value}" if value else name)
    return None


def _failed_all(job_plans: list[Plan], message: str) -> list[ExerciseResult]:
    return [ExerciseResult(p.number, p.title, False, 0, p.points, message) for p in job_plans]


def results(nb, plans: list[Plan], stopped_at: int | None, problem: str) -> list[ExerciseResult]:
    """Each exercise's result from the executed notebook: passed iff all its cells ran cleanly."""
    found = []
    for plan in plans:
        message = plan.missing
        if not message:
            for position, kind in [(plan.solution, "답(solution) 셀"),
                                   *[(c, "검사(check) 셀") for c in plan.checks[:1]],
                                   *[(c, "숨은 검사(hidden check)") for c in plan.checks[1:]]]:
                cell = nb.cells[position]
                if stopped_at is not None and position >= stopped_at and cell.get("execution_count") is None:
                    message = f"{kind}에 이르기 전에 실행이 멈췄습니다: {problem}"
                    break
                error = error_of(cell)
                if error:
                    message = error if kind != "숨은 검사(hidden check)" else f"숨은 검사: {error}"
                    break
        passed = not message
        found.append(ExerciseResult(plan.number, plan.title, passed, plan.points if passed else 0,
                                    plan.points, message))
    return found


def _exercise_positions(plans: list[Plan]) -> set[int]:
    return {i for p in plans for i in ([p.solution] if p.solution is not None else []) + p.checks}


async def _execute(nb, job: Job, workdir: str, env: dict, run_id: str):
    """Run every cell; (index where it stopped or None, Korean problem, what was left running)."""
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    deadline = time.monotonic() + job.timeout
    # IPC sockets in the notebook's own 0700 temp dir: no other user (or notebook) can reach
    # this kernel, unlike the default TCP ports on localhost.
    km = AsyncKernelManager(kernel_name=job.kernel, transport="ipc", ip=os.path.join(workdir, "kernel"),
                            connection_file=os.path.join(workdir, "kernel.json"))
    client = NotebookClient(nb, km=km, kernel_name=job.kernel, allow_errors=True,
                            resources={"metadata": {"path": workdir}},
                            timeout_func=lambda cell: max(1, int(deadline - time.monotonic())))
    stopped_at, problem, left = None, "", {"vms": 0, "containers": 0}
    index = 0
    log = open(os.path.join(workdir, "kernel.log"), "wb")  # the kernel's own stderr, not the grader's
    try:
        async with client.async_setup_kernel(env=env, cleanup_kc=True, stdout=log, stderr=log):
            for index, cell in enumerate(client.nb.cells):
                await client.async_execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            left = await asyncio.to_thread(_running, run_id)
    except CellTimeoutError:
        stopped_at = index
        problem = (f"시간 초과(timeout): {origin(client.nb.cells[index])}이 노트북 제한 시간 "
                   f"{job.timeout:.0f}초 안에 끝나지 않았습니다.")
    except DeadKernelError:
        stopped_at = index
        problem = f"커널이 죽었습니다(kernel died): {origin(client.nb.cells[index])}을 실행하던 중이었습니다."
    except Exception as exc:  # the kernel could not start, or the connection to it broke
        stopped_at = index
        problem = _short(f"노트북을 실행할 수 없습니다 ({type(exc).__name__}: {exc}).")
    finally:
        log.close()
    return client.nb, stopped_at, problem, left


def _engine_client():
    from ..container import engine

    return engine.client() if engine.find() is not None else None


def _running(run_id: str) -> dict[str, int]:
    """How many VMs and running containers the run has right now."""
    client = _engine_client()
    try:
        boxes = runs.containers(client, run_id, running_only=True) if client else []
    finally:
        if client:
            client.close()
    return {"vms": len(runs.qemus(run_id)), "containers": len(boxes)}


def worker_name() -> str:
    """Where this runs: the host name, and the Dask worker's name when a Dask worker runs it."""
    try:
        from distributed import get_worker

        return f"{os.uname().nodename}/{get_worker().name}"
    except (ImportError, ValueError):
        return os.uname().nodename


def _not_run(result: NotebookResult, instructor, problem: str, message: str) -> NotebookResult:
    """`result` for a submission that could not run: every exercise failed with `message`."""
    _, plans = prepare(instructor, instructor, result.lab)
    result.problem, result.exercises = problem, _failed_all(plans, message)
    return result


def grade_notebook(job: Job) -> NotebookResult:
    """Grade one submission (see the module docstring); never raises for a student's mistake."""
    started = time.monotonic()
    instructor = nbformat.reads(job.instructor, as_version=4)
    result = NotebookResult(job.student, job.lab, [], worker=worker_name())
    if job.submission is None:
        return _not_run(result, instructor, "제출물이 없습니다.", "제출하지 않았습니다.")
    try:
        submission = nbformat.reads(job.submission, as_version=4)
        nb, plans = prepare(submission, instructor, job.lab)
    except Exception as exc:  # not JSON, not a notebook
        problem = _short(f"노트북 파일을 읽을 수 없습니다: {exc}")
        return _not_run(result, instructor, problem, problem)
    run_id = result.run_id = f"grade-{secrets.token_hex(6)}"
    with tempfile.TemporaryDirectory(prefix="vmkit-grade-") as workdir:
        env = {**os.environ, runs.VARIABLE: run_id, variant.VARIABLE: job.student, "TMPDIR": workdir}
        try:
            nb, stopped_at, result.problem, result.left_running = asyncio.run(
                _execute(nb, job, workdir, env, run_id))
        finally:
            client = _engine_client()
            try:
                result.cleaned = runs.remove(run_id, client)
            finally:
                if client:
                    client.close()
    result.exercises = results(nb, plans, stopped_at, result.problem)
    graded = _exercise_positions(plans)
    for index, cell in enumerate(nb.cells):
        error = error_of(cell) if index not in graded and cell.cell_type == "code" else None
        if error:
            result.cell_errors.append(f"{origin(cell)}: {error}")
    result.seconds = time.monotonic() - started
    return result
