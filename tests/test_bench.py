"""The benchmark's own code (bench/): statistics, console parsing, the peer image, the report, the CLI options.
No timing is asserted here: the figures themselves are the benchmark's output, not test results."""

import gzip
import importlib.util
import statistics
import stat as st
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT, require_tools

sys.path.insert(0, str(ROOT / "bench"))

from mpbench import parse, peer, report, stats  # noqa: E402
from mpbench.report import Metric, Target  # noqa: E402
from mpinit import cpio  # noqa: E402

try:
    from hypothesis import given
    from hypothesis import strategies as hs
except ImportError:  # pragma: no cover
    given = None


# --- stats -------------------------------------------------------------------------------------------------

def test_quantiles_match_the_inclusive_method_of_the_standard_library():
    data = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.3]
    s = stats.summarize(data)
    q1, med, q3 = statistics.quantiles(data, n=4, method="inclusive")
    assert (s.n, s.min, s.max) == (7, 1.0, 9.0)
    assert s.median == pytest.approx(med) and s.median == statistics.median(data)
    assert s.q1 == pytest.approx(q1) and s.q3 == pytest.approx(q3)
    assert s.iqr == pytest.approx(q3 - q1)


def test_summary_of_one_and_of_none():
    s = stats.summarize([2.5])
    assert (s.median, s.min, s.max, s.q1, s.q3) == (2.5, 2.5, 2.5, 2.5, 2.5)
    assert stats.summarize([]) is None
    with pytest.raises(ValueError, match="no values"):
        stats.quantile([], 0.5)
    with pytest.raises(ValueError, match="within 0..1"):
        stats.quantile([1.0], 1.5)


def test_ratio_is_of_medians_and_none_when_a_side_is_missing():
    assert stats.ratio(stats.summarize([1, 2, 3]), stats.summarize([4, 4, 8])) == pytest.approx(0.5)
    assert stats.ratio(None, stats.summarize([1])) is None
    assert stats.ratio(stats.summarize([1]), None) is None
    assert stats.ratio(stats.summarize([1]), stats.summarize([0])) is None


if given is not None:
    @given(hs.lists(hs.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=40))
    def test_summary_is_ordered(values):
        s = stats.summarize(values)
        assert s.min <= s.q1 <= s.median <= s.q3 <= s.max
        assert s.min == min(values) and s.max == max(values)


# --- console parsing ---------------------------------------------------------------------------------------

OURS_CONSOLE = """\
[    1.513623] Write protecting the kernel read-only data: 26624k
[    1.522090] Run /init as init process
[    2.763395] mpinit: early: /dev by devtmpfs, console yes, keymap none (56 ms)
mpinit: toram:  40% 100/256 MiB 50.2 MB/s ETA 3 smpinit: toram: 100% 256/256 MiB 61.7 MB/s done
[    3.101500] mpinit: handoff: switching to /sysroot, exec /sbin/init (VmHWM: 1876 kB)
MPINIT-LIVE-OK uptime=3.45 rootfs=overlay rw=yes cmdline=root=live:LABEL=MPLIVE printk.time=1
"""

PEER_CONSOLE = """\
[    2.035727] Run /init as init process
[    2.301273] bbinit: start
[    4.866955] bbinit: toram: copied 66998272 bytes in 4.06 .. 4.92 s
[    5.237057] bbinit: VmHWM: 1724 kB
[    5.238515] bbinit: switch_root
MPINIT-LIVE-OK uptime=5.60 rootfs=overlay rw=yes cmdline=root=live:LABEL=MPLIVE
"""


def test_time_in_init_is_from_run_init_to_the_handoff_line():
    assert parse.time_in_init(OURS_CONSOLE, parse.OURS_HANDOFF) == pytest.approx(3.1015 - 1.52209)
    assert parse.time_in_init(PEER_CONSOLE, parse.PEER_HANDOFF) == pytest.approx(5.238515 - 2.035727)


def test_a_stamp_in_the_middle_of_a_line_starts_a_new_piece():
    pieces = parse.stamped("progress 10%[    4.000100] virtio_blk: vda\nno stamp here\n[ 12.5] x")
    assert pieces == [(4.0001, "virtio_blk: vda"), (12.5, "x")]


def test_missing_lines_raise_parse_errors_naming_what_was_looked_for():
    with pytest.raises(parse.ParseError, match="boot 3.*Run /init"):
        parse.time_in_init("[ 1.0] nothing\n", parse.OURS_HANDOFF, "boot 3")
    with pytest.raises(parse.ParseError, match="mpinit: handoff"):
        parse.time_in_init("[ 1.0] Run /init as init process\n", parse.OURS_HANDOFF)
    with pytest.raises(parse.ParseError, match="before"):
        parse.time_in_init("[ 0.5] bbinit: switch_root\n[ 1.0] Run /init as init process\n", parse.PEER_HANDOFF)
    with pytest.raises(parse.ParseError, match="MPINIT-LIVE-OK"):
        parse.marker_uptime("[ 1.0] Run /init as init process\n")
    with pytest.raises(parse.ParseError, match="VmHWM"):
        parse.vmhwm_kb(PEER_CONSOLE, parse.OURS_VMHWM)


def test_marker_uptime_and_vmhwm():
    assert parse.marker_uptime(OURS_CONSOLE) == 3.45
    assert parse.marker_uptime(PEER_CONSOLE) == 5.60
    assert parse.vmhwm_kb(OURS_CONSOLE, parse.OURS_VMHWM) == 1876
    assert parse.vmhwm_kb(PEER_CONSOLE, parse.PEER_VMHWM) == 1724
    with pytest.raises(parse.ParseError, match="bad uptime"):
        parse.marker_uptime("MPINIT-LIVE-OK uptime=soon rootfs=overlay\n")


def test_toram_rates_of_both_sides():
    assert parse.ours_toram_mbps(OURS_CONSOLE) == pytest.approx(61.7)
    assert parse.peer_toram(PEER_CONSOLE) == (66998272, pytest.approx(0.86))
    assert parse.peer_toram_mbps(PEER_CONSOLE) == pytest.approx(66998272 / 0.86 / 1e6)


def test_toram_without_a_completed_copy_is_an_error():
    with pytest.raises(parse.ParseError, match="completed"):
        parse.ours_toram_mbps("mpinit: toram:  40% 100/256 MiB 50.2 MB/s ETA 3 s\n")
    with pytest.raises(parse.ParseError, match="no measurable time"):
        parse.peer_toram_mbps("bbinit: toram: copied 100 bytes in 4.06 .. 4.06 s\n")
    with pytest.raises(parse.ParseError, match="copied"):
        parse.peer_toram_mbps(OURS_CONSOLE)


def test_progress_line_of_the_agent_parses():
    """The agent's own formatter (toram.progress_line) produces what the parser reads."""
    from mpinit_agent import toram

    line = toram.progress_line(256 << 20, 256 << 20, 4350)
    assert parse.ours_toram_mbps(line + "\n") == pytest.approx((256 << 20) / 4.35 / 1e6, abs=0.1)


