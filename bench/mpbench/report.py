"""The benchmark report: figures of both sides, their summaries and ratios, rendered as RESULTS.md and an SVG chart
(written by this small module: no plotting library needed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from .stats import Summary, ratio, summarize


@dataclass
class Target:
    """What the issue asks for, reported against (never asserted).

    kind "ratio": ours/peer median <= value (better "lower") or >= value (better "higher");
    kind "floor": ours/C floor median <= value (the C reference init, bench/cinit/, issue 14);
    kind "abs": ours' median <= value, in the metric's unit."""
    kind: str
    value: float
    text: str


@dataclass
class Metric:
    key: str
    title: str
    unit: str                       # "s", "ms", "KiB", "kB", "MB/s"
    better: str = "lower"           # "lower" | "higher"
    ours: list = field(default_factory=list)
    peer: list = field(default_factory=list)
    target: Target | None = None
    note: str = ""
    ours_failures: list = field(default_factory=list)   # messages of runs that gave no figure
    peer_failures: list = field(default_factory=list)
    floor: list = field(default_factory=list)            # the C reference init (bench/cinit/), where it applies
    floor_failures: list = field(default_factory=list)
    ours_label: str = "mpinit"
    peer_label: str = "busybox script"
    joint: list = field(default_factory=list)           # metrics whose target must be met too (verdict())

    def summaries(self):
        return summarize(self.ours), summarize(self.peer)

    def ratio(self):
        return ratio(*self.summaries())

    def floor_ratio(self):
        """ours / the C floor (medians), None when either is missing."""
        return ratio(summarize(self.ours), summarize(self.floor))

    def verdict(self):
        """"yes" / "no" / "n/a" (a side or the target is missing). With `joint` metrics the target is judged on
        all of them: "no" if any misses it, else "n/a" if any cannot be judged, else "yes"."""
        got = [m._own_verdict() for m in [self] + list(self.joint)]
        return "no" if "no" in got else ("n/a" if "n/a" in got else "yes")

    def _own_verdict(self):
        t = self.target
        if t is None:
            return "n/a"
        o, p = self.summaries()
        if t.kind == "abs":
            if o is None:
                return "n/a"
            return "yes" if o.median <= t.value else "no"
        r = self.floor_ratio() if t.kind == "floor" else self.ratio()
        if r is None:
            return "n/a"
        ok = r <= t.value if self.better == "lower" else r >= t.value
        return "yes" if ok else "no"


def by_mode(records, side, key, cpus=1):
    """{TSC calibration mode: [the figure `key` of each of the side's boots in it]} from the plain boots'
    calibration records (bench/run.py record_clock: {"side", "cpus", "mode", "uptime", "host", ...})."""
    out = {}
    for r in records:
        if r["side"] == side and r["cpus"] == cpus and r.get(key) is not None:
            out.setdefault(r["mode"], []).append(r[key])
    return out


def matched_ratio(records, key, side="ours", base="peer", cpus=1):
    """side / base compared within each TSC calibration mode: the ratio of the two medians in every mode both sides
    booted in, averaged with the number of boots of both sides in that mode as weights. The mode is drawn at random
    per boot, early in the kernel's set-up, before any init runs; it moves both clocks (a late calibration costs
    real time and is missing from the guest's clock), so when it falls unevenly between the sides the medians over
    all boots compare unlike boots. None when no mode has boots of both sides."""
    mine, theirs = by_mode(records, side, key, cpus), by_mode(records, base, key, cpus)
    total = weight = 0.0
    for mode in mine:
        if mode not in theirs:
            continue
        r = ratio(summarize(mine[mode]), summarize(theirs[mode]))
        if r is None:
            continue
        w = len(mine[mode]) + len(theirs[mode])
        total += w * r
        weight += w
    return total / weight if weight else None


@dataclass
class ModeMatched(Metric):
    """A figure of the plain boots whose ratios are taken within each TSC calibration mode (matched_ratio()); its
    cells give each side's medians per mode. The boots' values come from `records` (filled while the bench runs)."""
    records: list = field(default_factory=list)
    value_key: str = "uptime"
    cpus: int = 1

    def ratio(self):
        return matched_ratio(self.records, self.value_key, "ours", "peer", self.cpus)

    def floor_ratio(self):
        return matched_ratio(self.records, self.value_key, "ours", "floor", self.cpus)

    def cell(self, side):
        """"PIT 2.320 s (n=4); HPET 2.270 s (n=3)", or None when the side has no boot with the figure."""
        modes = by_mode(self.records, side, self.value_key, self.cpus)
        if not modes:
            return None
        parts = []
        for mode in sorted(modes, key=lambda m: (-len(modes[m]), m)):
            s = summarize(modes[mode])
            parts.append("%s %s (n=%d)" % (mode, fmt(s.median, self.unit), s.n))
        return "; ".join(parts)


def fmt(value, unit):
    if value is None:
        return "-"
    if unit in ("KiB", "kB", "B"):
        return "%d %s" % (round(value), unit)
    if unit == "s":
        return "%.3f s" % value
    if unit == "MB/s":
        return "%.1f MB/s" % value
    return "%.2f %s" % (value, unit)


def fmt_summary(s: Summary | None, unit, failures=()):
    if s is None:
        return "not measured" + (" (%d failed)" % len(failures) if failures else "")
    text = fmt(s.median, unit)
    if s.n > 1:
        text += " (%s - %s, IQR %s, n=%d)" % (_num(s.min, unit), _num(s.max, unit), _num(s.iqr, unit), s.n)
    if failures:
        text += ", %d failed" % len(failures)
    return text


def _num(v, unit):
    return fmt(v, unit).rsplit(" ", 1)[0]


def markdown(metrics, meta) -> str:
    """RESULTS.md. meta: {"title", "status", "command", "date", "machine": [(k, v)], "method": [lines],
    "failures": [lines], "chart": file name, "sections": [(title, [markdown lines])]}."""
    out = ["# %s" % meta.get("title", "mpinit benchmarks"), ""]
    if meta.get("status"):
        out += ["**%s**" % meta["status"], ""]
    out += ["Generated by `%s` on %s. Medians of N runs; spread as min - max and the interquartile range."
            % (meta.get("command", "bench/run.py"), meta.get("date", "?")), ""]
    out += ["| figure | mpinit | busybox script | C floor | ratio mpinit/busybox | ratio mpinit/C floor | target "
            "| met |", "|---|---|---|---|---|---|---|---|"]
    for m in metrics:
        o, p = m.summaries()
        r, rf = m.ratio(), m.floor_ratio()
        f = summarize(m.floor)
        cells = [fmt_summary(o, m.unit, m.ours_failures), fmt_summary(p, m.unit, m.peer_failures),
                 fmt_summary(f, m.unit, m.floor_failures) if (f is not None or m.floor_failures) else "-"]
        if isinstance(m, ModeMatched):
            cells = [m.cell(side) or "not measured" for side in ("ours", "peer")] + [m.cell("floor") or "-"]
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            m.title, cells[0], cells[1], cells[2],
            "%.2fx" % r if r is not None else "-", "%.2fx" % rf if rf is not None else "-",
            m.target.text if m.target else "-", m.verdict()))
    out.append("")
    notes = [(m.title, m.note) for m in metrics if m.note]
    if notes:
        out += ["Notes:", ""]
        out += ["- **%s**: %s" % (t, n) for t, n in notes]
        out.append("")
    if meta.get("chart"):
        out += ["![medians, each figure scaled to its larger side; whiskers min - max](%s)" % meta["chart"], ""]
    if meta.get("failures"):
        out += ["## Runs that gave no figure", ""] + ["- %s" % line for line in meta["failures"]] + [""]
    for title, lines in meta.get("sections", ()):
        out += ["## %s" % title, ""] + list(lines) + [""]
    if meta.get("method"):
        out += ["## Method", ""] + list(meta["method"]) + [""]
    if meta.get("machine"):
        out += ["## Machine", "", "| | |", "|---|---|"]
        out += ["| %s | %s |" % (k, str(v).replace("|", "\\|")) for k, v in meta["machine"]]
        out.append("")
    return "\n".join(out)


# --- SVG -------------------------------------------------------------------------------------------------------

_W = 900
_LABEL_W = 310
_BAR_W = 380
_ROW_H = 76
_COLOURS = {"ours": "#2b7bb9", "peer": "#b0b0b0", "floor": "#5a5a5a"}
_LABELS = {"ours": "mpinit", "peer": "busybox", "floor": "C floor"}


def svg(metrics, title="mpinit vs busybox-script init") -> str:
    """A horizontal bar chart: per figure two bars (medians) scaled to the larger median or max of the row,
    whiskers from min to max, the value written at the bar's end. Figures with no data on either side are
    drawn with the text "not measured"."""
    rows = [m for m in metrics if not isinstance(m, ModeMatched)]  # per-mode figures: the all-boots rows draw them
    height = 70 + _ROW_H * len(rows) + 30
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
             'font-family="sans-serif" font-size="12">' % (_W, height, _W, height),
             '<rect width="100%" height="100%" fill="white"/>',
             '<text x="%d" y="24" font-size="16" font-weight="bold">%s</text>' % (10, escape(title)),
             _legend(_LABEL_W, 44)]
    y = 70
    for m in rows:
        o, p = m.summaries()
        f = summarize(m.floor)
        scale_max = max([s.max for s in (o, p, f) if s is not None] or [0])
        parts.append('<text x="10" y="%d">%s</text>' % (y + 18, escape(m.title)))
        better = "lower is better" if m.better == "lower" else "higher is better"
        parts.append('<text x="10" y="%d" fill="#666" font-size="10">%s%s</text>'
                     % (y + 32, better, (", target " + escape(m.target.text)) if m.target else ""))
        sides = [("ours", o, m.ours_failures), ("peer", p, m.peer_failures)]
        if f is not None or m.floor_failures:
            sides.append(("floor", f, m.floor_failures))
        for i, (side, s, fails) in enumerate(sides):
            by = y + 6 + i * 20
            if s is None or scale_max <= 0:
                parts.append('<text x="%d" y="%d" fill="#a00">%s: not measured</text>'
                             % (_LABEL_W, by + 12, _LABELS[side]))
                continue
            w = _BAR_W * s.median / scale_max
            parts.append('<rect x="%d" y="%d" width="%.1f" height="14" fill="%s"/>'
                         % (_LABEL_W, by, w, _COLOURS[side]))
            if s.n > 1 and s.max > s.min:
                x0 = _LABEL_W + _BAR_W * s.min / scale_max
                x1 = _LABEL_W + _BAR_W * s.max / scale_max
                parts.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>' % (x0, by + 7, x1, by + 7))
                for x in (x0, x1):
                    parts.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>' % (x, by + 3, x,
                                                                                              by + 11))
            label = fmt(s.median, m.unit) + (" (%d failed)" % len(fails) if fails else "")
            parts.append('<text x="%.1f" y="%d">%s</text>' % (_LABEL_W + max(w, _BAR_W * s.max / scale_max) + 6,
                                                              by + 12, escape(label)))
        r = m.ratio()
        if r is not None:
            parts.append('<text x="%d" y="%d" fill="#333" text-anchor="end">%.2fx</text>' % (_W - 10, y + 24, r))
        y += _ROW_H
    parts.append('<text x="10" y="%d" fill="#666" font-size="10">bars: medians scaled per figure; whiskers: '
                 'min - max; right: ratio mpinit/busybox</text>' % (height - 10))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _legend(x, y):
    return ('<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">mpinit</text>'
            '<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">busybox script</text>'
            '<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">C floor (bench/cinit)</text>'
            % (x, y - 10, _COLOURS["ours"], x + 16, y, x + 90, y - 10, _COLOURS["peer"], x + 106, y,
               x + 220, y - 10, _COLOURS["floor"], x + 236, y))


# --- the scale bench (bench/mpbench/scale.py) ---------------------------------------------------------------------

SCALE_SLOPE_MS = 2.0    # issue 14: at most 2 ms per block device beyond the kernel's own probing
SCALE_PEER_AT = 32      # issue 14: no slower than the busybox script at 32 disks


def _ms_cell(values, failed=0):
    s = summarize(values)
    if s is None:
        text = "-"
    elif s.n > 1:
        text = "%d ms (%d - %d, n=%d)" % (round(s.median), round(s.min), round(s.max), s.n)
    else:
        text = "%d ms" % round(s.median)
    return text + (", %d failed" % failed if failed else "")


def scale_figures(rows):
    """The scale bench's derived figures from its rows (scale.measure()): per-block-device slopes (least squares
    over every boot) and the two targets' verdicts ("yes" / "no" / "n/a")."""
    from .stats import slope

    def pts(side, key, fn=None):
        return [(g["devices"], fn(g) if fn else g[key]) for g in rows
                if g["side"] == side and g.get("ok") and key in g]

    out = {
        "stages_slope": slope(pts("ours", "devices_ms", lambda g: g["devices_ms"] + g.get("medium_ms", 0))),
        "beyond_slope": slope(pts("ours", "beyond_kernel_ms")),
        "ours_init_slope": slope(pts("ours", "in_init_ms")),
        "peer_init_slope": slope(pts("peer", "in_init_ms")),
    }
    b = out["beyond_slope"]
    out["slope_met"] = "n/a" if b is None else ("yes" if b <= SCALE_SLOPE_MS else "no")
    at = [g for g in rows if g["disks"] == SCALE_PEER_AT and g.get("ok") and "in_init_ms" in g]
    o = summarize([g["in_init_ms"] for g in at if g["side"] == "ours"])
    p = summarize([g["in_init_ms"] for g in at if g["side"] == "peer"])
    out["peer_ratio"] = ratio(o, p)
    out["peer_met"] = "n/a" if out["peer_ratio"] is None else ("yes" if out["peer_ratio"] <= 1.0 else "no")
    return out


def scale_lines(rows, runs=None):
    """Markdown of the scale bench: a table per number of disks (medians over the boots), the per-block-device
    slopes and the issue's two scale targets, met or not."""
    scales = sorted({g["disks"] for g in rows})
    lines = ["N virtio-blk disks of 4 GPT partitions each, the MPLIVE medium on the last one (bench/mpbench/scale.py); "
             "medians over the boots%s. \"After the kernel's probing\": our devices + medium stages from the later "
             "of the devices stage's start and the kernel's last disk-probe line (a disk's size or partition "
             "list) to the end of the medium stage: the part of the search that is ours, not the kernel's."
             % (" (%d per side and scale)" % runs if runs else ""),
             "", "| disks | block devices | ours: devices + medium stages | ours: after the kernel's probing | "
             "ours: time in /init | busybox: wait for the medium | busybox: time in /init | ratio mpinit/busybox "
             "(time in /init) |", "|---|---|---|---|---|---|---|---|"]

    def vals(n, side, key, fn=None):
        return [fn(g) if fn else g[key] for g in rows
                if g["disks"] == n and g["side"] == side and g.get("ok") and key in g]

    for n in scales:
        here = [g for g in rows if g["disks"] == n]
        failed = {side: sum(1 for g in here if g["side"] == side and not g.get("ok")) for side in ("ours", "peer")}
        o_init, p_init = vals(n, "ours", "in_init_ms"), vals(n, "peer", "in_init_ms")
        r = ratio(summarize(o_init), summarize(p_init))
        lines.append("| %d | %d | %s | %s | %s | %s | %s | %s |" % (
            n, here[0]["devices"],
            _ms_cell(vals(n, "ours", "devices_ms", lambda g: g["devices_ms"] + g.get("medium_ms", 0))),
            _ms_cell(vals(n, "ours", "beyond_kernel_ms")), _ms_cell(o_init, failed["ours"]),
            _ms_cell(vals(n, "peer", "wait_medium_ms")), _ms_cell(p_init, failed["peer"]),
            "%.2fx" % r if r is not None else "-"))
    f = scale_figures(rows)

    def per(v):
        return "%.2f ms per block device" % v if v is not None else "not measured (fewer than two scales)"

    lines += ["", "Per block device (least-squares slope over every boot):", "",
              "- ours, devices + medium stages: %s" % per(f["stages_slope"]),
              "- ours, after the kernel's probing: %s" % per(f["beyond_slope"]),
              "- ours, time in /init: %s" % per(f["ours_init_slope"]),
              "- busybox script, time in /init: %s" % per(f["peer_init_slope"]),
              "", "| target (issue 14, -smp 1) | measured | met |", "|---|---|---|",
              "| <= %g ms per block device beyond the kernel's probing | %s | %s |" % (
                  SCALE_SLOPE_MS, "%.2f ms" % f["beyond_slope"] if f["beyond_slope"] is not None else
                  "not measured", f["slope_met"]),
              "| no slower than busybox at %d disks (time in /init) | %s | %s |" % (
                  SCALE_PEER_AT, "%.2fx busybox" % f["peer_ratio"] if f["peer_ratio"] is not None else
                  "not measured (%d disks not in this run or a side failed)" % SCALE_PEER_AT, f["peer_met"])]
    return lines


def calibration_lines(records):
    """Markdown: the boots per side, CPU count and TSC calibration mode, with each group's medians of the guest's
    and the host's clock. records: [{"side", "cpus", "mode", "uptime", "host", "run_init", "run_init_host"}]
    (a figure None when that boot did not give it)."""
    labels = {"ours": "mpinit", "peer": "busybox script", "floor": "C floor"}
    groups = {}
    for r in records:
        groups.setdefault((r["cpus"], r["side"]), {}).setdefault(r["mode"], []).append(r)

    def cell(rs, key):
        s = summarize([r[key] for r in rs if r.get(key) is not None])
        if s is None:
            return "-"
        return "%.3f s" % s.median if s.n == 1 else "%.3f s (%.3f - %.3f, n=%d)" % (s.median, s.min, s.max, s.n)

    out = ["| side | -smp | boots per mode | mode | live root, uptime | live root, host clock | `Run /init`, printk "
           "| `Run /init`, host clock |", "|---|---|---|---|---|---|---|---|"]
    for cpus, side in sorted(groups, key=lambda k: (k[0], list(labels).index(k[1]) if k[1] in labels else 9)):
        modes = groups[(cpus, side)]
        count = ", ".join("%s %d" % (mode, len(modes[mode])) for mode in sorted(modes))
        for mode in sorted(modes):
            rs = modes[mode]
            out.append("| %s | %d | %s | %s | %s | %s | %s | %s |" % (
                labels.get(side, side), cpus, count, mode, cell(rs, "uptime"), cell(rs, "host"),
                cell(rs, "run_init"), cell(rs, "run_init_host")))
    return out
