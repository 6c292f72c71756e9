"""The host's clock of a boot's console lines: when each line reached bench/run.py, and the figures taken from it.

The guest's own clock (printk stamps, /proc/uptime) misses the time its kernel spent calibrating the TSC in
about half of the boots under QEMU TCG (bench/mpbench/parse.py _CALIBRATION); the host's monotonic clock does
not depend on that. mpinit.qemu.boot(on_data=LineClock().feed) hands every piece of console output over as it
arrives from QEMU's stdio pipe; each line is stamped with the arrival time of its first byte.

"Time to the live root, host clock": from the first kernel console line (the first line that starts with a printk
stamp "[    0.000000] ", printed when the kernel's serial console registers: console_init() in init/main.c
start_kernel(), which replays the lines logged before it) to the live root's marker line. It leaves out what
happens before the console is up (firmware, the kernel's own decompression, early setup_arch()), the same for
every side, and includes the late TSC calibration (tsc_init() runs after console_init()).

A boot's lines are kept next to its console log as `<log>.clock` (one "<seconds after the first line>\t<line>"
per line), so the figures can be read again from the files (read()).
"""

from __future__ import annotations

import re

_STAMPED = re.compile(r"\[\s*\d+\.\d+\]")   # a printk stamp at the start of a line (kernel/printk/printk.c)
MARKER = "MPINIT-LIVE-OK"
RUN_INIT = "Run /init as init process"


class ClockError(ValueError):
    """A line the host-clock figure needs is missing, or a .clock file is malformed; the message names it."""


class LineClock:
    """Collects (arrival time, line) for every console line; feed() is mpinit.qemu.boot's on_data callback."""

    def __init__(self):
        self.lines = []      # [(monotonic seconds, text)], text without its line end
        self._buf = b""
        self._t = None       # arrival time of the first byte of the line in _buf

    def feed(self, t, data):
        pos = 0
        while pos < len(data):
            if self._t is None:
                self._t = t
            i = data.find(b"\n", pos)
            if i < 0:
                self._buf += data[pos:]
                return
            self._buf += data[pos:i]
            self._end()
            pos = i + 1

    def close(self):
        """Keep a last line that had no line end."""
        if self._buf:
            self._end()
        return self

    def _end(self):
        self.lines.append((self._t, self._buf.decode("utf-8", "replace").replace("\r", "")))
        self._buf = b""
        self._t = None

    def dump(self):
        """The .clock file's text: times relative to the first line (the absolute monotonic origin means nothing
        outside this process)."""
        if not self.lines:
            return ""
        t0 = self.lines[0][0]
        return "".join("%.6f\t%s\n" % (t - t0, text) for t, text in self.lines)


def read(text, what="clock file"):
    """[(seconds, line)] from a .clock file's text (LineClock.dump())."""
    out = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        head, tab, rest = line.partition("\t")
        try:
            if not tab:
                raise ValueError(head)
            out.append((float(head), rest))
        except ValueError:
            raise ClockError("%s: line %d is not '<seconds>\\t<console line>': %r" % (what, n, line[:80]))
    return out


def first_kernel_line(lines, what="console"):
    """The index of the first line that starts with a printk stamp."""
    for i, (_, text) in enumerate(lines):
        if _STAMPED.match(text):
            return i
    raise ClockError("%s: no console line starting with a printk stamp ([    0.000000] ...)" % what)


def seconds_to(lines, needle, what="console"):
    """Host seconds from the first kernel console line to the first line from there on holding `needle`."""
    first = first_kernel_line(lines, what)
    t0 = lines[first][0]
    for t, text in lines[first:]:
        if needle in text:
            return t - t0
    raise ClockError("%s: no console line with %r after the first kernel line" % (what, needle))


def live_root(lines, what="console"):
    """Time to the live root, host clock: first kernel console line -> the live root's marker line."""
    return seconds_to(lines, MARKER + " ", what)


def run_init(lines, what="console"):
    """First kernel console line -> the kernel's `Run /init` line, host clock."""
    return seconds_to(lines, RUN_INIT, what)
