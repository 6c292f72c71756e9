"""Figures read from a boot's serial console (the text mpinit.qemu.BootResult.output holds).

The guest boots with `printk.time=1`, so every kernel line, and every line a process writes to /dev/kmsg, starts
with the printk timestamp "[    1.522090] " (seconds since boot, kernel/printk/printk.c print_time()). Both inits
log the lines read here through /dev/kmsg, so they are on the same clock as the kernel's own
"Run /init as init process" (init/main.c run_init_process()).

Lines read:
  ours   "mpinit: handoff: switching to ... (VmHWM: <n> kB)"   (agent/mpinit_agent/handoff.py, logged before moving
                                                  mounts; PID 1's peak memory read from /proc/self/status just before)
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
OURS_VMHWM = OURS_HANDOFF   # the hand-off line carries "(VmHWM: <n> kB)"
PEER_VMHWM = "bbinit: VmHWM:"
FLOOR_HANDOFF = "cinit: switch_root"   # bench/cinit/cinit.c, the C floor
FLOOR_VMHWM = "cinit: VmHWM:"
MARKER = "MPINIT-LIVE-OK"

_STAMP = re.compile(r"\[\s*(\d+\.\d+)\]\s?")
_VMHWM = re.compile(r"VmHWM:\s*(\d+)\s*kB")
# toram.progress_line(): "mpinit: <what>: %3d%% %d/%d MiB %d.%d MB/s %s" (what: toram, fetch); several refreshes
# may share one console line (separated by "\r", which the runner may or may not drop), so the last complete one
# is taken.
_PROGRESS = r"mpinit: %s:\s+(\d+)%% (\d+)/(\d+) MiB (\d+)\.(\d) MB/s done"
# The peer scripts' timed copies: "bbinit: toram: copied <bytes> bytes in <t0> .. <t1> s" (bench/peer/init.sh),
# "bbinit: netfetch: fetched <bytes> bytes in <t0> .. <t1> s" (bench/peer/netfetch.sh).
_TIMED = r"%s (\d+) bytes in (\d+(?:\.\d+)?) \.\. (\d+(?:\.\d+)?) s"
PEER_TORAM = "bbinit: toram: copied"
PEER_FETCH = "bbinit: netfetch: fetched"
# The kernel's own lines when it has probed a disk: its size (drivers/block/virtio_blk.c virtblk_update_capacity(),
# drivers/scsi/sd.c sd_print_capacity(): "[vda] 16384 512-byte logical blocks ...") and its partitions
# (block/partitions/core.c check_partition(): " vda: vda1 vda2", printed only when a table was found).
_DISK_SIZE = re.compile(r"\[(\w+)\] \d+ \d+-byte logical blocks")
_PARTITIONS = re.compile(r"^\s*(\w+): (\w+)")
# kernel/smp.c smp_init(): "smp: Brought up %d node%s, %d CPU%s".
_SMP = re.compile(r"smp: Brought up \d+ nodes?, (\d+) CPUs?")


# The guest kernel's TSC calibration (arch/x86/kernel/tsc.c, 6.1). Under QEMU TCG it goes one of two ways at
# random per boot. Early, from setup_arch() (tsc_early_init() -> native_calibrate_cpu_early() ->
# quick_pit_calibrate()): "Fast TSC calibration using PIT" on success; the printk clock then runs on the TSC from
# the start. When that fails ("Fast TSC calibration failed", printed only if the PIT's first MSB was seen at
# all), tsc_init() calibrates later, after console_init(), against the PIT and a reference timer
# (pit_hpet_ptimer_calibrate_cpu()): "Unable to calibrate against PIT" + "using HPET reference calibration"
# (or "PMTIMER"), or "PIT calibration matches HPET", "PIT calibration deviates from ...", "using PIT
# calibration results". In that case the printk clock restarts near 0 when tsc-early registers, so the time
# spent calibrating (~0.15-0.25 s under TCG) is missing from every later printk stamp and from /proc/uptime.
# (needle, mode), the first needle found decides; "PIT" is the only mode whose clock counts from the start.
_CALIBRATION = (
    ("tsc: Fast TSC calibration using PIT", "PIT"),
    ("tsc: using HPET reference calibration", "HPET"),
    ("tsc: using PMTIMER reference calibration", "PM timer"),
    ("tsc: PIT calibration matches", "PIT, late"),
    ("tsc: PIT calibration deviates", "PIT, late"),
    ("tsc: using PIT calibration results", "PIT, late"),
)


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
    """PID 1's VmHWM: the kB value of "VmHWM: <n> kB" in the first line holding prefix."""
    for line in output.split("\n"):
        i = line.find(prefix)
        if i >= 0:
            m = _VMHWM.search(line, i)
            if m:
                return int(m.group(1))
    raise ParseError("%s: no %r line with 'VmHWM: <n> kB'" % (what or "console", prefix))


