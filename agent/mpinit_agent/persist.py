# The persistence stage (live boots that ask for it): find the persistent layer, check it, mount it under /run and
# tell root.py where the overlay's upper and work directories are.
#
# Where the layer lives (opts.persist names the convention that asked, see cmdline.py):
#   - a volume: a partition/filesystem by spec (cow_device=, cow_label=, rd.overlay=, mpinit.persist=) or by label
#     (live-boot's persistence-label=, default "persistence"; casper's "writable" then "casper-rw");
#   - an image file named after the label (live-boot, casper) in persistence-path= (default the root) of the medium
#     or of any other probed filesystem, or a file path on the medium (rd.overlay=/path, mpinit.persist=/path):
#     attached to a loop device and mounted, so a FAT-only stick can keep an ext4 layer in a file;
#   - a directory named after the label (live-boot persistence-storage=directory), or the convention's directory
#     inside the volume (cow_directory=, rd.overlay=<spec>:<path>).
# The volume is mounted at contract.PERSIST_MOUNT (a file's host filesystem at PERSIST_HOST, or the medium remounted
# read-write at MEDIUM_MOUNT): under /run, which handoff moves into the new root, so the live system sees it. Its
# shutdown cannot unmount it (the overlay on / holds it): a layer used read-write also gets the exitrd at
# /run/initramfs/shutdown (shutdown.py), which systemd-shutdown runs at the end to unmount it all cleanly. Layouts inside, per convention (each peer's own, so an existing stick keeps working):
#   live-boot, mpinit   persistence.conf (mpinit: optional, default "/ union"); "/ union" -> <dir>/rw + <dir>/work
#                       (persistconf.py: other lines are mounted on the new root by root.py through mount_custom())
#   casper              <volume>/upper + <volume>/work
#   archiso             <volume>/<cow_directory>/upperdir + workdir (default persistent_<medium label>/x86_64)
#   dracut              <volume><path> + <volume><dirname(path)>/ovlwork (default /<live dir>/overlay-<label>-<uuid>
#                       of the medium, dracut's name)
# Safety: fsck (e2fsck -p, fsck.<type> -a) when a checker is packed; errors left (exit 4 and up) mean the layer is
# not used read-write. Asked for but missing: boot without it, warning with what was looked for (live-boot's
# behaviour). Found but unusable (fsck errors, full, read-only, a FAT/NTFS/ISO filesystem as a direct upper, a bad
# persistence.conf): everything mounted here is undone, a loud console warning, and the boot goes on without it.
# rd.overlay.readonly / persistence-read-only: the volume is mounted read-only and its upper directory becomes a
# lower layer under a tmpfs upper. rd.overlay.reset: the upper and work directories are emptied first.
# Encrypted persistence (live-boot's persistence-encryption=luks; "none", the default, allows plain media and must
# be listed too for those to count): every LUKS volume not yet open is unlocked first (luks.open_device, the
# prompt naming the persistence volume; live-boot also asks for each), as /dev/mapper/luks-<uuid>, and the label
# is looked for on what it holds. A volume that stays locked is skipped with a warning, as live-boot does.
from micropython import const

from . import contract, fsutil, log
from . import syscalls as sc
from .failure import oserror_text

_POLL_MS = const(250)       # how often a scan for a late persistence volume looks again
_MIN_FREE = const(1 << 20)  # less free space than this: the layer is full (overlay cannot even copy a file up)

# Filesystems that can be an overlayfs upper layer (Documentation/filesystems/overlayfs.rst: the upper needs
# trusted.* xattrs and d_type; FAT, exFAT, NTFS and ISO 9660 have neither), and those that cannot.
UPPER_FS = ("ext2", "ext3", "ext4", "btrfs", "xfs", "f2fs")
NO_UPPER = ("vfat", "msdos", "exfat", "ntfs", "ntfs3", "iso9660", "udf", "squashfs", "erofs")
# Filesystems searched for persistence image files and directories.
_HOSTS = ("vfat", "exfat", "ntfs", "ext2", "ext3", "ext4", "btrfs", "xfs", "f2fs", "iso9660")


