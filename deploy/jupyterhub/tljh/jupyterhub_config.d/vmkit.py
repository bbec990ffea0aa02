"""vmkit's labs on The Littlest JupyterHub (TLJH, SystemdSpawner): one server for a department.

Installed by deploy/jupyterhub/tljh/install.sh as
/opt/tljh/config/jupyterhub_config.d/vmkit.py; TLJH loads it after the settings of
`tljh-config` (its "escape hatch"), so `c` already holds `limits.memory` and `limits.cpu`.

Each student's server is a transient systemd unit that SystemdSpawner starts with
`systemd-run`. This file adds to that unit:

- `SupplementaryGroups=kvm`: QEMU (started by the student's kernel, inside the unit) may open
  /dev/kvm; vmkit still boots a guest to decide whether KVM works, and falls back to TCG;
- `MemoryMax` (TLJH's `limits.memory`, else DEFAULT_MEMORY_MAX) and `TasksMax`: the server,
  its kernels and their QEMU processes together (cgroup v2);
- `Delegate=yes`: the unit's cgroup subtree belongs to the student, so tools inside it may
  make sub-cgroups (a VM of its own with a smaller limit) without root.

The student's container engine is a rootless Podman service in the student's own systemd user
manager (`podman.socket`, socket-activated), not inside the unit: SystemdSpawner sets
`NoNewPrivileges=yes` for non-admins, and rootless Podman needs the setuid `newuidmap`. The
pre-spawn hook below makes that user manager run (linger), gives the student subordinate ids,
enables `podman.socket` and caps the student's user slice (Podman's containers live there) with
the same memory and task limits. `DOCKER_HOST` then points at that socket.

SystemdSpawner expands `{USERNAME}` and `{USERID}` in `unit_extra_properties` values (each
value goes through `str.format`, so values must be strings and braces are special), but
`{USERID}` is JupyterHub's database id of the user, not the unix uid, and
`Spawner.environment` is not expanded at all. So the unix uid comes from the passwd entry,
through callables in `environment` (JupyterHub calls them with the spawner).

Not run on the project's CI machine (no systemd there); tests/test_deploy_configs.py loads this
file with a real traitlets Config and checks what it sets and what its hook would run.
"""

import asyncio
import inspect
import pwd
from pathlib import Path

c = get_config()  # noqa: F821 (JupyterHub and TLJH provide it)

#: A student's memory cap when `tljh-config set limits.memory` was not used.
DEFAULT_MEMORY_MAX = "4G"
#: Most processes and threads of a student's server (QEMU alone has about ten threads a VM).
TASKS_MAX = "1024"
#: The guest artifacts, built once by install.sh, read-only for students.
VMKIT_CACHE = "/opt/tljh/vmkit-cache"
#: Where logind makes each user's runtime dir (`/run/user/<uid>`).
RUN_USER = Path("/run/user")
#: Subordinate uids and gids (rootless Podman maps a container's users onto these).
SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))
SUBID_FIRST = 100000
SUBID_COUNT = 65536
#: How long the hook waits for the user manager and the Podman socket.
WAIT_S = 30.0

memory_max = c.SystemdSpawner.get("mem_limit", c.Spawner.get("mem_limit")) or DEFAULT_MEMORY_MAX
memory_max = str(memory_max)

properties = dict(c.SystemdSpawner.get("unit_extra_properties", {}))
properties.update({
    "SupplementaryGroups": "kvm",
    "MemoryMax": memory_max,
    "TasksMax": TASKS_MAX,
    "Delegate": "yes",
})
c.SystemdSpawner.unit_extra_properties = properties
# /dev/kvm must stay visible in the unit: no PrivateDevices (SystemdSpawner's isolate_devices).
c.SystemdSpawner.isolate_devices = False


def unix_name(spawner) -> str:
    """The unix user a hub user's server runs as: TLJH's `jupyter-<name>` (shortened with a
    hash when long), else SystemdSpawner's `username_template`."""
    try:
        from tljh.normalize import generate_system_username
    except ImportError:
        return spawner.username_template.format(USERNAME=spawner.user.name,
                                                USERID=spawner.user.id)
    return generate_system_username("jupyter-" + spawner.user.name)