def progress_mbps(output, what_line, what=None):
    """MB/s (10^6 bytes/s) of an agent copy that completed (what_line "toram": the copy to RAM, "fetch": the HTTP
    download), from its last progress line."""
    found = list(re.finditer(_PROGRESS % what_line, output.replace("\r", "\n")))
    if not found:
        raise ParseError("%s: no completed 'mpinit: %s: 100%% ... MB/s done' progress line" % (what or "console",
                                                                                            what_line))
    m = found[-1]
    if int(m.group(1)) != 100 or m.group(2) != m.group(3):
        raise ParseError("%s: the %s did not complete: %r" % (what or "console", what_line, m.group(0)))
    return int(m.group(4)) + int(m.group(5)) / 10.0


def ours_toram_mbps(output, what=None):
    """MB/s (10^6 bytes/s) of the agent's completed copy to RAM, from its last progress line."""
    return progress_mbps(output, "toram", what)


def peer_timed(output, prefix, what=None):
    """(bytes, seconds) of a peer script's timed copy (`prefix` PEER_TORAM or PEER_FETCH), from its /proc/uptime
    readings (10 ms resolution)."""
    m = re.search(_TIMED % re.escape(prefix), output)
    if not m:
        raise ParseError("%s: no '%s N bytes in t0 .. t1 s' line" % (what or "console", prefix))
    size, t0, t1 = int(m.group(1)), float(m.group(2)), float(m.group(3))
    if t1 <= t0:
        raise ParseError("%s: %s took no measurable time (%s .. %s s): cannot compute a rate" % (
            what or "console", prefix, m.group(2), m.group(3)))
    return size, t1 - t0


def peer_toram(output, what=None):
    """(bytes, seconds) of the peer's `cp` to RAM."""
    return peer_timed(output, PEER_TORAM, what)


def peer_toram_mbps(output, what=None):
    size, seconds = peer_toram(output, what)
    return size / seconds / 1e6


def peer_fetch_mbps(output, what=None):
    """MB/s of the peer's `wget`: bytes over the uptime difference."""
    size, seconds = peer_timed(output, PEER_FETCH, what)
    return size / seconds / 1e6


def cpus(output, what=None):
    """The number of CPUs the guest kernel brought up (its "smp: Brought up" line): proves a -smp setting."""
    for _, text in stamped(output):
        m = _SMP.search(text)
        if m:
            return int(m.group(1))
    raise ParseError("%s: no 'smp: Brought up ... CPU' line" % (what or "console"))


def calibration(output, what=None):
    """The guest kernel's TSC calibration mode of this boot (_CALIBRATION): "PIT" (the printk clock counts from
    the start), "HPET", "PM timer" or "PIT, late" (calibrated after the console came up; the printk clock restarted
    when tsc-early registered)."""
    for _, text in stamped(output):
        for needle, mode in _CALIBRATION:
            if needle in text:
                return mode
    raise ParseError("%s: no 'tsc:' calibration line (Fast TSC calibration using PIT, using HPET reference "
                     "calibration, ...)" % (what or "console"))


def clock_restart(output):
    """(printk time before, printk time after) of the first place where the printk clock went backwards (the
    late TSC calibration's restart, see _CALIBRATION), None when it never did."""
    prev = None
    for t, _ in stamped(output):
        if prev is not None and t < prev:
            return prev, t
        prev = t
    return None


def run_init_stamp(output, what=None):
    """printk time of the kernel's `Run /init` line: the kernel's boot, the initramfs's unpacking included."""
    return stamp_of(output, RUN_INIT, what)


def kernel_disk_probe_end(output, until=None):
    """printk time of the kernel's last disk-probe line (a disk's size or its partition list) at or before `until`
    (seconds), None when there is none: where the kernel's own probing of the disks ended."""
    last = None
    for t, text in stamped(output):
        if until is not None and t > until:
            break
        m = _PARTITIONS.match(text)
        if _DISK_SIZE.search(text) or (m and m.group(2).startswith(m.group(1)) and m.group(2) != m.group(1)):
            last = t
    return last


def beyond_kernel_ms(output, stages=("devices", "medium")):
    """ms of our `stages` (in boot order; stages between them count too) that ran after the kernel's last
    disk-probe line: from the later of the first stage's start and that line to the end of the last stage. None
    when a stage's line is missing."""
    ends = stage_end_stamps(output, stages)
    ms = stage_times(output, stages)
    if any(s not in ends or s not in ms for s in stages):
        return None
    start = ends[stages[0]] - ms[stages[0]] / 1000.0
    end = ends[stages[-1]]
    probe = kernel_disk_probe_end(output, end)
    return max(0, round((end - max(start, probe if probe is not None else start)) * 1000))


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
