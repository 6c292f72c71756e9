"""mpinit_agent.handoff: init lookup inside the new root, the checks before the point of no return, moving the
API mounts (with rollback), emptying the initramfs without crossing mounts, and the exec."""

import json

import pytest

from agent_stub import Exec, StubSys
from mpinit_agent import cmdline, contract, handoff, syscalls as abi, main
from mpinit_agent.failure import BootError

MICROPYTHON = True

R = contract.NEW_ROOT


def make_root(fs, init="/sbin/init", mode=0o755):
    fs.add_mount_point(R)
    if init:
        fs.create_file(R + "/lib/systemd/systemd", st_mode=0o100000 | mode)
        fs.create_symlink(R + init, "/lib/systemd/systemd")
    for d in ("/dev", "/proc", "/sys", "/run/mpinit", "/etc", "/lib/modules/x"):
        fs.create_dir(d)
    fs.create_file("/init", contents="binary")
    fs.create_file("/lib/modules/x/a.ko", contents="ko")


def ctx_for(line=""):
    ctx = main.Context()
    ctx.opts = cmdline.parse(line)
    ctx.timeline = [{"stage": "early", "start_ms": 0, "duration_ms": 5, "result": "ok"}]
    ctx.stage_start = 900
    return ctx


def test_resolve_in_root_keeps_absolute_links_inside(fs):
    fs.create_file("/newroot/lib/systemd/systemd")
    fs.create_file("/lib/systemd/systemd")  # the initramfs' own: must not be found instead
    fs.create_symlink("/newroot/sbin/init", "/lib/systemd/systemd")
    fs.create_symlink("/newroot/bin", "usr/bin")
    fs.create_file("/newroot/usr/bin/sh")
    fs.create_symlink("/newroot/loop", "/loop")
    with StubSys(fs):
        assert handoff.resolve_in_root("/newroot", "/sbin/init") == "/newroot/lib/systemd/systemd"
        assert handoff.resolve_in_root("/newroot", "/bin/sh") == "/newroot/usr/bin/sh"
        assert handoff.resolve_in_root("/newroot", "/../../bin/../bin/sh") == "/newroot/usr/bin/sh"
        with pytest.raises(OSError) as ei:
            handoff.resolve_in_root("/newroot", "/loop")
        assert ei.value.args[0] == abi.ELOOP
        with pytest.raises(OSError):
            handoff.resolve_in_root("/newroot", "/sbin/missing")


def test_choose_init_follows_the_kernels_order(fs):
    fs.create_file("/r/sbin/init", st_mode=0o100644)   # not executable
    fs.create_file("/r/bin/sh", st_mode=0o100755)
    with StubSys(fs):
        init, tried = handoff.choose_init("/r", None)
        assert init == "/bin/sh"
        assert tried[0].startswith("/r/sbin/init: not executable")
        assert len(tried) == 3
        # init= is the only candidate when given (the kernel does not fall back either)
        init, tried = handoff.choose_init("/r", "/sbin/init")
        assert init is None and len(tried) == 1


def test_handoff_switches_and_execs(fs):
    make_root(fs)
    ctx = ctx_for("root=/dev/sda1 -- single splash")
    with StubSys(fs) as s:
        with pytest.raises(Exec) as ei:
            handoff.run(ctx)
    assert ei.value.argv == ["/sbin/init", "single", "splash"]
    moves = [(c[1][0], c[1][1]) for c in s.calls if c[0] == "mount" and c[1][3] == abi.MS_MOVE]
    assert moves == [("/dev", R + "/dev"), ("/proc", R + "/proc"), ("/sys", R + "/sys"), ("/run", R + "/run"),
                     (".", "/")]
    names = s.names()
    assert names.index("chroot") > names.index("mount")
    assert ("chdir", (R,)) in s.calls and ("chroot", (".",)) in s.calls
    # the initramfs emptied (directories too), the new root untouched
    assert not fs.exists("/init") and not fs.exists("/lib/modules")
    assert fs.exists(R + "/lib/systemd/systemd")


def test_timeline_and_initrd_release_are_written_before_any_move(fs, monkeypatch):
    make_root(fs)
    ctx = ctx_for("root=/dev/sda1")
    written = {}
    real = handoff.write_state

    def spy(c, init):
        real(c, init)
        written["timeline"] = json.loads(open(contract.TIMELINE_PATH).read())
        written["release"] = open(contract.INITRD_RELEASE).read()
        written["mounts_so_far"] = [x for x in s.calls if x[0] == "mount"]

    monkeypatch.setattr(handoff, "write_state", spy)
    with StubSys(fs) as s:
        with pytest.raises(Exec):
            handoff.run(ctx)
    assert [e["stage"] for e in written["timeline"]] == ["early", "handoff"]
    assert written["timeline"][1]["result"] == "exec /sbin/init"
    assert "ID=mpinit" in written["release"]
    assert written["mounts_so_far"] == []


def test_the_images_initrd_release_is_kept(fs, monkeypatch):
    """`mpinit pack` puts /etc/initrd-release (with its version) in every image: handoff writes one only when
    missing."""
    make_root(fs)
    packed = 'NAME="mpinit"\nID=mpinit\nVERSION_ID=9.9\n'
    fs.create_file(contract.INITRD_RELEASE, contents=packed)
    seen = []
    real = handoff.write_state

    def spy(c, init):
        real(c, init)
        seen.append(open(contract.INITRD_RELEASE).read())

    monkeypatch.setattr(handoff, "write_state", spy)
    with StubSys(fs):
        with pytest.raises(Exec):
            handoff.run(ctx_for("root=/dev/sda1"))
    assert seen == [packed]


