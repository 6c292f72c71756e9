"""Capturing a machine on the fake machine (mpinit_agent.capture: what is collected, writing to a named filesystem,
rd.mpinit.capture=, failures that stay messages) and replaying it (mpinit.testing.replay, `mpinit replay`,
fake_machine.from_capture): the replay fails or hands off as the captured boot did."""

import errno
import json

import pytest

from mpinit import cli
from mpinit.testing import FakeMachine, replay
from mpinit_agent import capture
from mpinit_agent.capture import CaptureError


def describe(m, label="MPLIVE", bugs=True):
    """A virtio live stick (disk appears once virtio_blk loads) and, optionally, a FAT stick BUGS."""
    m.add_module("virtio_blk", aliases=("virtio:d00000002v*",))
    sq = m.squashfs({"sbin/init": m.executable(b"#!/bin/sh\n")}, size=1 << 20)
    medium = m.filesystem("vfat", label=label, uuid="1234-ABCD",
                          files={"live/filesystem.squashfs": sq, "secret.txt": b"PRIVATE-FILE-CONTENT"},
                          size=3 << 20)
    m.add_disk("vda", [m.partition(medium, partlabel="LIVEPART")], driver="virtio_blk",
               modalias="virtio:d00000002v00001AF4", size=5 << 20)
    if bugs:
        m.add_disk("vdb", m.filesystem("vfat", label="BUGS", size=2 << 20), removable=True)
    return m


def console_capture(result):
    return capture.load(result.console.encode())


_FAILED = []


def failing_capture():
    """(result, capture) of a boot that fails in the medium stage, captured on the console (made once)."""
    if not _FAILED:
        m = describe(FakeMachine(cmdline="root=live:LABEL=WRONG rootdelay=1", ram_mb=512))
        m.console_input = ["capture('console')"]
        r = m.boot()
        _FAILED.append((r, console_capture(r)))
    r, doc = _FAILED[0]
    return r, json.loads(json.dumps(doc))


# ---- what a capture holds ---------------------------------------------------------------------------------------

def test_capture_holds_the_listed_facts_and_no_file_contents():
    r, doc = failing_capture()
    assert doc["reason"] == "rescue" and doc["stage"] == "medium"
    assert doc["cmdline"] == "root=live:LABEL=WRONG rootdelay=1"
    assert doc["kernel"]["release"] == "6.1.0-fake"
    assert doc["memory"]["MemTotal"] == 512 * 1024
    assert doc["modules"]["loaded"] == ["virtio_blk"]
    assert json.loads(doc["modules_table"])["format"] == "mpinit-modules 1"
    assert ["devices/pci0000:00/0000:00:03.0/modalias"[:-9], "virtio:d00000002v00001AF4"] in [
        [p, a] for p, a in doc["modaliases"]]
    assert doc["failure"]["message"] == "did not find the medium LABEL=WRONG within 1 s"
    assert [e["stage"] for e in doc["timeline"] if "stage" in e][-1] == "medium"
    assert {"module": "virtio_blk", "result": "loaded"}.items() <= [e for e in doc["timeline"] if "module" in e][0].items()
    assert any("boot failed in stage 'medium'" in line for line in doc["kmsg"])
    assert all(line.startswith("mpinit: ") or line.startswith("[") for line in doc["kmsg"])
    devs = {d["name"]: d for d in doc["devices"]}
    assert sorted(devs) == ["vda", "vda1", "vdb"]
    vda, part = devs["vda"], devs["vda1"]
    assert vda["size"] == 5 << 20 and vda["dev"] == [254, 0] and vda["probed"]["PTTYPE"] == "gpt"
    assert part["partition"] == 1 and part["parent"] == "vda" and part["start"] == 2048
    assert part["partname"] == "LIVEPART" and part["probed"]["LABEL"] == "MPLIVE"
    assert devs["vdb"]["removable"] is True
    recorded = sum(len(capture.range_bytes(rg)) for d in doc["devices"] for rg in d["ranges"])
    assert recorded < 256 << 10
    blob = json.dumps(doc)
    assert "PRIVATE-FILE-CONTENT" not in blob
    for d in doc["devices"]:
        for rg in d["ranges"]:
            assert b"PRIVATE-FILE-CONTENT" not in capture.range_bytes(rg)
    assert "capture: %d bytes" % len(capture.encode(doc)) in r.console


def test_recorded_ranges_are_what_the_probes_read():
    """Replaying the probes over only the recorded bytes gives the same blkid keys."""
    from io import BytesIO

    from mpinit_agent import probe

    _r, doc = failing_capture()
    for d in doc["devices"]:
        buf = bytearray(d["size"])
        for rg in d["ranges"]:
            data = capture.range_bytes(rg)
            buf[rg[0]:rg[0] + len(data)] = data
        info = probe.probe(BytesIO(bytes(buf)), sector=d["lbs"])
        # PARTUUID/PARTLABEL come from the disk's table, not the partition's own probe (blockdev adds them)
        assert info == {k: v for k, v in d["probed"].items() if k not in ("PARTUUID", "PARTLABEL")}, d["name"]


