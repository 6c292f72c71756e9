# Block devices: enumerate /sys/class/block, make /dev nodes and /dev/disk/by-* links, find a device by a spec
# (root=/live: conventions), and wait for one to appear.
#
#   scan() -> [Device]                 every block device, disks before their partitions; each probed lazily
#                                      (on the first read of its .info) and at most once per boot (cached)
#   ensure_node(dev)                   mknod /dev/<name> when devtmpfs did not make it
#   make_links(devices, only_probed=False)  /dev/disk/by-{uuid,label,partuuid,partlabel}/ symlinks, as udev
#                                      names them (only_probed: for the devices already probed, probing no more)
#   parse_spec(spec) -> (key, value)   LABEL= CDLABEL= UUID= PARTUUID=[/PARTNROFF=n] PARTLABEL= /dev/... maj:min
#   find(spec, devices) -> Device|None
#   wait_for(spec, deadline_ms, poll=None) -> Device|None   deadline None waits forever (rootwait)
#   describe(devices) -> str           one line per device with TYPE/LABEL/UUID/PARTUUID, for failure reports
#
# sysfs facts (Documentation/ABI/stable/sysfs-block): <dev>/dev is "major:minor", <dev>/size counts 512-byte
# sectors whatever the logical block size, a partition has a <dev>/partition file holding its number and lives in
# its disk's directory (so /sys/class/block/<disk>/<part> exists), <disk>/removable is the disk's flag, <dev>/ro
# the read-only flag; uevent holds DEVTYPE, PARTN and PARTNAME (the GPT name) for partitions.
#
# Scaling (issue 14): a server or a USB hub may show hundreds of block devices, and a probe costs ~10 ms under
# TCG. So nothing is probed until something asks for a device's info: find() stops at the first match in scan
# order, and a PARTUUID=/PARTLABEL= search reads only the partition tables (once per disk), never the partitions'
# contents. A scan after the first reuses the Device of every name it has seen (two sysfs reads to check that it
# is the same device), so a wait loop of P passes over N devices costs N probes, not P * N.
import os

from micropython import const

from . import fsutil
from . import syscalls as sc

SYS_BLOCK = "/sys/class/block"
DEV = "/dev"
DISK_LINKS = "/dev/disk"

_POLL_MS = const(100)

# name -> (devno, size, info) of devices already probed; a device is probed again only when it is new, its
# number changed or its size changed (a CD inserted into a drive, a loop device re-attached).
_cache = {}
# disk name -> (devno, size, [partition dicts]) of partition tables already read.
_tables = {}
# name -> Device from the last scan(), reused by the next one while its devno and size stay the same.
_devs = {}
# /dev/disk link path -> target made by make_links(), so a later pass does not readlink() them again.
_linked = {}


# Devices about to be probed, opened with their probes' reads queued (read_ahead()): name -> open file.
_ahead = {}
# How many devices ahead a search queues. Measured with 32 disks of 4 partitions (bench/mpbench/scale.py, TCG):
# the probes' reads took 165 ms one device at a time, 17 ms with 8 queued ahead; the whole devices stage took
# 242-260 ms with 4 ahead, 246-306 ms with 8 (6 boots each) and 265-270 ms with 16: 4 wastes least on a search that
# stops early.
_AHEAD = const(4)


def read_ahead(devices, i):
    """Queue the probe reads (probe.reads()) of devices[i:i + _AHEAD] not probed yet, so a search that probes
    one device after another waits for the disks together rather than one by one. Each stays open until its
    probe takes it: the last close of a block device drops its page cache (block/bdev.c blkdev_flush_mapping).
    A caller calls drop_ahead() when its loop ends, however it ends."""
    from . import probe

    for d in devices[i:i + _AHEAD]:
        if d._info is not None or d.name in _ahead or d.name in _cache or not d.size:
            continue
        try:
            f = open(d.path, "rb")
        except OSError:
            continue  # its probe meets the error again and says so
        _ahead[d.name] = f
        try:
            fd = f.fileno()
            for off, n in probe.reads(d.size):
                sc.readahead(fd, off, n)
        except OSError:
            pass  # only a hint: the probe reads it anyway


def drop_ahead():
    """Close the devices read_ahead() opened that no probe took."""
    for f in _ahead.values():
        f.close()
    _ahead.clear()


