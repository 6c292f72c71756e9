"""The exitrd (shutdown.py): the verbs, the mountinfo reader, and on the fake machine the copy left at
/run/initramfs/shutdown by a persistent boot and the unmounting of a live root's whole tree, as systemd-shutdown
leaves it (the old root with /run and everything below it at one path)."""

import errno

import pytest

from mpinit_agent import contract, fsutil, shutdown
from mpinit_agent import syscalls as sc

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None

MiB = 1 << 20
INIT_BYTES = b"\x7fELF the mpinit runtime" + bytes(range(256)) * 64
LIVE = "root=live:LABEL=MPLIVE rootdelay=1 persistence"


# ---- pure parts ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("verb, how", [
    ("poweroff", "RB_POWER_OFF"), ("exit", "RB_POWER_OFF"), ("halt", "RB_HALT_SYSTEM"), ("reboot", "RB_AUTOBOOT"),
    ("kexec", "RB_AUTOBOOT"), ("", "RB_AUTOBOOT"), ("bogus", "RB_AUTOBOOT"),
])
def test_verbs_map_to_reboot_commands(verb, how):
    assert shutdown.reboot_how(verb) == getattr(sc, how)


MOUNTINFO = (
    "22 1 0:21 / / rw - overlay overlay rw,lowerdir=/run/mpinit/rootfsbase\n"
    "23 22 0:5 / /oldroot rw - overlay overlay rw\n"
    "24 23 0:22 / /oldroot/run rw,nosuid - tmpfs tmpfs rw\n"
    "25 24 8:2 / /oldroot/run/mpinit/persist rw - ext4 /dev/sda2 rw\n"
    "26 24 8:1 / /oldroot/run/initramfs/live\\040stick rw - vfat /dev/sda1 rw\n"
    "27 1 0:23 / /oldrootfoo rw - tmpfs tmpfs rw\n"
    "garbage\n"
    "\n"
)


def test_mount_points_below_a_path_in_table_order():
    assert shutdown.mount_points(MOUNTINFO, "/oldroot") == [
        "/oldroot", "/oldroot/run", "/oldroot/run/mpinit/persist", "/oldroot/run/initramfs/live stick"]
    assert shutdown.mount_points(MOUNTINFO, "/nothing") == []


@pytest.mark.parametrize("field, plain", [
    ("/a\\040b", "/a b"), ("/tab\\011x", "/tab\tx"), ("/back\\134slash", "/back\\slash"), ("/plain", "/plain"),
    ("/short\\04", "/short\\04"), ("/end\\", "/end\\"), ("/not\\9999octal", "/not\\9999octal"),
])
def test_unescape_octal_fields(field, plain):
    assert fsutil.unescape_octal(field) == plain


if given is not None:
    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet=" \\0123456789/abc\n\t-", max_size=200), st.sampled_from(["/", "/oldroot", "/a b"]))
    def test_mount_points_never_raises(text, under):
        for mp in shutdown.mount_points(text, under):
            assert isinstance(mp, str)


# ---- on the fake machine ------------------------------------------------------------------------------------------

def persistent_stick(fake_machine, cmdline=LIVE, with_init=True, hook=None):
    m = fake_machine(cmdline=cmdline)
    squash = m.squashfs({"sbin/init": m.executable(b"#!/bin/sh\n"), "etc/os-release": b"ID=demo\n"})
    medium = m.filesystem("vfat", label="MPLIVE", files={"live/filesystem.squashfs": squash})
    keep = m.filesystem("ext4", label="persistence", files={"persistence.conf": "/ union\n"}, size=8 * MiB)
    m.add_disk("sda", [m.partition(medium, partlabel="live"), m.partition(keep, partlabel="keep")], removable=True)
    if with_init:
        m.add_file(contract.INIT_PATH, m.executable(INIT_BYTES))
    if hook:
        m.add_hook("50-exitrd.py", hook)
    return m


def test_a_persistent_boot_leaves_the_runtime_at_run_initramfs_shutdown(fake_machine, fs):
    r = persistent_stick(fake_machine).boot()
    assert r.handed_off, r.console
    assert r.read(contract.SHUTDOWN_PATH) == INIT_BYTES
    import os

    assert os.stat(contract.SHUTDOWN_PATH).st_mode & 0o777 == 0o755
    assert not os.path.exists(contract.SHUTDOWN_PATH + ".tmp")
    assert any("exitrd %s" % contract.SHUTDOWN_PATH in line for line in r.kmsg if "persistence:" in line), r.kmsg


@pytest.mark.parametrize("line", ["root=live:LABEL=MPLIVE rootdelay=1", LIVE + " rd.overlay.readonly"])
def test_no_exitrd_without_persistence_or_read_only(fake_machine, line):
    r = persistent_stick(fake_machine, cmdline=line).boot()
    assert r.handed_off, r.console
    assert not r.exists(contract.SHUTDOWN_PATH), line


