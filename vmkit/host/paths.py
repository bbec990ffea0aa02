"""Where vmkit keeps its cache (guest artifacts) and state (engine, probes, runtime dirs)."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$VMKIT_CACHE`, else `$XDG_CACHE_HOME/vmkit`, else `~/.cache/vmkit`."""
    if os.environ.get("VMKIT_CACHE"):
        return Path(os.environ["VMKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vmkit"


def state_dir() -> Path:
    """`$VMKIT_STATE`, else `$XDG_STATE_HOME/vmkit`, else `~/.local/state/vmkit`."""
    if os.environ.get("VMKIT_STATE"):
        return Path(os.environ["VMKIT_STATE"])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "vmkit"


def cache_file(name: str) -> Path:
    """Where vmkit keeps a small file it may rewrite (a memo) next to the cache: in the cache
    dir, or in the state dir when the cache is shared and read-only (a class's, owned by root)."""
    cache = cache_dir()
    probe = cache if cache.exists() else cache.parent
    return (cache if os.access(probe, os.W_OK | os.X_OK) else state_dir()) / name


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) and make it 0700: sockets inside are ours alone."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path