def search(devices, want, every=False):
    """Probe devices in turn (the next ones read ahead) for want(device): the first that wants it (None: none), or
    with every=True the list of all of them. What read_ahead() opened is closed however it ends."""
    found = []
    try:
        for i in range(len(devices)):
            read_ahead(devices, i)
            d = devices[i]
            if want(d):
                if not every:
                    return d
                found.append(d)
    finally:
        drop_ahead()
    return found if every else None


def forget():
    """Drop every cached probe result (tests; a rescue-shell user who rewrote a disk)."""
    drop_ahead()
    _cache.clear()
    _tables.clear()
    _devs.clear()
    _linked.clear()


class Device:
    """One block device: a whole disk or a partition, with what the probes found in `info` (blkid keys)."""

    def __init__(self, name, devno, size, removable=False, ro=False, is_partition=False, partn=None,
                 parent=None, info=None):
        self.name = name
        self.path = DEV + "/" + name
        self.devno = devno                # (major, minor)
        self._size = size                 # bytes (None: read from sysfs when asked)
        self._removable = removable       # the whole disk's removable flag (None: read from sysfs when asked)
        self._ro = ro                     # (None: read from sysfs when asked)
        self.is_partition = is_partition
        self.partn = partn                # partition number (sda1 -> 1), None for a disk
        self.parent = parent              # the disk's name for a partition, None for a disk
        self.sector = 512                 # logical block size (queue/logical_block_size of the disk)
        self.disk = None                  # the parent disk's Device (scan() sets it), for its partition table
        self._info = info                 # None until probed (see the info property)
        self._part = None                 # PARTUUID/PARTLABEL from the parent's table, None until read
        self._retry = False               # the probe failed (I/O error): the next scan() probes again

    @property
    def info(self):
        """blkid's keys for this device, probed on the first read (probe.probe, plus PARTUUID/PARTLABEL from
        the disk's partition table for a partition)."""
        if self._info is None:
            info, ok = _probe(self)
            self._retry = not ok
            if self.is_partition:
                info.update(self.part_keys())
            self._info = info
        return self._info

    @info.setter
    def info(self, value):
        self._info = value

    # The size, read-only and removable flags are sysfs reads: read on first use, not for every device of every
    # scan. A search that stops at its match never reads the size of the devices after it, nor a partition search
    # (PARTUUID=) that of any partition; only failure reports, the medium search without a spec and persistence
    # look at the flags. Each first read of a sysfs attribute costs ~0.2 ms under TCG (kernfs makes its inode).
    @property
    def size(self):
        if self._size is None:
            self._size = _sysfs_size(self.name)
        return self._size

    @size.setter
    def size(self, value):
        self._size = value

    @property
    def ro(self):
        if self._ro is None:
            self._ro = fsutil.read_text(SYS_BLOCK + "/" + self.name + "/ro", "0").strip() == "1"
        return self._ro

    @ro.setter
    def ro(self, value):
        self._ro = value

    @property
    def removable(self):
        if self._removable is None:
            if self.disk is not None:
                self._removable = self.disk.removable
            else:
                name = self.parent if self.is_partition and self.parent else self.name
                self._removable = fsutil.read_text(SYS_BLOCK + "/" + name + "/removable", "0").strip() == "1"
        return self._removable

    @removable.setter
    def removable(self, value):
        self._removable = value

    def probed(self):
        return self._info is not None

    def part_keys(self):
        """{PARTUUID, PARTLABEL} of a partition from its disk's partition table (read once per disk), without
        probing the partition itself; the uevent's PARTNAME when the table is unreadable. {} for a disk."""
        if self._part is not None:
            return self._part
        out = {}
        if not self.is_partition:
            return out
        entry = None
        disk = self.disk
        keep = True
        if disk is not None and disk.info.get("PTTYPE"):
            table = _read_table(disk)
            if table is None:
                keep = False  # an I/O error: read again on the next scan
                table = []
            for p in table:
                if p["PART_ENTRY_NUMBER"] == self.partn:
                    entry = p
                    break
        if entry is not None:
            for key in ("PARTUUID", "PARTLABEL"):
                if key in entry:
                    out[key] = entry[key]
        else:
            name = _uevent(SYS_BLOCK + "/" + self.name).get("PARTNAME")
            if name:
                out["PARTLABEL"] = name
        if keep:
            self._part = out
        else:
            self._retry = True
        return out

    def get(self, key, default=None):
        return self.info.get(key, default)

    def __repr__(self):
        return "<Device %s %d:%d %s>" % (self.path, self.devno[0], self.devno[1],
                                         _keys(self._info) if self._info is not None else "(not probed)")