def test_failure_hint_keeps_the_interesting_lines():
    out = "[ 1.0] boring\n[ 2.0] mpinit: boot failed in stage 'medium'\nmore boring\nKernel panic - not syncing\n"
    assert parse.failure_hint(out) == ["[ 2.0] mpinit: boot failed in stage 'medium'",
                                       "Kernel panic - not syncing"]


# --- the peer --------------------------------------------------------------------------------------------------

def test_the_script_runs_only_shipped_applets_and_shell_builtins():
    used = peer.commands(peer.init_script())
    assert used - set(peer.APPLETS) - peer.SHELL_WORDS == set()
    # every shipped applet is used (sh is the interpreter of /init itself)
    assert set(peer.APPLETS) - used == {"sh"}


def test_command_finder_sees_commands_after_separators_and_in_substitutions():
    script = 'x=$(findfs LABEL=a) && insmod b.ko || echo no\nfoo | bar; baz\ncase "$w" in a|b) qux ;; esac\n'
    assert {"findfs", "insmod", "echo", "foo", "bar", "baz", "qux"} <= peer.commands(script)


def _line_of(script, needle):
    return next(line.strip() for line in script.split("\n") if needle in line)


def test_the_scripts_log_lines_are_what_the_parser_reads():
    script = peer.init_script()
    toram = _line_of(script, 'log "toram: copied')
    text = toram.split('"', 2)[1].replace("$size", "1000000").replace("$t0", "1.00").replace("$t1", "1.50")
    assert parse.peer_toram("bbinit: " + text) == (1000000, pytest.approx(0.5))
    assert 'log "switch_root"' in script and "bbinit: switch_root" == parse.PEER_HANDOFF
    vm = _line_of(script, 'log "VmHWM:')
    assert vm.startswith('log "VmHWM: $(') and vm.endswith(' kB"')
    assert parse.PEER_VMHWM == "bbinit: VmHWM:"
    # the log lines must be written while /dev/kmsg still exists, i.e. before /dev is moved
    assert script.index('log "switch_root"') < script.index("mount --move /dev")
    assert script.rstrip().endswith("exec switch_root /newroot /sbin/init")