class Unusable(Exception):
    """A persistence layer was found but cannot be used; str() says why."""


# ---- finding the layer -----------------------------------------------------------------------------------------

def wanted(opts):
    """What the boot looks for, in words (for messages)."""
    if opts.persist_spec:
        what = opts.persist_spec
    else:
        kinds = []
        for label in opts.persist_labels:
            if "filesystem" in opts.persist_storage:
                kinds.append("a volume labelled %s" % label)
            if "file" in opts.persist_storage:
                kinds.append("a file %s" % _rel(opts.persist_dir, label))
            if "directory" in opts.persist_storage:
                kinds.append("a directory %s" % _rel(opts.persist_dir, label))
        what = " or ".join(kinds) or "nothing (no labels)"
    return "%s persistence (%s)" % (opts.persist, what)


def _rel(directory, name):
    return "/" + (directory or "/").strip("/") + ("/" if (directory or "/").strip("/") else "") + name


def _rescan(ctx):
    from . import main

    if ctx.modules is not None and ctx.config.get("coldplug", True):
        try:
            ctx.modules.coldplug()
        except (OSError, ValueError) as e:
            log.warning("persistence: coldplug: %s" % e)
    return main.scan_devices(ctx)


def _medium_mounted(ctx, dev):
    """True when dev is the live medium and it is still mounted at MEDIUM_MOUNT (toram may have released it)."""
    m = ctx.medium_dev
    return ctx.medium is not None and m is not None and dev is not None and m.path == dev.path


def _look_on(ctx, dev, names, kind, tried):
    """Mount dev (unless it is the mounted medium) and look for one of names (paths relative to its root) of the
    kind "file" or "dir". Returns (dev, mountpoint, relpath) with dev left mounted, or None (unmounted again)."""
    if _medium_mounted(ctx, dev):
        where = contract.MEDIUM_MOUNT
    else:
        from . import medium

        try:
            medium.mount_ro(ctx, dev, contract.PERSIST_HOST)
        except OSError as e:
            tried.append("mount %s: %s" % (dev.path, oserror_text(e)))
            return None
        where = contract.PERSIST_HOST
    for rel in names:
        path = where + rel
        if (fsutil.isfile(path) if kind == "file" else fsutil.isdir(path)):
            return (dev, where, rel)
    tried.append("%s: no %s" % (dev.path, " or ".join(names)))
    if where == contract.PERSIST_HOST:
        try:
            sc.umount(where)
        except OSError as e:
            log.warning("persistence: umount %s: %s" % (where, oserror_text(e)))
    return None


def _encrypted(dev):
    """dev is a dm-crypt mapping (an unlocked LUKS volume): its dm uuid is CRYPT-... (cryptsetup's prefix)."""
    if not dev.name.startswith("dm-"):
        return False
    return fsutil.read_text("/sys/block/%s/dm/uuid" % dev.name, "").startswith("CRYPT-")


def _allowed(opts, dev):
    """persistence-encryption= allows dev: plain media need "none", unlocked LUKS ones "luks"."""
    return ("luks" if _encrypted(dev) else "none") in opts.persist_encryption


def _unlock_round(ctx, devices, tried_devs, tried):
    """persistence-encryption=luks: unlock each LUKS volume not yet open (once). True when one was opened."""
    from . import luks
    from .failure import BootError

    opened = False
    for d in devices:
        if d.info.get("TYPE") != "crypto_LUKS":
            continue
        key = ("luks", d.path, d.info.get("UUID"))
        if key in tried_devs:
            continue
        tried_devs[key] = True
        if fsutil.listdir("/sys/class/block/%s/holders" % d.name):
            continue  # open already (the devices stage unlocked it): its mapping is among the devices
        name = "luks-%s" % (d.info.get("UUID") or d.name)
        try:
            luks.open_device(ctx, d, name, "persistence", ctx.opts.luks_options, param="persistence-encryption=luks",
                             what="persistence")
            opened = True
        except BootError as e:
            tried.append("%s: %s%s" % (d.path, e.message, ("; " + "; ".join(e.tried)) if e.tried else ""))
            log.warning("persistence: %s stays locked: %s" % (d.path, e.message))
    return opened


