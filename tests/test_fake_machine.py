"""The fake machine's own tests: each syscall of the boundary against what a Linux kernel would show."""

import errno
import hashlib
import json
import os

import pytest

from mpinit.testing import FakeMachine
from mpinit_agent import contract
from mpinit_agent import syscalls as sc

KVER = "6.1.0-fake"


def ko(name):
    return "%s/%s/kernel/%s.ko" % (contract.MODULES_DIR, KVER, name)


def live_machine(fake_machine, **kw):
    """A modular kernel: a virtio disk holding a FAT medium with a squashfs image."""
    kw.setdefault("cmdline", "root=live:LABEL=MPLIVE quiet")
    kw.setdefault("builtin", ("loop", "overlay"))
    m = fake_machine(kver=KVER, **kw)
    m.add_module("virtio_ring")
    m.add_module("virtio_blk", depends=("virtio_ring",), aliases=("virtio:d00000002v*",))
    m.add_module("squashfs")
    m.add_module("fat")
    m.add_module("vfat", depends=("fat",))
    m.sq = m.squashfs({"sbin/init": m.executable(b"#!/bin/sh\n"), "etc/os-release": b"ID=demo\n",
                       "bin/sh": m.executable(b"sh"), "sbin/notexec": b"data", "sbin/link": m.symlink("/bin/sh"),
                       "var/log": m.directory()})
    m.fat = m.filesystem("vfat", label="MPLIVE", files={"live/filesystem.squashfs": m.sq})
    m.add_disk("vda", m.fat, driver="virtio_blk", modalias="virtio:d00000002v00001AF4")
    return m


def api_mounts():
    sc.mount("proc", "/proc", "proc", 0, None)
    sc.mount("sysfs", "/sys", "sysfs", 0, None)
    sc.mount("devtmpfs", "/dev", "devtmpfs", 0, None)


def load(*names):
    for n in names:
        sc.load_module(ko(n))


def read(path):
    with open(path) as f:
        return f.read()


def block_devices():
    """/sys/class/block without the unbound loop devices every kernel with the loop driver shows."""
    return sorted(n for n in os.listdir("/sys/class/block")
                  if not (n.startswith("loop") and read("/sys/class/block/%s/size" % n) == "0\n"))


def mount_medium(m):
    """Up to the squashfs mounted on /run/base from a loop device."""
    api_mounts()
    load("virtio_ring", "virtio_blk", "fat", "vfat", "squashfs")
    os.makedirs("/run/medium")
    sc.mount("/dev/vda", "/run/medium", "vfat", sc.MS_RDONLY, None)
    loop = sc.loop_attach("/run/medium/live/filesystem.squashfs")
    os.makedirs("/run/base")
    sc.mount(loop, "/run/base", "squashfs", sc.MS_RDONLY, None)
    return loop


# ---------------------------------------------------------------------------------------------- the initramfs


def test_initramfs_holds_config_module_table_modules_hooks_and_dirs(fake_machine):
    m = live_machine(fake_machine, config={"modules": ["virtio_blk"]})
    m.add_hook("10-x.py", "def before_root(ctx):\n    pass\n")
    m.add_program("/sbin/fsck.ext4", exit_code=1)
    m.start()
    for d in contract.IMAGE_DIRS:
        assert os.path.isdir(d), d
    assert json.loads(read(contract.CONFIG_PATH)) == {"modules": ["virtio_blk"]}
    assert read(contract.HOOKS_DIR + "/10-x.py").startswith("def before_root")
    table = json.loads(read(contract.MODULES_TABLE_PATH))
    names = [row[0] for row in table["modules"]]
    assert names.index("virtio_ring") < names.index("virtio_blk")
    assert table["builtin"] == ["loop", "overlay"]
    assert os.path.isfile(ko("virtio_blk"))
    assert os.stat("/sbin/fsck.ext4").st_mode & 0o111
    assert os.path.exists("/dev/console")
    assert sc.statfs("/")[0] == sc.RAMFS_MAGIC


def test_agent_module_table_reader_accepts_the_table(fake_machine):
    from mpinit_agent import kmod

    m = live_machine(fake_machine)
    m.start()
    api_mounts()
    mods = kmod.Modules()
    assert mods.match("virtio:d00000002v00001AF4") == ["virtio_blk"]
    assert mods.coldplug() == ["virtio_ring", "virtio_blk"]
    assert os.path.exists("/dev/vda")


def test_a_driver_missing_from_the_description_is_an_error_naming_it(fake_machine):
    m = fake_machine()
    m.add_disk("sda", m.filesystem("ext4"), driver="ahci")
    with pytest.raises(ValueError, match="sda.*ahci"):
        m.start()


# ---------------------------------------------------------------------------------------------- proc, sys, dev