def test_the_script_is_valid_ash():
    require_tools("busybox")
    proc = subprocess.run(["busybox", "sh", "-n", str(peer.INIT_SH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


class _Info:
    def __init__(self, rel):
        self.rel = rel


class _Closure:
    """The part of mpinit.kmod.Closure the peer builder reads."""
    kver = "6.1.0-test"
    modules = ["crc16", "ext4", "virtio_blk"]
    infos = {"crc16": _Info("kernel/lib/crc16.ko"), "ext4": _Info("kernel/fs/ext4/ext4.ko"),
             "virtio_blk": _Info("kernel/drivers/block/virtio_blk.ko")}
    files = [("/lib/modules/6.1.0-test/kernel/lib/crc16.ko", b"\x7fELF crc16"),
             ("/lib/modules/6.1.0-test/kernel/fs/ext4/ext4.ko", b"\x7fELF ext4"),
             ("/lib/modules/6.1.0-test/kernel/drivers/block/virtio_blk.ko", b"\x7fELF vblk")]


def test_module_order_is_the_closure_load_order_as_image_paths():
    assert peer.module_order(_Closure()) == [
        "/lib/modules/6.1.0-test/kernel/lib/crc16.ko", "/lib/modules/6.1.0-test/kernel/fs/ext4/ext4.ko",
        "/lib/modules/6.1.0-test/kernel/drivers/block/virtio_blk.ko"]


def test_peer_image_holds_init_busybox_nodes_modules_and_their_order(tmp_path):
    bb = tmp_path / "busybox"
    bb.write_bytes(b"\x7fELF not really busybox")
    img = peer.build(bb, _Closure(), "gzip:6", script="#!/bin/sh\necho hi\n")
    raw = gzip.decompress(img.image)
    assert len(raw) == img.uncompressed_size
    entries = {e.name: e for m in cpio.read_image(img.image) for e in m.entries}
    init = entries["init"]
    assert init.data == b"#!/bin/sh\necho hi\n" and st.S_IMODE(init.mode) == 0o755 and init.uid == 0
    assert entries["bin/busybox"].data == bb.read_bytes()
    for applet in peer.APPLETS:
        assert entries["bin/" + applet].islnk() and entries["bin/" + applet].data == b"busybox"
    console = entries["dev/console"]
    assert st.S_ISCHR(console.mode) and console.rdev == (5, 1)
    assert entries["etc/modules.order"].data.decode().split() == peer.module_order(_Closure())
    for dest, data in _Closure.files:
        assert entries[dest.lstrip("/")].data == data
    for d in ("proc", "sys", "mnt", "newroot"):
        assert entries[d].isdir()
    assert img.modules == _Closure.modules


def test_peer_image_without_modules_and_with_the_real_script(tmp_path):
    bb = tmp_path / "busybox"
    bb.write_bytes(b"bb")
    img = peer.build(bb, None, "none")
    entries = {e.name: e for m in cpio.read_image(img.image) for e in m.entries}
    assert entries["etc/modules.order"].data == b""
    assert entries["init"].data == peer.INIT_SH.read_bytes()
    assert not any(n.startswith("lib/modules/") for n in entries)


def test_bad_compression_is_refused_naming_it(tmp_path):
    bb = tmp_path / "busybox"
    bb.write_bytes(b"bb")
    from mpinit.compress import CompressError

    with pytest.raises(CompressError, match="brotli"):
        peer.build(bb, None, "brotli")


# --- PID 1's peak memory ----------------------------------------------------------------------------------

def test_our_vmhwm_is_read_from_the_hand_off_line():
    """The agent's hand-off line carries PID 1's VmHWM (handoff.peak_memory_kb(), here this test process's own
    /proc/self/status); the bench reads it from there, with nothing of its own in the image."""
    from mpinit_agent import handoff

    peak = handoff.peak_memory_kb()
    assert peak > 0
    line = "[    2.101495] mpinit: handoff: switching to /sysroot, exec /sbin/init (VmHWM: %d kB)\n" % peak
    assert parse.vmhwm_kb(line, parse.OURS_VMHWM) == peak
    assert parse.time_in_init("[    1.5] Run /init as init process\n" + line, parse.OURS_HANDOFF) > 0


# --- report ------------------------------------------------------------------------------------------------

def _metrics():
    a = Metric("live_root", "time to the live root", "s", ours=[3.0, 3.2, 3.1], peer=[5.0, 5.5, 6.0],
               target=Target("ratio", 0.8, "<= 0.8x busybox"))
    b = Metric("toram", "toram throughput", "MB/s", better="higher", ours=[50.0], peer=[80.0],
               target=Target("ratio", 1.0, ">= 1.0x busybox cp"))
    c = Metric("vmhwm", "peak memory", "kB", ours=[], peer=[1724],
               target=Target("abs", 4096, "<= 4096 kB"), ours_failures=["boot 1: no marker"])
    d = Metric("pack", "pack time", "s", ours=[0.7, 0.9], peer=[2.0, 2.2], target=Target("abs", 1.0, "<= 1 s"))
    return [a, b, c, d]


def test_verdicts_follow_the_direction_and_kind_of_the_target():
    a, b, c, d = _metrics()
    assert a.ratio() == pytest.approx(3.1 / 5.5) and a.verdict() == "yes"
    assert b.ratio() == pytest.approx(50 / 80) and b.verdict() == "no"
    assert c.ratio() is None and c.verdict() == "n/a"
    assert d.verdict() == "yes"
    d.ours = [1.5]
    assert d.verdict() == "no"
    assert Metric("x", "x", "s", ours=[1], peer=[1]).verdict() == "n/a"


def test_markdown_table_has_both_columns_ratios_and_failures():
    md = report.markdown(_metrics(), {"title": "T", "status": "INCOMPLETE", "command": "bench/run.py --runs 3",
                                      "date": "2026-01-01 00:00 UTC", "chart": "results.svg",
                                      "failures": ["ours boot 1: no marker"], "machine": [("QEMU", "7.2")]})
    rows = {line.split("|")[1].strip(): line for line in md.split("\n") if line.startswith("| ")}
    live = rows["time to the live root"]
    assert "3.100 s (3.000 - 3.200, IQR 0.100, n=3)" in live and "5.500 s" in live and "0.56x" in live
    assert live.rstrip().endswith("| yes |")
    assert "not measured (1 failed)" in rows["peak memory"] and "1724 kB" in rows["peak memory"]
    assert "61.7" not in md and "0.62x" in rows["toram throughput"]
    assert "**INCOMPLETE**" in md and "`bench/run.py --runs 3`" in md and "](results.svg)" in md
    assert "- ours boot 1: no marker" in md and "| QEMU | 7.2 |" in md


def test_svg_is_well_formed_and_names_every_figure():
    text = report.svg(_metrics())
    root = ET.fromstring(text)
    assert root.tag.endswith("svg")
    words = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    for m in _metrics():
        assert m.title in words
    assert "not measured" in words  # ours has no peak-memory figure
    assert "0.56x" in words


# --- the command line --------------------------------------------------------------------------------------

def _run_module():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_options_quick_and_defaults():
    run = _run_module()
    a = run.parse_args([])
    assert (a.runs, a.toram_runs, a.pack_runs, a.toram_mb) == (5, 5, 5, 256)
    q = run.parse_args(["--quick"])
    assert (q.runs, q.toram_runs, q.pack_runs, q.toram_mb) == (1, 1, 1, 64)
    assert run.parse_args(["--quick", "--toram-mb", "256"]).toram_mb == 256
    assert run.parse_args(["--runs", "3", "--toram-runs", "2"]).toram_runs == 2


def test_options_refuse_bad_values_naming_them(capsys):
    run = _run_module()
    for argv, word in ((["--runs", "-1"], "--runs -1"), (["--memory", "64"], "--memory 64"),
                       (["--toram-mb", "2"], "--toram-mb 2"), (["--compress", "brotli"], "brotli")):
        with pytest.raises(SystemExit):
            run.parse_args(argv)
        assert word in capsys.readouterr().err


def test_stage_times_take_the_last_duration_of_each_stage_line():
    out = ("[ 2.7] mpinit: early: /dev by devtmpfs, console yes, keymap none (56 ms)\n"
           "[ 2.8] mpinit: cmdline: start\n"
           "[ 4.3] mpinit: devices: LABEL=MPLIVE is /dev/vda1 (2 block devices, 533 ms) (551 ms)\n"
           "[ 4.4] mpinit: bench: VmHWM: 1 kB\n"
           "[ 4.5] mpinit: devices: again (9 ms)\n")
    assert parse.stage_times(out, ("early", "cmdline", "devices")) == {"early": 56, "devices": 551}


def test_a_leading_double_dash_from_build_py_is_dropped():
    run = _run_module()
    a = run.parse_args(["--", "--runs", "3"])
    assert a.runs == 3 and a.argv == ["--runs", "3"]


def test_phases_of_both_sides_run_from_line_to_line():
    ours = ("[ 1.000] Run /init as init process\n[ 1.600] mpinit: modules: 9 loaded (500 ms)\n"
            "[ 1.900] mpinit: devices: LABEL=X is /dev/vda1 (2 block devices, 280 ms) (290 ms)\n"
            "[ 2.000] mpinit: root: overlay of x (upper: tmpfs) (60 ms)\n"
            "[ 2.010] mpinit: handoff: switching to /sysroot, exec /sbin/init\n")
    assert parse.phase_times(ours, "ours") == {"start + modules": 600, "wait for the medium": 300,
                                               "mount medium, (toram), root": 100, "to the hand-off line": 10}
    peer_out = ("[ 2.0] Run /init as init process\n[ 2.5] bbinit: modules: done\n[ 2.75] bbinit: medium: /dev/vda1\n"
                "[ 3.0] bbinit: root: done\n[ 3.01] bbinit: switch_root\n")
    assert parse.phase_times(peer_out, "peer") == {"start + modules": 500, "wait for the medium": 250,
                                                   "mount medium, (toram), root": 250, "to the hand-off line": 10}
    # a missing line ends the breakdown there
    assert parse.phase_times(peer_out.replace("bbinit: medium", "x"), "peer") == {"start + modules": 500}
    assert parse.phase_times("no stamps", "ours") == {}


def test_the_script_logs_every_phase_line_the_parser_reads():
    script = peer.init_script()
    for _, _, line in parse.PHASES:
        assert 'log "%s' % line[len("bbinit: "):] in script


def test_failure_block_starts_at_the_failure_and_drops_repeats():
    out = ("[ 1.0] Run /init as init process\n[ 4.3] mpinit: boot failed in stage 'medium': no medium\n"
           "mpinit: boot failed in stage 'medium': no medium\n  tried:\n    mount -t vfat: errno 19\n"
           "mpinit: rebooting in 10 s (panic=10)\n")
    assert parse.failure_block(out) == ["mpinit: boot failed in stage 'medium': no medium", "  tried:",
                                        "    mount -t vfat: errno 19", "mpinit: rebooting in 10 s (panic=10)"]
    assert parse.failure_block("[ 1.0] bbinit: FAILED: mount /dev/vda1\n") == ["bbinit: FAILED: mount /dev/vda1"]


# --- the peer, booted for real -------------------------------------------------------------------------------

@pytest.mark.e2e
def test_the_peer_boots_the_live_medium_and_reports_its_figures(debian_kernel, tmp_path):
    """The busybox peer, built with the real generic-live closure, boots the e2e medium to the live root's overlay
    and logs every line the benchmark reads (values are not judged: they are the benchmark's output)."""
    require_tools("qemu-system-x86_64", "busybox", "mksquashfs", "sgdisk", "mkfs.vfat", "mcopy")
    from mpinit import atomic, kmod, media, qemu
    from mpinit.initramfs import expand_modules
    from mpinit.liveroot import busybox_path

    run = _run_module()
    closure = kmod.resolve(debian_kernel.modules_dir, expand_modules(["generic-live"]))
    img = tmp_path / "peer.img"
    atomic.write_bytes(img, peer.build(busybox_path(), closure).image)
    r = qemu.boot(debian_kernel.vmlinuz, img, disks=[media.ensure("gpt-vfat").path], append=run.CMDLINE,
                  memory_mb=512, timeout_s=180)
    assert r.ok, "\n".join(parse.failure_block(r.output)) or r.output[-3000:]
    assert r.marker_fields()["rootfs"] == "overlay" and r.marker_fields()["rw"] == "yes"
    # Every module of the set loaded, but for arch/x86/crypto's CPU-feature drivers (crc32c-intel, aesni-intel, ...),
    # whose init says ENODEV on TCG's CPU model.
    failed = [line for line in parse.failure_hint(r.output, 50) if "insmod" in line]
    assert all("/arch/x86/crypto/" in line for line in failed), failed
    assert parse.marker_uptime(r.output) > 0
    assert parse.time_in_init(r.output, parse.PEER_HANDOFF) > 0
    assert parse.vmhwm_kb(r.output, parse.PEER_VMHWM) > 0
    assert list(parse.phase_times(r.output, "peer")) == [name for name, _, _ in parse.PHASES]


# --- the toram medium ----------------------------------------------------------------------------------------

@pytest.mark.tools
def test_toram_medium_is_a_gpt_fat32_mplive_disk_holding_an_image_of_the_size_asked(tmp_path):
    require_tools("busybox", "mksquashfs", "sgdisk", "mkfs.vfat", "mcopy", "mdir")
    from mpbench import medium
    from mpinit import media

    disk = medium.ensure(tmp_path, size_mib=8)
    assert medium.ensure(tmp_path, size_mib=8) == disk  # cached: the same file, not rebuilt
    size = medium.image_size(tmp_path, 8)
    assert 7 * 2**20 < size < 9 * 2**20
    gpt = subprocess.run(["sgdisk", "-i", "1", str(disk)], capture_output=True, text=True, check=True).stdout
    assert media.GPT_PARTUUID.upper() in gpt.upper() and "MPLIVE-PART" in gpt
    offset = "%s@@%d" % (disk, media.PART_START * media.SECTOR)
    listing = subprocess.run(["mdir", "-i", offset, "::/live"], capture_output=True, text=True, check=True,
                             env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}).stdout
    assert "filesystem" in listing and "MPLIVE" in listing
    assert not list(disk.parent.glob("*.tmp")) and not (disk.parent / "tree").exists()


# --- the C floor (bench/cinit/) --------------------------------------------------------------------------------

def test_cinit_config_names_the_medium_and_refuses_newlines():
    from types import SimpleNamespace

    from mpbench import cinit

    m = SimpleNamespace(device="/dev/vda1", fstype="vfat", image="/live/filesystem.squashfs")
    assert cinit.config_text(m).split("\n") == ["medium /dev/vda1", "fstype vfat", "options iocharset=utf8",
                                                "image /live/filesystem.squashfs", ""]
    m.fstype = "ext4"
    assert "options \n" in cinit.config_text(m)
    m.image = "/x\nmedium /dev/sda"
    with pytest.raises(cinit.CinitError, match="newline"):
        cinit.config_text(m)


def test_the_floors_lines_are_what_the_parser_reads():
    source = (ROOT / "bench" / "cinit" / "cinit.c").read_text()
    for _, _, line in parse.PHASES:
        assert 'say("%s' % line[len("bbinit: "):] in source
    assert 'say("switch_root")' in source and parse.FLOOR_HANDOFF == "cinit: switch_root"
    out = ("[ 1.000000] Run /init as init process\n[ 1.010000] cinit: modules: done\n"
           "[ 1.050000] cinit: medium: /dev/vda1\n[ 1.090000] cinit: root: done\n[ 1.095000] cinit: switch_root\n")
    assert parse.phase_times(out, "floor") == {"start + modules": 10, "wait for the medium": 40,
                                               "mount medium, (toram), root": 40, "to the hand-off line": 5}


def test_markdown_has_the_floor_column_and_judges_a_floor_target():
    m = Metric("time_in_init", "time in /init", "s", ours=[0.34], peer=[0.5], floor=[0.3],
               target=Target("floor", 1.15, "<= 1.15x the C floor"))
    assert m.floor_ratio() == pytest.approx(0.34 / 0.3) and m.verdict() == "yes"
    m.ours = [0.4]
    assert m.verdict() == "no"
    md = report.markdown([m], {"title": "T"})
    row = [line for line in md.split("\n") if line.startswith("| time in /init")][0]
    assert "| 0.300 s |" in row and "1.33x" in row and row.rstrip().endswith("| no |")
    assert "C floor" in report.svg([m])


@pytest.mark.e2e
def test_the_c_floor_boots_the_live_medium_and_reports_its_figures(debian_kernel, tmp_path):
    """bench/cinit/cinit.c, built static with musl and the real generic-live closure, boots the e2e medium to the
    live root's overlay and logs every line the benchmark reads."""
    require_tools("qemu-system-x86_64", "musl-gcc", "mksquashfs", "sgdisk", "mkfs.vfat", "mcopy")
    from mpinit import atomic, kmod, media, qemu
    from mpinit.initramfs import expand_modules

    from mpbench import cinit

    run = _run_module()
    closure = kmod.resolve(debian_kernel.modules_dir, expand_modules(["generic-live"]))
    medium = media.ensure("gpt-vfat")
    img = tmp_path / "cinit.img"
    atomic.write_bytes(img, cinit.build(cinit.build_binary(tmp_path), closure, medium).image)
    r = qemu.boot(debian_kernel.vmlinuz, img, disks=[medium.path], append=run.CMDLINE, memory_mb=512,
                  timeout_s=180)
    assert r.ok, "\n".join(parse.failure_block(r.output)) or r.output[-3000:]
    assert r.marker_fields()["rootfs"] == "overlay" and r.marker_fields()["rw"] == "yes"
    assert parse.time_in_init(r.output, parse.FLOOR_HANDOFF) > 0
    assert parse.vmhwm_kb(r.output, parse.FLOOR_VMHWM) > 0
    assert list(parse.phase_times(r.output, "floor")) == [name for name, _, _ in parse.PHASES]


# --- issue 14's report parts: -smp 2, scale, compressors, the kernel's unpack cost -------------------------------

# Recorded from a scale boot with 32 disks (build/bench-scale/ours-32-0.log, trimmed) and a -smp 2 boot.
SCALE_CONSOLE = """\
[    0.639735] smp: Brought up 1 node, 1 CPU
[    2.282719] Run /init as init process
[    2.372145] mpinit: modules: start
[    6.084738] virtio_blk virtio0: [vda] 16384 512-byte logical blocks (8.39 MB/8.00 MiB)
[    6.114914]  vda: vda1 vda2 vda3 vda4
[    6.406814] virtio_blk virtio31: [vdaf] 86016 512-byte logical blocks (44.0 MB/42.0 MiB)
[    6.412576]  vdaf: vdaf1
[    6.567045] mpinit: modules: 10 loaded (10 by coldplug), 0 failed (4194 ms)
[    6.567791] mpinit: devices: start
[    7.689646] mpinit: devices: LABEL=MPLIVE is /dev/vdaf1 (157 block devices, 892 ms) (1122 ms)
[    7.689999] mpinit: network: start
[    7.690176] mpinit: network: skipped: no network boot asked for (1 ms)
[    7.690354] mpinit: medium: start
[    7.739637] mpinit: medium: /run/initramfs/live/live/filesystem.squashfs on /dev/vdaf1 (49 ms)
[    7.841608] mpinit: handoff: switching to /sysroot, exec /sbin/init
"""


def test_cpus_and_run_init_come_from_the_kernels_lines():
    assert parse.cpus(SCALE_CONSOLE) == 1
    assert parse.cpus("[    0.428045] smp: Brought up 1 node, 2 CPUs\n") == 2
    assert parse.run_init_stamp(SCALE_CONSOLE) == pytest.approx(2.282719)
    with pytest.raises(parse.ParseError, match="boot 2: no 'smp: Brought up"):
        parse.cpus(OURS_CONSOLE, "boot 2")


def test_the_kernels_disk_probing_ends_at_its_last_disk_line():
    assert parse.kernel_disk_probe_end(SCALE_CONSOLE) == pytest.approx(6.412576)
    assert parse.kernel_disk_probe_end(SCALE_CONSOLE, until=6.2) == pytest.approx(6.114914)
    # our own "mpinit: devices: ..." lines are not the kernel's partition lists
    assert parse.kernel_disk_probe_end("[ 1.0] mpinit: early: x (3 ms)\n[ 2.0] sda: sda\n") is None


def test_beyond_the_kernel_is_from_the_later_of_the_devices_start_and_the_last_disk_line():
    # the kernel finished probing (6.41) before our devices stage started (7.6896 - 1.122 = 6.5676)
    assert parse.beyond_kernel_ms(SCALE_CONSOLE) == round((7.739637 - (7.689646 - 1.122)) * 1000)
    # a disk probed while our devices stage runs: only what follows it counts
    late = SCALE_CONSOLE.replace("[    6.412576]  vdaf: vdaf1", "[    7.500000]  vdaf: vdaf1")
    assert parse.beyond_kernel_ms(late) == round((7.739637 - 7.5) * 1000)
    assert parse.beyond_kernel_ms(OURS_CONSOLE) is None  # no devices/medium stage lines


def test_toram_and_fetch_share_one_progress_parser_and_one_timed_copy_parser():
    fetch = "mpinit: fetch:  50% 1/2 MiB 1.0 MB/s ETA 1 s\rmpinit: fetch: 100% 2/2 MiB 3.4 MB/s done\n"
    assert parse.progress_mbps(fetch, "fetch") == pytest.approx(3.4)
    with pytest.raises(parse.ParseError, match="'mpinit: toram: 100%"):
        parse.ours_toram_mbps(fetch)
    with pytest.raises(parse.ParseError, match="the toram did not complete"):
        parse.ours_toram_mbps("mpinit: toram: 100% 1/2 MiB 3.4 MB/s done\n")
    assert parse.peer_timed("bbinit: netfetch: fetched 10 bytes in 1.0 .. 3.0 s", parse.PEER_FETCH) == (10, 2.0)
    with pytest.raises(parse.ParseError, match="no 'bbinit: toram: copied"):
        parse.peer_timed("bbinit: netfetch: fetched 10 bytes in 1.0 .. 3.0 s", parse.PEER_TORAM)


if given is not None:
    @given(hs.text(alphabet=hs.sampled_from(list("[] 0123456789.:vdasmpinit:devcsrblock()MCPUBroughtupnode,\n")),
                   max_size=300))
    def test_the_kernel_line_parsers_raise_nothing_but_parse_errors(text):
        for fn in (parse.kernel_disk_probe_end, parse.beyond_kernel_ms):
            fn(text)
        for fn in (parse.cpus, parse.run_init_stamp):
            try:
                fn(text)
            except parse.ParseError:
                pass


def test_slope_is_the_least_squares_one():
    assert stats.slope([(5, 100), (40, 170), (160, 420)]) == pytest.approx(
        statistics.linear_regression([5, 40, 160], [100, 170, 420]).slope)
    assert stats.slope([(5, 1), (5, 2)]) is None and stats.slope([]) is None


def _scale_rows(ours32, peer32, beyond_per_dev):
    rows = []
    for n, devs in ((1, 5), (8, 40), (32, 160)):
        for r in range(2):
            rows.append({"side": "ours", "disks": n, "devices": devs, "ok": True, "devices_ms": 50 + devs,
                         "medium_ms": 50, "beyond_kernel_ms": 20 + beyond_per_dev * devs + r,
                         "in_init_ms": (ours32 if n == 32 else 800 + 2 * devs) + r})
            rows.append({"side": "peer", "disks": n, "devices": devs, "ok": True, "wait_medium_ms": 40 + devs,
                         "in_init_ms": (peer32 if n == 32 else 1100 + 3 * devs) + r})
    return rows


def test_scale_report_has_a_row_per_scale_the_slopes_and_both_targets():
    lines = report.scale_lines(_scale_rows(2000, 2400, 1.5), runs=2)
    table = [line for line in lines if line.startswith("| 32 |")]
    assert len(table) == 1 and "| 160 |" in table[0] and "2000 ms (2000 - 2001, n=2)" in table[0]
    assert "0.83x" in table[0]
    text = "\n".join(lines)
    assert "ours, devices + medium stages: 1.00 ms per block device" in text
    assert "ours, after the kernel's probing: 1.50 ms per block device" in text
    assert "| <= 2 ms per block device beyond the kernel's probing | 1.50 ms | yes |" in text
    assert "| no slower than busybox at 32 disks (time in /init) | 0.83x busybox | yes |" in text
    f = report.scale_figures(_scale_rows(2600, 2400, 10))
    assert (f["slope_met"], f["peer_met"]) == ("no", "no")


def test_scale_targets_are_not_judged_without_their_figures():
    rows = [g for g in _scale_rows(2000, 2400, 1.5) if g["disks"] == 1]
    f = report.scale_figures(rows)
    assert (f["beyond_slope"], f["slope_met"], f["peer_met"]) == (None, "n/a", "n/a")
    failed = _scale_rows(2000, 2400, 1.5)
    for g in failed:
        if g["disks"] == 32 and g["side"] == "peer":
            g["ok"] = False
    text = "\n".join(report.scale_lines(failed))
    assert "not measured (32 disks not in this run or a side failed)" in text and "2 failed" in text


def test_smp2_rows_sit_below_their_smp1_rows():
    run = _run_module()
    ms = [Metric(k, k, "s") for k in ("size_alone", "live_root", "time_in_init", "vmhwm", "live_root_smp2",
                                       "time_in_init_smp2", "toram")]
    assert [m.key for m in run.order(ms)] == ["size_alone", "live_root", "live_root_smp2", "time_in_init",
                                              "time_in_init_smp2", "vmhwm", "toram"]


def test_size_arithmetic_of_the_04x_target():
    run = _run_module()
    # measured 2026-11-29 (demo set): ours alone / with modules, busybox alone / with modules
    sizes = {"gzip": (287997, 1394632, 1033863, 2138901), "xz": (252676, 1007224, 879660, 1631412)}
    lines = run.size_arithmetic(sizes, "gzip")
    rows = [line for line in lines if line.startswith("| gzip") or line.startswith("| xz")]
    assert rows[0] == ("| gzip | 287,997 | 1,106,635 | 1,394,632 | 1,033,863 | 1,105,038 | 2,138,901 | 0.65x | "
                       "0.52x | none (-251,075 B) |")
    assert rows[1].startswith("| xz |") and "| 0.46x |" in rows[1]
    assert lines[-1].startswith("Unreachable: the modules alone are 0.46x of busybox's image at best (xz)")
    small = run.size_arithmetic({"gzip": (100, 300, 1000, 1200)}, "gzip")
    assert small[-3].endswith("| 0.25x | 0.17x | 280 B |")  # 0.4 * 1200 - 200
    assert small[-1].startswith("Reachable: the modules alone are 0.17x")
    assert run.size_arithmetic({}, "gzip") == []


def test_options_of_the_scale_smp2_and_unpack_parts(capsys):
    run = _run_module()
    a = run.parse_args([])
    assert (a.scales, a.scale_runs, a.smp2_runs, a.unpack_runs) == ([1, 8, 32], 3, 5, 2)
    q = run.parse_args(["--quick"])
    assert (q.scales, q.scale_runs, q.smp2_runs, q.unpack_runs) == ([1, 8], 1, 1, 1)
    assert run.parse_args(["--runs", "3", "--smp2-runs", "0"]).smp2_runs == 0
    for argv, word in ((["--scale", "1,x"], "--scale 1,x"), (["--scale", "0"], "--scale 0"),
                       (["--scale-runs", "-1"], "--scale-runs -1")):
        with pytest.raises(SystemExit):
            run.parse_args(argv)
        assert word in capsys.readouterr().err


def test_the_kernel_command_line_is_written_in_one_place():
    from mpbench import guest

    assert guest.cmdline() == guest.CMDLINE and "printk.devkmsg=on" in guest.CMDLINE
    assert guest.cmdline("/dev/vdb1").startswith("root=live:/dev/vdb1 printk.time=1")
    assert "root=" not in guest.common() and guest.smp_args(1) == [] and guest.smp_args(2) == ["-smp", "2"]
    for path in (ROOT / "bench").rglob("*.py"):
        if path.name != "guest.py":
            assert "printk.devkmsg=on console" not in path.read_text(), path


# --- the guest kernel's clock calibration and the host-clock figure ------------------------------------------
# Real console lines of the Debian cloud kernel under TCG (build/bench/logs/boot-ours-2.log: early PIT
# calibration; boot-ours-1.log: late HPET calibration, the printk clock restarting at tsc-early;
# boot-floor-2.log: late HPET calibration without the "Fast TSC calibration failed" line).

PIT_BOOT = """\
[    0.000000] DMI: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[    0.000000] tsc: Fast TSC calibration using PIT
[    0.000000] tsc: Detected 2599.993 MHz processor
[    0.004523] last_pfn = 0x2ffdd max_arch_pfn = 0x400000000
[    0.164278] ..TIMER: vector=0x30 apic1=0 pin1=2 apic2=-1 pin2=-1
[    0.184087] clocksource: tsc-early: mask: 0xffffffffffffffff max_cycles: 0x257a3556805, max_idle_ns: 440795233934 ns
[    1.726746] Run /init as init process
MPINIT-LIVE-OK uptime=2.57 rootfs=overlay rw=yes cmdline=root=live:LABEL=MPLIVE printk.time=1
"""

HPET_BOOT = """\
[    0.000000] tsc: Fast TSC calibration failed
[    0.000000] clocksource: hpet: mask: 0xffffffff max_cycles: 0xffffffff, max_idle_ns: 19112604467 ns
[    0.000000] ..TIMER: vector=0x30 apic1=0 pin1=2 apic2=-1 pin2=-1
[    0.032000] tsc: Unable to calibrate against PIT
[    0.032000] tsc: using HPET reference calibration
[    0.032000] tsc: Detected 2598.088 MHz processor
[    0.001483] clocksource: tsc-early: mask: 0xffffffffffffffff max_cycles: 0x25732e0b351, max_idle_ns: 440795290570 ns
[    1.569919] Run /init as init process
MPINIT-LIVE-OK uptime=2.47 rootfs=overlay rw=yes cmdline=root=live:LABEL=MPLIVE printk.time=1
"""

HPET_BOOT_NO_FAST_LINE = """\
[    0.000000] last_pfn = 0x2ffdd max_arch_pfn = 0x400000000
[    0.032000] tsc: Unable to calibrate against PIT
[    0.032000] tsc: using HPET reference calibration
[    0.032000] tsc: Detected 2597.428 MHz processor
[    0.001669] clocksource: tsc-early: mask: 0xffffffffffffffff max_cycles: 0x2570be567e1, max_idle_ns: 440795222850 ns
"""


def test_calibration_mode_of_real_boots():
    assert parse.calibration(PIT_BOOT) == "PIT"
    assert parse.calibration(HPET_BOOT) == "HPET"
    assert parse.calibration(HPET_BOOT_NO_FAST_LINE) == "HPET"
    # the slow path's other outcomes (arch/x86/kernel/tsc.c pit_hpet_ptimer_calibrate_cpu())
    assert parse.calibration("[    0.040000] tsc: using PMTIMER reference calibration\n") == "PM timer"
    assert parse.calibration("[    0.040000] tsc: PIT calibration matches HPET. 1 loops\n") == "PIT, late"
    with pytest.raises(parse.ParseError, match="calibration line"):
        parse.calibration("[    0.000000] tsc: Detected 2599.993 MHz processor\n")
    # unstamped text (e.g. a shell echoing the words) is not the kernel's line
    with pytest.raises(parse.ParseError):
        parse.calibration("tsc: Fast TSC calibration using PIT\n")


def test_the_printk_clock_restarts_only_in_late_calibration_boots():
    assert parse.clock_restart(PIT_BOOT) is None
    assert parse.clock_restart(HPET_BOOT) == (0.032, 0.001483)
    assert parse.clock_restart(HPET_BOOT_NO_FAST_LINE) == (0.032, 0.001669)


def _clock_of(text, times):
    """A LineClock fed `text` line by line at the given host times (seconds), as qemu.boot's reader would."""
    from mpbench import hostclock

    c = hostclock.LineClock()
    for line, t in zip(text.splitlines(True), times):
        c.feed(100.0 + t, line.replace("\n", "\r\n").encode())
    return c.close()


def test_host_clock_live_root_runs_from_the_first_kernel_line_to_the_marker():
    from mpbench import hostclock

    # recorded arrival times: SeaBIOS-style noise before the kernel's first line is not counted
    text = "SeaBIOS (version 1.16.2)\n" + HPET_BOOT
    times = [0.0, 0.40, 0.40, 0.41, 0.55, 0.55, 0.55, 0.56, 1.95, 2.71]
    c = _clock_of(text, times)
    assert c.lines[1] == (100.40, "[    0.000000] tsc: Fast TSC calibration failed")   # "\r" dropped
    assert hostclock.live_root(c.lines) == pytest.approx(2.71 - 0.40)
    assert hostclock.run_init(c.lines) == pytest.approx(1.95 - 0.40)
    # the .clock file keeps the same figures
    again = hostclock.read(c.dump())
    assert again[0] == (0.0, "SeaBIOS (version 1.16.2)")
    assert hostclock.live_root(again) == pytest.approx(2.31)


def test_a_line_is_stamped_when_its_first_byte_arrives():
    from mpbench import hostclock

    c = hostclock.LineClock()
    c.feed(1.0, b"[    0.000000] Linux ver")
    c.feed(2.0, b"sion 6.1\n[    0.1")
    c.feed(3.0, b"00000] next\nMPINIT-LIVE-OK uptime=1.00")
    c.close()
    assert c.lines == [(1.0, "[    0.000000] Linux version 6.1"), (2.0, "[    0.100000] next"),
                       (3.0, "MPINIT-LIVE-OK uptime=1.00")]
    assert hostclock.live_root(c.lines) == 2.0


def test_host_clock_errors_name_what_is_missing():
    from mpbench import hostclock

    with pytest.raises(hostclock.ClockError, match="printk stamp"):
        hostclock.live_root([(0.0, "no kernel here"), (1.0, "MPINIT-LIVE-OK uptime=1")], "ours boot 1")
    with pytest.raises(hostclock.ClockError, match="MPINIT-LIVE-OK"):
        hostclock.live_root([(0.0, "[    0.000000] x")])
    with pytest.raises(hostclock.ClockError, match="line 2"):
        hostclock.read("0.0\tok\nnot a time\tx\n")
    with pytest.raises(hostclock.ClockError, match="line 1"):
        hostclock.read("no tab here\n")


def test_qemu_boot_hands_each_piece_of_output_to_on_data(tmp_path):
    """mpinit.qemu.boot's on_data callback, driven by a stand-in for QEMU (argv=) that prints two lines apart."""
    from mpbench import hostclock
    from mpinit import qemu

    script = ("import sys, time\nsys.stdout.write('[    0.000000] first\\n'); sys.stdout.flush()\n"
              "time.sleep(0.3)\nsys.stdout.write('MPINIT-LIVE-OK uptime=0.30\\n'); sys.stdout.flush()\n")
    c = hostclock.LineClock()
    r = qemu.boot(None, None, argv=[sys.executable, "-c", script], timeout_s=30, echo=False, on_data=c.feed,
                  log_path=tmp_path / "log")
    c.close()
    assert r.ok
    assert [text for _, text in c.lines] == ["[    0.000000] first", "MPINIT-LIVE-OK uptime=0.30"]
    assert hostclock.live_root(c.lines) > 0   # the two lines arrived apart (no duration asserted)


def test_the_08x_target_is_met_only_if_both_rows_meet_it():
    up = Metric("live_root", "time to the live root", "s", ours=[2.0], peer=[3.0], target=Target("ratio", 0.8, "t"))
    host = Metric("live_root_host", "host clock", "s", ours=[2.6], peer=[3.0], target=Target("ratio", 0.8, "t"))
    up.joint.append(host)
    host.joint.append(up)
    assert up._own_verdict() == "yes" and host._own_verdict() == "no"
    assert up.verdict() == "no" and host.verdict() == "no"
    host.ours = [2.3]
    assert up.verdict() == "yes" and host.verdict() == "yes"
    host.ours = []
    assert up.verdict() == "n/a"
    md = report.markdown([up, host], {"title": "T"})
    rows = {line.split("|")[1].strip(): line for line in md.split("\n") if line.startswith("| ")}
    assert rows["time to the live root"].rstrip(" |").endswith("n/a")


def test_calibration_section_counts_the_modes_per_side():
    recs = [{"side": "ours", "cpus": 1, "mode": "PIT", "uptime": 2.57, "host": 2.31, "run_init": 1.73,
             "run_init_host": 1.50},
            {"side": "ours", "cpus": 1, "mode": "HPET", "uptime": 2.47, "host": 2.40, "run_init": 1.57,
             "run_init_host": 1.58},
            {"side": "ours", "cpus": 1, "mode": "PIT", "uptime": 2.61, "host": 2.35, "run_init": 1.75,
             "run_init_host": None},
            {"side": "peer", "cpus": 2, "mode": "HPET", "uptime": 3.0, "host": None, "run_init": None,
             "run_init_host": None}]
    lines = report.calibration_lines(recs)
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]]
    assert rows[0][:4] == ["mpinit", "1", "HPET 1, PIT 2", "HPET"]
    assert rows[1][:4] == ["mpinit", "1", "HPET 1, PIT 2", "PIT"]
    assert rows[1][4] == "2.590 s (2.570 - 2.610, n=2)" and rows[1][7] == "1.500 s"
    assert rows[2][:4] == ["busybox script", "2", "HPET 1", "HPET"] and rows[2][5] == "-"


