# The kernel's own words for a failure: the kernel log lines emitted since a stage started, for the failure report.
#
# A mount that fails with EINVAL says only "errno 22"; the kernel log says why ("EXT4-fs (vda1): bad geometry: block
# count 262144 exceeds size of device (65536 blocks)"). main.stage() calls mark() when a stage starts: one lseek(2)
# on a /dev/kmsg reader opened once (O_RDONLY|O_NONBLOCK|O_CLOEXEC, so the real init never inherits it). On
# /dev/kmsg, lseek(fd, 0, SEEK_END) moves the reader after the last record (Documentation/ABI/testing/dev-kmsg);
# at a failure, since() reads the records logged after it, one record per read(2), until EAGAIN. The agent's own
# "mpinit:" lines are left out (the report says those things itself); the last MAX_LINES lines are kept, each cut
# at MAX_LINE characters, at most MAX_BYTES in all, so a stage that waited 30 s for a device does not bury the
# report under the kernel's chatter.
#
# kmod asks about one call: step() before finit_module(2), after(pos) when it failed (what the kernel said about that
# module). step() must cost next to nothing, since every module load pays it and almost every load succeeds: it is
# one lseek(2) to the end on a second reader of its own, nothing read or parsed (reading the stage reader instead
# parsed every line the kernel logged during the modules stage, in Python, load after load). after() reads that
# second reader from there; the stage reader is left alone, so since() shows the same records again.
#
# Before the early stage mounts /dev there is no /dev/kmsg: mark() is then a failed open(2) and since() gives [].
from micropython import const

from . import syscalls as sc

PATH = "/dev/kmsg"
MAX_LINES = const(12)
MAX_LINE = const(200)
MAX_BYTES = const(1600)
# One record per read(2), which fails with EINVAL when the buffer cannot hold it: a record's text is at most
# PRINTK_MESSAGE_MAX (2048 in 6.x, kernel/printk/internal.h) plus its "prio,seq,usec,flags;" prefix and the
# continuation lines of its dictionary.
_READ = const(8192)
_EAGAIN = const(11)        # <errno.h>: nothing more to read on a non-blocking reader
_EPIPE = const(32)         # <errno.h>: records were overwritten before we read them; the next read goes on

_fd = -1
_step_fd = -1   # step()/after()'s own reader
_kept = []      # records read since the last mark() (since() returns them all; a long wait keeps the newest)
_dropped = 0    # how many of them fell off the front of _kept


def mark():
    """Remember where the kernel log ends now; True when there is a reader. Cost: one lseek(2) (plus one open(2)
    the first time, or while /dev/kmsg does not exist yet)."""
    global _fd, _dropped
    del _kept[:]
    _dropped = 0
    try:
        if _fd < 0:
            _fd = sc.open(PATH, sc.O_RDONLY | sc.O_NONBLOCK | sc.O_CLOEXEC)
        sc.lseek(_fd, 0, sc.SEEK_END)
        return True
    except OSError:
        close()
        return False


def close():
    global _fd, _step_fd
    for fd in (_fd, _step_fd):
        if fd >= 0:
            try:
                sc.close(fd)
            except OSError:
                pass
    _fd = -1
    _step_fd = -1


def parse(rec):
    """One /dev/kmsg record (bytes or str) "prio,seq,usec,flags;text\\n[ KEY=value\\n...]" -> (level, usec, text)
    with level = prio & 7, or None for what is not such a record. Never raises for any input."""
    if isinstance(rec, (bytes, bytearray)):
        try:
            rec = bytes(rec).decode()
        except UnicodeError:  # the kernel escapes bytes >= 127 as \xNN, so only a broken reader gets here
            rec = "".join([chr(b) if b < 128 else "?" for b in rec])
    nl = rec.find("\n")
    if nl >= 0:
        rec = rec[:nl]        # the dictionary's continuation lines (" KEY=value") are not the message
    semi = rec.find(";")
    if semi < 0:
        return None
    fields = rec[:semi].split(",")
    if len(fields) < 4:
        return None
    try:
        prio = int(fields[0])
        usec = int(fields[2])
    except ValueError:
        return None
    if prio < 0 or usec < 0:
        return None
    return prio & 7, usec, rec[semi + 1:]