def runtime_dir(spawner) -> str:
    return str(RUN_USER / str(pwd.getpwnam(unix_name(spawner)).pw_uid))


def docker_host(spawner) -> str:
    return f"unix://{runtime_dir(spawner)}/podman/podman.sock"


environment = dict(c.Spawner.get("environment", {}))
environment.update({
    "VMKIT_MODE": "class",
    "VMKIT_CACHE": VMKIT_CACHE,
    "XDG_RUNTIME_DIR": runtime_dir,  # callables: JupyterHub calls them with the spawner
    "DOCKER_HOST": docker_host,
})
c.Spawner.environment = environment


async def run(argv: list[str]) -> str:
    """Run a command (no shell); its output, or an error with what it printed."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    text = output.decode(errors="replace").strip()
    if process.returncode:
        raise RuntimeError(f"vmkit 수업 준비 실패: {' '.join(argv)} (종료 코드 "
                           f"{process.returncode}): {text}")
    return text


async def wait_for(path: Path, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not path.exists():
        if loop.time() > deadline:
            raise RuntimeError(f"vmkit 수업 준비 실패: {WAIT_S:.0f}초 안에 {what}이(가) "
                               f"준비되지 않았습니다 ({path} 없음)")
        await asyncio.sleep(0.2)


def subid_ranges(path: Path) -> dict[str, tuple[int, int]]:
    """`name:start:count` lines of /etc/subuid or /etc/subgid (the first range of a name)."""
    ranges: dict[str, tuple[int, int]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                ranges.setdefault(parts[0], (int(parts[1]), int(parts[2])))
    return ranges


SUBID_LOCK = asyncio.Lock()


async def ensure_subids(name: str) -> None:
    """Give `name` 65536 subordinate uids and gids after every range in use, if it has none
    (Debian's useradd usually did already)."""
    async with SUBID_LOCK:
        tables = [subid_ranges(path) for path in SUBID_FILES]
        if all(name in table for table in tables):
            return
        start = max([SUBID_FIRST] + [first + count for table in tables
                                     for first, count in table.values()])
        span = f"{start}-{start + SUBID_COUNT - 1}"
        options = []
        if name not in tables[0]:
            options += ["--add-subuids", span]
        if name not in tables[1]:
            options += ["--add-subgids", span]
        await run(["usermod", *options, name])


previous_hook = c.Spawner.get("pre_spawn_hook")


async def vmkit_pre_spawn_hook(spawner) -> None:
    """Before a student's server starts: unix user, subordinate ids, the user manager
    (linger), `podman.socket`, and the user slice's limits."""
    if previous_hook is not None:
        result = previous_hook(spawner)
        if inspect.isawaitable(result):
            await result
    name = unix_name(spawner)
    try:
        from tljh import user as tljh_user
    except ImportError:
        pass
    else:  # TLJH makes the user in start(), after this hook: make it now (idempotent)
        await asyncio.to_thread(tljh_user.ensure_user, name)
    uid = pwd.getpwnam(name).pw_uid
    runtime = RUN_USER / str(uid)
    await ensure_subids(name)
    await run(["loginctl", "enable-linger", name])
    await wait_for(runtime / "systemd" / "private", f"{name}의 systemd 사용자 관리자(user manager)")
    await run(["runuser", "-u", name, "--", "env", f"XDG_RUNTIME_DIR={runtime}",
               "systemctl", "--user", "enable", "--now", "podman.socket"])
    await wait_for(runtime / "podman" / "podman.sock", f"{name}의 Podman 소켓(socket)")
    # Podman's containers run under user@<uid>.service, outside the server's unit: cap them too.
    await run(["systemctl", "set-property", "--runtime", f"user-{uid}.slice",
               f"MemoryMax={memory_max}", f"TasksMax={TASKS_MAX}"])
    spawner.log.info("vmkit: %s (%s) ready: podman.socket, linger, limits %s / %s tasks",
                     spawner.user.name, name, memory_max, TASKS_MAX)


c.Spawner.pre_spawn_hook = vmkit_pre_spawn_hook
