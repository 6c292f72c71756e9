"""mpinit_agent.medium: finding the medium (by spec, or by scanning removable devices first), each image form
(squashfs file in the three layouts, whole-device squashfs, iso9660 medium, ISO file on a partition), the
image check and checksum=y. blockdev is replaced by a stand-in here; whole boots are in test_main.py."""

import hashlib
import os
import struct
import sys


import pytest

from agent_stub import StubSys
from mpinit_agent import cmdline, contract, syscalls as abi, main, medium
from mpinit_agent.failure import BootError


# A squashfs 4.0 superblock, enough for probe; padded to mksquashfs' 4 KiB minimum (blkid, and so the probe,
# ignores anything of 1 KiB or less).
SQ = (b"hsqs" + b"\0" * 24 + struct.pack("<HH", 4, 0)).ljust(4096, b"\0")
M = contract.MEDIUM_MOUNT


class Dev:
    def __init__(self, name, removable=False, size=0, **info):
        self.name = name
        self.path = "/dev/" + name
        self.removable = removable
        self.size = size
        self.info = info


class MediaSys(StubSys):
    """Mounting a device shows the files given for it (device path -> {relative path: bytes})."""

    def __init__(self, fs, contents, **kw):
        StubSys.__init__(self, fs, **kw)
        self.contents = contents

    def mount(self, source, target, fstype, flags=0, data=None):
        StubSys.mount(self, source, target, fstype, flags, data)
        for rel, data_ in self.contents.get(source, {}).items():
            self.fs.create_file(target + "/" + rel, contents=data_)

    def umount(self, target, flags=0):
        StubSys.umount(self, target, flags)
        for name in os.listdir(target):
            p = target + "/" + name
            self.fs.remove_object(p)

    def loop_attach(self, path, offset=0, sizelimit=0, read_only=True, autoclear=True):
        dev = StubSys.loop_attach(self, path, offset, sizelimit, read_only, autoclear)
        self.contents[dev] = self.contents.get(path, {})
        return dev


@pytest.fixture
def blockdev(monkeypatch):
    import mpinit_agent

    import types

    mod = types.ModuleType("mpinit_agent.blockdev")
    mod.devices = []

    def find(spec, devices):
        for d in devices:
            if d.path == spec:
                return d
            key, _, value = spec.partition("=")
            if key == "CDLABEL":
                key = "LABEL"
            if value and d.info.get(key) == value:
                return d
        return None

    mod.find = find
    mod.scan = lambda announced=None: list(mod.devices)
    mod.search = lambda devices, want, every=False: [d for d in devices if want(d)] if every else next(
        (d for d in devices if want(d)), None)
    mod.ensure_node = lambda d: None
    mod.node_errors = []
    mod.make_links = lambda devices, only_probed=False: None
    mod.describe = lambda devices: ["%s TYPE=%s LABEL=%s" % (d.path, d.info.get("TYPE"), d.info.get("LABEL"))
                                    for d in devices]
    monkeypatch.setitem(sys.modules, "mpinit_agent.blockdev", mod)
    monkeypatch.setattr(mpinit_agent, "blockdev", mod, raising=False)
    return mod


def ctx_for(line, devices):
    ctx = main.Context()
    ctx.opts = cmdline.parse(line)
    ctx.devices = list(devices)
    return ctx


# ---- pure helpers

def test_scan_order_removable_first_and_only_mountable(blockdev):
    a = Dev("sda1", TYPE="ext4")
    b = Dev("sdb1", removable=True, TYPE="vfat")
    c = Dev("sda2", TYPE="swap")
    d = Dev("sr0", removable=True, TYPE="iso9660")
    assert [x.name for x in medium.scan_order([a, b, c, d])] == ["sdb1", "sr0", "sda1"]


def test_is_optical():
    assert medium.is_optical(Dev("sr0")) and not medium.is_optical(Dev("sda"))


def test_checksum_files():
    assert medium.checksum_files("/m/arch/x86_64/airootfs.sfs") == [
        "/m/arch/x86_64/airootfs.sfs.sha256", "/m/arch/x86_64/airootfs.sfs.sha512",
        "/m/arch/x86_64/airootfs.sha256", "/m/arch/x86_64/airootfs.sha512"]


