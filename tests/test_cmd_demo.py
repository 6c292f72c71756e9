"""`mpinit demo`'s summary: timeline parsing from a console capture (real agent line formats), the summary text."""

from mpinit import cli
from mpinit.cmd_demo import kernel_init_time, parse_timeline, summary
from mpinit.qemu import BootResult

CONSOLE = """[    1.522090] Run /init as init process\r
[    2.323415] mpinit: early: /dev by devtmpfs, console yes, keymap none (18 ms)\r
[    2.331730] mpinit: cmdline: start\r
[    3.327827] mpinit: modules: 19 loaded (9 by coldplug), 0 failed (995 ms)\r
[    3.777330] mpinit: devices: LABEL=MPLIVE is /dev/vda1 (10 block devices, 440 ms) (448 ms)\r
mpinit: toram: 100% 0/0 MiB 92.9 MB/s done\r
[    3.80] mpinit: root: done in 12 ms\r
mpinit: handoff: done in 3 ms\r
garbage mpinit: : (1 ms)\r
MPINIT-LIVE-OK uptime=4.03 rootfs=overlay rw=yes cmdline=root=live:LABEL=MPLIVE console=ttyS0\r
"""


def test_timeline_reads_both_duration_forms_and_skips_the_rest():
    stages = parse_timeline(CONSOLE)
    assert [(s.stage, s.duration_ms) for s in stages] == [
        ("early", 18), ("modules", 995), ("devices", 448), ("root", 12), ("handoff", 3)]
    assert stages[0].at_s == 2.323415 and stages[-1].at_s is None
    assert stages[2].text == "LABEL=MPLIVE is /dev/vda1 (10 block devices, 440 ms)"


def test_kernel_handover_time():
    assert kernel_init_time(CONSOLE) == 1.522090
    assert kernel_init_time("no kernel here") is None


def test_summary_of_a_good_and_a_failed_boot():
    out = CONSOLE.replace("\r", "")
    good = BootResult(ok=True, output=out, elapsed_s=5.0, marker_line=out.split("\n")[-2])
    text = summary(good, 3 * 1024 * 1024, "/x/initrd.img")
    assert "time to the live root:  4.03 s" in text
    assert "initramfs size:         3145728 bytes (3.00 MiB) - /x/initrd.img" in text
    assert "kernel to /init:        1.52 s" in text
    assert "modules        995 ms" in text and "total in stages: 1476 ms" in text
    bad = BootResult(ok=False, output="nothing", elapsed_s=9.0, marker_line=None, timed_out=True)
    text = summary(bad, 10)
    assert "NO (QEMU killed at the deadline after 9.0 s" in text
    assert "no `mpinit: <stage>" in text


def test_demo_names_a_missing_runtime(tmp_path, capsys):
    assert cli.main(["demo", "--runtime", str(tmp_path / "no-init")]) == 2
    assert "no-init" in capsys.readouterr().err


def test_boot_chart_is_written_next_to_the_console_log(tmp_path):
    from pathlib import Path

    from mpinit.cmd_demo import boot_chart

    log = tmp_path / "console.log"
    log.write_text((Path(__file__).with_name("data") / "console-live-boot.log").read_text())
    line = boot_chart(log, tmp_path / "boot.svg")
    assert line.startswith("boot chart:  %s" % (tmp_path / "boot.svg")) and "mpinit analyze" in line
    assert (tmp_path / "boot.svg").read_text().startswith("<?xml")
    log.write_text("QEMU exited before the kernel said anything\n")
    assert "not written" in boot_chart(log, tmp_path / "other.svg")
    assert not (tmp_path / "other.svg").exists()
