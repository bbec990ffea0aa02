"""What a guest is made of, for a VM and a container alike.

The architectures vmkit can boot (`arches`, data not branches), and the guest artifacts
built from the distribution's packages and cached (`artifacts`): a Linux kernel, a BusyBox
userland, the initramfs made from it (`cpio`), and a container image made from the same
userland, so that a VM and a container run the same programs. The guest's own init and
agent scripts are the files `init` and `agent` beside this module.

Imports: `host` and the shared vocabulary. Both `vm` and `container` import it.
"""
