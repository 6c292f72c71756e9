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


class Ctx:
    def __init__(self, mods):
        self.modules = mods


def test_known_reads_proc_filesystems(fs):
    fs.create_file("/proc/filesystems", contents=PROC)
    assert fsmods.known("ext4") and fsmods.known("tmpfs")
    assert not fsmods.known("vfat") and not fsmods.known("ext")


def test_ensure_loads_the_fs_alias_and_charsets(fs):
    fs.create_file("/proc/filesystems", contents=PROC)
    m = Mods({"vfat", "fat", "nls_cp437", "nls_utf8"}, {"fs-vfat": ["vfat"]})
    assert fsmods.ensure(Ctx(m), "vfat") == ["vfat", "nls_cp437", "nls_utf8"]
    assert fsmods.ensure(Ctx(m), "ext4") == []  # registered already: nothing loaded
    assert m.loads == ["vfat", "nls_cp437", "nls_utf8"]


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


def test_vfat_mount_is_retried_with_utf8_after_einval(fs):
    from mpinit_agent import main, medium

    class Dev:
        name = "sdb1"
        path = "/dev/sdb1"
        info = {"TYPE": "vfat"}

    ctx = main.Context()
    ctx.modules = Mods(set(), {})
    with StubSys(fs) as s:
        s.fail("mount", abi.EINVAL, nth=1)
        medium.mount_ro(ctx, Dev(), "/mnt")
    assert s.mounts == [("/dev/sdb1", "/mnt", "vfat", abi.MS_RDONLY, "iocharset=utf8")]


def test_mount_type_ntfs_is_ntfs3_unless_the_kernel_has_ntfs(fs):
    fs.create_file("/proc/filesystems", contents="nodev\ttmpfs\n\tvfat\n")
    assert fsmods.mount_type("ntfs") == "ntfs3"
    assert fsmods.mount_type("vfat") == "vfat" and fsmods.mount_type("erofs") == "erofs"
    fs.remove_object("/proc/filesystems")
    fs.create_file("/proc/filesystems", contents="\tntfs\n\tntfs3\n")
    assert fsmods.mount_type("ntfs") == "ntfs"
