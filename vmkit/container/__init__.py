"""The container side: one container on a Docker-API engine (Docker Engine, rootless Podman).

`container.Container` is the workload (`workload.Workload`); `engine` finds or starts the
engine and makes its client, `engine_kinds` describes each kind of engine as data, `limits`
says which limits an engine applies, and `host` reads the container's processes and cgroup
from the host's side. What the Container uses that is not its own lifecycle has a module
of its own: `checks`, `connection`, `images`, `settings`, `output`, `events`, `execs`,
`inside`, `usage`, `foreign` and `streams` (see `container`).

Imports: `guest`, `host` and the shared vocabulary; never `vm` (its peer) nor anything above.
"""
