# The exitrd: what runs at the very end of the live system's shutdown, so that a persistent layer is left clean.
#
# Why: the live root is an overlay whose upper layer is on the persistence filesystem. systemd-shutdown(8) cannot
# unmount "/" (it runs from it) and only remounts it read-only; remounting an overlay read-only does not remount
# its upper filesystem, and unmounting /run/mpinit/persist only detaches that mount point (the overlay keeps the
# filesystem alive through its private clone of the upper mount). The persistence filesystem would be left
# mounted read-write at power-off: dirty, with a journal to replay. The way out is systemd's "exitrd"
# protocol, as dracut's shutdown module uses it: when /run/initramfs/shutdown is executable, systemd-shutdown
# (src/shutdown/shutdown.c) ends its unmount loop, pivots into /run/initramfs with the old root at /oldroot
# (switch_root() with /proc, /sys, /dev and /run carried over) and executes /shutdown as PID 1 with its own
# arguments: argv[1] is the verb "reboot", "poweroff", "halt", "kexec" or "exit" ("Our interface to initrd
# promises it'll be there"); options such as --log-level follow and are ignored here.
#
# What /init is asked to do as the exitrd (agent/native/initmain.c runs start() when PID 1 runs the binary under
# the name "shutdown"): unmount everything at and below /oldroot, deepest first, round after round while a round
# makes progress. The overlay on /oldroot cannot go while /oldroot/run is mounted, and /oldroot/run holds the
# medium, which stays busy while the overlay's squashfs keeps its loop device open: what is left directly below
# /oldroot is moved to /oldsys (as dracut's shutdown does), and the rounds go on over both. With the overlay go the
# superblocks of its upper and lower layers (the persistence filesystem is put away cleanly: "EXT4-fs (vda2):
# unmounting filesystem"), the autoclear loop devices, then the medium. What is still mounted then is remounted
# read-only and, as a last resort, detached lazily (MNT_DETACH: gone from the tree, put away once its last user
# is, and every other process is gone); loop devices still bound are released; sync; reboot(2) as the verb says.
# PID 1 must never return: if reboot(2) fails, it sleeps.
#
# install() puts the binary there at boot: the persistence stage copies /init to /run/initramfs/shutdown when it
# mounted a layer read-write (handoff moves /run into the live root, so the copy survives the initramfs' removal).
from micropython import const

from . import contract, fsutil, log
from . import syscalls as sc
from .failure import oserror_text

OLDROOT = "/oldroot"     # where systemd-shutdown's switch_root() puts the live root
OLDSYS = "/oldsys"       # where what is left directly below it is moved (dracut's name)
_ROUNDS = const(8)       # unmount rounds at most; one pass per nesting level is what a tree normally needs
_PAUSE_MS = const(50)    # between rounds: an autoclear loop device is released asynchronously on older kernels
_COPY_CHUNK = const(1 << 20)

# systemd-shutdown's verbs (src/shutdown/shutdown.c main()). kexec: we carry no kexec tool, so reboot, as
# systemd-shutdown itself does when kexec fails; exit: "We cannot exit() on the host", so power off.
VERBS = ("reboot", "poweroff", "halt", "kexec", "exit")


def reboot_how(verb):
    """The reboot(2) command for a verb; an unknown verb reboots (dracut's shutdown.sh does the same)."""
    if verb == "poweroff" or verb == "exit":
        return sc.RB_POWER_OFF
    if verb == "halt":
        return sc.RB_HALT_SYSTEM
    return sc.RB_AUTOBOOT


def mount_points(text, under):
    """The mount points at or below `under` in mountinfo text, in the table's order (a mount is listed after the
    one it sits on). Malformed lines are skipped."""
    prefix = under.rstrip("/") + "/"
    found = []
    for line in text.split("\n"):
        f = line.split(" ")
        if len(f) < 5:
            continue
        mp = fsutil.unescape_octal(f[4])
        if mp == under or mp.startswith(prefix):
            found.append(mp)
    return found


def unmount_tree(unders, rounds=_ROUNDS):
    """Unmount everything at and below each path in `unders`, deepest first, repeating while a round makes
    progress. Returns (number unmounted, {mount point: last error text} of those left)."""
    done = 0
    errors = {}
    for _ in range(rounds):
        left = _below(unders)
        if not left:
            return done, {}
        progress = False
        # Deepest first: a child's path is longer than its parent's (mount IDs do not say it: a mount moved under
        # another keeps its older ID, as /run does under the live root).
        for mp in sorted(left, key=len, reverse=True):
            try:
                sc.umount(mp, 0)
                done += 1
                progress = True
                errors.pop(mp, None)
                log.info("shutdown: unmounted %s" % mp)
            except OSError as e:
                errors[mp] = oserror_text(e)
        if not progress:
            break
        sc.sleep_ms(_PAUSE_MS)
    left = _below(unders)
    return done, dict((mp, errors.get(mp, "still mounted")) for mp in left)


def _below(unders):
    text = fsutil.read_text("/proc/self/mountinfo", "")
    found = []
    for under in unders:
        found.extend(mount_points(text, under))
    return found


