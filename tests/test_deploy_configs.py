"""The class hub's production variants (deploy/jupyterhub/tljh, deploy/jupyterhub/z2jh): checked
as configuration, not run (no systemd, no TLJH and no Kubernetes cluster here).

- TLJH: the config snippet is loaded the way TLJH loads it (traitlets' PyFileConfigLoader, a
  real `Config` as `c`), on its own and after `tljh-config`'s limits; what it sets is checked
  against the trait names of JupyterHub's `Spawner` and of SystemdSpawner, through a real
  `Spawner.get_env`, and its pre-spawn hook runs with the commands it would run recorded.
- Z2JH: values.yaml uses only keys the chart's schema knows and sets what the guide promises;
  the device plugin's ConfigMap offers exactly the resource values.yaml asks for; the runtime
  class is the one values.yaml names.
- The instructor guide (book/appendix/class-hub.md) and README name only files that exist and
  make targets the Makefile has; the shell scripts pass `bash -n`.

Key names verified against the sources (see each constant).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy" / "jupyterhub"
TLJH_SNIPPET = DEPLOY / "tljh" / "jupyterhub_config.d" / "vmkit.py"
TLJH_INSTALL = DEPLOY / "tljh" / "install.sh"
Z2JH = DEPLOY / "z2jh"
GUIDE = REPO / "book" / "appendix" / "class-hub.md"

#: SystemdSpawner's configurable traits (jupyterhub/systemdspawner, systemdspawner.py, the same
#: in v1.0.2, which TLJH installs, and in main at 9a0a7f4), besides those of JupyterHub's Spawner.
SYSTEMD_SPAWNER_TRAITS = {
    "user_workingdir", "username_template", "default_shell", "extra_paths",
    "unit_name_template", "isolate_tmp", "isolate_devices", "disable_user_sudo",
    "readonly_paths", "readwrite_paths", "unit_extra_properties", "dynamic_users", "slice",
}

#: The `jupyterhub` chart's values.schema.yaml (zero-to-jupyterhub-k8s, tag 4.4.0): the keys
#: under `singleuser` and, for the objects this file uses, their keys (all of these have
#: `additionalProperties: false` there). extraEnv, extraResource.limits and extraPodConfig
#: are passed through, so their contents are checked separately.
Z2JH_TOP = {"cull", "custom", "debug", "enabled", "fullnameOverride", "global", "httpRoute",
            "hub", "imagePullSecret", "imagePullSecrets", "ingress", "nameOverride",
            "prePuller", "proxy", "rbac", "scheduling", "singleuser"}
Z2JH_SINGLEUSER = {
    None: {"allowPrivilegeEscalation", "cloudMetadata", "cmd", "cpu", "defaultUrl", "events",
           "extraAnnotations", "extraContainers", "extraEnv", "extraFiles", "extraLabels",
           "extraNodeAffinity", "extraPodAffinity", "extraPodAntiAffinity", "extraPodConfig",
           "extraResource", "extraTolerations", "fsGid", "image", "initContainers",
           "lifecycleHooks", "memory", "networkPolicy", "networkTools", "nodeSelector",
           "podNameTemplate", "profileList", "serviceAccountName", "startTimeout", "storage",
           "uid"},
    "image": {"name", "pullPolicy", "pullSecrets", "tag"},
    "memory": {"limit", "guarantee"},
    "cpu": {"limit", "guarantee"},
    "extraResource": {"limits", "guarantees"},
    "cloudMetadata": {"blockWithIptables", "ip"},
    "networkPolicy": {"allowedIngressPorts", "egress", "egressAllowRules", "enabled", "ingress",
                      "interNamespaceAccessLabels"},
}
Z2JH_EGRESS_RULES = {"cloudMetadataServer", "dnsPortsCloudMetadataServer",
                     "dnsPortsKubeSystemNamespace", "dnsPortsPrivateIPs", "nonPrivateIPs",
                     "privateIPs"}
#: KubeSpawner merges extraPodConfig into the pod's spec (update_k8s_model: a key the
#: V1PodSpec model lacks is an error); a securityContext there replaces the whole one.
POD_SPEC_FIELDS_USED = {"runtimeClassName", "hostUsers", "securityContext"}
POD_SECURITY_CONTEXT_FIELDS = {"fsGroup", "fsGroupChangePolicy", "runAsGroup", "runAsNonRoot",
                               "runAsUser", "seLinuxOptions", "seccompProfile",
                               "supplementalGroups", "supplementalGroupsPolicy", "sysctls",
                               "windowsOptions", "appArmorProfile", "seLinuxChangePolicy"}


# --- TLJH ---------------------------------------------------------------------------------


def load_snippet(config: Config | None = None) -> tuple[Config, dict]:
    """The snippet run as TLJH's `load_subconfig` runs it; (config, the snippet's globals)."""
    if config is None:
        loader = PyFileConfigLoader(TLJH_SNIPPET.name, path=str(TLJH_SNIPPET.parent))
        config = loader.load_config()
    else:  # after tljh-config's settings: exec with `c` already holding them
        namespace = {"c": config, "get_config": lambda: config, "__file__": str(TLJH_SNIPPET)}
        exec(compile(TLJH_SNIPPET.read_text(), str(TLJH_SNIPPET), "exec"), namespace)
    return config, config.Spawner.pre_spawn_hook.__globals__


def test_tljh_snippet_sets_the_students_unit_properties():
    config, _ = load_snippet()
    properties = config.SystemdSpawner.unit_extra_properties
    assert properties == {"SupplementaryGroups": "kvm", "MemoryMax": "4G", "TasksMax": "1024",
                          "Delegate": "yes"}
    for name, value in properties.items():
        # SystemdSpawner runs every value through str.format(USERNAME=…, USERID=…).
        assert isinstance(value, str), name
        assert value.format(USERNAME="kim", USERID=7) == value, name
    assert config.SystemdSpawner.isolate_devices is False  # /dev/kvm stays in the unit


def test_tljh_snippet_takes_the_memory_limit_tljh_config_set_and_keeps_other_settings():
    earlier_hook_ran = []
    config = Config()
    config.Spawner.mem_limit = "2G"  # what `tljh-config set limits.memory 2G` leaves in `c`
    config.Spawner.cpu_limit = 1.5
    config.Spawner.environment = {"TZ": "Asia/Seoul"}
    config.Spawner.pre_spawn_hook = lambda spawner: earlier_hook_ran.append(spawner)
    config.SystemdSpawner.unit_extra_properties = {"IOWeight": "50"}
    config, snippet = load_snippet(config)
    assert config.SystemdSpawner.unit_extra_properties["MemoryMax"] == "2G"
    assert config.SystemdSpawner.unit_extra_properties["IOWeight"] == "50"
    assert config.Spawner.environment["TZ"] == "Asia/Seoul"
    assert config.Spawner.cpu_limit == 1.5
    assert snippet["memory_max"] == "2G" and snippet["previous_hook"] is not None


def test_tljh_snippet_sets_only_traits_that_exist():
    pytest.importorskip("jupyterhub")
    from jupyterhub.spawner import Spawner

    config, _ = load_snippet()
    spawner_traits = set(Spawner.class_traits(config=True))
    assert set(config.Spawner) <= spawner_traits, set(config.Spawner) - spawner_traits
    assert set(config.SystemdSpawner) <= SYSTEMD_SPAWNER_TRAITS | spawner_traits
    try:
        from systemdspawner import SystemdSpawner
    except ImportError:
        return
    assert SYSTEMD_SPAWNER_TRAITS <= set(SystemdSpawner.class_traits(config=True))


def fake_spawner(config: Config, name: str):
    """JupyterHub's real Spawner, configured by the snippet, for the hub user `name`."""
    pytest.importorskip("jupyterhub")
    from jupyterhub.spawner import Spawner
    from traitlets import Unicode

    class SystemdLike(Spawner):
        username_template = Unicode("{USERNAME}").tag(config=True)

        async def start(self):  # never called here
            raise NotImplementedError

        async def stop(self, now=False):
            raise NotImplementedError

        async def poll(self):
            raise NotImplementedError

    user = SimpleNamespace(name=name, id=7, url=f"/user/{name}/", escaped_name=name,
                           admin=False, settings={})
    hub = SimpleNamespace(api_url="http://127.0.0.1:8081/hub/api", base_url="/hub/",
                          public_host="")
    return SystemdLike(config=config, user=user, hub=hub, orm_spawner=None)