def test_parse_checksum():
    assert medium.parse_checksum("ABCdef01  filesystem.squashfs\n", "f") == "abcdef01"
    with pytest.raises(ValueError, match="not a hex digest"):
        medium.parse_checksum("xyz file", "f.sha256")
    with pytest.raises(ValueError, match="empty"):
        medium.parse_checksum("\n", "f.sha256")


def test_file_digest_streams_the_whole_file(fs):
    data = os.urandom(3 * (1 << 20) + 17)
    fs.create_file("/img", contents=data)
    assert medium.file_digest("/img", "sha256") == hashlib.sha256(data).hexdigest()
    assert medium.file_digest("/img", "sha512") == hashlib.sha512(data).hexdigest()


def test_verify_checksum(fs):
    fs.create_file("/m/a.sfs", contents=SQ)
    with pytest.raises(BootError, match="no checksum file") as ei:
        medium.verify_checksum("/m/a.sfs")
    assert ei.value.param == "checksum=y" and "/m/a.sfs.sha256" in ei.value.tried
    fs.create_file("/m/a.sha512", contents=hashlib.sha512(SQ).hexdigest() + "  a.sfs\n")
    assert medium.verify_checksum("/m/a.sfs") == "sha512 ok"
    fs.create_file("/m/a.sfs.sha256", contents="00" * 32)
    with pytest.raises(BootError, match="checksum mismatch") as ei:
        medium.verify_checksum("/m/a.sfs")
    assert ei.value.seen[1] == "computed " + hashlib.sha256(SQ).hexdigest()


# ---- the stage

def run(fs, line, devices, contents, blockdev, **kw):
    blockdev.devices = devices
    ctx = ctx_for(line, devices)
    with MediaSys(fs, contents, **kw) as s:
        result = medium.run(ctx)
    return ctx, result, s


def test_named_medium_with_default_layout(fs, blockdev):
    stick = Dev("sdb1", removable=True, TYPE="vfat", LABEL="LIVE")
    ctx, result, s = run(fs, "root=live:LABEL=LIVE", [Dev("sda1", TYPE="ext4"), stick],
                         {"/dev/sdb1": {"live/filesystem.squashfs": SQ}}, blockdev)
    assert s.mounts == [("/dev/sdb1", M, "vfat", abi.MS_RDONLY, None)]
    assert ctx.image == M + "/live/filesystem.squashfs" and ctx.image_size == len(SQ)
    assert ctx.medium == M and ctx.medium_dev is stick and not ctx.optical
    assert result.startswith(M + "/live/filesystem.squashfs on /dev/sdb1")


@pytest.mark.parametrize("line, rel", [
    ("root=live:CDLABEL=FEDORA rd.live.image", "LiveOS/squashfs.img"),
    ("archisobasedir=arch archisolabel=FEDORA", "arch/x86_64/airootfs.sfs"),
    ("root=live:LABEL=FEDORA rd.live.dir=/os rd.live.squashimg=root.sfs", "os/root.sfs"),
])
def test_other_layouts(fs, blockdev, line, rel):
    cd = Dev("sr0", removable=True, TYPE="iso9660", LABEL="FEDORA")
    ctx, _, s = run(fs, line, [cd], {"/dev/sr0": {rel: SQ}}, blockdev)
    assert ctx.image == M + "/" + rel and ctx.optical
    assert s.mounts[0][2] == "iso9660"


def test_scan_prefers_removable_devices(fs, blockdev):
    disk = Dev("sda1", TYPE="ext4")
    stick = Dev("sdc1", removable=True, TYPE="exfat")
    other = Dev("sdb1", removable=True, TYPE="vfat")
    contents = {"/dev/sda1": {"live/filesystem.squashfs": SQ}, "/dev/sdc1": {"live/filesystem.squashfs": SQ}}
    ctx, _, s = run(fs, "boot=live", [disk, other, stick], contents, blockdev)
    assert ctx.medium_dev is stick
    mounted = [c[1][0] for c in s.calls if c[0] == "mount"]
    assert mounted == ["/dev/sdb1", "/dev/sdc1"]      # sdb1 tried (no image) and unmounted, then sdc1
    assert ("umount", (M, 0)) in s.calls


