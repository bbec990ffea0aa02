"""vmkit: boot real QEMU guests and real containers side by side, and compare them.

    import vmkit
    with vmkit.VM(memory="256M") as vm:        # a QEMU guest, controlled over QMP
        print(vm.trace.ready_s, vm.kernel_release())
    with vmkit.Container(memory="256M") as c:  # a container on the Docker Engine
        print(c.trace.ready_s, c.kernel_release())
    vmkit.compare(trials=3)                    # both (and a snapshot restore), side by side
"""

from importlib import import_module

from .errors import VmkitError

__version__ = "0.1.0"

#: Public names, imported on first use so `import vmkit` stays light (no QMP, no docker).
_LAZY = {
    "VM": ("vm.vm", "VM"),
    "Container": ("container.container", "Container"),
    "compare": ("experiments.compare", "compare"),
    "density": ("experiments.compare", "density"),
    "doctor": ("experiments.readiness", "doctor"),
    "fetch": ("guest.artifacts", "fetch"),
    "Trace": ("workload", "Trace"),
    "Usage": ("workload", "Usage"),
}
__all__ = ["VmkitError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(import_module(f".{module}", __name__), attribute)
    raise AttributeError(f"module 'vmkit' has no attribute {name!r}")
