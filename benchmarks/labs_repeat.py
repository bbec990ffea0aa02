"""Flake check: grade the instructor's labs as N 'students' in a row (one notebook at a time).

Every exercise of every lab must pass every time; each student name gets its own seeded
variant. `make test` grades them once (tests/test_grading_class.py); this script runs
them N times (default 3) and prints how many passed per lab and how long each took.

    python benchmarks/labs_repeat.py --times 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import finish, say  # noqa: E402
from vmkit.grading import assign, grade  # noqa: E402

LABS = Path(__file__).resolve().parent.parent / "labs"


def run(times: int = 3, labs_dir: Path = LABS, progress=say) -> dict:
    """Grade every instructor lab `times` times, sequentially; failures and seconds per lab."""
    labs = assign.find_labs(labs_dir)
    with tempfile.TemporaryDirectory(prefix="vmkit-labs-repeat-") as root:
        for n in range(1, times + 1):
            (Path(root) / f"instructor-{n}").mkdir()
            for lab in labs:
                (Path(root) / f"instructor-{n}" / lab.name).write_bytes(lab.read_bytes())
        progress(f"강사용 실습 {len(labs)}개를 {times}번 채점합니다 (한 번에 노트북 하나)…")
        started = time.monotonic()
        graded = grade.grade(root, labs_dir, workers=1,
                             on_result=lambda r: progress(f"  {r.student} {r.lab}: {r.points}/{r.max_points}점, "
                                                          f"{r.seconds:.1f} s"))
    per_lab = {lab.name: {"runs": 0, "passed_all": 0, "seconds": []} for lab in labs}
    failures = []
    for r in graded.results:
        entry = per_lab[r.lab]
        entry["runs"] += 1
        entry["seconds"].append(round(r.seconds, 1))
        ok = not r.problem and not r.cell_errors and all(ex.passed for ex in r.exercises)
        entry["passed_all"] += ok
        failures += [(r.student, r.lab, ex.number, ex.message) for ex in r.exercises if not ex.passed]
        failures += [(r.student, r.lab, None, text) for text in [r.problem, *r.cell_errors] if text]
    return {"times": times, "per_lab": per_lab, "failures": failures,
            "seconds": round(time.monotonic() - started, 1), "results": graded.results}


def table(result: dict) -> str:
    lines = [f"{lab}: {e['passed_all']}/{e['runs']}번 모두 통과, 시간 {e['seconds']} s"
             for lab, e in result["per_lab"].items()]
    lines += [f"실패: {f}" for f in result["failures"]]
    return "\n".join(lines + [f"전체 {result['seconds']:.0f} s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="강사용 실습을 N번 연달아 채점해 흔들림(flake)을 찾습니다")
    parser.add_argument("--times", type=int, default=3)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)

    def measure() -> dict:
        result = run(args.times)
        result.pop("results")
        return result

    return finish(measure, table, args.json)


if __name__ == "__main__":
    sys.exit(main())
