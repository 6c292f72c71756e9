# The medium stage (live boots only): find the device holding the live image, mount it read-only with its probed
# type, and locate the image. Image forms (issue 4):
#   - a squashfs file on a filesystem (default live/filesystem.squashfs; dracut's LiveOS/squashfs.img and
#     archiso's <basedir>/x86_64/airootfs.sfs via cmdline's image_paths);
#   - a squashfs that is the whole device (the Xen xvda case): no mount, the device is the image;
#   - an iso9660 medium: mounted like any other filesystem;
#   - an ISO file on a partition (img_dev=/img_loop=, iso-scan/filename=): the partition is mounted at
#     MEDIUM_MOUNT, the ISO file attached to a loop device and mounted at ISO_MOUNT, the image looked up inside.
# With checksum=y the image is checked against <image>.sha256 / .sha512 (or archiso's <name>.sha512) first.
import os

from micropython import const

from . import contract, fsutil, log
from . import syscalls as sc
from .failure import BootError, oserror_text

_CHUNK = const(1 << 20)     # 1 MiB reads for hashing: few syscalls, little memory
_SMALL_CHUNK = const(1 << 16)  # the fallback when the MicroPython heap has no 1 MiB block free
_POLL_MS = const(250)       # how often a scan for a late medium looks again

# Filesystem types worth mounting while scanning for the image (probe.py TYPE values).
_MOUNTABLE = ("iso9660", "vfat", "exfat", "ext2", "ext3", "ext4", "btrfs", "xfs", "udf", "ntfs", "f2fs")

# Live image formats (probe.py TYPE values), each mounted with the filesystem type of the same name: squashfs, and
# EROFS (Fedora's live media since 42, archiso's airootfs.erofs). A device of one of these types is the image.
IMAGE_TYPES = ("squashfs", "erofs")


def is_optical(dev):
    """sr*/scd* names are SCSI CD-ROMs (major 11, Documentation/admin-guide/devices.txt); copytoram=auto skips
    them as dracut does (an optical drive is slow to seek but cannot be pulled out mid-boot anyway)."""
    name = dev.name
    return name.startswith("sr") or name.startswith("scd")


def scan_order(devices):
    """Devices to try when no medium was named: removable ones first, then in enumeration order; only those with a
    mountable filesystem or a squashfs."""
    from . import blockdev

    def usable(d):
        t = d.info.get("TYPE", "")
        return t in _MOUNTABLE or t in IMAGE_TYPES

    first = []
    rest = []
    for d in blockdev.search(devices, usable, every=True):
        (first if d.removable else rest).append(d)
    return first + rest


def fstype_of(dev):
    return dev.info.get("TYPE", "")


def mount_ro(ctx, dev, target, fstype=None):
    """Mount dev read-only on target with its probed type (its driver loaded first); raises OSError."""
    mount_dev(ctx, dev, target, sc.MS_RDONLY, fstype)


def mount_dev(ctx, dev, target, flags, fstype=None):
    """Mount dev on target with mount(2) flags and its probed type: the type mount(2) knows it by (blkid's ntfs is
    ntfs3's), its driver loaded first, vfat's charset retry. Every mount of a probed device goes through here (the
    medium, a persistence host, a LUKS key device, a capture target); raises OSError."""
    from . import fsmods

    fstype = fsmods.mount_type(fstype or fstype_of(dev))
    fsmods.ensure(ctx, fstype)
    fsutil.makedirs(target)
    try:
        sc.mount(dev.path, target, fstype, flags, None)
    except OSError as e:
        data = fsmods.retry_data(fstype)
        if data is None or not e.args or e.args[0] != sc.EINVAL:
            raise
        # vfat's EINVAL is most often "IO charset %s not found" (fs/fat/inode.c): the charsets not loaded up
        # front may hold the kernel's default one.
        if fsmods.retry_charsets(ctx, fstype):
            log.info("mount %s: EINVAL, trying again with more character sets loaded" % dev.path)
            try:
                sc.mount(dev.path, target, fstype, flags, None)
                return
            except OSError as e2:
                if not e2.args or e2.args[0] != sc.EINVAL:
                    raise
        log.info("mount %s: EINVAL, trying again with %s" % (dev.path, data))
        sc.mount(dev.path, target, fstype, flags, data)