def test_a_plain_boots_host_clock_and_calibration_record():
    run = _run_module()
    times = [0.0, 0.01, 0.02, 0.15, 0.15, 0.15, 0.16, 1.60, 2.40]
    c = _clock_of(HPET_BOOT, times)
    host = Metric("live_root_host", "h", "s")
    calib, failures = [], []
    run.record_clock(host, "peer", c.lines, HPET_BOOT, "peer boot 1", 1, calib, failures)
    assert host.peer == [pytest.approx(2.40)] and not failures
    assert calib == [{"side": "peer", "cpus": 1, "mode": "HPET", "uptime": 2.47, "host": pytest.approx(2.40),
                      "run_init": 1.569919, "run_init_host": pytest.approx(1.60)}]
    # no marker: the host figure is that run's failure, the record keeps what there is
    cut = c.lines[:-1]
    run.record_clock(host, "peer", cut, HPET_BOOT, "peer boot 2", 2, calib, failures)
    assert len(host.peer) == 1 and "peer boot 2" in host.peer_failures[0] and failures
    assert calib[1]["host"] is None and calib[1]["cpus"] == 2


def test_mode_counts_per_side_for_the_notes():
    run = _run_module()
    recs = [{"side": s, "cpus": 1, "mode": m} for s, m in (("ours", "PIT"), ("ours", "PIT"), ("ours", "HPET"),
                                                            ("peer", "HPET"), ("floor", "PIT"))]
    recs.append({"side": "peer", "cpus": 2, "mode": "PIT"})
    assert run.mode_counts(recs, 1) == ("Boots per TSC calibration mode, -smp 1: mpinit HPET 1, PIT 2; "
                                        "busybox script HPET 1; C floor PIT 1.")
    assert run.mode_counts(recs, 2) == "Boots per TSC calibration mode, -smp 2: busybox script PIT 1."
    assert run.mode_counts(recs, 4) == ""


