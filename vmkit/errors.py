"""Errors a student sees: Korean text, with the technical term kept in English."""


class VmkitError(Exception):
    """Base of every error vmkit raises on purpose; str() is the Korean message."""

    hint: str | None = None

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}\n  → {self.hint}" if self.hint else text


class InvalidInput(VmkitError, ValueError):
    """A parameter (memory size, CPU count, accelerator, ...) is not acceptable."""


class MissingComponent(VmkitError):
    """A program, package, artifact or service that is needed is not there."""


class ArtifactError(VmkitError):
    """Building or checking a guest artifact failed."""


class EngineError(VmkitError):
    """The Docker Engine could not be reached, started or used."""


class WorkloadError(VmkitError):
    """A VM or container failed while starting or running."""

    def __init__(self, message: str, hint: str | None = None, log: str = ""):
        super().__init__(message, hint)
        self.log = log

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}\n--- 마지막 출력(log) ---\n{self.log}" if self.log else text


class WorkloadTimeout(WorkloadError, TimeoutError):
    """A workload did not become ready within its time limit."""


class InsufficientMemory(VmkitError):
    """Starting a workload would leave the host under its memory reserve (see `memguard`)."""