def line(usec, text, limit=MAX_LINE):
    """A record as dmesg shows it: "[    1.234567] text", cut at limit characters (0: whole)."""
    if limit and len(text) > limit:
        text = text[:limit - 3] + "..."
    return "[%5d.%06d] %s" % (usec // 1000000, usec % 1000000, text)


def records(fd):
    """Each record a non-blocking /dev/kmsg reader has from where it stands (bytes, one read(2) each), until EAGAIN.
    Shared by the rescue shell's dmesg() and capture.py."""
    while True:
        try:
            rec = sc.read(fd, _READ)
        except OSError as e:
            if e.args and e.args[0] == _EPIPE:
                continue
            return            # EAGAIN: nothing more (or a reader that broke: what was read is still worth showing)
        if not rec:
            return
        yield rec


def _read_new():
    """Every record logged since the last read, as dmesg lines (ours left out), appended to _kept."""
    global _dropped
    if _fd < 0:
        return
    for rec in records(_fd):
        r = parse(rec)
        if r is None or r[2].startswith("mpinit:"):
            continue
        _kept.append(line(r[1], r[2]))
        if len(_kept) > 4 * MAX_LINES:     # a long wait: only the newest can be shown anyway
            _kept.pop(0)
            _dropped += 1


def step():
    """Remember where the kernel log ends now, for after(): one lseek(2) (plus one open(2) the first time, or while
    there is no /dev/kmsg yet, when after() then says nothing). Returns a position token for after()."""
    global _step_fd
    try:
        if _step_fd < 0:
            _step_fd = sc.open(PATH, sc.O_RDONLY | sc.O_NONBLOCK | sc.O_CLOEXEC)
        sc.lseek(_step_fd, 0, sc.SEEK_END)
    except OSError:
        if _step_fd >= 0:
            try:
                sc.close(_step_fd)
            except OSError:
                pass
        _step_fd = -1
    return 0


def after(pos=0, n=2):
    """The last n (0: all) kernel lines logged since the last step() (what the kernel said about that one call), our
    own "mpinit:" lines left out. pos is step()'s token (kept for the interface; the reader holds the position)."""
    if _step_fd < 0:
        return []
    new = []
    for rec in records(_step_fd):
        r = parse(rec)
        if r is None or r[2].startswith("mpinit:"):
            continue
        new.append(line(r[1], r[2]))
        if n and len(new) > n:
            new.pop(0)
    return new


def since(max_lines=MAX_LINES, max_bytes=MAX_BYTES):
    """The kernel's lines logged since the last mark() (oldest first, the newest max_lines kept within max_bytes),
    and how many were left out: (lines, omitted)."""
    if _fd < 0:
        return [], 0
    global _dropped
    _read_new()
    out = list(_kept)
    omitted = _dropped
    while len(out) > max_lines:
        out.pop(0)
        omitted += 1
    total = 0
    keep = len(out)
    while keep > 0 and total + len(out[keep - 1]) + 1 <= max_bytes:
        total += len(out[keep - 1]) + 1
        keep -= 1
    omitted += keep
    del _kept[:]    # shown once: a second failure of the same stage (after resume()) shows only what is new
    _dropped = 0
    return out[keep:], omitted


def add_to(err):
    """Put the kernel's lines since the stage started into the failure (err.kernel, printed under "seen")."""
    lines, omitted = since()
    if not lines:
        return err
    if omitted:
        lines.insert(0, "(%d earlier lines left out: dmesg() shows them all)" % omitted)
    err.kernel = lines
    return err