# --- the 0.8x target within one TSC calibration mode --------------------------------------------------------

def _records(side, mode, uptimes, hosts=None, cpus=1):
    hosts = hosts if hosts is not None else [u + 0.1 for u in uptimes]
    return [{"side": side, "cpus": cpus, "mode": mode, "uptime": u, "host": h} for u, h in zip(uptimes, hosts)]


# Shaped like the run of 2026-11-30 01:48 UTC (uptimes, -smp 1): within each mode mpinit is below 0.8x busybox.
_OURS_PIT, _OURS_HPET = [2.23, 2.30, 2.34, 2.63], [2.25, 2.27, 2.33]
_PEER_PIT, _PEER_HPET = [2.88, 2.99, 3.04, 3.09, 3.13], [2.88, 2.90]


def test_matched_ratio_is_the_weighted_mean_of_the_ratios_within_each_mode():
    recs = (_records("ours", "PIT", _OURS_PIT) + _records("ours", "HPET", _OURS_HPET)
            + _records("peer", "PIT", _PEER_PIT) + _records("peer", "HPET", _PEER_HPET)
            + _records("ours", "PIT", [9.0], cpus=2))                         # another -smp: not counted
    pit = statistics.median(_OURS_PIT) / statistics.median(_PEER_PIT)
    hpet = statistics.median(_OURS_HPET) / statistics.median(_PEER_HPET)
    want = (9 * pit + 5 * hpet) / 14
    assert report.matched_ratio(recs, "uptime") == pytest.approx(want)
    assert report.by_mode(recs, "ours", "uptime") == {"PIT": _OURS_PIT, "HPET": _OURS_HPET}
    # a mode only one side booted in is left out; none in common: no ratio
    assert report.matched_ratio(recs + _records("ours", "PM timer", [1.0]), "uptime") == pytest.approx(want)
    assert report.matched_ratio(_records("ours", "PIT", [2.0]) + _records("peer", "HPET", [3.0]), "uptime") is None
    assert report.matched_ratio(recs, "uptime", base="floor") is None