def _keys(info):
    out = []
    for key in ("TYPE", "LABEL", "UUID", "PARTUUID", "PARTLABEL", "PTTYPE"):
        if key in info:
            out.append('%s="%s"' % (key, info[key]))
    return " ".join(out)


# ---- enumeration -------------------------------------------------------------------------------------------------


def _int(text, default=0):
    try:
        return int(text.strip())
    except (ValueError, AttributeError):
        return default


def _sysfs_size(name):
    """A block device's size in bytes: sysfs counts 512-byte sectors whatever the logical block size
    (block/genhd.c disk_size_show / block/partitions/core.c part_size_show); 0 when unreadable."""
    return _int(fsutil.read_text(SYS_BLOCK + "/" + name + "/size", "0")) * 512


def _uevent(base):
    out = {}
    for line in fsutil.read_text(base + "/uevent", "").split("\n"):
        i = line.find("=")
        if i > 0:
            out[line[:i]] = line[i + 1:]
    return out


def _parent_of(name, disks, known=None):
    """The disk whose sysfs directory holds partition `name`. known: the disks of this scan by name."""
    # Kernel partition names: the disk name plus the number, with "p" between when the disk name ends in a digit
    # (block/partitions/core.c: nvme0n1p1, mmcblk0p1, loop0p1; sda1).
    stem = name.rstrip("0123456789")
    guesses = [stem]
    if stem.endswith("p"):
        guesses.append(stem[:-1])
    if known is not None:
        # The name rule picks one disk of this scan: trusted without a stat (a disk's name never has another
        # disk's partition names as a prefix plus digits: sda -> sda1, sda1 is no disk beside it).
        for disk in guesses:
            if disk in known:
                return disk
    for disk in guesses + disks:
        if disk != name and fsutil.exists("%s/%s/%s" % (SYS_BLOCK, disk, name)):
            return disk
    return None


def _read_table(disk):
    hit = _tables.get(disk.name)
    if hit is not None and hit[0] == disk.devno and hit[1] == disk.size:
        return hit[2]
    from . import probe

    try:
        parts = probe.partitions(disk.path, sector=disk.sector)
    except OSError:
        return None  # not cached: the medium may become readable later
    _tables[disk.name] = (disk.devno, disk.size, parts)
    return parts


def _probe(dev):
    """(info, ok): the probe's result for dev (cached per name, devno and size); ok False after an I/O error."""
    hit = _cache.get(dev.name)
    if hit is not None and hit[0] == dev.devno and hit[1] == dev.size:
        return dict(hit[2]), True
    if not dev.size:
        return {}, True  # an empty drive (no medium) or a detached loop device: nothing to read
    from . import probe

    parts = None if dev.is_partition else []
    f = _ahead.pop(dev.name, None)   # opened by read_ahead(), its reads queued
    try:
        info = probe.probe(dev.path if f is None else f, sector=dev.sector, parts=parts, windows=True)
    except OSError:
        return {}, False  # I/O error or medium gone: not cached, tried again on the next scan
    finally:
        if f is not None:
            f.close()
    _cache[dev.name] = (dev.devno, dev.size, dict(info))
    if parts is not None and info.get("PTTYPE"):
        _tables[dev.name] = (dev.devno, dev.size, parts)   # the table the probe read: part_keys() needs no read
    return info, True


def _devno(text):
    i = text.find(":")
    if i < 0:
        return None
    return _int(text[:i]), _int(text[i + 1:])


# Why ensure_node() failed for a device in the last scan(), as (name, OSError): the caller reports them
# (main.scan_devices logs each once), since a scan makes the nodes itself.
node_errors = []


