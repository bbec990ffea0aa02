"""The package's shape: every import inside vmkit points down its layers, and none closes a cycle.

Layers, from the bottom: the shared vocabulary (`errors`, `units`, `workload`) → `host` (what
this host is and owns) → `guest` (what a guest is made of, for VMs and containers alike) →
`vm` | `container` (peers: neither imports the other) → `experiments` (what the labs
measure) → the front ends `widgets` | `grading` (peers) → `cli`. Imports are read from the
source (function-level imports included), so a lazy import that points up fails too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vmkit"

#: Layer of each top-level part of the package; equal numbers are peers.
LAYERS = {
    "vocabulary": 0,
    "host": 1,
    "guest": 2,
    "vm": 3, "container": 3,
    "experiments": 4,
    "widgets": 5, "grading": 5,
    "cli": 6,
}
#: Top-level modules that belong to a part: the package itself and the shared vocabulary,
#: and `python -m vmkit`, which is the command line.
PARTS = {"vmkit": "vocabulary", "errors": "vocabulary", "units": "vocabulary",
         "workload": "vocabulary", "__main__": "cli"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ["vmkit", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _package_of(name: str) -> list[str]:
    parts = name.split(".")
    return parts if MODULES[name].name == "__init__.py" else parts[:-1]


def _target(name: str) -> str:
    """The module an imported name lives in: `vmkit.host.paths.state_dir` → `vmkit.host.paths`."""
    while name not in MODULES:
        name = name.rsplit(".", 1)[0]
    return name


def imports_of(name: str) -> set[str]:
    """Every vmkit module that `name` imports, anywhere in its source."""
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {_target(a.name) for a in node.names if a.name.split(".")[0] == "vmkit"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_of(name)
                base = package[:len(package) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "vmkit":
                continue
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                found.add(candidate if candidate in MODULES else _target(source))
    found.discard(name)
    return found


def part(name: str) -> str:
    """The layer key of a module: its first part below `vmkit` (`vmkit.vm.qemu` → `vm`)."""
    parts = name.split(".")
    key = parts[1] if len(parts) > 1 else "vmkit"
    return PARTS.get(key, key)


def test_every_part_has_a_layer():
    assert {part(m) for m in MODULES} <= set(LAYERS), "a new part of vmkit needs a layer here"


def test_subpackages_say_what_lives_there_and_what_they_may_import():
    for name in ("host", "guest", "vm", "container", "experiments", "cli", "widgets", "grading"):
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
        assert doc and "imports:" in doc.lower(), f"vmkit/{name}/__init__.py: say what lives there and what it imports"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    mine = part(name)
    wrong = []
    for target in sorted(imports_of(name)):
        theirs = part(target)
        if theirs == mine:
            continue
        if LAYERS[theirs] >= LAYERS[mine]:
            wrong.append(f"{target} ({theirs}, layer {LAYERS[theirs]})")
    assert not wrong, f"{name} (layer {LAYERS[mine]}) imports up or sideways: {', '.join(wrong)}"


def test_no_import_cycle():
    graph = {name: imports_of(name) for name in MODULES}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + ".") or node == "vmkit":
                continue  # a package's __init__ naming its own modules is no cycle
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " → ".join(cycle))
            if not state.get(nxt):
                visit(nxt)
        path.pop()
        state[node] = 2

    for name in sorted(graph):
        if not state.get(name):
            visit(name)


def test_the_checker_sees_a_wrong_import(tmp_path, monkeypatch):
    """The rule really reads imports: a host module that imports the VM class is refused."""
    fake = tmp_path / "vmkit" / "host"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "bad.py").write_text("def f():\n    from ..vm.vm import VM\n")
    monkeypatch.setitem(MODULES, "vmkit.host.bad", fake / "bad.py")
    assert "vmkit.vm.vm" in imports_of("vmkit.host.bad")
    with pytest.raises(AssertionError, match="imports up"):
        test_imports_point_down("vmkit.host.bad")
