"""Live media: a BIOS (and optionally UEFI) bootable USB disk image, and an isohybrid ISO.

Disk image (`build_disk_image`), all made in an image file without root or a loop device:

    sector 0        SYSLINUX's MBR code (syslinux-common mbr.bin, 440 bytes), disk signature, one partition
    1 MiB ..        partition 1: type 0x0c (FAT32, LBA), active; FAT32 made by mtools, label = --label
        /syslinux/ldlinux.sys, ldlinux.c32    SYSLINUX, installed by the mtools-based `syslinux --install --offset`
        /syslinux/syslinux.cfg                APPEND root=live:LABEL=<label> <--append>
        /vmlinuz, /initrd.img
        /live/filesystem.squashfs, /live/filesystem.squashfs.sha256   (the agent's default image path + checksum)
        /EFI/BOOT/BOOTX64.EFI, /EFI/BOOT/grub.cfg                   (--uefi only)

--uefi puts a GRUB EFI binary (grub-mkimage from grub-efi-amd64-bin, modules built in, no files besides grub.cfg)
on the same FAT partition as the removable-media path \\EFI\\BOOT\\BOOTX64.EFI. Why GRUB: it is one Debian package
that installs everywhere; the boot entry is an editable text file holding the same kernel command line as
syslinux.cfg; the kernel and initramfs are not duplicated. (--uki instead makes BOOTX64.EFI a Unified Kernel Image
(mpinit.uki: systemd-boot-efi's stub with the kernel, the initramfs and the command line baked in), which can be
signed for Secure Boot; the kernel's own EFI stub as BOOTX64.EFI gets no
command line or initrd from the firmware's removable-media boot, and startup.nsh only runs where an EFI shell is
the fallback, which real machines rarely have.) UEFI firmware reads any FAT partition of an MBR disk, so one
partition serves both firmwares.

ISO (`build_iso`): ISOLINUX El Torito boot (no emulation, boot info table) plus xorriso's -isohybrid-mbr with
isolinux's isohdpfx.bin, so the same file boots as a CD and written to a USB stick; APPEND root=live:CDLABEL=.
With uefi=True a second El Torito entry (platform EFI) points at isolinux/efiboot.img, a small FAT holding the same
kind of GRUB as BOOTX64.EFI, and -isohybrid-gpt-basdat lists that image in the hybrid MBR/GPT too (UEFI from a
USB stick). The firmware gives GRUB the El Torito image, not the ISO, so GRUB's embedded first config finds the
ISO 9660 volume by its label and reads /EFI/BOOT/grub.cfg there.

arm64 (picked from the kernel image: an arm64 Image): no BIOS, so UEFI only and --uefi is required. The disk image
is the same MBR + FAT32 without SYSLINUX (the MBR's boot code stays zero), with GRUB's arm64 EFI image (grub-mkimage
-O arm64-efi from grub-efi-arm64-bin) as \\EFI\\BOOT\\BOOTAA64.EFI; the ISO has only the El Torito EFI entry, and
the same FAT image appended as a second MBR partition of type 0xEF (xorriso -append_partition), which UEFI
firmware boots from a USB stick.

The root= spellings are the agent's (dracut's): root=live:LABEL=x finds a filesystem by label, root=live:CDLABEL=x
an ISO 9660 volume by its label; both then look for /live/filesystem.squashfs on it.
"""

import hashlib
import os
import re
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import arch as archmod
from . import fat
from .atomic import check_output
from .runner import ToolError, find_tool, run

SECTOR = 512
MIB = 1024 * 1024

SYSLINUX_MBR = Path("/usr/lib/syslinux/mbr/mbr.bin")                 # syslinux-common
LDLINUX_C32 = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")     # syslinux-common
ISOLINUX_BIN = Path("/usr/lib/ISOLINUX/isolinux.bin")                # isolinux
ISOHDPFX_BIN = Path("/usr/lib/ISOLINUX/isohdpfx.bin")                # isolinux: MBR code for -isohybrid-mbr
GRUB_EFI_DIR = Path("/usr/lib/grub/x86_64-efi")                      # grub-efi-amd64-bin

