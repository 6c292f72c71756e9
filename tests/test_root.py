"""mpinit_agent.root: the live overlay stack (with undo on failure), plain roots with fsck, rootflags, ro/rw and a
separate /usr."""

import sys


import pytest

from agent_stub import StubSys
from mpinit_agent import cmdline, contract, syscalls as abi, main, root
from mpinit_agent.failure import BootError

MICROPYTHON = True

R = contract.NEW_ROOT


class Dev:
    def __init__(self, path, **info):
        self.path = path
        self.name = path.rsplit("/", 1)[1]
        self.info = info
        self.size = 0
        self.removable = False


@pytest.fixture
def blockdev(monkeypatch):
    """A stand-in for mpinit_agent.blockdev: find() by exact path or by KEY=value in info."""
    import mpinit_agent

    import types

    mod = types.ModuleType("mpinit_agent.blockdev")

    def find(spec, devices):
        for d in devices:
            if d.path == spec or ("=" in spec and d.info.get(spec.split("=")[0]) == spec.split("=", 1)[1]):
                return d
        return None

    mod.find = find
    mod.describe = lambda devices: ["%s TYPE=%s" % (d.path, d.info.get("TYPE")) for d in devices]
    monkeypatch.setitem(sys.modules, "mpinit_agent.blockdev", mod)
    monkeypatch.setattr(mpinit_agent, "blockdev", mod, raising=False)
    return mod


def ctx_for(line, image=None, root_dev=None, devices=()):
    ctx = main.Context()
    ctx.opts = cmdline.parse(line)
    ctx.image = image
    ctx.root_dev = root_dev
    ctx.devices = list(devices)
    return ctx


def test_overlay_data():
    assert root.overlay_data("/a", "/c") == "lowerdir=/a,upperdir=/c/upper,workdir=/c/work"


@pytest.mark.parametrize("code, meaning", [(0, "ok"), (1, "ok"), (2, "reboot"), (4, "fail"), (8, "fail"),
                                           (-9, "fail")])
def test_fsck_exit_meaning(code, meaning):
    assert root.fsck_exit_meaning(code) == meaning


def test_fstab_entry():
    text = ("# comment\n\nUUID=1 / ext4 defaults 0 1\nLABEL=my\\040usr /usr xfs ro,noatime 0 2\n"
            "/dev/sdb1 /home ext4\n/dev/c /srv ext4 defaults 0\n")
    assert root.fstab_entry(text, "/usr") == ("LABEL=my usr", "xfs", "ro,noatime", 2)
    assert root.fstab_entry(text, "/home") == ("/dev/sdb1", "ext4", "defaults", 0)   # fs_passno missing: 0
    assert root.fstab_entry(text, "/srv")[3] == 0
    assert root.fstab_entry(text, "/") == ("UUID=1", "ext4", "defaults", 1)
    assert root.fstab_entry(text, "/var") is None


def test_live_stack(fs):
    fs.create_file("/run/initramfs/live/live/filesystem.squashfs", contents="hsqs")
    ctx = ctx_for("root=live:LABEL=X rd.live.overlay.size=512", image="/run/initramfs/live/live/filesystem.squashfs")
    with StubSys(fs) as s:
        assert root.run(ctx).startswith("overlay of")
    assert ("loop_attach", (ctx.image, True, True)) in s.calls
    assert s.mounts == [
        ("/dev/loop0", contract.IMAGE_MOUNT, "squashfs", abi.MS_RDONLY, None),
        ("tmpfs", contract.COW_MOUNT, "tmpfs", abi.MS_NOSUID | abi.MS_NODEV, "size=512m,mode=0755"),
        ("overlay", R, "overlay", 0, root.overlay_data(contract.IMAGE_MOUNT, contract.COW_MOUNT)),
    ]
    assert fs.isdir(contract.COW_MOUNT + "/upper") and fs.isdir(contract.COW_MOUNT + "/work")
    assert ctx.image_loop == "/dev/loop0"


def test_live_overlay_size_defaults_to_config(fs):
    fs.create_file("/img.sfs")
    ctx = ctx_for("root=live:LABEL=X", image="/img.sfs")
    with StubSys(fs) as s:
        root.run(ctx)
    assert s.mounted(contract.COW_MOUNT)[0][4] == "size=50%,mode=0755"


def test_whole_device_squashfs_needs_no_loop(fs):
    fs.create_file("/dev/xvda", st_mode=abi.S_IFBLK | 0o600)
    ctx = ctx_for("root=live:/dev/xvda", image="/dev/xvda")
    with StubSys(fs) as s:
        root.run(ctx)
    assert "loop_attach" not in s.names()
    assert s.mounts[0][:3] == ("/dev/xvda", contract.IMAGE_MOUNT, "squashfs")


def test_live_failure_undoes_everything(fs):
    fs.create_file("/img.sfs")
    for nth in (1, 2, 3):  # the squashfs, the tmpfs, the overlay mount fails
        ctx = ctx_for("root=live:LABEL=X", image="/img.sfs")
        with StubSys(fs) as s:
            s.fail("mount", abi.EINVAL, nth=nth)
            with pytest.raises(BootError) as ei:
                root.run(ctx)
        assert ei.value.stage == "root"
        assert s.mounts == []
        assert [c[1] for c in s.calls if c[0] in ("umount", "loop_detach")][-1] == ("/dev/loop0",)
        assert len([c for c in s.calls if c[0] == "umount"]) == nth - 1


