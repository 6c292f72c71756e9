"""`mpinit pack`: build an initramfs image (see initramfs.py for what goes in and in which order)."""

import argparse
import sys
from pathlib import Path

EPILOG = """\
examples:
  mpinit pack -o initrd.img --kver "$(uname -r)"
  mpinit pack -o initrd.img --kernel-modules build/kernel/root/lib/modules/VER \\
      --modules generic-live,btrfs --compress zstd --binary /sbin/e2fsck --keymap de-latin1
  mpinit pack -o initrd.img --list initramfs.list --add ./hooks/net.py:/etc/mpinit/hooks/net.py

With a module tree and no --modules the generic-live set is shipped. The image always holds /init, /dev/console,
/dev/null, the agent's mount points and /etc/mpinit/config.json (--config, --cmdline).
"""


def _csv(value):
    return [v.strip() for v in value.split(",") if v.strip()]


def _add_spec(value):
    src, sep, dest = value.partition(":")
    if not src:
        raise argparse.ArgumentTypeError("%r: expected SRC:DEST" % value)
    return (src, dest if sep else src)


def register(sub):
    from . import compress

    p = sub.add_parser("pack", help="build an initramfs image",
                       description="Build an initramfs: the runtime as /init, the agent's configuration, kernel "
                                   "modules\nand your files, in one deterministic cpio archive, compressed.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUT", help="image to write (atomically)")
    p.add_argument("--init", type=Path, metavar="PATH",
                   help="the /init binary (default: the runtime from `build.py runtime`, build/mpinit-init)")
    p.add_argument("--arch", choices=["x86_64", "arm64"], default=None,
                   help="the CPU the image is for (default: --init's, else the module tree's, else this "
                        "machine's); picks the runtime of `build.py runtime --arch ARCH` (build/arm64/mpinit-init)")
    g = p.add_argument_group("contents")
    g.add_argument("--dir", dest="directories", action="append", default=[], type=Path, metavar="DIR",
                   help="add a directory's contents at the image root (CONFIG_INITRAMFS_SOURCE style)")
    g.add_argument("--list", dest="lists", action="append", default=[], type=Path, metavar="FILE",
                   help="add the entries of a gen_init_cpio list (file/dir/nod/slink/pipe/sock lines)")
    g.add_argument("--add", dest="adds", action="append", default=[], type=_add_spec, metavar="SRC:DEST",
                   help="add a host file or directory at DEST; an ELF program brings its shared libraries")
    g.add_argument("--binary", dest="binaries", action="append", default=[], metavar="PATH",
                   help="add an ELF program at its own path, with its interpreter and libraries (like lddtree)")
    g.add_argument("--early", action="append", default=[], type=Path, metavar="CPIO",
                   help="an uncompressed cpio archive to put first, e.g. CPU microcode (kernel/x86/microcode/)")
    g.add_argument("--keymap", metavar="NAME|FILE",
                   help="console keymap: a kbd keymap (converted with loadkeys -b) or a busybox binary keymap")
    g.add_argument("--hook", dest="hooks", action="append", default=[], type=Path, metavar="FILE",
                   help="a Python hook (*.py) copied to /etc/mpinit/hooks")
    g = p.add_argument_group("storage stacks (installed systems)")
    g.add_argument("--luks", action="store_true",
                   help="cryptsetup with its libraries, dm_crypt and the crypto modules LUKS needs")
    g.add_argument("--mdadm", action="store_true", help="mdadm and the md RAID modules (md_mod, raid1, ...)")
    g.add_argument("--lvm", action="store_true", help="lvm with its libraries and dm_mod")
    g.add_argument("--crypttab", type=Path, metavar="FILE", help="baked in as /etc/crypttab (checked first)")
    g = p.add_argument_group("configuration")
    g.add_argument("--config", type=Path, metavar="FILE", help="baked-in configuration (JSON, see contract.py)")
    g.add_argument("--cmdline", metavar="TEXT", help="default boot options (the kernel command line wins)")
    g = p.add_argument_group("kernel modules")
    m = g.add_mutually_exclusive_group()
    m.add_argument("--kernel-modules", type=Path, metavar="DIR",
                   help="a module tree, e.g. an unpacked kernel package's lib/modules/VER")
    m.add_argument("--kver", metavar="VER", help="use /lib/modules/VER")
    g.add_argument("--modules", action="append", type=_csv, metavar="A,B,...",
                   help="modules or sets to ship (default: generic-live)")
    g.add_argument("--host-only", action="store_true", help="also ship the modules this machine's devices use")
    g.add_argument("--strict", action="store_true", help="a module found nowhere is an error, not a warning")
    g.add_argument("--firmware-dir", dest="firmware_dirs", action="append", type=Path, metavar="DIR",
                   help="where to look for firmware (default /lib/firmware)")
    g.add_argument("--modprobe-d", dest="modprobe_d", action="append", default=[], type=Path, metavar="FILE",
                   help="modprobe.d file whose options/blacklist lines go into the module table")
    g = p.add_argument_group("compression")
    g.add_argument("--compress", default=compress.DEFAULT, metavar="METHOD[:LEVEL]",
                   help="%s (default %s)" % (", ".join(compress.METHODS), compress.DEFAULT))
    g.add_argument("--kernel-config", type=Path, metavar="FILE",
                   help="the kernel's config: refuse a compression it cannot unpack (CONFIG_RD_*)")
    p.set_defaults(func=run)


def options(args):
    """PackOptions from parsed arguments."""
    from .initramfs import PackOptions
    from .paths import runtime

    module_dir = args.kernel_modules
    if args.kver:
        if "/" in args.kver or args.kver in (".", ".."):
            from .cli import UsageError

            raise UsageError("--kver %r: a kernel version, not a path (use --kernel-modules DIR)" % args.kver)
        module_dir = Path("/lib/modules") / args.kver
    modules = [m for group in args.modules for m in group] if args.modules else None
    arch = args.arch
    if arch is None and args.init is None and module_dir is not None:
        from .arch import of_module_tree

        found = of_module_tree(module_dir)   # an arm64 kernel's modules: the arm64 runtime
        arch = found.name if found else None
    opts = PackOptions(
        init=args.init or runtime(arch), directories=args.directories, lists=args.lists, adds=args.adds,
        binaries=args.binaries, config_file=args.config, cmdline=args.cmdline, module_dir=module_dir,
        modules=modules, host_only=args.host_only, strict=args.strict, modprobe_d=args.modprobe_d,
        hooks=args.hooks, keymap=args.keymap, compression=args.compress, kernel_config=args.kernel_config,
        early=args.early, luks=args.luks, mdadm=args.mdadm, lvm=args.lvm, crypttab=args.crypttab, arch=arch)
    if args.firmware_dirs:
        opts.firmware_dirs = args.firmware_dirs
    return opts


def run(args):
    from .cli import UsageError
    from .initramfs import PackError, pack

    try:
        result = pack(options(args), args.output)
    except PackError as e:
        raise UsageError(str(e))
    for w in result.warnings:
        print("mpinit: warning: %s" % w, file=sys.stderr)
    method = args.compress.partition(":")[0]
    print(result.summary(args.output, method))
    return 0