# GRUB modules built into BOOTX64.EFI: partition maps and FAT to read its own partition, `normal` to read grub.cfg,
# `linux` to load the kernel through its EFI handover, all_video so the kernel gets a GOP framebuffer.
GRUB_MODULES = ("part_msdos", "part_gpt", "fat", "iso9660", "normal", "configfile", "linux", "boot", "echo",
                "test", "search", "all_video", "serial", "terminal")

DEFAULT_LABEL = "MPINIT_LIVE"
LIVE_IMAGE = "/live/filesystem.squashfs"   # contract.DEFAULTS live_dir/live_image: the agent's default path
PART_START = MIB                           # partition 1 at 1 MiB: aligned for flash media, room for nothing else
MBR_TYPE_FAT32_LBA = 0x0C                  # the partition type Windows, Linux and UEFI firmware read as FAT32
FAT_MAX_FILE = 0xFFFFFFFF                  # a FAT directory entry's file size is 32 bits

_ISO_LABEL_RE = re.compile(r"^[A-Z0-9_-]{1,32}$")


class LiveError(Exception):
    """Bad input for a live medium; the message names it."""


@dataclass(frozen=True)
class Inputs:
    kernel: Path
    initrd: Path
    squashfs: Path
    arch: archmod.Arch = archmod.ARCHES["x86_64"]   # the kernel's


def check_inputs(kernel, initrd, squashfs):
    """Each input must be a non-empty regular file of the right kind; returns Inputs of Paths."""
    kernel, initrd, squashfs = Path(kernel), Path(initrd), Path(squashfs)
    for flag, path in (("--kernel", kernel), ("--initrd", initrd), ("--squashfs", squashfs)):
        if not path.exists():
            raise LiveError("%s %s: no such file" % (flag, path))
        if not path.is_file():
            raise LiveError("%s %s: not a regular file" % (flag, path))
        if path.stat().st_size == 0:
            raise LiveError("%s %s: empty file" % (flag, path))
    # Documentation/arch/x86/boot.rst: a bzImage has the magic "HdrS" at offset 0x202 of its real-mode header;
    # Documentation/arch/arm64/booting.rst: an arm64 Image has "ARM\x64" at 0x38 (mpinit.arch.of_kernel).
    try:
        arch = archmod.of_kernel(kernel)
    except archmod.ArchError:
        raise LiveError("--kernel %s: not an x86 bzImage (no 'HdrS' at offset 0x202) nor an arm64 Image (no "
                        "'ARM\\x64' at 0x38)" % kernel) from None
    with open(squashfs, "rb") as f:
        magic = f.read(4)
    # fs/squashfs/squashfs_fs.h SQUASHFS_MAGIC 0x73717368, little-endian on disk: "hsqs".
    if magic != b"hsqs":
        raise LiveError("--squashfs %s: not a squashfs image (no 'hsqs' magic)" % squashfs)
    return Inputs(kernel, initrd, squashfs, arch)


def check_iso_label(label):
    """An ISO 9660 volume ID we accept: 1-32 of A-Z 0-9 _ - (ECMA-119 d-characters, plus '-' as xorriso allows)."""
    if not _ISO_LABEL_RE.match(label or ""):
        raise LiveError("--label %r: an ISO label is 1 to 32 characters of A-Z, 0-9, '_' or '-' (upper case)"
                        % label)
    return label


