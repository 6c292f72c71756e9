"""Test media for issue 13's end-to-end boots (tests/e2e/test_media_types.py): EROFS live images, ISO files on
exFAT and NTFS sticks, a UDF disc. Built like mpinit.media's (real tools, no mounts, no loop devices) and cached
beside them under build/e2e/<media digest>/types-<digest of this module>/.

    ensure("erofs-fat") -> Path of the disk image

| name | what | boot with |
|---|---|---|
| erofs-fat | GPT disk, FAT32 partition MPEROFS holding /live/filesystem.erofs (+ .sha256) | root=live:LABEL=MPEROFS |
| erofs-disk | the EROFS image as the whole disk | root=live:/dev/vda |
| isos-exfat | MBR disk, exFAT partition MPEXFAT holding /isos/other.iso and /isos/live.iso | iso-scan/filename=/isos/live.iso |
| isos-ntfs | MBR disk, NTFS partition MPNTFS holding /other.iso and /live.iso (ntfscp) | findiso=/live.iso |
| udf | a UDF bridge disc image (genisoimage -udf; blkid: udf) MPUDF with the live squashfs | root=live:LABEL=MPUDF |

The ISO files are mpinit.media's "inner.iso" (xorriso, label MPLIVE_ISO, /live/filesystem.squashfs).
"""

import hashlib
import shutil
from pathlib import Path

from .. import exfat, liveimage, media
from ..runner import find_tool, run

EROFS_LABEL = "MPEROFS"
EXFAT_LABEL = "MPEXFAT"
NTFS_LABEL = "MPNTFS"
UDF_LABEL = "MPUDF"
EXFAT_ISO = "/isos/live.iso"
NTFS_ISO = "/live.iso"
OTHER_ISO = "other.iso"       # a second ISO beside it: the folder holds several, the named one is booted
EROFS_IMAGE = "/live/filesystem.erofs"


def _dir():
    h = hashlib.sha256(Path(__file__).read_bytes())
    d = media.cache_dir() / ("types-" + h.hexdigest()[:12])
    d.mkdir(exist_ok=True)
    return d


def erofs_image(d):
    """The test live root as an EROFS image made by `mpinit squash --format erofs`'s own command line."""
    from .. import squash

    def make(tmp):
        tree = media._tree(media.cache_dir(), "root")
        run(squash.mkfs_erofs_argv(tree, tmp, [], all_root=True), capture=True)
    return media._once(d / "root.erofs", make)


def _erofs_fat(d, tmp):
    image = erofs_image(d)
    sumfile = d / "root.erofs.sha256"
    sumfile.write_text(liveimage.sha256_line(image, Path(EROFS_IMAGE).name))
    part = media._tmp(d / "part-erofs-fat.img")
    try:
        with open(part, "wb") as f:
            f.truncate(media._mib_for(image.stat().st_size, 8, 40) * media.MIB)
        run([find_tool("mkfs.vfat", "dosfstools"), "-F", "32", "-s", "1", "-n", EROFS_LABEL, part], capture=True)
        from .. import fat

        fat.mkdirs(part, 0, ["/live"])
        fat.copy_in(part, 0, image, EROFS_IMAGE)
        fat.copy_in(part, 0, sumfile, EROFS_IMAGE + ".sha256")
        media._gpt_disk(tmp, part)
    finally:
        part.unlink(missing_ok=True)


def _erofs_disk(d, tmp):
    shutil.copyfile(erofs_image(d), tmp)


def _inner_iso():
    d = media.cache_dir()
    return media._once(d / "inner.iso", lambda t: media._iso_medium(d, t))


def _isos_disk(d, tmp, fstype, fill):
    """An MBR disk (type 7: exFAT/NTFS) whose one partition, room for two copies of the inner ISO, fill(part, iso)
    formats and fills."""
    iso = _inner_iso()
    part = media._tmp(d / ("part-%s.img" % fstype))
    try:
        with open(part, "wb") as f:
            f.truncate(media._mib_for(2 * iso.stat().st_size, 8, 16) * media.MIB)
        fill(part, iso)
        media._mbr_disk(tmp, part, type_hex="7")
    finally:
        part.unlink(missing_ok=True)


def _isos_exfat(d, tmp):
    def fill(part, iso):
        run([find_tool("mkfs.exfat", "exfatprogs"), "-L", EXFAT_LABEL, part], capture=True)
        exfat.add(part, {"/isos/" + OTHER_ISO: iso, EXFAT_ISO: iso})
    _isos_disk(d, tmp, "exfat", fill)


def _isos_ntfs(d, tmp):
    def fill(part, iso):
        run([find_tool("mkntfs", "ntfs-3g"), "-q", "-Q", "-F", "-L", NTFS_LABEL, part], capture=True)
        for name in (OTHER_ISO, NTFS_ISO.lstrip("/")):
            run([find_tool("ntfscp", "ntfs-3g"), "-q", "-f", part, iso, "/" + name], capture=True)
    _isos_disk(d, tmp, "ntfs", fill)


def _udf(d, tmp):
    image = media.squashfs(media.cache_dir(), "root")
    stage = media._staging(d, "udf", media._live_files(image))
    try:
        run([find_tool("genisoimage", "genisoimage"), "-quiet", "-udf", "-R", "-J", "-V", UDF_LABEL, "-o", tmp,
             stage], capture=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


MEDIA = {"erofs-fat": _erofs_fat, "erofs-disk": _erofs_disk, "isos-exfat": _isos_exfat, "isos-ntfs": _isos_ntfs,
         "udf": _udf}


def ensure(name):
    if name not in MEDIA:
        raise ValueError("unknown medium %r (known: %s)" % (name, ", ".join(sorted(MEDIA))))
    d = _dir()
    return media._once(d / (name + ".img"), lambda tmp: MEDIA[name](d, tmp))
