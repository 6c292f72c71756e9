"""The fake kernel: a CPython implementation of every name in `mpinit_agent.syscalls.NAMES` over pyfakefs.

It keeps what a Linux kernel keeps for PID 1 in an initramfs: a mount table (each mount a real subtree of the
pyfakefs filesystem with its own st_dev), block devices whose /dev nodes hold the disk bytes, loop devices, a
module registry, a virtual clock, child processes and the console. /proc, /sys and /dev are generated from that
state and kept current while they are mounted. FakeMachine (machine.py) builds one of these and plugs it in with
`syscalls.use()`; users normally never touch this class directly.

How mounts are modelled: mounting replaces the directory object at the target with the new filesystem's root
directory object (the covered one is kept and put back by umount), so lookups, MS_MOVE (the object moves with its
whole subtree, submounts included) and over-mounting behave as in the kernel's namespace. Honest simplifications
(each documented in docs/fake-machine.md): MS_RDONLY is recorded but writes are not refused; writes into an
overlay's merged tree stay there (upperdir does not see them); a block filesystem mounted twice gets two
independent copies of its files; EBUSY from open files is not modelled.
"""

from __future__ import annotations

import errno
import hashlib
import os as _real_os
import stat
import struct
import weakref
from collections import OrderedDict

from pyfakefs import helpers
from pyfakefs.fake_file import FakeDirectory
from pyfakefs.fake_os import FakeOsModule

from mpinit_agent import linux_abi as abi

# include/uapi/linux/magic.h: statfs f_type per filesystem type (linux_abi has the ones the agent uses).
MAGIC = {
    "rootfs": abi.RAMFS_MAGIC, "ramfs": abi.RAMFS_MAGIC, "tmpfs": abi.TMPFS_MAGIC, "devtmpfs": abi.TMPFS_MAGIC,
    "proc": abi.PROC_SUPER_MAGIC, "sysfs": abi.SYSFS_MAGIC, "devpts": 0x1CD1, "squashfs": abi.SQUASHFS_MAGIC,
    "overlay": abi.OVERLAYFS_SUPER_MAGIC, "ext4": abi.EXT4_SUPER_MAGIC, "ext2": abi.EXT4_SUPER_MAGIC,
    "ext3": abi.EXT4_SUPER_MAGIC, "vfat": abi.MSDOS_SUPER_MAGIC, "msdos": abi.MSDOS_SUPER_MAGIC,
    "iso9660": abi.ISOFS_SUPER_MAGIC, "exfat": 0x2011BAB0, "btrfs": 0x9123683E, "xfs": 0x58465342,
}
# Filesystems served by the kernel itself, always registered (CONFIG_PROC_FS, SYSFS, TMPFS, DEVTMPFS, ...).
PSEUDO_FS = ("proc", "sysfs", "devtmpfs", "tmpfs", "ramfs", "devpts")
# Block filesystem type given to mount(2) -> (the module providing it, image types it accepts). ext4's driver
# also serves ext2/ext3 (CONFIG_EXT4_USE_FOR_EXT2); fs/fat serves FAT12/16/32 as vfat and msdos.
BLOCK_FS = {
    "ext4": ("ext4", ("ext4", "ext2")), "ext3": ("ext4", ("ext4", "ext2")), "ext2": ("ext4", ("ext2",)),
    "vfat": ("vfat", ("vfat",)), "msdos": ("msdos", ("vfat",)), "iso9660": ("isofs", ("iso9660",)),
    "squashfs": ("squashfs", ("squashfs",)), "exfat": ("exfat", ("exfat",)), "btrfs": ("btrfs", ("btrfs",)),
    "xfs": ("xfs", ("xfs",)),
}
READ_ONLY_FS = ("squashfs", "iso9660")
LOOP_MAJOR = 7              # Documentation/admin-guide/devices.txt
# drivers/block/Kconfig BLK_DEV_LOOP_MIN_COUNT (default 8): loop0..7 exist, unbound (size 0), from the start, so a
# /dev filled from /sys by mknod (no devtmpfs) has nodes for them.
LOOP_MIN_COUNT = 8
# Character devices every kernel shows (Documentation/admin-guide/devices.txt), with their sysfs class:
# name -> (major, minor, class directory under devices/virtual). loop-control only when the loop driver is there.
CHAR_DEVICES = {
    "null": (1, 3, "mem"), "zero": (1, 5, "mem"), "full": (1, 7, "mem"), "random": (1, 8, "mem"),
    "urandom": (1, 9, "mem"), "kmsg": (1, 11, "mem"), "tty": (5, 0, "tty"), "console": (5, 1, "tty"),
    "ptmx": (5, 2, "tty"),
}
LOOP_CONTROL = ("loop-control", (10, 237, "misc"))
_SECTOR = 512
_MS_PROPAGATION = abi.MS_SHARED | abi.MS_PRIVATE | abi.MS_SLAVE | abi.MS_UNBINDABLE


class Halt(BaseException):
    """Ends a boot from inside a syscall (execv, reboot, exit, console input exhausted).

    A BaseException so that the agent's `except Exception` handlers cannot swallow the end of the machine."""

    def __init__(self, how, detail=None):
        super().__init__(how, detail)
        self.how = how
        self.detail = detail


def _err(code, path=None):
    if path is None:
        return OSError(code, _real_os.strerror(code))
    return OSError(code, _real_os.strerror(code), path)


def _dirname(path):
    i = path.rfind("/")
    return path[:i] or "/"


def _basename(path):
    return path[path.rfind("/") + 1:]


def _under(path, top):
    """path is top or inside it."""
    return path == top or top == "/" or path.startswith(top + "/")


def parse_size(text, ram_bytes):
    """tmpfs size= value (mm/shmem.c shmem_parse_one: memparse() suffixes k/m/g/t, or a percentage of RAM)."""
    t = text.strip().lower()
    try:
        if t.endswith("%"):
            return ram_bytes * int(t[:-1]) // 100
        mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}.get(t[-1:], 1)
        return int(t[:-1] if mult != 1 else t) * mult
    except ValueError:
        raise _err(errno.EINVAL) from None


def parse_data(data):
    """Comma-separated mount data -> {key: value or None}, in order."""
    out = OrderedDict()
    for item in (data or "").split(","):
        if item:
            k, sep, v = item.partition("=")
            out[k] = v if sep else None
    return out