def test_tljh_students_environment_is_class_mode_with_their_own_podman_socket():
    config, _ = load_snippet()
    me = pwd.getpwuid(os.getuid())
    env = fake_spawner(config, me.pw_name).get_env()  # JupyterHub calls the callables
    assert env["VMKIT_MODE"] == "class"
    assert env["VMKIT_CACHE"] == "/opt/tljh/vmkit-cache"
    assert env["XDG_RUNTIME_DIR"] == f"/run/user/{me.pw_uid}"
    assert env["DOCKER_HOST"] == f"unix:///run/user/{me.pw_uid}/podman/podman.sock"


class Recorder:
    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    async def __call__(self, argv: list[str]) -> str:
        self.commands.append(list(argv))
        return ""


def prepared_hook(tmp_path: Path, subuid: str = "", subgid: str = "", sockets: bool = True):
    config, snippet = load_snippet()
    me = pwd.getpwuid(os.getuid())
    runtime = tmp_path / "run-user" / str(me.pw_uid)
    if sockets:
        for path in (runtime / "systemd" / "private", runtime / "podman" / "podman.sock"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    files = (tmp_path / "subuid", tmp_path / "subgid")
    files[0].write_text(subuid)
    files[1].write_text(subgid)
    recorder = Recorder()
    snippet.update(RUN_USER=tmp_path / "run-user", SUBID_FILES=files, run=recorder, WAIT_S=0.5)
    return fake_spawner(config, me.pw_name), recorder, me


def test_tljh_pre_spawn_hook_runs_linger_podman_socket_and_slice_limits(tmp_path):
    spawner, recorder, me = prepared_hook(
        tmp_path, subuid="alice:100000:65536\nbob:165536:65536\n", subgid="alice:100000:65536\n")
    asyncio.run(spawner.run_pre_spawn_hook())
    name, uid = me.pw_name, me.pw_uid
    assert recorder.commands == [
        ["usermod", "--add-subuids", "231072-296607", "--add-subgids", "231072-296607", name],
        ["loginctl", "enable-linger", name],
        ["runuser", "-u", name, "--", "env", f"XDG_RUNTIME_DIR={tmp_path}/run-user/{uid}",
         "systemctl", "--user", "enable", "--now", "podman.socket"],
        ["systemctl", "set-property", "--runtime", f"user-{uid}.slice", "MemoryMax=4G",
         "TasksMax=1024"],
    ]


def test_tljh_pre_spawn_hook_keeps_existing_subordinate_ids(tmp_path):
    me = pwd.getpwuid(os.getuid())
    line = f"{me.pw_name}:300000:65536\n"
    spawner, recorder, _ = prepared_hook(tmp_path, subuid=line, subgid=line)
    asyncio.run(spawner.run_pre_spawn_hook())
    assert [argv[0] for argv in recorder.commands] == ["loginctl", "runuser", "systemctl"]


def test_tljh_pre_spawn_hook_fails_in_korean_when_the_user_manager_never_comes(tmp_path):
    spawner, recorder, _ = prepared_hook(tmp_path, sockets=False)
    with pytest.raises(RuntimeError, match="사용자 관리자"):
        asyncio.run(spawner.run_pre_spawn_hook())
    assert [argv[0] for argv in recorder.commands] == ["usermod", "loginctl"]


def test_tljh_install_script_parses_and_does_the_documented_steps():
    subprocess.run(["bash", "-n", str(TLJH_INSTALL)], check=True)
    assert os.access(TLJH_INSTALL, os.X_OK)
    script = TLJH_INSTALL.read_text()
    command = []
    for line in script[script.index("apt-get install"):].splitlines():
        command.append(line.rstrip().rstrip("\\"))
        if not line.rstrip().endswith("\\"):
            break
    packages = set(" ".join(command).split())
    assert {"podman", "uidmap", "slirp4netns", "fuse-overlayfs", "qemu-system-x86",
            "dbus-user-session"} <= packages
    assert "Delegate=cpu cpuset io memory pids" in script
    assert "/etc/systemd/system/user@.service.d/" in script
    assert "https://tljh.jupyter.org/bootstrap.py" in script
    assert '"$tljh/user/bin/python3" -m pip install' in script
    assert 'jupyterhub_config.d/vmkit.py" "$tljh/config/jupyterhub_config.d/vmkit.py"' in script
    for key in ("limits.memory", "limits.cpu"):
        assert f"tljh-config set {key}" in script
    assert "VMKIT_CACHE=$cache" in script
    snippet_cache = re.search(r'VMKIT_CACHE = "([^"]+)"', TLJH_SNIPPET.read_text()).group(1)
    assert re.search(rf"^cache=\$tljh/{Path(snippet_cache).name}$", script, re.M)


# --- Z2JH ---------------------------------------------------------------------------------


def values() -> dict:
    return yaml.safe_load((Z2JH / "values.yaml").read_text())


def test_z2jh_values_use_only_keys_the_chart_knows():
    data = values()
    assert set(data) <= Z2JH_TOP, set(data) - Z2JH_TOP
    singleuser = data["singleuser"]
    assert set(singleuser) <= Z2JH_SINGLEUSER[None], set(singleuser) - Z2JH_SINGLEUSER[None]
    for key, allowed in Z2JH_SINGLEUSER.items():
        if key is not None and key in singleuser:
            assert set(singleuser[key]) <= allowed, (key, set(singleuser[key]) - allowed)
    rules = singleuser.get("networkPolicy", {}).get("egressAllowRules", {})
    assert set(rules) <= Z2JH_EGRESS_RULES
    pod = singleuser["extraPodConfig"]
    assert set(pod) <= POD_SPEC_FIELDS_USED, set(pod) - POD_SPEC_FIELDS_USED
    assert set(pod["securityContext"]) <= POD_SECURITY_CONTEXT_FIELDS


def test_z2jh_values_set_what_the_guide_promises():
    singleuser = values()["singleuser"]
    assert singleuser["extraResource"]["limits"] == {"smarter-devices/kvm": 1}
    pod = singleuser["extraPodConfig"]
    assert pod["runtimeClassName"] == "sysbox-runc"
    assert pod["hostUsers"] is False
    groups = pod["securityContext"]["supplementalGroups"]
    assert isinstance(groups, list) and len(groups) == 1 and isinstance(groups[0], int)
    assert pod["securityContext"]["fsGroup"] == singleuser["fsGid"]  # replaced context keeps it
    assert re.fullmatch(r"\d+(\.\d+)?[KMGT]", str(singleuser["memory"]["limit"]))
    assert float(singleuser["cpu"]["limit"]) > 0
    env = singleuser["extraEnv"]
    assert env["VMKIT_MODE"] == "class"
    assert env["DOCKER_HOST"] == "unix:///var/run/docker.sock"
    assert singleuser["cloudMetadata"]["blockWithIptables"] is False  # no privileged init
    assert singleuser["networkPolicy"]["egressAllowRules"]["cloudMetadataServer"] is False
    text = (Z2JH / "values.yaml").read_text()
    assert not re.search(r"^\s*(privileged|hostNetwork|hostPID|hostIPC)\s*:", text, re.M)
    assert "docker.sock" not in str(singleuser.get("storage", ""))  # no node socket mounted
    image = singleuser["image"]
    assert image["name"] and isinstance(image["tag"], str)


def test_z2jh_device_plugin_offers_the_resource_the_values_ask_for():
    documents = [doc for doc in yaml.safe_load_all((Z2JH / "smarter-device-manager.yaml")
                                                   .read_text()) if doc]
    kinds = {doc["kind"]: doc for doc in documents}
    assert set(kinds) == {"Namespace", "ConfigMap", "DaemonSet"}
    namespace = kinds["Namespace"]["metadata"]["name"]
    config_map, daemon_set = kinds["ConfigMap"], kinds["DaemonSet"]
    assert config_map["metadata"]["namespace"] == daemon_set["metadata"]["namespace"] == namespace
    devices = yaml.safe_load(config_map["data"]["conf.yaml"])
    # smarter-device-manager names a resource smarter-devices/<file name in /dev>.
    offered = {f"smarter-devices/{name}" for entry in devices
               for name in ("kvm", "fuse", "net_tun") if re.fullmatch(entry["devicematch"], name)}
    assert offered == set(values()["singleuser"]["extraResource"]["limits"])
    assert all(entry["nummaxdevices"] >= 1 for entry in devices)
    spec = daemon_set["spec"]["template"]["spec"]
    assert daemon_set["spec"]["selector"]["matchLabels"].items() <= \
        daemon_set["spec"]["template"]["metadata"]["labels"].items()
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
    mounts = {mount["name"]: mount["mountPath"] for mount in spec["containers"][0]["volumeMounts"]}
    assert mounts["config"] == "/root/config"  # the plugin reads config/conf.yaml from /root
    assert mounts["device-plugin"] == volumes["device-plugin"]["hostPath"]["path"] == \
        "/var/lib/kubelet/device-plugins"
    assert spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False
    label = "=".join(next(iter(spec["nodeSelector"].items())))
    assert f"kubectl label nodes NODE {label}" in GUIDE.read_text()


def test_z2jh_runtime_class_is_the_one_the_values_name():
    documents = [doc for doc in yaml.safe_load_all((Z2JH / "runtimeclass.yaml").read_text())
                 if doc]
    assert len(documents) == 1
    runtime = documents[0]
    assert runtime["apiVersion"] == "node.k8s.io/v1" and runtime["kind"] == "RuntimeClass"
    assert runtime["metadata"]["name"] == values()["singleuser"]["extraPodConfig"][
        "runtimeClassName"]
    assert runtime["handler"] == "sysbox-runc"
    assert runtime["scheduling"]["nodeSelector"] == {"sysbox-runtime": "running"}


def test_z2jh_image_is_debian_with_what_the_pod_needs():
    dockerfile = (Z2JH / "Dockerfile").read_text()
    assert re.search(r"^FROM debian:bookworm\b", dockerfile, re.M)
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, re.M):
        for path in source.split():
            assert (REPO / path).exists(), f"Dockerfile copies {path}, which is missing"
    for package in ("qemu-system-x86", "docker.io", "busybox-static"):
        assert package in dockerfile
    assert "nbgitpuller==" in dockerfile and "vmkit fetch" in dockerfile
    start = Z2JH / "start-pod"
    subprocess.run(["bash", "-n", str(start)], check=True)
    assert os.access(start, os.X_OK)
    assert "--group docker" in start.read_text() and "setpriv --reuid=jovyan" in start.read_text()
    assert values()["singleuser"]["uid"] == 0  # start-pod starts as the pod's root