def test_whole_device_squashfs(fs, blockdev):
    fs.create_file("/dev/xvda", contents=SQ)
    xvda = Dev("xvda", size=len(SQ), TYPE="squashfs")
    ctx, result, s = run(fs, "root=live:/dev/xvda", [xvda], {}, blockdev)
    assert ctx.image == "/dev/xvda" and ctx.medium is None and ctx.image_size == len(SQ)
    assert "mount" not in s.names()


def test_iso_file_on_a_partition(fs, blockdev):
    part = Dev("sda2", TYPE="ext4", LABEL="data")
    contents = {"/dev/sda2": {"isos/live.iso": b"ISO"}, M + "/isos/live.iso": {"live/filesystem.squashfs": SQ}}
    ctx, _, s = run(fs, "root=live:CDLABEL=ISO iso-scan/filename=/isos/live.iso", [part], contents, blockdev)
    assert ("loop_attach", (M + "/isos/live.iso", True, True)) in s.calls
    assert s.mounts == [("/dev/sda2", M, "ext4", abi.MS_RDONLY, None),
                        ("/dev/loop0", contract.ISO_MOUNT, "iso9660", abi.MS_RDONLY, None)]
    assert ctx.image == contract.ISO_MOUNT + "/live/filesystem.squashfs" and ctx.iso_loop == "/dev/loop0"


def test_iso_file_with_img_dev(fs, blockdev):
    part = Dev("sdb3", TYPE="vfat", UUID="1234-ABCD")
    contents = {"/dev/sdb3": {"live.iso": b"ISO"}, M + "/live.iso": {"live/filesystem.squashfs": SQ}}
    ctx, _, s = run(fs, "img_dev=UUID=1234-ABCD img_loop=live.iso", [Dev("sda1", TYPE="vfat"), part], contents,
                    blockdev)
    assert s.mounts[0][0] == "/dev/sdb3" and ctx.image.startswith(contract.ISO_MOUNT)


def test_no_medium_waits_then_lists_every_device(fs, blockdev):
    devs = [Dev("sda1", TYPE="ext4", LABEL="root")]
    blockdev.devices = devs
    ctx = ctx_for("root=live:LABEL=LIVE rootdelay=5", devs)
    with MediaSys(fs, {}) as s:
        start = s.clock
        with pytest.raises(BootError) as ei:
            medium.run(ctx)
    e = ei.value
    assert e.stage == "medium" and e.param == "root=live:LABEL=LIVE"
    assert "did not find the medium LABEL=LIVE within 5 s" in e.message
    assert e.seen == ["/dev/sda1 TYPE=ext4 LABEL=root"]
    assert s.clock - start >= 5000


def test_a_late_medium_is_found_while_waiting(fs, blockdev):
    stick = Dev("sdb1", removable=True, TYPE="vfat", LABEL="LIVE")
    blockdev.devices = []
    ctx = ctx_for("root=live:LABEL=LIVE", [])
    s = MediaSys(fs, {"/dev/sdb1": {"live/filesystem.squashfs": SQ}})
    real_sleep = s.sleep_ms

    def sleep(ms):
        real_sleep(ms)
        if s.clock > 3000:
            blockdev.devices = [stick]

    s.sleep_ms = sleep
    with s:
        medium.run(ctx)
    assert ctx.medium_dev is stick and s.clock > 3000


def test_named_medium_without_image_fails_at_once_with_a_listing(fs, blockdev):
    stick = Dev("sdb1", removable=True, TYPE="vfat", LABEL="LIVE")
    blockdev.devices = [stick]
    ctx = ctx_for("root=live:LABEL=LIVE", [stick])
    with MediaSys(fs, {"/dev/sdb1": {"boot/vmlinuz": b"k"}}) as s:
        start = s.clock
        with pytest.raises(BootError) as ei:
            medium.run(ctx)
    assert s.clock == start
    assert any("none of live/filesystem.squashfs" in t and "boot" in t for t in ei.value.tried)
    assert s.mounts == []


def test_corrupt_image_is_refused(fs, blockdev):
    stick = Dev("sdb1", removable=True, TYPE="vfat", LABEL="LIVE")
    with pytest.raises(BootError, match="is not a squashfs image"):
        run(fs, "root=live:LABEL=LIVE", [stick], {"/dev/sdb1": {"live/filesystem.squashfs": b"\0" * 4096}},
            blockdev)