def partition_table(data):
    """[(start_bytes, size_bytes, partlabel or None)] from a GPT (UEFI spec 5.3) or MBR primary table; [] if none."""
    if len(data) < 1024 or data[510:512] != b"\x55\xaa":
        return []
    if data[512:520] == b"EFI PART":
        entries_lba, count, esize = struct.unpack_from("<QII", data, 512 + 72)
        out = []
        for i in range(count):
            off = entries_lba * _SECTOR + i * esize
            if off + 128 > len(data):
                break
            if data[off:off + 16] == bytes(16):
                continue
            first, last = struct.unpack_from("<QQ", data, off + 32)
            name = data[off + 56:off + 128].decode("utf-16-le", "replace").split("\x00")[0]
            out.append((first * _SECTOR, (last - first + 1) * _SECTOR, name or None))
        return out
    out = []
    for i in range(4):
        off = 446 + 16 * i
        ptype = data[off + 4]
        start, count = struct.unpack_from("<II", data, off + 8)
        if ptype == 0xEE:   # protective MBR of a GPT disk whose header is missing
            return []
        if ptype and count:
            out.append((start * _SECTOR, count * _SECTOR, None))
    return out


class Device:
    """A block device the kernel knows: a disk, one of its partitions, or a loop device."""

    def __init__(self, name, data, major, minor, sysdir, disk=None, partno=0, removable=False, ro=False,
                 partlabel=None, start=0):
        self.name = name
        self.data = data
        self.major = major
        self.minor = minor
        self.sysdir = sysdir        # under /sys, without the "/sys" prefix: devices/.../block/<name>[/<part>]
        self.disk = disk            # the whole-disk Device of a partition
        self.partno = partno
        self.removable = removable
        self.ro = ro
        self.partlabel = partlabel
        self.start = start
        self.backing = None         # loop: (path, offset, sizelimit, autoclear)
        self.size = None            # bytes sysfs shows when data is only the device's start (a replayed capture)


class Mount:
    def __init__(self, mid, source, target, fstype, flags, data, root, covered, mp, dev, device=None):
        self.id = mid
        self.source = source
        self.target = target
        self.fstype = fstype
        self.flags = flags
        self.data = data
        self.root = root            # the FakeDirectory (or file, for a bind) shown at target
        self.covered = covered      # what target showed before; put back by umount
        self.mp = mp                # pyfakefs mount-point dict (its st_dev and size accounting); None for binds
        self.dev = dev              # (major, minor) shown in mountinfo
        self.device = device        # the Device a block filesystem came from
        self.gen = {}               # what we generated in a pseudo filesystem (proc, sysfs, devtmpfs)
        self.parent = None          # id of the mount this one sits on

    def entry(self):
        return (self.source, self.target, self.fstype, self.flags, self.data)


def _opts(flags):
    words = ["ro" if flags & abi.MS_RDONLY else "rw"]
    for bit, word in ((abi.MS_NOSUID, "nosuid"), (abi.MS_NODEV, "nodev"), (abi.MS_NOEXEC, "noexec"),
                      (abi.MS_SYNCHRONOUS, "sync"), (abi.MS_NOATIME, "noatime"),
                      (abi.MS_NODIRATIME, "nodiratime")):
        if flags & bit:
            words.append(word)
    if not flags & (abi.MS_NOATIME | abi.MS_STRICTATIME):
        words.append("relatime")
    return ",".join(words)


