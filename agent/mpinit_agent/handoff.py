# The handoff stage: switch_root into contract.NEW_ROOT and exec the real init.
#
# Every check happens before the first irreversible step (the first MS_MOVE):
#   1. NEW_ROOT is a mount point (its st_dev differs from "/"): never switch into a half-built root;
#   2. the init to run exists and is executable inside NEW_ROOT, symlinks resolved inside NEW_ROOT (init=, else
#      /sbin/init, /etc/init, /bin/init, /bin/sh, the kernel's order in init/main.c kernel_init());
#   3. NEW_ROOT/{dev,proc,sys,run} exist (created when missing);
#   4. /run/mpinit/timeline.json and /etc/initrd-release are written.
# Then: MS_MOVE /dev /proc /sys /run into NEW_ROOT (rolled back if one fails); empty the initramfs (only when
# statfs("/") says ramfs/tmpfs, never crossing into another mount, directories too: util-linux switch_root.c and
# booster do the same); chdir NEW_ROOT; mount --move NEW_ROOT /; chroot("."); execv(init, [init] + init_args).
import json
import os

from micropython import const

from . import contract, fsutil, log
from . import syscalls as sc
from .failure import BootError, oserror_text

_MAXSYMLINKS = const(40)   # include/linux/namei.h MAXSYMLINKS
KERNEL_INITS = ("/sbin/init", "/etc/init", "/bin/init", "/bin/sh")
MOVED = ("/dev", "/proc", "/sys", "/run")

INITRD_RELEASE_TEXT = 'NAME="mpinit"\nID=mpinit\nVERSION_ID=1\nPRETTY_NAME="mpinit initramfs"\n'


def resolve_in_root(root, path):
    """path resolved inside root as if root were "/" (absolute symlinks point into root, ".." stops at root).

    Returns the host path of the final target; OSError(ENOENT/ELOOP/ENOTDIR) when it cannot be resolved."""
    parts = [p for p in path.split("/") if p]
    done = []          # resolved components below root
    links = 0
    while parts:
        name = parts.pop(0)
        if name == ".":
            continue
        if name == "..":
            if done:
                done.pop()
            continue
        host = root + "/" + "/".join(done + [name])
        st = sc.lstat(host)  # raises ENOENT
        if st[0] & sc.S_IFMT == sc.S_IFLNK:
            links += 1
            if links > _MAXSYMLINKS:
                raise OSError(sc.ELOOP, path)
            target = sc.readlink(host)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        if parts and st[0] & sc.S_IFMT != sc.S_IFDIR:
            raise OSError(sc.ENOTDIR, host)
        done.append(name)
    return root + "/" + "/".join(done) if done else root


def check_executable(root, path):
    """None when path is a regular executable file inside root, else the reason (a short string)."""
    try:
        host = resolve_in_root(root, path)
        mode = sc.lstat(host)[0]
    except OSError as e:
        return oserror_text(e)
    if mode & sc.S_IFMT != sc.S_IFREG:
        return "not a regular file"
    if not mode & 0o111:
        return "not executable (mode %o)" % (mode & 0o7777)
    return None


def choose_init(root, wanted):
    """(init path, [tried lines]). init= is the only candidate when given (the kernel panics rather than falling
    back when init= fails); else the kernel's list. init is None when nothing fits."""
    candidates = [wanted] if wanted else list(KERNEL_INITS)
    tried = []
    for c in candidates:
        why = check_executable(root, c)
        if why is None:
            return c, tried
        tried.append("%s%s: %s" % (root, c, why))
    return None, tried


def _dev_of(path):
    return sc.lstat(path)[2]


