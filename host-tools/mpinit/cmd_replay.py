"""`mpinit replay CAPTURE`: boot the agent on a fake machine rebuilt from a capture (mpinit.testing.replay) and
print what happened: notes on what the replay does differently, the console, the timeline, and how the replay
compares with the capture (stage results without durations, the failure report).

CAPTURE is a capture file (`capture("LABEL=...")` in the rescue REPL, `rd.mpinit.capture=`) or a console/serial
log holding the framed form (`capture("console")`); `--which N` picks one of several captures in a log (default
the last). Exit status: 0 when the replay agrees with the capture, 1 when it differs, 2 when CAPTURE cannot be read
(the message says what is missing or corrupt).
"""


def register(sub):
    p = sub.add_parser("replay", help="boot the agent on a fake machine made from a capture",
                       description="Rebuild the machine a capture describes (kernel command line, config, module "
                                   "table, block devices and the bytes the probes read, modaliases, RAM) as a "
                                   "fake machine, boot the real agent in it, and print the console, the timeline "
                                   "and how it compares with the capture.")
    p.add_argument("capture", metavar="CAPTURE", help="a capture file, or a console log holding the framed form")
    p.add_argument("--cmdline", metavar="TEXT", help="boot with this kernel command line instead of the captured one")
    p.add_argument("--hook", action="append", default=[], metavar="FILE",
                   help="install this hook file (docs/hooks.md) in the replayed image; may be repeated")
    p.add_argument("--input", action="append", default=[], metavar="LINE",
                   help="a line typed on the console (the rescue REPL); may be repeated")
    p.add_argument("--which", type=int, default=-1, metavar="N",
                   help="which framed capture of a log (0 = the first, -1 = the last; default -1)")
    p.add_argument("--keep-capture", action="store_true",
                   help="keep rd.mpinit.capture= on the replay's command line (left out by default)")
    p.set_defaults(func=run)


def run(args):
    import os

    from mpinit_agent.capture import CaptureError

    from .cli import UsageError
    from .testing import replay

    for hook in args.hook:
        if not os.path.isfile(hook) or not hook.endswith(".py"):
            raise UsageError("--hook %s: want an existing hook file ending in .py" % hook)
    try:
        m = replay.machine_from_capture(args.capture, cmdline=args.cmdline, hooks=args.hook,
                                        keep_capture=args.keep_capture, which=args.which)
    except CaptureError as e:
        raise UsageError("%s" % e) from None
    except ValueError as e:
        raise UsageError("%s: cannot be replayed: %s" % (args.capture, e)) from None
    m.console_input = list(args.input)
    doc = m.capture
    print("replay of a capture taken %s (stage %s, kernel %s, %d block devices)"
          % (doc["reason"], doc["stage"], doc["kernel"].get("release") or "?", len(doc["devices"])))
    print("cmdline: %s" % m.cmdline)
    for note in m.replay_notes:
        print("note: %s" % note)
    result = m.boot()
    print("---- console " + "-" * 60)
    print(result.console.rstrip("\n"))
    print("---- timeline " + "-" * 59)
    print(replay.timeline_text(replay.replay_timeline(result)))
    ended = ("handed off to %s" % result.init if result.handed_off else
             "stuck in the rescue REPL (no more console input)" if result.stuck else
             "reboot (%s)" % result.reboot if result.reboot else "PID 1 died" if result.panic else "?")
    print("---- end: %s" % ended)
    diffs = replay.compare(doc, result)
    if diffs:
        print("---- the replay differs from the capture:")
        for d in diffs:
            print("  " + d)
        return 1
    what = "stage results" + (" and failure report" if doc["failure"] else "")
    print("---- same %s as the capture (%d stages compared)" % (what, len(doc["timeline"])))
    return 0
