"""QEMU's memory by kind of mapping (vmkit.vm.smaps), and the translation-buffer option."""

import time
from pathlib import Path

import pytest

from vmkit.vm import qemu, smaps
from vmkit.vm.vm import VM

SMAPS = """\
55d0c0000000-55d0c0500000 r-xp 00000000 08:01 123 /usr/bin/qemu-system-x86_64
Size:               5120 kB
Pss:                5000 kB
7f0000000000-7f0008000000 rw-p 00000000 00:00 0
Size:             131072 kB
Pss:               92160 kB
VmFlags: rd wr mr mw me ac sd mg
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
                     "size": 5120 << 10, "pss": 5000 << 10, "flags": ()}
    assert smaps.mappings(SMAPS)[1]["flags"] == ("rd", "wr", "mr", "mw", "me", "ac", "sd", "mg")


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


def test_free_page_reporting_goes_on_the_balloon(monkeypatch, tmp_path):
    from vmkit.guest import artifacts

    monkeypatch.delenv("VMKIT_FREE_PAGE_REPORTING", raising=False)
    arts = artifacts.Artifacts("v", tmp_path, "r", "k", "b", ())
    argv = qemu.argv(qemu.Machine(), arts)
    assert "virtio-balloon-device,id=balloon0,free-page-reporting=on" in argv
    monkeypatch.setenv("VMKIT_FREE_PAGE_REPORTING", "0")
    assert "virtio-balloon-device,id=balloon0" in qemu.argv(qemu.Machine(), arts)
    monkeypatch.setenv("VMKIT_FREE_PAGE_REPORTING", "yes")
    assert qemu.Machine().free_page_reporting is qemu.FREE_PAGE_REPORTING


@pytest.mark.integration
def test_a_real_idle_vm_is_accounted_for(guest_artifacts):
    with VM(memory="128M") as vm:
        totals = smaps.of_vm(vm)
    assert totals["total"] == sum(totals[kind] for kind in smaps.KINDS)
    assert 0 < totals["guest_ram"] <= 128 << 20
    assert totals["kernel"] > 0 and totals["qemu_binary"] > 0 and totals["libraries"] > 0
    if vm.accel == "tcg":
        assert totals["tcg_buffer"] > 0


@pytest.mark.integration
def test_memory_the_guest_frees_goes_back_to_the_host(guest_artifacts):
    """Free page reporting: 32 MiB a guest program touches and frees leave QEMU's guest RAM
    within 8 MiB of where it was (without reporting it stays about 17 MiB higher); KSM may
    merge the guest RAM (VmFlags "mg")."""
    with VM(memory="128M") as vm:
        assert vm.guest("cat /sys/module/page_reporting/parameters/page_reporting_order").strip() == "5"
        ram = next(m for m in smaps.mappings(Path(f"/proc/{vm.pid}/smaps").read_text())
                   if smaps.kind(m, vm.memory_bytes) == "guest_ram")
        assert "mg" in ram["flags"]
        before = smaps.of_vm(vm)["guest_ram"]
        vm.guest("dd if=/dev/zero of=/dev/null bs=32M count=1 2>/dev/null")
        deadline = time.monotonic() + 15
        while (after := smaps.of_vm(vm)["guest_ram"]) > before + (8 << 20):
            assert time.monotonic() < deadline, f"guest RAM {before >> 20} → {after >> 20} MiB"
            time.sleep(0.5)


def test_memory_benchmark_settings_and_goal():
    from benchmarks import vm_memory

    assert vm_memory.setting_env("plain") == {"VMKIT_FREE_PAGE_REPORTING": "0", "VMKIT_TCG_TB_SIZE": "0"}
    assert vm_memory.setting_env("tb-size=16")["VMKIT_TCG_TB_SIZE"] == "16"
    with pytest.raises(ValueError):
        vm_memory.setting_env("tb-size=abc")
    MiB = 1 << 20
    parts = dict.fromkeys(smaps.KINDS, 10 * MiB)

    def idle(per_vm_mib):
        return {"per_vm_pss_bytes": per_vm_mib * MiB, "breakdown_bytes": parts}

    result = {"adopted": "reporting", "settings": {
        "plain": {"boots": {"boots": 50, "succeeded": 50, "ready_median_s": 2.0}, "boot_slowdown": 0.0,
                  "idle": {"1": idle(218), "8": idle(157)}, "fit_in_4_gib": 26},
        "reporting": {"boots": {"boots": 50, "succeeded": 50, "ready_median_s": 2.06}, "boot_slowdown": 0.03,
                      "idle": {"1": idle(203), "8": idle(143)}, "fit_in_4_gib": 28}},
        "ksm": {"idle": {"8": {**idle(84), "ksm": {"seconds": 20.0, "settled": True, "pages_sharing": 70541},
                               "ksmd_cpu_percent": 0.4, "ksm_pages_to_scan": 100}}, "fit_in_4_gib": 48}}
    target = vm_memory.goal(result)
    assert target["per_vm_at_8_mib"] == {"alone": 143.0, "ksm": 84.0}
    assert target["per_vm_ok"] == {"alone": False, "ksm": True} and target["boot_ok"] and target["boots_ok"]
    result["goal"] = target
    text = vm_memory.table(result)
    assert "KSM 없이 143 MiB ✘, KSM 켬 84 MiB ✔" in text and "(채택)" in text and "48개" in text


def test_a_vm_takes_free_page_reporting_as_a_boolean_only():
    from vmkit.errors import InvalidInput

    assert VM(memory="128M", free_page_reporting=False).free_page_reporting is False
    with pytest.raises(InvalidInput) as info:
        VM(memory="128M", free_page_reporting="yes")
    assert "free_page_reporting" in str(info.value)
