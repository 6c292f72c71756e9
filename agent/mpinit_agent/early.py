# The early stage: the kernel hands PID 1 an empty-ish initramfs with nothing mounted and no console on fds 0-2
# (only /dev/console when the image holds it). Mount the API filesystems, fill /dev, put the console on 0-2.
#
# Also here: the console log level (applied by main.py once the command line is parsed, because `quiet` and
# `loglevel=` may come from the baked-in config) and the keymap (busybox `loadkmap` format).
import sys

from micropython import const

from . import fsutil, log
from . import syscalls as sc
from .failure import BootError, oserror_text

_DEV_MODE_PUBLIC = const(0o666)
_DEV_MODE_PRIVATE = const(0o600)
# Nodes everyone may open (the same list as the kernel's devtmpfs defaults: drivers/char/mem.c devlist modes,
# drivers/tty/tty_io.c for tty and ptmx).
_PUBLIC = ("null", "zero", "full", "random", "urandom", "tty", "ptmx")


def is_mountpoint(path):
    """True when path is on another device than its parent (a rerun after resume() must not stack a second
    /dev over the first: Linux allows that and it would hide /dev/pts)."""
    try:
        return sc.lstat(path)[2] != sc.lstat(fsutil.dirname(path) or "/")[2]
    except OSError:
        return False


def _mount(source, target, fstype, flags, data, check=True):
    """Mount one API filesystem; already mounted (EBUSY) is fine. Raises BootError naming the mount. check=False:
    the caller knows nothing is mounted yet (the first run), so no lstat(2) pair first."""
    if check and is_mountpoint(target):
        return
    try:
        fsutil.makedirs(target)
    except OSError:
        pass  # exists as a mount point already (a rerun after resume()), or mount(2) will say what is wrong
    try:
        sc.mount(source, target, fstype, flags, data)
    except OSError as e:
        if e.args and e.args[0] == sc.EBUSY:
            return
        raise BootError("early", "mount -t %s %s %s failed: %s" % (fstype, source, target, oserror_text(e)),
                        tried=["mount(%r, %r, %r, 0x%x, %r)" % (source, target, fstype, flags, data)])


