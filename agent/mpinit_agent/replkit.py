# The rescue REPL's comforts: the namespace Tab completes from, help(helper), shell().
#
# Tab completion: MicroPython's readline (shared/readline/readline.c, MICROPY_HELPER_REPL) completes with
# py/repl.c mp_repl_autocomplete(), which looks names up in the module `__main__` (mp_module___main__, whose
# globals are the interpreter's main dict) and attributes in the object before the dot. So on MicroPython the
# rescue REPL runs in __main__'s own dict with the helpers, `ctx` and `err` put in it: `blk<Tab>` completes to
# `blkid`, `ctx.op<Tab>` to `ctx.opts`, and names the user defines complete too. On CPython (the fake machine, the
# tests) a private dict is used instead: the test runner's __main__ is not ours to fill.
#
# History: the same readline keeps the last MICROPY_READLINE_HISTORY_SIZE (20, agent/native/variant) lines for the
# whole life of PID 1 (up arrow / Ctrl-P), across rescue sessions (a break point, then a failure).
#
# help(): MicroPython drops docstrings when it compiles (there is no __doc__), and its help(obj) prints only the
# object's type and attributes. help() here prints the overview, help(blkid) or help("blkid") the helper's own text
# from TOPICS, and anything else goes to the built-in help().
import sys

# name -> (call form, what it does). Kept in one table so help() and the tests see the same words.
TOPICS = {
    "ls": ('ls(path="/")', "List a directory: type, size, name (symlinks with their target)."),
    "cat": ("cat(path)", "Print a file (bytes that are not UTF-8 as a bytes literal)."),
    "dmesg": ("dmesg()", "Print the kernel log, oldest record first, as `dmesg` does."),
    "blkid": ("blkid()", "Every block device with TYPE, LABEL, UUID, PARTUUID, PARTLABEL as the agent's own probes "
                         "see them (rescans /sys/class/block; ctx.devices is updated)."),
    "lsmod": ("lsmod()", "Loaded modules (/proc/modules), then those that failed to load this boot and why."),
    "modprobe": ('modprobe(name, params="")', "Load a module from the image with its dependencies, e.g. "
                                               'modprobe("usb_storage") or modprobe("loop", "max_loop=16").'),
    "mount": ('mount(src, target, fstype=None, options="")', "mount(2) with a mount(8)-style option string, e.g. "
              'mount("/dev/vda1", "/mnt", "ext4", "ro,noatime"). mount() alone prints the mount table.'),
    "umount": ("umount(target)", "Unmount target."),
    "mounts": ("mounts()", "Print /proc/mounts."),
    "run": ("run(*argv)", 'Run a program from the image and wait; returns its exit code, e.g. '
                          'run("/sbin/e2fsck", "-y", "/dev/vda1").'),
    "shell": ("shell()", "Run a shell packed into the image (/bin/sh, or busybox sh; mpinit pack --binary "
                         "/bin/busybox) on the console; exit it to come back here."),
    "unlock": ("unlock(device, name=None)", 'Open a LUKS device (asks for the passphrase), e.g. unlock("/dev/vda2").'),
    "capture": ("capture(to=None)", 'Describe this machine for a bug report: to="LABEL=STICK" writes '
                                    "mpinit-capture-N.json there; without a target it is printed framed on the "
                                    "console. `mpinit replay` boots the agent on it."),
    "resume": ("resume()", "Continue the boot: the failed stage (or the stage of the break point) runs again."),
    "reboot": ("reboot()", "Sync and restart the machine."),
    "poweroff": ("poweroff()", "Sync and power the machine off."),
    "help": ("help(obj=None)", "help() lists the helpers; help(blkid) or help(\"blkid\") explains one."),
    "ctx": ("ctx", "The boot context: ctx.opts (the parsed command line), ctx.config, ctx.devices, ctx.modules, "
                   "ctx.image, ctx.medium, ctx.new_root, ctx.timeline, ctx.stage. Tab completes its attributes."),
    "err": ("err", "The failure: err.stage, err.message, err.param, err.tried, err.seen, err.kernel (the kernel's "
                   "log lines since the stage started). None at a break point."),
}

MICROPYTHON = sys.implementation.name == "micropython"

_SHELLS = (("/bin/sh",), ("/usr/bin/sh",), ("/bin/busybox", "sh"), ("/usr/bin/busybox", "sh"), ("/bin/bash",),
           ("/usr/bin/bash",))
SHELL_ENV = ["PATH=/sbin:/usr/sbin:/bin:/usr/bin", "HOME=/", "TERM=linux", "PS1=(mpinit rescue) \\w # "]


def namespace(helpers):
    """The dict the REPL runs in, holding `helpers`: __main__'s own on MicroPython (what Tab completes from), a
    fresh one on CPython. Names a previous session put there stay (the user's variables survive a resume())."""
    if MICROPYTHON:
        import __main__

        ns = __main__.__dict__
    else:
        ns = {"__name__": "__rescue__"}
    ns.update(helpers)
    return ns


def topic(obj, ns):
    """The TOPICS key for obj: a helper's name given as a string, or the name under which ns holds obj itself."""
    if isinstance(obj, str):
        return obj if obj in TOPICS else None
    for name in TOPICS:
        if name in ns and ns[name] is obj:
            return name
    return None


def help_text(name):
    form, text = TOPICS[name]
    return "%s\n    %s" % (form, text)


def make_help(ns, overview):
    """The REPL's help(): overview, a helper's text, or the built-in help() for anything else."""
    def help(obj=None):  # noqa: A001 - shadows the built-in on purpose, inside the REPL only
        if obj is None:
            print(overview)
            return
        name = topic(obj, ns)
        if name is not None:
            print(help_text(name))
            return
        if isinstance(obj, str):
            print("help(%r): no such helper; help() lists them" % obj)
            return
        builtin = getattr(__import__("builtins"), "help", None)
        if MICROPYTHON and builtin is not None:
            builtin(obj)      # MicroPython's: the type and the attributes
        else:
            print("%r: %s" % (obj, ", ".join([a for a in dir(obj) if not a.startswith("_")])))
    return help


def find_shell(exists):
    """The first packed shell as an argv, or None. exists(path) -> bool."""
    for argv in _SHELLS:
        if exists(argv[0]):
            return list(argv)
    return None


def shell():
    """Run a packed shell on the console and wait for it; its exit code, or None when the image has none."""
    from . import fsutil, proc
    from . import syscalls as sc

    argv = find_shell(fsutil.isfile)
    if argv is None:
        print("shell(): no shell in this image (looked for %s). Pack one: mpinit pack --binary /bin/busybox ... "
              "(or --binary /bin/sh); run() starts any other program." % ", ".join([a[0] for a in _SHELLS]))
        return None
    print("shell(): %s; exit (or Ctrl-D) comes back to this REPL" % " ".join(argv))
    pid = sc.spawn(argv, SHELL_ENV)
    while True:
        try:
            return proc.wait(pid)
        except KeyboardInterrupt:
            # Ctrl-C on the console reaches the whole foreground process group, PID 1 included: it was meant for
            # the shell, which is still running. Keep waiting for it rather than leave two readers on the console.
            continue
