"""Persistence volumes for live media: an ext2/3/4 filesystem image holding live-boot's `persistence.conf` with
`/ union`, made by `mkfs.ext4 -d` on an image FILE (no loop device, no mount, no root).

    make_image(out, size, label, fs)         a persistence image file (`mpinit persistence-file`)
    append_partition(disk, spec, workdir)    a second MBR partition holding one (`mpinit live-image --persistence`)

The agent finds either one with the live-boot convention (`persistence`, label `persistence` by default;
docs/agent.md): a partition by its filesystem label, a file by its name in the root of the medium.
"""

import re
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_path, check_output
from .runner import find_tool, run

MIB = 1024 * 1024
SECTOR = 512
MIN_SIZE = 8 * MIB            # room for ext4's metadata and journal with a few MiB to spare
MAX_SIZE = 16 * 1024 ** 4     # 16 TiB: ext4 with 4 KiB blocks and no 64bit feature stops here
DEFAULT_LABEL = "persistence"   # live-boot's default persistence-label
FILESYSTEMS = ("ext4", "ext3", "ext2")
CONF = "/ union\n"            # persistence.conf(5): the whole root is persistent
MBR_TYPE_LINUX = 0x83
_SIZE_RE = re.compile(r"^([0-9]+)([KMGT]?)(i?B)?$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": MIB, "G": 1024 ** 3, "T": 1024 ** 4}


class PersistenceError(Exception):
    """Bad input for a persistence volume; the message names it."""


@dataclass(frozen=True)
class Spec:
    size: int
    label: str = DEFAULT_LABEL
    fs: str = "ext4"


def parse_size(text, what="--size"):
    """'512M', '2G', '1GiB', '300MB' (binary units; a bare number is bytes) -> bytes, rounded down to whole MiB
    so that a partition stays aligned. PersistenceError names the input."""
    m = _SIZE_RE.match((text or "").strip())
    if not m:
        raise PersistenceError("%s %r: want a size such as 512M, 2G or 1GiB" % (what, text))
    size = int(m.group(1)) * _UNITS[m.group(2).upper()] // MIB * MIB
    if size < MIN_SIZE:
        raise PersistenceError("%s %r: at least %d MiB (ext4 needs room for its metadata and journal)"
                               % (what, text, MIN_SIZE // MIB))
    if size > MAX_SIZE:
        raise PersistenceError("%s %r: at most 16 TiB" % (what, text))
    return size


def check_label(label, what="--label"):
    """An ext2/3/4 volume label: 1-16 bytes (struct ext4_super_block s_volume_name[16]), printable, no '/' or
    ',' (it is spelled in persistence-label= lists)."""
    raw = (label or "").encode("utf-8", "replace")
    if not 1 <= len(raw) <= 16:
        raise PersistenceError("%s %r: an ext4 label is 1 to 16 bytes" % (what, label))
    for c in label:
        if c < " " or c in "/,=\x7f" or c.isspace():
            raise PersistenceError("%s %r: no spaces, control characters, '/', ',' or '='" % (what, label))
    return label


def check_fs(fs, what="--fs"):
    if fs not in FILESYSTEMS:
        raise PersistenceError("%s %r: one of %s (an overlay upper layer needs xattrs; FAT cannot hold one)"
                               % (what, fs, ", ".join(FILESYSTEMS)))
    return fs


def parse_spec(text):
    """live-image's --persistence SIZE[,label=L][,fs=ext4] -> Spec."""
    parts = (text or "").split(",")
    size = parse_size(parts[0], "--persistence")
    label, fs = DEFAULT_LABEL, "ext4"
    for p in parts[1:]:
        key, eq, value = p.partition("=")
        if key == "label" and eq:
            label = value
        elif key == "fs" and eq:
            fs = value
        else:
            raise PersistenceError("--persistence %r: unknown item %r (want SIZE[,label=L][,fs=ext4])" % (text, p))
    return Spec(size, check_label(label, "--persistence label="), check_fs(fs, "--persistence fs="))


def mkfs(out, spec, workdir):
    """Make the filesystem in the (new, sparse) file `out` with persistence.conf in its root."""
    stage = Path(workdir) / "persistence-root"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    (stage / "persistence.conf").write_text(CONF)
    with open(out, "wb") as f:
        f.truncate(spec.size)
    # -d: populate from a directory without mounting (e2fsprogs >= 1.43); root_owner: files owned by root whoever
    # runs this; -m 0: no reserved blocks (the live system runs as root anyway, and a stick is small).
    run([find_tool("mkfs." + spec.fs, "e2fsprogs"), "-q", "-F", "-L", spec.label, "-m", "0",
         "-E", "root_owner=0:0", "-d", stage, out], capture=True)
    shutil.rmtree(stage)


def make_image(out, size, label=DEFAULT_LABEL, fs="ext4", force=False):
    """`mpinit persistence-file`: write the image file atomically; refuses an existing output unless force."""
    out = Path(out)
    spec = Spec(size, check_label(label), check_fs(fs))
    check_output(out, PersistenceError)
    if out.exists() and not force:
        raise PersistenceError("-o %s: already exists (it may hold someone's saved changes); remove it first"
                               % out)
    with tempfile.TemporaryDirectory(prefix=".mpinit-persist.", dir=out.parent) as td:
        with atomic_path(out) as tmp:
            mkfs(tmp, spec, td)
    return spec


def mbr_entry(start_lba, sectors, ptype=MBR_TYPE_LINUX):
    """A 16-byte MBR partition entry, not active (CHS from liveimage.chs)."""
    from .liveimage import chs

    return (b"\x00" + chs(start_lba) + bytes((ptype,)) + chs(start_lba + sectors - 1)
            + struct.pack("<II", start_lba, sectors))


def append_partition(disk, spec, workdir, index=2):
    """Grow the disk image file by a MiB-aligned partition holding a persistence filesystem and add it as MBR
    entry `index` (1-4). Returns (start, size) in bytes."""
    from .media import _write_at

    disk = Path(disk)
    end = disk.stat().st_size
    start = (end + MIB - 1) // MIB * MIB
    with open(disk, "r+b") as f:
        f.seek(446 + 16 * (index - 1))
        if f.read(16) != bytes(16):
            raise PersistenceError("%s: MBR entry %d is already used" % (disk, index))
    part = Path(workdir) / "persistence.img"
    mkfs(part, spec, workdir)
    with open(disk, "r+b") as f:
        f.truncate(start + spec.size)
    _write_at(disk, start, part)
    part.unlink()
    with open(disk, "r+b") as f:
        f.seek(446 + 16 * (index - 1))
        f.write(mbr_entry(start // SECTOR, spec.size // SECTOR))
    return start, spec.size
