"""`mpinit uki`: a Unified Kernel Image (systemd-boot-efi's stub + kernel + initramfs + command line), optionally
signed for Secure Boot (mpinit.uki; docs/uki.md)."""

import argparse
from pathlib import Path

EPILOG = """\
examples:
  mpinit uki --kernel /boot/vmlinuz-"$(uname -r)" --initrd initrd.img --cmdline "root=UUID=... ro" -o linux.efi
  MPINIT_SIGN_KEY_PASSWORD=... mpinit uki --kernel vmlinuz --initrd initrd.img --cmdline "root=live:LABEL=L" \\
      --sign-key db.key --sign-cert db.pem -o BOOTX64.EFI

An encrypted --sign-key is decrypted with the password from --sign-key-password-file, $MPINIT_SIGN_KEY_PASSWORD or
a prompt (never argv). `mpinit live-image --uefi --uki` puts such an image on live media as \\EFI\\BOOT\\BOOTX64.EFI.
"""


def add_sign_options(p):
    g = p.add_argument_group("signing (Secure Boot, through sbsign)")
    g.add_argument("--sign-key", type=Path, metavar="KEY", help="PEM private key (e.g. your db key)")
    g.add_argument("--sign-cert", type=Path, metavar="CERT", help="its PEM certificate")
    g.add_argument("--sign-key-password-file", type=Path, metavar="FILE",
                   help="the key's password, first line of FILE (else $MPINIT_SIGN_KEY_PASSWORD, else a prompt)")


def sign_options(args):
    """The uki.build() keyword arguments for signing from parsed arguments."""
    return dict(sign_key=args.sign_key, sign_cert=args.sign_cert, password_file=args.sign_key_password_file)


def register(sub):
    p = sub.add_parser("uki", help="make a Unified Kernel Image (EFI stub + kernel + initramfs + cmdline)",
                       description="A Unified Kernel Image: systemd-boot-efi's EFI stub with .osrel, .cmdline, "
                                   ".uname, .initrd and .linux sections (the UAPI UKI specification), which UEFI "
                                   "firmware or a boot loader starts as one EFI program; optionally signed with "
                                   "sbsign.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernel", required=True, type=Path, metavar="VMLINUZ", help="the kernel (EFI stub bzImage)")
    p.add_argument("--initrd", required=True, type=Path, metavar="IMG", help="the initramfs (e.g. `mpinit pack`)")
    p.add_argument("--cmdline", default="", metavar="TEXT",
                   help="the kernel command line baked in (under Secure Boot the only one)")
    p.add_argument("--os-release", type=Path, metavar="FILE",
                   help="os-release(5) file for .osrel (default: one naming mpinit and the kernel version)")
    p.add_argument("--uname", metavar="VER", default=None,
                   help="the .uname text (default: read from the kernel image; '' leaves the section out)")
    p.add_argument("--stub", type=Path, metavar="FILE",
                   help="the EFI stub (default /usr/lib/systemd/boot/efi/linuxx64.efi.stub, systemd-boot-efi)")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUT.efi", help="the UKI (written atomically)")
    add_sign_options(p)
    p.set_defaults(func=run)


def run(args):
    from .cli import UsageError
    from .runner import ToolError
    from .uki import UkiError, build

    os_release = None
    if args.os_release is not None:
        from .textfile import read_text

        os_release = read_text(args.os_release, "--os-release %s" % args.os_release, UsageError)
    try:
        r = build(args.kernel, args.initrd, args.output, cmdline=args.cmdline, os_release=os_release,
                  uname=args.uname, stub=args.stub, **sign_options(args))
    except (UkiError, ToolError) as e:
        raise UsageError(str(e))
    parts = ", ".join("%s %d" % (n, size) for n, size in r.sections)
    print("mpinit uki: wrote %s (%.1f MiB, %s%s; sections: %s)"
          % (r.path, r.path.stat().st_size / 1048576.0, r.arch, ", signed" if r.signed else "", parts))
    return 0