def test_checksum_mismatch_fails_the_stage(fs, blockdev):
    stick = Dev("sdb1", removable=True, TYPE="vfat", LABEL="LIVE")
    contents = {"/dev/sdb1": {"live/filesystem.squashfs": SQ, "live/filesystem.squashfs.sha256": "ab" * 32}}
    with pytest.raises(BootError, match="checksum mismatch"):
        run(fs, "root=live:LABEL=LIVE checksum=y", [stick], contents, blockdev)


def test_checksum_ok(fs, blockdev):
    stick = Dev("sdb1", removable=True, TYPE="vfat", LABEL="LIVE")
    contents = {"/dev/sdb1": {"live/filesystem.squashfs": SQ,
                              "live/filesystem.squashfs.sha256": hashlib.sha256(SQ).hexdigest()}}
    _, result, _ = run(fs, "root=live:LABEL=LIVE checksum=y", [stick], contents, blockdev)
    assert result.endswith("sha256 ok")


def test_image_in_the_initramfs(fs, blockdev):
    fs.create_file("/images/root.sfs", contents=SQ)
    ctx, result, s = run(fs, "root=live:/images/root.sfs", [], {}, blockdev)
    assert ctx.image == "/images/root.sfs" and ctx.medium is None and ctx.medium_dev is None
    assert "mount" not in s.names() and result == "/images/root.sfs on initramfs"


def test_not_live_is_skipped(fs, blockdev):
    ctx, result, s = run(fs, "root=/dev/sda1", [], {}, blockdev)
    assert result.startswith("skipped") and s.calls == []


# ---- issue 13: EROFS images, ISO files on exFAT/NTFS, UDF ISOs

def _erofs(size=8192):
    """An EROFS superblock (fs/erofs/erofs_fs.h) with its CRC-32C, as mkfs.erofs writes it."""
    from mpinit_agent import probe_more

    img = bytearray(size)
    struct.pack_into("<IIIBB", img, 1024, 0xE0F5E1E2, 0, 1, 12, 0)   # magic, checksum, SB_CSUM, 4 KiB blocks
    sb = bytearray(img[1024:4096])
    struct.pack_into("<I", img, 1028, probe_more._crc32c(sb, 0xFFFFFFFF))
    return bytes(img)


EROFS = _erofs()


def test_check_image_types():
    import io

    assert medium.check_image(io.BytesIO(SQ)) == "squashfs"
    assert medium.check_image(io.BytesIO(EROFS)) == "erofs"
    with pytest.raises(BootError, match="probed TYPE=nothing"):
        medium.check_image(io.BytesIO(bytes(8192)))
    bad = bytearray(EROFS)
    bad[1024 + 64] = 1   # the volume name changes, the CRC does not
    with pytest.raises(BootError, match="not a squashfs image or an EROFS image"):
        medium.check_image(io.BytesIO(bytes(bad)))


def test_erofs_file_is_found_beside_the_default_name(fs, blockdev):
    stick = Dev("sdb1", removable=True, TYPE="vfat", LABEL="LIVE")
    ctx, result, s = run(fs, "root=live:LABEL=LIVE", [stick], {"/dev/sdb1": {"live/filesystem.erofs": EROFS}},
                         blockdev)
    assert ctx.image == M + "/live/filesystem.erofs" and ctx.image_type == "erofs"


def test_archiso_erofs_and_dracut_squashimg_pointing_at_erofs(fs, blockdev):
    cd = Dev("sr0", removable=True, TYPE="iso9660", LABEL="ARCH")
    ctx, _, _ = run(fs, "archisobasedir=arch archisolabel=ARCH", [cd],
                    {"/dev/sr0": {"arch/x86_64/airootfs.erofs": EROFS}}, blockdev)
    assert ctx.image == M + "/arch/x86_64/airootfs.erofs" and ctx.image_type == "erofs"


def test_dracut_squashimg_pointing_at_erofs(fs, blockdev):
    cd = Dev("sr0", removable=True, TYPE="iso9660", LABEL="Fedora-42")
    ctx, _, _ = run(fs, "root=live:CDLABEL=Fedora-42 rd.live.image rd.live.dir=LiveOS rd.live.squashimg=root.img",
                    [cd], {"/dev/sr0": {"LiveOS/root.img": EROFS}}, blockdev)
    assert ctx.image == M + "/LiveOS/root.img" and ctx.image_type == "erofs"