class FakeKernel:
    """The running machine. Built by FakeMachine.start(); every name in syscalls.NAMES is a method."""

    def __init__(self, machine, fs):
        self.machine = machine
        self.fs = fs
        self.fos = FakeOsModule(fs)
        self.ram = int(machine.ram_mb * (1 << 20))
        self.clock = 0
        self.root = "/"             # chroot(2) prefix, in the fake's global namespace
        self.root_label = "/"       # the new root as the result reports it
        self.umask_value = 0o022
        self.loaded = []            # module names in load order
        self.load_times = {}
        self.module_params = {}
        self.devices = OrderedDict()  # name -> Device, those the kernel shows now
        self.loops = {}             # N -> Device (bound ones have .backing)
        self._nodes = []            # (file object, major, minor) of block nodes made by mknod(): kept current
        self.children = {}          # pid -> wait status
        self.next_pid = 100
        self.spawned = []
        self.stdin_fed = []
        self.unknown_programs = []
        self.open_fds = {}          # fd -> (path, close-on-exec) of what the agent opened (O_CLOEXEC tracked)
        self.leaked_fds = []        # [(program, fd, path)]: fds a spawned program inherited (no O_CLOEXEC)
        self.termios_lflag = abi.ECHO | abi.ICANON  # the console's line discipline: echo on, canonical
        self.keymap_entries = 0
        self.ended = None           # the Halt that ended the machine
        self.console_parts = machine._console_parts
        self.kmsg_parts = []
        self.klog = KernelLog(lambda: self.clock)  # the log buffer /dev/kmsg readers see (kmsg.py)
        self._seen = {}             # id(file object) -> its content last seen (console and kmsg capture)
        self._next_mid = 2
        self._minors = {}
        root_mp = fs.mount_points[fs.root.name]
        self.mounts = [Mount(1, "rootfs", "/", "rootfs", 0, None, fs.root, None, root_mp, (0, 1))]
        self.mount_log = []
        self._devnums = {}
        self.dm = DeviceMapper(self)  # mapped devices and md arrays (dm.py)
        self.net = machine.net      # sockets and interfaces (net.py); its syscalls are this kernel's methods
        self.net.kernel = self
        for name in self.net.SYSCALLS:
            setattr(self, name, getattr(self.net, name))
        self._net_poll = self.poll
        self.poll = self._poll      # fd 0 is the console (a passphrase prompt with a timeout), the rest sockets

    # ------------------------------------------------------------------ helpers for paths and objects

    def _p(self, path):
        """A path as the agent gives it -> the fake's global path (chroot applied, relative kept)."""
        if not isinstance(path, str):
            raise TypeError("path must be str, not %r" % (path,))
        if self.root != "/" and path.startswith("/"):
            return self.root + path if path != "/" else self.root
        return path

    def _canon(self, path):
        """Absolute canonical path with symlinks resolved (the kernel's path walk); ENOENT when missing."""
        p = self._p(path)
        real = self.fs.resolve_path(p)
        if not self.fs.exists(real):
            raise _err(errno.ENOENT, path)
        return real

    def _lexists(self, path):
        # not fs.exists(): pyfakefs answers True for /dev/null whatever the tree holds
        try:
            return self.fs.lresolve(path) is not getattr(self.fs, "dev_null", None)
        except OSError:
            return False

    def _obj(self, real, follow=True):
        return self.fs.resolve(real, follow_symlinks=follow, check_read_perm=False, check_exe_perm=False)

    def _attach(self, path, obj):
        """Make `path` show obj; returns what it showed before."""
        parent = self._obj(_dirname(path))
        name = _basename(path)
        old = parent._entries[name]
        parent._entries[name] = obj
        if obj.parent_dir is None or obj is not old:
            obj.parent_dir = weakref.ref(parent)
        return old

    def _mount_at(self, real):
        """The top mount whose root is shown at path real, or None."""
        if real == "/":
            return self._root_mount()
        try:
            obj = self._obj(real)
        except OSError:
            return None
        for m in reversed(self.mounts):
            if m.root is obj and m.target == real:
                return m
        return None

    def _root_mount(self):
        for m in reversed(self.mounts):
            if m.target == "/":
                return m
        return self.mounts[0]

    def mount_of(self, path):
        """The mount holding path (a global path): walk the components as the kernel's path walk does."""
        real = self.fs.resolve_path(path)
        best = self._root_mount()
        cur = ""
        for comp in [c for c in real.split("/") if c]:
            cur += "/" + comp
            m = self._mount_at(cur)
            if m is not None:
                best = m
        return best

    def _new_dev(self, total_size=None):
        self.fs.last_dev += 1
        return {"idev": self.fs.last_dev, "total_size": total_size, "used_size": 0}

    def _sync_mount_points(self):
        """pyfakefs finds size accounting by st_dev through fs.mount_points: keep it equal to our table."""
        mps = OrderedDict()
        for m in self.mounts:
            if m.mp is None:
                continue
            key = m.target
            while key in mps:
                key += "\0"     # an over-mounted one: still accounted, never matched as a path
            mps[key] = m.mp
        self.fs.mount_points.clear()
        self.fs.mount_points.update(mps)

    # ------------------------------------------------------------------ the clock, devices, generated trees

    def has_appeared(self, driver, after_ms):
        """Whether a device (a disk, a NIC) that needs `driver` (None: nothing) and shows up after_ms after it is
        there exists by now: its driver built in or loaded, and that long ago."""
        if driver is None or driver in self.machine.builtin:
            since = 0
        elif driver in self.load_times:
            since = self.load_times[driver]
        else:
            return False
        return self.clock >= since + after_ms

    def tick(self):
        """Make the devices whose time has come appear, then refresh /proc, /sys and /dev."""
        for disk in self.machine._disks:
            if disk.name not in self.devices and self.has_appeared(disk.driver, disk.appear_after_ms):
                self._add_disk(disk)
        if not self.loops and self._have("loop"):
            for n in range(LOOP_MIN_COUNT):
                self._new_loop(n)
        self.refresh()

    def _new_loop(self, n):
        name = "loop%d" % n
        dev = Device(name, b"", LOOP_MAJOR, n, "devices/virtual/block/" + name)
        self.loops[n] = dev
        self.devices[name] = dev
        return dev

    def _char_devices(self):
        out = dict(CHAR_DEVICES)
        if self._have("loop"):
            out[LOOP_CONTROL[0]] = LOOP_CONTROL[1]
        return out

    def _devnum(self, name, partno=0):
        """Device numbers as Documentation/admin-guide/devices.txt gives them (16 minors per sd/vd/xvd disk)."""
        fixed = {"sd": 8, "vd": 254, "xvd": 202, "hd": 3}
        for prefix in ("xvd", "sd", "vd", "hd"):
            if name.startswith(prefix) and name[len(prefix):].isalpha():
                letters = name[len(prefix):]
                index = 0
                for c in letters:
                    index = index * 26 + (ord(c) - 96)
                return fixed[prefix], (index - 1) * 16 + partno
        if name.startswith("sr") and name[2:].isdigit():
            return 11, int(name[2:])
        if name.startswith("mmcblk") and name[6:].isdigit():
            return 179, int(name[6:]) * 8 + partno
        key = (name, partno)    # nvme and the rest: the dynamic block major (BLOCK_EXT_MAJOR)
        if key not in self._minors:
            self._minors[key] = len(self._minors)
        return 259, self._minors[key]

    def _add_disk(self, disk):
        if getattr(disk, "replayed", None) is not None:
            for dev in disk.replayed():     # a machine rebuilt from a capture (replay.py): devices as recorded
                self.devices[dev.name] = dev
            return
        data = disk.data
        major, minor = self._devnum(disk.name)
        sysdir = "%s/block/%s" % (disk.devdir, disk.name)
        dev = Device(disk.name, data, major, minor, sysdir, removable=disk.removable, ro=disk.ro)
        self.devices[disk.name] = dev
        sep = "p" if disk.name[-1:].isdigit() else ""
        added = [dev]
        for i, (start, size, label) in enumerate(partition_table(data) if disk.table else []):
            pname = "%s%s%d" % (disk.name, sep, i + 1)
            pmaj, pmin = self._devnum(disk.name, i + 1)
            self.devices[pname] = Device(pname, data[start:start + size], pmaj, pmin, "%s/%s" % (sysdir, pname),
                                         disk=dev, partno=i + 1, ro=disk.ro, partlabel=label, start=start)
            added.append(self.devices[pname])
        for d in added:  # block/genhd.c device_add_disk(): the disk's "add" uevent, then its partitions'
            env = (("SUBSYSTEM", "block"), ("MAJOR", str(d.major)), ("MINOR", str(d.minor)), ("DEVNAME", d.name),
                   ("DEVTYPE", "partition" if d.disk else "disk"))
            if d.disk:
                env += (("PARTN", str(d.partno)),)   # block/partitions/core.c part_uevent()
            self.net.uevent("add", "/" + d.sysdir, env)

    def _sys_entries(self):
        e = {}
        ram = self.machine
        for disk in ram._disks:
            e[disk.devdir] = ("d",)
            if disk.modalias:
                e[disk.devdir + "/modalias"] = ("f", disk.modalias + "\n")
                e[disk.devdir + "/uevent"] = ("f", "MODALIAS=%s\n" % disk.modalias)
        for dev in self.devices.values():
            d = dev.sysdir
            e[d + "/dev"] = ("f", "%d:%d\n" % (dev.major, dev.minor))
            e[d + "/size"] = ("f", "%d\n" % ((len(dev.data) if dev.size is None else dev.size) // _SECTOR))
            e[d + "/ro"] = ("f", "%d\n" % (1 if dev.ro else 0))
            ev = "MAJOR=%d\nMINOR=%d\nDEVNAME=%s\nDEVTYPE=%s\n" % (
                dev.major, dev.minor, dev.name, "partition" if dev.disk else "disk")
            if dev.disk:
                ev += "PARTN=%d\n" % dev.partno
                if dev.partlabel:
                    ev += "PARTNAME=%s\n" % dev.partlabel
                e[d + "/partition"] = ("f", "%d\n" % dev.partno)
                e[d + "/start"] = ("f", "%d\n" % (dev.start // _SECTOR))
            else:
                e[d + "/removable"] = ("f", "%d\n" % (1 if dev.removable else 0))
                e["block/" + dev.name] = ("l", "../" + d)
            e[d + "/uevent"] = ("f", ev)
            e["class/block/" + dev.name] = ("l", "../../" + d)
            e["dev/block/%d:%d" % (dev.major, dev.minor)] = ("l", "../../" + d)
            if dev.backing:
                path, offset, sizelimit, autoclear = dev.backing
                e[d + "/loop/backing_file"] = ("f", path + "\n")
                e[d + "/loop/offset"] = ("f", "%d\n" % offset)
                e[d + "/loop/sizelimit"] = ("f", "%d\n" % sizelimit)
                e[d + "/loop/autoclear"] = ("f", "%d\n" % (1 if autoclear else 0))
        for name, (major, minor, cls) in self._char_devices().items():
            d = "devices/virtual/%s/%s" % (cls, name)
            e[d + "/dev"] = ("f", "%d:%d\n" % (major, minor))
            e[d + "/uevent"] = ("f", "MAJOR=%d\nMINOR=%d\nDEVNAME=%s\n" % (major, minor, name))
            e["dev/char/%d:%d" % (major, minor)] = ("l", "../../" + d)
        e["class/block"] = ("d",)
        e["block"] = ("d",)
        e["dev/block"] = ("d",)
        e["dev/char"] = ("d",)
        for name in self.machine.builtin:
            e["module/" + name] = ("d",)
        for name in self.loaded:
            e["module/%s/initstate" % name] = ("f", "live\n")
            e["module/%s/refcnt" % name] = ("f", "0\n")
            for k, v in parse_data(self.module_params.get(name, "").replace(" ", ",")).items():
                e["module/%s/parameters/%s" % (name, k)] = ("f", "%s\n" % ("Y" if v is None else v))
        e["kernel"] = ("d",)
        e["firmware"] = ("d",)
        e.update(self.net.sys_entries())
        e.update(self.machine.sys_files)
        e.update(self.dm.sys_entries())
        return e

    def _dev_entries(self):
        e = {}
        for name, (major, minor, _cls) in self._char_devices().items():
            e[name] = ("c", major, minor)
        for dev in self.devices.values():
            e[dev.name] = ("b", id(dev.data), dev.major, dev.minor)
        return e

    def _proc_entries(self):
        mem = self.meminfo()
        e = {
            "cmdline": ("f", self.machine.cmdline + "\n"),
            "meminfo": ("f", "".join("%-16s%8d kB\n" % (k + ":", v // 1024) for k, v in mem)),
            "uptime": ("f", "%d.%02d 0.00\n" % (self.clock // 1000, self.clock % 1000 // 10)),
            "filesystems": ("f", "".join(("nodev\t%s\n" % f) if f in PSEUDO_FS + ("overlay",) else "\t%s\n" % f
                                         for f in self.filesystems())),
            "modules": ("f", "".join("%s 16384 0 - Live 0x0000000000000000\n" % n for n in self.loaded)),
            "sys/kernel/printk": ("F", "7\t4\t1\t7\n"),
            "sys/kernel/osrelease": ("f", self.machine.kver + "\n"),
            "version": ("f", "Linux version %s (fake) #1 SMP\n" % self.machine.kver),
        }
        mounts = []
        info = []
        for m in self.mounts:
            opts = _opts(m.flags)
            extra = ("," + m.data) if m.data else ""
            mounts.append("%s %s %s %s%s 0 0\n" % (m.source or "none", m.target, m.fstype, opts, extra))
            info.append("%d %d %d:%d / %s %s - %s %s %s\n" % (
                m.id, m.parent or m.id, m.dev[0], m.dev[1], m.target, opts, m.fstype, m.source or "none",
                "ro" if m.flags & abi.MS_RDONLY else "rw" + extra))
        e.update(self.dm.proc_entries())
        e["mounts"] = ("f", "".join(mounts))
        e["self/mounts"] = ("f", "".join(mounts))
        e["self/mountinfo"] = ("f", "".join(info))
        return e

    def refresh(self):
        """Bring every mounted proc, sysfs and devtmpfs, and every mknod()ed block node, up to date with the
        kernel's state."""
        for f, major, minor in self._nodes:
            dev = self._by_devnum(major, minor)
            data = dev.data if dev is not None else b""
            if f._byte_contents is not data:
                f._byte_contents = data
                f.st_size = len(data)
        gens = {}
        for m in self.mounts:
            kind = m.fstype if m.fstype in ("proc", "sysfs", "devtmpfs") else None
            if kind is None or m.mp is None:
                continue
            if kind not in gens:
                gens[kind] = {"proc": self._proc_entries, "sysfs": self._sys_entries,
                              "devtmpfs": self._dev_entries}[kind]()
            self._apply(m, gens[kind])

    def _apply(self, m, new):
        old = m.gen
        fs = self.fs
        gone = sorted(p for p in old if p not in new)
        for rel in gone:
            path = m.target + "/" + rel
            if self._lexists(path):
                try:
                    fs.remove_object(path)
                except OSError:
                    pass
        if gone:
            # Directories that only held generated entries (a loop device's loop/) go with them.
            keep = set()
            for rel in new:
                parts = rel.split("/")
                for i in range(1, len(parts)):
                    keep.add("/".join(parts[:i]))
            for rel in gone:
                parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
                while parent and parent not in keep and parent not in new:
                    path = m.target + "/" + parent
                    if not fs.isdir(path, follow_symlinks=False) or fs.listdir(path):
                        break
                    fs.remove_object(path)
                    parent = parent.rsplit("/", 1)[0] if "/" in parent else ""
        for rel in sorted(new):
            spec = new[rel]
            if old.get(rel) == spec:
                continue
            path = m.target.rstrip("/") + "/" + rel
            if path == "/dev/null":
                continue        # pyfakefs serves /dev/null itself (a null device, always there)
            kind = spec[0]
            if kind == "F" and rel in old:
                continue        # written by the agent (e.g. printk levels): the kernel keeps the new value
            if self._lexists(path) and kind != "d":
                fs.remove_object(path)
            if kind == "d":
                if not fs.exists(path):
                    fs.create_dir(path)
            elif kind in ("f", "F"):
                fs.create_file(path, contents=spec[1], apply_umask=False)
            elif kind == "l":
                fs.create_symlink(path, spec[1])
            elif kind == "c":
                self._chardev(path, spec[1], spec[2])
            elif kind == "b":
                dev = self._by_devnum(spec[2], spec[3])
                self._blockfile(path, dev.data, 0o660)
        m.gen = new

    def _by_devnum(self, major, minor):
        for dev in self.devices.values():
            if dev.major == major and dev.minor == minor:
                return dev
        return None

    def _blockfile(self, path, data, perm):
        """A block device node: a file whose contents are the device's bytes (not counted as space used)."""
        f = self.fs.create_file(path, st_mode=stat.S_IFBLK | perm, apply_umask=False)
        f._byte_contents = data
        f.st_size = len(data)
        return f

    def _chardev(self, path, major, minor):
        capture = None
        if (major, minor) in ((5, 1), (4, 0), (4, 1)):
            capture = self._capture_console
        elif (major, minor) == (1, 11):
            capture = self._capture_kmsg
        perm = 0o600 if (major, minor) in ((5, 1), (1, 11)) else 0o666
        self.fs.create_file(path, st_mode=stat.S_IFCHR | perm, apply_umask=False, side_effect=capture)

    def _delta(self, f):
        data = f.byte_contents or b""
        old = self._seen.get(id(f), b"")
        self._seen[id(f)] = data
        return data[len(old):] if data.startswith(old) else data

    def _capture_console(self, f):
        d = self._delta(f)
        if d:
            self.console_parts.append(d.decode("utf-8", "replace"))

    def _capture_kmsg(self, f):
        d = self._delta(f)
        if d:
            self.kmsg_parts.append(d.decode("utf-8", "replace"))
            self.klog.user_write(self.kmsg_parts[-1])

    def _have(self, module):
        return module in self.machine.builtin or module in self.loaded

    def filesystems(self):
        out = [f for f in PSEUDO_FS if f != "devtmpfs" or self.machine.devtmpfs]
        if self._have("overlay"):
            out.append("overlay")
        for fstype, (module, _kinds) in BLOCK_FS.items():
            if self._have(module):
                out.append(fstype)
        return out

    def meminfo(self):
        """/proc/meminfo values in bytes: tmpfs contents and the initramfs are what uses the fake's memory."""
        used = self.ram // 16   # the kernel's own share (a documented constant of the fake)
        for m in self.mounts:
            if m.fstype in ("rootfs", "tmpfs", "ramfs", "devtmpfs") and m.mp is not None:
                used += m.mp["used_size"]
        free = max(0, self.ram - used)
        return [("MemTotal", self.ram), ("MemFree", free), ("MemAvailable", free), ("Buffers", 0),
                ("Cached", 0), ("Shmem", 0), ("SwapTotal", 0), ("SwapFree", 0)]

    # ------------------------------------------------------------------ mount(2) and umount2(2)

    def mount(self, source, target, fstype, flags=0, data=None):
        if flags & abi.MS_REMOUNT:
            m = self._mount_at(self._canon(target))
            if m is None:
                raise _err(errno.EINVAL, target)
            m.flags = (flags & ~abi.MS_REMOUNT) | (m.flags & abi.MS_BIND)
            if data is not None:
                m.data = data
            self.mount_log.append(("remount", target, flags, data))
            self.refresh()
            return
        if flags & abi.MS_MOVE:
            return self._move(source, target)
        if flags & abi.MS_BIND:
            return self._bind(source, target, flags, data)
        if flags & _MS_PROPAGATION and not (fstype or "").strip():
            if self._mount_at(self._canon(target)) is None:
                raise _err(errno.EINVAL, target)
            self.mount_log.append(("propagation", target, flags))
            return
        real = self._canon(target)
        tobj = self._obj(real)
        if not isinstance(tobj, FakeDirectory):
            raise _err(errno.ENOTDIR, target)
        if not fstype or fstype not in self.filesystems():
            raise _err(errno.ENODEV, fstype)
        device = None
        dev = None
        total = None
        files = None
        if fstype in ("tmpfs", "ramfs", "devtmpfs", "proc", "sysfs", "devpts"):
            opts = parse_data(data)
            if fstype == "tmpfs":
                total = parse_size(opts.get("size") or "50%", self.ram)
            dev = (0, 20 + self._next_mid)
        elif fstype == "overlay":
            files = self._overlay_tree(data)
            dev = (0, 20 + self._next_mid)
        else:
            device, image = self._block_source(source, fstype)
            files = image
            dev = (device.major, device.minor)
            if image.fstype in READ_ONLY_FS:
                flags |= abi.MS_RDONLY
        mp = self._new_dev(total)
        root = FakeDirectory(_basename(real) or "/", filesystem=self.fs)
        root.st_dev = mp["idev"]
        root.st_mode = stat.S_IFDIR | 0o755
        if fstype in ("tmpfs", "ramfs") and "mode" in parse_data(data):
            try:
                root.st_mode = stat.S_IFDIR | int(parse_data(data)["mode"], 8)
            except (TypeError, ValueError):
                raise _err(errno.EINVAL, data) from None
        self.fs.last_ino += 1
        root.st_ino = self.fs.last_ino
        m = Mount(self._next_mid, source, real, fstype, flags, data, root, None, mp, dev, device)
        m.parent = self.mount_of(real).id
        self._next_mid += 1
        m.covered = self._attach(real, root) if real != "/" else None
        self.mounts.append(m)
        self._sync_mount_points()
        if fstype == "overlay":
            self._copy_tree(files, real)
        elif files is not None:
            files.populate(self.fs, real)
        self.mount_log.append(("mount", source, real, fstype, flags, data))
        self.refresh()

    def _block_source(self, source, fstype):
        module, kinds = BLOCK_FS[fstype]
        if not source:
            raise _err(errno.ENOTBLK, source)
        real = self._canon(source)
        obj = self._obj(real)
        if not stat.S_ISBLK(obj.st_mode):
            raise _err(errno.ENOTBLK, source)
        data = obj.byte_contents or b""
        image = self.machine._images.get(hashlib.sha256(data).digest())
        if image is None or image.kind not in kinds:
            # What the kernel says when no superblock of that type is found (fs/super.c get_tree_bdev callers).
            raise _err(errno.EINVAL, source)
        device = None
        for d in self.devices.values():
            if d.data is data or (d.name == _basename(real)):
                device = d
                break
        if device is None:
            device = Device(_basename(real), data, 0, 0, "")
        for m in self.mounts:
            if m.device is not None and m.device.data is data and m.fstype == fstype:
                break
        return device, image

    def _overlay_tree(self, data):
        """Check overlay options (fs/overlayfs/params.c) and return the layers, bottom first."""
        opts = parse_data(data)
        lower = opts.get("lowerdir")
        if not lower:
            raise _err(errno.EINVAL, data)
        layers = []
        for p in reversed(lower.split(":")):
            real = self._canon(p)
            if not isinstance(self._obj(real), FakeDirectory):
                raise _err(errno.ENOTDIR, p)
            layers.append(real)
        upper, work = opts.get("upperdir"), opts.get("workdir")
        if (upper is None) != (work is None):
            raise _err(errno.EINVAL, data)   # "missing 'workdir'" / upperdir required with workdir
        if upper is not None:
            ureal, wreal = self._canon(upper), self._canon(work)
            for p, r in ((upper, ureal), (work, wreal)):
                if not isinstance(self._obj(r), FakeDirectory):
                    raise _err(errno.ENOTDIR, p)
            if self.mount_of(ureal) is not self.mount_of(wreal):
                raise _err(errno.EINVAL, work)   # "workdir and upperdir must reside under the same mount"
            if _under(wreal, ureal) or _under(ureal, wreal):
                raise _err(errno.EINVAL, work)   # "workdir and upperdir must be separate subtrees"
            layers.append(ureal)
        return layers

    def _copy_tree(self, layers, dest):
        """The merged view: each layer copied over the one below (whiteouts, char 0:0, delete)."""
        fs = self.fs

        def walk(src_dir, dst):
            for name, obj in list(src_dir.entries.items()):
                path = dst.rstrip("/") + "/" + name
                mode = obj.st_mode
                if stat.S_ISDIR(mode):
                    if self._lexists(path) and not fs.isdir(path, follow_symlinks=False):
                        fs.remove_object(path)
                    if not self._lexists(path):
                        fs.create_dir(path, perm_bits=stat.S_IMODE(mode), apply_umask=False)
                    walk(obj, path)
                    continue
                if self._lexists(path):
                    fs.remove_object(path)
                if stat.S_ISCHR(mode) and obj.st_size == 0 and not obj.byte_contents:
                    continue    # a whiteout: the name is gone in the merged view
                if stat.S_ISLNK(mode):
                    fs.create_symlink(path, obj.contents)
                else:
                    f = fs.create_file(path, st_mode=mode, apply_umask=False)
                    f._byte_contents = obj.byte_contents
                    f.st_size = obj.st_size

        for layer in layers:
            walk(self._obj(layer), dest)

    def _bind(self, source, target, flags, data):
        sreal = self._canon(source)
        treal = self._canon(target)
        sobj = self._obj(sreal)
        tobj = self._obj(treal)
        if isinstance(sobj, FakeDirectory) != isinstance(tobj, FakeDirectory):
            raise _err(errno.ENOTDIR if isinstance(sobj, FakeDirectory) else errno.EISDIR, target)
        smount = self.mount_of(sreal)
        parent = sobj.parent_dir
        covered = self._attach(treal, sobj)
        sobj.parent_dir = parent    # the object still lives at source too
        m = Mount(self._next_mid, sreal, treal, smount.fstype, flags, data, sobj, covered, None, smount.dev,
                  smount.device)
        m.parent = self.mount_of(_dirname(treal)).id
        self._next_mid += 1
        self.mounts.append(m)
        self.mount_log.append(("bind", sreal, treal, flags))
        self.refresh()

    def _move(self, source, target):
        sreal = self._canon(source)
        treal = self._canon(target)
        m = self._mount_at(sreal)
        if m is None or m.id == 1:
            raise _err(errno.EINVAL, source)
        if _under(treal, sreal) and treal != sreal:
            raise _err(errno.ELOOP, target)      # moving a mount under itself (fs/namespace.c do_move_mount)
        if not isinstance(self._obj(treal), FakeDirectory) and isinstance(m.root, FakeDirectory):
            raise _err(errno.ENOTDIR, target)
        # Detach from the old place (putting back what it covered), then attach at the new one.
        self._attach(sreal, m.covered)
        if treal == "/":
            m.covered = self.fs.root
            m.root.name = self.fs.root.name
            m.root.parent_dir = None
            self.fs.root = m.root
            self.fs.cwd = "/"
            self.moved_root_from = sreal
        else:
            m.covered = self._attach(treal, m.root)
            m.root.name = _basename(treal)
        for other in self.mounts:
            if other is m or _under(other.target, sreal) and other.target != sreal:
                if other.id == 1:
                    continue
                other.target = treal + other.target[len(sreal):] if treal != "/" else (
                    other.target[len(sreal):] or "/")
        m.parent = self.mount_of(_dirname(treal)).id if treal != "/" else m.id
        self._sync_mount_points()
        self.mount_log.append(("move", sreal, treal))
        self.refresh()

    def umount(self, target, flags=0):
        real = self._canon(target)
        m = self._mount_at(real)
        if m is None or m.id == 1 or real == "/":
            raise _err(errno.EINVAL, target)
        below = self._children(m)
        if below and not flags & abi.MNT_DETACH:
            raise _err(errno.EBUSY, target)
        for o in sorted(below, key=lambda o: -len(o.target)):
            self._drop(o)
        self._drop(m)
        self.mount_log.append(("umount", real, flags))
        self.refresh()

    def _children(self, m):
        """The mounts sitting on m, directly or on one another (umount2(2) says EBUSY while there is one, whatever
        order they were mounted or moved in; a mount that m itself covers is not one of them)."""
        ids = {m.id}
        out = []
        grew = True
        while grew:
            grew = False
            for o in self.mounts:
                if o.parent in ids and o.id not in ids and o.parent != o.id:
                    ids.add(o.id)
                    out.append(o)
                    grew = True
        return out

    def _drop(self, m):
        self._attach(m.target, m.covered)
        self.mounts.remove(m)
        self._sync_mount_points()
        dev = m.device
        if dev is not None and dev.backing and dev.backing[3]:
            if not any(o.device is dev for o in self.mounts):
                self._detach_loop(dev)    # LO_FLAGS_AUTOCLEAR: the last close frees the device

    # ------------------------------------------------------------------ loop devices and modules

    def loop_attach(self, path, offset=0, sizelimit=0, read_only=True, autoclear=True):
        if not self.fs.exists(self._p("/dev/loop-control")):
            raise _err(errno.ENOENT, "/dev/loop-control")
        real = self._canon(path)
        obj = self._obj(real)
        if isinstance(obj, FakeDirectory):
            raise _err(errno.EISDIR, path)
        data = obj.byte_contents or b""
        end = offset + sizelimit if sizelimit else len(data)
        if offset < 0 or offset > len(data):
            raise _err(errno.EINVAL, path)
        # LOOP_CTL_GET_FREE: the first unbound device, else a new one (drivers/block/loop.c loop_control_get_free)
        n = 0
        while n in self.loops and self.loops[n].backing is not None:
            n += 1
        dev = self.loops.get(n) or self._new_loop(n)
        self.refresh()
        node = "/dev/loop%d" % n
        if not self._lexists(self._p(node)):
            raise _err(errno.ENOENT, node)      # the native code opens the node (no devtmpfs, no mknod: none)
        dev.data = data[offset:end]
        dev.ro = read_only
        dev.backing = (real, offset, sizelimit, autoclear)
        self.refresh()
        return node

    def loop_detach(self, loopdev):
        real = self._canon(loopdev)
        name = _basename(real)
        dev = self.devices.get(name)
        if dev is None or dev.backing is None:
            raise _err(errno.ENXIO, loopdev)
        if any(m.device is dev for m in self.mounts):
            # drivers/block/loop.c loop_clr_fd: a busy device is only marked for autoclear.
            dev.backing = dev.backing[:3] + (True,)
            return
        self._detach_loop(dev)

    def _detach_loop(self, dev):
        # LOOP_CLR_FD: the device stays, unbound and empty (size 0).
        dev.data = b""
        dev.ro = False
        dev.backing = None
        self.refresh()

    def load_module(self, path, params=""):
        real = self._canon(path)
        obj = self._obj(real)
        if isinstance(obj, FakeDirectory):
            raise _err(errno.EISDIR, path)
        name = self.machine._module_by_content(obj.byte_contents or b"")
        if name is None:
            raise _err(errno.ENOEXEC, path)    # not a module: load_module() rejects a bad ELF
        blacklisted = ()
        for word in self.machine.cmdline.split():
            if word.startswith("module_blacklist="):
                blacklisted = word.split("=", 1)[1].replace("-", "_").split(",")
        if name in blacklisted:
            raise _err(errno.EPERM, path)      # kernel/module/main.c: blacklisted modules are refused
        if name in self.loaded or name in self.machine.builtin:
            raise _err(errno.EEXIST, path)
        for dep in self.machine._modules[name]["depends"]:
            if not self._have(dep):
                raise _err(errno.ENOENT, path)  # unknown symbols: finit_module(2) fails with ENOENT
        self.loaded.append(name)
        self.load_times[name] = self.clock
        self.module_params[name] = params or ""
        self.tick()

    # ------------------------------------------------------------------ processes, the hand-off, the console

    def _resolve_in_root(self, path):
        """path (absolute, in the chroot) -> global path, following symlinks inside the root (execve(2))."""
        parts = [c for c in path.split("/") if c]
        cur = ""
        hops = 0
        while parts:
            comp = parts.pop(0)
            if comp == ".":
                continue
            if comp == "..":
                cur = cur[:cur.rfind("/")]
                continue
            nxt = cur + "/" + comp
            g = self._p(nxt)
            if not self._lexists(g):
                raise _err(errno.ENOENT, path)
            obj = self._obj(g, follow=False)
            if stat.S_ISLNK(obj.st_mode):
                hops += 1
                if hops > 40:
                    raise _err(errno.ELOOP, path)
                link = obj.contents
                parts = [c for c in link.split("/") if c] + parts
                if link.startswith("/"):
                    cur = ""
                continue
            cur = nxt
        return self._p(cur or "/")

    def _executable(self, path):
        g = self._resolve_in_root(path) if path.startswith("/") else self.fs.resolve_path(path)
        if not self.fs.exists(g):
            raise _err(errno.ENOENT, path)
        obj = self._obj(g)
        if isinstance(obj, FakeDirectory) or not obj.st_mode & 0o111:
            raise _err(errno.EACCES, path)
        return g

    def execv(self, path, argv):
        g = self._executable(path)
        raise Halt("execv", (path, list(argv), g))

    def spawn(self, argv, env=None, stdin_data=None):
        pid = self.next_pid
        self.next_pid += 1
        argv = list(argv)
        self.spawned.append(argv)
        for fd, (path, cloexec) in sorted(self.open_fds.items()):
            if not cloexec and fd > 2:  # fork + execve keeps every fd without FD_CLOEXEC (execve(2))
                self.leaked_fds.append((argv[0], fd, path))
        if stdin_data is not None:
            self.stdin_fed.append(bytes(stdin_data))  # what went through the pipe (tests check no secret leaks)
        try:
            self._executable(argv[0])
            prog = self.machine._programs.get(argv[0])
        except OSError:
            prog = None
        if prog is None:
            self.unknown_programs.append(argv[0])
            code = 127
        else:
            code = prog.run(self.machine, argv, env, stdin_data)
        self.children[pid] = (code & 0xFF) << 8
        self.tick()
        return pid

    def waitpid(self, pid, options=0):
        if pid == -1:
            if not self.children:
                raise _err(errno.ECHILD)
            pid = next(iter(self.children))
        if pid not in self.children:
            raise _err(errno.ECHILD)
        return pid, self.children.pop(pid)

    def kill(self, pid, sig):
        if pid in self.children:
            self.children[pid] = sig & 0x7F
        elif pid not in (-1, 0, 1):
            raise _err(errno.ESRCH)

    def getpid(self):
        return 1

    def exit(self, code):
        raise Halt("exit", code)

    def reboot(self, how):
        what = {abi.RB_AUTOBOOT: "restart", abi.RB_POWER_OFF: "poweroff", abi.RB_HALT_SYSTEM: "halt"}.get(how)
        if what is None:
            raise _err(errno.EINVAL)
        raise Halt("reboot", what)

    def readline(self, prompt):
        self.machine._rescue = True
        self.console_parts.append(prompt)
        lines = self.machine.console_input
        if not lines:
            raise Halt("stuck", None)
        line = lines.pop(0)
        if line is None:
            self.console_parts.append("\n")
            raise EOFError
        self.console_parts.append(line + "\n")
        return line

    def uptime_ms(self):
        self.clock += 1     # every clock read costs 1 ms, so a busy-wait on the clock ends too
        self.tick()
        return self.clock

    def sleep_ms(self, ms):
        self.clock += max(0, int(ms))
        self.tick()

    # ------------------------------------------------------------------ the rest of the file and process calls

    def chroot(self, path):
        if path == "." and getattr(self, "moved_root_from", None):
            # switch_root style (mount --move newroot /; chroot .): the tree is already the fake's root; report
            # the new root by where it was assembled.
            self.root_label = self.moved_root_from
            self.moved_root_from = None
            return
        real = self._canon(path) if path != "." else self.fs.resolve_path(self.fs.cwd)
        if not isinstance(self._obj(real), FakeDirectory):
            raise _err(errno.ENOTDIR, path)
        self.root = real
        self.root_label = real

    def chdir(self, path):
        self.fos.chdir(self._p(path))

    def mknod(self, path, mode, dev):
        g = self._p(path)
        if self._lexists(g):
            raise _err(errno.EEXIST, path)
        if not self.fs.isdir(_dirname(self.fs.absnormpath(g))):
            raise _err(errno.ENOENT, path)
        kind = stat.S_IFMT(mode)
        perm = mode & 0o7777 & ~self.umask_value
        if kind == stat.S_IFBLK:
            d = self._by_devnum(self.major(dev), self.minor(dev))
            f = self._blockfile(g, d.data if d else b"", perm)
            # The node reads whatever the device holds now (a loop device bound later, a disk appearing).
            self._nodes.append((f, self.major(dev), self.minor(dev)))
        elif kind == stat.S_IFCHR:
            self._chardev(g, self.major(dev), self.minor(dev))
            self.fos.chmod(g, perm)
        elif kind in (stat.S_IFREG, stat.S_IFIFO, 0):
            self.fs.create_file(g, st_mode=(kind or stat.S_IFREG) | perm, apply_umask=False)
        else:
            raise _err(errno.EINVAL, path)

    @staticmethod
    def makedev(major, minor):
        # glibc/musl sys/sysmacros.h
        return ((major & 0xFFFFF000) << 32) | ((major & 0xFFF) << 8) | ((minor & 0xFFFFFF00) << 12) | (minor & 0xFF)

    @staticmethod
    def major(dev):
        return ((dev >> 32) & 0xFFFFF000) | ((dev >> 8) & 0xFFF)

    @staticmethod
    def minor(dev):
        return ((dev >> 12) & 0xFFFFFF00) | (dev & 0xFF)

    def symlink(self, target, path):
        self.fos.symlink(target, self._p(path))

    def readlink(self, path):
        return self.fos.readlink(self._p(path))

    def lstat(self, path):
        s = self.fos.lstat(self._p(path))
        return (s.st_mode, s.st_ino, s.st_dev, s.st_nlink, s.st_uid, s.st_gid, s.st_size, int(s.st_atime),
                int(s.st_mtime), int(s.st_ctime))

    def chmod(self, path, mode):
        self.fos.chmod(self._p(path), mode)

    def chown(self, path, uid, gid):
        self.fos.chown(self._p(path), uid, gid)

    def umask(self, mask):
        old = self.umask_value
        self.umask_value = mask & 0o777
        self.fs.umask = self.umask_value
        return old

    def access(self, path, mode):
        return self.fos.access(self._p(path), mode)

    def open(self, path, flags, mode=0o644):
        if flags & 3 == abi.O_RDONLY and self._is_kmsg(path):
            fd = self.klog.open()     # a reader of the log buffer, one record per read (kmsg.py)
        else:
            fd = self.fos.open(self._p(path), flags, mode)
        self.open_fds[fd] = (path, bool(flags & abi.O_CLOEXEC))
        return fd

    def _is_kmsg(self, path):
        try:
            obj = self._obj(self._canon(path))
        except OSError:
            return False
        return getattr(obj, "_side_effect", None) == self._capture_kmsg

    def lseek(self, fd, offset, whence):
        if self.klog.owns(fd):
            return self.klog.lseek(fd, offset, whence)
        return self.fos.lseek(fd, offset, whence)

    def readahead(self, fd, offset, length):
        """posix_fadvise(POSIX_FADV_WILLNEED): only a hint (a test sees it in result.calls); what the kernel checks
        is checked: an open fd (EBADF), a non-negative range (EINVAL)."""
        self.fos.fstat(fd)   # EBADF for a closed descriptor, as fadvise64 gives
        if offset < 0 or length < 0:
            raise _err(errno.EINVAL)

    def close(self, fd):
        self.open_fds.pop(fd, None)
        if self.klog.owns(fd):
            return self.klog.close(fd)
        if self.net.owns(fd):
            return self.net.close(fd)
        self.fos.close(fd)

    def dup2(self, old, new):
        # fds 0-2 are the test process's own: recorded only (the console is captured as stdout/stderr).
        if new in (0, 1, 2):
            return new
        return self.fos.dup2(old, new)

    def read(self, fd, n):
        if fd == 0:
            return self._console_read(n)
        if self.klog.owns(fd):
            return self.klog.read(fd, n)
        return self.fos.read(fd, n)

    def _poll(self, fd, events, timeout_ms):
        """poll(2): on fd 0, readable when console_input holds a line (canonical mode: a whole line); the
        machine's SILENCE there is a key nobody pressed: the timeout passes (and the mark is used up)."""
        if fd != 0:
            return self._net_poll(fd, events, timeout_ms)
        self.machine._rescue = True
        lines = self.machine.console_input
        if not lines:
            raise Halt("stuck", None)
        if lines[0] is self.machine.SILENCE or lines[0] == self.machine.SILENCE:
            lines.pop(0)
            if timeout_ms < 0:
                raise Halt("stuck", None)   # poll without a timeout on a console nobody types at
            self.sleep_ms(timeout_ms)
            return 0
        return abi.POLLIN & events

    def _console_read(self, n):
        """read(0): one line of console_input as the tty gives it in canonical mode, echoed only when ECHO is on
        (a passphrase typed with echo off leaves no trace, not even the newline); b"" for m.EOF."""
        self.machine._rescue = True
        lines = self.machine.console_input
        if not lines:
            raise Halt("stuck", None)
        line = lines.pop(0)
        if line is None:
            return b""
        if self.termios_lflag & abi.ECHO:
            self.console_parts.append(line + "\n")
        return (line + "\n").encode()[:n]

    def write(self, fd, data):
        return self.fos.write(fd, data)

    def ioctl(self, fd, request, arg=0):
        if request == abi.KDSKBENT:
            self.keymap_entries += 1
            return 0
        if request in (abi.KDGKBENT, abi.TIOCSCTTY):
            return 0
        if request in (abi.TCGETS, abi.TCSETS) and fd == 0 and isinstance(arg, bytearray) and len(arg) >= 36:
            # struct termios of include/uapi/asm-generic/termbits.h: c_lflag is the 4th u32 (offset 12).
            if request == abi.TCGETS:
                struct.pack_into("=I", arg, 12, self.termios_lflag)
            else:
                self.termios_lflag = struct.unpack_from("=I", arg, 12)[0]
            return 0
        raise _err(errno.ENOTTY)

    def setsid(self):
        return 1

    def set_ctty(self, fd):
        return None

    def sync(self):
        return None

    def statfs(self, path):
        real = self._canon(path)
        m = self.mount_of(real)
        magic = MAGIC.get(m.fstype, 0)
        bsize = 4096
        used = m.mp["used_size"] if m.mp else 0
        if m.fstype in ("rootfs", "ramfs"):
            return (magic, bsize, 0, 0, 0)      # ramfs has no size: it reports zero blocks
        if m.mp is not None and m.mp["total_size"] is not None:
            total = m.mp["total_size"]
        elif m.device is not None:
            total = len(m.device.data)
        else:
            total = self.ram // 2
        free = max(0, total - used) // bsize
        return (magic, bsize, total // bsize, free, free)

    def sysinfo(self):
        mem = dict(self.meminfo())
        return (self.clock // 1000, mem["MemTotal"], mem["MemFree"], 0, 0, 0, 0)

    def uname(self):
        return ("Linux", "(none)", self.machine.kver, "#1 SMP fake", "x86_64")

    def copy_range(self, in_fd, out_fd, count):
        data = self.fos.read(in_fd, count)
        if not data:
            return 0
        return self.fos.write(out_fd, data)

    def copy_direct(self, in_fd, out_fd, count, bufsize):
        """modlinux.c copy_direct(): reads of at most bufsize, each count rounded up to 4096."""
        if count < 0 or bufsize <= 0 or bufsize % 4096:
            raise ValueError("count >= 0 and bufsize a positive multiple of 4096")
        done = 0
        while done < count:
            data = self.fos.read(in_fd, min(bufsize, (count - done + 4095) & ~4095))
            if not data:
                break
            done += self.fos.write(out_fd, data)
        return done

    def strerror(self, code):
        return _real_os.strerror(code)


def with_root_ids():
    """PID 1 runs as root: pyfakefs checks permissions as that user."""
    helpers.set_uid(0)
    helpers.set_gid(0)


from .dm import DeviceMapper  # noqa: E402  (dm.py builds on Device above)
from .kmsg import KernelLog  # noqa: E402
