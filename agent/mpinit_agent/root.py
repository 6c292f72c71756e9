# The root stage: assemble the new root at contract.NEW_ROOT.
#   live:  loop device (read-only, autoclear) -> squashfs at IMAGE_MOUNT; tmpfs at COW_MOUNT (upper/ + work/);
#          overlayfs lowerdir=IMAGE_MOUNT,upperdir=COW_MOUNT/upper,workdir=COW_MOUNT/work on NEW_ROOT.
#          These mounts live under /run, which handoff moves into the new root: the system sees them at
#          /run/initramfs/live (the medium), /run/mpinit/rootfsbase (the squashfs), /run/mpinit/cow (the upper).
#   plain: fsck when /sbin/fsck.<type> is in the initramfs, then mount root= with rootfstype=/rootflags=/ro/rw;
#          /usr from the new root's /etc/fstab when it is a separate filesystem.
# On any failure everything this stage mounted is undone, so resume() can try again from a clean state.
from micropython import const

from . import contract, fsutil, log
from . import syscalls as sc
from .failure import BootError, oserror_text

_FSCK_OK = const(1)          # fsck(8) exit codes: 0 no errors, 1 errors corrected
_FSCK_REBOOT = const(2)      # 2: errors corrected, system should be rebooted
# 4 uncorrected errors, 8 operational error, 16 usage, 32 cancelled, 128 shared-library error: all failures.


class Undo:
    """Mounts, loop devices and remounts made so far by a stage (this one, persist.py's), released in reverse order
    when the stage fails. Steps: ("umount", target), ("detach", loop), ("ro", (source, target, fstype)): remount
    read-only what the stage made writable."""

    def __init__(self, stage="root"):
        self.stage = stage
        self.steps = []

    def add(self, kind, what):
        self.steps.append((kind, what))

    def mounted(self, target):
        self.steps.append(("umount", target))

    def attached(self, loop):
        self.steps.append(("detach", loop))

    def run(self):
        while self.steps:
            kind, what = self.steps.pop()
            try:
                if kind == "umount":
                    sc.umount(what)
                elif kind == "detach":
                    sc.loop_detach(what)
                else:  # "ro": the medium goes back to read-only
                    sc.mount(what[0], what[1], what[2], sc.MS_REMOUNT | sc.MS_RDONLY, None)
            except OSError as e:
                log.warning("%s: undo %s %s: %s" % (self.stage, kind, what, oserror_text(e)))


def _mount(undo, source, target, fstype, flags, data, param=None):
    fsutil.makedirs(target)
    try:
        sc.mount(source, target, fstype, flags, data)
    except OSError as e:
        raise BootError("root", "mount -t %s %s %s failed: %s" % (fstype, source, target, oserror_text(e)),
                        param=param, tried=["mount(%r, %r, %r, 0x%x, %r)" % (source, target, fstype, flags, data)])
    undo.mounted(target)


def overlay_data(lower, cow):
    return "lowerdir=%s,upperdir=%s/upper,workdir=%s/work" % (lower, cow, cow)


def _is_block(path):
    try:
        return sc.lstat(path)[0] & sc.S_IFMT == sc.S_IFBLK
    except OSError:
        return False


