"""Test media for the end-to-end boots and the demo, built with real tools and no root privileges.

Every medium is a raw image given to QEMU as a virtio disk. Filesystems are made in a partition-sized image file
(mkfs.vfat + mtools, mkfs.ext4 -d, xorriso, mksquashfs), the partition table with sgdisk/sfdisk on the disk
file, and the filesystem is then written into the disk at the partition's offset here in Python: no loop
mounts. All identifiers (UUIDs, labels, PARTUUIDs, volume ids) are fixed, so scenarios can name them.

Media are cached under build/e2e/<digest>/, where the digest hashes everything they are made from (busybox, the
live root's init script, this module and liveroot.py): change any of it and the next run rebuilds. Each file is
made under a temporary name and renamed into place, so an interrupted build leaves nothing half-written.

    ensure("gpt-vfat") -> Medium(path=..., label="MPLIVE", ...)
"""

import hashlib
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from . import fat, liveimage, liveroot
from .paths import build_dir
from .runner import ToolError, find_tool, run

MIB = 1024 * 1024
SECTOR = 512
PART_START = 2048  # sectors: the 1 MiB alignment sgdisk and sfdisk use by default

# Fixed identifiers: the scenarios' kernel parameters name these.
VFAT_LABEL = "MPLIVE"
VFAT_VOLID = "4D504C56"                        # blkid shows it as UUID=4D50-4C56
VFAT_UUID = "4D50-4C56"
GPT_DISK_GUID = "6D70696E-6974-4449-534B-000000000001"
GPT_PARTUUID = "6d70696e-6974-4c49-5645-000000000001"   # lower case, as blkid and /dev/disk/by-partuuid show it
GPT_PARTLABEL = "MPLIVE-PART"
MBR_DISK_ID = "0x4d504d42"
MBR_PARTUUID = "4d504d42-01"
EXT4_LABEL = "MPEXT"
EXT4_UUID = "6d70696e-6974-4558-5434-000000000001"
ISO_LABEL = "MPLIVE_ISO"
ISO_DATE = "2025010100000000"                  # xorriso --modification-date: blkid UUID 2025-01-01-00-00-00-00
ISO_UUID = "2025-01-01-00-00-00-00"
ISOHOST_LABEL = "MPISOHOST"
ISOHOST_UUID = "6d70696e-6974-4953-4f48-000000000001"
ISO_FILE = "/images/mplive.iso"               # img_loop= path inside the host partition
ROOT_LABEL = "MPROOT"
ROOT_UUID = "6d70696e-6974-524f-4f54-000000000001"

LIVE_DIR = "live"
LIVE_IMAGE = "filesystem.squashfs"
BIG_FILE_MB = 160   # the low-memory medium's image: more than a 192 MB guest can copy to RAM

# Offset in the squashfs superblock of the inode table's start (squashfs_fs.h, struct squashfs_super_block:
# s_magic .. fragment_table_start; inode_table_start is the 64-bit field at byte 64).
_SQFS_INODE_TABLE_OFFSET = 64


@dataclass(frozen=True)
class Medium:
    name: str
    path: Path              # the disk image file
    description: str
    fstype: str | None      # filesystem the agent mounts (of the partition, or of the whole disk)
    label: str | None = None
    uuid: str | None = None
    partuuid: str | None = None
    partlabel: str | None = None
    device: str = "/dev/vda"   # the device holding that filesystem when this is the first disk
    image: str | None = None   # where the live image sits in it


def _digest():
    h = hashlib.sha256(liveroot.inputs_digest().encode())
    for mod in (__file__, liveroot.__file__):
        h.update(Path(mod).read_bytes())
    return h.hexdigest()[:16]


def cache_dir(cache=None):
    """build/e2e/<digest>: created on first use; older digests' directories are removed."""
    base = Path(cache) if cache else build_dir() / "e2e"
    d = base / _digest()
    if not d.is_dir():
        base.mkdir(parents=True, exist_ok=True)
        for old in base.iterdir():
            # Another digest's media: stale, unless touched in the last 10 minutes (a concurrent run of a
            # different checkout state may be using them).
            if (old.is_dir() and old.name != d.name and len(old.name) == 16
                    and time.time() - old.stat().st_mtime > 600):
                shutil.rmtree(old, ignore_errors=True)
        d.mkdir()
    return d


