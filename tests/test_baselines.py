"""The benchmark's three plain-QEMU baselines boot the same artifacts to the same marker.

No timing is asserted: the figures belong to `make bench`. What is checked is that each
command line really is what its name says and really boots vmkit's kernel and initramfs to
`VMKIT-READY`, and that the initcall parser reads a real `initcall_debug` log.
"""

import pytest

from benchmarks import baselines
from vmkit.guest import arches, artifacts
from vmkit.vm import qemu

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def arts(guest_artifacts):
    return artifacts.require()


def test_each_baseline_names_the_same_kernel_and_initramfs(arts):
    lines = {name: baselines.ARGV[name](arts, 256) for name in baselines.NAMES}
    for name, argv in lines.items():
        assert argv[argv.index("-initrd") + 1] == str(arts.initrd), name
        assert argv[argv.index("-m") + 1] == "256M"
    assert lines["typical"][lines["typical"].index("-kernel") + 1] == str(arts.vmlinuz)
    assert lines["tuned-q35"][lines["tuned-q35"].index("-kernel") + 1] == str(arts.vmlinuz)
    assert lines["expert"][lines["expert"].index("-kernel") + 1] == str(arts.kernel)


def test_tuned_q35_and_expert_use_vmkits_kernel_arguments_and_no_defaults(arts):
    tuned, expert = baselines.tuned_q35_argv(arts, 256), baselines.expert_argv(arts, 256)
    line = qemu.kernel_command_line(arches.lookup(arts.arch))
    assert line.startswith(qemu.KERNEL_ARGS)
    assert tuned[tuned.index("-append") + 1] == line
    assert expert[expert.index("-append") + 1] == line
    assert "-nodefaults" in tuned and "tcg,thread=single" in tuned
    assert "q35" in tuned and "-nodefaults" not in baselines.typical_argv(arts, 256)


def test_expert_is_vmkits_own_line_without_qmp_agent_or_sandbox(arts):
    expert = baselines.expert_argv(arts, 256)
    full = qemu.argv(qemu.Machine(memory_mib=256), arts, qmp_socket="/tmp/q.sock",
                     agent_socket="/tmp/a.sock")
    assert "-qmp" not in expert and "-sandbox" not in expert and "virtserialport" not in " ".join(expert)
    rest = iter(full)
    assert all(arg in rest for arg in expert)  # in order, a part of vmkit's own line


@pytest.mark.parametrize("name", baselines.NAMES)
def test_baseline_boots_to_the_ready_marker(arts, name):
    run = baselines.boot(baselines.ARGV[name](arts, 256), timeout=90)
    assert run["ready_s"] is not None, run["console"][-500:]
    assert qemu.READY_MARKER in run["console"]
    assert run["first_output_s"] <= run["ready_s"]


def test_initcalls_are_read_from_a_real_initcall_debug_boot(arts):
    report = baselines.initcalls(arts, top=10)
    assert report["ready_s"] is not None
    assert report["count"] > 100  # a cloud kernel runs hundreds of initcalls
    assert len(report["top"]) == 10
    seconds = [call["seconds"] for call in report["top"]]
    assert seconds == sorted(seconds, reverse=True) and seconds[0] > 0
    assert all(call["initcall"].isidentifier() for call in report["top"])


def test_parse_initcalls_takes_name_and_duration():
    log = ("[    0.1] calling  inet6_init+0x0/0x3a0 @ 1\n"
           "[    0.3] initcall inet6_init+0x0/0x3a0 returned 0 after 170123 usecs\n"
           "[    0.4] initcall acpi_init+0x0/0x4c0 returned -19 after 52000 usecs\n")
    assert baselines.parse_initcalls(log) == [("inet6_init", 0.170123), ("acpi_init", 0.052)]