def mount_live(ctx, undo):
    from . import fsmods

    image = ctx.image
    # The medium stage probed the image (medium.check_image); an image from elsewhere (a hook's) is probed here,
    # and mounted as squashfs when unreadable or unrecognised: the mount's error then names it.
    fstype = getattr(ctx, "image_type", None)
    if fstype is None:
        from .medium import check_image

        try:
            fstype = check_image(image)
        except BootError:
            fstype = "squashfs"
    fsmods.ensure(ctx, fstype)
    fsmods.ensure(ctx, "overlay")
    if _is_block(image):
        source = image  # a whole-device squashfs needs no loop device
    else:
        fsmods.ensure_loop(ctx)
        try:
            source = sc.loop_attach(image, 0, 0, True, True)
        except OSError as e:
            raise BootError("root", "cannot attach %s to a loop device: %s" % (image, oserror_text(e)),
                            tried=["loop_attach(%r, read_only=True, autoclear=True)" % image])
        # With autoclear the loop device goes away when the squashfs is unmounted; until it is mounted, undo must
        # detach it explicitly.
        undo.attached(source)
    _mount(undo, source, contract.IMAGE_MOUNT, fstype, sc.MS_RDONLY, None)
    ctx.image_loop = source
    base = _dracut_rootfs_img(ctx, undo)
    # The persistence stage (persist.py) may have put the upper layer on a persistent volume, or added that volume
    # as a read-only lower layer above the image (rd.overlay.readonly).
    lowers = list(getattr(ctx, "overlay_lower_extra", None) or []) + [base]
    upper = getattr(ctx, "overlay_upper", None)
    if upper:
        data = "lowerdir=%s,upperdir=%s,workdir=%s" % (":".join(lowers), upper, ctx.overlay_work)
        what = "persistent %s" % upper
    else:
        size = ctx.opts.overlay_size or ctx.config["overlay_size"]
        _mount(undo, "tmpfs", contract.COW_MOUNT, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "size=%s,mode=0755" % size,
               param="rd.live.overlay.size=%s" % size)
        fsutil.makedirs(contract.COW_MOUNT + "/upper")
        fsutil.makedirs(contract.COW_MOUNT + "/work")
        data = overlay_data(":".join(lowers), contract.COW_MOUNT)
        what = "tmpfs size=%s" % size
    _mount(undo, "overlay", contract.NEW_ROOT, "overlay", 0, data)
    if getattr(ctx, "persist_mounts", None):
        from . import persist

        persist.mount_custom(ctx, lambda s, t, f, fl, d: _mount(undo, s, t, f, fl, d, param="persistence.conf"),
                             base)
        what += ", %d persistence.conf mounts" % len(ctx.persist_mounts)
    return "overlay of %s (upper: %s)" % (image, what)


# dracut's older live layout (dmsquash-live-root.sh): the squashfs holds LiveOS/rootfs.img, a filesystem image that
# is the real root; when it is there, dracut mounts it and uses it instead of the squashfs' own tree.
DRACUT_ROOTFS_IMG = "LiveOS/rootfs.img"


def _dracut_rootfs_img(ctx, undo):
    """The overlay's lower directory: the image's own tree, or the filesystem in its LiveOS/rootfs.img (mounted
    read-only at contract.ROOTFS_IMG_MOUNT from a loop device)."""
    inner = contract.IMAGE_MOUNT + "/" + DRACUT_ROOTFS_IMG
    if not fsutil.isfile(inner):
        return contract.IMAGE_MOUNT
    from . import fsmods, probe

    try:
        fstype = probe.probe(inner).get("TYPE")
    except OSError as e:
        raise BootError("root", "cannot read %s: %s" % (inner, oserror_text(e)))
    if not fstype:
        raise BootError("root", "%s (dracut's root image inside the live image) holds no filesystem" % inner,
                        seen=["probe: nothing recognised"])
    fstype = fsmods.mount_type(fstype)
    fsmods.ensure(ctx, fstype)
    try:
        loop = sc.loop_attach(inner, 0, 0, True, True)
    except OSError as e:
        raise BootError("root", "cannot attach %s to a loop device: %s" % (inner, oserror_text(e)))
    undo.attached(loop)
    _mount(undo, loop, contract.ROOTFS_IMG_MOUNT, fstype, sc.MS_RDONLY, None)
    log.info("root: using %s (%s) inside the image, as dracut does" % (DRACUT_ROOTFS_IMG, fstype))
    return contract.ROOTFS_IMG_MOUNT


def fsck_exit_meaning(code):
    """'ok' | 'reboot' | 'fail' for an fsck exit code (negative: killed by that signal), per fsck(8)."""
    if 0 <= code <= _FSCK_OK:
        return "ok"
    if code == _FSCK_REBOOT:
        return "reboot"
    return "fail"


# e2fsprogs installs fsck.ext2/3/4 as links to e2fsck; `mpinit pack --binary /sbin/e2fsck` packs only e2fsck.
_FSCK_ALT = {"ext2": "e2fsck", "ext3": "e2fsck", "ext4": "e2fsck"}


