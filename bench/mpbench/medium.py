"""The toram benchmark's medium: the test live root plus an incompressible ballast file, as a squashfs of about
`size_mib` MiB on a GPT disk with a FAT32 partition labelled MPLIVE (the layout of mpinit.media's "gpt-vfat", so
the same `root=live:LABEL=MPLIVE` boots it).

Built with mpinit.liveroot (tree, mksquashfs) and mpinit.media's partition helpers (_vfat_image, _gpt_disk:
private functions of media.py, used here so the layout stays the e2e tests' one), cached under
build/bench/media/<digest>/ and written under a temporary name, renamed when complete.
"""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path

from mpinit import liveroot, media

MIB = 1024 * 1024


def digest(size_mib):
    h = hashlib.sha256(("toram-%d|" % size_mib).encode())
    h.update(liveroot.inputs_digest().encode())
    for mod in (__file__, media.__file__, liveroot.__file__):
        h.update(Path(mod).read_bytes())
    return h.hexdigest()[:16]


def ensure(work: Path, size_mib=256) -> Path:
    """The disk image (built once per input digest; other digests' directories are removed)."""
    if size_mib < 8:
        raise ValueError("--toram-mb %d: at least 8 MiB" % size_mib)
    base = Path(work) / "media"
    d = base / digest(size_mib)
    disk = d / "toram.img"
    if disk.exists():
        return disk
    if base.is_dir():
        for old in base.iterdir():
            if old.is_dir() and old != d:
                shutil.rmtree(old, ignore_errors=True)
    d.mkdir(parents=True, exist_ok=True)
    tree = d / "tree"
    if tree.exists():
        shutil.rmtree(tree)
    sq = d / "filesystem.squashfs"
    part = d / "part.img"
    tmp = d / ".toram.img.tmp"
    try:
        # The root itself is small (busybox): the ballast makes the image size_mib MiB. Random bytes neither
        # compress nor deduplicate, and -noD stores them as they are: the copy moves that many bytes.
        root_mib = 2
        ballast = random.Random(7).randbytes(max(1, size_mib - root_mib) * MIB)
        liveroot.build_tree(tree, extra_files={"var/ballast.bin": ballast})
        del ballast
        liveroot.make_squashfs(tree, sq, compress_data=False)
        shutil.rmtree(tree)
        files = media._live_files(sq)
        media._vfat_image(part, files, media._mib_for(sq.stat().st_size, 8, 40))
        media._gpt_disk(tmp, part)
        tmp.rename(disk)
    finally:
        for p in (part, tmp):
            p.unlink(missing_ok=True)
        shutil.rmtree(tree, ignore_errors=True)
    return disk


def image_size(work: Path, size_mib=256) -> int:
    """Bytes of the squashfs on the medium (after ensure())."""
    return (Path(work) / "media" / digest(size_mib) / "filesystem.squashfs").stat().st_size
