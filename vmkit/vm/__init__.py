"""The VM side: one QEMU guest, started and steered over QMP.

`vm.VM` is the workload (`workload.Workload`); `qemu` builds QEMU's command line, `qmp`
holds a QMP session on vmkit's background loop, `agent_channel` speaks the guest agent's
line protocol, `accel` decides by a real boot whether KVM and TCG work here, and `smaps`
reads where a QEMU process's memory goes.

Imports: `guest`, `host` and the shared vocabulary; never `container` (its peer) nor
anything above (experiments, front ends).
"""
