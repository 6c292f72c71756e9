"""mpinit_agent.blockdev over a pyfakefs /sys/class/block tree built here, with a tiny recording syscall layer."""

import os

import pytest

from mpinit.testing import images
from mpinit.testing.images import Partition
from mpinit_agent import blockdev, linux_abi
from mpinit_agent import syscalls as sc

ISO_UUID = "2024-01-02-03-04-05-06"
ROOT_UUID = "0a1b2c3d-4e5f-4071-8293-a4b5c6d7e8f9"


class Recorder:
    """Just enough of the syscall interface for blockdev: nodes, links and a virtual clock."""

    def __init__(self):
        self.calls = []
        self.now = 0
        self.on_sleep = None

    def __getattr__(self, name):
        if name in sc.NAMES:
            def missing(*args, **kw):
                raise AssertionError("unexpected syscall %s%r" % (name, args))
            return missing
        raise AttributeError(name)

    def mknod(self, path, mode, dev):
        self.calls.append(("mknod", path, mode, dev))
        with open(path, "wb"):
            pass  # pyfakefs has no device nodes: an empty file stands for one

    def makedev(self, major, minor):
        return (major << 8) | minor

    def symlink(self, target, path):
        self.calls.append(("symlink", target, path))
        os.symlink(target, path)

    def readlink(self, path):
        return os.readlink(path)

    def readahead(self, fd, offset, length):
        self.calls.append(("readahead", fd, offset, length))

    def uptime_ms(self):
        return self.now

    def sleep_ms(self, ms):
        self.calls.append(("sleep_ms", ms))
        self.now += ms
        if self.on_sleep:
            self.on_sleep(self.now)


@pytest.fixture
def rec(fs):
    r = Recorder()
    saved = sc.use(r)
    blockdev.forget()
    yield r
    sc.restore(saved)
    blockdev.forget()