def test_proc_shows_cmdline_meminfo_filesystems_and_mounts(fake_machine):
    m = live_machine(fake_machine, ram_mb=512)
    m.start()
    api_mounts()
    assert read("/proc/cmdline") == "root=live:LABEL=MPLIVE quiet\n"
    mem = dict((line.split(":")[0], int(line.split()[1])) for line in read("/proc/meminfo").splitlines())
    assert mem["MemTotal"] == 512 * 1024
    assert 0 < mem["MemAvailable"] < mem["MemTotal"]
    fstypes = read("/proc/filesystems")
    assert "nodev\tproc" in fstypes and "nodev\toverlay" in fstypes and "squashfs" not in fstypes
    load("squashfs")
    assert "\tsquashfs\n" in read("/proc/filesystems")
    assert "squashfs 16384 0 - Live" in read("/proc/modules")
    lines = read("/proc/mounts").splitlines()
    assert lines[1:] == ["proc /proc proc rw,relatime 0 0", "sysfs /sys sysfs rw,relatime 0 0",
                         "devtmpfs /dev devtmpfs rw,relatime 0 0"]
    assert " /sys rw,relatime - sysfs sysfs " in read("/proc/self/mountinfo")


def test_tmpfs_contents_use_memory(fake_machine):
    m = fake_machine(ram_mb=64)
    m.start()
    sc.mount("proc", "/proc", "proc", 0, None)
    before = sc.sysinfo()[2]
    sc.mount("tmpfs", "/run", "tmpfs", 0, "size=8m")
    with open("/run/big", "wb") as f:
        f.write(b"x" * (1 << 20))
    assert sc.sysinfo()[2] == before - (1 << 20)
    assert int(read("/proc/meminfo").split("MemAvailable:")[1].split()[0]) == (before - (1 << 20)) >> 10


def test_printk_written_by_the_agent_stays(fake_machine):
    fake_machine().start()
    sc.mount("proc", "/proc", "proc", 0, None)
    with open("/proc/sys/kernel/printk", "w") as f:
        f.write("1")
    sc.mount("tmpfs", "/tmp", "tmpfs", 0, None)   # a refresh of /proc
    assert read("/proc/sys/kernel/printk") == "1"


