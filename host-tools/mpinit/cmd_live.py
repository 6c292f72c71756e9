"""`mpinit squash`, `mpinit live-image`, `mpinit live-iso`: the last mile from a root directory to boot media.

    mpinit squash ROOTDIR -o filesystem.squashfs
    mpinit live-image --kernel vmlinuz --initrd initrd.img --squashfs filesystem.squashfs -o live.img [--uefi]
    mpinit live-iso --kernel vmlinuz --initrd initrd.img --squashfs filesystem.squashfs -o live.iso

See docs/live-media.md.
"""

from pathlib import Path


def register(sub):
    p = sub.add_parser("squash", help="make a squashfs image of a root directory for live media",
                       description="mksquashfs with live-media defaults: the contents of proc, sys, dev, run and "
                                   "tmp left out, the output left out when inside the root, a root without an "
                                   "init refused.")
    p.add_argument("root", type=Path, metavar="ROOTDIR", help="the root directory")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="IMAGE", help="the squashfs to write")
    p.add_argument("--comp", default="xz", choices=("xz", "zstd", "gzip"), help="compressor (default xz)")
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
        build(args.root, args.output, comp=args.comp, all_root=args.all_root, exclude_file=args.exclude_file)
    except (SquashError, ToolError) as e:
        raise UsageError(str(e))
    return 0


def run_live_image(args):
    from .cli import UsageError
    from .fat import FatError
    from .liveimage import DEFAULT_LABEL, LiveError, build_disk_image
    from .runner import ToolError

    try:
        plan = build_disk_image(args.kernel, args.initrd, args.squashfs, args.output,
                                label=args.label or DEFAULT_LABEL, append=args.append, uefi=args.uefi)
    except (LiveError, FatError, ToolError) as e:
        raise UsageError(str(e))
    print("mpinit live-image: wrote %s (%d MiB, FAT32 partition of %d MiB%s)"
          % (args.output, plan.total_size >> 20, plan.part_size >> 20, ", BIOS + UEFI" if args.uefi else ", BIOS"))
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