def _search_round(ctx, devices, tried_devs, tried):
    """One look at the devices for what opts asks; returns (kind, dev, mountpoint, relpath) or None.
    kind: "volume" (mountpoint None), "file" or "dir"."""
    from . import blockdev

    opts = ctx.opts
    spec = opts.persist_spec
    if spec:
        if spec.startswith("/") and not spec.startswith("/dev/"):
            # A file or directory on the medium (rd.overlay=/path, mpinit.persist=/path).
            if ctx.medium_dev is None:
                return None
            for kind in ("file", "dir"):
                hit = _look_on(ctx, ctx.medium_dev, [spec], kind, tried)
                if hit is not None:
                    return (kind,) + hit
            return None
        dev = blockdev.find(spec, devices)
        if dev is not None and dev.info.get("TYPE") == "crypto_LUKS":
            # Named by the container's own spec: what it holds, once unlocked (persistence-encryption=luks).
            dev = _inside(dev, devices)
        if dev is not None and not _allowed(opts, dev):
            tried.append("%s: not allowed by persistence-encryption=%s" % (dev.path, ",".join(opts.persist_encryption)))
            return None
        return ("volume", dev, None, None) if dev is not None else None
    storage = opts.persist_storage
    if "filesystem" in storage:
        for label in opts.persist_labels:
            for d in devices:
                if d.info.get("LABEL") == label or d.info.get("PARTLABEL") == label:
                    if d.info.get("TYPE") and d.info.get("TYPE") != "crypto_LUKS" and _allowed(opts, d):
                        return ("volume", d, None, None)
    # Files and directories named after the label: the medium first, then every other filesystem, each once.
    hosts = []
    if ctx.medium_dev is not None:
        hosts.append(ctx.medium_dev)
    for d in devices:
        if d.info.get("TYPE") in _HOSTS and (ctx.medium_dev is None or d.path != ctx.medium_dev.path):
            if _allowed(opts, d):  # the medium above always counts (a file there is not an encrypted volume)
                hosts.append(d)
    for d in hosts:
        key = (d.path, d.info.get("UUID"))
        if key in tried_devs:
            continue
        tried_devs[key] = True
        for kind, store in (("file", "file"), ("dir", "directory")):
            if store not in storage:
                continue
            names = [_rel(opts.persist_dir, label) for label in opts.persist_labels]
            hit = _look_on(ctx, d, names, kind, tried)
            if hit is not None:
                return (kind,) + hit
    return None


def _inside(dev, devices):
    """The mapping holding an unlocked LUKS container's contents, or None while it is locked."""
    holders = fsutil.listdir("/sys/class/block/%s/holders" % dev.name)
    for d in devices:
        if d.name in holders:
            return d
    return None


def find(ctx, tried):
    """Wait for the layer like the medium (one deadline from when the devices stage began waiting)."""
    deadline = ctx.deadline_ms()
    start = ctx.wait_started if getattr(ctx, "wait_started", None) is not None else sc.uptime_ms()
    devices = ctx.devices if ctx.devices is not None else _rescan(ctx)
    tried_devs = {}
    while True:
        if "luks" in ctx.opts.persist_encryption and _unlock_round(ctx, devices, tried_devs, tried):
            devices = _rescan(ctx)
        hit = _search_round(ctx, devices, tried_devs, tried)
        if hit is not None:
            return hit
        if deadline is not None and sc.uptime_ms() - start >= deadline:
            return None
        if ctx.modules is not None:
            ctx.modules.load_deferred()  # not on the disks present: the slow controllers' next (kmod DEFERRED)
        sc.sleep_ms(_POLL_MS)
        devices = _rescan(ctx)  # filesystems already looked at are not mounted again: only new ones are


