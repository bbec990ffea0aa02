"""QEMU's memory by kind of mapping (vmkit.smaps), and the translation-buffer option."""

import pytest

from vmkit import qemu, smaps
from vmkit.vm import VM

SMAPS = """\
55d0c0000000-55d0c0500000 r-xp 00000000 08:01 123 /usr/bin/qemu-system-x86_64
Size:               5120 kB
Pss:                5000 kB
7f0000000000-7f0008000000 rw-p 00000000 00:00 0
Size:             131072 kB
Pss:               92160 kB
7f1000000000-7f1040000000 rwxp 00000000 00:00 0
Size:            1047552 kB
Pss:               38912 kB
7f2000000000-7f2003200000 rw-p 00000000 08:01 456 /cache/vmlinux
Size:              51200 kB
Pss:               45056 kB
7f3000000000-7f3000100000 r--p 00000000 08:01 789 /usr/lib/x86_64-linux-gnu/libglib-2.0.so.0.7400.6
Size:               1024 kB
Pss:                 512 kB
7f4000000000-7f4000a00000 rw-p 00000000 00:00 0                          [heap]
Size:              10240 kB
Pss:                4096 kB
"""


def test_accounting_sorts_each_mapping_into_its_kind():
    totals = smaps.accounting(SMAPS, 128 << 20, ("/cache/vmlinux",), "/usr/bin/qemu-system-x86_64")
    assert totals == {"guest_ram": 92160 << 10, "kernel": 45056 << 10, "tcg_buffer": 38912 << 10,
                      "qemu_binary": 5000 << 10, "libraries": 512 << 10, "other": 4096 << 10,
                      "total": (92160 + 45056 + 38912 + 5000 + 512 + 4096) << 10}


def test_mappings_reads_size_and_pss_in_bytes():
    first = smaps.mappings(SMAPS)[0]
    assert first == {"perms": "r-xp", "path": "/usr/bin/qemu-system-x86_64",
                     "size": 5120 << 10, "pss": 5000 << 10}


def test_translation_buffer_size_goes_into_the_accel_option(monkeypatch):
    monkeypatch.delenv("VMKIT_TCG_TB_SIZE", raising=False)
    assert qemu.Machine(tb_size_mib=16).accel_args() == ["-accel", "tcg,thread=single,tb-size=16"]
    assert qemu.Machine(tb_size_mib=None).accel_args() == ["-accel", "tcg,thread=single"]
    assert qemu.Machine(accel="kvm", tb_size_mib=16).accel_args() == ["-accel", "kvm"]
    monkeypatch.setenv("VMKIT_TCG_TB_SIZE", "32")
    assert qemu.Machine().tb_size_mib == 32
    monkeypatch.setenv("VMKIT_TCG_TB_SIZE", "0")
    assert qemu.Machine().tb_size_mib is None
    monkeypatch.setenv("VMKIT_TCG_TB_SIZE", "abc")
    assert qemu.Machine().tb_size_mib == qemu.TB_SIZE_MIB


@pytest.mark.integration
def test_a_real_idle_vm_is_accounted_for(guest_artifacts):
    with VM(memory="128M") as vm:
        totals = smaps.of_vm(vm)
    assert totals["total"] == sum(totals[kind] for kind in smaps.KINDS)
    assert 0 < totals["guest_ram"] <= 128 << 20
    assert totals["kernel"] > 0 and totals["qemu_binary"] > 0 and totals["libraries"] > 0
    if vm.accel == "tcg":
        assert totals["tcg_buffer"] > 0
