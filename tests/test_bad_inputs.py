"""Every row of the bad-input catalogue (`tests/bad_inputs.py`): the right error, a Korean
message with the expected text, and nothing started — no QEMU, no container, no VM runtime
dir, nothing left in the temporary directory. Also: `docs/bad-inputs.md` is the catalogue's
table, and the catalogue names every public parameter and every `vmkit` flag that takes a value.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

import bad_inputs
from bad_inputs import CASES, ROOT, Case
from conftest import qemu_children, session_containers
from vmkit.errors import VmkitError

HANGUL = re.compile("[\uac00-\ud7a3]")
#: argparse's own English, which must never reach a student.
ENGLISH = ("error:", "usage:", "invalid", "expected", "required", "unrecognized", "not allowed",
           "Traceback")


def _children() -> set[int]:
    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                found.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return found


def _runtime_dirs() -> set[str]:
    from vmkit.vm.rundir import runtime_root

    return {p.name for p in runtime_root().iterdir()}


def _ours(name: str) -> bool:
    """Whether the runtime dir `name` is this process's (another process's tests may boot VMs)."""
    from vmkit.vm.rundir import runtime_root

    owner = runtime_root() / name / "owner.json"
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # a dir being made gets its owner right after QEMU starts
        try:
            return json.loads(owner.read_text()).get("pid") == os.getpid()
        except (OSError, ValueError):
            if not owner.parent.exists():
                return False
            time.sleep(0.05)
    return True


def _state() -> dict:
    return {"processes": _children(), "qemu": {p.pid for p in qemu_children()},
            "containers": set(session_containers()), "runtime_dirs": _runtime_dirs()}


@pytest.fixture
def nothing_started(tmp_path, monkeypatch):
    """The row runs with a private, empty temporary directory; afterwards nothing new exists."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.chdir(ROOT)
    before = _state()
    yield
    after = _state()
    assert after["processes"] <= before["processes"], "a process was started"
    assert after["qemu"] == before["qemu"], "QEMU was started"
    assert after["containers"] == before["containers"], "a container was created"
    new_dirs = [name for name in after["runtime_dirs"] - before["runtime_dirs"] if _ours(name)]
    assert not new_dirs, f"a VM runtime dir was made: {new_dirs}"
    assert not list(scratch.iterdir()), f"left in the temporary directory: {list(scratch.iterdir())}"


def run_cli(argv: tuple[str, ...], capsys) -> tuple[int, str]:
    """`vmkit ARGV` in this process (so the checks see what it would start): (status, stderr)."""
    from vmkit import cli

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        code = cli.main(list(argv[1:]))
    except SystemExit as exc:
        code = exc.code
    finally:  # main() makes SIGTERM raise in the CLI; not in pytest
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, nothing_started, capsys, monkeypatch):
    with monkeypatch.context() as env:  # the row's environment, undone before the checks
        for name, value in case.env:
            if value is None:
                env.delenv(name, raising=False)
            else:
                env.setenv(name, value)
        if case.argv is not None:
            code, message = run_cli(case.argv, capsys)
        else:
            with pytest.raises(VmkitError) as info:
                case.call()
            message = str(info.value)
    if case.argv is not None:
        assert code == 2, message
        for word in ENGLISH:
            assert word not in message, f"English on stderr: {message}"
    else:
        assert type(info.value) is case.error, repr(info.value)
    assert HANGUL.search(message), message
    assert case.expect in message, message


def test_rows_are_distinct():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert len(CASES) >= 60


def test_docs_are_the_catalogue():
    """docs/bad-inputs.md is `python tests/bad_inputs.py`'s output (regenerate it, never edit it)."""
    committed = (ROOT / "docs" / "bad-inputs.md").read_text()
    assert committed == bad_inputs.markdown(), \
        "docs/bad-inputs.md is stale: .venv/bin/python tests/bad_inputs.py > docs/bad-inputs.md"


def test_script_prints_the_docs():
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "bad_inputs.py")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == bad_inputs.markdown()


def _api_parameters() -> dict[str, set[str]]:
    import vmkit
    import vmkit.widgets
    from vmkit.experiments.compare import compare, density  # `vmkit.compare` may be the (callable) module

    targets = {"VM": vmkit.VM, "Container": vmkit.Container, "compare": compare, "density": density}
    targets.update({name: getattr(vmkit.widgets, name) for name in vmkit.widgets.__all__
                    if name.endswith("Panel")})
    return {target: set(inspect.signature(obj).parameters) - {"self"}
            for target, obj in targets.items()}


def test_every_public_parameter_has_rows():
    covered = {(case.target, case.parameter) for case in CASES if case.argv is None}
    missing = [(target, name) for target, names in _api_parameters().items() for name in names
               if (target, name) not in covered]
    assert not missing, f"parameters without a bad-input row: {missing}"


def _cli_flags() -> set[tuple[str, str]]:
    from vmkit import cli

    flags = set()

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{prefix} {name}")
            elif action.nargs != 0:  # takes a value (flags like --json take none)
                flags.add((prefix, action.option_strings[0] if action.option_strings else action.dest))

    walk(cli.build_parser(), "vmkit")
    return flags


def test_every_cli_flag_has_rows():
    covered = {(case.target, case.parameter) for case in CASES if case.argv is not None}
    missing = sorted(flag for flag in _cli_flags() if flag not in covered)
    assert not missing, f"vmkit flags without a bad-input row: {missing}"


def test_console_script_is_korean_too():
    """The real `vmkit` entry point (a process of its own) says the same as main() in-process."""
    for argv, expect in ((["boot", "--memory", "abc"], "메모리(memory) 크기 'abc'를 이해할 수 없습니다"),
                         (["compare", "--trials", "x"], "'x'는 정수(integer)가 아닙니다")):
        done = subprocess.run([sys.executable, "-m", "vmkit", *argv], capture_output=True,
                              text=True, cwd=ROOT, timeout=120)
        assert done.returncode == 2 and expect in done.stderr, done.stderr
