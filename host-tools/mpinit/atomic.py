"""Atomic output files: written to a temporary file beside the target, renamed over it only when complete.

A failure (bad input found late, a tool dying, Ctrl-C) removes the temporary file, so a reader never sees a
half-written image and a previous good output stays in place.
"""

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_open(path, mode=0o644):
    """Yield a binary file object; on normal exit it is flushed, fsynced and renamed to `path`."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError("%s: directory %s does not exist" % (path, parent))
    fd, tmp = tempfile.mkstemp(prefix=".%s." % path.name, suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


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