def test_whole_device_erofs(fs, blockdev):
    fs.create_file("/dev/vdb", contents=EROFS)
    vdb = Dev("vdb", size=len(EROFS), TYPE="erofs")
    ctx, _, s = run(fs, "root=live:/dev/vdb", [vdb], {}, blockdev)
    assert ctx.image == "/dev/vdb" and ctx.image_type == "erofs" and "mount" not in s.names()


def test_a_scan_finds_a_whole_device_image(fs, blockdev):
    fs.create_file("/dev/vdb", contents=EROFS)
    vdb = Dev("vdb", size=len(EROFS), TYPE="erofs")
    ctx, _, _ = run(fs, "boot=live", [Dev("vda1", TYPE="swap"), vdb], {}, blockdev)
    assert ctx.image == "/dev/vdb"


def test_ntfs_medium_is_mounted_with_the_ntfs3_driver(fs, blockdev):
    stick = Dev("sdb1", removable=True, TYPE="ntfs", LABEL="ISOS")
    contents = {"/dev/sdb1": {"isos/live.iso": b"ISO"}, M + "/isos/live.iso": {"live/filesystem.squashfs": SQ}}
    ctx, _, s = run(fs, "findiso=/isos/live.iso", [stick], contents, blockdev)
    assert s.mounts[0] == ("/dev/sdb1", M, "ntfs3", abi.MS_RDONLY, None)
    assert s.mounts[1][2] == "iso9660"


@pytest.fixture(scope="module")
def udf_iso(tmp_path_factory):
    import shutil as sh
    import subprocess

    if not sh.which("genisoimage"):
        pytest.skip("genisoimage missing (Debian package genisoimage)")
    d = tmp_path_factory.mktemp("udf")
    (d / "root").mkdir()
    subprocess.run(["genisoimage", "-quiet", "-udf", "-o", str(d / "u.iso"), str(d / "root")], check=True)
    return (d / "u.iso").read_bytes()


def test_udf_iso_file_is_mounted_as_udf(udf_iso, fs, blockdev):
    """A UDF bridge ISO (genisoimage -udf, as DVD images are) probes as udf and is mounted as udf."""
    part = Dev("sda1", TYPE="exfat", LABEL="STICK")
    contents = {"/dev/sda1": {"dvd.iso": udf_iso}, M + "/dvd.iso": {"live/filesystem.squashfs": SQ}}
    ctx, _, s = run(fs, "iso-scan/filename=/dvd.iso", [part], contents, blockdev)
    assert s.mounts[1] == ("/dev/loop0", contract.ISO_MOUNT, "udf", abi.MS_RDONLY, None)


def test_missing_iso_lists_the_iso_files_on_the_stick(fs, blockdev):
    stick = Dev("sdb1", removable=True, TYPE="exfat", LABEL="ISOS")
    contents = {"/dev/sdb1": {"isos/debian.iso": b"ISO", "isos/fedora.iso": b"ISO", "isos/notes.txt": b"",
                              "top.ISO": b"ISO", "deep/a/b/far.iso": b"ISO"}}
    devs = [stick]
    blockdev.devices = devs
    ctx = ctx_for("iso-scan/filename=/isos/arch.iso rootdelay=1", devs)
    with MediaSys(fs, contents):
        with pytest.raises(BootError) as ei:
            medium.run(ctx)
    e = ei.value
    assert "did not find the ISO file /isos/arch.iso" in e.message and e.param == "iso-scan/filename="
    line = [t for t in e.tried if "no ISO file /isos/arch.iso" in t][0]
    assert line.endswith("ISO files there: /top.ISO /isos/debian.iso /isos/fedora.iso"), line


def test_iso_files_seen_is_bounded(fs):
    for i in range(40):
        fs.create_file("/m/isos/%02d.iso" % i)
    found = medium.iso_files_seen("/m", "/isos/x.iso", limit=5)
    assert found == ["/isos/00.iso", "/isos/01.iso", "/isos/02.iso", "/isos/03.iso", "/isos/04.iso"]
