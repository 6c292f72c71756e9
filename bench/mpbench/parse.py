"""Figures read from a boot's serial console (the text mpinit.qemu.BootResult.output holds).

The guest boots with `printk.time=1`, so every kernel line, and every line a process writes to /dev/kmsg, starts
with the printk timestamp "[    1.522090] " (seconds since boot, kernel/printk/printk.c print_time()). Both inits
log the lines read here through /dev/kmsg, so they are on the same clock as the kernel's own
"Run /init as init process" (init/main.c run_init_process()).

Lines read:
  ours   "mpinit: handoff: switching to ..."       (agent/mpinit_agent/handoff.py, logged before moving mounts)
         "mpinit: bench: VmHWM: <n> kB"            (bench/hooks/90-bench-vmhwm.py at before_handoff)
         "mpinit: toram: 100% a/b MiB x.y MB/s done" (agent/mpinit_agent/toram.py progress_line(), on stdout)
  peer   "bbinit: switch_root", "bbinit: VmHWM: <n> kB",
         "bbinit: toram: copied <bytes> bytes in <t0> .. <t1> s"   (bench/peer/init.sh)
  both   the live root's marker "MPINIT-LIVE-OK uptime=<s> ..." (host-tools/mpinit/liveroot.py)
"""

from __future__ import annotations

import re

RUN_INIT = "Run /init as init process"
OURS_HANDOFF = "mpinit: handoff: switching to"
PEER_HANDOFF = "bbinit: switch_root"
OURS_VMHWM = "mpinit: bench: VmHWM:"
PEER_VMHWM = "bbinit: VmHWM:"
FLOOR_HANDOFF = "cinit: switch_root"   # bench/cinit/cinit.c, the C floor
FLOOR_VMHWM = "cinit: VmHWM:"
MARKER = "MPINIT-LIVE-OK"

_STAMP = re.compile(r"\[\s*(\d+\.\d+)\]\s?")
_VMHWM = re.compile(r"VmHWM:\s*(\d+)\s*kB")
# toram.progress_line(): "mpinit: toram: %3d%% %d/%d MiB %d.%d MB/s %s"; several refreshes may share one console
# line (they are separated by "\r", which the runner drops), so the last complete one is taken.
_OURS_TORAM = re.compile(r"mpinit: toram:\s+(\d+)% (\d+)/(\d+) MiB (\d+)\.(\d) MB/s done")
_PEER_TORAM = re.compile(r"bbinit: toram: copied (\d+) bytes in (\d+(?:\.\d+)?) \.\. (\d+(?:\.\d+)?) s")


class ParseError(ValueError):
    """A figure is missing from a console log; the message names what was looked for."""


def stamped(output):
    """[(seconds, text)] for every printk-stamped piece of the console, in order. A console line may hold more
    than one (a line written without its newline, then the kernel's next line): each stamp starts a new piece."""
    out = []
    for line in output.split("\n"):
        matches = list(_STAMP.finditer(line))
        for i, m in enumerate(matches):
            end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
            out.append((float(m.group(1)), line[m.end():end].rstrip()))
    return out


def stamp_of(output, needle, what=None):
    """The printk time of the first stamped piece holding `needle`; ParseError when there is none."""
    for t, text in stamped(output):
        if needle in text:
            return t
    raise ParseError("%s: no console line with %r and a printk timestamp" % (what or "console", needle))


def time_in_init(output, handoff_needle, what=None):
    """Seconds from the kernel's `Run /init` line to the init's hand-off line."""
    start = stamp_of(output, RUN_INIT, what)
    end = stamp_of(output, handoff_needle, what)
    if end < start:
        raise ParseError("%s: hand-off line (%.6f s) before %r (%.6f s)" % (what or "console", end, RUN_INIT,
                                                                              start))
    return end - start


def marker_uptime(output, what=None):
    """uptime= of the live root's marker line (seconds since boot when the live root's init ran)."""
    for line in output.split("\n"):
        i = line.find(MARKER + " ")
        if i < 0:
            continue
        for word in line[i:].split():
            if word.startswith("uptime="):
                try:
                    return float(word[len("uptime="):])
                except ValueError:
                    raise ParseError("%s: marker line has a bad uptime: %r" % (what or "console", word))
    raise ParseError("%s: no %s line with uptime=" % (what or "console", MARKER))


def vmhwm_kb(output, prefix, what=None):
    """The kB value of the first `<prefix> <n> kB` line (PID 1's VmHWM)."""
    for line in output.split("\n"):
        i = line.find(prefix)
        if i >= 0:
            m = _VMHWM.search(line, i)
            if m:
                return int(m.group(1))
    raise ParseError("%s: no %r line" % (what or "console", prefix + " <n> kB"))


