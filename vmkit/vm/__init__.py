"""The VM side: one QEMU guest, started and steered over QMP.

`vm.VM` is the workload (`workload.Workload`); `qemu` builds QEMU's command line, `qmp`
holds a QMP session on vmkit's background loop, `agent_channel` speaks the guest agent's
line protocol, `accel` decides by a real boot whether KVM and TCG work here, and `smaps`
reads where a QEMU process's memory goes. The VM's helpers, each owning one part of a
running guest: `console` (QEMU's stdio and the boot's phases), `events` (QMP events to
listeners), `rundir` (the private runtime directory and who owns it), `snapshot` (the
snapshot file), and `resources` (vCPU threads, RAM and the balloon as the host sees them).

Imports: `guest`, `host` and the shared vocabulary; never `container` (its peer) nor
anything above (experiments, front ends).
"""
