"""ipywidgets panels for the labs, built on the same core objects as the CLI.

`base` holds what every panel shares (background jobs, Korean errors, one live panel per
key); each lab's panels live in a module of their own.
"""

from .compare import ComparePanel, WorkloadPanel, summary_html

__all__ = ["ComparePanel", "WorkloadPanel", "summary_html"]
