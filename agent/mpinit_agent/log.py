# Logging for PID 1: lines go to /dev/kmsg as "<level>mpinit: message", so they land in the kernel log with the
# kernel's timestamps and reach the console according to the console log level (quiet hides info).
import sys

from micropython import const

ERR = const(3)
WARNING = const(4)
NOTICE = const(5)
INFO = const(6)
DEBUG = const(7)

# printk.c: a /dev/kmsg write longer than LOG_LINE_MAX (1024 minus the prefix) is cut by the kernel; we cut
# first, at a character boundary, so the line stays valid UTF-8.
_MAX_LINE = const(976)

_kmsg = None
_debug = False
_fallback = None  # where lines go when /dev/kmsg cannot be opened (before /dev exists, or on a host)


def setup(kmsg_path="/dev/kmsg", debug=False):
    """Open /dev/kmsg for writing; on failure, log lines go to stderr instead."""
    global _kmsg, _debug, _fallback
    _debug = debug
    try:
        _kmsg = open(kmsg_path, "w")
        _fallback = None
    except OSError:
        _kmsg = None
        _fallback = sys.stderr


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
