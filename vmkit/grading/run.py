"""Grade one student's notebook: run it in its own kernel, read each exercise's result, clean up.

`grade_notebook(job)` is what every executor calls (a local worker process or a Dask
worker): it takes notebooks as text, so a remote worker needs no shared file system,
and returns plain data. Each notebook gets its own sandbox (`sandbox`: a fresh work dir as
cwd, HOME, TMPDIR and IPython dir; as root, a cgroup with limits), its own run id
(`VMKIT_RUN`, so every VM and container it starts is recognisable), the student's id for
seeded variants, and a time limit. What the notebook left running when it finished is
counted, then removed (VMs and containers by run id, every other process by cgroup) before
the function returns.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from ..host import runs
from . import sandbox, variant
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
    run_id: str = ""  # set by the executor, so it can clean up after a worker that died
    hide: tuple[str, ...] = ()  # folders the notebook must not see (labs, submissions, output)
    needs_limits: bool = False  # the lab's checks need container limits (sandbox.needs_limits)


def new_run_id() -> str:
    return f"grade-{secrets.token_hex(6)}"


def abandon(run_id: str) -> None:
    """Remove what a notebook whose worker died left: its processes (cgroup), VMs, containers
    and work dir. Safe to call when nothing is left."""
    import glob
    import shutil

    _clean_up(run_id, NotebookResult("", "", []))
    sandbox.Sandbox(Path(tempfile.gettempdir()), run_id).release()
    for base in {tempfile.gettempdir(), str(sandbox.BASE)}:
        for folder in glob.glob(os.path.join(base, f"vmkit-grade-{run_id}-*")):
            shutil.rmtree(folder, ignore_errors=True)


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

    @classmethod
    def from_dict(cls, data: dict) -> NotebookResult:
        """The result `to_dict` wrote (e.g. read back from grades.json by `--resume`)."""
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        known["exercises"] = [ExerciseResult(**{k: ex[k] for k in ExerciseResult.__dataclass_fields__ if k in ex})
                              for ex in data.get("exercises", [])]
        return cls(**known)


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT - 1] + "…"


def error_of(cell) -> str | None:
    """The cell's error output as a student should read it (the assertion's own message), or None."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return _message(output.get("ename", "오류"), output.get("evalue", ""))
    return None


def _message(name: str, value: str) -> str:
    if name == "AssertionError":
        return _short(value) if value else "검사의 assert가 통과하지 못했습니다 (AssertionError)."
    return _short(f"{name}: {value}" if value else name)


@dataclass(frozen=True)
class Reply:
    """How the kernel answered one cell's execute request: "ok", "error" or "aborted"."""

    status: str
    ename: str = ""
    evalue: str = ""

    @property
    def error(self) -> str | None:
        """Korean message if the cell did not succeed, else None."""
        if self.status == "ok":
            return None
        if self.status == "error":
            return _message(self.ename or "오류", self.evalue)
        return "커널이 이 셀을 실행하지 않았습니다 (aborted)."


def _failed_all(job_plans: list[Plan], message: str) -> list[ExerciseResult]:
    return [ExerciseResult(p.number, p.title, False, 0, p.points, message) for p in job_plans]


def _verdict(plan: Plan, replies: dict[int, Reply], stopped_at: int | None, problem: str) -> str:
    """"" if every cell of the exercise ran to the end and succeeded, else the Korean reason."""
    if plan.missing:
        return plan.missing
    for position, kind in [(plan.solution, "답(solution) 셀"),
                           *[(c, "검사(check) 셀") for c in plan.checks[:1]],
                           *[(c, "숨은 검사(hidden check)") for c in plan.checks[1:]]]:
        reply = replies.get(position)
        if reply is None:
            if stopped_at is not None and position > stopped_at:
                return f"{kind}에 이르기 전에 실행이 멈췄습니다: {problem}"
            if stopped_at is not None and position == stopped_at:
                return f"{kind}의 실행이 끝나지 않았습니다: {problem}"
            return f"{kind}의 실행 결과가 없습니다: 실행되지 않은 검사는 통과로 치지 않습니다."
        error = reply.error
        if error:
            return error if kind != "숨은 검사(hidden check)" else f"숨은 검사: {error}"
    return ""


def results(plans: list[Plan], replies: dict[int, Reply], stopped_at: int | None,
            problem: str) -> list[ExerciseResult]:
    """Each exercise's result: passed iff the kernel answered "ok" to every one of its cells.

    Read from the execute replies the grader received, never from the cells' outputs
    (which the submitted code can suppress). A grader error on one exercise fails that one.
    """
    found = []
    for plan in plans:
        try:
            message = _verdict(plan, replies, stopped_at, problem)
        except Exception as exc:  # the grader's own bug: this exercise fails, the others stand
            message = _short(f"채점기 오류로 이 연습을 채점하지 못했습니다 ({type(exc).__name__}: {exc}).")
        passed = not message
        found.append(ExerciseResult(plan.number, plan.title, passed, plan.points if passed else 0,
                                    plan.points, message))
    return found


def _exercise_positions(plans: list[Plan]) -> set[int]:
    return {i for p in plans for i in ([p.solution] if p.solution is not None else []) + p.checks}


#: Output a graded notebook may produce in all (bytes of message content); more is dropped.
OUTPUT_LIMIT = 16 << 20


