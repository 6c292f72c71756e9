# A boot failure with what a person needs to fix it: the stage, the parameter involved, what was tried and what
# was seen. Every stage raises BootError; main.py turns any other exception into one, and rescue.py prints it.


class BootError(Exception):
    """stage: a contract.STAGES name (or "hook"); param: the kernel parameter / config key involved or None;
    tried / seen: lists of short lines (what the agent attempted; what it found, e.g. every block device)."""

    def __init__(self, stage, message, param=None, tried=None, seen=None):
        super().__init__(message)
        self.stage = stage
        self.message = message
        self.param = param
        self.tried = list(tried or ())
        self.seen = list(seen or ())
        self.kernel = []    # the kernel's log lines since the stage started (kernlog.add_to), shown under "seen"

    def lines(self):
        out = ["mpinit: boot failed in stage '%s': %s" % (self.stage, self.message)]
        if self.param:
            out.append("  parameter: %s" % self.param)
        if self.tried:
            out.append("  tried:")
            for t in self.tried:
                out.append("    " + t)
        kernel = getattr(self, "kernel", None)
        if self.seen or kernel:
            out.append("  seen:")
            for s in self.seen:
                out.append("    " + s)
        if kernel:
            out.append("    the kernel's log since the stage started:")
            for s in kernel:
                out.append("      " + s)
        return out

    def __str__(self):
        return "\n".join(self.lines())


def oserror_text(e):
    """'errno 2: No such file or directory (/dev/sda)' for an OSError from the boundary (MicroPython's OSError
    carries only the number, and the path when the boundary gives one)."""
    from . import syscalls as sc

    try:
        num = e.args[0]
    except (AttributeError, IndexError):
        return repr(e)
    if not isinstance(num, int):
        return str(e)
    try:
        msg = sc.strerror(num)
    except Exception:  # noqa: BLE001 - no implementation plugged in: the number alone
        msg = ""
    # The native boundary raises OSError(errno, path); CPython (the fake machine) OSError(errno, strerror, path).
    what = getattr(e, "filename", None)
    if not what and len(e.args) > 1 and e.args[1] != msg:
        what = e.args[1]
    extra = (" (%s)" % (what,)) if what else ""
    return "errno %d%s%s" % (num, (": " + msg) if msg else "", extra)


def format_exception(e):
    """The traceback of e as a list of lines (sys.print_exception on MicroPython, traceback on CPython)."""
    import sys

    try:
        import io

        buf = io.StringIO()
        pe = getattr(sys, "print_exception", None)
        if pe is not None:
            pe(e, buf)
        else:
            import traceback

            traceback.print_exception(type(e), e, e.__traceback__, file=buf)
        text = buf.getvalue()
    except Exception:  # noqa: BLE001 - a report without a traceback beats no report
        return [repr(e)]
    return [line for line in text.split("\n") if line]