# ---- writing a capture ----------------------------------------------------------------------------------------------

def test_capture_written_to_the_named_filesystem_only():
    m = describe(FakeMachine(cmdline="root=live:LABEL=WRONG rootdelay=1"))
    m.console_input = ["capture('LABEL=BUGS')", "capture('LABEL=BUGS')"]
    written = {}

    def spy(target, flags=0):
        # Called before each umount (the fake's filesystem forgets a block filesystem's files at umount): keep what
        # is on the capture filesystem. Never true, so umount never fails.
        fs = m.kernel.fs
        for name in fs.listdir(target):
            written.setdefault(name, fs.resolve(target + "/" + name).byte_contents)
        return False

    m.fail("umount", errno.EBUSY, when=spy)
    r = m.boot()
    assert "written to LABEL=BUGS (/dev/vdb) as mpinit-capture-1.json" in r.console
    mounts = [e for e in r.mount_log if e[0] == "mount" and e[2] == capture.CAPTURE_MOUNT]
    assert [e[1] for e in mounts] == ["/dev/vdb", "/dev/vdb"] and all(e[3] == "vfat" for e in mounts)
    assert not mounts[0][4] & 1                      # MS_RDONLY clear: mounted read-write
    assert not [e for e in r.mount_log if e[0] == "mount" and e[1] in ("/dev/vda", "/dev/vda1")]
    assert [e[:2] for e in r.mount_log].count(("umount", capture.CAPTURE_MOUNT)) == 2
    assert sorted(written) == ["mpinit-capture-1.json"]   # the temporary name is gone, renamed
    doc = capture.decode(written["mpinit-capture-1.json"])
    assert doc["failure"]["stage"] == "medium"


@pytest.mark.parametrize("target, words", [
    ("LABEL=NOPE", "capture not written: no device LABEL=NOPE"),
    ("PARTLABEL=LIVEPART", None),   # a vfat partition: writable (the medium is not mounted in this failure)
    ("/dev/vda", "holds nothing recognised, not a filesystem"),
    ("BAD=1", "unknown key BAD="),
])
def test_unwritable_targets_are_messages_not_failures(target, words):
    m = describe(FakeMachine(cmdline="root=live:LABEL=WRONG rootdelay=1"))
    m.console_input = ["capture(%r)" % target, "print('STILL-HERE')"]
    r = m.boot()
    assert "STILL-HERE" in r.console and r.stuck
    if words:
        assert words in r.console, r.console[-2000:]
        assert not [e for e in r.mount_log if e[0] == "mount" and e[2] == capture.CAPTURE_MOUNT]
    else:
        assert "written to PARTLABEL=LIVEPART (/dev/vda1)" in r.console


def test_a_read_only_mounted_target_is_refused():
    m = describe(FakeMachine(cmdline="root=live:LABEL=MPLIVE rd.break=toram"))
    m.console_input = ["capture('LABEL=MPLIVE')", "resume()"]
    r = m.boot()
    assert "capture not written: LABEL=MPLIVE (/dev/vda1) is mounted read-only at /run/initramfs/live" in r.console
    assert r.handed_off


def test_a_mount_failure_is_a_message():
    m = describe(FakeMachine(cmdline="root=live:LABEL=WRONG rootdelay=1"))
    m.fail("mount", errno.EIO, when=lambda src, target, *rest: target == capture.CAPTURE_MOUNT)
    m.console_input = ["capture('LABEL=BUGS')"]
    r = m.boot()
    assert "capture not written: mounting LABEL=BUGS (/dev/vdb) read-write at /run/mpinit/capture: errno 5" \
        in r.console


def test_a_fat_target_gets_the_charset_retry_of_every_mount():
    m = describe(FakeMachine(cmdline="root=live:LABEL=WRONG rootdelay=1"))
    m.fail("mount", errno.EINVAL, when=lambda src, target, fstype, flags, data: target == capture.CAPTURE_MOUNT
           and data is None, times=1)
    m.console_input = ["capture('LABEL=BUGS')"]
    r = m.boot()
    assert "written to LABEL=BUGS (/dev/vdb) as mpinit-capture-1.json" in r.console
    mounts = [e for e in r.mount_log if e[0] == "mount" and e[2] == capture.CAPTURE_MOUNT]
    assert [(e[3], e[5]) for e in mounts] == [("vfat", "iocharset=utf8")]


def test_rd_mpinit_capture_on_failure_and_at_a_stage():
    m = describe(FakeMachine(cmdline="root=live:LABEL=WRONG rootdelay=1 rd.mpinit.capture=LABEL=BUGS "
                                     "rd.mpinit.capture=console@devices rd.shell=0 panic=1"))
    r = m.boot()
    assert r.reboot == "restart"
    assert "written to LABEL=BUGS (/dev/vdb) as mpinit-capture-1.json" in r.console
    doc = console_capture(r)
    assert doc["reason"] == "at devices" and doc["failure"] is None
    assert [e["stage"] for e in doc["timeline"] if "stage" in e] == ["early", "cmdline", "modules"]
    assert r.console.count("capture: ") == 2


