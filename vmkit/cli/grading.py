"""`vmkit assign` (student copies of the labs) and `vmkit grade` (grade a class)."""

from __future__ import annotations

import signal
import sys

from . import check_output_file, emit_json, integer, seconds

#: `grading.run.DEFAULT_TIMEOUT`, spelled out: importing grading.run loads nbformat and
#: jsonschema (about 0.8 s), which no other subcommand, nor `--help`, needs (a test checks
#: the two agree).
DEFAULT_TIMEOUT = 900.0


def cmd_assign(args) -> int:
    from ..grading import assign

    written = assign.assign(args.labs_dir, args.out_dir)
    if args.json:
        emit_json({"labs": [lab.to_dict() for lab in written]})
        return 0
    for lab in written:
        print(f"  {lab.target.name}: 연습 {lab.exercises}개, {lab.points}점"
              + (f", 숨은 검사(hidden check) {lab.hidden_removed}개 뺌" if lab.hidden_removed else ""))
    print(f"학생용 사본(student copy) {len(written)}개를 썼습니다: {written[0].target.parent}")
    return 0


def cmd_grade(args) -> int:
    from tqdm import tqdm

    from ..grading import grade, report

    grade.check_executor(args.workers, args.scheduler)
    check_output_file(args.out, "성적표 파일(--out)")
    from pathlib import Path

    out_dir = Path(args.out).resolve().parent
    jobs, notes = grade.collect(args.submissions_dir, args.labs, args.timeout,  # bad input fails here, early
                                exclude=[out_dir])
    done = report.read_json(report.paths(args.out)["json"]) if args.resume else []
    wanted = {(job.student, job.lab) for job in jobs}
    done = [r for r in done if (r.student, r.lab) in wanted]
    if done and not args.json:
        print(f"이어서 채점(--resume): 이미 채점한 노트북 {len(done)}개는 건너뜁니다.", file=sys.stderr)
    where = f"Dask 클러스터 {args.scheduler}" if args.scheduler else \
        f"로컬 워커(worker) {args.workers or grade.safe_workers()}개"
    if not args.json:
        print(f"채점: 노트북 {len(jobs)}개, {where}", file=sys.stderr)
        if not args.scheduler:
            from ..grading import sandbox

            root_labs = sorted({job.lab for job in jobs if job.needs_limits})
            for limit in sandbox.limitations(root_labs):
                print(f"주의: {limit}", file=sys.stderr)
    bar = tqdm(total=len(jobs), initial=len(done), desc="채점", unit="노트북", disable=args.json, file=sys.stderr)
    landed = list(done)

    def progress(result) -> None:
        landed.append(result)  # every file is rewritten as each notebook lands: nothing finished is lost
        # A SIGTERM or Ctrl-C waits until the files agree with each other (then it stops the run).
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        try:
            report.write_all(grade.Grades(sorted(landed, key=lambda r: (r.student, r.lab)), notes), args.out)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        bar.set_postfix_str(f"{result.student}/{result.lab}: {result.points}/{result.max_points}점")
        bar.update()

    try:
        grades = grade.grade_jobs(jobs, notes, workers=args.workers, scheduler=args.scheduler,
                                  on_result=progress, done=done)
    except BaseException:
        if not args.json:
            print(f"\n채점이 중간에 멈췄습니다: 끝난 노트북 {len(landed)}개의 결과는 {args.out}에 있습니다. "
                  "같은 명령에 --resume을 붙이면 남은 것만 채점합니다.", file=sys.stderr)
        raise
    finally:
        bar.close()
    paths = report.write_all(grades, args.out)
    if args.json:
        emit_json({"results": [r.to_dict() for r in grades.results], "notes": grades.notes,
                   **{key: str(path) for key, path in paths.items()}})
        return 0
    for note in grades.notes:
        print(f"참고: {note}", file=sys.stderr)
    print(report.table(grades))
    print(f"성적표(grade sheet): {paths['grades']}, 합계: {paths['summary']}, 피드백(feedback): {paths['feedback']}/")
    print(f"내보내기: {paths['json']} (JSON), {paths['canvas']} (Canvas 성적부 가져오기)")
    return 0


def add_parser(subparsers) -> None:
    """Register `assign` and `grade` on the `vmkit` command's subparsers."""
    p = subparsers.add_parser("assign", help="실습의 학생용 사본(student copy)을 만듭니다: 답은 빈칸, 숨은 검사는 뺌")
    p.add_argument("labs_dir", help="강사용 실습 디렉터리 (예: labs)")
    p.add_argument("out_dir", help="학생용 사본을 쓸 디렉터리 (예: _build/student-labs)")
    p.add_argument("--json", action="store_true", help="JSON으로 출력")
    p.set_defaults(handler=cmd_assign)

    p = subparsers.add_parser("grade", help="제출된 실습 노트북을 채점합니다: 성적표(CSV)와 학생별 피드백")
    p.add_argument("submissions_dir", help="제출물 디렉터리: <학생>/<실습 파일 이름>.ipynb")
    p.add_argument("--out", default="grades.csv", help="성적표 CSV (옆에 grades-summary.csv와 feedback/를 씀)")
    p.add_argument("--labs", default="labs", help="강사용 실습 디렉터리 (기본: labs)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--workers", type=integer, help="동시에 채점할 노트북 수 (기본: 이 호스트에 안전한 수)")
    how.add_argument("--scheduler", help="Dask 스케줄러 주소 tcp://HOST:PORT (워커는 --resources VM=N으로 시작)")
    p.add_argument("--resume", action="store_true",
                   help="멈춘 채점을 이어서: --out 옆 grades.json에 이미 있는 노트북은 다시 채점하지 않음")
    p.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT,
                   help=f"노트북 하나의 제한 시간, 초 (기본: {DEFAULT_TIMEOUT:.0f})")
    p.add_argument("--json", action="store_true", help="JSON으로 출력")
    p.set_defaults(handler=cmd_grade)