def find_fsck(fstype, dirs=None):
    """The packed checker for fstype: fsck.<type> in the tool directories, else e2fsck for ext2/3/4; or None."""
    from . import proc

    dirs = dirs or proc.TOOL_DIRS
    tool = proc.find_tool("fsck." + fstype, dirs)
    if tool is None and fstype in _FSCK_ALT:
        tool = proc.find_tool(_FSCK_ALT[fstype], dirs)
    return tool


def run_fsck(ctx, fstype, device, fsck_dir=None, param="root="):
    """fsck -a when a checker for fstype is in the initramfs, as the DIY-initramfs guide's script does: exit 0/1
    go on, 2 ("errors corrected, system should be rebooted", fsck(8)) syncs and reboots, 4 and up (or a signal)
    stop the boot with a BootError (rescue REPL with the report). Returns a summary."""
    tool = find_fsck(fstype, (fsck_dir,) if fsck_dir else None)
    if tool is None:
        return "no fsck.%s" % fstype
    argv = [tool, "-a", device]
    log.info("root: running %s" % " ".join(argv))
    from . import proc

    try:
        # e2fsck reads /proc/mounts to refuse a mounted filesystem; LC_ALL=C keeps its messages plain.
        code = proc.run(argv, ["PATH=/sbin:/usr/sbin:/bin:/usr/bin", "LC_ALL=C"])
    except OSError as e:
        raise BootError("root", "cannot run %s: %s" % (tool, oserror_text(e)), param=param)
    meaning = fsck_exit_meaning(code)
    if meaning == "ok":
        if code == 1:
            log.notice("root: %s corrected errors on %s" % (tool, device))
        return "%s exit %d" % (fsutil.basename(tool), code)
    if meaning == "reboot":
        log.notice("root: %s corrected errors on %s and asks for a reboot" % (tool, device))
        log.console("mpinit: %s repaired %s; rebooting as fsck(8) asks (exit code 2)" % (tool, device))
        sc.sync()
        sc.reboot(sc.RB_AUTOBOOT)
        raise BootError("root", "%s asked for a reboot and reboot(2) returned" % tool, param=param)
    what = ("killed by signal %d" % -code) if code < 0 else ("exit code %d" % code)
    raise BootError("root", "%s %s: %s; the filesystem needs a manual repair: run(%r, %r) in this shell, then "
                    "resume()" % (tool, device, what, tool, device), param=param,
                    tried=[" ".join(argv)],
                    seen=["fsck(8) exit codes: 4 errors left uncorrected, 8 operational error, 16 usage error, "
                          "32 cancelled, 128 shared library error"])


def _fstypes(opts, dev):
    if opts.rootfstype:
        return [t for t in opts.rootfstype.split(",") if t]
    t = dev.info.get("TYPE") if dev is not None else None
    return [t] if t else []


def mount_plain(ctx, undo):
    from . import mountopts

    opts = ctx.opts
    dev = ctx.root_dev
    if dev is None:
        raise BootError("root", "no root device was found", param="root=%s" % (opts.root or ""))
    types = _fstypes(opts, dev)
    if not types:
        raise BootError("root", "%s has no recognizable filesystem and no rootfstype= was given" % dev.path,
                        param="rootfstype=", seen=["probe: %r" % (dev.info,)])
    try:
        flags, data = mountopts.mount_flags(opts.rootflags)
    except ValueError as e:
        raise BootError("root", str(e), param="rootflags=%s" % opts.rootflags)
    if opts.readonly is None or opts.readonly:
        flags |= sc.MS_RDONLY  # the kernel's default (root_mountflags = MS_RDONLY | MS_SILENT, init/do_mounts.c)
    else:
        flags &= ~sc.MS_RDONLY
    from . import devmapper, fsmods

    path = devmapper.mount_path(dev)  # /dev/mapper/<name> for a dm device, as /proc/mounts shows it under dracut
    fsck = run_fsck(ctx, types[0], path)
    for t in types:
        fsmods.ensure(ctx, t)
    tried = []
    errors = []
    fsutil.makedirs(contract.NEW_ROOT)
    for t in types:
        tried.append("mount -t %s %s %s flags=0x%x data=%r" % (t, path, contract.NEW_ROOT, flags, data))
        try:
            sc.mount(path, contract.NEW_ROOT, t, flags, data or None)
        except OSError as e:
            errors.append("%s: %s" % (t, oserror_text(e)))
            continue
        undo.mounted(contract.NEW_ROOT)
        usr = mount_usr(ctx, undo)
        return "%s (%s, %s)%s" % (path, t, fsck, usr)
    raise BootError("root", "cannot mount %s" % path, param="rootfstype= / rootflags=", tried=tried,
                    seen=errors)


