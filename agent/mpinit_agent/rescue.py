# The failure path and the rescue shell.
#
# fail(ctx, err): print the report (stage, parameter, what was tried, what was seen), run on_failure hooks, then
# unless rd.shell=0 / config "shell": false, a Python REPL on the console with helpers (help() lists them);
# resume() returns True to main.py, which runs the failed stage again. With the shell off: wait panic= seconds
# (config panic_s; 0 waits forever and a negative value reboots at once, as the kernel's panic=) and reboot.
#
# The REPL reads lines with syscalls.readline and compiles in 'single' mode so expressions echo, like
# MicroPython's own REPL: a block continues while brackets or a triple-quoted string are open, after a line ending
# in ":" or "\", until a blank line. Nothing typed there can kill PID 1: SyntaxError, KeyboardInterrupt, exit()
# and every exception are caught and printed.
import os
import sys

from . import fsutil, log
from . import syscalls as sc
from .failure import oserror_text

_PS1 = ">>> "
_PS2 = "... "


# ---- multi-line input ----------------------------------------------------------------------------------------

def _scan(src):
    """(bracket depth, inside a triple-quoted string) at the end of src, skipping strings and comments."""
    depth = 0
    i = 0
    n = len(src)
    quote = None   # the open quote: ', ", ''' or """
    while i < n:
        c = src[i]
        if quote is not None:
            if c == "\\":
                i += 2
                continue
            if src.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
            if c == "\n" and len(quote) == 1:
                quote = None  # an unterminated one-line string: compile() will say so
            i += 1
            continue
        if c == "#":
            j = src.find("\n", i)
            i = n if j < 0 else j
            continue
        if c == '"' or c == "'":
            quote = c * 3 if src.startswith(c * 3, i) else c
            i += len(quote)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        i += 1
    return depth, quote is not None and len(quote) == 3


def _code_part(line):
    """A line without its trailing comment (a '#' outside strings), right-stripped."""
    quote = None
    for i in range(len(line)):
        c = line[i]
        if quote:
            if c == quote:
                quote = None
        elif c == '"' or c == "'":
            quote = c
        elif c == "#":
            return line[:i].rstrip()
    return line.rstrip()


# Statements that open a block: MicroPython's REPL (shared/readline, py/repl.c mp_repl_continue_with_input) keeps
# reading until a blank line after a first line starting with one of these.
_COMPOUND = ("if", "while", "for", "def", "class", "try", "with", "async", "match")


def _opens_block(first):
    first = _code_part(first).lstrip()
    if first.startswith("@") or first.endswith(":"):
        return True
    word = first.split("(")[0].split(" ")[0]
    return word in _COMPOUND


def needs_more(src):
    """True when the REPL should read another line before compiling src (MicroPython's REPL rules)."""
    depth, in_triple = _scan(src)
    if depth > 0 or in_triple:
        return True
    lines = src.split("\n")
    if _code_part(lines[-1]).endswith("\\"):
        return True
    if not _opens_block(lines[0]):
        return False
    return len(lines) == 1 or lines[-1].strip() != ""  # a block ends with a blank line


def print_exception(e):
    pe = getattr(sys, "print_exception", None)
    if pe is not None:
        pe(e)
    else:
        import traceback

        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stdout)


# ---- the helpers -------------------------------------------------------------------------------------------------

HELP = """mpinit rescue shell: Python (MicroPython) with these helpers:
  ls(path="/")            list a directory          cat(path)            print a file
  dmesg()                 the kernel log            blkid()              block devices: TYPE LABEL UUID ...
  lsmod()                 loaded modules            modprobe(name, params="")   load a module (+ dependencies)
  mount(src, target, fstype=None, options="")       umount(target)       mounts()   the mount table
  run(*argv)              run a program, e.g. run("/sbin/e2fsck", "-y", "/dev/vda1")
  shell()                 a packed shell (/bin/sh or busybox sh) on the console; exit comes back here
  capture(to=None)        describe this machine for a bug report: to="LABEL=STICK" writes mpinit-capture-N.json
                          there, "console" (the default without rd.mpinit.capture=) prints it framed
  unlock(device, name=None)   open a LUKS device (asks for the passphrase), e.g. unlock("/dev/vda2")
  resume()                continue the boot (the failed stage runs again)
  reboot()  poweroff()    help()   help(blkid): one helper explained
  ctx                     the boot context (ctx.opts, ctx.devices, ctx.image, ctx.timeline, ...)
  err                     the failure (err.stage, err.message, err.param, err.tried, err.seen)
Tab completes names and attributes (ctx.<Tab>); up arrow / Ctrl-P recalls earlier lines.
Blocks continue until a blank line. Ctrl-C cancels a line; exit() does not leave (this is PID 1)."""


