"""A place of its own for each graded notebook's kernel, and nothing of it left afterwards.

Every notebook gets a fresh 0700 work dir: its kernel's working directory, `HOME`, `TMPDIR`,
IPython directory and Jupyter/matplotlib dirs, so that an IPython startup file or a config a
notebook writes dies with that dir and never reaches the next notebook.

Where the grader runs as root (typical on a class server), it enforces more:

- a cgroup of its own (`host.cgroups.ChildCgroup("vmkit-grade", <run id>)`) with a memory
  and a pids limit, which the kernel joins before it starts: a fork bomb or a memory hog
  stops at its own limits, and every process the notebook started, even one that left its
  session, is killed by pid when the notebook is done;
- a mount namespace of its own, where the instructor's labs, the submissions and the
  grader's output are covered by empty, unreadable mounts and `/tmp`, `/var/tmp` and
  `/dev/shm` are private;
- with the students' environment of the class hub installed (`make class-env`:
  `/opt/vmkit-class`), a throwaway unix user per notebook: the kernel runs as that user, with
  the students' Python, its own rootless Podman (as a student on the hub has) and the shared
  read-only guest artifacts, and `/proc` shows only its own processes. The user, its files and
  its subordinate ids are deleted afterwards. A rootless Podman without a systemd user session
  applies no container limits, on cgroup v1 or v2 (podman#4235, #21575), so a lab whose
  metadata says it needs them (`"vmkit": {"grading": {"container_limits": true}}`, lab 04)
  keeps its kernel root, with the grader's engine, in its cgroup and mount namespace.
  `VMKIT_GRADE_USER=1` asks for the user anyway, `0` never makes one.

What is not enforced where the grader runs, `limitations()` says.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..host.cgroups import ChildCgroup

#: What one graded notebook may use: its kernel, QEMU guests and helpers together.
MEMORY_LIMIT = 2 << 30
#: Processes and threads (the pids controller counts both).
TASKS_MAX = 2048
GROUP = "vmkit-grade"
#: Where the work dirs of sandboxed notebooks live (outside /tmp, which each one gets privately).
BASE = Path("/var/lib/vmkit-grade")
#: World-writable places each sandboxed notebook gets an empty private copy of.
PRIVATE = ("/tmp", "/var/tmp", "/dev/shm")
SOCKET_WAIT_S = 30.0
#: Processes the sandbox itself starts for a notebook's user (its Podman service): not the notebook's leftovers.
OURS = {"podman", "conmon", "catatonit"}

#: The kernel's launcher, run as root in a new mount namespace (`unshare --mount`): join the
#: cgroup, cover and privatise paths, hide other users' processes, become the notebook's user,
#: start its Podman service, then become the kernel. Standard library only.
_LAUNCH = r"""
import json, os, subprocess, sys, time
spec = json.loads(sys.argv[1])
for path in spec["procs"]:
    with open(path, "w") as procs:
        procs.write(str(os.getpid()))
