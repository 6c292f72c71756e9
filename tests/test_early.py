"""mpinit_agent.early: API filesystem mounts, the mdev-like /dev, the console, log level and the keymap."""

import sys

import pytest

from agent_stub import StubSys, keep_log_state
from mpinit_agent import early, syscalls as abi
from mpinit_agent.failure import BootError

MICROPYTHON = True


@pytest.fixture(autouse=True)
def _log_state(monkeypatch):
    keep_log_state(monkeypatch)


def keymap_bytes(tables):
    """A busybox binary keymap: tables {table number: [128 values]}."""
    flags = bytearray(256)
    body = b""
    for t in sorted(tables):
        flags[t] = 1
        body += b"".join(v.to_bytes(2, sys.byteorder) for v in tables[t])  # native endian, as dumpkmap
    return b"bkeymap" + bytes(flags) + body


def test_parse_keymap_reads_tables_in_order():
    plain = list(range(0xF000, 0xF000 + 128))
    shift = [0xF100 + i for i in range(128)]
    entries = early.parse_keymap(keymap_bytes({0: plain, 1: shift}))
    assert len(entries) == 256
    assert entries[0] == (0, 0, 0xF000)
    assert entries[127] == (0, 127, 0xF07F)
    assert entries[128] == (1, 0, 0xF100)


def test_parse_keymap_rejects_bad_magic_and_truncation():
    with pytest.raises(ValueError, match="no 'bkeymap' magic"):
        early.parse_keymap(b"notakeymap", "/etc/mpinit/keymap.bmap")
    with pytest.raises(ValueError, match="truncated in table 0"):
        early.parse_keymap(keymap_bytes({0: [1] * 128})[:-2])
    with pytest.raises(ValueError, match="flags"):
        early.parse_keymap(b"bkeymap" + b"\0" * 10)


@pytest.mark.parametrize("quiet, loglevel, debug, want", [
    (False, None, False, None),
    (True, None, False, 4),
    (False, None, True, 10),
    (True, 7, True, 7),
])
def test_console_loglevel(quiet, loglevel, debug, want):
    assert early.console_loglevel(quiet, loglevel, debug) == want


def test_set_console_loglevel_writes_printk(fs):
    fs.create_file("/proc/sys/kernel/printk", contents="7 4 1 7\n")
    early.set_console_loglevel(4)
    assert open("/proc/sys/kernel/printk").read() == "4\n"


def test_mounts_with_devtmpfs(fs):
    with StubSys(fs) as s:
        assert early.mount_api_filesystems() == "devtmpfs"
    got = {m[1]: (m[2], m[3], m[4]) for m in s.mounts}
    assert got["/proc"] == ("proc", abi.MS_NOSUID | abi.MS_NODEV | abi.MS_NOEXEC, None)
    assert got["/sys"][0] == "sysfs"
    assert got["/dev"] == ("devtmpfs", abi.MS_NOSUID, "mode=0755")
    assert got["/run"] == ("tmpfs", abi.MS_NOSUID | abi.MS_NODEV, "mode=0755")
    assert got["/dev/pts"][0] == "devpts"
    assert got["/dev/shm"] == ("tmpfs", abi.MS_NOSUID | abi.MS_NODEV, "mode=1777")
    targets = [m[1] for m in s.mounts]
    assert targets.index("/dev") < targets.index("/dev/pts")


def test_without_devtmpfs_dev_is_filled_like_mdev(fs):
    fs.create_file("/sys/devices/virtual/block/sda/uevent", contents="MAJOR=8\nMINOR=0\nDEVNAME=sda\n")
    fs.create_file("/sys/devices/virtual/input/event0/uevent", contents="DEVNAME=input/event0\n")
    fs.create_file("/sys/devices/virtual/mem/null/uevent", contents="DEVNAME=null\n")
    fs.create_symlink("/sys/dev/block/8:0", "../../devices/virtual/block/sda")
    fs.create_symlink("/sys/dev/char/13:64", "../../devices/virtual/input/event0")
    fs.create_symlink("/sys/dev/char/1:3", "../../devices/virtual/mem/null")
    with StubSys(fs) as s:
        s.fail("mount", abi.ENODEV, nth=3)  # the third mount is devtmpfs
        assert early.mount_api_filesystems() == "mdev"
    assert s.mounted("/dev")[0][2] == "tmpfs"
    nodes = {c[1][0]: c[1][1] for c in s.calls if c[0] == "mknod"}
    assert nodes["/dev/sda"] == abi.S_IFBLK | 0o600
    assert nodes["/dev/input/event0"] == abi.S_IFCHR | 0o600
    assert nodes["/dev/null"] == abi.S_IFCHR | 0o666


