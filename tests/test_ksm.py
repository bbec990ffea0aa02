"""vmkit.host.ksm: reading and (for a block) turning on the host's KSM, on a directory laid out
like /sys/kernel/mm/ksm; and the real host's status as vmkit doctor reports it."""

import pytest

from vmkit.host import ksm
from vmkit.experiments import readiness


def fake_sysfs(root, **values):
    root.mkdir()
    for name, value in {"run": 0, "pages_to_scan": 100, "pages_sharing": 0, "full_scans": 0,
                        **values}.items():
        (root / name).write_text(f"{value}\n")
    return root


def test_status_says_whether_ksm_exists_and_runs(tmp_path):
    missing = ksm.status(tmp_path / "nothing")
    assert missing["available"] is False and "KSM" in missing["reason"]
    off = ksm.status(fake_sysfs(tmp_path / "off"))
    assert off["available"] and not off["running"] and ksm.HOW_TO_ENABLE in off["reason"]
    on = ksm.status(fake_sysfs(tmp_path / "on", run=1, pages_sharing=2560))
    assert on["running"] and on["pages_sharing"] == 2560 and "10 MiB" in on["reason"]


def test_enabled_restores_what_the_host_had(tmp_path):
    root = fake_sysfs(tmp_path / "ksm", pages_to_scan=123)
    with ksm.enabled(pages_to_scan=2000, root=root) as saved:
        assert saved == {"run": 0, "pages_to_scan": 123}
        assert ksm.read("run", root) == 1 and ksm.read("pages_to_scan", root) == 2000
    assert ksm.read("run", root) == 0 and ksm.read("pages_to_scan", root) == 123
    with pytest.raises(RuntimeError), ksm.enabled(root=root):
        raise RuntimeError("the block failed")
    assert ksm.read("run", root) == 0
    with pytest.raises(OSError), ksm.enabled(root=tmp_path / "nothing"):
        pass


def test_settle_waits_for_scans_that_merge_nothing_more(tmp_path, monkeypatch):
    root = fake_sysfs(tmp_path / "ksm", run=1, pages_sharing=500, full_scans=10)
    scans = iter([(600, 11), (700, 12), (700, 13), (700, 14), (700, 15)])

    def one_more_scan(_seconds):  # each poll finds ksmd one full scan further
        sharing, count = next(scans)
        (root / "pages_sharing").write_text(str(sharing))
        (root / "full_scans").write_text(str(count))

    monkeypatch.setattr(ksm.time, "sleep", one_more_scan)
    result = ksm.settle(idle_scans=2, timeout=60, root=root)
    assert result["settled"] and result["pages_sharing"] == 700 and result["full_scans"] == 14


def test_doctor_reports_the_hosts_ksm():
    report = readiness.doctor()["ksm"]
    assert report["available"] == ksm.SYSFS.joinpath("run").exists()
    assert report["running"] == (ksm.read("run") == 1)