def mount(*args):
    subprocess.run(["mount", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for path in spec["hide"]:
    if os.path.isdir(path):
        mount("-t", "tmpfs", "-o", "size=4k,mode=000", "vmkit-hidden", path)
for path in spec["private"]:
    if os.path.isdir(path):
        mount("-t", "tmpfs", "-o", "size=256m,mode=1777", "vmkit-private", path)
if spec["user"]:
    mount("-t", "proc", "-o", "hidepid=2", "proc", "/proc")
    os.setgroups(spec["groups"])
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    socket = spec["podman"]
    os.makedirs(os.path.dirname(socket), mode=0o700, exist_ok=True)
    with open(os.path.join(os.environ["HOME"], "podman-service.log"), "ab") as log:
        subprocess.Popen(["podman", "system", "service", "--time=0", "unix://" + socket],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + spec["wait"]
    while not os.path.exists(socket) and time.monotonic() < deadline:
        time.sleep(0.05)
os.execvp(sys.argv[2], sys.argv[2:])
"""


def enforced() -> bool:
    """Whether limits and the sure kill are enforced here: the grader runs as root and can make
    a notebook's cgroup (see `cgroup_problem`)."""
    return os.geteuid() == 0 and not cgroup_problem()


@functools.lru_cache(maxsize=1)
def cgroup_problem() -> str:
    """"" if this process can make (and remove) a notebook's cgroup here, else why not.

    On cgroup v2 a cgroup that holds processes cannot enable controllers for its children, so
    a grader running in a non-leaf cgroup cannot make one: it then grades without limits (and
    says so) rather than failing every notebook.
    """
    if os.geteuid() != 0:
        return "root가 아닙니다"
    probe = ChildCgroup(GROUP, f"probe-{os.getpid()}")
    try:
        probe.create(MEMORY_LIMIT, TASKS_MAX)
        return ""
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        try:
            probe.remove()
        except OSError:
            pass


def class_prefix() -> Path | None:
    """The students' environment (`make class-env`), if installed: what a throwaway user runs."""
    prefix = Path(os.environ.get("VMKIT_CLASS_PREFIX", "/opt/vmkit-class"))
    return prefix if (prefix / "venv/bin/python").exists() and (prefix / "cache").is_dir() else None


def isolated(needs_limits: bool = False) -> bool:
    """Whether a notebook runs as a throwaway user: as root, with the class environment, unless
    its lab needs container limits (or as `VMKIT_GRADE_USER=1`/`0` says)."""
    asked = os.environ.get("VMKIT_GRADE_USER", "")
    wanted = asked == "1" if asked in ("0", "1") else not needs_limits
    return wanted and enforced() and class_prefix() is not None


def needs_limits(instructor_text: str) -> bool:
    """Whether an instructor notebook (JSON text) says its checks need container limits."""
    try:
        metadata = json.loads(instructor_text).get("metadata", {})
    except (ValueError, AttributeError):
        return False
    return bool(metadata.get("vmkit", {}).get("grading", {}).get("container_limits", False))


def limitations(root_labs: list[str] = ()) -> list[str]:
    """Korean notes on what this grader cannot enforce where it runs ([] when everything is);
    `root_labs`: the labs whose metadata keeps their kernels root (they need container limits)."""
    if os.geteuid() == 0 and cgroup_problem():
        return [f"노트북의 cgroup을 만들 수 없어({cgroup_problem()}) 메모리·프로세스 수 한도 없이, 따로 만든 사용자 "
                "없이 채점합니다. 노트북은 root로 돌아 채점기가 읽는 파일을 읽을 수 있습니다."]
    if not enforced():
        return ["채점기가 root가 아니어서 노트북마다 따로 사용자를 만들지 못하고, 메모리·프로세스 수 한도(cgroup)를 "
                "걸지 못하며, 노트북이 세션을 벗어나 띄운 프로세스를 모두 끝낸다고 보장하지 못합니다. 노트북은 "
                "채점기와 같은 사용자로 돌아 채점기가 읽는 파일을 읽을 수 있습니다. 수업 서버에서는 root로 채점하세요."]
    how = ("노트북을 따로 만든 사용자가 아니라 root로 돌립니다(자기 cgroup과 마운트 네임스페이스 안에서, "
           "강사용 실습·제출물·결과 폴더를 가린 채). root인 노트북은 마음먹으면 그 가림막을 걷을 수 있습니다.")
    if not isolated():
        why = ("학생 환경(make class-env, /opt/vmkit-class)이 없어" if class_prefix() is None
               else "VMKIT_GRADE_USER=0이라서")
        return [f"{why} {how}"]
    if root_labs and isolated(needs_limits=True) is False:
        return [f"{', '.join(root_labs)}: 검사에 컨테이너 한도가 필요한데 루트리스 엔진은 한도를 걸지 못하므로 {how}"]
    return []


def _account(argv: list[str], done_codes: tuple[int, ...] = (0,)) -> None:
    """Run `useradd`/`userdel`, retried while another process holds the /etc/passwd lock."""
    for attempt in range(50):
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode in done_codes:
            return
        if "lock" not in done.stderr:
            raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
        time.sleep(0.1 + 0.05 * attempt)
    raise RuntimeError(f"{' '.join(argv)}: /etc/passwd stayed locked")


def _useradd(name: str, home: Path) -> None:
    """A throwaway account (`useradd` also gives it subordinate ids), in `kvm` where that group
    owns /dev/kvm."""
    import grp

    try:
        groups = ["-G", grp.getgrnam("kvm").gr_name]
    except KeyError:
        groups = []
    _account(["useradd", "-M", "-d", str(home), "-s", "/usr/sbin/nologin", *groups, name])


def _userdel(name: str) -> None:
    try:
        _account(["userdel", "-f", name], done_codes=(0, 6))  # 6: no such user
    except RuntimeError:
        pass  # best effort: a cleanup must not raise


@dataclass
class Sandbox:
    """One notebook's confinement: its env, its kernel's command, and the cleanup afterwards.

    `hide`: directories the notebook must not see (the instructor's labs, the submissions,
    the grader's output); covered in the kernel's mount namespace (as root).
    """

    workdir: Path
    run_id: str
    hide: tuple[str, ...] = ()
    needs_limits: bool = False  # the lab's checks need container limits: no throwaway user
    cgroup: ChildCgroup | None = None
    user: pwd.struct_passwd | None = None
    killed: list[str] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.workdir / "home"

    @property
    def runtime_dir(self) -> Path | None:
        return Path(f"/run/user/{self.user.pw_uid}") if self.user else None

    @property
    def docker_url(self) -> str | None:
        """The notebook's own Podman service (its user's), or None: the grader's engine."""
        return f"unix://{self.runtime_dir}/podman/podman.sock" if self.user else None

    def env(self) -> dict[str, str]:
        """The kernel's whole environment: everything it keeps lives in the work dir."""
        home = self.home
        places = {"HOME": home, "TMPDIR": self.workdir / "tmp", "IPYTHONDIR": home / ".ipython",
                  "JUPYTER_CONFIG_DIR": home / ".jupyter", "JUPYTER_DATA_DIR": home / ".local/share/jupyter",
                  "JUPYTER_RUNTIME_DIR": home / ".local/share/jupyter/runtime",
                  "MPLCONFIGDIR": home / ".config/matplotlib", "XDG_CONFIG_HOME": home / ".config",
                  "XDG_CACHE_HOME": home / ".cache", "XDG_DATA_HOME": home / ".local/share"}
        for path in places.values():
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self.user:
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        env = {key: str(path) for key, path in places.items()}
        if not self.user:
            from ..host import paths

            # the grader's guest artifacts and engine state, which a new HOME would hide
            return {**os.environ, **env, "VMKIT_CACHE": str(paths.cache_dir()), "VMKIT_STATE": str(paths.state_dir())}
        prefix = class_prefix()
        return {**env, "USER": self.user.pw_name, "LOGNAME": self.user.pw_name, "LANG": "C.UTF-8",
                "PATH": f"{prefix}/venv/bin:/usr/local/bin:/usr/bin:/bin", "VMKIT_MODE": "class",
                "XDG_RUNTIME_DIR": str(self.runtime_dir), "DOCKER_HOST": self.docker_url,
                "VMKIT_CACHE": f"{prefix}/cache", "CONTAINERS_CONF": f"{prefix}/containers.conf"}

    def kernel_command(self, command: list[str], connection_file: str = "") -> list[str]:
        """The kernel's command as it must start here: through the launcher, as the user
        (who is given the connection file the grader wrote)."""
        if self.cgroup is None:
            return command
        if self.user and connection_file:
            os.chown(connection_file, self.user.pw_uid, self.user.pw_gid)
        if self.user and Path(command[0]).name.startswith("python"):
            command = [str(class_prefix() / "venv/bin/python"), *command[1:]]
        spec = {"procs": [str(p) for p in self.cgroup.procs_files()], "user": bool(self.user),
                "hide": self._hidden(), "private": list(PRIVATE), "wait": SOCKET_WAIT_S,
                "podman": self.docker_url[len("unix://"):] if self.user else ""}
        if self.user:
            spec.update(uid=self.user.pw_uid, gid=self.user.pw_gid,
                        groups=os.getgrouplist(self.user.pw_name, self.user.pw_gid))
        return ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", _LAUNCH,
                json.dumps(spec), *command]

    def _hidden(self) -> list[str]:
        """The folders to cover, less any that holds what the kernel itself runs from (vmkit,
        Python, the work dir): `--labs .` must not hide the grader's own code."""
        import vmkit

        needed = [Path(vmkit.__file__).resolve().parent, Path(sys.prefix).resolve(), self.workdir.resolve()]
        return [path for path in self.hide
                if path and not any(Path(path) == n or Path(path) in n.parents for n in needed)]

    def __enter__(self) -> Sandbox:
        if not enforced():
            return self
        self.cgroup = ChildCgroup(GROUP, self.run_id)
        self.cgroup.create(MEMORY_LIMIT, TASKS_MAX)
        if isolated(self.needs_limits):
            name = user_name(self.run_id)
            _useradd(name, self.home)
            self.user = pwd.getpwnam(name)
            os.chown(self.workdir, self.user.pw_uid, self.user.pw_gid)
            self.workdir.chmod(0o700)
            self.home.mkdir(mode=0o700, exist_ok=True)
            os.chown(self.home, self.user.pw_uid, self.user.pw_gid)
            self.runtime_dir.mkdir(mode=0o700, exist_ok=True)
            os.chown(self.runtime_dir, self.user.pw_uid, self.user.pw_gid)
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def cgroup_exists(self) -> bool:
        """Whether the notebook's cgroup is still there (it should not be, once released)."""
        return enforced() and any(d.exists() for d in ChildCgroup(GROUP, self.run_id).dirs.values())

    def release(self) -> None:
        """Kill every process left in the notebook's cgroup (by pid), remove the cgroup, the
        user (with its subordinate ids) and its runtime dir."""
        cgroup = self.cgroup or (ChildCgroup(GROUP, self.run_id) if enforced() else None)
        if cgroup is not None:
            self.killed = [k for k in cgroup.kill_all() if k.rsplit("(", 1)[-1].rstrip(")") not in OURS]
            cgroup.remove()
        if not enforced():
            return
        try:
            user = self.user or pwd.getpwnam(user_name(self.run_id))
        except KeyError:
            return
        shutil.rmtree(f"/run/user/{user.pw_uid}", ignore_errors=True)
        _userdel(user.pw_name)
        self.user = None


def user_name(run_id: str) -> str:
    """The throwaway user of a run: derived from the run id, so a cleanup can find it."""
    return "vg-" + run_id.rsplit("-", 1)[-1][:12]


def workdir_base() -> str | None:
    """Where `grade_notebook` makes work dirs: BASE as root (0711, root's; outside the /tmp a
    notebook gets privately), else the system's temp dir (None)."""
    if not enforced():
        return None
    BASE.mkdir(mode=0o711, parents=True, exist_ok=True)
    return str(BASE)
