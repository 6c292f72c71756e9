"""Console keymaps for the image: busybox's binary `loadkmap` format, which the agent loads with KDSKBENT.

The format (busybox console-tools/loadkmap.c, written by kbd's `loadkeys -b`):
    "bkeymap"                          7 bytes of magic
    flags[MAX_NR_KEYMAPS]              256 bytes, 1 when that keymap (modifier combination) follows, else 0
    for each flagged keymap:           NR_KEYS (128) native-endian u16 key actions
MAX_NR_KEYMAPS and NR_KEYS come from <linux/keyboard.h>.
"""

from __future__ import annotations

from pathlib import Path

MAGIC = b"bkeymap"
MAX_NR_KEYMAPS = 256
NR_KEYS = 128
TABLE_SIZE = NR_KEYS * 2


class KeymapError(ValueError):
    """A keymap that cannot be converted or is not a valid binary keymap; the message names it."""


def check_binary(data, source):
    """Raise KeymapError unless `data` is a complete busybox binary keymap; returns the number of keymaps."""
    if not data.startswith(MAGIC):
        raise KeymapError("keymap %s: not a binary keymap (no 'bkeymap' magic)" % source)
    flags = data[len(MAGIC):len(MAGIC) + MAX_NR_KEYMAPS]
    if len(flags) < MAX_NR_KEYMAPS:
        raise KeymapError("keymap %s: truncated in its %d-byte keymap flags" % (source, MAX_NR_KEYMAPS))
    bad = [i for i, f in enumerate(flags) if f not in (0, 1)]
    if bad:
        raise KeymapError("keymap %s: keymap flag %d is %d (must be 0 or 1)" % (source, bad[0], flags[bad[0]]))
    count = sum(flags)
    want = len(MAGIC) + MAX_NR_KEYMAPS + count * TABLE_SIZE
    if len(data) != want:
        raise KeymapError("keymap %s: %d bytes, but %d keymaps make %d" % (source, len(data), count, want))
    if count == 0:
        raise KeymapError("keymap %s: holds no keymap" % source)
    return count


def load(spec):
    """`spec` is a binary keymap file, a kbd keymap file, or a keymap name loadkeys finds in its directories
    (e.g. "de-latin1", from Debian's console-data). Returns the binary keymap bytes."""
    path = Path(spec)
    if path.is_file():
        data = path.read_bytes()
        if data.startswith(MAGIC):
            check_binary(data, spec)
            return data
    elif "/" in spec:
        raise KeymapError("keymap %s: no such file" % spec)
    from .runner import ToolError, find_tool, run

    try:
        loadkeys = find_tool("loadkeys", "kbd")
        proc = run([loadkeys, "-b", "-q", spec], echo=False, capture=True)
    except ToolError as e:
        hint = "" if path.is_file() else " (a name must be one loadkeys finds, e.g. from Debian's console-data)"
        raise KeymapError("keymap %s: cannot convert with loadkeys -b%s: %s" % (spec, hint, e))
    check_binary(proc.stdout, "%s (as converted by loadkeys -b)" % spec)
    return proc.stdout