def test_same_mode_rows_judge_the_target_on_both_clocks_and_can_fail():
    def pair(recs):
        up = report.ModeMatched("m", "within one mode", "s", target=Target("ratio", 0.8, "<= 0.8x"),
                                records=recs, value_key="uptime")
        host = report.ModeMatched("mh", "within one mode, host", "s", target=Target("ratio", 0.8, "<= 0.8x"),
                                  records=recs, value_key="host")
        up.joint.append(host)
        host.joint.append(up)
        return up, host

    recs = (_records("ours", "PIT", [2.2, 2.3], [2.3, 2.4]) + _records("peer", "PIT", [3.0, 3.0], [3.1, 3.1])
            + _records("ours", "HPET", [2.1], [2.5]) + _records("peer", "HPET", [2.8], [3.2]))
    up, host = pair(recs)
    assert up.verdict() == "yes" and host.verdict() == "yes"
    # the same uptimes, but the host clock above 0.8x in the PIT boots: the target is missed on both rows
    slow = [dict(r, host=r["host"] + 0.6) if r["side"] == "ours" and r["mode"] == "PIT" else r for r in recs]
    up, host = pair(slow)
    assert host.ratio() > 0.8 and up.verdict() == "no" and host.verdict() == "no"
    # one side never measured: not judged
    up, host = pair([r for r in recs if r["side"] == "ours"])
    assert up.ratio() is None and up.verdict() == "n/a"


