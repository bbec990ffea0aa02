"""`vmkit --help` stays light: building the parser imports none of what the subcommands run.

A check on what gets imported, not a timing (timed tests flake on a shared machine). Measured
when this was written: `vmkit --help` took 1.1 s while every subcommand's module imported its
dependencies at the top (0.8 s of it nbformat → jsonschema → rfc3987_syntax, through
`vmkit.grading.run`), 0.07 s once they were imported inside the handlers.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Neither `vmkit --help` nor building the parser may import these (nor anything under them).
HEAVY = ("nbformat", "jsonschema", "nbclient", "docker", "qemu", "pandas", "matplotlib", "psutil",
         "dask", "tqdm", "vmkit.vm", "vmkit.container", "vmkit.experiments", "vmkit.grading",
         "vmkit.widgets", "vmkit.host")

PROBE = """
import json, sys
from vmkit import cli
{action}
print(json.dumps(sorted(sys.modules)))
"""


def _imported(action: str) -> list[str]:
    """The modules a fresh interpreter holds after `action` (`vmkit` already imported)."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(action=action)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _heavy(modules: list[str]) -> list[str]:
    """Which of HEAVY `modules` reached (each named once, however many of its modules loaded)."""
    return [h for h in HEAVY if any(m == h or m.startswith(h + ".") for m in modules)]


@pytest.mark.parametrize("action", [
    "cli.build_parser()",
    # `vmkit --help` as the console script runs it; argparse exits after printing.
    "import contextlib, io\n"
    "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
    "    cli.main(['--help'])",
    # A subcommand's help and a refused argument load no more than the top-level help.
    "import contextlib, io\n"
    "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
    "    cli.main(['boot', '--help'])",
    "import contextlib, io\n"
    "with contextlib.redirect_stderr(io.StringIO()), contextlib.suppress(SystemExit):\n"
    "    cli.main(['grade', 'x', '--workers', 'two'])",
], ids=["build_parser", "help", "boot-help", "bad-argument"])
def test_parser_imports_nothing_heavy(action):
    modules = _imported(action)
    assert "vmkit.cli.grading" in modules  # the subcommand modules themselves did load
    assert not _heavy(modules), f"the parser imported {_heavy(modules)}"


def test_spelled_out_constants_agree():
    """What the parser spells out instead of importing matches where it comes from."""
    from vmkit.cli import compare as cli_compare
    from vmkit.cli import grading as cli_grading
    from vmkit.experiments import compare
    from vmkit.grading import run

    assert cli_compare.KINDS == compare.KINDS
    assert cli_grading.DEFAULT_TIMEOUT == run.DEFAULT_TIMEOUT
