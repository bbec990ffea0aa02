"""What this host is and what vmkit owns on it.

The run mode (root, class, plain user), vmkit's cache and state directories, the memory
guard that refuses a start the host cannot hold, KSM, the vCPU scheduler's view of threads,
the background event loop and the PDEATHSIG spawn, the reaper that stops this process's
workloads when it is told to end, the sweep of what dead sessions left, and run ids.

Imports: the shared vocabulary only (`errors`, `units`, `workload`). Nothing here knows a
VM or a container by class: they enter `workload.live()`, and the container side registers
what the memory guard should list of other processes (`memguard.register_foreign`).
"""