def mount_api_filesystems():
    """/proc, /sys, /dev (devtmpfs, else tmpfs + mknod like `mdev -s`), /run, /dev/pts, /dev/shm.

    Returns "devtmpfs" or "mdev" (how /dev was filled)."""
    nosuid_nodev_noexec = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
    # /proc is mounted first: when it is not a mount point yet, this is the first run and the kernel has mounted
    # nothing on the initramfs (its devtmpfs automount is for a disk root only, init/do_mounts.c), so the other
    # mounts need no check each. A rerun after resume() checks every one.
    again = is_mountpoint("/proc")
    _mount("proc", "/proc", "proc", nosuid_nodev_noexec, None, again)
    _mount("sysfs", "/sys", "sysfs", nosuid_nodev_noexec, None, again)
    how = "devtmpfs"
    fsutil.makedirs("/dev")
    try:
        if again and is_mountpoint("/dev"):
            how = "an earlier run"
        else:
            sc.mount("devtmpfs", "/dev", "devtmpfs", sc.MS_NOSUID, "mode=0755")
    except OSError as e:
        err = e.args[0] if e.args else 0
        if err == sc.EBUSY:
            pass
        elif err == sc.ENODEV:  # kernel built without CONFIG_DEVTMPFS
            _mount("tmpfs", "/dev", "tmpfs", sc.MS_NOSUID, "mode=0755", again)
            populate_dev()
            how = "mdev"
        else:
            raise BootError("early", "mount -t devtmpfs devtmpfs /dev failed: %s" % oserror_text(e))
    dev_links()
    # /run: systemd's mount-setup.c uses mode=0755 and nosuid,nodev for /run; the same here (issue 4).
    _mount("tmpfs", "/run", "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "mode=0755", again)
    # devpts: gid 5 (tty) and mode 0620, as systemd's mount-setup.c and util-linux's default.
    _mount("devpts", "/dev/pts", "devpts", sc.MS_NOSUID | sc.MS_NOEXEC, "mode=0620,gid=5", again)
    _mount("tmpfs", "/dev/shm", "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "mode=1777", again)
    fsutil.makedirs("/run/mpinit")
    return how


DEVKMSG_SYSCTL = "/proc/sys/kernel/printk_devkmsg"


def set_devkmsg(value, path=DEVKMSG_SYSCTL):
    """Writes to /dev/kmsg are rate limited to 10 lines per 5 s by default (kernel/printk/printk.c
    devkmsg_log_str "ratelimit"): a boot logs more than that, and the lines after the tenth vanished from the
    console. "on" while the agent runs; handoff puts "ratelimit" back for the real system. A printk.devkmsg= on the
    command line locks the setting (EINVAL): then it stays as the user chose. Returns True when written."""
    try:
        fsutil.write_text(path, value + "\n")
        return True
    except OSError:
        return False


def dev_links():
    """/dev/fd and /dev/std{in,out,err}, as udev/systemd create them (devtmpfs does not)."""
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        try:
            sc.symlink(target, "/dev/" + name)
        except OSError:
            pass  # exists already (devtmpfs of a newer kernel, or a rerun after resume())


def uevent_devname(path):
    """DEVNAME= of a sysfs uevent file (may contain a subdirectory, e.g. "input/event0"), or None."""
    text = fsutil.read_text(path, "")
    for line in text.split("\n"):
        if line.startswith("DEVNAME="):
            return line[8:]
    return None


def populate_dev():
    """mdev -s: one node per /sys/dev/{block,char}/MAJ:MIN entry, named by the device's uevent DEVNAME.

    Returns the number of nodes made. Existing nodes are kept."""
    made = 0
    for kind, ftype in (("block", sc.S_IFBLK), ("char", sc.S_IFCHR)):
        base = "/sys/dev/" + kind
        for entry in fsutil.listdir(base):
            majmin = entry.split(":")
            if len(majmin) != 2:
                continue
            try:
                devno = sc.makedev(int(majmin[0]), int(majmin[1]))
            except ValueError:
                continue
            name = uevent_devname(base + "/" + entry + "/uevent")
            if not name:
                try:
                    name = fsutil.basename(sc.readlink(base + "/" + entry))
                except OSError:
                    continue
            path = "/dev/" + name
            if "/" in name:
                fsutil.makedirs(fsutil.dirname(path))
            mode = _DEV_MODE_PUBLIC if name in _PUBLIC else _DEV_MODE_PRIVATE
            try:
                sc.mknod(path, ftype | mode, devno)
                made += 1
            except OSError as e:
                if not e.args or e.args[0] != sc.EEXIST:
                    log.warning("early: mknod %s: %s" % (path, oserror_text(e)))
    return made


def setup_console(path="/dev/console"):
    """A new session with the console as controlling terminal, on fds 0, 1 and 2. Returns True when done.

    Without a console (e.g. console=null) the boot goes on: the kernel log still works."""
    try:
        # O_CLOEXEC on the opened fd only: dup2() below gives 0-2 without it (dup2(2)), so programs inherit the
        # console as stdin/out/err and nothing else, even if the close below fails.
        fd = sc.open(path, sc.O_RDWR | sc.O_NOCTTY | sc.O_CLOEXEC)
    except OSError as e:
        log.warning("early: no console at %s: %s" % (path, oserror_text(e)))
        return False
    try:
        sc.setsid()
    except OSError:
        pass  # already a session leader
    try:
        sc.set_ctty(fd)
    except OSError as e:
        # A serial console whose driver refuses TIOCSCTTY still works for I/O; Ctrl-C will not.
        log.warning("early: %s as controlling terminal: %s" % (path, oserror_text(e)))
    for target in (0, 1, 2):
        if fd != target:
            sc.dup2(fd, target)
    if fd > 2:
        try:
            sc.close(fd)
        except OSError:
            pass  # fds 0-2 are set up; a leaked descriptor is harmless
    return True


def console_loglevel(quiet=False, loglevel=None, debug=False):
    """The console log level to set, or None to leave the kernel's: loglevel= wins, then debug (10, the kernel's
    CONSOLE_LOGLEVEL_DEBUG), then quiet (4, CONSOLE_LOGLEVEL_QUIET; include/linux/printk.h)."""
    if loglevel is not None:
        return int(loglevel)
    if debug:
        return 10
    if quiet:
        return 4
    return None


def set_console_loglevel(level, path="/proc/sys/kernel/printk"):
    """Writing one number to /proc/sys/kernel/printk sets console_loglevel only (Documentation/admin-guide/
    sysctl/kernel.rst, printk)."""
    if level is None:
        return
    try:
        fsutil.write_text(path, "%d\n" % level)
    except OSError as e:
        log.warning("early: console log level %d: %s" % (level, oserror_text(e)))


# busybox console-tools/loadkmap.c: "bkeymap", then MAX_NR_KEYMAPS flag bytes, then for each flag == 1 a table of
# NR_KEYS native-endian u16 values, each set with ioctl(KDSKBENT, struct kbentry {u8 table; u8 index; u16 value}).
_KMAP_MAGIC = b"bkeymap"
_MAX_NR_KEYMAPS = const(256)   # include/uapi/linux/keyboard.h
_NR_KEYS = const(128)          # as busybox: the first 128 keycodes (the kernel has NR_KEYS 256)


def parse_keymap(data, source="keymap"):
    """[(table, index, value)] from a busybox binary keymap; ValueError naming source when malformed."""
    if data[:7] != _KMAP_MAGIC:
        raise ValueError("%s: not a binary keymap (no 'bkeymap' magic)" % source)
    pos = 7 + _MAX_NR_KEYMAPS
    if len(data) < pos:
        raise ValueError("%s: truncated in the keymap flags" % source)
    flags = data[7:pos]
    order = sys.byteorder
    out = []
    for table in range(_MAX_NR_KEYMAPS):
        if flags[table] != 1:
            continue
        end = pos + 2 * _NR_KEYS
        if len(data) < end:
            raise ValueError("%s: truncated in table %d" % (source, table))
        for index in range(_NR_KEYS):
            i = pos + 2 * index
            out.append((table, index, int.from_bytes(data[i:i + 2], order)))
        pos = end
    return out


def load_keymap(path, fd=0):
    """Load the shipped keymap on the console (fd); returns the number of entries set, 0 when there is none."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return 0
    entries = parse_keymap(data, path)
    order = sys.byteorder
    arg = bytearray(4)
    for table, index, value in entries:
        arg[0] = table
        arg[1] = index
        arg[2:4] = value.to_bytes(2, order)
        sc.ioctl(fd, sc.KDSKBENT, arg)
    return len(entries)


def run(ctx):
    """The early stage. Returns a one-line summary for the timeline."""
    from . import contract

    sc.umask(0o022)
    how = mount_api_filesystems()
    set_devkmsg("on")
    log.setup()
    console = setup_console()
    keys = 0
    if console:
        try:
            keys = load_keymap(contract.KEYMAP_PATH)
        except (OSError, ValueError) as e:
            # A wrong keymap is worse than none only when typing; the boot itself goes on.
            log.warning("early: keymap %s not loaded: %s" % (contract.KEYMAP_PATH, e))
    ctx.console = console
    return "/dev by %s, console %s, keymap %s" % (how, "yes" if console else "none",
                                                  ("%d keys" % keys) if keys else "none")
