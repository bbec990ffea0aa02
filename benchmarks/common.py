"""What every benchmark script shares: progress on stderr, Korean errors, a JSON file that
records the environment it ran in (mode, engine, cgroup version, accelerator)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

from vmkit.experiments import environment
from vmkit.errors import VmkitError


def say(text: str) -> None:
    """Progress lines go to stderr, so stdout carries only the result."""
    print(text, file=sys.stderr, flush=True)


def finish(measure: Callable[[], dict], summary: Callable[[dict], str], json_path: str | None) -> int:
    """Run `measure()`, print `summary(result)`, write the JSON file (with `environment`, see
    `vmkit.experiments.environment`); exit status 2 on VmkitError."""
    try:
        result = measure()
        result.setdefault("environment", environment.describe())
    except VmkitError as exc:
        print(f"오류: {exc}", file=sys.stderr)
        return 2
    print(summary(result))
    if json_path:
        Path(json_path).write_text(json.dumps(result, ensure_ascii=False, indent=2, default=str))
    return 0