def test_a_failing_api_mount_names_it(fs):
    with StubSys(fs) as s:
        s.fail("mount", abi.EPERM, nth=2)
        with pytest.raises(BootError, match="mount -t sysfs sysfs /sys failed") as ei:
            early.mount_api_filesystems()
    assert ei.value.stage == "early"


def test_already_mounted_is_fine(fs):
    with StubSys(fs) as s:
        s.fail("mount", abi.EBUSY)
        early.mount_api_filesystems()


def test_first_run_looks_at_proc_only(fs):
    """Nothing mounted yet (/proc is no mount point): the other mounts go ahead without an lstat pair each."""
    fs.create_dir("/proc")
    with StubSys(fs) as s:
        early.mount_api_filesystems()
    assert [c[1][0] for c in s.calls if c[0] == "lstat"] == ["/proc", "/"]
    assert len(s.mounts) == 6


def test_a_rerun_mounts_only_what_is_missing(fs, monkeypatch):
    """After resume() (/proc mounted by the first run) every mount point is checked: no second /dev over the first,
    which would hide /dev/pts."""
    mounted = {"/proc", "/dev", "/dev/pts"}
    monkeypatch.setattr(early, "is_mountpoint", lambda path: path in mounted)
    with StubSys(fs) as s:
        assert early.mount_api_filesystems() == "an earlier run"
    assert sorted(m[1] for m in s.mounts) == ["/dev/shm", "/run", "/sys"]


def test_console_on_fds_0_to_2(fs):
    with StubSys(fs) as s:
        assert early.setup_console() is True
    names = s.names()
    assert names.index("setsid") < names.index("set_ctty")
    assert [c[1] for c in s.calls if c[0] == "dup2"] == [(7, 0), (7, 1), (7, 2)]
    assert ("close", (7,)) in s.calls


def test_no_console_is_not_fatal(fs):
    with StubSys(fs) as s:
        s.fail("open", abi.ENOENT)
        assert early.setup_console() is False
    assert "dup2" not in s.names()


def test_load_keymap_sets_every_entry_with_kdskbent(fs):
    values = [0xF000 + i for i in range(128)]
    fs.create_file("/etc/mpinit/keymap.bmap", contents=keymap_bytes({0: values, 2: values}))
    with StubSys(fs) as s:
        assert early.load_keymap("/etc/mpinit/keymap.bmap") == 256
        assert early.load_keymap("/nonexistent") == 0
    ioctls = [c[1] for c in s.calls if c[0] == "ioctl"]
    assert len(ioctls) == 256
    fd, req, arg = ioctls[129]
    assert (fd, req) == (0, abi.KDSKBENT)
    assert arg == bytes([2, 1]) + (0xF001).to_bytes(2, sys.byteorder)


def test_run_summarises(fs):
    class Ctx:
        pass

    ctx = Ctx()
    with StubSys(fs):
        result = early.run(ctx)
    assert result == "/dev by devtmpfs, console yes, keymap none"
    assert ctx.console is True


def test_devkmsg_rate_limit_is_lifted_while_booting(fs):
    fs.create_file(early.DEVKMSG_SYSCTL, contents="ratelimit\n")
    assert early.set_devkmsg("on") is True
    assert open(early.DEVKMSG_SYSCTL).read() == "on\n"
    assert early.set_devkmsg("on", "/proc/missing/printk_devkmsg") is False
