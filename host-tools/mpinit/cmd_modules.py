"""`mpinit modules`: the kernel-module closure an image would get, or why one module is in it."""

import os
import sys
from pathlib import Path


def register(subparsers):
    p = subparsers.add_parser(
        "modules",
        help="list the kernel-module closure (or --explain one module)",
        description="Compute the kernel modules `mpinit pack` would ship: the modules asked for, their "
                    "dependencies and softdeps read from each module's .modinfo (no depmod needed), in load "
                    "order. Built-in modules are satisfied; a module found nowhere is a warning.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--kernel-modules", metavar="DIR", type=Path,
                     help="module tree, e.g. /lib/modules/6.1.0-13-amd64 or an unpacked kernel package's")
    src.add_argument("--kver", metavar="VER", help="use /lib/modules/VER (default: the running kernel's)")
    p.add_argument("--modules", metavar="LIST", default=None,
                   help="comma-separated module names, aliases or set names (sets: %s; default: generic-live, "
                        "or none with --host-only)" % ", ".join(sorted(_sets())))
    p.add_argument("--host-only", action="store_true",
                   help="add the modules bound to this machine's devices and its mounted filesystems (from /sys)")
    p.add_argument("--modprobe-d", metavar="FILE", action="append", default=[], type=Path,
                   help="modprobe.d file whose `options`/`blacklist` lines go into the table (repeatable)")
    p.add_argument("--firmware-dir", metavar="DIR", action="append", type=Path,
                   help="where to look for firmware (repeatable; default /lib/firmware)")
    p.add_argument("--strict", action="store_true", help="a module found nowhere is an error, not a warning")
    p.add_argument("--explain", metavar="NAME", help="say why NAME is in the closure and what pulled it in")
    p.set_defaults(func=run)


def _sets():
    from .kmod import MODULE_SETS
    return MODULE_SETS


def wanted_modules(spec, host_only):
    """`--modules` text -> names, with set names expanded in place (duplicates dropped, order kept)."""
    from .cli import UsageError

    if spec is None:
        return [] if host_only else list(_sets()["generic-live"])
    out = []
    for word in spec.split(","):
        word = word.strip()
        if not word:
            continue
        if "/" in word or word.startswith("."):
            raise UsageError("--modules: %r is not a module name (give names, not paths)" % word)
        for name in _sets().get(word, [word]):
            if name not in out:
                out.append(name)
    if not out and not host_only:
        raise UsageError("--modules: no module names in %r" % spec)
    return out


def module_dir(args):
    from .cli import UsageError

    if args.kernel_modules:
        d = args.kernel_modules
        what = "--kernel-modules %s" % d
    else:
        kver = args.kver or os.uname().release
        d = Path("/lib/modules") / kver
        what = "--kver %s" % kver if args.kver else "the running kernel's tree %s (use --kernel-modules)" % d
    if not d.is_dir():
        raise UsageError("%s: no such module directory" % what)
    return d


def run(args):
    from . import kmod
    from .cli import UsageError

    tree = module_dir(args)
    wanted = wanted_modules(args.modules, args.host_only)
    fw = tuple(args.firmware_dir) if args.firmware_dir else (Path("/lib/firmware"),)
    try:
        c = kmod.resolve(tree, wanted, host_only=args.host_only, strict=args.strict, firmware_dirs=fw,
                         modprobe_d=args.modprobe_d)
    except kmod.ModuleError as e:
        raise UsageError(str(e)) from None
    for w in c.warnings:
        print("mpinit: warning: %s" % w, file=sys.stderr)
    if args.explain:
        print(c.explain(args.explain))
        n = kmod.normalize(args.explain)
        return 0 if (n in c.infos or n in c.builtin) else 1
    width = max([len(m) for m in c.modules] + [4])
    for name in c.modules:
        info = c.infos[name]
        deps = ",".join(info.depends)
        print("%-*s  %s%s" % (width, name, info.rel, ("  (depends: %s)" % deps) if deps else ""))
    for name in c.builtin:
        print("%-*s  (built in)" % (width, name))
    fw_found = sum(1 for v in c.firmware.values() if v)
    size = sum(len(d) for _, d in c.files)
    print("%d modules (%d built in), %d firmware files, %.1f MiB uncompressed, table %d bytes, kernel %s, "
          "%d warnings" % (len(c.modules), len(c.builtin), fw_found, size / 1048576, len(c.table), c.kver,
                           len(c.warnings)))
    return 0
