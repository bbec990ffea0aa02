"""Benchmark: grading N submissions of lab 01 with 1 and with 2 local workers.

Every submission is the instructor's lab 01 under a different student name (so each boots
its own seeded variant): the cost a class puts on the grading host. Prints the wall time
of each run, the per-notebook cost and the speed-up of 2 workers over 1.

    python benchmarks/bench_grading.py --submissions 4
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
from vmkit.grading import grade  # noqa: E402

LABS = Path(__file__).resolve().parent.parent / "labs"
LAB01 = "01-vm-and-container.ipynb"


def run(submissions: int = 4, workers: tuple[int, ...] = (1, 2), progress=say) -> dict:
    runs = {}
    with tempfile.TemporaryDirectory(prefix="vmkit-bench-grading-") as root:
        for n in range(submissions):
            (Path(root) / f"student-{n:03d}").mkdir()
            (Path(root) / f"student-{n:03d}" / LAB01).write_bytes((LABS / LAB01).read_bytes())
        for count in workers:
            progress(f"채점: 제출물 {submissions}개, 워커 {count}개…")
            started = time.monotonic()
            graded = grade.grade(root, LABS, workers=count)
            wall = time.monotonic() - started
            failed = [(r.student, ex.number) for r in graded.results for ex in r.exercises if not ex.passed]
            each = sorted(r.seconds for r in graded.results)
            runs[str(count)] = {"workers": count, "wall_s": round(wall, 1),
                                "per_notebook_wall_s": round(wall / submissions, 1),
                                "notebook_median_s": round(each[len(each) // 2], 1), "failed": failed}
    one = runs.get("1")
    for entry in runs.values():
        entry["speedup_vs_1"] = round(one["wall_s"] / entry["wall_s"], 2) if one else None
    return {"lab": LAB01, "submissions": submissions, "runs": runs}


def rows(result: dict) -> list[tuple[str, str, str]]:
    return [(f"채점 lab 01 ×{result['submissions']}, 워커 {r['workers']}개", f"{r['wall_s']:.1f} s",
             f"노트북당 {r['per_notebook_wall_s']:.1f} s (한 노트북 중앙값 {r['notebook_median_s']:.1f} s), "
             f"1워커 대비 {r['speedup_vs_1']:.2f}배, 실패 {len(r['failed'])}")
            for r in result["runs"].values()]


def table(result: dict) -> str:
    return "\n".join(f"{name}: {value}   {note}" for name, value, note in rows(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="채점 벤치마크: lab 01 제출물 N개를 워커 1개와 2개로")
    parser.add_argument("--submissions", type=int, default=4)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    return finish(lambda: run(args.submissions), table, args.json)


if __name__ == "__main__":
    sys.exit(main())