def find_image(mountpoint, candidates):
    """The first candidate (medium-relative path) that is a file under mountpoint, as an absolute path, or None."""
    for rel in candidates:
        path = fsutil.join(mountpoint, rel.lstrip("/"))
        if fsutil.isfile(path):
            return path
    return None


def checksum_files(image):
    """Candidate checksum files beside the image: <image>.sha256/.sha512, and <image minus extension>.sha256/.sha512
    (archiso's airootfs.sha512 beside airootfs.sfs)."""
    out = [image + ".sha256", image + ".sha512"]
    base = fsutil.basename(image)
    dot = base.rfind(".")
    if dot > 0:
        stem = image[:len(image) - len(base) + dot]
        out.append(stem + ".sha256")
        out.append(stem + ".sha512")
    return out


def parse_checksum(text, source):
    """The hex digest from a checksum file (`sha256sum` output "<hex>  <name>", or the bare digest)."""
    words = text.split()
    if not words:
        raise ValueError("%s: empty checksum file" % source)
    digest = words[0].lower()
    for c in digest:
        if c not in "0123456789abcdef":
            raise ValueError("%s: not a hex digest: %r" % (source, words[0]))
    return digest


def hex_digest(h):
    """The hex digest of a hash object (MicroPython's hashlib objects have digest() only)."""
    import binascii

    return binascii.hexlify(h.digest()).decode()


def hash_ctor(algo):
    """The hash constructor for "sha256" / "sha512"; ValueError when this runtime has none."""
    import hashlib

    # MicroPython 1.25's hashlib has sha256 only; the native module brings sha512 (agent/native/sha512.c).
    ctor = getattr(hashlib, algo, None) or getattr(sc, algo, None)
    if ctor is None:
        raise ValueError("this runtime has no hashlib.%s" % algo)
    return ctor


def file_digest(path, algo):
    """Hex digest of a file, read in 1 MiB chunks into one preallocated buffer."""
    h = hash_ctor(algo)()
    try:
        buf = bytearray(_CHUNK)
    except MemoryError:
        # MicroPython's heap is a few MiB and may be fragmented by then: a smaller buffer costs only more reads.
        buf = bytearray(_SMALL_CHUNK)
    mv = memoryview(buf)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(mv[:n])
    return hex_digest(h)


def verify_checksum(image):
    """checksum=y: find a checksum file beside the image and compare. Returns 'sha256 ok' etc.; BootError else."""
    tried = []
    for path in checksum_files(image):
        tried.append(path)
        if not fsutil.isfile(path):
            continue
        algo = "sha512" if path.endswith(".sha512") else "sha256"
        try:
            want = parse_checksum(fsutil.read_text(path), path)
            log.info("medium: checking %s of %s" % (algo, image))
            got = file_digest(image, algo)
        except (OSError, ValueError) as e:
            raise BootError("medium", "checksum of %s not verified: %s" % (image, e), param="checksum=y",
                            tried=tried)
        if got != want:
            raise BootError("medium", "checksum mismatch for %s: the image is corrupt or incomplete" % image,
                            param="checksum=y", tried=tried,
                            seen=["expected %s (%s)" % (want, path), "computed %s" % got])
        return "%s ok" % algo
    raise BootError("medium", "checksum=y but there is no checksum file beside %s" % image, param="checksum=y",
                    tried=tried)


def check_image(path):
    """The image must probe as squashfs or EROFS: a truncated copy or a wrong file fails here, before anything is
    mounted. Returns its type (IMAGE_TYPES): what the root stage mounts it as; every way to an image (a medium, an
    ISO, RAM, the network) asks here."""
    from . import probe

    try:
        t = probe.image_type(path)  # the two probers only: what the full probe would say for an image
        if t in IMAGE_TYPES:
            return t
        info = probe.probe(path)    # not an image: the report says what it is instead
    except OSError as e:
        raise BootError("medium", "cannot read the image %s: %s" % (path, oserror_text(e)))
    t = info.get("TYPE") if info else None
    raise BootError("medium", "%s is not a squashfs image or an EROFS image (probed TYPE=%s)"
                    % (path, "nothing" if not t or t in IMAGE_TYPES else t), seen=["probe: %r" % (info,)])