def cmdline(root_spec, append=""):
    """The kernel command line: root= first, then the user's parameters."""
    if any(w.startswith("root=") for w in append.split()):
        raise LiveError("--append %r: holds a root= of its own; the medium sets root=%s" % (append, root_spec))
    if "\n" in append or "\r" in append:
        raise LiveError("--append %r: a kernel command line is one line" % append)
    line = ("root=%s %s" % (root_spec, append.strip())).strip()
    # arch/x86/include/asm/setup.h COMMAND_LINE_SIZE 2048, including the terminating NUL.
    if len(line) > 2047:
        raise LiveError("--append: the command line would be %d bytes, the x86 kernel takes at most 2047"
                        % len(line))
    return line


def syslinux_cfg(line, kernel="/vmlinuz", initrd="/initrd.img"):
    """syslinux.cfg / isolinux.cfg (doc/syslinux.txt): boot at once, also talk on the first serial port."""
    return ("SERIAL 0 115200\n"
            "PROMPT 0\n"
            "TIMEOUT 0\n"
            "DEFAULT live\n"
            "\n"
            "LABEL live\n"
            "  KERNEL %s\n"
            "  INITRD %s\n"
            "  APPEND %s\n" % (kernel, initrd, line))


def grub_cfg(line, kernel="/vmlinuz", initrd="/initrd.img", serial=True):
    """grub.cfg for the EFI loader: $root is already the partition GRUB was loaded from (prefix has no device).
    serial=False (arm64): GRUB's `serial` knows PC UARTs only; there the firmware's console, which GRUB's
    `console` terminal writes to, is the serial port already."""
    return ("set timeout=0\n"
            "set default=0\n"
            + ("serial --unit=0 --speed=115200\n"
               "terminal_output console serial\n"
               "terminal_input console serial\n" if serial else "") +
            "\n"
            "menuentry \"mpinit live\" {\n"
            "  linux %s %s\n"
            "  initrd %s\n"
            "}\n" % (kernel, line, initrd))