def fstab_entry(text, mountpoint):
    """(spec, fstype, options, passno) of the fstab line mounting mountpoint, or None (fstab(5): spaces/tabs,
    # comments, octal escapes such as \\040 in fields; fs_passno, the 6th field, 0 = "do not check", also when
    missing)."""
    for line in text.split("\n"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 3:
            continue
        if fsutil.unescape_octal(fields[1]).rstrip("/") == mountpoint.rstrip("/"):
            return (fsutil.unescape_octal(fields[0]), fields[2], fields[3] if len(fields) > 3 else "defaults",
                    int(fields[5]) if len(fields) > 5 and fields[5].isdigit() else 0)
    return None


def _late_device(ctx, spec):
    """A device behind a controller whose driver coldplug held back (kmod DEFERRED: IDE): load it, then wait for
    the device like the devices stage does (the root's deadline). None when nothing was held back."""
    m = ctx.modules
    if m is None or not m.load_deferred():
        return None
    from . import blockdev, main

    deadline = ctx.deadline_ms()
    start = sc.uptime_ms()
    while True:
        m.wait_event(100)  # as the devices stage's poll: a uevent (the disk, its partitions) wakes it sooner
        if ctx.config.get("coldplug", True):
            m.coldplug()
        dev = blockdev.find(spec, main.scan_devices(ctx))
        if dev is not None or (deadline is not None and sc.uptime_ms() - start >= deadline):
            return dev


def mount_usr(ctx, undo):
    """Mount /usr from the new root's fstab when it names one (systemd and the DIY-initramfs guide expect /usr
    mounted before the real init starts). Returns a note for the summary."""
    from . import blockdev

    text = fsutil.read_text(contract.NEW_ROOT + "/etc/fstab", "")
    entry = fstab_entry(text, "/usr")
    if entry is None:
        return ""
    spec, fstype, options, passno = entry
    from . import mountopts

    try:
        flags, data = mountopts.mount_flags(options)
    except ValueError as e:
        raise BootError("root", "%s/etc/fstab, /usr: %s" % (contract.NEW_ROOT, e), param="/etc/fstab /usr")
    try:
        dev = blockdev.find(spec, ctx.devices or [])
    except ValueError as e:
        raise BootError("root", "%s/etc/fstab, /usr: %s" % (contract.NEW_ROOT, e), param="/etc/fstab /usr")
    if dev is None:
        dev = _late_device(ctx, spec)
    if dev is None:
        raise BootError("root", "/usr is a separate filesystem (%s in %s/etc/fstab) that was not found"
                        % (spec, contract.NEW_ROOT), param="/etc/fstab /usr",
                        seen=_seen(blockdev, ctx))
    if fstype == "auto":
        fstype = dev.info.get("TYPE") or fstype
    from . import devmapper, fsmods

    fsmods.ensure(ctx, fstype)
    path = devmapper.mount_path(dev)
    if passno:
        fsck = run_fsck(ctx, fstype, path, param="/etc/fstab /usr")
    else:
        fsck = "fs_passno 0: not checked"
    _mount(undo, path, contract.NEW_ROOT + "/usr", fstype, flags, data or None, param="/etc/fstab /usr")
    return ", /usr from %s (%s)" % (path, fsck)


def _seen(blockdev, ctx):
    seen = blockdev.describe(ctx.devices or [])
    if isinstance(seen, str):
        seen = seen.split("\n")
    return seen


def run(ctx):
    undo = Undo()
    try:
        if ctx.opts.live is not None:
            return mount_live(ctx, undo)
        return mount_plain(ctx, undo)
    except BaseException:
        undo.run()
        raise