def write_state(ctx, init):
    """timeline.json (with this stage's entry so far) and /etc/initrd-release in the initramfs."""
    entries = list(ctx.timeline)
    now = sc.uptime_ms()
    entries.append({"stage": "handoff", "start_ms": ctx.stage_start, "duration_ms": now - ctx.stage_start,
                    "result": "exec %s" % init})
    fsutil.makedirs(contract.RUN_DIR)
    fsutil.write_atomic(contract.TIMELINE_PATH, json.dumps(entries))
    if not fsutil.isfile(contract.INITRD_RELEASE):  # `mpinit pack` puts one in every image (with its version)
        fsutil.makedirs(fsutil.dirname(contract.INITRD_RELEASE))
        fsutil.write_atomic(contract.INITRD_RELEASE, INITRD_RELEASE_TEXT)


def move_mounts(new_root, mounts=MOVED):
    """MS_MOVE each mount into new_root; on a failure the ones moved are moved back and OSError is raised."""
    moved = []
    for m in mounts:
        try:
            sc.mount(m, new_root + m, None, sc.MS_MOVE, None)
        except OSError as e:
            for back in reversed(moved):
                try:
                    sc.mount(new_root + back, back, None, sc.MS_MOVE, None)
                except OSError as e2:
                    log.error("handoff: moving %s back failed: %s" % (back, oserror_text(e2)))
            raise OSError(e.args[0] if e.args else sc.EIO, "mount --move %s %s%s" % (m, new_root, m))
        moved.append(m)
    return moved


def empty_dir(path, root_dev, keep):
    """Delete everything below path that is on root_dev (never crossing into another mount); keep: paths left
    alone (the new root). Errors are logged, not raised: this runs after the point of no return.

    Returns the number of entries removed."""
    removed = 0
    base = path.rstrip("/") + "/"
    for name, ftype in _entries(path):
        full = base + name
        if full in keep:
            continue
        if ftype == sc.S_IFDIR or not ftype:
            # Only a directory can be a mount point here (or the type is unknown): lstat for its device. Files and
            # links (the modules, most of the entries) are removed without a syscall of their own first.
            try:
                st = sc.lstat(full)
            except OSError:
                continue
            if st[2] != root_dev:
                continue  # a mount point: not ours to empty
            ftype = st[0] & sc.S_IFMT
        if ftype == sc.S_IFDIR:
            removed += empty_dir(full, root_dev, keep)
            try:
                os.rmdir(full)
                removed += 1
            except OSError as e:
                log.debug("handoff: rmdir %s: %s" % (full, oserror_text(e)))
        else:
            try:
                os.remove(full)
                removed += 1
            except OSError as e:
                log.debug("handoff: rm %s: %s" % (full, oserror_text(e)))
    return removed


def _entries(path):
    """(name, S_IFMT type or 0 when unknown) of a directory's entries, unsorted; [] when unreadable. MicroPython's
    os.ilistdir gives readdir(3)'s d_type (extmod/vfs_posix.c), so no lstat(2) per entry."""
    ilist = getattr(os, "ilistdir", None)
    try:
        if ilist is not None:
            return [(e[0], e[1] & sc.S_IFMT) for e in ilist(path)]
        out = []
        for name in os.listdir(path):  # CPython (the fake machine): the type from lstat
            try:
                out.append((name, sc.lstat(path.rstrip("/") + "/" + name)[0] & sc.S_IFMT))
            except OSError:
                pass
        return out
    except OSError:
        return []


def peak_memory_kb(status=None):
    """PID 1's peak resident set size in kB: VmHWM of /proc/self/status (proc(5); status: its text, read when
    None), or None. The hand-off line shows it (what the initramfs needed of the machine's RAM)."""
    if status is None:
        status = fsutil.read_text("/proc/self/status", "")
    for line in status.split("\n"):
        if line.startswith("VmHWM:"):
            words = line[6:].split()
            if words and words[0].isdigit():
                return int(words[0])
    return None


def is_initramfs(statfs_type):
    return statfs_type == sc.RAMFS_MAGIC or statfs_type == sc.TMPFS_MAGIC


