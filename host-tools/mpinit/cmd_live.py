"""`mpinit squash`, `mpinit live-image`, `mpinit live-iso`: the last mile from a root directory to boot media.

    mpinit squash ROOTDIR -o filesystem.squashfs
    mpinit live-image --kernel vmlinuz --initrd initrd.img --squashfs filesystem.squashfs -o live.img [--uefi]
    mpinit live-iso --kernel vmlinuz --initrd initrd.img --squashfs filesystem.squashfs -o live.iso

See docs/live-media.md.
"""

from pathlib import Path


def register(sub):
    p = sub.add_parser("squash", help="make a squashfs (or EROFS) image of a root directory for live media",
                       description="mksquashfs (or mkfs.erofs with --format erofs) with live-media defaults: the "
                                   "contents of proc, sys, dev, run and tmp left out, the output left out when "
                                   "inside the root, a root without an init refused.")
    p.add_argument("root", type=Path, metavar="ROOTDIR", help="the root directory")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="IMAGE", help="the image to write")
    p.add_argument("--format", default="squashfs", choices=("squashfs", "erofs"),
                   help="image format (default squashfs; erofs: as Fedora 42+ and archiso's airootfs.erofs)")
    p.add_argument("--comp", default=None, choices=("xz", "zstd", "gzip", "lz4hc", "lz4", "none"),
                   help="compressor (squashfs: xz, zstd or gzip, default xz; erofs: lz4hc, lz4 or none, "
                        "default lz4hc)")
    p.add_argument("--all-root", action="store_true", help="make every file owned by root (uid/gid 0)")
    p.add_argument("--exclude-file", type=Path, metavar="F",
                   help="more paths to leave out, one wildcard pattern per line ('/proc/*', '# comments')")
    p.set_defaults(func=run_squash)

    common = dict(kernel=("--kernel", "VMLINUZ", "the kernel (bzImage)"),
                  initrd=("--initrd", "IMG", "the initramfs (e.g. from `mpinit pack`)"),
                  squashfs=("--squashfs", "IMAGE", "the root image (e.g. from `mpinit squash`)"))

    p = sub.add_parser("live-image", help="make a bootable USB disk image (MBR, FAT32, SYSLINUX; --uefi: + GRUB)",
                       description="A disk image to write to a USB stick: SYSLINUX MBR, one active FAT32 "
                                   "partition with SYSLINUX, the kernel, the initramfs and "
                                   "/live/filesystem.squashfs (+ .sha256); --uefi adds \\EFI\\BOOT\\BOOTX64.EFI "
                                   "(GRUB) on the same partition.")
    for flag, metavar, text in common.values():
        p.add_argument(flag, required=True, type=Path, metavar=metavar, help=text)
    p.add_argument("-o", "--output", required=True, type=Path, metavar="live.img", help="the disk image to write")
    p.add_argument("--label", default=None, help="FAT label, used as root=live:LABEL=... (default MPINIT_LIVE)")
    p.add_argument("--append", default="", help="more kernel parameters (e.g. 'console=ttyS0 quiet')")
    p.add_argument("--uefi", action="store_true", help="also boot under UEFI (GRUB EFI as BOOTX64.EFI)")
    p.add_argument("--uki", action="store_true",
                   help="with --uefi: BOOTX64.EFI is a Unified Kernel Image (kernel + initramfs + command line, "
                        "systemd-boot-efi's stub) instead of GRUB; see `mpinit uki`")
    from .cmd_uki import add_sign_options

    add_sign_options(p)
    p.add_argument("--persistence", default=None, metavar="SIZE[,label=L][,fs=ext4]",
                   help="add a persistence partition (ext4, label 'persistence', persistence.conf '/ union') and "
                        "boot with `persistence`")
    p.set_defaults(func=run_live_image)

    p = sub.add_parser("live-iso", help="make an isohybrid ISO (ISOLINUX) that boots as a CD and as a disk",
                       description="An ISO 9660 image with ISOLINUX, bootable as a CD and, through its hybrid "
                                   "MBR, as a disk; root=live:CDLABEL=<label>.")
    for flag, metavar, text in common.values():
        p.add_argument(flag, required=True, type=Path, metavar=metavar, help=text)
    p.add_argument("-o", "--output", required=True, type=Path, metavar="live.iso", help="the ISO to write")
    p.add_argument("--label", default=None, help="ISO volume label, root=live:CDLABEL=... (default MPINIT_LIVE)")
    p.add_argument("--append", default="", help="more kernel parameters")
    p.add_argument("--uefi", action="store_true",
                   help="also boot under UEFI (El Torito EFI image with GRUB, also in the hybrid GPT)")
    p.set_defaults(func=run_live_iso)


def run_squash(args):
    from .cli import UsageError
    from .runner import ToolError
    from .squash import SquashError, build

    try:
        build(args.root, args.output, comp=args.comp, all_root=args.all_root, exclude_file=args.exclude_file,
              fmt=args.format)
    except (SquashError, ToolError) as e:
        raise UsageError(str(e))
    return 0


def run_live_image(args):
    from .cli import UsageError
    from .fat import FatError
    from .liveimage import DEFAULT_LABEL, LiveError, build_disk_image
    from .persistence import PersistenceError, parse_spec
    from .runner import ToolError

    from .cmd_uki import sign_options
    from .uki import UkiError

    if args.uki and not args.uefi:
        raise UsageError("--uki: the UKI is the UEFI boot loader: add --uefi")
    if not args.uki and (args.sign_key or args.sign_cert):
        raise UsageError("--sign-key/--sign-cert sign the UKI: add --uki")
    try:
        persist = parse_spec(args.persistence) if args.persistence is not None else None
        plan = build_disk_image(args.kernel, args.initrd, args.squashfs, args.output,
                                label=args.label or DEFAULT_LABEL, append=args.append, uefi=args.uefi,
                                persistence=persist, uki=sign_options(args) if args.uki else None)
    except (LiveError, FatError, ToolError, PersistenceError, UkiError) as e:
        raise UsageError(str(e))
    extra = (", persistence partition of %d MiB labelled %s" % (persist.size >> 20, persist.label)) if persist else ""
    from .arch import of_kernel   # an arm64 kernel: UEFI-only media

    print("mpinit live-image: wrote %s (%d MiB, FAT32 partition of %d MiB%s%s)"
          % (args.output, args.output.stat().st_size >> 20, plan.part_size >> 20,
             (", UEFI" if not of_kernel(args.kernel).bios else ", BIOS + UEFI" if args.uefi else ", BIOS")
             + (" (UKI%s)" % (", signed" if args.sign_key else "") if args.uki else ""), extra))
    return 0


def run_live_iso(args):
    from .cli import UsageError
    from .fat import FatError
    from .liveimage import DEFAULT_LABEL, LiveError, build_iso
    from .runner import ToolError

    try:
        build_iso(args.kernel, args.initrd, args.squashfs, args.output, label=args.label or DEFAULT_LABEL,
                  append=args.append, uefi=args.uefi)
    except (LiveError, FatError, ToolError) as e:
        raise UsageError(str(e))
    print("mpinit live-iso: wrote %s (%.1f MiB)" % (args.output, args.output.stat().st_size / 1048576.0))
    return 0
