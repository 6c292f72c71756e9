# Path and file helpers for the agent: MicroPython has no os.path. Plain strings, "/" separators only.
import os
import sys

from micropython import const

_S_IFMT = const(0o170000)
_S_IFDIR = const(0o040000)
_S_IFREG = const(0o100000)

# MicroPython's os.mkdir takes no mode (VfsPosix creates with 0777 less the umask).
_MKDIR_TAKES_MODE = sys.implementation.name != "micropython"


def join(*parts):
    out = ""
    for p in parts:
        if p.startswith("/") or not out:
            out = p
        elif out.endswith("/"):
            out += p
        else:
            out += "/" + p
    return out


def dirname(path):
    i = path.rfind("/")
    if i < 0:
        return ""
    return path[:i] or "/"


def basename(path):
    return path[path.rfind("/") + 1:]


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _mode(path):
    try:
        return os.stat(path)[0]
    except OSError:
        return 0


def isdir(path):
    return _mode(path) & _S_IFMT == _S_IFDIR


def isfile(path):
    return _mode(path) & _S_IFMT == _S_IFREG


def makedirs(path, mode=0o755):
    """mkdir -p: create path and missing parents; an existing directory is fine."""
    if not path or isdir(path):
        return
    parent = dirname(path)
    if parent and parent != path:
        makedirs(parent, mode)
    try:
        if _MKDIR_TAKES_MODE:
            os.mkdir(path, mode)
        else:
            os.mkdir(path)
    except OSError:
        if not isdir(path):
            raise


def read_text(path, default=None):
    """The whole file as str (sysfs/procfs attributes: trailing newline stripped); default when unreadable."""
    try:
        with open(path) as f:
            return f.read().rstrip("\n")
    except OSError:
        if default is None:
            raise
        return default


def write_text(path, text):
    with open(path, "w") as f:
        f.write(text)


def write_atomic(path, text):
    """Write text to path via a temporary file and rename: readers never see a half-written file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def listdir(path):
    """Sorted directory entries; [] when the directory does not exist."""
    try:
        names = os.listdir(path)
    except OSError:
        return []
    names.sort()
    return names


def unescape_octal(field, refuse=None):
    """A path field of /proc/self/mountinfo, fstab(5) or crypttab(5): space, tab, newline and backslash written as
    \\ooo octal (the kernel's fs/proc_namespace.c mangle()). Anything that is not a backslash and three octal digits
    stays. refuse: called with the three digits of an escape that is no byte of a name (\\000, or above \\377);
    it raises (crypttab refuses them), else such an escape becomes its code point."""
    if "\\" not in field:
        return field
    out = []
    i = 0
    n = len(field)
    while i < n:
        c = field[i]
        if c == "\\" and i + 4 <= n and _is_octal(field[i + 1:i + 4]):
            code = int(field[i + 1:i + 4], 8)
            if refuse is not None and (code == 0 or code > 255):
                refuse(field[i + 1:i + 4])
            out.append(chr(code))
            i += 4
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _is_octal(s):
    for c in s:
        if c < "0" or c > "7":
            return False
    return True
