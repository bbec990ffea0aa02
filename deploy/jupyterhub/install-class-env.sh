#!/usr/bin/env bash
# The students' environment for the class hub (run as root; `make class-env` calls it):
#   PREFIX/venv                  Debian's python3 with vmkit[class] installed as a copy, so
#                                students need no access to this checkout or to root's Python
#   PREFIX/cache                 the guest artifacts, read-only for students (VMKIT_CACHE)
#   PREFIX/bin/vmkit-singleuser  the server launcher (the student's own rootless Podman)
#   PREFIX/containers.conf       the students' Podman settings (CONTAINERS_CONF)
# Idempotent: the dependencies are installed when pyproject.toml changes, vmkit itself always.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/../.." && pwd)
prefix=${1:-/opt/vmkit-class}
python=${CLASS_PYTHON:-/usr/bin/python3}

if [ "$(id -u)" != 0 ]; then
  echo "수업 환경(class environment)은 root로 만듭니다: sudo make class-env" >&2
  exit 1
fi
umask 022
mkdir -p "$prefix/bin" "$prefix/cache"
[ -x "$prefix/venv/bin/python" ] || "$python" -m venv "$prefix/venv"
deps_stamp="$prefix/venv/.deps-$(sha256sum "$project/pyproject.toml" | cut -c1-16)"
if [ ! -e "$deps_stamp" ]; then
  echo "수업 환경: 패키지 설치 ($prefix/venv)"
  "$prefix/venv/bin/python" -m pip install -q "$project[class]"
  rm -f "$prefix"/venv/.deps-*
  touch "$deps_stamp"
fi
"$prefix/venv/bin/python" -m pip install -q --no-deps --force-reinstall "$project"

# The guest artifacts this checkout uses, copied whole (a set is a verified directory): x86_64
# always, aarch64 when built (lab 05; also what graded notebooks use, vmkit/grading/sandbox.py).
for arch in x86_64 aarch64; do
  artifacts=$("$project/.venv/bin/python" -c \
    "from vmkit.guest import artifacts; a = artifacts.newest_built('$arch'); print(a.root if a else '')")
  if [ -z "$artifacts" ]; then
    [ "$arch" = aarch64 ] && continue
    echo "게스트 아티팩트(guest artifacts)가 없습니다: 먼저 make artifacts" >&2
    exit 1
  fi
  if [ ! -d "$prefix/cache/$(basename "$artifacts")" ]; then
    rm -rf "$prefix/cache/.partial"
    cp -a "$artifacts" "$prefix/cache/.partial"
    mv "$prefix/cache/.partial" "$prefix/cache/$(basename "$artifacts")"
  fi
done
install -m 0755 "$here/start-singleuser" "$prefix/bin/vmkit-singleuser"
install -m 0644 "$here/containers.conf" "$prefix/containers.conf"
chmod -R a+rX,go-w "$prefix"
echo "수업 환경 준비됨: $prefix"