def test_loop_failure_is_named(fs):
    fs.create_file("/img.sfs")
    with StubSys(fs) as s:
        s.fail("loop_attach", abi.ENOMEM)
        with pytest.raises(BootError, match="cannot attach /img.sfs to a loop device"):
            root.run(ctx_for("root=live:LABEL=X", image="/img.sfs"))


def test_plain_root_with_fsck_and_flags(fs, blockdev):
    fs.create_file("/sbin/fsck.ext4", st_mode=0o100755)
    dev = Dev("/dev/sda2", TYPE="ext4", UUID="u1")
    ctx = ctx_for("root=UUID=u1 rw rootflags=noatime,data=ordered", root_dev=dev, devices=[dev])
    with StubSys(fs) as s:
        result = root.run(ctx)
    assert ("spawn", (["/sbin/fsck.ext4", "-a", "/dev/sda2"],)) in s.calls
    assert s.names().index("spawn") < s.names().index("mount")
    assert s.mounts == [("/dev/sda2", R, "ext4", abi.MS_NOATIME, "data=ordered")]
    assert "fsck.ext4 exit 0" in result


def test_plain_root_is_read_only_by_default_and_rootfstype_list(fs, blockdev):
    dev = Dev("/dev/vda", TYPE="ext4")
    with StubSys(fs) as s:
        s.fail("mount", abi.EINVAL, nth=1)
        root.run(ctx_for("root=/dev/vda rootfstype=btrfs,ext4", root_dev=dev))
    assert [c[1][2] for c in s.calls if c[0] == "mount"] == ["btrfs", "ext4"]
    assert s.mounts[0][3] == abi.MS_RDONLY


def test_fsck_uncorrected_errors_fail_before_mounting(fs, blockdev):
    fs.create_file("/sbin/fsck.ext4", st_mode=0o100755)
    dev = Dev("/dev/sda2", TYPE="ext4")
    with StubSys(fs, exit_codes={"/sbin/fsck.ext4": 4}) as s:
        with pytest.raises(BootError, match="exit code 4"):
            root.run(ctx_for("root=/dev/sda2", root_dev=dev))
    assert "mount" not in s.names()


def test_fsck_exit_2_reboots(fs, blockdev):
    fs.create_file("/sbin/fsck.ext4", st_mode=0o100755)
    dev = Dev("/dev/sda2", TYPE="ext4")
    with StubSys(fs, exit_codes={"/sbin/fsck.ext4": 2}) as s:
        with pytest.raises(BootError):  # the stub's reboot returns; a real one does not
            root.run(ctx_for("root=/dev/sda2", root_dev=dev))
    assert ("reboot", (abi.RB_AUTOBOOT,)) in s.calls and "mount" not in s.names()


def test_unknown_filesystem_names_rootfstype(fs, blockdev):
    with StubSys(fs):
        with pytest.raises(BootError) as ei:
            root.run(ctx_for("root=/dev/sda2", root_dev=Dev("/dev/sda2")))
    assert ei.value.param == "rootfstype="


def test_separate_usr_from_fstab(fs, blockdev):
    rootdev = Dev("/dev/sda1", TYPE="ext4")
    usr = Dev("/dev/sda2", TYPE="xfs", LABEL="usr")
    fs.create_file(R + "/etc/fstab", contents="/dev/sda1 / ext4 defaults 0 1\nLABEL=usr /usr auto ro,nodev 0 2\n")
    with StubSys(fs) as s:
        assert root.run(ctx_for("root=/dev/sda1", root_dev=rootdev, devices=[rootdev, usr])).endswith(
            ", /usr from /dev/sda2 (no fsck.xfs)")
    assert s.mounts[1] == ("/dev/sda2", R + "/usr", "xfs", abi.MS_RDONLY | abi.MS_NODEV, None)


def test_missing_usr_is_reported_and_root_unmounted(fs, blockdev):
    rootdev = Dev("/dev/sda1", TYPE="ext4")
    fs.create_file(R + "/etc/fstab", contents="UUID=nope /usr ext4 defaults 0 2\n")
    with StubSys(fs) as s:
        with pytest.raises(BootError, match="/usr is a separate filesystem"):
            root.run(ctx_for("root=/dev/sda1", root_dev=rootdev, devices=[rootdev]))
    assert s.mounts == []


# ---- fsck with a packed e2fsck on the fake machine: the DIY guide's exit-code handling ------------------------


