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
            "/dev/sdb1 /home ext4\n")
    assert root.fstab_entry(text, "/usr") == ("LABEL=my usr", "xfs", "ro,noatime")
    assert root.fstab_entry(text, "/home") == ("/dev/sdb1", "ext4", "defaults")
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
            ", /usr from /dev/sda2")
    assert s.mounts[1] == ("/dev/sda2", R + "/usr", "xfs", abi.MS_RDONLY | abi.MS_NODEV, None)


def test_missing_usr_is_reported_and_root_unmounted(fs, blockdev):
    rootdev = Dev("/dev/sda1", TYPE="ext4")
    fs.create_file(R + "/etc/fstab", contents="UUID=nope /usr ext4 defaults 0 2\n")
    with StubSys(fs) as s:
        with pytest.raises(BootError, match="/usr is a separate filesystem"):
            root.run(ctx_for("root=/dev/sda1", root_dev=rootdev, devices=[rootdev]))
    assert s.mounts == []