def ours_toram_mbps(output, what=None):
    """MB/s (10^6 bytes/s) of the agent's completed copy to RAM, from its last progress line."""
    found = list(_OURS_TORAM.finditer(output))
    if not found:
        raise ParseError("%s: no completed 'mpinit: toram: 100%% ... MB/s done' progress line" % (what or "console"))
    m = found[-1]
    if int(m.group(1)) != 100 or m.group(2) != m.group(3):
        raise ParseError("%s: the copy to RAM did not complete: %r" % (what or "console", m.group(0)))
    return int(m.group(4)) + int(m.group(5)) / 10.0


def peer_toram(output, what=None):
    """(bytes, seconds) of the peer's `cp` to RAM, from its /proc/uptime readings (10 ms resolution)."""
    m = _PEER_TORAM.search(output)
    if not m:
        raise ParseError("%s: no 'bbinit: toram: copied ...' line" % (what or "console"))
    size, t0, t1 = int(m.group(1)), float(m.group(2)), float(m.group(3))
    if t1 <= t0:
        raise ParseError("%s: cp took no measurable time (%s .. %s s): cannot compute a rate" % (
            what or "console", m.group(2), m.group(3)))
    return size, t1 - t0


def peer_toram_mbps(output, what=None):
    size, seconds = peer_toram(output, what)
    return size / seconds / 1e6


def failure_hint(output, lines=6):
    """The last few interesting console lines of a failed boot, for the report (errors, our and the peer's
    lines)."""
    keep = []
    for line in output.split("\n"):
        low = line.lower()
        if ("mpinit:" in line or "bbinit:" in line or "error" in low or "panic" in low or "traceback" in low
                or "failed" in low):
            keep.append(line.strip())
    return keep[-lines:]


_STAGE_DONE = re.compile(r"mpinit: (\w+): .*\((\d+) ms\)\s*$")


def stage_times(output, stages):
    """{stage: ms} from the agent's "mpinit: <stage>: <result> (<n> ms)" lines (main.stage() logs one per stage
    that succeeded; a result may hold its own "(... ms)", the last one is the stage's)."""
    out = {}
    for _, text in stamped(output):
        m = _STAGE_DONE.search(text)
        if m and m.group(1) in stages and m.group(1) not in out:
            out[m.group(1)] = int(m.group(2))
    return out


def stage_end_stamps(output, stages):
    """{stage: printk time of its "mpinit: <stage>: <result> (<n> ms)" line} (the first such line per stage)."""
    out = {}
    for t, text in stamped(output):
        m = _STAGE_DONE.search(text)
        if m and m.group(1) in stages and m.group(1) not in out:
            out[m.group(1)] = t
    return out


# Comparable phases of the two inits, each from one console line to another (printk stamps, both sides alike):
# (phase, our line ending it, the peer's line ending it); a phase starts where the previous one ended, the first
# at the kernel's "Run /init". Ours end at the lines main.stage() logs when a stage is done.
PHASES = (
    ("start + modules", ("stage", "modules"), "bbinit: modules: done"),
    ("wait for the medium", ("stage", "devices"), "bbinit: medium: "),
    ("mount medium, (toram), root", ("stage", "root"), "bbinit: root: done"),
    ("to the hand-off line", ("line", OURS_HANDOFF), PEER_HANDOFF),
)


def phase_times(output, side, what=None):
    """{phase: ms} of PHASES, for side "ours", "peer" or "floor" (the C floor logs the peer's lines with "cinit: "
    for "bbinit: "); a phase whose lines are missing is left out (and so is every later one)."""
    ends = stage_end_stamps(output, ("modules", "devices", "root")) if side == "ours" else {}
    out = {}
    try:
        prev = stamp_of(output, RUN_INIT, what)
    except ParseError:
        return out
    for name, (kind, key), peer_line in PHASES:
        try:
            if side == "ours":
                t = ends[key] if kind == "stage" else stamp_of(output, key, what)
            else:
                t = stamp_of(output, peer_line if side == "peer" else "cinit: " + peer_line[len("bbinit: "):],
                             what)
        except (KeyError, ParseError):
            break
        out[name] = round((t - prev) * 1000)
        prev = t
    return out


def failure_block(output, max_lines=10):
    """The agent's failure report (from its "boot failed" line), or the peer's FAILED line, without the printk
    stamps and without the lines repeated on the console: what a reader of RESULTS.md needs."""
    lines = [_STAMP.sub("", line).rstrip() for line in output.split("\n")]
    start = None
    for i, line in enumerate(lines):
        if "boot failed" in line or "bbinit: FAILED" in line:
            start = i
            break
    if start is None:
        return failure_hint(output, max_lines)
    out = []
    for line in lines[start:]:
        if line and line not in out:
            out.append(line)
        if len(out) >= max_lines:
            break
    return out
