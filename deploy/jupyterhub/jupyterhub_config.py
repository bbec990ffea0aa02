"""JupyterHub for a class on one machine: every student's labs run as that student.

    sudo make class-env                  # the students' environment under /opt/vmkit-class
    sudo .venv/bin/jupyterhub -f deploy/jupyterhub/jupyterhub_config.py

- The hub and configurable-http-proxy (from this project's node_modules) listen on
  127.0.0.1 only: put a TLS reverse proxy in front for a real class (`VMKIT_HUB_IP` to change).
- Students are the machine's unix users (`useradd -m NAME`), logging in with PAM.
- `ClassSpawner` (vmkit_class.py) starts each server as the student through
  `start-singleuser`, which gives the student an own rootless Podman service; vmkit runs in
  class mode (no dockerd, no root), QEMU as the student, in a cgroup with `mem_limit` and
  `tasks_max`.

Settings from the environment (all optional): VMKIT_CLASS_PREFIX (/opt/vmkit-class),
VMKIT_HUB_STATE (/var/lib/vmkit-hub: database, cookie secret), VMKIT_HUB_IP, VMKIT_HUB_PORT
(8000; 8001 and 8002 for the proxy's API and the hub), VMKIT_HUB_MEM_LIMIT (3G per student), VMKIT_HUB_TASKS_MAX (1024), and
VMKIT_HUB_SERVICE_TOKEN: an API token for a `vmkit-class` service (admin of users and
servers) that scripts and the tests use.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from vmkit_class import ClassSpawner  # noqa: E402

c = get_config()  # noqa: F821 (JupyterHub provides it)

prefix = os.environ.get("VMKIT_CLASS_PREFIX", "/opt/vmkit-class")
state = Path(os.environ.get("VMKIT_HUB_STATE", "/var/lib/vmkit-hub"))
state.mkdir(mode=0o700, parents=True, exist_ok=True)

port = int(os.environ.get("VMKIT_HUB_PORT", "8000"))  # the proxy's API on port+1, the hub on port+2
c.JupyterHub.ip = os.environ.get("VMKIT_HUB_IP", "127.0.0.1")
c.JupyterHub.port = port
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = port + 2
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.command = [str(HERE.parent.parent / "node_modules" / ".bin"
                                       / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{port + 1}"

c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allow_existing_users = True  # students added by an admin (or the API)
c.Authenticator.admin_users = set(filter(None, os.environ.get("VMKIT_HUB_ADMINS", "").split(",")))

c.JupyterHub.spawner_class = ClassSpawner
c.ClassSpawner.prefix = prefix
c.Spawner.cmd = [f"{prefix}/bin/vmkit-singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.mem_limit = os.environ.get("VMKIT_HUB_MEM_LIMIT", "3G")
c.ClassSpawner.tasks_max = int(os.environ.get("VMKIT_HUB_TASKS_MAX", "1024"))
c.Spawner.start_timeout = 120  # the first start imports the guest image into the student's Podman
c.Spawner.http_timeout = 60
c.Spawner.interrupt_timeout = 30  # the kernels stop their VMs and containers

token = os.environ.get("VMKIT_HUB_SERVICE_TOKEN")
if token:
    c.JupyterHub.services = [{"name": "vmkit-class", "api_token": token}]
    c.JupyterHub.load_roles = [{
        "name": "vmkit-class",
        "scopes": ["admin:users", "admin:servers", "access:servers", "list:users",
                   "read:users"],
        "services": ["vmkit-class"],
    }]