def add_disk(fs, name, data, major, minor, *, removable=False, ro=False, parts=(), node=True, sep=""):
    """A disk in /sys/devices/.../block/<name> with /sys/class/block links, and its partitions (offset, size,
    partlabel) as sub-directories, like the kernel lays them out; /dev nodes hold the bytes."""
    sysdir = "/sys/devices/pci0000:00/host0/block/" + name
    fs.create_file(sysdir + "/dev", contents="%d:%d\n" % (major, minor))
    fs.create_file(sysdir + "/size", contents="%d\n" % (len(data) // 512))
    fs.create_file(sysdir + "/ro", contents="%d\n" % ro)
    fs.create_file(sysdir + "/removable", contents="%d\n" % removable)
    fs.create_file(sysdir + "/uevent", contents="MAJOR=%d\nMINOR=%d\nDEVNAME=%s\nDEVTYPE=disk\n" % (major, minor, name))
    fs.create_symlink("/sys/class/block/" + name, "../../devices/pci0000:00/host0/block/" + name)
    if node:
        fs.create_file("/dev/" + name, contents=data)
    for i, (offset, size, label) in enumerate(parts):
        pname = "%s%s%d" % (name, sep, i + 1)
        pdir = sysdir + "/" + pname
        fs.create_file(pdir + "/dev", contents="%d:%d\n" % (major, minor + i + 1))
        fs.create_file(pdir + "/size", contents="%d\n" % (size // 512))
        fs.create_file(pdir + "/ro", contents="%d\n" % ro)
        fs.create_file(pdir + "/partition", contents="%d\n" % (i + 1))
        ev = "MAJOR=%d\nMINOR=%d\nDEVNAME=%s\nDEVTYPE=partition\nPARTN=%d\n" % (major, minor + i + 1, pname, i + 1)
        if label:
            ev += "PARTNAME=%s\n" % label
        fs.create_file(pdir + "/uevent", contents=ev)
        fs.create_symlink("/sys/class/block/" + pname, "../../devices/pci0000:00/host0/block/%s/%s" % (name, pname))
        if node:
            fs.create_file("/dev/" + pname, contents=data[offset:offset + size])


def gpt_stick(fs, name="sdb", major=8, minor=16, removable=True, node=True):
    live = images.filesystem("iso9660", label="LIVE MEDIUM", uuid=ISO_UUID)
    data = images.filesystem("ext4", label="persistence", uuid=ROOT_UUID)
    disk = images.disk([Partition(live, partlabel="Live/Part", partuuid="AAAAAAAA-0000-4000-8000-000000000001"),
                        Partition(data, partlabel="data")], disk_uuid="11111111-2222-4333-8444-555555555555")
    mib = 1 << 20
    add_disk(fs, name, disk, major, minor, removable=removable, node=node,
             parts=[(mib, len(live), "Live/Part"), (2 * mib, len(data), "data")])


def mbr_disk(fs):
    boot = images.filesystem("vfat", label="BOOT", uuid="ABCD-1234")
    disk = images.disk([Partition(boot, type="fat32", bootable=True)], table="dos", signature=0x0DEADBEE)
    add_disk(fs, "sda", disk, 8, 0, parts=[(1 << 20, len(boot), None)])


def test_scan_reads_sysfs_and_probes(rec, fs):
    mbr_disk(fs)
    gpt_stick(fs)
    devs = blockdev.scan()
    assert [d.name for d in devs] == ["sda", "sdb", "sda1", "sdb1", "sdb2"]
    sda, sdb, sda1, sdb1, sdb2 = devs
    assert sda.devno == (8, 0) and sda.path == "/dev/sda" and not sda.is_partition and sda.parent is None
    assert sda.info["PTTYPE"] == "dos" and sda.info["PTUUID"] == "0deadbee"
    assert sda1.is_partition and sda1.partn == 1 and sda1.parent == "sda" and sda1.size == 1 << 20
    assert sda1.info["TYPE"] == "vfat" and sda1.info["LABEL"] == "BOOT" and sda1.info["PARTUUID"] == "0deadbee-01"
    assert not sda1.removable and sdb1.removable and sdb2.removable
    assert sdb1.info["TYPE"] == "iso9660" and sdb1.info["UUID"] == ISO_UUID
    assert sdb1.info["PARTUUID"] == "aaaaaaaa-0000-4000-8000-000000000001"
    assert sdb1.info["PARTLABEL"] == "Live/Part"
    assert sdb2.info["LABEL"] == "persistence" and sdb2.info["PARTLABEL"] == "data"
    assert not [c for c in rec.calls if c[0] == "mknod"]  # devtmpfs-made nodes are left alone


def test_probe_results_are_cached_until_the_device_changes(rec, fs, monkeypatch):
    mbr_disk(fs)
    from mpinit_agent import probe

    seen = []
    real = probe.probe
    monkeypatch.setattr(probe, "probe", lambda path, *a, **k: seen.append(getattr(path, "name", path))
                        or real(path, *a, **k))

    def scan_all():
        return [d.info for d in blockdev.scan()]   # every device's info read, as a failure report does

    devs = blockdev.scan()
    assert seen == []                 # lazy: a scan alone probes nothing
    scan_all()
    assert sorted(seen) == ["/dev/sda", "/dev/sda1"]
    seen.clear()
    scan_all()
    assert seen == []
    gpt_stick(fs)                     # a new device: only it is probed
    scan_all()
    assert sorted(seen) == ["/dev/sdb", "/dev/sdb1", "/dev/sdb2"]
    seen.clear()
    assert blockdev.scan()[0] is devs[0]   # an unchanged device keeps its Device (and its probe) across scans
    # A device that leaves the listing is forgotten: back (re-plugged, maybe resized), it is probed again.
    fs.rename("/sys/class/block/sda1", "/sys/class/block-gone-sda1")
    assert "sda1" not in [d.name for d in blockdev.scan()]
    fs.rename("/sys/class/block-gone-sda1", "/sys/class/block/sda1")
    fs.get_object("/sys/devices/pci0000:00/host0/block/sda/sda1/size").set_contents("4096\n")
    scan_all()
    assert seen == ["/dev/sda1"]


def test_rescans_read_nothing_of_known_devices_but_an_empty_drives_size(rec, fs, monkeypatch):
    mbr_disk(fs)
    add_disk(fs, "sr0", b"", 11, 0, removable=True)   # an empty CD drive: size 0
    first = blockdev.scan()
    assert [d.name for d in first] == ["sda", "sr0", "sda1"] and not first[1].size
    from mpinit_agent import fsutil

    reads = []
    real = fsutil.read_text
    monkeypatch.setattr(fsutil, "read_text", lambda path, *a: reads.append(path) or real(path, *a))
    again = blockdev.scan()
    assert [d is o for d, o in zip(again, first)] == [True, True, True]
    assert reads == ["/sys/class/block/sr0/size"]   # the only read: has the drive got a medium now?
    iso = images.filesystem("iso9660", label="LIVE CD", uuid=ISO_UUID)
    fs.get_object("/sys/devices/pci0000:00/host0/block/sr0/size").set_contents("%d\n" % (len(iso) // 512))
    fs.get_object("/dev/sr0").set_contents(iso)
    sr0 = blockdev.scan()[1]
    assert sr0 is not first[1] and sr0.size == len(iso) and sr0.info["LABEL"] == "LIVE CD"


def test_flags_are_read_when_asked(rec, fs):
    gpt_stick(fs)
    devs = blockdev.scan()
    assert [d.removable for d in devs] == [True, True, True] and [d.ro for d in devs] == [False] * 3


def test_missing_nodes_are_made_with_mknod(rec, fs):
    gpt_stick(fs, node=False)
    fs.create_dir("/dev")
    devs = blockdev.scan()
    made = [c for c in rec.calls if c[0] == "mknod"]
    assert [c[1] for c in made] == ["/dev/sdb", "/dev/sdb1", "/dev/sdb2"]
    assert made[1][2] == linux_abi.S_IFBLK | 0o600 and made[1][3] == (8 << 8) | 17
    assert blockdev.ensure_node(devs[0]) is False  # exists now
    # The nodes here are empty stand-ins: nothing to probe, and nothing is cached, so a later scan retries.
    assert devs[1].info.get("TYPE") is None and devs[1].info["PARTLABEL"] == "Live/Part"  # from uevent PARTNAME


def test_partition_names_with_p_separator(rec, fs):
    disk = images.disk([Partition(images.filesystem("ext4", label="nv"))])
    add_disk(fs, "nvme0n1", disk, 259, 0, parts=[(1 << 20, 1 << 20, None)], sep="p")
    devs = blockdev.scan()
    assert [(d.name, d.parent, d.partn) for d in devs] == [("nvme0n1", None, None), ("nvme0n1p1", "nvme0n1", 1)]
    assert devs[1].info["LABEL"] == "nv"


def test_make_links_escapes_like_udev(rec, fs):
    mbr_disk(fs)
    gpt_stick(fs)
    devs = blockdev.scan()
    n = blockdev.make_links(devs)
    links = dict((c[2], c[1]) for c in rec.calls if c[0] == "symlink")
    assert links["/dev/disk/by-label/LIVE\\x20MEDIUM"] == "../../sdb1"
    assert links["/dev/disk/by-partlabel/Live\\x2fPart"] == "../../sdb1"
    assert links["/dev/disk/by-uuid/" + ISO_UUID] == "../../sdb1"
    assert links["/dev/disk/by-uuid/ABCD-1234"] == "../../sda1"
    assert links["/dev/disk/by-partuuid/0deadbee-01"] == "../../sda1"
    assert links["/dev/disk/by-label/persistence"] == "../../sdb2"
    assert n == len(links)
    assert os.path.realpath("/dev/disk/by-label/BOOT") == "/dev/sda1"
    rec.calls.clear()
    assert blockdev.make_links(devs) == 0 and rec.calls == []   # already right: untouched


def test_make_links_replaces_stale_links(rec, fs):
    mbr_disk(fs)
    fs.create_symlink("/dev/disk/by-label/BOOT", "../../sdz9")
    blockdev.make_links(blockdev.scan())
    assert os.readlink("/dev/disk/by-label/BOOT") == "../../sda1"


def test_encode_decode():
    assert blockdev.encode("My Stick/1") == "My\\x20Stick\\x2f1"
    assert blockdev.encode("Ünï-ok_#+.:=@") == "Ünï-ok_#+.:=@"
    assert blockdev.encode("a\\b") == "a\\x5cb"
    assert blockdev.decode("My\\x20Stick\\x2f1") == "My Stick/1"
    assert blockdev.decode("bad\\xZZ") == "bad\\xZZ"


@pytest.mark.parametrize("spec,want", [
    ("LABEL=BOOT", ("LABEL", "BOOT")),
    ("LABEL=My\\x20Stick", ("LABEL", "My Stick")),
    ('LABEL="quoted"', ("LABEL", "quoted")),
    ("CDLABEL=ARCH_2024", ("CDLABEL", "ARCH_2024")),
    ("UUID=ABCD-1234", ("UUID", "abcd-1234")),
    ("PARTUUID=0DEADBEE-01", ("PARTUUID", "0deadbee-01")),
    ("PARTUUID=0deadbee-01/PARTNROFF=1", ("PARTNROFF", ("0deadbee-01", 1))),
    ("PARTLABEL=Live", ("PARTLABEL", "Live")),
    ("/dev/sda1", ("PATH", "/dev/sda1")),
    ("/dev/disk/by-uuid/x", ("PATH", "/dev/disk/by-uuid/x")),
    ("8:1", ("DEVNO", (8, 1))),
    ("sda1", ("NAME", "sda1")),
])
def test_parse_spec(spec, want):
    assert blockdev.parse_spec(spec) == want


@pytest.mark.parametrize("spec,words", [
    ("", "empty"), ("FOO=bar", "unknown key FOO="), ("LABEL=", "needs a value"), ("/etc/x", "under /dev/"),
    ("8:x", "major:minor"), ("PARTUUID=a/PARTNROFF=z", "PARTNROFF=z"), ("what ever", "not LABEL="),
])
def test_parse_spec_errors_name_the_spec(spec, words):
    with pytest.raises(ValueError) as e:
        blockdev.parse_spec(spec)
    assert words in str(e.value) and repr(spec) in str(e.value)


def test_find(rec, fs):
    mbr_disk(fs)
    gpt_stick(fs)
    devs = blockdev.scan()
    blockdev.make_links(devs)
    name = lambda spec: (blockdev.find(spec, devs) or blockdev.Device("-", (0, 0), 0)).name
    assert name("LABEL=BOOT") == "sda1"
    assert name("LABEL=LIVE\\x20MEDIUM") == "sdb1"
    assert name("CDLABEL=LIVE MEDIUM") == "sdb1"
    assert name("CDLABEL=persistence") == "sdb2"           # not iso9660, but dracut's by-label finds it
    assert name("UUID=abcd-1234") == "sda1"
    assert name("UUID=" + ROOT_UUID.upper()) == "sdb2"
    assert name("PARTUUID=0DEADBEE-01") == "sda1"
    assert name("PARTUUID=AAAAAAAA-0000-4000-8000-000000000001/PARTNROFF=1") == "sdb2"
    assert name("PARTLABEL=data") == "sdb2"
    assert name("/dev/sdb2") == "sdb2"
    assert name("/dev/disk/by-label/LIVE\\x20MEDIUM") == "sdb1"
    assert name("/dev/disk/by-partuuid/0deadbee-01") == "sda1"
    assert name("8:17") == "sdb1"
    assert name("sda") == "sda"
    fs.create_dir("/dev/disk/by-id")
    fs.create_symlink("/dev/disk/by-id/usb-Stick-part2", "../../sdb2")
    assert name("/dev/disk/by-id/usb-Stick-part2") == "sdb2"
    for missing in ("LABEL=nope", "UUID=0000-0000", "/dev/sdq", "9:9", "PARTUUID=0deadbee-01/PARTNROFF=5"):
        assert blockdev.find(missing, devs) is None, missing


def test_wait_for_polls_until_the_stick_appears(rec, fs):
    mbr_disk(fs)
    polls = []

    def plug(now):
        if now >= 700 and not fs.exists("/sys/class/block/sdb"):
            gpt_stick(fs)

    rec.on_sleep = plug
    d = blockdev.wait_for("CDLABEL=LIVE MEDIUM", 5000, poll=lambda: polls.append(rec.now))
    assert d is not None and d.name == "sdb1"
    assert rec.now == 700 and len(polls) == 7


def test_wait_for_gives_up_at_the_deadline(rec, fs):
    mbr_disk(fs)
    assert blockdev.wait_for("LABEL=nope", 1000) is None
    assert rec.now == 1000


def test_wait_for_rootwait_has_no_deadline(rec, fs):
    mbr_disk(fs)

    def plug(now):
        if now == 60000:
            gpt_stick(fs)

    rec.on_sleep = plug
    assert blockdev.wait_for("PARTLABEL=data", None).name == "sdb2"
    assert rec.now == 60000


def test_wait_for_bad_spec_fails_at_once(rec, fs):
    with pytest.raises(ValueError):
        blockdev.wait_for("NOPE=1", 1000)
    assert rec.now == 0


def test_describe(rec, fs):
    assert blockdev.describe([]) == "no block devices"
    mbr_disk(fs)
    gpt_stick(fs)
    text = blockdev.describe(blockdev.scan())
    lines = text.split("\n")
    assert len(lines) == 5
    assert lines[0] == '/dev/sda 8:0 2.0 MiB PTTYPE="dos"'
    assert lines[3] == ('/dev/sdb1 8:17 1.0 MiB removable TYPE="iso9660" LABEL="LIVE MEDIUM" UUID="%s" '
                        'PARTUUID="aaaaaaaa-0000-4000-8000-000000000001" PARTLABEL="Live/Part"' % ISO_UUID)


def test_unattached_loop_devices_are_left_out(rec, fs):
    add_disk(fs, "loop0", b"", 7, 0)
    add_disk(fs, "loop1", images.filesystem("squashfs"), 7, 1)
    assert [d.name for d in blockdev.scan()] == ["loop1"]


def _count_probes(monkeypatch):
    from mpinit_agent import probe

    seen = {"probe": [], "partitions": []}
    real_probe, real_parts = probe.probe, probe.partitions
    # A device read ahead (blockdev.read_ahead) is probed through the file opened for it: its name is the path.
    monkeypatch.setattr(probe, "probe", lambda path, *a, **k: seen["probe"].append(getattr(path, "name", path))
                        or real_probe(path, *a, **k))
    monkeypatch.setattr(probe, "partitions",
                        lambda path, *a, **k: seen["partitions"].append(path) or real_parts(path, *a, **k))
    return seen


def many_disks(fs, n):
    """n GPT disks sda.. of two partitions each (a vfat "EFI<i>" and an ext4 "DATA<i>")."""
    for i in range(n):
        boot = images.filesystem("vfat", label="EFI%d" % i, uuid="ABCD-%04X" % i)
        data = images.filesystem("ext4", label="DATA%d" % i, uuid="0a1b2c3d-4e5f-4071-8293-%012x" % i)
        disk = images.disk([Partition(boot, partlabel="efi%d" % i, partuuid="00000000-0000-4000-8000-%012x" % i),
                            Partition(data, partlabel="data%d" % i)])
        mib = 1 << 20
        add_disk(fs, "sd" + "abcdefgh"[i], disk, 8, 16 * i,
                 parts=[(mib, len(boot), "efi%d" % i), (2 * mib, len(data), "data%d" % i)])


def test_find_takes_the_match_before_later_devices_are_probed(rec, fs, monkeypatch):
    many_disks(fs, 4)
    seen = _count_probes(monkeypatch)
    devs = blockdev.scan()
    assert len(devs) == 12 and seen == {"probe": [], "partitions": []}
    assert blockdev.find("LABEL=DATA1", devs).name == "sdb2"
    # Disks first (scan order), then partitions up to the match: sdc*/sdd* partitions never read.
    order = [d.path for d in devs]
    assert seen["probe"] == order[:order.index("/dev/sdb2") + 1] and seen["probe"][-1] == "/dev/sdb2"
    assert "/dev/sdc1" not in seen["probe"] and "/dev/sdd2" not in seen["probe"]


def test_partuuid_and_partlabel_read_tables_only(rec, fs, monkeypatch):
    many_disks(fs, 4)
    seen = _count_probes(monkeypatch)
    devs = blockdev.scan()
    assert blockdev.find("PARTUUID=00000000-0000-4000-8000-000000000002", devs).name == "sdc1"
    assert blockdev.find("PARTLABEL=data3", devs).name == "sdd2"
    assert blockdev.find("PARTUUID=00000000-0000-4000-8000-000000000000/PARTNROFF=1", devs).name == "sda2"
    # No partition's contents probed; each disk's table read once, by its own probe (which hands blockdev the
    # partitions it parsed), whatever the number of lookups.
    assert sorted(seen["probe"]) == ["/dev/sda", "/dev/sdb", "/dev/sdc", "/dev/sdd"]
    assert seen["partitions"] == []
    # blkid-compatible keys still complete once the partition itself is read.
    sdc1 = blockdev.find("sdc1", devs)
    assert sdc1.info["LABEL"] == "EFI2" and sdc1.info["PARTUUID"] == "00000000-0000-4000-8000-000000000002"
    assert sdc1.info["PARTLABEL"] == "efi2" and sdc1.info["TYPE"] == "vfat"
    assert seen["partitions"] == [] and seen["probe"].count("/dev/sdc") == 1


def test_each_device_is_probed_at_most_once_across_scans(rec, fs, monkeypatch):
    many_disks(fs, 2)
    seen = _count_probes(monkeypatch)
    for _ in range(5):                       # a wait loop's passes, looking for a label that is not there
        assert blockdev.find("LABEL=LATE", blockdev.scan()) is None
    assert sorted(seen["probe"]) == ["/dev/sda", "/dev/sda1", "/dev/sda2", "/dev/sdb", "/dev/sdb1", "/dev/sdb2"]
    assert seen["partitions"] == []                # the tables came with the disks' own probes
    seen["probe"].clear()
    seen["partitions"].clear()
    late = images.filesystem("ext4", label="LATE")
    add_disk(fs, "sdc", late, 8, 32)          # it appears: only the new device is probed on the next pass
    assert blockdev.find("LABEL=LATE", blockdev.scan()).name == "sdc"
    assert seen["probe"] == ["/dev/sdc"] and seen["partitions"] == []


def test_make_links_only_probed_leaves_unprobed_devices_alone(rec, fs, monkeypatch):
    many_disks(fs, 2)
    seen = _count_probes(monkeypatch)
    devs = blockdev.scan()
    blockdev.find("LABEL=EFI0", devs)
    n = len(seen["probe"])
    blockdev.make_links(devs, only_probed=True)
    assert len(seen["probe"]) == n           # linking probed nothing more
    assert os.readlink("/dev/disk/by-label/EFI0") == "../../sda1"
    assert not os.path.lexists("/dev/disk/by-label/DATA1")


# ---- whole boots on the fake machine: probes counted (issue 14: lazy probing, no rescans) -----------------------


def _jbod(m, n, medium_at):
    """n disks sda.. of 2 partitions each (ext4 "D<i>" and a vfat); the live medium is partition 1 of disk
    medium_at. Returns the device names in the kernel's order."""
    root = m.squashfs({"sbin/init": m.executable(b"#!init"), "etc/os-release": "ID=test\n"})
    for i in range(n):
        name = "sd" + "abcdefghijklmnop"[i]
        if i == medium_at:
            first = m.filesystem("vfat", label="MPLIVE", files={"live/filesystem.squashfs": root})
        else:
            first = m.filesystem("ext4", label="D%d" % i)
        m.add_disk(name, [m.partition(first), m.partition(m.filesystem("vfat", label="V%d" % i))])


def _boot_counting(m, monkeypatch):
    from mpinit_agent import probe

    seen = []
    real = probe.probe
    monkeypatch.setattr(probe, "probe", lambda path, *a, **k: seen.append(getattr(path, "name", path))
                        or real(path, *a, **k))
    blockdev.forget()
    r = m.boot()
    return r, [p for p in seen if isinstance(p, str) and p.startswith("/dev/")]


def test_boot_takes_the_match_before_later_devices_are_probed(fake_machine, monkeypatch):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE quiet")
    _jbod(m, 8, medium_at=1)
    r, seen = _boot_counting(m, monkeypatch)
    assert r.handed_off, r.console
    assert len(seen) == len(set(seen))                    # nothing probed twice in the whole boot
    # Disks first in scan order, then partitions up to sdb1: the partitions of sdc..sdh are never read.
    assert "/dev/sdb1" in seen and not [p for p in seen if p[-1] in "12" and p[7] in "cdefgh"]


def test_boot_probes_each_device_at_most_once_with_the_medium_last(fake_machine, monkeypatch):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE quiet")
    _jbod(m, 8, medium_at=7)
    r, seen = _boot_counting(m, monkeypatch)
    assert r.handed_off, r.console
    # Every disk and partition, each once, up to the match: sdh2 comes after sdh1 in scan order and is never read.
    assert len(seen) == len(set(seen)) == 8 * 3 - 1 and "/dev/sdh2" not in seen



def test_make_links_after_the_link_directory_went_away(rec, fs):
    # The directories are made once per boot; a user who removed /dev/disk in the rescue shell gets them back.
    import shutil

    mbr_disk(fs)
    devs = blockdev.scan()
    blockdev.make_links(devs)
    assert os.readlink("/dev/disk/by-label/BOOT") == "../../sda1"
    shutil.rmtree("/dev/disk")
    blockdev._linked.pop("/dev/disk/by-label/BOOT")
    assert blockdev.make_links(devs) == 1
    assert os.readlink("/dev/disk/by-label/BOOT") == "../../sda1"


def test_a_search_queues_the_reads_of_the_devices_ahead_and_closes_what_it_opened(rec, fs):
    many_disks(fs, 4)
    devs = blockdev.scan()
    from mpinit_agent import probe

    assert blockdev.find("LABEL=DATA1", devs).name == "sdb2"
    queued = [c for c in rec.calls if c[0] == "readahead"]
    # Every device up to the match had its probe's first reads queued, the disks' whole probe.reads() each.
    order = [d.name for d in devs]
    upto = order[:order.index("sdb2") + 1]
    fds = sorted(set(c[1] for c in queued))
    heads = [c for c in queued if c[2] == 0]   # each device's first range is its head window
    assert len(upto) <= len(heads) <= len(upto) + 3   # at most _AHEAD - 1 past the match
    sda = devs[0]
    assert [(c[2], c[3]) for c in queued[:len(probe.reads(sda.size))]] == list(probe.reads(sda.size))
    # Nothing stays open after the search (the devices ahead of the match that no probe took included), and the
    # devices read ahead but not probed are still unprobed.
    assert blockdev._ahead == {}
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)
    assert not devs[order.index("sdd2")].probed()


def test_the_probe_of_a_device_read_ahead_is_the_same(rec, fs):
    many_disks(fs, 2)
    plain = [dict(d.info) for d in blockdev.scan()]
    blockdev.forget()
    devs = blockdev.scan()
    for i in range(len(devs)):
        blockdev.read_ahead(devs, i)
        assert devs[i].info == plain[i]
    blockdev.drop_ahead()


def test_scan_takes_the_announced_uevent_fields_instead_of_reading_sysfs(rec, fs, monkeypatch):
    mbr_disk(fs)
    from mpinit_agent import fsutil

    reads = []
    real = fsutil.read_text
    monkeypatch.setattr(fsutil, "read_text", lambda path, *a: reads.append(path) or real(path, *a))
    announced = {"sda1": {"ACTION": "add", "MAJOR": "8", "MINOR": "1", "DEVNAME": "sda1", "DEVTYPE": "partition",
                          "PARTN": "1"}}
    devs = blockdev.scan(announced)
    assert [(d.name, d.devno, d.is_partition, d.partn) for d in devs] == [("sda", (8, 0), False, None),
                                                                         ("sda1", (8, 1), True, 1)]
    assert "/sys/class/block/sda/uevent" in reads and "/sys/class/block/sda1/uevent" not in reads
    # Sizes are read when asked: the scan read none, the probe of sda1 reads its own.
    assert not [p for p in reads if p.endswith("/size")]
    assert devs[1].size == 1 << 20 and reads[-1] == "/sys/class/block/sda1/size"


def test_boot_reads_ahead_and_leaves_no_device_open(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE quiet")
    _jbod(m, 4, medium_at=3)
    r = m.boot()
    assert r.handed_off, r.console
    queued = r.calls_to("readahead")
    assert queued and all(off >= 0 and n > 0 for _fd, off, n in queued)
    # Nothing the search opened reached the real init: every device fd was closed before the hand-off.
    assert blockdev._ahead == {}