def _client_class():
    """nbclient's NotebookClient, recording each cell's execute reply and capping output."""
    from nbclient import NotebookClient

    class GradingClient(NotebookClient):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.replies: dict[int, Reply] = {}
            self.output_bytes = 0
            self.output_dropped = False

        def output(self, outs, msg, display_id, cell_index):
            self.output_bytes += len(str(msg.get("content", "")))
            if self.output_bytes > OUTPUT_LIMIT:
                self.output_dropped = True
                return None
            return super().output(outs, msg, display_id, cell_index)

    return GradingClient


def _kernel_manager(box: sandbox.Sandbox):
    """jupyter_client's AsyncKernelManager, starting the kernel the way `box` confines it."""
    from jupyter_client.manager import AsyncKernelManager

    class ConfinedKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            return box.kernel_command(super().format_kernel_cmd(extra_arguments), self.connection_file)

    return ConfinedKernelManager


async def _execute(nb, job: Job, workdir: str, env: dict, box: sandbox.Sandbox):
    """Run every cell: (replies by index, index where it stopped or None, Korean problem,
    what was left running, whether output was dropped)."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    deadline = time.monotonic() + job.timeout
    # IPC sockets in the notebook's own 0700 temp dir: no other user (or notebook) can reach
    # this kernel, unlike the default TCP ports on localhost.
    km = _kernel_manager(box)(kernel_name=job.kernel, transport="ipc", ip=os.path.join(workdir, "kernel"),
                              connection_file=os.path.join(workdir, "kernel.json"))

    def record(cell, cell_index, execute_reply):
        content = (execute_reply or {}).get("content", {})
        client.replies[cell_index] = Reply(str(content.get("status", "error")),
                                           str(content.get("ename", "")), str(content.get("evalue", "")))

    client = _client_class()(
        nb, km=km, kernel_name=job.kernel, allow_errors=True, resources={"metadata": {"path": workdir}},
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())), on_cell_executed=record,
        # No tag of the student's may skip a cell: nbclient's skip tag is a nonce here.
        skip_cells_with_tag=f"vmkit-never-{secrets.token_hex(8)}")
    stopped_at, problem, left = None, "", {"vms": 0, "containers": 0}
    index = 0
    log = open(os.path.join(workdir, "kernel.log"), "wb")  # the kernel's own stderr, not the grader's
    try:
        async with client.async_setup_kernel(env=env, cleanup_kc=True, stdout=log, stderr=log):
            for index, cell in enumerate(client.nb.cells):
                await client.async_execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            left = await asyncio.to_thread(_running, box.run_id, box.docker_url)
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
    if stopped_at is not None:
        client.replies.pop(stopped_at, None)  # started, never finished: not a pass
    return client.nb, client.replies, stopped_at, problem, left, client.output_dropped


def _engine_client(url: str | None = None):
    """A client of the engine the notebook used: its own (`url`), else the grader's, if any."""
    from ..container import engine

    if url:
        import docker

        return docker.DockerClient(base_url=url, timeout=30, version="auto")
    return engine.client() if engine.find() is not None else None


def _running(run_id: str, url: str | None = None) -> dict[str, int]:
    """How many VMs and running containers the run has right now."""
    client = _engine_client(url)
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


def _clean_up(run_id: str, result: NotebookResult, url: str | None = None) -> dict[str, int]:
    """Remove the run's VMs and containers; an engine error is noted, never fatal to the grades."""
    client = None
    try:
        client = _engine_client(url)
        return runs.remove(run_id, client)
    except Exception as exc:
        result.cell_errors.append(_short(f"채점기가 남은 VM·컨테이너를 치우다 오류를 만났습니다: {type(exc).__name__}: {exc}"))
        return {"vms": 0, "containers": 0}
    finally:
        if client:
            client.close()


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
        nb, plans = prepare(submission, instructor, job.lab, student=job.student)
    except Exception as exc:  # not JSON, not a notebook
        problem = _short(f"노트북 파일을 읽을 수 없습니다: {exc}")
        return _not_run(result, instructor, problem, problem)
    run_id = result.run_id = job.run_id or new_run_id()
    with tempfile.TemporaryDirectory(prefix=f"vmkit-grade-{run_id}-", dir=sandbox.workdir_base()) as workdir, \
            sandbox.Sandbox(Path(workdir), run_id, job.hide, job.needs_limits) as box:
        env = {**box.env(), runs.VARIABLE: run_id, variant.VARIABLE: job.student}
        try:
            nb, replies, stopped_at, result.problem, result.left_running, dropped = asyncio.run(
                _execute(nb, job, workdir, env, box))
        finally:
            result.cleaned = _clean_up(run_id, result, box.docker_url)
    if box.killed:
        result.cell_errors.append(_short(f"노트북이 끝난 뒤에도 남아 있던 프로세스 {len(box.killed)}개를 채점기가 "
                                         f"끝냈습니다: {', '.join(box.killed)}"))
    result.exercises = results(plans, replies, stopped_at, result.problem)
    if dropped:
        result.cell_errors.append(f"출력이 너무 많아 {OUTPUT_LIMIT >> 20} MiB 뒤의 출력은 버렸습니다.")
    graded = _exercise_positions(plans)
    for index, reply in sorted(replies.items()):
        error = reply.error if index not in graded else None
        if error:
            result.cell_errors.append(f"{origin(nb.cells[index])}: {error}")
    result.seconds = time.monotonic() - started
    return result
