"""What the labs measure, built on VMs and containers: `from vmkit.experiments import emulation`.

`compare` (cold boot, snapshot restore and container start, side by side, and density),
`emulation` (TCG against KVM and the host), `mempool` (balloon and guest memory), `clock`
(a guest's clock across a pause), `isolation` and `isolation_plots` (namespaces and cgroup
limits), `crossarch` (a guest of another architecture), `environment` (what a measurement
ran on), `readiness` (`vmkit doctor`), and `plots` with Korean labels.

Imports: `vm`, `container`, `guest`, `host` and the shared vocabulary; never a front end
(`cli`, `widgets`, `grading`).
"""