def run(ctx):
    root = contract.NEW_ROOT
    opts = ctx.opts
    step = getattr(ctx, "handoff_step", 0)
    if step == 0:
        init, fs_type, root_dev = _check(ctx, root, opts)
        ctx.handoff_init = init
        ctx.handoff_empty = is_initramfs(fs_type)
        ctx.handoff_root_dev = root_dev
    init = ctx.handoff_init
    argv = [init] + list(opts.init_args or [])
    # ---- irreversible from here on. Each step is recorded in ctx.handoff_step, so that resume() after a failure
    # continues with the step that failed instead of redoing (and failing on) the ones already done.
    if step < 1:
        peak = peak_memory_kb()
        log.notice("handoff: switching to %s, exec %s%s" % (root, " ".join(argv),
                                                            " (VmHWM: %d kB)" % peak if peak else ""))
        from . import early

        early.set_devkmsg("ratelimit")  # the kernel's default, for the real system (early set "on")
        try:
            move_mounts(root)
        except OSError as e:
            raise BootError("handoff", "moving the API filesystems into %s failed: %s" % (root, oserror_text(e)))
        ctx.handoff_step = step = 1
    if step < 2:
        if ctx.handoff_empty:
            empty_dir("/", ctx.handoff_root_dev, (root,))
        else:
            log.warning("handoff: / is not ramfs/tmpfs: the initramfs is left as it is")
        ctx.handoff_step = step = 2
    try:
        if step < 3:
            sc.chdir(root)
            ctx.handoff_step = step = 3
        if step < 4:
            sc.mount(".", "/", None, sc.MS_MOVE, None)
            ctx.handoff_step = step = 4
        if step < 5:
            sc.chroot(".")
            sc.chdir("/")
            ctx.handoff_step = step = 5
    except OSError as e:
        what = ("chdir %s" % root, "mount --move . /", "chroot .")[step - 2]
        raise BootError("handoff", "%s failed: %s" % (what, oserror_text(e)),
                        tried=["resume() continues with this step"])
    errors = []
    for path in [init] + ([c for c in KERNEL_INITS if c != init] if not opts.init else []):
        try:
            sc.execv(path, [path] + argv[1:])
            return "exec %s" % " ".join([path] + argv[1:])  # only a recording implementation returns
        except OSError as e:
            errors.append("execv %s: %s" % (path, oserror_text(e)))
    # Only a broken binary (wrong architecture, missing interpreter) gets here; the REPL still runs from memory.
    raise BootError("handoff", "exec of the init failed", param="init=", tried=errors)


def _check(ctx, root, opts):
    """Every check before the point of no return; writes the state files. Returns (init, statfs type of /, st_dev
    of /)."""
    # 1. a mounted new root
    try:
        if _dev_of(root) == _dev_of("/"):
            raise BootError("handoff", "%s is not a mount point: the new root was never mounted" % root)
    except OSError as e:
        raise BootError("handoff", "cannot stat %s: %s" % (root, oserror_text(e)))
    # 2. an init to run
    init, tried = choose_init(root, opts.init)
    if init is None:
        raise BootError("handoff", "no init to run in the new root", param=("init=%s" % opts.init) if opts.init
                        else "init=", tried=tried,
                        seen=["%s holds: %s" % (root, " ".join(fsutil.listdir(root)) or "(nothing)")])
    # 3. mount points for the moved filesystems
    for m in MOVED:
        target = root + m
        if not fsutil.isdir(target):
            try:
                fsutil.makedirs(target)
            except OSError as e:
                raise BootError("handoff", "cannot create %s for mount --move %s: %s" % (target, m,
                                                                                        oserror_text(e)))
    # 4. whether we may empty the initramfs (decided before anything moves); state for the real system
    try:
        fs_type = sc.statfs("/")[0]
        root_dev = _dev_of("/")
    except OSError as e:
        raise BootError("handoff", "statfs/lstat of / failed: %s" % oserror_text(e))
    try:
        write_state(ctx, init)
    except OSError as e:
        raise BootError("handoff", "cannot write %s: %s" % (contract.TIMELINE_PATH, oserror_text(e)))
    return init, fs_type, root_dev