def iso_files_seen(mountpoint, wanted, limit=24):
    """The *.iso files on a mounted medium, as medium paths: its top directory, the directory the wanted ISO
    was named in, and their subdirectories one level down (where ISO collections are kept). For the report when
    the named ISO is not there."""
    dirs = ["/"]
    parent = fsutil.dirname("/" + wanted.lstrip("/"))
    if parent not in dirs:
        dirs.append(parent)
    found = []
    seen_dirs = {}
    i = 0
    while i < len(dirs) and len(found) < limit:
        rel = dirs[i]
        i += 1
        if rel in seen_dirs:
            continue
        seen_dirs[rel] = True
        here = fsutil.join(mountpoint, rel.lstrip("/")) if rel != "/" else mountpoint
        for name in sorted(fsutil.listdir(here)):
            path = rel.rstrip("/") + "/" + name
            full = fsutil.join(here, name)
            if name.lower().endswith(".iso") and fsutil.isfile(full):
                found.append(path)
                if len(found) >= limit:
                    break
            elif fsutil.isdir(full) and rel.count("/") <= 1 and len(dirs) < 64:
                dirs.append(path)
    return found


def _listing(mountpoint):
    names = fsutil.listdir(mountpoint)
    return "%s holds: %s" % (mountpoint, " ".join(names) if names else "(nothing)")


def _umount(target):
    try:
        sc.umount(target)
    except OSError as e:
        log.warning("medium: umount %s: %s" % (target, oserror_text(e)))


def _spec_param(opts):
    return "root=live:%s" % opts.live


def _open_iso(ctx, iso_path):
    """Attach an ISO file read-only and mount it at ISO_MOUNT; returns the mount point."""
    from . import fsmods

    fsmods.ensure_loop(ctx)
    # A UDF bridge ISO (genisoimage -udf, DVD images) probes as udf, and mounts as iso9660 just as well; a pure
    # UDF image only as udf.
    fstype = "iso9660"
    try:
        from . import probe

        if probe.probe(iso_path).get("TYPE") == "udf":
            fstype = "udf"
    except OSError:
        pass
    fsmods.ensure(ctx, fstype)
    try:
        loop = sc.loop_attach(iso_path, 0, 0, True, True)
    except OSError as e:
        raise BootError("medium", "cannot attach the ISO file %s: %s" % (iso_path, oserror_text(e)),
                        param="iso-scan/filename=")
    fsutil.makedirs(contract.ISO_MOUNT)
    try:
        sc.mount(loop, contract.ISO_MOUNT, fstype, sc.MS_RDONLY, None)
    except OSError as e:
        try:
            sc.loop_detach(loop)
        except OSError:
            pass
        raise BootError("medium", "%s (on %s) is not a mountable ISO: %s" % (iso_path, loop, oserror_text(e)),
                        param="iso-scan/filename=")
    ctx.iso_loop = loop
    return contract.ISO_MOUNT


def _try_device(ctx, dev, candidates):
    """Mount dev and look for the image (through the ISO file when one was named). Returns the image path or None
    (unmounted again); a mount failure returns None with the reason appended to ctx.tried."""
    opts = ctx.opts
    if fstype_of(dev) in IMAGE_TYPES and not opts.iso_file:
        return dev.path
    try:
        mount_ro(ctx, dev, contract.MEDIUM_MOUNT)
    except OSError as e:
        ctx.tried.append("mount -o ro -t %s %s %s: %s" % (fstype_of(dev) or "?", dev.path, contract.MEDIUM_MOUNT,
                                                          oserror_text(e)))
        return None
    where = contract.MEDIUM_MOUNT
    if opts.iso_file:
        iso = fsutil.join(where, opts.iso_file.lstrip("/"))
        if not fsutil.isfile(iso):
            isos = iso_files_seen(where, opts.iso_file)
            ctx.tried.append("%s (%s): no ISO file %s; ISO files there: %s"
                             % (dev.path, fstype_of(dev), opts.iso_file, " ".join(isos) if isos else "none"))
            _umount(where)
            return None
        where = _open_iso(ctx, iso)
    image = find_image(where, candidates)
    if image is None:
        ctx.tried.append("%s (%s): none of %s; %s" % (dev.path, fstype_of(dev), ", ".join(candidates),
                                                     _listing(where)))
        if where != contract.MEDIUM_MOUNT:
            _umount(where)
        _umount(contract.MEDIUM_MOUNT)
    return image


def _rescan(ctx):
    from . import main

    if ctx.modules is not None:
        try:
            ctx.modules.coldplug()
        except (OSError, ValueError) as e:
            log.warning("medium: coldplug: %s" % e)
    return main.scan_devices(ctx)  # nodes, links and ctx.devices as the devices stage makes them


