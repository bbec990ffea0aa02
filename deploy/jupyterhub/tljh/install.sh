#!/usr/bin/env bash
# vmkit's labs on The Littlest JupyterHub (TLJH): one Debian 12 server for a department.
#
#   sudo bash deploy/jupyterhub/tljh/install.sh ADMIN_NAME [MEMORY [CPUS]]
#
# Run from a checkout of this repository, as root, on a fresh Debian 12 (bookworm) server with
# cgroup v2 (Debian 12's default). The guest kernel comes from Debian's packages, so the
# server must be Debian 12 (TLJH itself would also take Ubuntu; vmkit's artifacts would not).
# Idempotent: a second run updates vmkit and the snippet and changes nothing else.
# The book's appendix "수업 허브(JupyterHub)로 운영하기" (book/appendix/class-hub.md) explains
# each step; this script is the same steps in order. Not run on the project's CI machine.
set -euo pipefail

admin=${1:?"사용법(usage): sudo bash $0 ADMIN_NAME [MEMORY [CPUS]]"}
memory=${2:-4G}     # per student: server + kernels + QEMU, and again for Podman's containers
cpus=${3:-2}
here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/../../.." && pwd)
tljh=/opt/tljh
cache=$tljh/vmkit-cache

if [ "$(id -u)" != 0 ]; then
  echo "root로 실행하세요: sudo bash $0 $*" >&2
  exit 1
fi
. /etc/os-release
if [ "${ID:-}" != debian ] || [ "${VERSION_ID:-}" != 12 ]; then
  echo "Debian 12(bookworm)만 지원합니다: 게스트 커널을 Debian 패키지에서 가져옵니다 (지금: ${PRETTY_NAME:-?})" >&2
  exit 1
fi

# 1. Packages: TLJH's own prerequisites, QEMU, rootless Podman, and what `vmkit fetch` uses.
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
  python3 python3-dev git curl ca-certificates \
  qemu-system-x86 busybox-static \
  podman uidmap slirp4netns fuse-overlayfs catatonit dbus-user-session

# 2. cgroup v2 and delegation: user@.service hands memory, pids, cpu, cpuset and io to each
#    user's manager, so rootless Podman can enforce a container's limits. On cgroup v1 (or
#    without this drop-in) rootless Podman runs containers without limits, and vmkit's lab 4
#    shows "한도가 적용되지 않음".
if [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then
  echo "경고: cgroup v2가 아닙니다. 학생 컨테이너의 한도(limit)가 적용되지 않습니다." >&2
  echo "      커널 명령줄에 systemd.unified_cgroup_hierarchy=1 을 넣고 재부팅하세요." >&2
fi
mkdir -p /etc/systemd/system/user@.service.d
cat > /etc/systemd/system/user@.service.d/delegate.conf <<'EOF'
[Service]
Delegate=cpu cpuset io memory pids
EOF
systemctl daemon-reload

# 3. Subordinate ids: Debian's useradd gives each new user 65536 of them when these files
#    exist (the hub's pre-spawn hook adds a range to a user who has none).
touch /etc/subuid /etc/subgid
# Rootless Podman needs unprivileged user namespaces (Debian 12 allows them by default).
if [ "$(sysctl -n kernel.unprivileged_userns_clone 2>/dev/null || echo 1)" = 0 ]; then
  echo "사용자 네임스페이스(user namespace)를 허용합니다: kernel.unprivileged_userns_clone=1"
  echo kernel.unprivileged_userns_clone=1 > /etc/sysctl.d/90-vmkit-userns.conf
  sysctl -q -p /etc/sysctl.d/90-vmkit-userns.conf
fi

# 4. KVM: the group exists and owns /dev/kvm (the students' units get SupplementaryGroups=kvm).
if ! getent group kvm >/dev/null; then
  echo "kvm 그룹(group)이 없습니다: KVM이 없는 서버입니다. VM은 TCG로 돕니다." >&2
elif [ -e /dev/kvm ]; then
  ls -l /dev/kvm
fi

# 5. TLJH itself (the hub, Traefik, the users' environment in /opt/tljh/user).
if [ ! -x "$tljh/hub/bin/tljh-config" ]; then
  curl -L https://tljh.jupyter.org/bootstrap.py | python3 - --admin "$admin"
fi

# 6. vmkit in the users' environment (a copy, not this checkout), with what the labs import
#    besides (myst-nb's glue; TLJH already has JupyterLab, ipywidgets and nbgitpuller there).
#    Not vmkit's `class` extra: its jupyterhub pin would replace the user environment's
#    jupyterhub, which TLJH keeps at the hub's version. Then the guest artifacts, built once
#    into a shared cache the students only read.
"$tljh/user/bin/python3" -m pip install -q "$project" ipykernel "myst-nb>=1,<2"
mkdir -p "$cache"
VMKIT_CACHE=$cache "$tljh/user/bin/vmkit" fetch
chmod -R a+rX,go-w "$cache"

# 7. The hub's snippet (KVM group, limits, Podman socket, class mode) and the limits.
install -D -m 0644 "$here/jupyterhub_config.d/vmkit.py" "$tljh/config/jupyterhub_config.d/vmkit.py"
tljh-config set limits.memory "$memory"
tljh-config set limits.cpu "$cpus"
tljh-config set user_environment.default_app jupyterlab
tljh-config reload hub
echo "준비됨: 학생마다 메모리 $memory, CPU $cpus개. 학생 추가: tljh-config add-item users.allowed 이름"