# ---- checking and mounting -------------------------------------------------------------------------------------

def fsck_command(fstype, device):
    """The packed checker's argv for fstype (found as the root stage finds it), or None when none is packed."""
    from .root import find_fsck

    tool = find_fsck(fstype)
    if tool is None:
        return None
    # e2fsck(8) -p: "automatically repair (preen) ... without any questions" (its -a is the old spelling of it);
    # the other checkers' fsck(8) -a.
    return [tool, "-p" if fstype in ("ext2", "ext3", "ext4") else "-a", device]


def fsck(fstype, device):
    """Check device; returns a summary. Unusable when errors are left (fsck(8) exit 4 and up, or a signal)."""
    argv = fsck_command(fstype, device)
    if argv is None:
        return "no checker packed"
    from . import proc

    log.info("persistence: running %s" % " ".join(argv))
    try:
        code = proc.run(argv)
    except OSError as e:
        raise Unusable("cannot run %s: %s" % (argv[0], oserror_text(e)))
    # fsck(8): 0 no errors, 1 errors corrected, 2 corrected and "the system should be rebooted" (that is for a
    # mounted root; this filesystem is not mounted yet), 4 errors left uncorrected, 8 operational error, ...
    if 0 <= code <= 2:
        if code:
            log.notice("persistence: %s corrected errors on %s (exit %d)" % (argv[0], device, code))
        return "fsck exit %d" % code
    what = ("killed by signal %d" % -code) if code < 0 else ("exit %d" % code)
    raise Unusable("%s %s: %s, errors left uncorrected (repair it on another machine, or boot with "
                   "rd.break=persistence and run('%s', '-f', '%s') in the rescue REPL, then resume())"
                   % (argv[0], device, what, argv[0], device))


def _mount(undo, source, target, fstype, flags, data):
    fsutil.makedirs(target)
    try:
        sc.mount(source, target, fstype, flags, data)
    except OSError as e:
        if e.args and e.args[0] in (sc.EROFS, sc.EACCES) and not flags & sc.MS_RDONLY:
            raise Unusable("%s is read-only (write-protected stick?): %s" % (source, oserror_text(e)))
        raise Unusable("mount -t %s %s %s: %s" % (fstype, source, target, oserror_text(e)))
    undo.add("umount", target)


def _flags(opts, readonly):
    from . import mountopts

    try:
        flags, data = mountopts.mount_flags(opts.persist_flags or "defaults")
    except ValueError as e:
        raise Unusable("cow_flags=%s: %s" % (opts.persist_flags, e))
    if readonly:
        flags |= sc.MS_RDONLY
    else:
        flags &= ~sc.MS_RDONLY
    return flags, data or None


def _check_upper_fs(fstype, where):
    if fstype in NO_UPPER:
        raise Unusable("%s is %s, which cannot hold an overlay upper layer (no xattrs / d_type): put a persistence "
                       "image file on it instead (made by mpinit persistence-file)" % (where, fstype))
    if fstype not in UPPER_FS:
        raise Unusable("%s has filesystem %s, not one of %s" % (where, fstype or "nothing recognised",
                                                                ", ".join(UPPER_FS)))


def mount_volume(ctx, undo, dev):
    """fsck + mount a persistence partition at PERSIST_MOUNT. Returns (mountpoint, note)."""
    opts = ctx.opts
    fstype = dev.info.get("TYPE")
    _check_upper_fs(fstype, dev.path)
    ro = opts.persist_readonly
    if dev.ro and not ro:
        raise Unusable("%s is a read-only device (write-protected stick?)" % dev.path)
    from . import devmapper, fsmods

    path = devmapper.mount_path(dev)  # /dev/mapper/<name> when it is a dm device (an unlocked LUKS volume)
    note = fsck(fstype, path)
    fsmods.ensure(ctx, fstype)
    flags, data = _flags(opts, ro)
    _mount(undo, path, contract.PERSIST_MOUNT, fstype, flags, data)
    return contract.PERSIST_MOUNT, "%s (%s, %s)" % (path, fstype, note)


