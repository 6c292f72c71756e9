"""`mpinit netboot-tree`: lay out a directory to serve over TFTP + HTTP for BIOS (PXELINUX) and UEFI (GRUB)
network boot of a live image (docs/netboot.md)."""

from pathlib import Path


def register(sub):
    p = sub.add_parser("netboot-tree", help="lay out a PXE/HTTP tree (PXELINUX, GRUB EFI, kernel, initramfs, "
                       "squashfs) for network boot", description=__doc__)
    p.add_argument("-o", "--output", required=True, type=Path, metavar="DIR",
                   help="the tree to write (must not exist, or be empty)")
    p.add_argument("--kernel", required=True, type=Path, help="the kernel image (x86 bzImage)")
    p.add_argument("--initrd", required=True, type=Path, help="the mpinit initramfs (`mpinit pack`, with the "
                   "NIC drivers: --modules generic-net)")
    p.add_argument("--squashfs", required=True, type=Path, help="the live root image (`mpinit squash`)")
    p.add_argument("--url-base", default=None, metavar="URL",
                   help="where the booting machines reach this tree over HTTP (default http://10.0.2.100, the "
                        "web server as a guest of `mpinit qemu --net-port` sees it)")
    p.add_argument("--append", default="", help="more kernel parameters (after root=live:... ip=dhcp; an ip= "
                   "here replaces ip=dhcp)")
    p.add_argument("--pin-sha256", action="store_true",
                   help="also put rd.live.sha256=<the image's digest> on the command line")
    p.add_argument("--no-uefi", action="store_true", help="BIOS PXE only: no GRUB EFI image")
    p.set_defaults(func=run)


def run(args):
    from .cli import UsageError
    from .netboot import DEFAULT_URL_BASE, NetbootError, build_tree
    from .runner import ToolError

    try:
        tree = build_tree(args.output, args.kernel, args.initrd, args.squashfs,
                          url_base=args.url_base or DEFAULT_URL_BASE, append=args.append,
                          uefi=not args.no_uefi, pin=args.pin_sha256)
    except (NetbootError, ToolError) as e:
        raise UsageError(str(e))
    print("mpinit netboot-tree: wrote %s (%d files)" % (tree.output, len(tree.files)))
    print("  kernel command line: %s" % tree.cmdline)
    print("  BIOS boot file: pxelinux.0%s" % ("" if args.no_uefi else "; UEFI boot file: bootx64.efi"))
    if not args.url_base:
        print("  note: --url-base not given: the image URL is %s/..., the address `mpinit qemu --net-port` "
              "gives a QEMU guest; pass your web server's URL for real machines" % DEFAULT_URL_BASE)
    return 0