def move_out(left, oldroot, oldsys):
    """Move the mounts left directly below oldroot (e.g. /oldroot/run, with the medium and the persistence
    volume below it) to oldsys (dracut's shutdown moves /oldroot/{sys,proc,run,dev} the same way): the overlay on
    oldroot is busy while it has them, and they are busy while the overlay holds the squashfs and its loop
    device on the medium. Returns the number moved."""
    moved = 0
    prefix = oldroot.rstrip("/") + "/"
    for mp in sorted(left, key=len):
        rest = mp[len(prefix):] if mp.startswith(prefix) else ""
        if not rest or "/" in rest:
            continue
        dest = oldsys + "/" + rest
        try:
            fsutil.makedirs(dest)
            sc.mount(mp, dest, None, sc.MS_MOVE, None)
            moved += 1
            log.info("shutdown: moved %s to %s" % (mp, dest))
        except OSError as e:
            log.warning("shutdown: mount --move %s %s: %s" % (mp, dest, oserror_text(e)))
    return moved


def last_resort(left):
    """For the mounts still there: each remounted read-only (children first: the data is safe at once), then the
    topmost ones detached lazily (MNT_DETACH takes the subtree with it; each filesystem is put away when its last
    user is, and every other process is gone). Returns one line per mount point: its error and what was done."""
    lines = []
    done = {}
    for mp in sorted(left, key=len, reverse=True):
        try:
            sc.mount(None, mp, None, sc.MS_REMOUNT | sc.MS_RDONLY, None)
            done[mp] = "remounted read-only"
        except OSError as e:
            done[mp] = "read-only remount failed (%s)" % oserror_text(e)
    for mp in left:
        if any(mp.startswith(top.rstrip("/") + "/") for top in left if top != mp):
            continue  # below another one left: detached with it
        try:
            sc.umount(mp, sc.MNT_DETACH)
            done[mp] += ", detached lazily"
        except OSError as e:
            done[mp] += ", lazy detach failed (%s)" % oserror_text(e)
    for mp in left:
        lines.append("%s: %s: %s" % (mp, left[mp], done[mp]))
    return lines


def release_loops(sys_block="/sys/block"):
    """LOOP_CLR_FD on every loop device still bound to a file (autoclear ones are gone with their filesystem).
    Returns the devices released."""
    released = []
    for name in fsutil.listdir(sys_block):
        if not name.startswith("loop") or not fsutil.exists("%s/%s/loop/backing_file" % (sys_block, name)):
            continue
        try:
            sc.loop_detach("/dev/" + name)
            released.append(name)
        except OSError as e:
            log.warning("shutdown: releasing /dev/%s: %s" % (name, oserror_text(e)))
    return released


def run(verb, oldroot=OLDROOT, oldsys=OLDSYS):
    """Everything but the final reboot(2): returns the reboot command."""
    how = reboot_how(verb)
    sc.sync()
    done, left = unmount_tree([oldroot])
    if left and move_out(left, oldroot, oldsys):
        more, left = unmount_tree([oldroot, oldsys])
        done += more
    notes = []
    if left:
        notes = last_resort(left)
        for line in notes:
            log.warning("shutdown: %s" % line)
    loops = release_loops()
    sc.sync()
    summary = "mpinit: shutdown: %s: unmounted %d filesystems below %s, %s%s" % (
        verb or "(no verb)", done, oldroot, ("%d left: %s" % (len(notes), "; ".join(notes))) if notes
        else "none left", (", released %s" % " ".join(loops)) if loops else "")
    log.console(summary)
    return how


def start(verb="", oldroot=OLDROOT, oldsys=OLDSYS):
    """The entry point of the exitrd (initmain.c, as PID 1 named "shutdown"). Never returns."""
    log.setup()
    if verb not in VERBS:
        log.console("mpinit: shutdown: unknown verb %r, rebooting" % verb)
    try:
        how = run(verb, oldroot, oldsys)
    except BaseException as e:  # noqa: BLE001 - PID 1: whatever happened, the machine still goes down
        log.console("mpinit: shutdown: %s: %s; going down anyway" % (type(e).__name__, e))
        how = reboot_how(verb)
        try:
            sc.sync()
        except OSError:
            pass
    try:
        sc.reboot(how)
    except OSError as e:
        log.console("mpinit: shutdown: reboot(2) failed: %s" % oserror_text(e))
    while True:  # PID 1 exiting would panic the kernel
        sc.sleep_ms(60000)


# ---- at boot: leaving the exitrd in place ----------------------------------------------------------------------

def install(src=contract.INIT_PATH, dest=contract.SHUTDOWN_PATH):
    """Copy the /init binary to /run/initramfs/shutdown (mode 0755), written under a temporary name and renamed.
    Returns the bytes copied; OSError on failure."""
    import os

    fsutil.makedirs(fsutil.dirname(dest), 0o755)
    tmp = dest + ".tmp"
    src_fd = sc.open(src, sc.O_RDONLY)
    try:
        dst_fd = sc.open(tmp, sc.O_WRONLY | sc.O_CREAT | sc.O_TRUNC, 0o700)
        try:
            total = 0
            while True:
                n = sc.copy_range(src_fd, dst_fd, _COPY_CHUNK)
                if n <= 0:
                    break
                total += n
        finally:
            sc.close(dst_fd)
    finally:
        sc.close(src_fd)
    size = sc.lstat(src)[6]
    if total != size:
        os.remove(tmp)
        raise OSError(sc.EIO, "short copy of %s: %d of %d bytes" % (src, total, size))
    sc.chmod(tmp, 0o755)
    os.rename(tmp, dest)
    return total
