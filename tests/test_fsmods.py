"""mpinit_agent.fsmods: filesystem drivers loaded before mounting (no /sbin/modprobe for the kernel to call)."""

from agent_stub import StubSys
from mpinit_agent import fsmods, syscalls as abi

MICROPYTHON = True

PROC = "nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\n\text4\n"


class Mods:
    """A stand-in for kmod.Modules."""

    def __init__(self, have, aliases):
        self.have = have
        self.aliases = aliases
        self.loads = []

    def available(self):
        return sorted(self.have)

    def match(self, modalias):
        return list(self.aliases.get(modalias, []))

    def load(self, name, params=None):
        self.loads.append(name)
        return name in self.have

    def load_shipped(self, names):
        out = [n for n in names if n in self.have and n not in self.loads]
        self.loads.extend(out)
        return out


class Ctx:
    def __init__(self, mods):
        self.modules = mods


def test_known_reads_proc_filesystems(fs):
    fs.create_file("/proc/filesystems", contents=PROC)
    assert fsmods.known("ext4") and fsmods.known("tmpfs")
    assert not fsmods.known("vfat") and not fsmods.known("ext")


def test_ensure_loads_the_fs_alias_and_charsets(fs):
    fs.create_file("/proc/filesystems", contents=PROC)
    m = Mods({"vfat", "fat", "nls_cp437", "nls_ascii", "nls_iso8859_1", "nls_utf8"}, {"fs-vfat": ["vfat"]})
    # only the tables vfat's mount loads with the defaults (codepage 437, iocharset ascii; the utf8 option needs
    # no table): the others wait for an EINVAL
    assert fsmods.ensure(Ctx(m), "vfat") == ["vfat", "nls_cp437", "nls_ascii"]
    assert fsmods.ensure(Ctx(m), "ext4") == []  # registered already: nothing loaded
    assert m.loads == ["vfat", "nls_cp437", "nls_ascii"]
    assert fsmods.retry_charsets(Ctx(m), "vfat") == ["nls_iso8859_1", "nls_utf8"]
    assert fsmods.retry_charsets(Ctx(m), "vfat") == []  # loaded already: no second plain retry
    assert fsmods.retry_charsets(Ctx(m), "ext4") == []


def test_ensure_falls_back_to_module_names(fs):
    m = Mods({"isofs", "nls_utf8"}, {})
    assert fsmods.ensure(Ctx(m), "iso9660") == ["isofs", "nls_utf8"]
    assert fsmods.ensure(Ctx(m), "btrfs") == []


def test_retry_data():
    assert fsmods.retry_data("vfat") == "iocharset=utf8"
    assert fsmods.retry_data("ext4") is None


def test_ensure_loop(fs):
    m = Mods({"loop"}, {})
    assert fsmods.ensure_loop(Ctx(m)) is True and m.loads == ["loop"]
    fs.create_file("/dev/loop-control")
    assert fsmods.ensure_loop(Ctx(Mods(set(), {}))) is True


class VfatDev:
    name = "sdb1"
    path = "/dev/sdb1"
    info = {"TYPE": "vfat"}


def test_vfat_mount_is_retried_with_utf8_after_einval(fs):
    from mpinit_agent import main, medium

    ctx = main.Context()
    ctx.modules = Mods(set(), {})
    with StubSys(fs) as s:
        s.fail("mount", abi.EINVAL, nth=1)
        medium.mount_ro(ctx, VfatDev(), "/mnt")
    assert s.mounts == [("/dev/sdb1", "/mnt", "vfat", abi.MS_RDONLY, "iocharset=utf8")]


def test_vfat_einval_loads_the_other_charsets_and_retries_the_same_mount_first(fs):
    # A kernel whose default iocharset is iso8859-1 (upstream's): the first mount fails, nls_iso8859_1 is loaded,
    # the same mount succeeds without iocharset=utf8.
    from mpinit_agent import main, medium

    ctx = main.Context()
    ctx.modules = Mods({"nls_iso8859_1", "nls_utf8"}, {})
    with StubSys(fs) as s:
        s.fail("mount", abi.EINVAL, nth=1)
        medium.mount_ro(ctx, VfatDev(), "/mnt")
    assert ctx.modules.loads[-2:] == ["nls_iso8859_1", "nls_utf8"]
    assert s.mounts == [("/dev/sdb1", "/mnt", "vfat", abi.MS_RDONLY, None)]
    # both fail: the iocharset=utf8 retry comes last
    ctx.modules = Mods({"nls_iso8859_1", "nls_utf8"}, {})
    with StubSys(fs) as s:
        s.fail("mount", abi.EINVAL, nth=(1, 2))
        medium.mount_ro(ctx, VfatDev(), "/mnt")
    assert s.mounts == [("/dev/sdb1", "/mnt", "vfat", abi.MS_RDONLY, "iocharset=utf8")]


def test_mount_type_ntfs_is_ntfs3_unless_the_kernel_has_ntfs(fs):
    fs.create_file("/proc/filesystems", contents="nodev\ttmpfs\n\tvfat\n")
    assert fsmods.mount_type("ntfs") == "ntfs3"
    assert fsmods.mount_type("vfat") == "vfat" and fsmods.mount_type("erofs") == "erofs"
    fs.remove_object("/proc/filesystems")
    fs.create_file("/proc/filesystems", contents="\tntfs\n\tntfs3\n")
    assert fsmods.mount_type("ntfs") == "ntfs"


def test_ensure_reads_proc_filesystems_once_per_boot(fs):
    fs.create_file("/proc/filesystems", contents=PROC)
    m = Mods({"vfat", "squashfs", "overlay"}, {"fs-vfat": ["vfat"], "fs-squashfs": ["squashfs"],
                                               "fs-overlay": ["overlay"]})
    ctx = Ctx(m)
    assert fsmods.ensure(ctx, "vfat") == ["vfat"]
    # later changes to the file are not read again: what ensure() loaded is remembered instead
    fs.remove_object("/proc/filesystems")
    assert fsmods.ensure(ctx, "vfat") == [] and fsmods.ensure(ctx, "ext4") == []
    assert fsmods.ensure(ctx, "squashfs") == ["squashfs"] and fsmods.ensure(ctx, "squashfs") == []
    assert m.loads == ["vfat", "squashfs"]
    assert sorted(ctx.fs_registered) == ["ext4", "proc", "squashfs", "sysfs", "tmpfs", "vfat"]
