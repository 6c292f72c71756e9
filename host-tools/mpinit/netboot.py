"""`mpinit netboot-tree`: a directory to serve over TFTP and HTTP from which machines boot a live image from the
network (docs/netboot.md).

    DIR/pxelinux.0                     PXELINUX (Debian package pxelinux): the BIOS PXE boot file
    DIR/ldlinux.c32                    its core module (syslinux-common), fetched by pxelinux.0 from beside it
    DIR/pxelinux.cfg/default           its config: the fallback after the MAC- and IP-named files (pxelinux.txt)
    DIR/bootx64.efi                    GRUB for UEFI network boot (grub-mkimage -O x86_64-efi, efinet + tftp + http)
    DIR/grub/grub.cfg                  its config, read from the TFTP server it was loaded from
    DIR/vmlinuz, DIR/initrd.img        the kernel and the mpinit initramfs, loaded over TFTP by either loader
    DIR/live/filesystem.squashfs       the live image the agent fetches over HTTP (root=live:<url-base>/live/...)
    DIR/live/filesystem.squashfs.sha256   its digest in sha256sum format (checksum=y reads it)
    DIR/README.txt                     what each file is and how to serve the tree

Both loaders boot the same command line: `root=live:<url-base>/live/filesystem.squashfs ip=dhcp` and the user's
--append, plus BOOTIF=01-<mac> naming the NIC the machine booted from (PXELINUX's IPAPPEND 2; grub.cfg builds
the same from GRUB's $net_default_mac). The tree is built in
a temporary directory beside DIR and renamed to DIR only when complete; an existing non-empty DIR is refused.
"""

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import liveimage
from .liveimage import LiveError
from .runner import ToolError

PXELINUX_0 = Path("/usr/lib/PXELINUX/pxelinux.0")                    # pxelinux
LDLINUX_C32 = liveimage.LDLINUX_C32                                  # syslinux-common

DEFAULT_URL_BASE = "http://10.0.2.100"   # the web server as a QEMU guest of `mpinit qemu --net-port` sees it
SQUASHFS = "live/filesystem.squashfs"    # contract.DEFAULTS live_dir/live_image: the agent's default path
KERNEL = "vmlinuz"
INITRD = "initrd.img"
GRUB_EFI = "bootx64.efi"
GRUB_PREFIX = "/grub"

# Built into bootx64.efi: efinet drives the NIC the firmware booted from (its SNP protocol) and takes the
# address and server from the firmware's DHCP/PXE packets; tftp reads grub.cfg, the kernel and the initrd from
# that server; http lets a grub.cfg load them from a web server instead; linux boots through the EFI handover.
GRUB_NET_MODULES = ("efinet", "net", "tftp", "http", "normal", "configfile", "linux", "boot", "echo", "test",
                    "all_video", "serial", "terminal", "sleep", "regexp")

# Characters that cannot stand in a kernel parameter given through PXELINUX and GRUB configs unquoted.
_URL_BAD = set(" \t\r\n\"'\\;$`#{}")


class NetbootError(Exception):
    """Bad input for `mpinit netboot-tree`; the message names the flag and the value."""


@dataclass(frozen=True)
class Tree:
    output: Path
    cmdline: str
    sha256: str
    files: tuple


def check_url_base(url):
    """The web server's base URL as the booting machine sees it: http://host[:port][/path], no trailing slash."""
    if not url.startswith("http://") or len(url) <= len("http://"):
        raise NetbootError("--url-base %r: must be an http:// URL (the agent's HTTP client speaks plain HTTP)"
                           % url)
    bad = sorted(set(url) & _URL_BAD)
    if bad or any(ord(c) < 0x21 or ord(c) > 0x7E for c in url):
        raise NetbootError("--url-base %r: characters a kernel command line cannot carry (%s)"
                           % (url, " ".join(repr(c) for c in bad) or "non-printable"))
    host = url[len("http://"):].split("/", 1)[0]
    if not host or host.startswith(":"):
        raise NetbootError("--url-base %r: no host" % url)
    return url.rstrip("/")


def cmdline(url_base, append=""):
    """root=live:<url-base>/live/filesystem.squashfs ip=dhcp [append] (the line both loaders boot)."""
    # An ip= of the user's own (a static address, a named device) replaces ip=dhcp.
    extra = append if any(w.startswith("ip=") for w in append.split()) else "ip=dhcp " + append
    return liveimage.cmdline("live:%s/%s" % (url_base, SQUASHFS), extra.strip())


def pxelinux_cfg(line):
    """pxelinux.cfg/default (doc/pxelinux.txt): boot at once, also on the serial port; IPAPPEND 2 adds
    BOOTIF=01-<mac> so the agent brings up the NIC the firmware booted from first."""
    return liveimage.syslinux_cfg(line, kernel="/" + KERNEL, initrd="/" + INITRD) + "  IPAPPEND 2\n"


# PXELINUX's IPAPPEND 2 for GRUB: BOOTIF=01-<mac with dashes> (ARP type 1, Ethernet) from the MAC of the NIC GRUB
# was booted from ($net_default_mac, "52:54:00:12:34:56"), split by GRUB's regexp module since GRUB's script has
# no substitution; left out when GRUB has no default interface.
GRUB_BOOTIF = ("set bootif=\n"
               "if regexp --set=1:m1 --set=2:m2 --set=3:m3 --set=4:m4 --set=5:m5 --set=6:m6 "
               "'^([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):"
               "([0-9a-fA-F]{2})$' \"$net_default_mac\"; then\n"
               "  set bootif=\"BOOTIF=01-$m1-$m2-$m3-$m4-$m5-$m6\"\n"
               "fi\n")