def test_disk_appears_only_after_its_driver_loads(fake_machine):
    m = live_machine(fake_machine)
    m.start()
    api_mounts()
    devdir = "/sys/devices/pci0000:00/0000:00:03.0"
    assert read(devdir + "/modalias") == "virtio:d00000002v00001AF4\n"   # coldplug can see it
    assert block_devices() == []
    assert not os.path.exists("/dev/vda")
    with pytest.raises(OSError) as e:
        load("virtio_blk")                 # virtio_ring not loaded: unknown symbols
    assert e.value.errno == errno.ENOENT
    load("virtio_ring", "virtio_blk")
    assert block_devices() == ["vda"]
    assert read("/sys/class/block/vda/dev") == "254:0\n"
    assert read("/sys/class/block/vda/size") == "%d\n" % (len(m.fat) // 512)
    assert read("/sys/class/block/vda/removable") == "0\n"
    assert "DEVTYPE=disk" in read("/sys/class/block/vda/uevent")
    assert os.path.realpath("/sys/dev/block/254:0") == os.path.realpath("/sys/block/vda")
    assert os.path.isdir("/sys/module/virtio_blk") and read("/sys/module/virtio_blk/initstate") == "live\n"
    assert os.path.isdir("/sys/module/loop") and not os.path.exists("/sys/module/loop/initstate")  # built in
    with open("/dev/vda", "rb") as f:
        assert f.read() == m.fat.data       # the probes read real superblock bytes
    assert os.stat("/dev/vda").st_mode & 0o170000 == sc.S_IFBLK


def test_late_usb_stick_appears_on_the_virtual_clock(fake_machine):
    m = fake_machine()
    m.add_module("usb_storage", aliases=("usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*",))
    parts = [m.partition(m.filesystem("vfat", label="STICK"), partlabel="LIVE"),
             m.partition(m.filesystem("ext4", label="DATA"))]
    m.add_disk("sdb", parts, table="gpt", removable=True, driver="usb_storage", appear_after_ms=3000)
    m.start()
    api_mounts()
    t0 = sc.uptime_ms()
    sc.load_module(ko("usb_storage").replace(KVER, "6.1.0-fake"))
    sc.sleep_ms(2900)
    assert not os.path.exists("/sys/class/block/sdb")
    sc.sleep_ms(200)
    assert block_devices() == ["sdb", "sdb1", "sdb2"]
    assert sc.uptime_ms() - t0 < 3200           # virtual: no real sleeping, but time is consistent
    assert read("/sys/class/block/sdb/removable") == "1\n"
    assert read("/sys/class/block/sdb2/partition") == "2\n"
    assert "PARTNAME=LIVE" in read("/sys/class/block/sdb1/uevent")
    assert read("/sys/class/block/sdb1/dev") == "8:17\n"
    assert os.path.exists("/dev/sdb2")


def test_mbr_disk_partitions(fake_machine):
    m = fake_machine()
    m.add_disk("sda", [m.partition(m.filesystem("ext4", label="ROOT"))], table="mbr", signature=0x1234)
    m.start()
    api_mounts()
    assert block_devices() == ["sda", "sda1"]


def test_mknod_block_node_holds_the_device_bytes(fake_machine):
    m = fake_machine(devtmpfs=False)
    disk = m.filesystem("ext4", label="ROOT")
    m.add_disk("vda", disk)
    m.start()
    sc.mount("sysfs", "/sys", "sysfs", 0, None)
    with pytest.raises(OSError) as e:
        sc.mount("devtmpfs", "/dev", "devtmpfs", 0, None)
    assert e.value.errno == errno.ENODEV
    sc.mount("tmpfs", "/dev", "tmpfs", 0, "mode=0755")
    major, minor = [int(x) for x in read("/sys/dev/block/254:0/dev").split(":")]
    sc.mknod("/dev/vda", sc.S_IFBLK | 0o600, sc.makedev(major, minor))
    assert sc.major(sc.makedev(major, minor)) == 254 and sc.minor(sc.makedev(259, 300)) == 300
    with open("/dev/vda", "rb") as f:
        assert f.read() == disk.data
    os.makedirs("/mnt")
    sc.mount("/dev/vda", "/mnt", "ext4", 0, None)
    assert sc.statfs("/mnt")[0] == sc.EXT4_SUPER_MAGIC


# ---------------------------------------------------------------------------------------------- mounts


def test_block_mount_checks_type_module_and_source(fake_machine):
    m = live_machine(fake_machine)
    m.start()
    api_mounts()
    load("virtio_ring", "virtio_blk")
    os.makedirs("/mnt")

    def mount_error(*args):
        with pytest.raises(OSError) as e:
            sc.mount(*args)
        return e.value.errno

    assert mount_error("/dev/vda", "/mnt", "vfat", 0, None) == errno.ENODEV     # vfat not loaded yet
    load("fat", "vfat", "squashfs")
    assert mount_error("/dev/vda", "/mnt", "squashfs", 0, None) == errno.EINVAL  # wrong type for the bytes
    assert mount_error("/dev/nothing", "/mnt", "vfat", 0, None) == errno.ENOENT
    assert mount_error("/etc/mpinit/modules.tbl", "/mnt", "vfat", 0, None) == errno.ENOTBLK
    assert mount_error("/dev/vda", "/nowhere", "vfat", 0, None) == errno.ENOENT
    assert mount_error("none", "/mnt", "nosuchfs", 0, None) == errno.ENODEV
    sc.mount("/dev/vda", "/mnt", "vfat", sc.MS_RDONLY, None)
    assert os.listdir("/mnt") == ["live"]
    assert sc.statfs("/mnt")[0] == sc.MSDOS_SUPER_MAGIC


def test_loop_squashfs_overlay_move_chroot_execv(fake_machine):
    m = live_machine(fake_machine)
    m.start()
    loop = mount_medium(m)
    assert loop == "/dev/loop0"
    assert read("/sys/class/block/loop0/loop/backing_file") == "/run/medium/live/filesystem.squashfs\n"
    assert sc.statfs("/run/base")[0] == sc.SQUASHFS_MAGIC
    os.makedirs("/run/cow")
    sc.mount("tmpfs", "/run/cow", "tmpfs", 0, "size=4m")
    os.makedirs("/run/cow/upper/etc")
    os.makedirs("/run/cow/work")
    with open("/run/cow/upper/etc/os-release", "w") as f:
        f.write("ID=upper\n")
    sc.mount("overlay", "/sysroot", "overlay", 0,
             "lowerdir=/run/base,upperdir=/run/cow/upper,workdir=/run/cow/work")
    assert read("/sysroot/etc/os-release") == "ID=upper\n"
    assert sorted(os.listdir("/sysroot")) == ["bin", "etc", "sbin", "var"]
    assert sc.statfs("/sysroot")[0] == sc.OVERLAYFS_SUPER_MAGIC
    devs = {sc.lstat(p)[2] for p in ("/", "/sysroot", "/run/base", "/run/cow", "/run/medium", "/proc")}
    assert len(devs) == 6                   # the initramfs cleanup can tell mounts apart
    for d in ("/proc", "/sys", "/dev"):
        os.makedirs("/sysroot" + d)
        sc.mount(d, "/sysroot" + d, None, sc.MS_MOVE, None)
    assert not os.path.exists("/proc/cmdline")
    assert read("/sysroot/proc/cmdline").startswith("root=live:")
    assert os.path.exists("/sysroot/dev/loop0")
    assert "proc /sysroot/proc proc" in read("/sysroot/proc/mounts")
    sc.chroot("/sysroot")
    with pytest.raises(OSError) as e:
        sc.execv("/sbin/missing", ["init"])
    assert e.value.errno == errno.ENOENT
    with pytest.raises(OSError) as e:
        sc.execv("/sbin/notexec", ["init"])
    assert e.value.errno == errno.EACCES
    res = m.run(sc.execv, "/sbin/link", ["/sbin/link", "splash"])   # a symlink resolved inside the new root
    assert res.how == "execv"
    result = m.stop()
    assert result.handed_off and result.init == "/sbin/link" and result.argv == ["/sbin/link", "splash"]
    assert result.root == "/sysroot"
    assert result.mount_at("/sysroot") [2] == "overlay"
    assert result.mount_at("/sysroot/proc")[2] == "proc"
    assert ("move", "/proc", "/sysroot/proc") in result.mount_log
    assert result.loaded_modules == ["virtio_ring", "virtio_blk", "fat", "vfat", "squashfs"]


def test_overlay_option_checks(fake_machine):
    m = live_machine(fake_machine)
    m.start()
    mount_medium(m)
    for d in ("/run/a/upper", "/run/a/work", "/run/b/work"):
        os.makedirs(d)
    sc.mount("tmpfs", "/run/b", "tmpfs", 0, None)
    os.makedirs("/run/b/work")

    def err(data):
        with pytest.raises(OSError) as e:
            sc.mount("overlay", "/sysroot", "overlay", 0, data)
        return e.value.errno

    assert err("lowerdir=/run/base,upperdir=/run/a/upper,workdir=/run/b/work") == errno.EINVAL
    assert err("lowerdir=/run/nothing,upperdir=/run/a/upper,workdir=/run/a/work") == errno.ENOENT
    assert err("upperdir=/run/a/upper,workdir=/run/a/work") == errno.EINVAL
    assert err("lowerdir=/run/base,upperdir=/run/a/upper") == errno.EINVAL
    sc.mount("overlay", "/sysroot", "overlay", 0, "lowerdir=/run/base")   # read-only overlay: fine
    assert os.path.isfile("/sysroot/sbin/init")


def test_toram_copy_mounts_and_corrupt_copy_does_not(fake_machine):
    m = live_machine(fake_machine)
    m.start()
    api_mounts()
    load("virtio_ring", "virtio_blk", "fat", "vfat", "squashfs")
    os.makedirs("/run/medium")
    sc.mount("/dev/vda", "/run/medium", "vfat", sc.MS_RDONLY, None)
    os.makedirs("/run/ram")
    sc.mount("tmpfs", "/run/ram", "tmpfs", 0, "size=4m")
    src = sc.open("/run/medium/live/filesystem.squashfs", sc.O_RDONLY)
    dst = sc.open("/run/ram/fs.sq", sc.O_WRONLY | sc.O_CREAT, 0o644)
    while sc.copy_range(src, dst, 1 << 16):
        pass
    sc.close(src)
    sc.close(dst)
    sc.umount("/run/medium")
    with open("/run/ram/bad.sq", "wb") as f:
        data = bytearray(m.sq.data)
        data[4096] ^= 1
        f.write(data)
    os.makedirs("/run/base")
    sc.mount(sc.loop_attach("/run/ram/fs.sq"), "/run/base", "squashfs", 0, None)
    assert os.path.isfile("/run/base/sbin/init")
    bad = sc.loop_attach("/run/ram/bad.sq")
    os.makedirs("/run/bad")
    with pytest.raises(OSError) as e:
        sc.mount(bad, "/run/bad", "squashfs", 0, None)
    assert e.value.errno == errno.EINVAL
    assert hashlib.sha256(read_bytes("/run/ram/fs.sq")).digest() == hashlib.sha256(m.sq.data).digest()


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def test_tmpfs_size_gives_enospc_and_statfs(fake_machine):
    fake_machine(ram_mb=256).start()
    sc.mount("tmpfs", "/run", "tmpfs", 0, "size=64k,mode=0700")
    assert os.stat("/run").st_mode & 0o777 == 0o700
    magic, bsize, blocks, bfree, _ = sc.statfs("/run")
    assert (magic, bsize, blocks, bfree) == (sc.TMPFS_MAGIC, 4096, 16, 16)
    with pytest.raises(OSError) as e:
        with open("/run/x", "wb") as f:
            f.write(b"x" * (128 << 10))
    assert e.value.errno == errno.ENOSPC
    sc.mount("tmpfs", "/tmp", "tmpfs", 0, "size=50%")
    assert sc.statfs("/tmp")[2] == (128 << 20) // 4096


def test_umount_busy_not_mounted_and_loop_autoclear(fake_machine):
    m = live_machine(fake_machine)
    m.start()
    mount_medium(m)
    with pytest.raises(OSError) as e:
        sc.umount("/run")
    assert e.value.errno == errno.EINVAL
    os.makedirs("/run/base2")
    sc.mount("tmpfs", "/run/medium", "tmpfs", 0, None)   # over-mount: hides the medium
    assert os.listdir("/run/medium") == []
    sc.umount("/run/medium")
    assert os.listdir("/run/medium") == ["live"]
    with pytest.raises(OSError) as e:
        sc.loop_attach("/run/medium/nothing")
    assert e.value.errno == errno.ENOENT
    sc.umount("/run/base")
    # LO_FLAGS_AUTOCLEAR: unbound again; the device itself stays (size 0, no loop/ attributes).
    assert read("/sys/class/block/loop0/size") == "0\n" and not os.path.exists("/sys/class/block/loop0/loop")
    assert os.path.getsize("/dev/loop0") == 0
    sc.mount("tmpfs", "/sysroot", "tmpfs", 0, None)
    os.makedirs("/sysroot/run")
    sc.mount("tmpfs", "/sysroot/run", "tmpfs", 0, None)
    with pytest.raises(OSError) as e:
        sc.umount("/sysroot")
    assert e.value.errno == errno.EBUSY
    sc.umount("/sysroot", sc.MNT_DETACH)
    assert [x.target for x in m.kernel.mounts if x.target.startswith("/sysroot")] == []


def test_loop_detach_of_a_mounted_device_sets_autoclear(fake_machine):
    m = live_machine(fake_machine)
    m.start()
    loop = mount_medium(m)
    dev = m.kernel.devices["loop0"]
    dev.backing = dev.backing[:3] + (False,)
    sc.loop_detach(loop)
    assert os.path.exists(loop)
    sc.umount("/run/base")
    assert read("/sys/class/block/loop0/size") == "0\n"
    with pytest.raises(OSError) as e:
        sc.loop_detach(loop)
    assert e.value.errno == errno.ENXIO          # LOOP_CLR_FD on an unbound device


def test_bind_mount_shows_the_same_tree(fake_machine):
    fake_machine().start()
    sc.mount("tmpfs", "/run", "tmpfs", 0, None)
    os.makedirs("/run/a")
    os.makedirs("/tmp/b")
    sc.mount("/run/a", "/tmp/b", None, sc.MS_BIND, None)
    with open("/tmp/b/f", "w") as f:
        f.write("x")
    assert read("/run/a/f") == "x"
    assert sc.lstat("/tmp/b")[2] == sc.lstat("/run")[2]
    sc.umount("/tmp/b")
    assert os.listdir("/tmp/b") == []


def test_move_onto_root_then_chroot_dot(fake_machine):
    m = fake_machine()
    root = m.filesystem("ext4", label="ROOT", files={"sbin/init": m.executable(b"x")})
    m.add_disk("vda", root)
    m.start()
    sc.mount("devtmpfs", "/dev", "devtmpfs", 0, None)
    sc.mount("/dev/vda", "/sysroot", "ext4", 0, None)
    sc.chdir("/sysroot")
    sc.mount(".", "/", None, sc.MS_MOVE, None)
    sc.chroot(".")
    m.run(sc.execv, "/sbin/init", ["/sbin/init"])
    result = m.stop()
    assert result.handed_off and result.root == "/sysroot"


# ---------------------------------------------------------------------------------------------- modules


def test_load_module_errors_and_params(fake_machine):
    m = live_machine(fake_machine, cmdline="module_blacklist=fat")
    m.add_file("/lib/modules/junk.ko", b"not an ELF")
    m.start()
    sc.mount("sysfs", "/sys", "sysfs", 0, None)

    def err(path):
        with pytest.raises(OSError) as e:
            sc.load_module(path)
        return e.value.errno

    assert err(ko("missing")) == errno.ENOENT
    assert err("/lib/modules/junk.ko") == errno.ENOEXEC
    assert err(ko("fat")) == errno.EPERM
    sc.load_module(ko("virtio_ring"), "force=1 mode=2")
    assert err(ko("virtio_ring")) == errno.EEXIST
    assert read("/sys/module/virtio_ring/parameters/mode") == "2\n"
    assert m.kernel.module_params["virtio_ring"] == "force=1 mode=2"


# ---------------------------------------------------------------------------------------------- processes, console, end


def test_spawn_programs_and_waitpid(fake_machine):
    m = fake_machine()
    ran = []
    m.add_program("/sbin/fsck.ext4", exit_code=1, output="fsck: clean\n")
    m.add_program("/sbin/mdadm", action=lambda machine, argv, env: ran.append(argv) or 0)
    m.add_file("/bin/unknown", m.executable(b"x"))
    m.start()
    pid = sc.spawn(["/sbin/fsck.ext4", "-p", "/dev/vda"])
    assert sc.waitpid(pid) == (pid, 1 << 8)
    assert sc.exit_code(sc.waitpid(sc.spawn(["/sbin/mdadm", "--assemble"]))[1]) == 0
    assert ran == [["/sbin/mdadm", "--assemble"]]
    assert sc.exit_code(sc.waitpid(sc.spawn(["/bin/missing"]))[1]) == 127
    assert sc.exit_code(sc.waitpid(sc.spawn(["/bin/unknown"]))[1]) == 127
    with pytest.raises(OSError) as e:
        sc.waitpid(pid)
    assert e.value.errno == errno.ECHILD
    result = m.stop()
    assert "fsck: clean" in result.console
    assert result.unknown_programs == ["/bin/missing", "/bin/unknown"]


def test_console_kmsg_and_calls_are_recorded(fake_machine):
    m = fake_machine()

    def boot():
        sc.mount("devtmpfs", "/dev", "devtmpfs", 0, None)
        with open("/dev/kmsg", "w") as k:
            k.write("<6>mpinit: one\n")
            k.flush()
            k.write("<6>mpinit: two\n")
        with open("/dev/kmsg", "w") as k:     # a second open must not lose the first lines
            k.write("<3>mpinit: three\n")
        fd = sc.open("/dev/console", sc.O_RDWR)
        sc.write(fd, b"on the console\n")
        print("printed")
        sc.reboot(sc.RB_POWER_OFF)

    result = m.boot(boot)
    assert result.kmsg == ["<6>mpinit: one", "<6>mpinit: two", "<3>mpinit: three"]
    assert "on the console\n" in result.console and "printed\n" in result.console
    assert result.reboot == "poweroff" and not result.handed_off and not result.panic
    assert result.calls[0] == ("mount", ("devtmpfs", "/dev", "devtmpfs", 0, None))
    assert result.calls_to("reboot") == [(sc.RB_POWER_OFF,)]


def test_readline_feeds_console_input_then_ends_stuck(fake_machine):
    m = fake_machine()
    m.console_input = ["1 + 1", m.EOF, "resume()"]
    seen = []

    def repl():
        while True:
            try:
                seen.append(sc.readline(">>> "))
            except EOFError:
                seen.append("EOF")

    result = m.boot(repl)
    assert seen == ["1 + 1", "EOF", "resume()"]
    assert result.rescue and result.stuck and not result.panic
    assert ">>> 1 + 1\n" in result.console


def test_the_end_cannot_be_swallowed_and_exceptions_are_panics(fake_machine):
    m = fake_machine()

    def boot():
        try:
            sc.exit(3)
        except Exception:
            pass
        raise AssertionError("not reached")

    result = m.boot(boot)
    assert result.exit_code == 3 and result.panic and result.error is None


def test_an_exception_in_pid1_is_a_panic_with_its_traceback():
    m2 = FakeMachine()
    result = m2.boot(lambda: 1 / 0)
    assert result.panic and "ZeroDivisionError" in result.error
    assert sc.mount is not m2 and sc.mount.__name__ == "_missing"   # restored


def test_fault_injection_when_times_skip(fake_machine):
    m = fake_machine()
    m.fail("mount", errno.EIO, when=lambda source, target, *a: target == "/sys", times=1)
    m.fail("uname", errno.ENOSYS, skip=1)
    m.start()
    sc.mount("proc", "/proc", "proc", 0, None)
    with pytest.raises(OSError) as e:
        sc.mount("sysfs", "/sys", "sysfs", 0, None)
    assert e.value.errno == errno.EIO
    sc.mount("sysfs", "/sys", "sysfs", 0, None)      # times=1: the second try works
    assert sc.uname()[2] == "6.1.0-fake"
    for _ in range(2):
        with pytest.raises(OSError) as e:
            sc.uname()
        assert e.value.errno == errno.ENOSYS
    with pytest.raises(ValueError, match="mountt"):
        m.fail("mountt", errno.EIO)


def test_every_interface_name_is_implemented(fake_machine):
    m = fake_machine()
    m.start()
    for name in sc.NAMES:
        assert getattr(sc, name).__name__ == name, name
    assert sc.getpid() == 1
    assert sc.uname()[0] == "Linux"
    assert sc.strerror(errno.ENOENT) == os.strerror(errno.ENOENT)
    old = sc.umask(0o077)
    assert sc.umask(old) == 0o077
    sc.symlink("/etc", "/lnk")
    assert sc.readlink("/lnk") == "/etc"
    assert sc.access("/etc", sc.R_OK) and not sc.access("/nothing", sc.F_OK)
    sc.chmod("/tmp", 0o1777)
    assert sc.lstat("/tmp")[0] & 0o7777 == 0o1777
    sc.chown("/tmp", 0, 0)
    fd = sc.open("/tmp/f", sc.O_WRONLY | sc.O_CREAT)
    assert sc.write(fd, b"abc") == 3
    sc.close(fd)
    fd = sc.open("/tmp/f", sc.O_RDONLY)
    assert sc.dup2(fd, 0) == 0 and sc.read(fd, 10) == b"abc"
    assert sc.ioctl(fd, sc.KDSKBENT, bytearray(4)) == 0 and sc.set_ctty(fd) is None and sc.setsid()
    with pytest.raises(OSError):
        sc.ioctl(fd, 0x1234)
    sc.kill(0, sc.SIGTERM)
    sc.sync()
    before = sc.uptime_ms()
    sc.sleep_ms(30000)
    assert sc.uptime_ms() >= before + 30000
    assert sc.sysinfo()[0] == 30
    with pytest.raises(OSError) as e:
        sc.reboot(12345)
    assert e.value.errno == errno.EINVAL


def test_standalone_machine_without_the_fixture():
    m = FakeMachine(cmdline="quiet", ram_mb=128)
    m.add_disk("vda", m.filesystem("ext4", label="ROOT", files={"sbin/init": m.executable(b"x")}))

    def boot():
        sc.mount("devtmpfs", "/dev", "devtmpfs", 0, None)
        sc.mount("/dev/vda", "/sysroot", "ext4", sc.MS_RDONLY, None)
        sc.chroot("/sysroot")
        sc.execv("/sbin/init", ["/sbin/init"])

    result = m.boot(boot)
    assert result.handed_off and result.read("/sysroot/sbin/init") == b"x"
    assert not os.path.exists("/sysroot/sbin/init")     # the real filesystem was never touched


def test_whole_boot_with_agent_main(fake_machine):
    for name in ("main", "blockdev", "probe", "medium", "root", "handoff"):
        pytest.importorskip("mpinit_agent." + name, reason="the agent's %s.py has not landed yet" % name)
    # No modprobe in an initramfs: the kernel's request_module("fs-vfat") fails, so the fs modules are listed.
    m = live_machine(fake_machine, config={"modules": ["vfat", "squashfs"]})
    m.console_input = []
    result = m.boot()
    assert result.handed_off, result.console
    assert result.init == "/sbin/init" and result.root == contract.NEW_ROOT
    # switch_root style: the overlay was moved onto /, with /proc /sys /dev /run moved inside it.
    assert result.mount_at("/")[2] == "overlay"
    for path in ("/proc", "/sys", "/dev", "/run", contract.MEDIUM_MOUNT):
        assert result.mount_at(path) is not None, path
    assert set(result.loaded_modules) >= {"virtio_ring", "virtio_blk", "fat", "vfat", "squashfs"}
    assert result.read("/etc/os-release") == b"ID=demo\n"
    # The initramfs was emptied without crossing into the new root (its mount point stays, as switch_root's).
    assert result.initramfs_left == [contract.NEW_ROOT]
    assert not result.panic and not result.rescue


def test_agent_first_stages_run_in_the_machine(fake_machine):
    # The real agent up to an rd.break before 'devices': early mounts, coldplug through the alias table, hooks,
    # and the rescue REPL reading console_input; needs no blockdev.py.
    m = live_machine(fake_machine, cmdline="root=live:LABEL=MPLIVE rd.break=devices")
    m.add_hook("10-mark.py",
               "def after_modules(ctx):\n    with open('/run/hook-ran', 'w') as f:\n        f.write('yes')\n")
    m.console_input = ["print('sum', 20 + 22)"]
    result = m.boot()
    assert result.stuck and result.rescue and not result.handed_off, result.console
    targets = [t for _s, t, _f, _fl, _d in result.mounts]
    for path in ("/proc", "/sys", "/dev", "/run"):
        assert path in targets
    assert result.mount_at("/dev")[2] == "devtmpfs"
    assert result.loaded_modules[:2] == ["virtio_ring", "virtio_blk"]    # coldplug of the disk's modalias
    assert any("mpinit: early:" in line for line in result.kmsg)
    assert result.read("/run/hook-ran") == b"yes"
    assert "sum 42" in result.console
    assert ("mount", ("devtmpfs", "/dev", "devtmpfs", result.mount_at("/dev")[3], "mode=0755")) in result.calls


def test_agent_failing_early_mount_reaches_rescue(fake_machine):
    m = live_machine(fake_machine)
    m.fail("mount", errno.EIO, when=lambda source, target, *a: target == "/run")
    result = m.boot()
    assert not result.handed_off and result.rescue, result.console
    assert "early" in result.console and result.mount_at("/run") is None


def whole_boot_machine(fake_machine, files=None, **kw):
    """A live medium on a late USB stick (usb_storage, partitioned), fs modules listed in the config."""
    kw.setdefault("cmdline", "root=live:LABEL=MPLIVE")
    m = fake_machine(kver=KVER, config={"modules": ["vfat", "squashfs"]}, builtin=("loop", "overlay"), **kw)
    m.add_module("usb_storage", aliases=("usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*",))
    m.add_module("squashfs")
    m.add_module("fat")
    m.add_module("vfat", depends=("fat",))
    if files is None:
        files = {"sbin/init": m.executable(b"#!/bin/sh\n")}
    m.sq = m.squashfs(files)
    m.fat = m.filesystem("vfat", label="MPLIVE", files={"live/filesystem.squashfs": m.sq})
    return m


def test_whole_boot_waits_for_a_late_usb_stick(fake_machine):
    pytest.importorskip("mpinit_agent.blockdev", reason="the agent's blockdev.py has not landed yet")
    m = whole_boot_machine(fake_machine)
    m.add_disk("sda", [m.partition(m.fat, partlabel="LIVE")], table="gpt", removable=True, driver="usb_storage",
               modalias="usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00", appear_after_ms=4000)
    result = m.boot()
    assert result.handed_off, result.console
    assert result.uptime_ms >= 4000                  # virtual time: the test did not wait 4 s
    assert result.mount_at(contract.MEDIUM_MOUNT)[0] in ("/dev/sda1", "/dev/disk/by-label/MPLIVE")
    assert "usb_storage" in result.loaded_modules


def test_whole_boot_stick_too_late_reaches_rescue_listing_devices(fake_machine):
    pytest.importorskip("mpinit_agent.blockdev", reason="the agent's blockdev.py has not landed yet")
    m = whole_boot_machine(fake_machine, cmdline="root=live:LABEL=MPLIVE rootdelay=2")
    m.add_disk("vda", m.filesystem("ext4", label="OTHER"))
    m.add_disk("sda", m.fat, removable=True, driver="usb_storage", modalias="usb:v0781p5567d0100dc00dsc00dp00ic08"
               "isc06ip50in00", appear_after_ms=60000)
    result = m.boot()
    assert not result.handed_off and result.stuck and result.rescue
    assert "LABEL=MPLIVE" in result.console and 'LABEL="OTHER"' in result.console, result.console
    assert result.mount_at(contract.NEW_ROOT) is None


def test_whole_boot_missing_init_never_switches(fake_machine):
    pytest.importorskip("mpinit_agent.blockdev", reason="the agent's blockdev.py has not landed yet")
    m = whole_boot_machine(fake_machine, files={"etc/os-release": b"ID=noinit\n"})
    m.add_disk("vda", m.fat)
    result = m.boot()
    assert not result.handed_off and result.rescue, result.console
    assert "handoff" in result.console
    assert result.calls_to("chroot") == []


def test_initramfs_cleanup_is_observable(fake_machine):
    m = fake_machine()
    m.add_file("/etc/keep-me", b"x")

    def careless_pid1():
        sc.mount("tmpfs", "/sysroot", "tmpfs", 0, None)
        with open("/sysroot/in-new-root", "w") as f:
            f.write("y")
        os.remove("/etc/keep-me")
        sc.execv("/sysroot/in-new-root", ["init"])

    result = m.boot(careless_pid1)
    assert not result.handed_off and result.error and "Permission denied" in result.error  # not executable
    assert "/etc/keep-me" not in result.initramfs_left and "/sysroot" in result.initramfs_left
    assert "/sysroot/in-new-root" not in result.initramfs_left       # another mount: not the initramfs
    assert contract.CONFIG_PATH not in result.initramfs_left and "/etc/mpinit" in result.initramfs_left


def test_each_boot_is_a_fresh_pid1():
    # Agent modules keep state in globals (blockdev's probe cache): a second boot in the same test process must
    # not see the first one's, as a real PID 1 never would.
    blockdev = pytest.importorskip("mpinit_agent.blockdev", reason="the agent's blockdev.py has not landed yet")
    seen = []
    for fstype, label in (("vfat", "FIRST"), ("ext4", "SECOND")):
        m = FakeMachine(builtin=("loop",))
        m.add_disk("vda", m.filesystem(fstype, label=label))

        def scan():
            sc.mount("sysfs", "/sys", "sysfs", 0, None)
            sc.mount("devtmpfs", "/dev", "devtmpfs", 0, None)
            seen.append(blockdev.describe(blockdev.scan()))

        result = m.boot(scan)
        assert result.error is None, result.error
    assert 'LABEL="FIRST"' in seen[0] and 'LABEL="SECOND"' in seen[1], seen


def test_unbound_loops_and_char_devices_fill_dev_without_devtmpfs(fake_machine):
    # What an mdev-like /dev needs: /sys/dev/{block,char} entries with DEVNAME, loop0..7 present but unbound.
    m = fake_machine(devtmpfs=False)
    m.add_disk("vda", m.filesystem("ext4", label="ROOT"))
    m.start()
    sc.mount("sysfs", "/sys", "sysfs", 0, None)
    sc.mount("tmpfs", "/dev", "tmpfs", 0, "mode=0755")
    assert ["loop%d" % n for n in range(8)] == sorted(n for n in os.listdir("/sys/class/block") if "loop" in n)
    assert "DEVNAME=loop-control" in read("/sys/dev/char/10:237/uevent")
    assert "DEVNAME=console" in read("/sys/dev/char/5:1/uevent")
    with pytest.raises(OSError) as e:
        sc.loop_attach("/etc/mpinit/modules.tbl")      # no /dev/loop-control node yet
    assert e.value.errno == errno.ENOENT
    sc.mknod("/dev/loop-control", sc.S_IFCHR | 0o600, sc.makedev(10, 237))
    with pytest.raises(OSError) as e:
        sc.loop_attach("/etc/mpinit/modules.tbl")      # no /dev/loop0 node: the open fails
    assert e.value.errno == errno.ENOENT and e.value.filename == "/dev/loop0"
    sc.mknod("/dev/loop0", sc.S_IFBLK | 0o600, sc.makedev(7, 0))
    assert os.path.getsize("/dev/loop0") == 0
    assert sc.loop_attach("/etc/mpinit/modules.tbl") == "/dev/loop0"
    with open("/dev/loop0", "rb") as f, open("/etc/mpinit/modules.tbl", "rb") as g:
        assert f.read() == g.read()                      # a mknod()ed node reads what the device holds now


def test_whole_live_boot_without_devtmpfs(fake_machine):
    pytest.importorskip("mpinit_agent.blockdev", reason="the agent's blockdev.py has not landed yet")
    m = whole_boot_machine(fake_machine, devtmpfs=False)
    m.add_disk("vda", m.fat)
    result = m.boot()
    assert result.handed_off, result.console
    assert result.mount_at("/dev")[2] == "tmpfs"
    made = [c[0] for c in result.calls_to("mknod")]
    assert "/dev/loop-control" in made and "/dev/loop0" in made and "/dev/vda" in made
    assert result.mount_at(contract.IMAGE_MOUNT)[0] == "/dev/loop0"


def test_fresh_pid1_resets_runtime_globals_but_keeps_patched_constants(monkeypatch):
    from mpinit_agent import blockdev, log

    pristine_debug = log._debug
    monkeypatch.setattr(blockdev, "_POLL_MS", 7)      # a test's own tuning survives
    log._debug = not pristine_debug                    # as a previous boot's `debug` left it
    blockdev._cache["stale"] = ((1, 2), 3, {})
    m = FakeMachine()
    m.start()
    try:
        assert log._debug == pristine_debug and "stale" not in blockdev._cache
        assert blockdev._POLL_MS == 7
    finally:
        m.stop()
