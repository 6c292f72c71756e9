"""kernlog: the kernel's own log lines in the failure report (parse of /dev/kmsg records, the caps, the fake
machine's kmsg readers, a failing mount whose report quotes the kernel)."""

import errno

import pytest

from mpinit_agent import kernlog
from mpinit_agent.failure import BootError

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - CI installs hypothesis
    given = None

BAD_GEOMETRY = ("EXT4-fs (vda): bad geometry: block count 262144 exceeds size of device (65536 blocks)")


@pytest.fixture
def kmsg_kernel(fake_machine):
    """A started fake machine's kernel with /dev/kmsg as devtmpfs has it (the early stage is not run here); kernlog's
    readers closed and the machine stopped afterwards."""
    m = fake_machine()
    k = m.start()
    try:
        k._chardev("/dev/kmsg", 1, 11)
        yield k
    finally:
        kernlog.close()
        m.stop()


def test_parse_a_record_and_its_dictionary():
    rec = b"3,812,1234567,-;EXT4-fs (vda): bad geometry\n SUBSYSTEM=block\n DEVICE=b254:0\n"
    assert kernlog.parse(rec) == (3, 1234567, "EXT4-fs (vda): bad geometry")
    assert kernlog.parse("14,9,5,-,caller=T1;mpinit: early: start") == (6, 5, "mpinit: early: start")
    assert kernlog.parse("6,1,2;too few fields") is None
    assert kernlog.parse("x,1,2,-;not numbers") is None
    assert kernlog.parse("no semicolon") is None
    assert kernlog.parse(b"\xff\xfe;") is None
    assert kernlog.line(1234567, "text") == "[    1.234567] text"
    assert kernlog.line(0, "y" * 300).endswith("y...") and kernlog.line(0, "y" * 300, 0).endswith("y" * 300)
    long = kernlog.line(0, "x" * 500)
    assert long.endswith("...") and len(long) == len("[    0.000000] ") + kernlog.MAX_LINE


if given is not None:
    @settings(max_examples=300, deadline=None)
    @given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
    def test_parse_never_raises(data):
        r = kernlog.parse(data)
        assert r is None or (0 <= r[0] <= 7 and r[1] >= 0 and isinstance(r[2], str))


def test_report_shows_the_kernel_lines_under_seen():
    err = BootError("root", "cannot mount /dev/vda", seen=["TYPE=ext4"])
    err.kernel = ["[    1.000000] " + BAD_GEOMETRY]
    lines = err.lines()
    assert lines.index("  seen:") < lines.index("    TYPE=ext4") < lines.index(
        "    the kernel's log since the stage started:")
    assert lines[-1] == "      [    1.000000] " + BAD_GEOMETRY
    bare = BootError("root", "x")
    bare.kernel = ["[    0.000001] k"]
    assert bare.lines()[1] == "  seen:"


def test_since_leaves_out_our_lines_and_caps(kmsg_kernel):
    k = kmsg_kernel
    k.klog.log("before the mark")
    assert kernlog.mark()
    with open("/dev/kmsg", "w") as f:  # the agent's own line, as log.py writes it
        f.write("<6>mpinit: root: start\n")
        f.flush()
    for i in range(30):
        k.klog.log("line %d" % i)
    lines, omitted = kernlog.since()
    assert [s.split("] ", 1)[1] for s in lines] == ["line %d" % i for i in range(18, 30)]
    assert omitted == 18
    assert kernlog.since() == ([], 0)           # read to the end: the mark moved
    k.klog.log("y" * 400)
    for i in range(12):
        k.klog.log("z" * 190)
    lines, omitted = kernlog.since(max_bytes=1000)
    assert sum(len(s) + 1 for s in lines) <= 1000 and omitted == 13 - len(lines)
    assert all(len(s) <= len("[    0.000000] ") + kernlog.MAX_LINE for s in lines)


def test_no_kmsg_means_no_lines(fake_machine):
    m = fake_machine()
    m.start()
    try:
        kernlog.close()
        assert kernlog.since() == ([], 0)
        assert kernlog.mark.__call__ and kernlog.PATH == "/dev/kmsg"
        old = kernlog.PATH
        kernlog.PATH = "/dev/no-such-kmsg"
        try:
            assert kernlog.mark() is False
            assert kernlog.since() == ([], 0)
        finally:
            kernlog.PATH = old
    finally:
        m.stop()


def _plain_ext4(m):
    m.add_disk("vda", m.filesystem("ext4", uuid="0e5c6a5e-1111-4222-8333-444455556666",
                                   files={"sbin/init": m.executable(b"#!/bin/sh\n")}))


def test_failing_mount_report_quotes_the_kernel(fake_machine):
    m = fake_machine(cmdline="root=/dev/vda rootfstype=ext4 rd.shell=0 panic=-1")
    _plain_ext4(m)
    m.fail("mount", errno.EINVAL, when=lambda src, target, *a: src == "/dev/vda" and target == "/sysroot",
           kmsg=BAD_GEOMETRY)
    r = m.boot()
    assert not r.handed_off
    report = r.console[r.console.index("boot failed in stage 'root'"):]
    assert "errno 22" in report
    assert "the kernel's log since the stage started:" in report
    assert BAD_GEOMETRY in report, report
    assert "mpinit: root: start" not in report.split("seen:", 1)[1]   # our own lines are left out