def ls(path="/"):
    try:
        names = os.listdir(path)
    except OSError as e:
        print("ls: %s: %s" % (path, oserror_text(e)))
        return
    names.sort()
    for name in names:
        full = fsutil.join(path, name)
        try:
            st = sc.lstat(full)
        except OSError:
            print("?          %s" % name)
            continue
        fmt = st[0] & sc.S_IFMT
        if fmt == sc.S_IFLNK:
            try:
                target = sc.readlink(full)
            except OSError:
                target = "?"
            print("l %10s  %s -> %s" % ("", name, target))
        elif fmt == sc.S_IFDIR:
            print("d %10s  %s/" % ("", name))
        elif fmt == sc.S_IFBLK or fmt == sc.S_IFCHR:
            print("%s %10s  %s" % ("b" if fmt == sc.S_IFBLK else "c", "", name))
        else:
            print("- %10d  %s" % (st[6], name))


def cat(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        print("cat: %s: %s" % (path, oserror_text(e)))
        return
    try:
        text = data.decode()
    except UnicodeError:
        text = repr(data)
    print(text.rstrip("\n"))


def dmesg(path="/dev/kmsg"):
    """Print the kernel log (each reader of /dev/kmsg starts at the oldest record still in the buffer)."""
    try:
        fd = sc.open(path, sc.O_RDONLY | sc.O_NONBLOCK | sc.O_CLOEXEC)
    except OSError as e:
        print("dmesg: %s: %s" % (path, oserror_text(e)))
        return
    from . import kernlog

    try:
        for rec in kernlog.records(fd):
            r = kernlog.parse(rec)   # (level, usec, text) of "prio,seq,usec,flags;text" (dev-kmsg ABI)
            if r is not None:
                print(kernlog.line(r[1], r[2], 0))  # the whole line: someone asked to read it
    finally:
        sc.close(fd)


def mounts():
    text = fsutil.read_text("/proc/mounts", "")
    print(text if text else "(no /proc/mounts)")


def mount(source=None, target=None, fstype=None, options=""):
    """mount() alone prints the table; else mount(2) with the option string split like mount(8)."""
    if source is None and target is None:
        mounts()
        return
    from . import mountopts

    flags, data = mountopts.mount_flags(options)
    fsutil.makedirs(target)
    sc.mount(source, target, fstype, flags, data or None)


def umount(target):
    sc.umount(target)


def run(*argv):
    """Run a program on the console and wait; returns its exit code."""
    from . import proc

    return proc.run(list(argv))


class Shell:
    """One REPL session. run() -> "resume" | "stopped" (machine rebooted) | "eof" (no console input)."""

    def __init__(self, ctx, err=None, can_resume=True):
        self.ctx = ctx
        self.err = err
        self.can_resume = can_resume
        self.outcome = None
        self.ns = self.namespace()
        m = getattr(ctx, "modules", None)
        if m is not None:  # blkid() shows every disk: the slow controllers coldplug held back (kmod DEFERRED) too
            try:
                m.load_deferred()
            except (OSError, ValueError) as e:
                log.warning("rescue: deferred modules: %s" % e)

    def namespace(self):
        # replkit: on MicroPython this is __main__'s dict (what Tab completes from); help(helper) from its TOPICS.
        from . import replkit

        ns = replkit.namespace({
            "ctx": self.ctx, "err": self.err, "sc": sc, "os": os, "shell": replkit.shell,
            "ls": ls, "cat": cat, "dmesg": dmesg, "blkid": self.blkid, "lsmod": self.lsmod,
            "modprobe": self.modprobe, "mount": mount, "umount": umount, "mounts": mounts, "run": run,
            "resume": self.resume, "reboot": self.reboot, "poweroff": self.poweroff, "help": self.help,
            "unlock": self.unlock, "capture": self.capture,
        })
        ns["help"] = replkit.make_help(ns, HELP)
        return ns

    # helpers that need the session
    def help(self, *args):
        print(HELP)

    def unlock(self, device, name=None):
        from . import luks

        return luks.repl_unlock(self.ctx, device, name)

    def capture(self, to=None):
        from . import capture

        capture.capture(self.ctx, to, self.err, "rescue")

    def resume(self):
        if not self.can_resume:
            print("resume(): nothing to resume after an internal error; reboot() or poweroff()")
            return
        self.outcome = "resume"

    def reboot(self):
        self._down(sc.RB_AUTOBOOT)

    def poweroff(self):
        self._down(sc.RB_POWER_OFF)

    def _down(self, how):
        sc.sync()
        sc.reboot(how)
        self.outcome = "stopped"  # only a recording implementation returns

    def blkid(self):
        from . import blockdev

        devices = blockdev.scan()
        self.ctx.devices = devices
        text = blockdev.describe(devices)
        if not isinstance(text, str):
            text = "\n".join(text)
        print(text or "(no block devices)")

    def lsmod(self):
        text = fsutil.read_text("/proc/modules", "")
        for line in text.split("\n"):
            if line:
                print(line.split(" ")[0])
        m = self.ctx.modules
        if m is not None and m.failed:
            print("failed this boot: %s" % ", ".join(["%s (%s)" % (n, why) for n, why in m.failed]))

    def modprobe(self, name, params=""):
        from . import kmod

        m = kmod.of(self.ctx)
        ok = m.load(name, params or None)
        print("%s: %s" % (name, "loaded" if ok else "failed"))
        return ok

    def execute(self, src):
        try:
            code = compile(src, "<rescue>", "single")
            exec(code, self.ns)
        except SystemExit:
            print("exit() does nothing here: this is PID 1. Use resume(), reboot() or poweroff().")
        except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - nothing typed here may kill PID 1
            print_exception(e)

    def run(self):
        buf = []
        while self.outcome is None:
            try:
                line = sc.readline(_PS2 if buf else _PS1)
            except EOFError:
                return "eof"
            except KeyboardInterrupt:
                print("\nKeyboardInterrupt")
                buf = []
                continue
            except OSError as e:
                log.error("rescue: console read failed: %s" % oserror_text(e))
                return "eof"
            buf.append(line)
            src = "\n".join(buf)
            if not src.strip():
                buf = []
                continue
            if needs_more(src):
                continue
            buf = []
            self.execute(src + "\n")
        return self.outcome


# ---- the failure path --------------------------------------------------------------------------------------------

def report(ctx, err):
    """Print the failure on the console and into the kernel log."""
    lines = err.lines()
    m = getattr(ctx, "modules", None)
    if m is not None and m.failed and err.stage in ("devices", "medium", "root"):
        if not [s for s in err.seen if s.startswith("modules that failed to load")]:  # devices says it itself
            lines.append("  modules that failed to load: %s" % ", ".join([n for n, _ in m.failed]))
        for n, said in getattr(m, "kernel_said", {}).items():  # what the kernel said at each failed load
            for s in said:
                lines.append("    %s: %s" % (n, s))
    for line in lines:
        log.error(line[8:] if line.startswith("mpinit: ") else line)
        log.console(line)
    return lines


def _raw_param(ctx, key):
    """The last `key=value` of /proc/cmdline when the cmdline stage has not parsed it (it failed, e.g. on a bad
    config.json or a bad parameter): rd.shell=0 and panic= must still be honoured on that failure. None when
    absent or unreadable."""
    if getattr(ctx, "opts", None) is not None:
        return None
    val = None
    for word in fsutil.read_text("/proc/cmdline", "").split():
        if word == key:
            val = ""
        elif word.startswith(key + "="):
            val = word[len(key) + 1:]
    return val


def shell_enabled(ctx):
    opts = getattr(ctx, "opts", None)
    if opts is not None and opts.shell is not None:
        return bool(opts.shell)
    raw = _raw_param(ctx, "rd.shell")
    if raw is not None:
        from .cmdline import _FALSE

        return raw not in _FALSE
    return bool(ctx.config.get("shell", True))


def panic_seconds(ctx):
    opts = getattr(ctx, "opts", None)
    if opts is not None and opts.panic is not None:
        return int(opts.panic)
    raw = _raw_param(ctx, "panic")
    if raw:
        try:
            return int(raw)
        except ValueError:
            pass
    return int(ctx.config.get("panic_s", 10))


def reboot_or_hang(how):
    """reboot(2); if it fails, stay alive forever (a returning PID 1 is a kernel panic). Returns only when a
    recording implementation returns from reboot()."""
    try:
        sc.sync()
        sc.reboot(how)
        return
    except OSError as e:
        log.error("reboot failed: %s; halting here" % oserror_text(e))
    while True:
        sc.sleep_ms(60000)


def fail(ctx, err, can_resume=True):
    """The failure path. Returns True when the user asked to resume (the stage runs again), False when the machine
    was rebooted (only a recording implementation returns then)."""
    report(ctx, err)
    hooks = getattr(ctx, "hooks", None)
    if hooks is not None:
        try:
            hooks.run("on_failure", ctx, err)
        except Exception as e:  # noqa: BLE001 - a failing on_failure hook must not hide the first failure
            log.error("on_failure hook: %s" % e)
            log.console("mpinit: on_failure hook failed too: %s" % e)
    opts = getattr(ctx, "opts", None)
    if opts is not None and getattr(opts, "capture", None):  # rd.mpinit.capture=<target>[@failure]
        from . import capture

        capture.at(ctx, "failure", err)
    try:
        ctx.write_timeline()
    except (OSError, AttributeError):
        pass
    if shell_enabled(ctx):
        log.console("mpinit: rescue shell. help() lists the helpers; %s"
                    % ("resume() runs stage '%s' again." % err.stage if can_resume else "reboot() restarts."))
        outcome = Shell(ctx, err, can_resume).run()
        if outcome == "resume":
            return True
        if outcome == "stopped":
            return False
        log.console("mpinit: no console input: rebooting")
    secs = panic_seconds(ctx)
    if secs == 0:
        log.console("mpinit: rd.shell=0 and panic=0: waiting forever")
        while True:
            sc.sleep_ms(60000)
    if secs > 0:
        log.console("mpinit: rebooting in %d s (panic=%d)" % (secs, secs))
        sc.sleep_ms(secs * 1000)
    reboot_or_hang(sc.RB_AUTOBOOT)
    return False


def break_shell(ctx, stage):
    """rd.break=<stage>: the REPL before the stage. Returns "resume", "stopped" or "eof" (eof continues too)."""
    log.console("mpinit: rd.break=%s: rescue shell before stage '%s'; resume() continues the boot." % (stage, stage))
    out = Shell(ctx, None).run()
    return out