def test_missing_init_fails_before_anything_irreversible(fs):
    make_root(fs, init=None)
    with StubSys(fs) as s:
        with pytest.raises(BootError, match="no init to run") as ei:
            handoff.run(ctx_for("root=/dev/sda1 init=/usr/bin/myinit"))
    assert ei.value.param == "init=/usr/bin/myinit"
    assert "mount" not in s.names() and "execv" not in s.names()
    assert fs.exists("/init")


def test_unmounted_new_root_is_refused(fs):
    fs.create_file(R + "/sbin/init", st_mode=0o100755)
    fs.create_file("/init")
    with StubSys(fs) as s:
        with pytest.raises(BootError, match="not a mount point"):
            handoff.run(ctx_for())
    assert "mount" not in s.names() and fs.exists("/init")


def test_a_failed_move_is_rolled_back(fs):
    make_root(fs)
    with StubSys(fs) as s:
        s.fail("mount", abi.EINVAL, nth=3)  # moving /sys
        with pytest.raises(BootError, match="moving the API filesystems"):
            handoff.run(ctx_for())
    moves = [(c[1][0], c[1][1]) for c in s.calls if c[0] == "mount"]
    assert moves == [("/dev", R + "/dev"), ("/proc", R + "/proc"), ("/sys", R + "/sys"),
                     (R + "/proc", "/proc"), (R + "/dev", "/dev")]
    assert fs.exists("/init") and "execv" not in s.names()


def test_initramfs_is_kept_when_root_is_not_ramfs(fs):
    make_root(fs)
    with StubSys(fs) as s:
        s.statfs_type = abi.EXT4_SUPER_MAGIC
        with pytest.raises(Exec):
            handoff.run(ctx_for())
    assert fs.exists("/init")


def test_empty_dir_does_not_cross_mounts(fs):
    fs.add_mount_point("/mnt/other")
    fs.create_file("/mnt/other/keep")
    fs.create_file("/a/b/c")
    with StubSys(fs):
        root_dev = handoff._dev_of("/")
        handoff.empty_dir("/", root_dev, ())
    assert fs.exists("/mnt/other/keep") and not fs.exists("/a")


def test_empty_dir_with_micropythons_ilistdir_lstats_directories_only(fs, monkeypatch):
    """MicroPython's os.ilistdir gives readdir's d_type: files go without an lstat, directories (possible mount
    points) and entries of unknown type (d_type 0) get one."""
    import os
    import stat

    fs.add_mount_point("/mnt/other")
    fs.create_file("/mnt/other/keep")
    fs.create_file("/a/b/c")
    fs.create_file("/lib/x.ko")
    fs.create_file("/odd")

    def ilistdir(path):
        for e in os.scandir(path):
            t = 0 if e.name == "odd" else stat.S_IFMT(e.stat(follow_symlinks=False).st_mode)
            yield (e.name, t, e.inode())

    monkeypatch.setattr(handoff.os, "ilistdir", ilistdir, raising=False)
    with StubSys(fs) as s:
        handoff.empty_dir("/", handoff._dev_of("/"), ())
    assert fs.exists("/mnt/other/keep") and not fs.exists("/a") and not fs.exists("/lib") and not fs.exists("/odd")
    lstats = [c[1][0] for c in s.calls if c[0] == "lstat"]
    assert "/lib/x.ko" not in lstats and "/a/b/c" not in lstats
    assert "/odd" in lstats and "/a" in lstats and "/a/b" in lstats and "/mnt/other" in lstats


def test_exec_failure_tries_the_next_kernel_init(fs):
    make_root(fs)
    fs.create_file(R + "/bin/sh", st_mode=0o100755)
    with StubSys(fs) as s:
        s.fail("execv", abi.ENOEXEC, nth=1)
        with pytest.raises(Exec) as ei:
            handoff.run(ctx_for())
    assert ei.value.path == "/etc/init"
    assert [c[1][0] for c in s.calls if c[0] == "execv"] == ["/sbin/init", "/etc/init"]


def test_resume_after_a_late_failure_continues_with_the_failed_step(fs):
    make_root(fs)
    ctx = ctx_for()
    s = StubSys(fs)
    s.fail("chdir", abi.EIO, nth=1)
    with s:
        with pytest.raises(BootError, match="chdir /sysroot failed"):
            handoff.run(ctx)
        assert ctx.handoff_step == 2 and not fs.exists("/init")
        moves_before = len([c for c in s.calls if c[0] == "mount"])
        with pytest.raises(Exec):
            handoff.run(ctx)
    later = [c[1][:2] for c in s.calls if c[0] == "mount"][moves_before:]
    assert later == [(".", "/")]  # /dev /proc /sys /run are not moved twice
    assert ctx.handoff_step == 5


@pytest.mark.parametrize("status,want", [
    ("Name:\tinit\nVmPeak:\t    2048 kB\nVmHWM:\t    1004 kB\nVmRSS:\t     980 kB\n", 1004),
    ("Name:\tinit\nVmRSS:\t     980 kB\n", None),       # a kernel without the line
    ("VmHWM:\tbroken\n", None),
    ("", None),
])
def test_peak_memory_is_vmhwm_of_proc_self_status(status, want):
    assert handoff.peak_memory_kb(status) == want


def test_the_hand_off_line_names_pid_1s_peak_memory(fs, monkeypatch):
    make_root(fs)
    fs.create_file("/proc/self/status", contents="VmHWM:\t    1004 kB\n")
    lines = []
    monkeypatch.setattr(handoff.log, "notice", lines.append)
    with StubSys(fs):
        with pytest.raises(Exec):
            handoff.run(ctx_for("root=/dev/sda1"))
    assert "handoff: switching to %s, exec /sbin/init (VmHWM: 1004 kB)" % R in lines