def sha256_line(path, name):
    """`sha256sum` format, which the agent's checksum=y reads: "<hex>  <name>\\n"."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "%s  %s\n" % (h.hexdigest(), name)


# --- the partition table -------------------------------------------------------------------------------------

def chs(lba, heads=255, sectors=63):
    """The 3-byte CHS address of `lba` in an MBR entry (the 255/63 translation; 1023/254/63 when beyond it)."""
    c = lba // (heads * sectors)
    if c > 1023:
        c, h, s = 1023, heads - 1, sectors
    else:
        h = (lba // sectors) % heads
        s = lba % sectors + 1
    return bytes((h, (s & 0x3F) | ((c >> 2) & 0xC0), c & 0xFF))


def mbr(boot_code, start_lba, sectors, disk_id, ptype=MBR_TYPE_FAT32_LBA, active=True):
    """Sector 0: boot code (<= 440 bytes), the 32-bit disk signature at 440, one primary partition entry at 446,
    the 0x55AA signature at 510 (the classic MBR layout)."""
    if len(boot_code) > 440:
        raise LiveError("MBR boot code is %d bytes: more than the 440 that fit" % len(boot_code))
    entry = (bytes((0x80 if active else 0,)) + chs(start_lba) + bytes((ptype,)) + chs(start_lba + sectors - 1)
             + struct.pack("<II", start_lba, sectors))
    sector = bytearray(SECTOR)
    sector[:len(boot_code)] = boot_code
    sector[440:444] = struct.pack("<I", disk_id)
    sector[446:462] = entry
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


@dataclass(frozen=True)
class DiskPlan:
    part_start: int   # bytes
    part_size: int    # bytes
    total_size: int   # bytes


def plan_disk(file_sizes, extra=0):
    """Sizes for the disk image from the sizes of the files going into the FAT: each file rounded up to a 4 KiB
    cluster, the FATs (2 copies of 4 bytes per 512-byte-cluster worst case), 5% + 16 MiB headroom, at least
    the FAT32 minimum, whole MiB."""
    data = sum((s + 4095) // 4096 * 4096 for s in file_sizes) + extra
    fats = 2 * 4 * (data // SECTOR + 1)
    need = data + fats + data // 20 + 16 * MIB
    part = max(need, fat.MIN_FAT32_BYTES)
    part = (part + MIB - 1) // MIB * MIB
    return DiskPlan(PART_START, part, PART_START + part)


def _tool_file(path, package):
    if not path.is_file():
        raise ToolError("%s: not found (Debian package %s)" % (path, package))
    return path


def make_grub_efi(out, early_cfg=None, arch="x86_64", prefix="/EFI/BOOT", modules=GRUB_MODULES):
    """BOOTX64.EFI (BOOTAA64.EFI for arm64) with every module it needs built in; it reads <prefix>/grub.cfg
    (default: /EFI/BOOT on its own partition). early_cfg: a file embedded as GRUB's first config (the ISO's finds
    the CD by label before reading grub.cfg). `mpinit netboot-tree` passes its own prefix and network modules."""
    arch = archmod.get(arch)
    grub_dir = Path("/usr/lib/grub") / arch.grub_target  # GRUB_EFI_DIR for x86_64
    if not grub_dir.is_dir():
        raise ToolError("%s: not found (Debian package %s)" % (grub_dir, arch.grub_package))
    argv = [find_tool("grub-mkimage", "grub-common"), "-O", arch.grub_target, "-d", grub_dir, "-p", prefix,
            "-o", out]
    if early_cfg:
        argv += ["-c", early_cfg]
    run(argv + list(modules))
    return out


def grub_iso_early_cfg(label):
    """The config embedded in the ISO's GRUB: the firmware hands GRUB the El Torito image, not the ISO 9660
    filesystem, so find the volume by its label and read grub.cfg from there."""
    return ("search --no-floppy --set=root --label %s\n"
            "set prefix=($root)/EFI/BOOT\n"
            "configfile $prefix/grub.cfg\n" % label)


def make_efi_boot_image(out, efi_binary, name="BOOTX64.EFI"):
    """The El Torito EFI boot image: a small FAT holding \\EFI\\BOOT\\BOOTX64.EFI (BOOTAA64.EFI on arm64: the
    UEFI specification's removable-media path, which firmware also uses for CDs)."""
    size = (efi_binary.stat().st_size + 512 * 1024 + MIB - 1) // MIB * MIB
    with open(out, "wb") as f:
        f.truncate(size)
    fat.mkfs(out, 0, size, "EFIBOOT", hidden_sectors=0, serial=0x4D504E54, fat32=False)
    fat.mkdirs(out, 0, ["/EFI/BOOT"])
    fat.copy_in(out, 0, efi_binary, "/EFI/BOOT/" + name)
    return out


def _need_uefi(arch, uefi):
    if not arch.bios and not uefi:
        raise LiveError("--kernel: an %s kernel; %s machines boot from UEFI only: add --uefi" % (arch.name, arch.name))


def build_disk_image(kernel, initrd, squashfs, output, label=DEFAULT_LABEL, append="", uefi=False,
                     persistence=None, uki=None):
    """Write the live disk image to `output` atomically; returns the DiskPlan. persistence: a
    mpinit.persistence.Spec for a second partition holding a persistence filesystem (and `persistence` is added to
    the command line unless --append already chooses). uki: with uefi, a dict of mpinit.uki.build() options
    (sign_key, sign_cert, password_file, os_release; {} for none): \\EFI\\BOOT\\BOOTX64.EFI is then a Unified
    Kernel Image of the kernel, the initramfs and the same command line, which the firmware starts directly
    (no GRUB, no grub.cfg; signed, it boots under Secure Boot)."""
    output = Path(output)
    fat.check_label(label)
    inp = check_inputs(kernel, initrd, squashfs)
    check_output(output, LiveError)
    for flag, path in (("--kernel", inp.kernel), ("--initrd", inp.initrd), ("--squashfs", inp.squashfs)):
        if path.stat().st_size > FAT_MAX_FILE:
            raise LiveError("%s %s: %d bytes, more than a FAT32 file can hold (4 GiB - 1); use live-iso"
                            % (flag, path, path.stat().st_size))
    arch = inp.arch
    _need_uefi(arch, uefi)
    bios = arch.bios
    if bios:
        boot_code = _tool_file(SYSLINUX_MBR, "syslinux-common").read_bytes()
        syslinux = find_tool("syslinux", "syslinux")
    else:
        boot_code = b""   # no BIOS to run MBR code: the table alone, for the firmware to find the FAT partition
    if persistence is not None and not _PERSIST_WORDS.intersection(w.split("=")[0] for w in append.split()):
        append = (append + " persistence").strip()
    line = cmdline("live:LABEL=%s" % label, append)
    with tempfile.TemporaryDirectory(prefix=".mpinit-live.", dir=output.parent) as td:
        td = Path(td)
        sha = sha256_line(inp.squashfs, Path(LIVE_IMAGE).name)
        (td / "sha256").write_text(sha)
        files = [(inp.kernel, "/vmlinuz"), (inp.initrd, "/initrd.img"),
                 (inp.squashfs, LIVE_IMAGE), (td / "sha256", LIVE_IMAGE + ".sha256")]
        if bios:
            (td / "syslinux.cfg").write_text(syslinux_cfg(line))
            files.insert(2, (td / "syslinux.cfg", "/syslinux/syslinux.cfg"))
        if uefi and uki is not None:
            from . import uki as ukimod

            ukimod.build(inp.kernel, inp.initrd, td / arch.efi_boot_file, cmdline=line, **uki)
            files.append((td / arch.efi_boot_file, "/EFI/BOOT/" + arch.efi_boot_file))
        elif uefi:
            make_grub_efi(td / arch.efi_boot_file, arch=arch)
            (td / "grub.cfg").write_text(grub_cfg(line, serial=bios))
            files += [(td / arch.efi_boot_file, "/EFI/BOOT/" + arch.efi_boot_file),
                      (td / "grub.cfg", "/EFI/BOOT/grub.cfg")]
        # ldlinux.sys + ldlinux.c32 (~150 KiB) and the directories
        plan = plan_disk([src.stat().st_size for src, _ in files],
                         extra=(LDLINUX_C32.stat().st_size if bios else 0) + 64 * 1024)
        tmp = td / "disk.img"
        with open(tmp, "wb") as f:
            f.truncate(plan.total_size)  # sparse
        off = plan.part_start
        # Disk signature and FAT serial (blkid's PARTUUID and UUID) from the contents: the same inputs give the same
        # identifiers, and different images differ.
        ident = hashlib.sha256((sha + label + line).encode()).digest()
        disk_id, serial = struct.unpack("<II", ident[:8])
        fat.mkfs(tmp, off, plan.part_size, label, hidden_sectors=off // SECTOR, serial=serial)
        fat.mkdirs(tmp, off, sorted({str(Path(dest).parent) for _, dest in files} - {"/"}))
        for src, dest in files:
            fat.copy_in(tmp, off, src, dest)
        if bios:
            run([syslinux, "--offset", str(off), "--install", "--directory", "/syslinux", tmp])
        with open(tmp, "r+b") as f:
            f.write(mbr(boot_code, off // SECTOR, plan.part_size // SECTOR, disk_id))
        if persistence is not None:
            from .persistence import append_partition

            append_partition(tmp, persistence, td)
        _publish(tmp, output)
    return plan


# Kernel parameters that already say whether (and how) to use persistence (docs/agent.md).
_PERSIST_WORDS = {"persistence", "nopersistence", "persistent", "nopersistent", "mpinit.persist", "rd.overlay",
                  "rd.live.overlay", "cow_label", "cow_device"}


def build_iso(kernel, initrd, squashfs, output, label=DEFAULT_LABEL, append="", uefi=False):
    """Write the isohybrid ISO to `output` atomically. uefi: also an El Torito EFI boot image with GRUB, made
    reachable from the hybrid MBR/GPT as well (xorriso -isohybrid-gpt-basdat), for UEFI from CD or USB stick.

    A kernel for a machine without a BIOS (arm64) gets no ISOLINUX: El Torito's EFI entry only, and the same FAT
    boot image as partition 2 (type 0xEF) of the ISO's MBR for booting it from a USB stick (xorriso
    -append_partition, as Debian's own arm64 installer images do)."""
    output = Path(output)
    check_iso_label(label)
    inp = check_inputs(kernel, initrd, squashfs)
    check_output(output, LiveError)
    arch = inp.arch
    _need_uefi(arch, uefi)
    bios = arch.bios
    if bios:
        isolinux = _tool_file(ISOLINUX_BIN, "isolinux")
        isohdpfx = _tool_file(ISOHDPFX_BIN, "isolinux")
        ldlinux = _tool_file(LDLINUX_C32, "syslinux-common")
    xorriso = find_tool("xorriso", "xorriso")
    line = cmdline("live:CDLABEL=%s" % label, append)
    with tempfile.TemporaryDirectory(prefix=".mpinit-live.", dir=output.parent) as td:
        td = Path(td)
        (td / "sha256").write_text(sha256_line(inp.squashfs, Path(LIVE_IMAGE).name))
        grafts = [("vmlinuz", inp.kernel), ("initrd.img", inp.initrd), (LIVE_IMAGE[1:], inp.squashfs),
                  (LIVE_IMAGE[1:] + ".sha256", td / "sha256")]
        boot = []
        if bios:
            (td / "isolinux.cfg").write_text(syslinux_cfg(line))
            grafts[:0] = [("isolinux/isolinux.bin", isolinux), ("isolinux/ldlinux.c32", ldlinux),
                          ("isolinux/isolinux.cfg", td / "isolinux.cfg")]
            boot = ["-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot",
                    "-boot-load-size", "4", "-boot-info-table", "-isohybrid-mbr", isohdpfx]
        if uefi:
            loader = td / arch.efi_boot_file
            (td / "early.cfg").write_text(grub_iso_early_cfg(label))
            make_grub_efi(loader, early_cfg=td / "early.cfg", arch=arch)
            (td / "grub.cfg").write_text(grub_cfg(line, serial=bios))
            make_efi_boot_image(td / "efiboot.img", loader, name=arch.efi_boot_file)
            image = "isolinux/efiboot.img" if bios else "EFI/efiboot.img"
            grafts += [("EFI/BOOT/grub.cfg", td / "grub.cfg"), ("EFI/BOOT/" + arch.efi_boot_file, loader),
                       (image, td / "efiboot.img")]
            if bios:   # a second El Torito entry, also listed in the hybrid MBR/GPT
                boot += ["-eltorito-alt-boot", "-e", image, "-no-emul-boot", "-isohybrid-gpt-basdat"]
            else:      # the only El Torito entry, and the MBR partition a USB stick boots from
                boot += ["-e", image, "-no-emul-boot", "-append_partition", "2", "0xef", td / "efiboot.img"]
        tmp = td / "live.iso"
        # -iso-level 3: files over 4 GiB (big squashfs images) are allowed, in several extents.
        argv = ([xorriso, "-as", "mkisofs", "-o", tmp, "-V", label, "-iso-level", "3", "-R", "-J"] + boot
                + ["-graft-points"])
        argv += ["%s=%s" % (dest, _graft_escape(src)) for dest, src in grafts]
        run(argv)
        _publish(tmp, output)


def _graft_escape(path):
    # xorriso -graft-points: '=' and '\\' in a path are escaped with a backslash.
    return str(path).replace("\\", "\\\\").replace("=", "\\=")


def _publish(tmp, output):
    """Rename the finished image over `output` (same directory, so atomic)."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, output)
