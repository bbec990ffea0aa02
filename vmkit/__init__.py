"""vmkit: boot real QEMU guests and real containers side by side, and compare them."""

from .errors import VmkitError

__all__ = ["VmkitError"]
__version__ = "0.1.0"
