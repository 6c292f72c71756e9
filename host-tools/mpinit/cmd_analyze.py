"""`mpinit analyze INPUT [--svg FILE]`: where the boot time went, from a console log, a kernel log dump (`dmesg -r`,
/dev/kmsg records) or the live root's /run/mpinit/timeline.json (mpinit.analyze): a table on stdout, and with
--svg a chart (stages as bars on a time axis, module loads under them), written atomically.
"""

from pathlib import Path


def register(sub):
    p = sub.add_parser("analyze", help="where the boot time went: a table and an SVG chart from a console log, "
                                       "a kernel log or timeline.json",
                       description=__doc__)
    p.add_argument("input", type=Path, metavar="INPUT",
                   help="a serial console log, `dmesg -r` output, /dev/kmsg records, or /run/mpinit/timeline.json")
    p.add_argument("--svg", type=Path, metavar="FILE", help="write the chart here (SVG)")
    p.add_argument("--width", type=int, default=1000, help="the chart's width in pixels (default 1000)")
    p.set_defaults(func=run)


def run(args):
    from . import analyze, atomic
    from .cli import UsageError

    if args.width < 300 or args.width > 20000:
        raise UsageError("--width %d: want 300 to 20000 pixels" % args.width)
    try:
        boot = analyze.load(args.input)
    except analyze.AnalyzeError as e:
        raise UsageError(str(e)) from None
    print(analyze.table(boot))
    if args.svg is not None:
        if args.svg.is_dir():
            raise UsageError("--svg %s: is a directory" % args.svg)
        try:
            atomic.write_bytes(args.svg, analyze.svg(boot, args.width).encode())
        except OSError as e:
            raise UsageError("--svg %s: %s" % (args.svg, e.strerror or e)) from None
        print("chart: %s" % args.svg)
    return 0