def _host_rw(ctx, undo, dev, where):
    """The filesystem holding a persistence file/directory, mounted read-write (read-only in readonly mode)."""
    if ctx.opts.persist_readonly:
        return
    if dev.ro:
        raise Unusable("%s holds the persistence layer but is a read-only device" % dev.path)
    fstype = dev.info.get("TYPE")
    try:
        sc.mount(dev.path, where, fstype, sc.MS_REMOUNT, None)
    except OSError as e:
        raise Unusable("%s (%s) cannot be made writable: %s (read-only medium?)" % (dev.path, fstype,
                                                                                  oserror_text(e)))
    if where == contract.MEDIUM_MOUNT:
        undo.add("ro", (dev.path, where, fstype))


def mount_file(ctx, undo, dev, where, rel):
    """A persistence image file: its host read-write, the file on a loop device, fsck, mounted at PERSIST_MOUNT."""
    from . import fsmods, probe

    opts = ctx.opts
    if where == contract.PERSIST_HOST:
        undo.add("umount", where)
    _host_rw(ctx, undo, dev, where)
    path = where + rel
    try:
        info = probe.probe(path)
    except OSError as e:
        raise Unusable("cannot read %s: %s" % (path, oserror_text(e)))
    fstype = (info or {}).get("TYPE")
    if fstype not in UPPER_FS:
        raise Unusable("the persistence file %s holds %s, not an %s filesystem" % (
            rel, fstype or "no recognisable filesystem", "/".join(UPPER_FS)))
    fsmods.ensure_loop(ctx)
    try:
        loop = sc.loop_attach(path, 0, 0, bool(opts.persist_readonly), True)
    except OSError as e:
        raise Unusable("cannot attach %s to a loop device: %s" % (path, oserror_text(e)))
    undo.add("detach", loop)
    note = fsck(fstype, loop)
    fsmods.ensure(ctx, fstype)
    flags, data = _flags(opts, opts.persist_readonly)
    _mount(undo, loop, contract.PERSIST_MOUNT, fstype, flags, data)
    undo.steps.remove(("detach", loop))  # autoclear: unmounting frees the loop device
    return contract.PERSIST_MOUNT, "%s on %s via %s (%s, %s)" % (rel, dev.path, loop, fstype, note)


def mount_dir(ctx, undo, dev, where, rel):
    if where == contract.PERSIST_HOST:
        undo.add("umount", where)
    _check_upper_fs(dev.info.get("TYPE"), "%s (holding %s)" % (dev.path, rel))
    _host_rw(ctx, undo, dev, where)
    return where + rel, "%s on %s (%s)" % (rel, dev.path, dev.info.get("TYPE"))


# ---- the layout inside the volume ------------------------------------------------------------------------------

