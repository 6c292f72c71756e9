# Logging for PID 1: lines go to /dev/kmsg as "<level>mpinit: message", so they land in the kernel log with the
# kernel's timestamps and reach the console according to the console log level (quiet hides info).
# /dev/kmsg is opened close-on-exec (O_CLOEXEC): every program PID 1 starts would otherwise inherit it as fd 3
# (lvm warns "File descriptor 3 (/dev/kmsg) leaked on lvm invocation", lvm2 lib/commands/toolcontext.c).
import sys

from micropython import const

from . import syscalls as sc

ERR = const(3)
WARNING = const(4)
NOTICE = const(5)
INFO = const(6)
DEBUG = const(7)

# printk.c: a /dev/kmsg write longer than LOG_LINE_MAX (1024 minus the prefix) is cut by the kernel; we cut
# first, at a character boundary, so the line stays valid UTF-8.
_MAX_LINE = const(976)

_kmsg = None      # an fd of /dev/kmsg (written with one write(2) per record), or a file object on a host
_debug = False
_fallback = None  # where lines go when /dev/kmsg cannot be opened (before /dev exists, or on a host)


def setup(kmsg_path="/dev/kmsg", debug=False):
    """Open /dev/kmsg for writing; on failure, log lines go to stderr instead."""
    global _kmsg, _debug, _fallback
    _debug = debug
    if isinstance(_kmsg, int):
        try:
            sc.close(_kmsg)  # a second setup() (the exitrd, a test): no second descriptor left behind
        except OSError:
            pass
    _kmsg = None
    _fallback = sys.stderr
    try:
        _kmsg = sc.open(kmsg_path, sc.O_WRONLY | sc.O_CLOEXEC)
        _fallback = None
    except OSError as e:
        if e.args and e.args[0] == sc.ENOSYS:
            # No syscall implementation: agent code used as a library on a host (bench hooks, tests), where no
            # program is spawned, so a plain file is as good.
            try:
                _kmsg = open(kmsg_path, "w")
                _fallback = None
            except OSError:
                pass


def set_debug(on):
    global _debug
    _debug = on


def _emit(level, msg):
    if level == DEBUG and not _debug:
        return
    if len(msg) > _MAX_LINE:
        msg = msg[:_MAX_LINE]
    for line in msg.split("\n"):
        text = "<%d>mpinit: %s\n" % (level, line)
        if _kmsg is not None:
            try:
                if isinstance(_kmsg, int):
                    sc.write(_kmsg, text.encode())  # one write(2), one record (printk.c devkmsg_write)
                else:
                    _kmsg.write(text)
                    _kmsg.flush()
                continue
            except OSError:
                pass
        if _fallback is not None:
            _fallback.write(text[3:])


def error(msg):
    _emit(ERR, msg)


def warning(msg):
    _emit(WARNING, msg)


def notice(msg):
    _emit(NOTICE, msg)


def info(msg):
    _emit(INFO, msg)


def debug(msg):
    _emit(DEBUG, msg)


def console(msg=""):
    """Print straight to the console (stdout): for what a person must see whatever the log level."""
    print(msg)
