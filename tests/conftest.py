"""Shared fixtures: the guest artifacts, the Docker Engine, and leak checks."""

import os

import psutil
import pytest

from vmkit import artifacts as artifacts_mod
from vmkit import engine


def qemu_children() -> list[psutil.Process]:
    """QEMU processes descended from this test process (never other people's QEMU)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name().startswith("qemu-system") and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def session_containers() -> list[str]:
    """Ids of containers this test process created (by vmkit's session label)."""
    from vmkit import cleanup

    if engine.find() is None:
        return []
    client = engine.client()
    try:
        found = client.containers.list(
            all=True, filters={"label": f"{cleanup.SESSION}={cleanup.session_id()}"})
        return [c.id for c in found]
    finally:
        client.close()


@pytest.fixture(autouse=True)
def no_qemu_left_behind(request):
    """Every test must end with no QEMU of its own still running."""
    yield
    if "shared_vm" in request.fixturenames:
        return  # a module-scoped VM is checked when its module ends
    left = qemu_children()
    assert not left, f"QEMU left running after the test: {[p.pid for p in left]}"


@pytest.fixture(scope="session", autouse=True)
def nothing_left_at_the_end():
    """After the whole run: no QEMU of ours, no container of this session."""
    yield
    assert not qemu_children(), "QEMU still running at the end of the test session"
    assert not session_containers(), "containers of this test session still exist"


@pytest.fixture(scope="session")
def guest_artifacts():
    """The current guest artifacts, built if missing (as `vmkit fetch` does)."""
    return artifacts_mod.fetch(progress=False)


@pytest.fixture(scope="session")
def docker_engine():
    """An engine that answers; vmkit's private one is started (and later stopped) if needed."""
    started = engine.find() is None
    endpoint = engine.start()
    os.environ.setdefault("DOCKER_HOST", endpoint.url)
    yield endpoint
    if started:
        engine.stop()
