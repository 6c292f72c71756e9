"""`mpinit install-hooks` (kernel hooks that rebuild /boot/initrd.img-<version>) and `mpinit kernel-hook`, which
those hooks run (mpinit.kernelhooks; docs/kernel-hooks.md)."""

import argparse
from pathlib import Path


def register(sub):
    p = sub.add_parser("install-hooks", help="install kernel hooks that build /boot/initrd.img-<version> with mpinit",
                       description="Install /etc/kernel/postinst.d/zz-mpinit, /etc/kernel/postrm.d/zz-mpinit (Debian's "
                                   "kernel hooks) and /etc/kernel/install.d/50-mpinit.install (a kernel-install "
                                   "plugin), and /etc/mpinit/pack.conf when there is none: installing a kernel "
                                   "then builds its initramfs with `mpinit pack`, removing it removes it.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example:\n  mpinit install-hooks && editor /etc/mpinit/pack.conf && "
                              "/etc/kernel/postinst.d/zz-mpinit \"$(uname -r)\"\n")
    p.add_argument("--root", type=Path, default=Path("/"), metavar="DIR",
                   help="install into this root instead of / (a chroot or a scratch tree)")
    p.add_argument("--mpinit", type=Path, metavar="PATH",
                   help="the mpinit command the hooks run (default: this one, %(prog)s's own path)")
    p.set_defaults(func=run_install)

    p = sub.add_parser("kernel-hook", help="what the installed kernel hooks run: build or remove an initramfs",
                       description="Build (add) or remove /boot/initrd.img-VERSION of the system at --root, from its "
                                   "/etc/mpinit/pack.conf and /lib/modules/VERSION.")
    p.add_argument("command", choices=("add", "remove"))
    p.add_argument("version", metavar="VERSION", help="the kernel release, e.g. 6.1.0-41-amd64")
    p.add_argument("image", nargs="?", help="the kernel image path (given by the hook callers; unused)")
    p.add_argument("--root", type=Path, default=Path("/"), metavar="DIR", help="the system's root (default /)")
    p.add_argument("--staging", type=Path, metavar="DIR",
                   help="kernel-install's $KERNEL_INSTALL_STAGING_AREA: also copy the image there as `initrd`")
    p.set_defaults(func=run_hook)


def run_install(args):
    from .cli import UsageError
    from .kernelhooks import HookError, install

    try:
        install(args.root, args.mpinit)
    except HookError as e:
        raise UsageError(str(e))
    return 0


def run_hook(args):
    from .cli import UsageError
    from .kernelhooks import HookError, add, remove

    try:
        if args.command == "add":
            add(args.version, args.root, staging=args.staging)
        else:
            remove(args.version, args.root)
    except HookError as e:
        raise UsageError(str(e))
    return 0