def test_a_failed_copy_is_a_warning_and_the_layer_is_still_used(fake_machine):
    r = persistent_stick(fake_machine, with_init=False).boot()
    assert r.handed_off, r.console
    assert r.mount_at(contract.PERSIST_MOUNT) is not None
    assert not r.exists(contract.SHUTDOWN_PATH)
    assert any("may be left dirty at shutdown" in line for line in r.kmsg), r.kmsg


# The hook puts the tree where systemd-shutdown leaves it for the exitrd: /run (with the persistence volume, the
# squashfs and the medium below it) moved under the new root, which plays /oldroot; /proc stays where the exitrd
# has it. Then the exitrd's own entry runs and ends the boot with reboot(2).
EXITRD_HOOK = """
def before_handoff(ctx):
    from mpinit_agent import fsutil, handoff, shutdown
    fsutil.makedirs("/sysroot/run")
    handoff.move_mounts("/sysroot", ("/run",))
    shutdown.start(%r, "/sysroot", "/oldsys")
"""


@pytest.mark.parametrize("verb, reboot", [("poweroff", "poweroff"), ("halt", "halt"), ("reboot", "restart"),
                                          ("kexec", "restart")])
def test_the_exitrd_unmounts_the_whole_old_root_and_goes_down(fake_machine, verb, reboot):
    r = persistent_stick(fake_machine, hook=EXITRD_HOOK % verb).boot()
    assert r.reboot == reboot, r.console
    left = [m for m in r.mounts if m[1] == "/sysroot" or m[1].startswith("/sysroot/")]
    assert left == [], left
    # children before parents: the persistence volume and the squashfs before /run, the overlay last of all
    umounts = [e[1] for e in r.mount_log if e[0] == "umount"]
    tail = umounts[-len([u for u in umounts if u.startswith("/sysroot")]):]
    assert tail[-1] == "/sysroot" and tail.index("/sysroot/run") > tail.index("/sysroot" + contract.PERSIST_MOUNT)
    bound = [d for d in r.devices if d.startswith("loop") and r.exists("/sys/block/%s/loop/backing_file" % d)]
    assert bound == [], "loop devices still bound: %s" % bound
    assert "mpinit: shutdown: %s: unmounted %d filesystems below /sysroot, none left" % (verb, len(tail)) \
        in r.console, r.console
    assert r.calls_to("sync")


def test_a_filesystem_that_stays_busy_is_remounted_read_only_then_detached(fake_machine):
    m = persistent_stick(fake_machine, hook=EXITRD_HOOK % "poweroff")
    m.fail("umount", errno.EBUSY,
           when=lambda target, flags=0: target.endswith(contract.PERSIST_MOUNT) and not flags & sc.MNT_DETACH)
    r = m.boot()
    assert r.reboot == "poweroff", r.console
    # /run was moved out of the old root (/sysroot here) to /oldsys/run
    remounts = [e for e in r.mount_log if e[0] == "remount" and e[1] == "/oldsys/run/mpinit/persist"]
    assert remounts and remounts[-1][2] & sc.MS_RDONLY, r.mount_log
    # its parent stays too (a mount with a child is busy): both read-only, the topmost detached with its subtree
    assert ("umount", "/oldsys/run", sc.MNT_DETACH) in r.mount_log
    assert [m_ for m_ in r.mounts if m_[1].startswith(("/sysroot", "/oldsys"))] == []
    assert "2 left: " in r.console and "/oldsys/run/mpinit/persist: errno 16" in r.console, r.console
    assert "/oldsys/run: errno 16: Device or resource busy" in r.console
    assert "remounted read-only, detached lazily" in r.console
    assert r.mount_at("/sysroot") is None  # the overlay itself went once /run was moved out of it


def test_what_stays_busy_under_the_old_root_is_moved_out_and_then_unmounted(fake_machine):
    # The medium is busy while the overlay (through the squashfs' loop device) is there; the overlay is busy while
    # /run (holding the medium) is mounted on it: moving /run out of the old root breaks the circle.
    m = persistent_stick(fake_machine, hook=EXITRD_HOOK % "poweroff")

    def overlay_holds_the_medium(target, flags=0):
        return target.endswith(contract.MEDIUM_MOUNT) and any(x.target == "/sysroot" for x in m.kernel.mounts)

    m.fail("umount", errno.EBUSY, when=overlay_holds_the_medium)
    r = m.boot()
    assert r.reboot == "poweroff", r.console
    assert ("move", "/sysroot/run", "/oldsys/run") in r.mount_log, r.mount_log
    umounts = [e[1] for e in r.mount_log if e[0] == "umount"]
    assert umounts.index("/sysroot") < umounts.index("/oldsys" + contract.MEDIUM_MOUNT) < umounts.index("/oldsys/run")
    assert [m_ for m_ in r.mounts if m_[1].startswith(("/sysroot", "/oldsys"))] == []
    assert "none left" in r.console, r.console


def test_an_error_inside_still_goes_down(fake_machine):
    m = persistent_stick(fake_machine, hook=EXITRD_HOOK % "poweroff")
    m.fail("sync", errno.EIO)
    r = m.boot()
    assert r.reboot == "poweroff", r.console
    assert "going down anyway" in r.console