def _tmp(path):
    """A temporary name beside `path`, private to this process (two test runs may build the same cache)."""
    path = Path(path)
    tmp = path.with_name(".%s.%d.tmp" % (path.name, os.getpid()))
    if tmp.is_dir():
        shutil.rmtree(tmp)
    elif tmp.exists():
        tmp.unlink()
    return tmp


def _once(path, make):
    """Build `path` with make(tmp) unless it exists; rename into place only when make succeeded."""
    path = Path(path)
    if path.exists():
        return path
    tmp = _tmp(path)
    try:
        make(tmp)
        if not path.exists():   # another process may have finished the same file meanwhile: keep theirs
            tmp.rename(path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
    return path


# --- building blocks ---------------------------------------------------------------------------------------

def _tree(d, name):
    def make(tmp):
        if name == "root":
            liveroot.build_tree(tmp)
        elif name == "root-noinit":
            liveroot.build_tree(tmp, init=False, applets=False)
        elif name == "root-big":
            # Random bytes do not compress and squashfs cannot deduplicate them: the image really is this big.
            data = random.Random(1).randbytes(BIG_FILE_MB * MIB)
            liveroot.build_tree(tmp, extra_files={"var/ballast.bin": data})
        else:
            raise ValueError(name)
    return _once(d / ("tree-" + name), make)


def squashfs(d, which="root"):
    """The live image for a root variant ("root", "root-noinit", "root-big", "corrupt"); returns its path."""
    if which == "corrupt":
        good = squashfs(d, "root")

        def corrupt(tmp):
            data = bytearray(good.read_bytes())
            start = int.from_bytes(data[_SQFS_INODE_TABLE_OFFSET:_SQFS_INODE_TABLE_OFFSET + 8], "little")
            if not 96 <= start < len(data):
                raise ToolError("%s: inode table offset %d out of range" % (good, start))
            # The superblock stays valid (it is still recognised as squashfs); the inode table, root inode
            # included, becomes garbage, as after a bad download.
            end = min(len(data), start + 4096)
            data[start:end] = b"\xa5" * (end - start)
            tmp.write_bytes(bytes(data))
        return _once(d / "corrupt.squashfs", corrupt)
    out = d / (which + ".squashfs")
    if out.exists():
        return out
    tree = _tree(d, which)
    _once(out, lambda tmp: liveroot.make_squashfs(tree, tmp, compress_data=(which != "root-big")))
    if which == "root-big":
        shutil.rmtree(tree, ignore_errors=True)  # 160 MB of ballast: the image is all we need
    return out


def _write_at(disk, offset, part_image):
    """Copy part_image into disk at offset, skipping all-zero blocks (the disk file stays sparse)."""
    block = MIB
    zero = bytes(block)
    with open(part_image, "rb") as src, open(disk, "r+b") as dst:
        pos = offset
        while True:
            data = src.read(block)
            if not data:
                break
            if data != zero[:len(data)]:
                dst.seek(pos)
                dst.write(data)
            pos += len(data)


def _mib_for(nbytes, extra_mib, minimum_mib):
    return max(minimum_mib, (nbytes + MIB - 1) // MIB + extra_mib)


def _vfat_image(out, files, size_mib):
    """A FAT32 filesystem image labelled MPLIVE holding files {path on FAT: host file}."""
    with open(out, "wb") as f:
        f.truncate(size_mib * MIB)
    # -s 1: one sector per cluster keeps a small image above FAT32's 65525-cluster minimum.
    run([find_tool("mkfs.vfat", "dosfstools"), "-F", "32", "-s", "1", "-n", VFAT_LABEL, "-i", VFAT_VOLID, out],
        capture=True)
    fat.mkdirs(out, 0, sorted({str(Path(p).parent) for p in files} - {"/", "."}))
    for dest, src in files.items():
        fat.copy_in(out, 0, src, dest)


def _ext4_image(out, tree, size_mib, label, uuid):
    """An ext4 filesystem image of directory `tree` (mkfs.ext4 -d: no mount needed)."""
    with open(out, "wb") as f:
        f.truncate(size_mib * MIB)
    run([find_tool("mkfs.ext4", "e2fsprogs"), "-q", "-F", "-L", label, "-U", uuid, "-E", "root_owner=0:0",
         "-d", tree, out], capture=True)


def _staging(d, name, files):
    """A directory {relative path: host file} for mkfs -d / xorriso (hard links when possible)."""
    stage = d / ("stage-" + name)
    if stage.exists():
        shutil.rmtree(stage)
    for rel, src in files.items():
        dst = stage / rel.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
    return stage


def _live_files(image, sha_of=None, bad_sum=False):
    """The medium's files: /live/filesystem.squashfs and its .sha256 (of sha_of, default the image itself)."""
    sumtext = liveimage.sha256_line(sha_of or image, LIVE_IMAGE)
    if bad_sum:
        sumtext = ("0" * 64) + sumtext[64:]
    sumfile = Path(str(image) + (".badsum" if bad_sum else "") + ".sha256")
    if not sumfile.exists() or sumfile.read_text() != sumtext:
        sumfile.write_text(sumtext)
    return {"/%s/%s" % (LIVE_DIR, LIVE_IMAGE): image, "/%s/%s.sha256" % (LIVE_DIR, LIVE_IMAGE): sumfile}


def _gpt_disk(tmp, part_image, partlabel=GPT_PARTLABEL, type_code="0700"):
    size = Path(part_image).stat().st_size
    sectors = size // SECTOR
    with open(tmp, "wb") as f:
        f.truncate(PART_START * SECTOR + size + MIB)   # + room for the backup GPT (33 sectors)
    run([find_tool("sgdisk", "gdisk"), "-o", "-U", GPT_DISK_GUID,
         "-n", "1:%d:%d" % (PART_START, PART_START + sectors - 1), "-t", "1:" + type_code,
         "-c", "1:" + partlabel, "-u", "1:" + GPT_PARTUUID, tmp], capture=True)
    _write_at(tmp, PART_START * SECTOR, part_image)


def _mbr_disk(tmp, part_image, type_hex="83"):
    size = Path(part_image).stat().st_size
    with open(tmp, "wb") as f:
        f.truncate(PART_START * SECTOR + size)
    script = "label: dos\nlabel-id: %s\nstart=%d, size=%d, type=%s\n" % (MBR_DISK_ID, PART_START,
                                                                        size // SECTOR, type_hex)
    run([find_tool("sfdisk", "fdisk"), "--no-reread", "--no-tell-kernel", "-q", tmp], input=script.encode(),
        capture=True)
    _write_at(tmp, PART_START * SECTOR, part_image)


def _iso(tmp, stage, volid=ISO_LABEL):
    run([find_tool("xorriso", "xorriso"), "-as", "mkisofs", "-quiet", "-o", tmp, "-V", volid, "-R", "-J",
         "--modification-date=" + ISO_DATE, stage], capture=True)


# --- the media ---------------------------------------------------------------------------------------------

def _gpt_vfat_builder(variant):
    def build(d, tmp):
        which = {"": "root", "-noinit": "root-noinit", "-big": "root-big", "-corrupt": "corrupt",
                 "-badsum": "root"}[variant]
        image = squashfs(d, which)
        files = _live_files(image, sha_of=squashfs(d, "root") if variant == "-corrupt" else None,
                            bad_sum=(variant == "-badsum"))
        part = _tmp(d / ("part-vfat%s.img" % variant))
        try:
            _vfat_image(part, files, _mib_for(image.stat().st_size, 8, 40))
            _gpt_disk(tmp, part)
        finally:
            part.unlink(missing_ok=True)
    return build


def _mbr_ext4(d, tmp):
    image = squashfs(d, "root")
    stage = _staging(d, "mbr-ext4", _live_files(image))
    part = _tmp(d / "part-ext4.img")
    try:
        _ext4_image(part, stage, _mib_for(image.stat().st_size, 16, 32), EXT4_LABEL, EXT4_UUID)
        _mbr_disk(tmp, part)
    finally:
        part.unlink(missing_ok=True)
        shutil.rmtree(stage, ignore_errors=True)


def _iso_medium(d, tmp):
    stage = _staging(d, "iso", _live_files(squashfs(d, "root")))
    try:
        _iso(tmp, stage)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _squashfs_disk(d, tmp):
    shutil.copyfile(squashfs(d, "root"), tmp)


def _iso_in_ext4(d, tmp):
    iso = d / "inner.iso"
    _once(iso, lambda t: _iso_medium(d, t))
    stage = _staging(d, "iso-in-ext4", {ISO_FILE: iso})
    part = _tmp(d / "part-isohost.img")
    try:
        _ext4_image(part, stage, _mib_for(iso.stat().st_size, 16, 32), ISOHOST_LABEL, ISOHOST_UUID)
        _mbr_disk(tmp, part)
    finally:
        part.unlink(missing_ok=True)
        shutil.rmtree(stage, ignore_errors=True)


def _ext4_root(d, tmp):
    tree = _tree(d, "root")
    # The whole disk is the filesystem (no partition table): root=UUID=... names it directly.
    _ext4_image(tmp, tree, 32, ROOT_LABEL, ROOT_UUID)


_GPT = dict(fstype="vfat", label=VFAT_LABEL, uuid=VFAT_UUID, partuuid=GPT_PARTUUID, partlabel=GPT_PARTLABEL,
            device="/dev/vda1", image="/%s/%s" % (LIVE_DIR, LIVE_IMAGE))

# name -> (builder(cache dir, temporary output path), Medium fields except name and path)
MEDIA = {
    "gpt-vfat": (_gpt_vfat_builder(""), dict(_GPT, description="GPT disk, FAT32 partition MPLIVE with the live "
                                                               "image and its .sha256")),
    "gpt-vfat-badsum": (_gpt_vfat_builder("-badsum"), dict(_GPT, description="as gpt-vfat, .sha256 wrong")),
    "gpt-vfat-corrupt": (_gpt_vfat_builder("-corrupt"),
                         dict(_GPT, description="as gpt-vfat, the squashfs inode table overwritten "
                                                "(.sha256 is the good image's)")),
    "gpt-vfat-noinit": (_gpt_vfat_builder("-noinit"),
                        dict(_GPT, description="as gpt-vfat, the image has no /sbin/init and no /bin/sh")),
    "gpt-vfat-big": (_gpt_vfat_builder("-big"),
                     dict(_GPT, description="as gpt-vfat, a %d MB image (too big to copy to RAM in a "
                                            "192 MB guest)" % BIG_FILE_MB)),
    "mbr-ext4": (_mbr_ext4, dict(fstype="ext4", label=EXT4_LABEL, uuid=EXT4_UUID, partuuid=MBR_PARTUUID,
                                 device="/dev/vda1", image="/%s/%s" % (LIVE_DIR, LIVE_IMAGE),
                                 description="MBR disk, ext4 partition MPEXT with the live image")),
    "iso": (_iso_medium, dict(fstype="iso9660", label=ISO_LABEL, uuid=ISO_UUID, device="/dev/vda",
                              image="/%s/%s" % (LIVE_DIR, LIVE_IMAGE),
                              description="iso9660 image (xorriso) MPLIVE_ISO with the live image")),
    "squashfs-disk": (_squashfs_disk, dict(fstype="squashfs", device="/dev/vda",
                                           description="the live squashfs as the whole disk")),
    "iso-in-ext4": (_iso_in_ext4, dict(fstype="ext4", label=ISOHOST_LABEL, uuid=ISOHOST_UUID,
                                       partuuid=MBR_PARTUUID, device="/dev/vda1", image=ISO_FILE,
                                       description="MBR disk, ext4 partition holding %s, which holds the "
                                                   "live image" % ISO_FILE)),
    "ext4-root": (_ext4_root, dict(fstype="ext4", label=ROOT_LABEL, uuid=ROOT_UUID, device="/dev/vda",
                                   description="the busybox root itself as a whole-disk ext4 filesystem")),
}


def ensure(name, cache=None):
    """The medium `name` (one of MEDIA), built if its cached file is missing or its inputs changed."""
    if name not in MEDIA:
        raise ToolError("unknown test medium %r (known: %s)" % (name, ", ".join(sorted(MEDIA))))
    builder, fields = MEDIA[name]
    d = cache_dir(cache)
    path = _once(d / (name + ".img"), lambda tmp: builder(d, tmp))
    return Medium(name=name, path=path, **fields)
