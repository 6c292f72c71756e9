"""Atomic output files: written to a temporary file beside the target, renamed over it only when complete.

A failure (bad input found late, a tool dying, Ctrl-C) removes the temporary file, so a reader never sees a
half-written image and a previous good output stays in place.
"""

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


def check_output(path, error, flag="-o"):
    """Refuse an output path no file can be written at, before any work: `error` (the caller's exception class)
    naming `flag` and the path when it is a directory or its directory does not exist. Returns it as a Path."""
    path = Path(path)
    if path.is_dir():
        raise error("%s %s: is a directory" % (flag, path))
    if not path.parent.is_dir():
        raise error("%s %s: directory %s does not exist" % (flag, path, path.parent))
    return path


@contextmanager
def atomic_path(path, mode=0o644):
    """Yield a temporary path beside `path` for a writer that needs a name (mksquashfs, xorriso); on normal exit
    the file is fsynced, given `mode` and renamed to `path`; on any exception it is removed."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError("%s: directory %s does not exist" % (path, parent))
    fd, tmp = tempfile.mkstemp(prefix=".%s." % path.name, suffix=".tmp", dir=parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@contextmanager
def atomic_open(path, mode=0o644):
    """Yield a binary file object; on normal exit it is flushed, fsynced and renamed to `path`."""
    with atomic_path(path, mode) as tmp:
        with open(tmp, "wb") as f:
            yield f


def write_bytes(path, data, mode=0o644):
    """Write `data` (bytes or an iterable of bytes chunks) to `path` atomically; returns the byte count."""
    n = 0
    with atomic_open(path, mode) as f:
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = (data,)
        for chunk in data:
            f.write(chunk)
            n += len(chunk)
    return n
