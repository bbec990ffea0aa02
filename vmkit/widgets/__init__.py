"""ipywidgets panels for the labs, built on the same core objects as the CLI.

`base` holds what every panel shares (background jobs, Korean errors, one live panel per
key); each lab's panels live in a module of their own, imported on first use:

    from vmkit.widgets import ComparePanel   # lab 1 (also WorkloadPanel)
    from vmkit.widgets import PoolPanel      # lab 2: memory pool, vCPU scheduling, QMP
    from vmkit.widgets import EmulationPanel # lab 3: the cost of emulation
    from vmkit.widgets import LimitsPanel    # lab 4: cgroup limits, the OOM kill
    from vmkit.widgets import ArchPanel      # lab 5: another architecture

Imports: `experiments` and below; never `cli` or `grading` (its peer front end).
"""

from importlib import import_module

_LAZY = {"ComparePanel": "compare", "WorkloadPanel": "compare", "summary_html": "compare",
         "PoolPanel": "pool", "EmulationPanel": "emulation", "LimitsPanel": "limits",
         "ArchPanel": "arch"}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'vmkit.widgets' has no attribute {name!r}")