def _fsck_machine(fake_machine, code, usr_code=0, tool="/usr/sbin/e2fsck"):
    m = fake_machine(cmdline="root=UUID=6d70696e-6974-4653-434b-000000000001 rootdelay=1")
    fstab = "UUID=6d70696e-6974-4653-434b-000000000002 /usr ext4 defaults 0 2\n"
    m.add_disk("vda", m.filesystem("ext4", uuid="6d70696e-6974-4653-434b-000000000001",
                                   files={"sbin/init": m.executable(b"#!/bin/sh\n"), "usr": m.directory(),
                                          "etc/fstab": fstab}))
    m.add_disk("vdb", m.filesystem("ext4", uuid="6d70696e-6974-4653-434b-000000000002"))

    def e2fsck(machine, argv, env):
        return usr_code if argv[-1] == "/dev/vdb" else code

    m.add_program(tool, action=e2fsck)
    return m


def test_e2fsck_is_found_without_a_fsck_ext4_link_and_checks_root_and_usr(fake_machine):
    r = _fsck_machine(fake_machine, 1).boot()
    assert r.handed_off, r.console
    assert ["/usr/sbin/e2fsck", "-a", "/dev/vda"] in r.spawned and ["/usr/sbin/e2fsck", "-a", "/dev/vdb"] in r.spawned
    assert r.spawned.index(["/usr/sbin/e2fsck", "-a", "/dev/vdb"]) > r.spawned.index(["/usr/sbin/e2fsck", "-a",
                                                                                      "/dev/vda"])
    assert any("corrected errors on /dev/vda" in line for line in r.kmsg)


def test_e2fsck_exit_2_reboots(fake_machine):
    r = _fsck_machine(fake_machine, 2).boot()
    assert r.reboot == "restart" and not r.handed_off
    assert "repaired /dev/vda; rebooting as fsck(8) asks (exit code 2)" in r.console


def _uncorrected(fake_machine, code):
    r = _fsck_machine(fake_machine, code).boot()
    assert r.rescue and not r.handed_off
    assert "boot failed in stage 'root': /usr/sbin/e2fsck /dev/vda: exit code %d" % code in r.console
    assert "4 errors left uncorrected" in r.console
    assert not [mt for mt in r.mounts if mt[1] == "/sysroot"]   # never mounted


# (one test per exit code, not parametrize: this module also runs under MicroPython, whose runner has no fixtures)
def test_e2fsck_exit_4_stops_in_the_rescue_shell_with_the_report(fake_machine):
    _uncorrected(fake_machine, 4)


def test_e2fsck_exit_8_stops_in_the_rescue_shell_with_the_report(fake_machine):
    _uncorrected(fake_machine, 8)


def test_e2fsck_exit_12_stops_in_the_rescue_shell_with_the_report(fake_machine):
    _uncorrected(fake_machine, 12)


def test_e2fsck_failing_on_usr_unmounts_the_root_again(fake_machine):
    r = _fsck_machine(fake_machine, 0, usr_code=4).boot()
    assert r.rescue and "/usr/sbin/e2fsck /dev/vdb: exit code 4" in r.console
    assert "parameter: /etc/fstab /usr" in r.console
    assert not [mt for mt in r.mounts if mt[1].startswith("/sysroot")]


# ---- issue 13: EROFS images and dracut's LiveOS/rootfs.img

def test_erofs_image_is_mounted_as_erofs(fs):
    fs.create_file("/img.erofs")
    ctx = ctx_for("root=live:LABEL=X", image="/img.erofs")
    ctx.image_type = "erofs"    # what medium.check_image probed
    with StubSys(fs) as s:
        root.run(ctx)
    assert s.mounts[0] == ("/dev/loop0", contract.IMAGE_MOUNT, "erofs", abi.MS_RDONLY, None)


def test_image_type_is_probed_when_the_medium_stage_did_not(fs):
    import struct

    sb = bytearray(8192)
    struct.pack_into("<IIIB", sb, 1024, 0xE0F5E1E2, 0, 0, 12)   # EROFS, no superblock CRC feature
    fs.create_file("/run/mpinit/toram/x.img", contents=bytes(sb))
    ctx = ctx_for("root=live:LABEL=X", image="/run/mpinit/toram/x.img")
    with StubSys(fs) as s:
        root.run(ctx)
    assert s.mounts[0][2] == "erofs"


def test_dracut_rootfs_img_inside_the_image_is_the_lower_layer(fs):
    """dracut's dmsquash-live-root: a squashfs holding LiveOS/rootfs.img (an ext4 image) boots that image."""
    from mpinit.testing import images

    fs.create_file("/img.sfs")
    ctx = ctx_for("root=live:LABEL=X", image="/img.sfs")

    class S(StubSys):
        def mount(self, source, target, fstype, flags=0, data=None):
            StubSys.mount(self, source, target, fstype, flags, data)
            if target == contract.IMAGE_MOUNT:
                self.fs.create_file(target + "/LiveOS/rootfs.img",
                                    contents=images.filesystem("ext4", label="rootfs", size=1 << 20))

    with S(fs) as s:
        root.run(ctx)
    assert s.mounts[1] == ("/dev/loop1", contract.ROOTFS_IMG_MOUNT, "ext4", abi.MS_RDONLY, None)
    assert s.mounts[-1] == ("overlay", R, "overlay", 0, root.overlay_data(contract.ROOTFS_IMG_MOUNT,
                                                                         contract.COW_MOUNT))