def test_failure_without_kernel_lines_has_no_kernel_section(fake_machine):
    m = fake_machine(cmdline="root=/dev/vda rootfstype=ext4 rd.shell=0 panic=-1")
    _plain_ext4(m)
    m.fail("mount", errno.EINVAL, when=lambda src, target, *a: target == "/sysroot")
    r = m.boot()
    assert "boot failed in stage 'root'" in r.console
    assert "the kernel's log" not in r.console


def test_kernel_lines_from_an_earlier_stage_are_left_out(fake_machine):
    m = fake_machine(cmdline="root=/dev/vda rootfstype=ext4 rd.shell=0 panic=-1")
    _plain_ext4(m)
    # A line logged during the devices stage (written by a hook, as any program may), then the failing mount.
    m.add_hook("10-chatter.py", "def after_devices(ctx):\n"
                                "    with open('/dev/kmsg', 'w') as f:\n"
                                "        f.write('<4>devices-stage-chatter\\n')\n")
    m.fail("mount", errno.EIO, when=lambda src, target, *a: target == "/sysroot", kmsg="I/O error, dev vda")
    r = m.boot()
    assert "devices-stage-chatter" in "\n".join(r.kmsg)
    report = r.console[r.console.index("boot failed"):]
    assert report.count("I/O error, dev vda") == 1
    assert "devices-stage-chatter" not in report


def test_fake_kmsg_reader_is_one_record_per_read(kmsg_kernel):
    from mpinit_agent import syscalls as sc

    k = kmsg_kernel
    k.klog.log("first")
    fd = sc.open("/dev/kmsg", sc.O_RDONLY | sc.O_NONBLOCK)
    rec = sc.read(fd, 8192)
    assert rec.startswith(b"3,") and rec.endswith(b";first\n")
    with pytest.raises(OSError) as e:
        sc.read(fd, 8192)
    assert e.value.errno == errno.EAGAIN
    k.klog.log("second")
    with pytest.raises(OSError) as e:
        sc.read(fd, 4)
    assert e.value.errno == errno.EINVAL          # too small for the record
    assert sc.lseek(fd, 0, sc.SEEK_SET) == 0
    assert sc.read(fd, 8192).endswith(b";first\n")
    sc.lseek(fd, 0, sc.SEEK_END)
    with pytest.raises(OSError):
        sc.read(fd, 8192)
    sc.close(fd)


def test_a_failed_module_load_shows_what_the_kernel_said(fake_machine):
    m = fake_machine(cmdline="root=/dev/vda rootfstype=ext4 rootdelay=1 rd.shell=0 panic=-1",
                     builtin=("ext4", "squashfs", "overlay", "loop"))
    m.add_module("virtio_blk", aliases=["virtio:d00000002v*"])
    m.add_disk("vda", m.filesystem("ext4", files={"sbin/init": m.executable(b"#!/bin/sh\n")}),
               driver="virtio_blk", modalias="virtio:d00000002v00001AF4")
    said = "virtio_blk: disagrees about version of symbol module_layout"
    m.fail("load_module", errno.ENOEXEC, when=lambda path, params="": "virtio_blk" in path, kmsg=said)
    r = m.boot()
    report = r.console[r.console.index("boot failed in stage 'devices'"):]
    assert "modules that failed to load: virtio_blk" in report, report
    assert "    virtio_blk: [" in report and said in report, report


def test_step_and_after_keep_the_lines_for_the_stage_report(kmsg_kernel):
    k = kmsg_kernel
    assert kernlog.mark()
    k.klog.log("earlier in the stage")
    pos = kernlog.step()
    for i in range(60):                       # more than kernlog keeps: positions still line up
        k.klog.log("load %d" % i)
    assert [s.split("] ", 1)[1] for s in kernlog.after(pos)] == ["load 58", "load 59"]
    lines, omitted = kernlog.since()
    assert lines[-1].endswith("load 59") and omitted == 61 - len(lines)
    assert kernlog.step() == 0 and kernlog.after(0) == []


def test_step_reads_nothing_and_after_sees_only_that_call(kmsg_kernel):
    """step() is on every module load's path: it moves its own reader (one lseek), parses nothing; the stage's
    reader still gets every record for since()."""
    k = kmsg_kernel
    assert kernlog.mark()
    k.klog.log("before the load")
    kernlog.step()
    assert kernlog._kept == []                 # nothing was read or parsed
    k.klog.log("mpinit: our own line")
    k.klog.log("virtio_blk: disagrees about version of symbol module_layout")
    assert [s.split("] ", 1)[1] for s in kernlog.after(0)] == [
        "virtio_blk: disagrees about version of symbol module_layout"]
    lines, omitted = kernlog.since()
    assert [s.split("] ", 1)[1] for s in lines] == [
        "before the load", "virtio_blk: disagrees about version of symbol module_layout"] and omitted == 0
