"""Where the boot time went: a boot read from a console log, a kernel log dump or the agent's timeline.json, as a
table and as an SVG chart (stages as bars on a time axis, module loads under them, like `systemd-analyze plot`).

Inputs (`load()` tells them apart by their content):
- a serial console log: kernel lines "[    1.234567] text" with anything else in between (the live root's
  output, prompts, "\\r\\n" line ends);
- a kernel log dump: `dmesg -r` ("<6>[    1.234567] text") or /dev/kmsg records ("6,123,1234567,-;text", with
  their " KEY=value" continuation lines), e.g. `cat /dev/kmsg` read on the booted system;
- the live root's `/run/mpinit/timeline.json`: the agent's list of {stage, start_ms, duration_ms, result}, and
  module loads as entries with a "module" key ({module, start_ms, duration_ms[, result]}) where present.

What the log lines say (agent/mpinit_agent/main.py, kmod.py, fsmods.py; times are the kernel's printk clock,
CLOCK_BOOTTIME, the same clock as timeline.json):
- "Run /init as init process" (init/main.c run_init_process): the kernel hands over to the initramfs;
- "mpinit: <stage>: start" and "mpinit: <stage>: <result> (<N> ms)": a stage and its duration (the early stage's
  start line is written before /dev/kmsg exists, so its start is its end minus N);
- "mpinit: boot failed in stage '<stage>': <message>": the stage ends there, failed;
- "mpinit: <stage>: resumed from the rescue shell ..." and "mpinit: <stage>: rd.break=...": time in the rescue
  shell (a wait for a person);
- "mpinit: loaded <module>" (kmod, with `debug`) and "mpinit: loaded a, b for filesystem <fs>" (fsmods): module
  loads, as instants (the log has no start);
- the devices stage's result "(<n> block devices, <N> ms)": how long it waited for the root or medium.

A console log of a boot with `quiet` holds none of the agent's lines (they are KERN_INFO): read the kernel log of
the booted system instead, or its timeline.json. Bad input raises AnalyzeError naming the input (and the line or
entry); nothing else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from mpinit_agent.contract import STAGES


class AnalyzeError(ValueError):
    """Input that is not a boot log or timeline; the message names the input (and the line or entry)."""


@dataclass
class Span:
    kind: str                 # "kernel", "init", "stage", "module", "wait"
    name: str
    start_ms: float
    duration_ms: float | None  # None: an instant (a module load seen only by its log line)
    result: str = ""
    failed: bool = False

    @property
    def end_ms(self):
        return self.start_ms + (self.duration_ms or 0)


@dataclass
class Boot:
    source: str
    form: str                 # "console log", "kernel log", "timeline"
    init_ms: float | None = None       # "Run /init as init process"
    spans: list = field(default_factory=list)
    failure: str | None = None

    def of(self, kind):
        return [s for s in self.spans if s.kind == kind]

    @property
    def end_ms(self):
        ends = [s.end_ms for s in self.spans]
        return max(ends) if ends else 0.0


# ---- parsing log lines -----------------------------------------------------------------------------------------

_KMSG = re.compile(r"(\d{1,4}),(\d{1,20}),(\d{1,20}),[^;]{0,64};(.*)\Z", re.S)
_STAMPED = re.compile(r"(?:<(\d{1,4})>)?\[\s{0,12}(\d{1,10})\.(\d{1,9})\] ?(.*)\Z", re.S)
_STAGE_START = re.compile(r"mpinit: ([a-z][a-z0-9_-]*): start\Z")
_STAGE_DONE = re.compile(r"mpinit: ([a-z][a-z0-9_-]*): (.*) \((\d{1,12}) ms\)\Z")
_FAILED = re.compile(r"mpinit: boot failed in stage '([^']*)': (.*)\Z")
_RESUMED = re.compile(r"mpinit: ([a-z][a-z0-9_-]*): resumed from the rescue shell")
_BREAK = re.compile(r"mpinit: ([a-z][a-z0-9_-]*): rd\.break=")
_FS_MODULES = re.compile(r"mpinit: loaded (.+) for filesystem (\S+)\Z")
_MODULE = re.compile(r"mpinit: loaded ([A-Za-z0-9_-]+)(?: .*)?\Z")
_RUN_INIT = re.compile(r"Run (\S+) as init process")
_DEVICES_WAIT = re.compile(r"\((\d{1,9}) block devices, (\d{1,12}) ms\)\Z")
_ESC = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def stamped_lines(text):
    """(ms, message, kind) for each line of text carrying a kernel time; kind "kmsg" or "stamped". Lines without
    a time (the root's output, prompts, kmsg continuation lines) are skipped."""
    out = []
    for raw in text.split("\n"):
        line = _ESC.sub("", raw.strip("\r\x00"))
        m = _KMSG.match(line)
        if m:
            out.append((int(m.group(3)) / 1000.0, m.group(4), "kmsg"))
            continue
        m = _STAMPED.match(line.lstrip(" "))
        if m:
            frac = (m.group(3) + "00000")[:6]          # microseconds, as the kernel prints them
            out.append(((int(m.group(2)) * 1000000 + int(frac)) / 1000.0, m.group(4), "stamped"))
    return out


def parse_log(text, source="log"):
    """A Boot from a console log or a kernel log dump. AnalyzeError when no line carries a kernel time or none is
    the agent's."""
    lines = stamped_lines(text)
    if not lines:
        raise AnalyzeError("%s: no kernel log lines in it (neither \"[ seconds] text\" nor /dev/kmsg records "
                           "\"prio,seq,usec,flags;text\")" % source)
    kmsg = sum(1 for ln in lines if ln[2] == "kmsg")
    raw_dmesg = text.lstrip().startswith("<")
    form = "kernel log" if kmsg * 2 > len(lines) or raw_dmesg else "console log"
    boot = Boot(source, form)
    open_stage = {}           # stage -> start ms (its start line seen, no result yet)
    done_once = set()
    pause = None              # (ms, why) a rescue shell opened
    last_agent = None
    for ms, msg, _kind in lines:
        if boot.init_ms is None:
            m = _RUN_INIT.search(msg)
            if m and msg.startswith("Run "):
                boot.init_ms = ms
                continue
        if not msg.startswith("mpinit: "):
            continue
        last_agent = ms
        m = _STAGE_START.match(msg)
        if m and m.group(1) in STAGES:
            name = m.group(1)
            if pause is not None:
                boot.spans.append(Span("wait", "rescue shell (%s)" % pause[1], pause[0], ms - pause[0]))
                pause = None
            open_stage[name] = ms
            continue
        m = _FAILED.match(msg)
        if m:
            name = m.group(1)
            start = open_stage.pop(name, ms)
            boot.spans.append(Span("stage", name, start, ms - start, "failed: " + m.group(2), failed=True))
            boot.failure = "stage '%s': %s" % (name, m.group(2))
            pause = (ms, "after the failure of %s" % name)
            continue
        m = _RESUMED.match(msg)
        if m:
            if pause is not None:
                boot.spans.append(Span("wait", "rescue shell (%s)" % pause[1], pause[0], ms - pause[0]))
                pause = None
            continue
        m = _BREAK.match(msg)
        if m:
            pause = (ms, "rd.break=%s" % m.group(1))
            continue
        m = _FS_MODULES.match(msg)
        if m:
            for name in m.group(1).split(", "):
                if name:
                    boot.spans.append(Span("module", name.strip(), ms, None, "for %s" % m.group(2)))
            continue
        m = _MODULE.match(msg)
        if m:
            boot.spans.append(Span("module", m.group(1), ms, None))
            continue
        m = _STAGE_DONE.match(msg)
        if m and m.group(1) in STAGES:
            name = m.group(1)
            if name not in open_stage and name in done_once:
                continue      # a second "(N ms)" line without a new start: not a stage result
            dur = float(m.group(3))
            start = open_stage.pop(name, ms - dur)
            boot.spans.append(Span("stage", name, start, dur, m.group(2)))
            done_once.add(name)
            w = _DEVICES_WAIT.search(m.group(2)) if name == "devices" else None
            if w and int(w.group(2)) > 0:
                boot.spans.append(Span("wait", "root/medium device", ms - int(w.group(2)), float(w.group(2))))
    for name, start in open_stage.items():    # started, never finished: the log ends inside it
        end = last_agent if last_agent is not None else start
        if name == "handoff" and boot.failure is None:
            # A hand-off that worked ends in execv(): its last line is the last the agent wrote.
            boot.spans.append(Span("stage", name, start, end - start, "exec of the root's init"))
        else:
            boot.spans.append(Span("stage", name, start, end - start, "unfinished when the log ends", failed=True))
    if not boot.of("stage"):
        raise AnalyzeError("%s: no `mpinit: <stage>: ...` lines: the agent's lines are KERN_INFO, so a console "
                           "log of a boot with `quiet` (or loglevel<7) has none; use the booted system's kernel log "
                           "(`dmesg -r`, /dev/kmsg) or /run/mpinit/timeline.json" % source)
    _add_kernel(boot)
    return boot


def _add_kernel(boot):
    first = min(s.start_ms for s in boot.of("stage"))
    if boot.init_ms is not None:
        boot.spans.insert(0, Span("kernel", "kernel", 0.0, boot.init_ms, "until \"Run /init as init process\""))
        if first > boot.init_ms:
            boot.spans.insert(1, Span("init", "/init start-up", boot.init_ms, first - boot.init_ms,
                                      "the interpreter starts, the agent is imported"))
    else:
        boot.spans.insert(0, Span("kernel", "kernel + /init start-up", 0.0, first,
                                  "until the first stage (no \"Run /init\" line in the input)"))
    boot.spans.sort(key=lambda s: (s.start_ms, _ORDER[s.kind]))


_ORDER = {"kernel": 0, "init": 1, "stage": 2, "wait": 3, "module": 4}


# ---- timeline.json -----------------------------------------------------------------------------------------------

def _number(entry, key, where, required=True):
    v = entry.get(key)
    if v is None and not required:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v < 0 or v > 1e12:
        raise AnalyzeError("%s: %s is not a time in ms: %r" % (where, key, v))
    return float(v)


def parse_timeline(data, source="timeline.json"):
    """A Boot from the agent's timeline.json (text or bytes)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise AnalyzeError("%s: not UTF-8 (byte %d)" % (source, e.start)) from None
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise AnalyzeError("%s: not JSON: %s" % (source, e)) from None
    if isinstance(doc, dict) and "timeline" in doc:
        doc = doc["timeline"]         # a capture file (capture.py) holds the timeline too
    if not isinstance(doc, list):
        raise AnalyzeError("%s: want a JSON list of timeline entries, got %s" % (source, type(doc).__name__))
    boot = Boot(source, "timeline")
    for i, entry in enumerate(doc):
        where = "%s: entry %d" % (source, i + 1)
        if not isinstance(entry, dict):
            raise AnalyzeError("%s: not an object" % where)
        start = _number(entry, "start_ms", where)
        dur = _number(entry, "duration_ms", where, required=False)
        result = entry.get("result", "")
        if not isinstance(result, str):
            result = json.dumps(result)
        if "module" in entry:
            name = entry["module"]
            if not isinstance(name, str) or not name:
                raise AnalyzeError("%s: module is not a name: %r" % (where, name))
            boot.spans.append(Span("module", name, start, dur, result))
            continue
        name = entry.get("stage")
        if not isinstance(name, str) or not name:
            raise AnalyzeError("%s: no \"stage\" (or \"module\") name" % where)
        failed = result.startswith("failed")
        boot.spans.append(Span("stage", name, start, dur if dur is not None else 0.0, result, failed=failed))
        if failed:
            boot.failure = "stage '%s': %s" % (name, result[len("failed: "):] if result.startswith("failed: ")
                                                else result)
        w = _DEVICES_WAIT.search(result) if name == "devices" else None
        if w and int(w.group(2)) > 0 and dur is not None:
            boot.spans.append(Span("wait", "root/medium device", start + dur - int(w.group(2)), float(w.group(2))))
    if not boot.of("stage"):
        raise AnalyzeError("%s: no stage entries" % source)
    _add_kernel(boot)
    return boot


def parse(data, source):
    """A Boot from bytes or text of any supported input, told apart by content."""
    if isinstance(data, bytes):
        text = data.decode("utf-8", "replace")
    else:
        text = data
    head = text.lstrip()[:1]
    if head in ("[", "{") and not _STAMPED.match(text.lstrip().split("\n", 1)[0]):
        return parse_timeline(text, source)
    return parse_log(text, source)


def load(path):
    """A Boot from a file. AnalyzeError for unreadable or unsupported input."""
    try:
        with open(path, "rb") as f:
            data = f.read(64 << 20)
    except OSError as e:
        raise AnalyzeError("%s: %s" % (path, e.strerror or e)) from None
    return parse(data, str(path))


# ---- output ------------------------------------------------------------------------------------------------------

def table(boot):
    """The boot as text: one row per span in time order, then the totals."""
    rows = ["mpinit analyze: %s (%s)" % (boot.source, boot.form),
            "  %-24s %10s %10s  %s" % ("what", "start ms", "ms", "result")]
    for s in boot.spans:
        if s.kind == "module":
            continue
        name = {"stage": s.name, "wait": "  wait: " + s.name}.get(s.kind, s.name)
        dur = "%.0f" % s.duration_ms if s.duration_ms is not None else "-"
        rows.append("  %-24s %10.1f %10s  %s" % (name[:24], s.start_ms, dur, s.result[:70]))
    mods = boot.of("module")
    if mods:
        rows.append("  module loads (%d):" % len(mods))
        for s in mods:
            dur = "%.0f" % s.duration_ms if s.duration_ms is not None else "-"
            rows.append("    %-22s %10.1f %10s  %s" % (s.name[:22], s.start_ms, dur, s.result[:70]))
    stages = boot.of("stage")
    total = sum(s.duration_ms or 0 for s in stages)
    rows.append("")
    if boot.init_ms is not None:
        rows.append("  kernel to /init:   %8.1f ms" % boot.init_ms)
    rows.append("  in stages:         %8.1f ms" % total)
    waits = boot.of("wait")
    if waits:
        rows.append("  of which waiting:  %8.1f ms (%s)" % (sum(w.duration_ms for w in waits),
                                                          ", ".join(sorted(set(w.name for w in waits)))))
    rows.append("  end of the last stage: %.1f ms after the kernel started" % max(s.end_ms for s in stages))
    if boot.failure:
        rows.append("  FAILED in %s" % boot.failure)
    return "\n".join(rows)


def _esc(text):
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;"))


_COLOURS = {"kernel": "#b0b0b0", "init": "#d8c8a0", "stage": "#6a9fd8", "wait": "#f0c060", "module": "#8cc084"}


def svg(boot, width=1000):
    """The boot as an SVG chart: a time axis, one bar per kernel phase, stage and wait, module loads under them."""
    rows = [s for s in boot.spans if s.kind != "module"] + boot.of("module")
    end = max(boot.end_ms, 1.0)
    left, right, top, row_h = 180, 20, 40, 18
    plot_w = width - left - right
    height = top + row_h * (len(rows) + 1) + 30
    scale = plot_w / end

    def x(ms):
        return left + ms * scale

    step = _tick_step(end)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
           'font-size="11">' % (width, height),
           '<title>%s</title>' % _esc("mpinit boot: %s" % boot.source),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="10" y="18" font-size="14">%s</text>' % _esc(
               "mpinit boot chart: %s (%s)%s" % (boot.source, boot.form,
                                                 " - FAILED in " + boot.failure if boot.failure else ""))]
    t = 0.0
    while t <= end + 1e-9:
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e0e0e0"/>' % (x(t), top - 5, x(t),
                                                                                    height - 25))
        out.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#606060">%s</text>' % (
            x(t), height - 10, _ms_label(t)))
        t += step
    for i, s in enumerate(rows):
        y = top + i * row_h
        colour = "#d06060" if s.failed else _COLOURS[s.kind]
        label = s.name if s.kind != "wait" else "wait: " + s.name
        out.append('<text x="%d" y="%d" text-anchor="end">%s</text>' % (left - 6, y + 12, _esc(label[:28])))
        tip = "%s: %.1f ms at %.1f ms%s" % (label, s.duration_ms or 0, s.start_ms,
                                             (" - " + s.result) if s.result else "")
        if s.duration_ms is None:
            out.append('<circle cx="%.1f" cy="%d" r="4" fill="%s"><title>%s</title></circle>' % (
                x(s.start_ms), y + 8, colour, _esc(tip)))
        else:
            w = max(1.0, s.duration_ms * scale)
            out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>' % (
                x(s.start_ms), y + 2, w, row_h - 4, colour, _esc(tip)))
            out.append('<text x="%.1f" y="%d" fill="#303030">%s</text>' % (
                min(x(s.start_ms) + w + 4, width - right - 60), y + 12, _esc("%.0f ms" % s.duration_ms)))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _tick_step(end_ms):
    for step in (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 60000, 120000, 300000, 600000):
        if end_ms / step <= 12:
            return float(step)
    return end_ms / 10


def _ms_label(ms):
    return "%g s" % (ms / 1000.0) if ms >= 1000 or ms == 0 else "%d ms" % ms