def _image_from_path(ctx, spec):
    """root=live:/path/to/image.squashfs naming a file already reachable (e.g. inside the initramfs)."""
    if spec.startswith("/") and not spec.startswith("/dev/") and fsutil.isfile(spec):
        return spec
    return None


def run(ctx):
    opts = ctx.opts
    if opts.live is None:
        return "skipped: not a live boot (no root=live:)"
    if opts.url:
        from . import netfetch

        return netfetch.run(ctx)  # the medium is a web server
    from . import blockdev

    ctx.tried = []
    candidates = list(opts.image_paths or [fsutil.join(opts.live_dir or ctx.config["live_dir"],
                                                       opts.live_image or ctx.config["live_image"])])
    # With an ISO file, root=live:CDLABEL=... names the ISO's own label (dracut's iso-scan), so the partition
    # holding the file is img_dev= or found by scanning.
    spec = (opts.iso_dev or "") if opts.iso_file else opts.live
    image = _image_from_path(ctx, spec) if spec else None
    dev = None
    if image is None:
        deadline = ctx.deadline_ms()
        # The devices stage may have waited for this medium already: one deadline for both stages.
        start = ctx.wait_started if getattr(ctx, "wait_started", None) is not None else sc.uptime_ms()
        devices = ctx.devices if ctx.devices is not None else _rescan(ctx)
        tried_devs = {}
        while True:
            if spec:
                dev = blockdev.find(spec, devices)
                if dev is not None:
                    image = _try_device(ctx, dev, candidates)
                    if image is None:
                        break  # the named medium is there but holds no image: waiting will not help
            else:
                for d in scan_order(devices):
                    key = (d.path, d.info.get("UUID"))
                    if key in tried_devs:
                        continue
                    tried_devs[key] = True
                    image = _try_device(ctx, d, candidates)
                    if image is not None:
                        dev = d
                        break
            if image is not None:
                break
            if deadline is not None and sc.uptime_ms() - start >= deadline:
                break
            sc.sleep_ms(_POLL_MS)
            devices = _rescan(ctx)
        if image is None:
            ctx.wait_started = None  # resume() after plugging the medium in gets a fresh deadline
            if opts.iso_file:
                what = "the ISO file %s%s" % (opts.iso_file, (" on %s" % spec) if spec else "")
            else:
                what = ("the medium %s" % spec) if spec else ("a medium holding %s" % " or ".join(candidates))
            seen = blockdev.describe(ctx.devices or [])
            if isinstance(seen, str):
                seen = seen.split("\n")
            if not seen:
                seen = ["no block devices at all (missing driver? see the modules stage)"]
            if ctx.modules is not None and ctx.modules.failed:
                seen.append("modules that failed to load: %s" % ", ".join([n for n, _ in ctx.modules.failed]))
            waited = "" if deadline is None else " within %d s" % (deadline // 1000)
            # an ISO file names its own parameter (img_loop= and findiso= are its other spellings), as
            # _open_iso's failures do
            param = "iso-scan/filename=" if opts.iso_file else (_spec_param(opts) if opts.live else "root=live:")
            raise BootError("medium", "did not find %s%s" % (what, waited), param=param,
                            tried=ctx.tried, seen=seen)
    ctx.medium_dev = dev
    ctx.medium = contract.MEDIUM_MOUNT if (dev is not None and image != dev.path) else None
    ctx.optical = dev is not None and is_optical(dev)
    ctx.image = image
    if dev is not None and image == dev.path:
        ctx.image_size = dev.size
    else:
        ctx.image_size = os.stat(image)[6]
    if dev is not None and image == dev.path and fstype_of(dev) in IMAGE_TYPES:
        ctx.image_type = fstype_of(dev)  # the whole device is the image: the devices stage probed it already
    else:
        ctx.image_type = check_image(image)
    note = ""
    if opts.checksum:
        if dev is not None and image == dev.path:
            # A whole device is longer than the image written to it; its checksum would never match.
            log.warning("medium: checksum=y ignored: the image is the whole device %s" % image)
            note = ", checksum not applicable"
        else:
            note = ", " + verify_checksum(image)
    log.info("medium: image %s (%d bytes) on %s" % (image, ctx.image_size, dev.path if dev else "the initramfs"))
    return "%s on %s%s" % (image, dev.path if dev else "initramfs", note)