def layout(ctx, base):
    """(upper, work, [(mount, kind, path)] custom mounts) for the convention in use; base is the volume's
    directory (its root, or the directory found). Unusable for a missing or bad persistence.conf."""
    opts = ctx.opts
    fam = opts.persist
    if fam == "casper":
        return base + "/upper", base + "/work", []
    if fam == "archiso":
        d = opts.persist_dir
        if not d:
            label = ctx.medium_dev.info.get("LABEL", "") if ctx.medium_dev is not None else ""
            d = "/persistent_%s/x86_64" % label  # archiso's default cow_directory
        return base + d + "/upperdir", base + d + "/workdir", []
    if fam == "dracut":
        path = opts.persist_dir
        if not path:
            info = ctx.medium_dev.info if ctx.medium_dev is not None else {}
            path = "/%s/overlay-%s-%s" % (opts.live_dir or "live", info.get("LABEL", ""), info.get("UUID", ""))
        parent = fsutil.dirname(path)
        return base + path, base + (parent if parent != "/" else "") + "/ovlwork", []
    # live-boot and ours: persistence.conf (ours: optional, "/ union" without one).
    if fam == "mpinit" and opts.persist_dir:
        base = base + opts.persist_dir
    conf = base + "/" + contract.PERSIST_CONF
    from . import persistconf

    try:
        with open(conf, "rb") as f:
            data = f.read(65537)
    except OSError:
        if fam != "mpinit":
            raise Unusable("no %s in %s (live-boot uses a volume only with one; for the whole root: a line "
                           "'/ union')" % (contract.PERSIST_CONF, base))
        data = b"/ union\n"
    try:
        entries = persistconf.parse(data)
    except persistconf.ConfError as e:
        raise Unusable("%s: %s" % (conf, e))
    upper = work = None
    custom = []
    for mount, kind, source in entries:
        src = base if source == "." else base + "/" + source
        if mount == "/":
            upper, work = src + "/rw", src + "/work"
        else:
            custom.append((mount, kind, src))
    return upper, work, custom


# ---- reset and preparation -------------------------------------------------------------------------------------

def wipe(path):
    """Remove everything inside path (not path itself), not following symlinks and not crossing mounts."""
    import os

    try:
        top_dev = sc.lstat(path)[2]
    except OSError:
        return 0
    n = 0
    for name in fsutil.listdir(path):
        p = path + "/" + name
        st = sc.lstat(p)
        if st[0] & sc.S_IFMT == sc.S_IFDIR:
            if st[2] != top_dev:
                continue  # a mount point: not ours to empty
            n += wipe(p)
            os.rmdir(p)
        else:
            os.remove(p)
        n += 1
    return n


def _prepare(path):
    """Create an upper/work directory (0755: the upper's root becomes the root directory's mode)."""
    try:
        fsutil.makedirs(path, 0o755)
    except OSError as e:
        raise Unusable("cannot create %s: %s" % (path, oserror_text(e)))


def _free(path):
    try:
        st = sc.statfs(path)
    except OSError:
        return None
    return st[1] * st[3]   # f_bsize * f_bfree: PID 1 is root and may use the reserved blocks


