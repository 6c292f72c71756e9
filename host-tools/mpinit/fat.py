"""FAT32 inside a disk image file, through mtools: no root, no loop device.

mtools addresses a filesystem at a byte offset of an image file as `-i IMAGE@@OFFSET`; MTOOLS_SKIP_CHECK=1 keeps
it from refusing geometry it does not like (ours is a disk image, not a floppy). Partition tables are not
mtools' business here: the caller writes the MBR (liveimage.py) and passes the partition's offset.
"""

import os
import re

from .runner import find_tool, run

SECTOR = 512
# FAT32 needs at least 65525 clusters (Microsoft's FAT specification, "FAT type determination"); with 512-byte
# clusters that is just over 32 MiB, so no FAT32 volume we make is smaller than this.
MIN_FAT32_BYTES = 34 * 1024 * 1024

_LABEL_RE = re.compile(r"^[A-Z0-9_-]{1,11}$")


class FatError(Exception):
    """Bad input for a FAT operation; the message names it."""


def check_label(label):
    """A FAT volume label we accept: 1-11 of A-Z 0-9 _ - (FAT stores labels in upper case, 11 bytes; allowing
    exactly what blkid will report back keeps `root=live:LABEL=` matching)."""
    if not _LABEL_RE.match(label or ""):
        raise FatError("--label %r: a FAT label is 1 to 11 characters of A-Z, 0-9, '_' or '-' (upper case)"
                       % label)
    return label


def _env():
    env = dict(os.environ)
    env["MTOOLS_SKIP_CHECK"] = "1"
    env.pop("MTOOLSRC", None)
    return env


def _drive(image, offset):
    return "%s@@%d" % (image, offset)


def mtool(name, *args, image, offset, capture=False, echo=True):
    tool = find_tool(name, "mtools")
    return run([tool, "-i", _drive(image, offset)] + list(args), env=_env(), capture=capture, echo=echo)


def mkfs(image, offset, size, label, hidden_sectors, serial=None, fat32=True):
    """A FAT32 filesystem of `size` bytes at `offset`; hidden_sectors (the partition's start LBA) goes into the
    boot sector, where SYSLINUX reads it to find its own sectors on the disk. serial: the 32-bit volume serial
    number (blkid's UUID "XXXX-XXXX"; mformat picks a random one when None). fat32=False: let mformat pick FAT12
    or FAT16 by size (small images such as an El Torito EFI boot image)."""
    if offset % SECTOR or size % SECTOR:
        raise FatError("FAT at offset %d size %d: not whole sectors" % (offset, size))
    if fat32 and size < MIN_FAT32_BYTES:
        raise FatError("FAT32 of %d bytes: below the FAT32 minimum of %d" % (size, MIN_FAT32_BYTES))
    check_label(label)
    # -F: FAT32. -T: total sectors. -h/-s: the usual LBA-translated geometry (255 heads, 63 sectors).
    extra = ["-N", "%08x" % serial] if serial is not None else []
    if fat32:
        extra.append("-F")
    mtool("mformat", "-T", str(size // SECTOR), "-h", "255", "-s", "63", "-H", str(hidden_sectors),
          "-v", label, *extra, "::", image=image, offset=offset)


def mkdirs(image, offset, dirs):
    """Make directories (parents first, each given as "/a/b")."""
    made = set()
    for d in dirs:
        parts = [p for p in d.split("/") if p]
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub not in made:
                mtool("mmd", "::/" + sub, image=image, offset=offset)
                made.add(sub)


def copy_in(image, offset, src, dest):
    """Copy host file `src` to `dest` ("/dir/name") in the filesystem."""
    mtool("mcopy", "-o", "-m", str(src), "::" + dest, image=image, offset=offset)


def listing(image, offset):
    """Every file and directory in the filesystem as "/path" (mdir -/ -b: recursive, bare), sorted."""
    proc = mtool("mdir", "-a", "-/", "-b", "::/", image=image, offset=offset, capture=True, echo=False)
    out = []
    for line in proc.stdout.decode(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("::"):
            line = line[2:]
        if line and line not in ("/", "/.", "/.."):
            if line.endswith("/.") or line.endswith("/.."):
                continue
            out.append(line.rstrip("/") or "/")
    return sorted(set(out))


def read_file(image, offset, path):
    """The bytes of `path` ("/dir/name") in the filesystem (mcopy to "-": a raw copy to stdout)."""
    proc = mtool("mcopy", "::" + path, "-", image=image, offset=offset, capture=True, echo=False)
    return proc.stdout


def volume_label(image, offset):
    proc = mtool("mlabel", "-s", "::", image=image, offset=offset, capture=True, echo=False)
    text = proc.stdout.decode(errors="replace").strip()
    # "Volume label is LABEL" (or "Volume has no label")
    return text.rsplit(" is ", 1)[1].strip() if " is " in text else ""