def test_capture_without_a_target_prints_on_the_console_and_never_fails_the_boot():
    m = describe(FakeMachine(cmdline="root=live:LABEL=MPLIVE rd.break=root"), bugs=False)
    m.fail("open", errno.EIO, when=lambda path, *a: path == "/dev/kmsg")
    m.console_input = ["capture()", "resume()"]
    r = m.boot()
    assert r.handed_off
    doc = console_capture(r)
    assert doc["reason"] == "rescue" and doc["kmsg"] == []


# ---- replaying ------------------------------------------------------------------------------------------------------

def test_replay_of_a_failed_boot_fails_the_same_way():
    r, doc = failing_capture()
    m = replay.machine_from_capture(doc)
    r2 = m.boot()
    assert r2.stuck and not r2.handed_off
    assert replay.compare(doc, r2) == []
    assert replay.failure_lines(r2.console) == replay.failure_lines(r.console)
    assert r2.loaded_modules == r.loaded_modules


def test_replay_of_a_passing_boot_hands_off_the_same_way():
    m = describe(FakeMachine(cmdline="root=live:LABEL=MPLIVE rd.mpinit.capture=console@handoff"))
    r = m.boot()
    assert r.handed_off
    doc = console_capture(r)
    assert doc["used"]["image"] == "/run/initramfs/live/live/filesystem.squashfs"
    assert doc["used"]["inits"] == ["/sbin/init"]
    m2 = replay.machine_from_capture(doc)
    assert "rd.mpinit.capture= left out of the replay's command line" in m2.replay_notes
    r2 = m2.boot()
    assert r2.handed_off and r2.init == r.init == "/sbin/init"
    assert replay.compare(doc, r2) == []
    assert r2.mount_at("/")[2] == "overlay"


def test_a_replay_can_differ_and_says_how():
    _r, doc = failing_capture()
    m = replay.machine_from_capture(doc, cmdline="root=live:LABEL=MPLIVE")
    r2 = m.boot()
    assert r2.handed_off is False   # the image of a capture taken at a failure holds no init
    diffs = replay.compare(doc, r2)
    assert any(d.startswith("stage cmdline:") for d in diffs)
    assert any(d.startswith("failure report differs") for d in diffs)


def test_sizes_and_numbers_of_devices_are_the_captured_ones():
    _r, doc = failing_capture()
    for d in doc["devices"]:
        if d["name"] == "vda":
            d["size"] = 500 << 30      # a 500 GiB disk: the replay holds its first bytes only
            d["dev"] = [259, 0]
    m = replay.machine_from_capture(doc)
    r2 = m.boot()
    assert "/dev/vda 259:0 500.0 GiB" in r2.console


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    """A failed boot's capture and a serial log holding it, made before any test's fake filesystem exists."""
    r, doc = failing_capture()
    path = tmp_path_factory.mktemp("capture") / "serial.log"
    path.write_bytes(r.console.replace("\n", "\r\n").encode())
    return doc, str(path)


def test_fixture_from_capture(fake_machine, captured):
    m = fake_machine.from_capture(captured[0])
    assert replay.compare(m.capture, m.boot()) == []


def test_fixture_from_capture_reads_a_real_file(fake_machine, captured):
    m = fake_machine.from_capture(captured[1])
    result = m.boot()
    assert result.stuck and replay.compare(m.capture, result) == []


def test_unreadable_captures_are_errors_naming_them(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text('{"format": "mpinit-capture", "version": 9, "compat": 9}')
    with pytest.raises(CaptureError, match="newer than this mpinit reads"):
        replay.machine_from_capture(str(bad))
    with pytest.raises(CaptureError, match="No such file"):
        replay.machine_from_capture(str(tmp_path / "missing.json"))


def test_cli_replay(tmp_path, capsys):
    r, doc = failing_capture()
    log = tmp_path / "serial.log"
    log.write_text("garbage before\r\n" + r.console.replace("\n", "\r\n"))
    hook = tmp_path / "10-hello.py"
    hook.write_text("def before_devices(ctx):\n    print('HOOK-RAN')\n")
    assert cli.main(["replay", str(log), "--hook", str(hook), "--input", "print(6 * 7)"]) == 0
    out = capsys.readouterr().out
    assert "same stage results and failure report as the capture" in out
    assert "HOOK-RAN" in out and "42" in out
    assert "medium" in out.split("---- timeline")[1]
    assert cli.main(["replay", str(log), "--cmdline", "root=/dev/nothing rootdelay=1"]) == 1
    assert "the replay differs from the capture" in capsys.readouterr().out
    (tmp_path / "empty.log").write_text("nothing\n")
    assert cli.main(["replay", str(tmp_path / "empty.log")]) == 2
    assert "no framed capture" in capsys.readouterr().err
