"""`mpinit qemu`: boot a kernel + initramfs in QEMU (TCG) with the serial console here; exit 0 iff the marker
appeared on the console."""

import sys
from pathlib import Path


def register(sub):
    p = sub.add_parser("qemu", help="boot a kernel and initramfs in QEMU; exit 0 iff the marker appears",
                       description=__doc__)
    p.add_argument("--kernel", type=Path, help="the kernel image (bzImage/vmlinuz); without it and --initrd: "
                   "a PXE boot from --tftp")
    p.add_argument("--initrd", type=Path, help="the initramfs")
    p.add_argument("--disk", action="append", default=[], type=Path, metavar="IMAGE",
                   help="a raw disk image as a virtio disk (vda, vdb, ... in order; writes are discarded)")
    p.add_argument("--cdrom", type=Path, metavar="ISO", help="an ISO image as a CD-ROM (IDE; SCSI on arm64)")
    p.add_argument("--append", default="", help="kernel parameters (console=ttyS0 is added when absent)")
    p.add_argument("--memory", type=int, default=512, metavar="MB", help="guest memory (default 512)")
    p.add_argument("--timeout", type=float, default=120, metavar="S",
                   help="kill QEMU after this many seconds (default 120)")
    p.add_argument("--marker", default=None, metavar="TEXT",
                   help="the console text that means success (default MPINIT-LIVE-OK)")
    p.add_argument("--log", type=Path, metavar="FILE", help="also write the console output to FILE")
    p.add_argument("--net-port", metavar="PORT",
                   help="a NIC whose guest connections to 10.0.2.100:80 go to 127.0.0.1:PORT (restrict=on: "
                        "nothing else is reachable; 127.0.0.1:PORT is accepted too, any other host refused)")
    p.add_argument("--tftp", type=Path, metavar="DIR", help="with --net-port: serve DIR over the guest's TFTP "
                   "(e.g. `mpinit netboot-tree` output); without --kernel the firmware PXE-boots --bootfile")
    p.add_argument("--bootfile", metavar="FILE", help="the DHCP boot file inside --tftp (default pxelinux.0, "
                   "or bootx64.efi with --uefi)")
    p.add_argument("--nic", choices=["virtio", "e1000"], default="virtio", help="the NIC model (default virtio)")
    p.add_argument("--no-relay", action="store_true",
                   help="point QEMU's guestfwd at PORT itself, not at a relay in front of it (QEMU then carries "
                        "every guest connection over one connection to PORT: only the first request is served "
                        "once the server closes it; mpinit/httprelay.py)")
    p.add_argument("--uefi", action="store_true", help="PXE or --firmware boot under OVMF instead of SeaBIOS")
    p.add_argument("--arch", choices=["x86_64", "arm64"], default=None,
                   help="the machine (default: the kernel image's, else x86_64); arm64 is qemu-system-aarch64 "
                        "-M virt -cpu max with the console on ttyAMA0")
    p.add_argument("--firmware", action="store_true",
                   help="no --kernel/--initrd: the firmware boots --disk/--cdrom (live-image/live-iso media): "
                        "SeaBIOS, or UEFI with --uefi (arm64 is always UEFI: Debian's qemu-efi-aarch64)")
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
        net, argv = _firmware(args) if args.firmware else _network(args)
        result = boot(args.kernel, args.initrd, disks=args.disk, cdrom=args.cdrom, append=args.append,
                      memory_mb=args.memory, timeout_s=args.timeout, marker=marker, log_path=args.log,
                      interactive=interactive, extra_args=net, argv=argv, arch=args.arch)
    except ToolError as e:
        raise UsageError(str(e))
    finally:
        if getattr(args, "relay", None):
            args.relay.stop()
    if not interactive:
        sys.stdout.write(result.output)
    how = "timed out after %.0f s" % args.timeout if result.timed_out else "QEMU exited"
    if result.ok:
        print("\nmpinit qemu: marker seen (%s, %.1f s): %s" % (how, result.elapsed_s, result.marker_line))
        return 0
    print("\nmpinit qemu: marker %r NOT seen (%s, %.1f s)" % (marker, how, result.elapsed_s), file=sys.stderr)
    return 1


def net_port(text):
    """--net-port: "PORT" or "127.0.0.1:PORT" (any other host address is refused by qemu.net_args)."""
    from .cli import UsageError
    from .qemu import NET_HOST

    host, sep, port = str(text).rpartition(":")
    if sep and host != NET_HOST:
        raise UsageError("--net-port %s: only %s may be reached from the guest" % (text, NET_HOST))
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError("--net-port %s: not a port number (1..65535)" % text)
    return int(port)


def _network(args):
    """(extra QEMU arguments, complete argv or None): a NIC for --net-port; a PXE firmware boot when there is no
    --kernel/--initrd."""
    from .cli import UsageError
    from .qemu import net_args, pxe_argv

    port = net_port(args.net_port) if args.net_port else None
    if port and not args.no_relay:
        from .httprelay import Relay

        args.relay = Relay(port)  # stopped by run() after the boot
        print("mpinit qemu: guest 10.0.2.100:80 -> relay 127.0.0.1:%d -> web server 127.0.0.1:%d"
              % (args.relay.port, port), flush=True)
        port = args.relay.port
    if (args.tftp or args.bootfile) and not port:
        raise UsageError("--tftp/--bootfile need --net-port (the guest network they are served on)")
    if args.uefi and args.kernel:
        raise UsageError("--uefi is for a PXE boot (no --kernel/--initrd)")
    if args.kernel or args.initrd:
        if not (args.kernel and args.initrd):
            raise UsageError("--kernel and --initrd go together")
        if not port:
            return [], None
        return net_args(port, tftp=args.tftp, bootfile=args.bootfile, nic=args.nic), None
    if not args.tftp:
        raise UsageError("--kernel and --initrd are required, unless --net-port and --tftp boot from the network")
    if args.disk or args.cdrom or args.append:
        raise UsageError("a PXE boot takes its kernel command line and media from --tftp: --disk, --cdrom and "
                         "--append do not apply")
    bootfile = args.bootfile or ("bootx64.efi" if args.uefi else "pxelinux.0")
    return [], pxe_argv(args.tftp, bootfile, port, uefi=args.uefi, nic=args.nic,
                        memory_mb=args.memory)


def _firmware(args):
    """([], argv) for --firmware: the media booted by the machine's firmware, as a user's machine would."""
    from . import arch as archmod
    from .cli import UsageError
    from .qemu import firmware_argv

    if args.kernel or args.initrd or args.append:
        raise UsageError("--firmware boots the media's own boot loader: --kernel, --initrd and --append do not "
                         "apply (the command line is in the media's grub.cfg / syslinux.cfg)")
    if args.net_port or args.tftp:
        raise UsageError("--firmware boots --disk/--cdrom: for a network boot leave it out")
    if not args.disk and not args.cdrom:
        raise UsageError("--firmware needs a --disk or --cdrom to boot")
    arch = archmod.get(args.arch or "x86_64")
    return [], firmware_argv(disks=args.disk, cdrom=args.cdrom, uefi=args.uefi or not arch.bios,
                             memory_mb=args.memory, arch=arch)