def grub_cfg(line):
    """grub/grub.cfg: GRUB loaded over the network has its root on the TFTP server it came from ($root =
    (tftp,<server>)), so plain paths load from the tree. $bootif: GRUB_BOOTIF."""
    cfg = liveimage.grub_cfg(line + " $bootif", kernel="/" + KERNEL, initrd="/" + INITRD)
    i = cfg.index("menuentry")
    return cfg[:i] + GRUB_BOOTIF + "\n" + cfg[i:]


def make_grub_net_efi(out):
    """bootx64.efi: GRUB with the network modules built in and its prefix on the boot server (GRUB_PREFIX)."""
    return liveimage.make_grub_efi(out, prefix=GRUB_PREFIX, modules=GRUB_NET_MODULES)


def readme(line, url_base, sha256, uefi):
    efi = ("  bootx64.efi                     UEFI network boot file (GRUB, x86_64-efi)\n"
           "  grub/grub.cfg                   its configuration\n") if uefi else ""
    return """\
mpinit network boot tree (made by `mpinit netboot-tree`; docs/netboot.md)

Serve this directory over TFTP (boot loaders, kernel, initramfs) and over HTTP (the live image), and point the
DHCP server's boot file at pxelinux.0 for BIOS machines%s.

  pxelinux.0                      BIOS PXE boot file (PXELINUX)
  ldlinux.c32                     PXELINUX's core module, loaded from beside pxelinux.0
  pxelinux.cfg/default            PXELINUX's configuration
%s  %-31s the kernel
  %-31s the mpinit initramfs
  %-31s the live image, fetched by the agent over HTTP
  %-31s its SHA-256 (sha256sum -c reads it; so does checksum=y)

Kernel command line of both loaders:
  %s

The agent fetches %s/%s after DHCP;
the image's SHA-256 is %s.
""" % (" and at bootx64.efi for UEFI machines" if uefi else "", efi, KERNEL, INITRD, SQUASHFS,
       SQUASHFS + ".sha256", line, url_base, SQUASHFS, sha256)


def _copy(src, dst, digest=None):
    """Copy a file (0644), hashing it on the way when digest is a hashlib object."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        while True:
            block = fi.read(1 << 20)
            if not block:
                break
            if digest is not None:
                digest.update(block)
            fo.write(block)
        fo.flush()
        os.fsync(fo.fileno())
    os.chmod(dst, 0o644)


def _check_output(output):
    output = Path(output)
    if output.is_symlink() or (output.exists() and not output.is_dir()):
        raise NetbootError("-o %s: exists and is not a directory" % output)
    if output.is_dir() and any(output.iterdir()):
        raise NetbootError("-o %s: exists and is not empty (refusing to mix trees)" % output)
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise NetbootError("-o %s: directory %s does not exist" % (output, parent))
    return output


def build_tree(output, kernel, initrd, squashfs, url_base=DEFAULT_URL_BASE, append="", uefi=True, pin=False):
    """Lay out the tree at `output` (see the module docstring); returns a Tree. uefi: also GRUB's EFI network
    image. pin: also put rd.live.sha256=<digest> on the command line, so the agent checks the image against the
    digest computed here before anything is mounted."""
    try:
        inp = liveimage.check_inputs(kernel, initrd, squashfs)
    except LiveError as e:
        raise NetbootError(str(e))
    url_base = check_url_base(url_base)
    output = _check_output(output)
    for path, package in ((PXELINUX_0, "pxelinux"), (LDLINUX_C32, "syslinux-common")):
        if not path.is_file():
            raise ToolError("%s: not found (Debian package %s)" % (path, package))
    if any(w.startswith("rd.live.sha256=") for w in append.split()) and pin:
        raise NetbootError("--append %r: holds an rd.live.sha256= of its own; --pin-sha256 sets it" % append)
    try:
        # Checked now, before any copying; with pin the digest's 80 bytes are counted in.
        line = cmdline(url_base, (append + " rd.live.sha256=" + "0" * 64 if pin else append).strip())
    except LiveError as e:
        raise NetbootError(str(e))
    tmp = Path(tempfile.mkdtemp(prefix=".%s." % output.name, suffix=".tmp", dir=output.parent))
    try:
        (tmp / "pxelinux.cfg").mkdir()
        (tmp / "live").mkdir()
        _copy(PXELINUX_0, tmp / "pxelinux.0")
        _copy(LDLINUX_C32, tmp / "ldlinux.c32")
        _copy(inp.kernel, tmp / KERNEL)
        _copy(inp.initrd, tmp / INITRD)
        h = hashlib.sha256()
        _copy(inp.squashfs, tmp / SQUASHFS, h)
        sha = h.hexdigest()
        (tmp / (SQUASHFS + ".sha256")).write_text("%s  %s\n" % (sha, Path(SQUASHFS).name))
        if pin:
            line = cmdline(url_base, (append + " rd.live.sha256=" + sha).strip())
        (tmp / "pxelinux.cfg" / "default").write_text(pxelinux_cfg(line))
        if uefi:
            (tmp / "grub").mkdir()
            make_grub_net_efi(tmp / GRUB_EFI)
            os.chmod(tmp / GRUB_EFI, 0o644)
            (tmp / "grub" / "grub.cfg").write_text(grub_cfg(line))
        (tmp / "README.txt").write_text(readme(line, url_base, sha, uefi))
        files = []
        for p in sorted(tmp.rglob("*")):
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
            if p.is_file():
                files.append(str(p.relative_to(tmp)))
        os.chmod(tmp, 0o755)
        # rename(2) replaces an empty directory; a non-empty one appearing meanwhile makes it fail (ENOTEMPTY).
        os.rename(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Tree(output, line, sha, tuple(files))