def _new_device(name, ev, disks, by_name):
    """A Device for a name not seen before, from its uevent (MAJOR, MINOR, DEVTYPE, PARTN: one read for what
    took four) and its size; None when it vanished or is not a device."""
    base = SYS_BLOCK + "/" + name
    if "MAJOR" in ev and "MINOR" in ev:
        devno = (_int(ev["MAJOR"]), _int(ev["MINOR"]))
    else:
        devno = _devno(fsutil.read_text(base + "/dev", ""))   # an old kernel's uevent without MAJOR/MINOR
    if devno is None:
        return None  # vanished while we looked, or not a device directory
    size = None   # read when asked (Device.size)
    if name.startswith("loop"):
        size = _sysfs_size(name)
        if not size:
            return None  # an unattached loop device: nothing to find there, and eight of them are noise in reports
    d = Device(name, devno, size, removable=None, ro=None)
    if ev.get("DEVTYPE") == "partition":
        d.is_partition = True
        d.partn = _int(ev.get("PARTN") or fsutil.read_text(base + "/partition", ""), None)
        d.parent = _parent_of(name, disks, by_name)
        disk = by_name.get(d.parent)
        d.disk = disk
        if disk is not None:
            d.sector = disk.sector
    else:
        d.sector = _int(fsutil.read_text(base + "/queue/logical_block_size", "512"), 512) or 512
    try:
        ensure_node(d)
    except OSError as e:
        node_errors.append((name, e))  # probing it later then fails quietly
    return d


def scan(announced=None):
    """Every block device in /sys/class/block (disks first, then partitions, each group by name; unattached loop
    devices left out), with /dev nodes made where missing. `info` is probed on first use (cached).

    A name seen by an earlier scan keeps its Device (and its probe) without a single sysfs read: a wait loop's
    rescans cost one listdir plus the new devices. Only a device that had no medium (size 0: an empty CD drive or
    card reader) has its size read again, and one whose probe failed is probed again. A device that disappears
    from the listing is forgotten, so one replaced under the same name between two scans is not noticed (the
    wait loop scans every 100 ms or sooner on a uevent; forget() drops everything).

    announced: name -> the fields of the device's "add" uevent as read from the kernel's uevent socket (kmod's
    listener, uevent.Listener.blocks): the same MAJOR, MINOR, DEVTYPE and PARTN as its sysfs uevent file, whose
    first read costs ~0.3 ms under TCG (kernfs makes the directory's and the file's inodes)."""
    del node_errors[:]
    names = fsutil.listdir(SYS_BLOCK)
    disks = []
    parts = []
    events = {}
    for name in names:
        old = _devs.get(name)
        if old is not None:
            is_part = old.is_partition
        else:
            ev = announced.get(name) if announced else None
            if ev is None:
                ev = _uevent(SYS_BLOCK + "/" + name)
            if "DEVTYPE" not in ev:   # no uevent (a test tree, an odd kernel): the partition file says it
                ev["DEVTYPE"] = "partition" if fsutil.exists("%s/%s/partition" % (SYS_BLOCK, name)) else "disk"
            events[name] = ev
            is_part = ev["DEVTYPE"] == "partition"
        if is_part:
            parts.append(name)
        else:
            disks.append(name)
    devices = []
    by_name = {}
    for name in disks + parts:
        old = _devs.get(name)
        if old is not None:
            if old._size == 0:        # no medium when last asked (None: never asked, read when it is)
                size = _sysfs_size(name)
                if size:
                    old = None        # a medium was inserted: a new Device, probed afresh
        if old is not None:
            if old.is_partition:
                disk = by_name.get(old.parent)
                if disk is not old.disk:
                    old.disk = disk       # the disk was replaced: its table is read again
                    old._part = None
                    old._info = None
            if old._retry:
                old._info = None          # the last probe or table read failed: try again
                old._part = None
                old._retry = False
            by_name[name] = old
            devices.append(old)
            continue
        ev = events.get(name)
        if ev is None:
            ev = _uevent(SYS_BLOCK + "/" + name)
        d = _new_device(name, ev, disks, by_name)
        if d is None:
            continue
        by_name[name] = d
        devices.append(d)
    _devs.clear()
    for d in devices:
        _devs[d.name] = d
    return devices


# ---- /dev --------------------------------------------------------------------------------------------------------


def ensure_node(dev):
    """Create dev.path as a block device node (mode 0600, like devtmpfs) unless something is there already."""
    if fsutil.exists(dev.path):
        return False
    sc.mknod(dev.path, sc.S_IFBLK | 0o600, sc.makedev(dev.devno[0], dev.devno[1]))
    return True


_SAFE = "#+-.:=@_"


