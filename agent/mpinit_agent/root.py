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


class _Undo:
    """Mounts and loop devices made so far, released in reverse order when the stage fails."""

    def __init__(self):
        self.steps = []

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
                else:
                    sc.loop_detach(what)
            except OSError as e:
                log.warning("root: undo %s %s: %s" % (kind, what, oserror_text(e)))


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
    fsmods.ensure(ctx, "squashfs")
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
    _mount(undo, source, contract.IMAGE_MOUNT, "squashfs", sc.MS_RDONLY, None)
    ctx.image_loop = source
    size = ctx.opts.overlay_size or ctx.config["overlay_size"]
    _mount(undo, "tmpfs", contract.COW_MOUNT, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "size=%s,mode=0755" % size,
           param="rd.live.overlay.size=%s" % size)
    fsutil.makedirs(contract.COW_MOUNT + "/upper")
    fsutil.makedirs(contract.COW_MOUNT + "/work")
    _mount(undo, "overlay", contract.NEW_ROOT, "overlay", 0, overlay_data(contract.IMAGE_MOUNT, contract.COW_MOUNT))
    return "overlay of %s (upper: tmpfs size=%s)" % (image, size)


def fsck_exit_meaning(code):
    """'ok' | 'reboot' | 'fail' for an fsck exit code (negative: killed by that signal), per fsck(8)."""
    if 0 <= code <= _FSCK_OK:
        return "ok"
    if code == _FSCK_REBOOT:
        return "reboot"
    return "fail"


def run_fsck(ctx, fstype, device, fsck_dir="/sbin"):
    """fsck -a when /sbin/fsck.<type> is in the initramfs. Returns a summary; reboots on exit code 2 (fsck(8):
    "errors corrected, system should be rebooted"); BootError on 4 and above."""
    tool = "%s/fsck.%s" % (fsck_dir, fstype)
    if not fsutil.exists(tool):
        return "no fsck.%s" % fstype
    argv = [tool, "-a", device]
    log.info("root: running %s" % " ".join(argv))
    from . import proc

    try:
        code = proc.run(argv)
    except OSError as e:
        raise BootError("root", "cannot run %s: %s" % (tool, oserror_text(e)), param="root=")
    meaning = fsck_exit_meaning(code)
    if meaning == "ok":
        return "fsck.%s exit %d" % (fstype, code)
    if meaning == "reboot":
        log.notice("root: %s corrected errors and asks for a reboot" % tool)
        sc.sync()
        sc.reboot(sc.RB_AUTOBOOT)
        raise BootError("root", "%s asked for a reboot and reboot(2) returned" % tool, param="root=")
    what = ("killed by signal %d" % -code) if code < 0 else ("exit code %d" % code)
    raise BootError("root", "%s %s: %s; repair the filesystem by hand (e.g. %s -f %s in this shell's spawn)"
                    % (tool, device, what, tool, device), param="root=",
                    tried=[" ".join(argv)], seen=["fsck(8): 4 = errors left uncorrected, 8 = operational error"])


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
    fsck = run_fsck(ctx, types[0], dev.path)
    from . import fsmods

    for t in types:
        fsmods.ensure(ctx, t)
    tried = []
    errors = []
    fsutil.makedirs(contract.NEW_ROOT)
    for t in types:
        tried.append("mount -t %s %s %s flags=0x%x data=%r" % (t, dev.path, contract.NEW_ROOT, flags, data))
        try:
            sc.mount(dev.path, contract.NEW_ROOT, t, flags, data or None)
        except OSError as e:
            errors.append("%s: %s" % (t, oserror_text(e)))
            continue
        undo.mounted(contract.NEW_ROOT)
        usr = mount_usr(ctx, undo)
        return "%s (%s, %s)%s" % (dev.path, t, fsck, usr)
    raise BootError("root", "cannot mount %s" % dev.path, param="rootfstype= / rootflags=", tried=tried,
                    seen=errors)


def fstab_entry(text, mountpoint):
    """(spec, fstype, options) of the fstab line mounting mountpoint, or None (fstab(5): spaces/tabs, # comments,
    octal escapes such as \\040 in fields)."""
    for line in text.split("\n"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 3:
            continue
        if _unescape(fields[1]).rstrip("/") == mountpoint.rstrip("/"):
            return (_unescape(fields[0]), fields[2], fields[3] if len(fields) > 3 else "defaults")
    return None


def _unescape(field):
    if "\\" not in field:
        return field
    out = ""
    i = 0
    while i < len(field):
        c = field[i]
        if c == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out += chr(int(field[i + 1:i + 4], 8))
            i += 4
            continue
        out += c
        i += 1
    return out


def mount_usr(ctx, undo):
    """Mount /usr from the new root's fstab when it names one (systemd and the DIY-initramfs guide expect /usr
    mounted before the real init starts). Returns a note for the summary."""
    from . import blockdev

    text = fsutil.read_text(contract.NEW_ROOT + "/etc/fstab", "")
    entry = fstab_entry(text, "/usr")
    if entry is None:
        return ""
    spec, fstype, options = entry
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
        raise BootError("root", "/usr is a separate filesystem (%s in %s/etc/fstab) that was not found"
                        % (spec, contract.NEW_ROOT), param="/etc/fstab /usr",
                        seen=_seen(blockdev, ctx))
    if fstype == "auto":
        fstype = dev.info.get("TYPE") or fstype
    from . import fsmods

    fsmods.ensure(ctx, fstype)
    _mount(undo, dev.path, contract.NEW_ROOT + "/usr", fstype, flags, data or None, param="/etc/fstab /usr")
    return ", /usr from %s" % dev.path


def _seen(blockdev, ctx):
    seen = blockdev.describe(ctx.devices or [])
    if isinstance(seen, str):
        seen = seen.split("\n")
    return seen


def run(ctx):
    undo = _Undo()
    try:
        if ctx.opts.live is not None:
            return mount_live(ctx, undo)
        return mount_plain(ctx, undo)
    except BaseException:
        undo.run()
        raise