# --- the guide ----------------------------------------------------------------------------


def code_blocks(path: Path) -> list[str]:
    return re.findall(r"^[ \t]*```(?:sh|bash|console)\n(.*?)^[ \t]*```", path.read_text(),
                      re.M | re.S)


def test_guide_commands_name_files_that_exist():
    blocks = code_blocks(GUIDE) + code_blocks(REPO / "README.md")
    named = {match.rstrip(".,)") for block in blocks
             for match in re.findall(r"deploy/[\w./@-]+", block)}
    assert {"deploy/jupyterhub/jupyterhub_config.py", "deploy/jupyterhub/tljh/install.sh",
            "deploy/jupyterhub/z2jh/values.yaml"} <= named, named
    missing = sorted(path for path in named if not (REPO / path).exists())
    assert not missing, f"the guide's commands name files that do not exist: {missing}"
    # Files the guide's text names (the table of files) exist too.
    for name in re.findall(r"`((?:tljh|z2jh)/[\w./-]+)`", GUIDE.read_text()):
        assert (DEPLOY / name).exists(), name


def test_guide_make_targets_exist():
    makefile = (REPO / "Makefile").read_text()
    targets = {target for block in code_blocks(GUIDE)
               for target in re.findall(r"\bmake\s+([a-z][\w-]*)", block)}
    assert "book" in targets and "assign" in targets
    missing = sorted(t for t in targets if not re.search(rf"^{re.escape(t)}:", makefile, re.M))
    assert not missing, f"the guide runs make targets the Makefile lacks: {missing}"