def test_same_mode_row_shows_the_medians_per_mode_and_stays_out_of_the_chart():
    recs = (_records("ours", "PIT", _OURS_PIT) + _records("ours", "HPET", _OURS_HPET)
            + _records("peer", "PIT", _PEER_PIT) + _records("peer", "HPET", _PEER_HPET))
    raw = Metric("live_root", "time to the live root", "s", ours=_OURS_PIT + _OURS_HPET,
                 peer=_PEER_PIT + _PEER_HPET)
    same = report.ModeMatched("live_root_matched", "time to the live root, within one TSC calibration mode", "s",
                              target=Target("ratio", 0.8, "<= 0.8x busybox"), records=recs, value_key="uptime")
    md = report.markdown([raw, same], {"title": "T"})
    rows = {line.split("|")[1].strip(): line for line in md.split("\n") if line.startswith("| ")}
    cells = [c.strip() for c in rows["time to the live root, within one TSC calibration mode"].split("|")[2:-1]]
    assert cells[0] == "PIT %.3f s (n=4); HPET %.3f s (n=3)" % (statistics.median(_OURS_PIT),
                                                                  statistics.median(_OURS_HPET))
    assert cells[1] == "PIT 3.040 s (n=5); HPET 2.890 s (n=2)" and cells[2] == "-"
    assert cells[3] == "%.2fx" % same.ratio() and cells[5:] == ["<= 0.8x busybox", "yes"]
    assert "within one TSC" not in report.svg([raw, same]) and "time to the live root" in report.svg([raw, same])


def test_the_target_of_the_plain_boots_sits_on_the_same_mode_rows(tmp_path):
    run = _run_module()
    args = run.parse_args(["--runs", "0"])
    metrics, calib = [], []
    run.run_boots(args, None, {}, tmp_path, metrics, [], toram=False, calib=calib)
    keys = [m.key for m in metrics]
    assert keys == ["live_root", "live_root_host", "live_root_matched", "live_root_host_matched", "time_in_init",
                    "vmhwm"]
    by = {m.key: m for m in metrics}
    assert by["live_root"].target is None and by["live_root_host"].target is None
    same, host = by["live_root_matched"], by["live_root_host_matched"]
    assert same.target.value == 0.8 and host.target.value == 0.8 and same.joint == [host]
    assert not run.measured(same)       # no boot yet: an incomplete run
    calib += _records("ours", "PIT", [2.0]) + _records("peer", "PIT", [3.0])   # filled while the boots run
    assert same.ratio() == pytest.approx(2.0 / 3.0) and same.verdict() == "yes"
    assert run.measured(same) and not run.measured(by["live_root"])   # that one has no boots in its own lists
