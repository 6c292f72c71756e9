"""Test media for another architecture's boots (arm64 on an x86_64 machine): the same busybox live root as
mpinit.media's, built from that architecture's Debian busybox-static (liveroot.busybox_path(arch)), and the media
the arm64 end-to-end tests and `mpinit demo --arch arm64` boot.

    ensure("gpt-vfat", "arm64") -> media.Medium     (same names, identifiers and layout as mpinit.media's)

Media are cached under build/e2e-<arch>/<digest>/, the digest covering that busybox, the live root's init script,
media.py, liveroot.py and this file; each file is made under a temporary name and renamed into place. The media
with a kernel and an initramfs inside (live-image/live-iso) depend on the initramfs under test and are made by
the tests themselves with mpinit.liveimage.
"""

import hashlib
import shutil
from pathlib import Path

from . import arch as archmod
from . import liveroot, media
from .paths import build_dir

NAMES = ("gpt-vfat", "iso", "ext4-root")


def _digest(busybox):
    h = hashlib.sha256(liveroot.inputs_digest(busybox).encode())
    for mod in (media.__file__, liveroot.__file__, __file__):
        h.update(Path(mod).read_bytes())
    return h.hexdigest()[:16]


def cache_dir(arch, busybox):
    d = build_dir() / ("e2e-" + arch.name) / _digest(busybox)
    d.mkdir(parents=True, exist_ok=True)
    return d


def tree(d, busybox):
    return media._once(d / "tree-root", lambda tmp: liveroot.build_tree(tmp, busybox=busybox))


def squashfs(arch="arm64"):
    """The arch's live root image (busybox + the reporting /sbin/init), built once."""
    arch = archmod.get(arch)
    busybox = liveroot.busybox_path(arch.name)
    d = cache_dir(arch, busybox)
    root = tree(d, busybox)
    return media._once(d / "root.squashfs", lambda tmp: liveroot.make_squashfs(root, tmp))


def ensure(name, arch="arm64"):
    """The medium `name` (one of NAMES) for arch, built if missing: a media.Medium with media.py's fields."""
    if name not in NAMES:
        raise ValueError("unknown %s test medium %r (known: %s)" % (arch, name, ", ".join(NAMES)))
    arch = archmod.get(arch)
    busybox = liveroot.busybox_path(arch.name)
    d = cache_dir(arch, busybox)
    image = squashfs(arch)
    fields = dict(media.MEDIA[name][1])

    def gpt_vfat(tmp):
        part = media._tmp(d / "part-vfat.img")
        try:
            media._vfat_image(part, media._live_files(image), media._mib_for(image.stat().st_size, 8, 40))
            media._gpt_disk(tmp, part)
        finally:
            part.unlink(missing_ok=True)

    def iso(tmp):
        stage = media._staging(d, "iso", media._live_files(image))
        try:
            media._iso(tmp, stage)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def ext4_root(tmp):
        media._ext4_image(tmp, tree(d, busybox), 32, media.ROOT_LABEL, media.ROOT_UUID)

    make = {"gpt-vfat": gpt_vfat, "iso": iso, "ext4-root": ext4_root}[name]
    path = media._once(d / (name + ".img"), make)
    return media.Medium(name=name, path=path, **fields)