def encode(value):
    """udev's escaping of a link name (libblkid blkid_encode_string): ASCII letters, digits, "#+-.:=@_" and valid
    UTF-8 multi-byte characters stay, every other byte becomes \\xNN ("/" -> \\x2f, " " -> \\x20)."""
    out = []
    for ch in value:
        o = ord(ch)
        if o >= 0x80 or ("0" <= ch <= "9") or ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ch in _SAFE:
            out.append(ch)
        else:
            out.append("\\x%02x" % o)
    return "".join(out)


def decode(value):
    """The inverse of encode(): \\xNN escapes back to characters (root=LABEL=My\\x20Stick, as dracut allows)."""
    if "\\x" not in value:
        return value
    out = []
    i = 0
    n = len(value)
    while i < n:
        if value[i] == "\\" and i + 3 < n and value[i + 1] == "x":
            try:
                out.append(chr(int(value[i + 2:i + 4], 16)))
                i += 4
                continue
            except ValueError:
                pass
        out.append(value[i])
        i += 1
    return "".join(out)


_LINKS = (("by-uuid", "UUID"), ("by-label", "LABEL"), ("by-partuuid", "PARTUUID"), ("by-partlabel", "PARTLABEL"))


def make_links(devices, only_probed=False):
    """/dev/disk/by-*/<encoded value> -> ../../<name>. The first device in scan order keeps a contested name (a
    hybrid ISO's disk over its partition); a stale link is replaced. Returns the number of links made.
    only_probed: link only the devices probed so far (the boot's wait loop, which must not probe every device)."""
    made = 0
    taken = {}
    if not _linked.get(DISK_LINKS):
        for sub, key in _LINKS:
            fsutil.makedirs(DISK_LINKS + "/" + sub)
        _linked[DISK_LINKS] = True   # the directories, made once: later passes stat them no more
    for d in devices:
        if only_probed and not d.probed():
            continue
        for sub, key in _LINKS:
            value = d.info.get(key)
            if not value:
                continue
            path = "%s/%s/%s" % (DISK_LINKS, sub, encode(value))
            if path in taken:
                continue
            taken[path] = True
            target = "../../" + d.name
            if _linked.get(path) == target:
                continue          # made by an earlier pass of this boot
            # /dev is the kernel's fresh devtmpfs, so the symlink is tried first; only when something is there
            # already is it read (a stale link from an earlier scan, the device replaced: it is replaced).
            try:
                sc.symlink(target, path)
                _linked[path] = target
                made += 1
                continue
            except OSError:
                pass
            try:
                if sc.readlink(path) == target:
                    _linked[path] = target
                    continue
                os.remove(path)
            except OSError:
                fsutil.makedirs(DISK_LINKS + "/" + sub)  # nothing there: its directory went away (the REPL)
            sc.symlink(target, path)
            _linked[path] = target
            made += 1
    return made


# ---- specs -------------------------------------------------------------------------------------------------------

_KEYS = ("LABEL", "CDLABEL", "UUID", "PARTUUID", "PARTLABEL")
_BY = {"by-uuid": "UUID", "by-label": "LABEL", "by-partuuid": "PARTUUID", "by-partlabel": "PARTLABEL"}