def use(ctx, hit, undo):
    opts = ctx.opts
    kind, dev, where, rel = hit
    if kind == "volume" and _medium_mounted(ctx, dev):
        # The volume is the medium itself (rd.overlay=LABEL=<medium>:/path): a directory on it.
        kind, where, rel = "dir", contract.MEDIUM_MOUNT, ""
    if kind == "volume":
        base, note = mount_volume(ctx, undo, dev)
    elif kind == "file":
        base, note = mount_file(ctx, undo, dev, where, rel)
    else:
        base, note = mount_dir(ctx, undo, dev, where, rel)
    upper, work, custom = layout(ctx, base)
    layers = [d for d in (upper, work) if d] + [src for _, _, src in custom]
    if opts.persist_reset and not opts.persist_readonly:
        removed = 0
        for d in layers:
            try:
                removed += wipe(d)
            except OSError as e:
                raise Unusable("reset: cannot empty %s: %s" % (d, oserror_text(e)))
        log.notice("persistence: reset: emptied %s (%d entries)" % (", ".join(layers), removed))
        note += ", reset"
    if opts.persist_readonly:
        if upper and fsutil.isdir(upper):
            ctx.overlay_lower_extra = [upper]
        ctx.persist_mounts = [(m, k, s) for m, k, s in custom if fsutil.isdir(s)]
        ctx.persist_readonly = True
        return "read-only: %s, upper %s" % (note, upper or "-")
    for d in layers:
        if d == upper or d == work:
            _prepare(d)
        else:
            k = [c[1] for c in custom if c[2] == d][0]
            if k == "union":
                _prepare(d + "/rw")
                _prepare(d + "/work")
            else:
                _prepare(d)
    free = _free(base)
    if free is not None and free < _MIN_FREE:
        raise Unusable("%s is full (%d KiB free)" % (note.split(" ")[0], free // 1024))
    ctx.overlay_upper = upper
    ctx.overlay_work = work
    ctx.persist_mounts = custom
    return "%s, upper %s%s" % (note, upper or "tmpfs", (", %d more mounts" % len(custom)) if custom else "")


def warn_unused(why):
    """Loud: a person expecting their changes to be kept must see this whatever the log level."""
    log.warning("persistence: NOT USED: %s" % why)
    bar = "*" * 72
    log.console("mpinit: persistence: %s" % bar)
    log.console("mpinit: persistence: NOT USED: %s" % why)
    log.console("mpinit: persistence: changes made in this session will be LOST at power-off")
    log.console("mpinit: persistence: %s" % bar)


def run(ctx):
    ctx.overlay_upper = None
    ctx.overlay_work = None
    ctx.overlay_lower_extra = []
    ctx.persist_mounts = []
    ctx.persist_readonly = False
    opts = ctx.opts
    if opts.live is None:
        return "skipped: not a live boot"
    if not opts.persist:
        return "skipped: not requested"
    tried = []
    hit = find(ctx, tried)
    if hit is None:
        msg = "did not find %s" % wanted(opts)
        log.warning("persistence: %s; booting without it%s" % (msg, ("; tried: " + "; ".join(tried)) if tried
                                                                 else ""))
        log.console("mpinit: persistence: %s: changes will NOT be kept" % msg)
        return "none: " + msg
    from .root import Undo

    undo = Undo("persistence")  # what this stage mounted, undone when the layer turns out unusable
    try:
        result = use(ctx, hit, undo)
    except (Unusable, OSError) as e:
        # OSError: something no check above foresaw (a mkdir or probe failing mid-way); the same: undo, warn.
        undo.run()
        ctx.overlay_upper = ctx.overlay_work = None
        ctx.overlay_lower_extra = []
        ctx.persist_mounts = []
        why = oserror_text(e) if isinstance(e, OSError) else str(e)
        warn_unused(why)
        return "not used: %s" % why
    except BaseException:
        undo.run()
        raise
    if ctx.persist_readonly:
        return result
    return result + leave_exitrd()


def leave_exitrd():
    """The live root's shutdown can remount the overlay on / read-only but never unmount it, and the overlay keeps
    the persistent filesystem mounted read-write underneath: the exitrd (shutdown.py), run by systemd-shutdown at
    the very end, unmounts it all. A missing exitrd is a warning: the boot goes on, the layer is used."""
    from . import shutdown

    try:
        shutdown.install()
    except OSError as e:
        log.warning("persistence: cannot copy %s to %s: %s (the persistent filesystem may be left dirty at "
                    "shutdown)" % (contract.INIT_PATH, contract.SHUTDOWN_PATH, oserror_text(e)))
        return ", no exitrd"
    return ", exitrd %s" % contract.SHUTDOWN_PATH


def mount_custom(ctx, mount, base=contract.IMAGE_MOUNT):
    """persistence.conf lines other than "/": on the new root, after its overlay. mount(source, target, fstype,
    flags, data) is root.py's (it creates the target and undoes on failure); base is the image's root (the lowest
    layer), whose directory a union line lies over."""
    for target, kind, src in ctx.persist_mounts:
        dest = contract.NEW_ROOT + target
        ro = getattr(ctx, "persist_readonly", False)
        if kind == "bind":
            mount(src, dest, None, sc.MS_BIND, None)
            if ro:
                sc.mount(src, dest, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY, None)
            continue
        lower = base + target
        if not fsutil.isdir(lower):
            lower = dest
            fsutil.makedirs(dest)
        if ro:
            mount("overlay", dest, "overlay", 0, "lowerdir=%s:%s" % (src + "/rw", lower))
        else:
            mount("overlay", dest, "overlay", 0, "lowerdir=%s,upperdir=%s/rw,workdir=%s/work" % (lower, src, src))
