"""`vmkit assign`: the student version of every lab."""

from __future__ import annotations

from .cli import emit_json


def cmd_assign(args) -> int:
    from .grading import assign

    written = assign.assign(args.labs_dir, args.out_dir)
    if args.json:
        emit_json({"labs": [lab.to_dict() for lab in written]})
        return 0
    for lab in written:
        print(f"  {lab.target.name}: 연습 {lab.exercises}개, {lab.points}점"
              + (f", 숨은 검사(hidden check) {lab.hidden_removed}개 뺌" if lab.hidden_removed else ""))
    print(f"학생용 사본(student copy) {len(written)}개를 썼습니다: {written[0].target.parent}")
    return 0


def add_parser(subparsers) -> None:
    """Register `assign` on the `vmkit` command's subparsers."""
    p = subparsers.add_parser("assign", help="실습의 학생용 사본(student copy)을 만듭니다: 답은 빈칸, 숨은 검사는 뺌")
    p.add_argument("labs_dir", help="강사용 실습 디렉터리 (예: labs)")
    p.add_argument("out_dir", help="학생용 사본을 쓸 디렉터리 (예: _build/student-labs)")
    p.add_argument("--json", action="store_true", help="JSON으로 출력")
    p.set_defaults(handler=cmd_assign)