def parse_spec(spec):
    """A device spec -> (key, value). Keys: LABEL, CDLABEL, UUID, PARTUUID, PARTLABEL (value a str, \\xNN
    unescaped), PARTNROFF (value (partuuid, offset)), PATH ("/dev/..."), DEVNO ((major, minor)), NAME ("sda1",
    the kernel's root=sda1). ValueError naming the spec when it is none of these."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("device spec %r: empty" % (spec,))
    spec = spec.strip()
    i = spec.find("=")
    if i > 0:
        key = spec[:i].upper()
        value = spec[i + 1:]
        if key not in _KEYS:
            raise ValueError("device spec %r: unknown key %s= (known: %s=, a /dev path or major:minor)"
                             % (spec, spec[:i], "=, ".join(_KEYS)))
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if not value:
            raise ValueError("device spec %r: %s= needs a value" % (spec, key))
        if key == "PARTUUID":
            j = value.upper().find("/PARTNROFF=")
            if j >= 0:
                off = value[j + 11:]
                try:
                    n = int(off)
                except ValueError:
                    raise ValueError("device spec %r: PARTNROFF=%s is not a number" % (spec, off))
                return "PARTNROFF", (value[:j].lower(), n)
            return key, value.lower()
        if key == "UUID":
            return key, value.lower()
        return key, decode(value)
    if spec.startswith("/"):
        if not spec.startswith("/dev/") or spec == "/dev/":
            raise ValueError("device spec %r: a device path must be under /dev/" % spec)
        return "PATH", spec
    i = spec.find(":")
    if i > 0:
        try:
            return "DEVNO", (int(spec[:i]), int(spec[i + 1:]))
        except ValueError:
            raise ValueError("device spec %r: major:minor wants two decimal numbers" % spec)
    for ch in spec:
        if not ("a" <= ch <= "z" or "0" <= ch <= "9" or ch in "-_." or "A" <= ch <= "Z"):
            raise ValueError("device spec %r: not LABEL=, UUID=, PARTUUID=, PARTLABEL=, CDLABEL=, a /dev path, "
                             "major:minor or a device name" % spec)
    return "NAME", spec


def _match(key, value, devices):
    def want(d):
        got = d.info.get(key)
        if got is None:
            return False
        return got.lower() == value if key in ("UUID", "PARTUUID") else got == value

    return search(devices, want)


def _match_part(key, value, devices):
    """PARTUUID=/PARTLABEL= from the partition tables alone: the partitions' contents are not probed (a
    whole-disk device has no PARTUUID in blkid either)."""
    for d in devices:
        if not d.is_partition:
            continue
        got = d.part_keys().get(key)
        if got is None:
            continue
        if key == "PARTUUID":
            if got.lower() == value:
                return d
        elif got == value:
            return d
    return None


def find(spec, devices):
    """The first device (scan order: disks before partitions) matching spec, or None. ValueError for a bad spec."""
    key, value = parse_spec(spec)
    if key in ("PARTUUID", "PARTLABEL"):
        return _match_part(key, value, devices)
    if key in ("LABEL", "UUID"):
        return _match(key, value, devices)
    if key == "CDLABEL":
        # dracut turns CDLABEL= into /dev/disk/by-label/: an iso9660 volume first, then any with that label.
        iso = search(devices, lambda d: d.info.get("TYPE") == "iso9660", every=True)
        return _match("LABEL", value, iso) or _match("LABEL", value, devices)
    if key == "PARTNROFF":
        base = _match_part("PARTUUID", value[0], devices)
        if base is None or base.partn is None:
            return None
        want = base.partn + value[1]
        for d in devices:
            if d.parent == base.parent and d.partn == want:
                return d
        return None
    if key == "DEVNO":
        for d in devices:
            if d.devno == value:
                return d
        return None
    if key == "NAME":
        for d in devices:
            if d.name == value:
                return d
        return None
    # PATH
    for d in devices:
        if d.path == value:
            return d
    parts = value.split("/")
    if len(parts) == 5 and parts[2] == "disk" and parts[3] in _BY:
        return find("%s=%s" % (_BY[parts[3]], parts[4]), devices)
    try:
        target = sc.readlink(value)   # /dev/disk/by-id/..., /dev/mapper/..., /dev/root
    except OSError:
        return None
    name = fsutil.basename(target)
    for d in devices:
        if d.name == name:
            return d
    return None


def wait_for(spec, deadline_ms, poll=None):
    """Scan until spec's device appears: returns it, or None once deadline_ms have passed (None = wait forever,
    like rootwait). poll() runs between rounds (the caller's coldplug: USB sticks show up late)."""
    parse_spec(spec)  # a bad spec fails now, not after the deadline
    start = sc.uptime_ms()
    while True:
        d = find(spec, scan())
        if d is not None:
            return d
        if deadline_ms is not None and sc.uptime_ms() - start >= deadline_ms:
            return None
        if poll is not None:
            poll()
        sc.sleep_ms(_POLL_MS)


def human(size):
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            return "%.1f %s" % (size / (1 << shift), unit)
    return "%d B" % size


def describe(devices):
    """Every block device, one per line: path, major:minor, size, flags and TYPE/LABEL/UUID/PARTUUID/PARTLABEL."""
    if not devices:
        return "no block devices"
    lines = []
    for d in devices:
        flags = []
        if d.removable:
            flags.append("removable")
        if d.ro:
            flags.append("ro")
        what = _keys(d.info) or ("(empty)" if not d.size else "(nothing recognised)")
        lines.append("%s %d:%d %s%s %s" % (d.path, d.devno[0], d.devno[1], human(d.size),
                                           (" " + ",".join(flags)) if flags else "", what))
    return "\n".join(lines)
