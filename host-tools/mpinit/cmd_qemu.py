"""`mpinit qemu`: boot a kernel + initramfs in QEMU (TCG) with the serial console here; exit 0 iff the marker
appeared on the console."""

import sys
from pathlib import Path


def register(sub):
    p = sub.add_parser("qemu", help="boot a kernel and initramfs in QEMU; exit 0 iff the marker appears",
                       description=__doc__)
    p.add_argument("--kernel", required=True, type=Path, help="the kernel image (bzImage/vmlinuz)")
    p.add_argument("--initrd", required=True, type=Path, help="the initramfs")
    p.add_argument("--disk", action="append", default=[], type=Path, metavar="IMAGE",
                   help="a raw disk image as a virtio disk (vda, vdb, ... in order; writes are discarded)")
    p.add_argument("--cdrom", type=Path, metavar="ISO", help="an ISO image as an IDE CD-ROM")
    p.add_argument("--append", default="", help="kernel parameters (console=ttyS0 is added when absent)")
    p.add_argument("--memory", type=int, default=512, metavar="MB", help="guest memory (default 512)")
    p.add_argument("--timeout", type=float, default=120, metavar="S",
                   help="kill QEMU after this many seconds (default 120)")
    p.add_argument("--marker", default=None, metavar="TEXT",
                   help="the console text that means success (default MPINIT-LIVE-OK)")
    p.add_argument("--log", type=Path, metavar="FILE", help="also write the console output to FILE")
    p.add_argument("--no-interactive", action="store_true",
                   help="do not connect this terminal's keyboard to the guest console")
    p.set_defaults(func=run)


def run(args):
    from .cli import UsageError
    from .qemu import DEFAULT_MARKER, boot
    from .runner import ToolError

    if args.memory < 64:
        raise UsageError("--memory %d: too small for a kernel (at least 64 MB)" % args.memory)
    if args.timeout <= 0:
        raise UsageError("--timeout %s: must be positive" % args.timeout)
    marker = args.marker or DEFAULT_MARKER
    interactive = not args.no_interactive
    try:
        result = boot(args.kernel, args.initrd, disks=args.disk, cdrom=args.cdrom, append=args.append,
                      memory_mb=args.memory, timeout_s=args.timeout, marker=marker, log_path=args.log,
                      interactive=interactive)
    except ToolError as e:
        raise UsageError(str(e))
    if not interactive:
        sys.stdout.write(result.output)
    how = "timed out after %.0f s" % args.timeout if result.timed_out else "QEMU exited"
    if result.ok:
        print("\nmpinit qemu: marker seen (%s, %.1f s): %s" % (how, result.elapsed_s, result.marker_line))
        return 0
    print("\nmpinit qemu: marker %r NOT seen (%s, %.1f s)" % (marker, how, result.elapsed_s), file=sys.stderr)
    return 1
