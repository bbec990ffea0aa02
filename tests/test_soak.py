"""Soak, short version: 10 start/stop cycles of each kind leave nothing behind.

`benchmarks/soak.py` is the whole measurement (`python benchmarks/soak.py --cycles 100`
for the reliability table); this runs its `run()` with 10 cycles of `vm`, `vm-restore` and
`container` in this pytest process and asserts the same bounds at cycle 10: fds +2,
threads +1, no temp entry, runtime dir, process, container or live VM/Container object
more than at cycle 0 (after one warm-up cycle). 40–75 s here (TCG, by the host's load).

RSS keeps the script's 16 MiB at cycle 10, not a tenth of it: what moves RSS after the
warm-up is front-loaded, not per cycle (the malloc arenas of the threads a cycle starts,
pymalloc arenas pinned while caches fill: here +0.1 to +0.9 MiB after 10 cycles and +0.1
to +1.3 MiB after 100), so 1.6 MiB would fail on allocator noise, in `make test` above all,
where RSS is that of the one pytest process that every earlier test file ran in. A leak too small
for 16 MiB in 10 cycles is caught by the `workloads` count instead (a stopped VM or container
still alive).
"""

from __future__ import annotations

import pytest

from benchmarks import soak
from conftest import RUN_ID

pytestmark = pytest.mark.integration
CYCLES = 10


@pytest.fixture(scope="module")
def soaked(docker_engine, guest_artifacts):
    """One short soak of every kind, shared by the checks below."""
    return soak.run(CYCLES)


def test_every_cycle_started_answered_and_stopped(soaked):
    assert soaked["run_id"] == RUN_ID  # this test run's VMKIT_RUN: its QEMU and containers counted
    assert list(soaked["kinds"]) == list(soak.KINDS)
    for kind, result in soaked["kinds"].items():
        assert result["failures"] == 0, (kind, result["errors"])
        assert result["checkpoints"] == [0, CYCLES]


@pytest.mark.parametrize("kind", soak.KINDS)
def test_nothing_piles_up_in_ten_cycles(soaked, kind):
    result = soaked["kinds"][kind]
    base, last = result["samples"]["0"], result["samples"][str(CYCLES)]
    bounds = result["bounds"]
    assert bounds == {**soak.BOUNDS, **soak.KIND_BOUNDS.get(kind, {})}
    over = {key: (base[key], last[key], bounds[key]) for key in bounds
            if last[key] - base[key] > bounds[key]}
    assert not over, f"{kind}: (cycle 0, cycle {CYCLES}, bound) {over}\n{soak.table(soaked)}"
    assert result["exceeded"] == []
    # The figures are this run's own: nothing of it is running between cycles.
    assert last["qemus"] == last["containers"] == last["runtime_dirs"] == last["workloads"] == 0


def test_table_is_korean_and_names_every_figure(soaked):
    text = soak.table(soaked)
    for label in soak.LABELS.values():
        assert label in text
    assert "판정: 모든 한도 안 ✔" in text


@pytest.mark.parametrize("argv, words", [
    (["--kinds", "vm", "pod"], "종류(kinds)"),
    (["--cycles", "0"], "주기 수"),
    (["--cycles", "many"], "정수(integer)"),
])
def test_bad_flags_are_refused_in_korean_before_anything_starts(argv, words, capsys):
    try:
        status = soak.main(argv)
    except SystemExit as exc:  # argparse's own refusal (a `type=` converter)
        status = exc.code
    assert status == 2
    assert words in capsys.readouterr().err
