"""The CPU architectures mpinit makes images for, and what differs between them on the host side.

    get("arm64") / get("aarch64")       an Arch (ArchError for anything else)
    native()                            the machine the tools run on
    of_elf(path)                        the Arch of an ELF file (the runtime, a program, a kernel module)
    of_kernel(path)                     the Arch of a kernel image (x86 bzImage, arm64 Image, or gzip of one)
    of_module_tree(dir)                 the Arch of a module tree (lib/modules/VER), from one of its modules
    fetch_deb(package, arch, cache)     a Debian package of an architecture, downloaded and unpacked once

The agent itself is the same Python on every architecture; only the runtime binary (build.py runtime --arch), the
kernel, its modules, the firmware and the boot loader differ. buildsys/arches.py holds the build side's table
(the two stay small and separate: build.py runs on the standard library alone, before mpinit is installed).
"""

import gzip
import os
import platform
from dataclasses import dataclass
from pathlib import Path


class ArchError(ValueError):
    """An unknown architecture, or a file whose architecture cannot be told; the message names it."""


@dataclass(frozen=True)
class Arch:
    name: str               # ours: --arch, build/<name>/
    debian: str             # dpkg's name (apt-get download PACKAGE:<debian>)
    machines: tuple         # uname -m spellings
    elf_machine: int        # ELF e_machine (System V gABI: EM_X86_64 = 62, EM_AARCH64 = 183)
    kernel_meta: str        # Debian's cloud kernel meta package
    qemu_system: str        # the system emulator, and its Debian package
    qemu_package: str
    machine_args: tuple     # board and CPU for it
    console: str            # the first serial port's tty on that board
    qemu_user: str          # the user-mode emulator that runs its binaries on another host (Debian qemu-user)
    efi_boot_file: str      # the UEFI removable-media loader name (UEFI spec 2.10, 3.5.1.1)
    grub_target: str        # grub-mkimage -O, and the module directory /usr/lib/grub/<target>
    grub_package: str
    efi_code: str           # UEFI firmware for QEMU: code (read-only) and variable store template
    efi_vars: str
    efi_package: str
    bios: bool              # has a BIOS (SYSLINUX/ISOLINUX) boot path


# The arm64 board: QEMU's `virt` (PL011 UART = ttyAMA0, virtio-mmio and a PCIe host bridge, no IDE), with `-cpu
# max` (every feature TCG emulates, so the kernel's alternatives for newer CPUs run too). pauth-impdef=on: pointer
# authentication with an implementation-defined hash instead of the architected QARMA5, which TCG computes far
# faster (QEMU's docs/system/arm/cpu-features.rst); measured here, kernel start to /init 6.3 s -> 2.5 s. The
# firmware is Debian's qemu-efi-aarch64 (AAVMF: 64 MiB pflash images for unit 0 code and unit 1 variables).
ARCHES = {
    "x86_64": Arch("x86_64", "amd64", ("x86_64", "amd64"), 62, "linux-image-cloud-amd64",
                   "qemu-system-x86_64", "qemu-system-x86", (), "ttyS0", "qemu-x86_64", "BOOTX64.EFI",
                   "x86_64-efi", "grub-efi-amd64-bin", "/usr/share/OVMF/OVMF_CODE.fd",
                   "/usr/share/OVMF/OVMF_VARS.fd", "ovmf", True),
    "arm64": Arch("arm64", "arm64", ("aarch64", "arm64"), 183, "linux-image-cloud-arm64",
                  "qemu-system-aarch64", "qemu-system-arm", ("-M", "virt", "-cpu", "max,pauth-impdef=on"), "ttyAMA0",
                  "qemu-aarch64", "BOOTAA64.EFI", "arm64-efi", "grub-efi-arm64-bin",
                  "/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd", "qemu-efi-aarch64", False),
}


def get(name):
    """The Arch called `name` (ours, uname -m's or dpkg's spelling); an Arch is returned as it is."""
    if isinstance(name, Arch):
        return name
    for arch in ARCHES.values():
        if name == arch.name or name in arch.machines or name == arch.debian:
            return arch
    raise ArchError("architecture %r: mpinit knows %s" % (name, ", ".join(ARCHES)))


def native():
    return get(platform.machine())


def by_elf_machine(machine):
    for arch in ARCHES.values():
        if arch.elf_machine == machine:
            return arch
    return None


def elf_machine(data):
    """e_machine of ELF bytes (the 16-bit field at offset 18, in the byte order e_ident[EI_DATA] names), or None."""
    if len(data) < 20 or data[:4] != b"\x7fELF" or data[5] not in (1, 2):
        return None
    return int.from_bytes(data[18:20], "little" if data[5] == 1 else "big")


def of_elf(path, data=None):
    """The Arch of an ELF file; ArchError naming the file when it is not ELF or of a machine we do not know."""
    if data is None:
        try:
            with open(path, "rb") as f:
                data = f.read(64)
        except OSError as e:
            raise ArchError("%s: %s" % (path, e.strerror))
    machine = elf_machine(data)
    if machine is None:
        raise ArchError("%s: not an ELF file" % path)
    arch = by_elf_machine(machine)
    if arch is None:
        raise ArchError("%s: ELF machine %d, not one of %s" % (path, machine, ", ".join(ARCHES)))
    return arch


def of_kernel(path):
    """The Arch of a kernel image, from its boot header.

    x86: a bzImage has "HdrS" at 0x202 (Documentation/arch/x86/boot.rst). arm64: an Image has the magic
    "ARM\\x64" at 0x38 (Documentation/arch/arm64/booting.rst); Debian's arm64 vmlinuz may be that Image gzipped
    (QEMU and GRUB both take either), so a gzip stream is opened and its first bytes read."""
    try:
        with open(path, "rb") as f:
            head = f.read(0x210)
    except OSError as e:
        raise ArchError("%s: %s" % (path, e.strerror))
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as g:
                head = g.read(0x210)
        except (OSError, EOFError) as e:
            raise ArchError("%s: a gzip file that does not unpack: %s" % (path, e))
    if head[0x202:0x206] == b"HdrS":
        return ARCHES["x86_64"]
    if head[0x38:0x3C] == b"ARM\x64":
        return ARCHES["arm64"]
    raise ArchError("%s: not a kernel image mpinit knows (an x86 bzImage has 'HdrS' at 0x202, an arm64 Image "
                    "'ARM\\x64' at 0x38)" % path)


def of_module_tree(module_dir):
    """The Arch of a module tree, from the first kernel module found in it (None when it holds none)."""
    from . import kmod

    for dirpath, dirnames, filenames in os.walk(module_dir):
        dirnames.sort()
        for name in sorted(filenames):
            if ".ko" in name:
                path = Path(dirpath) / name
                try:
                    data = kmod.read_module(path)
                except Exception:  # an unreadable module: try the next one
                    continue
                arch = by_elf_machine(elf_machine(data[:64]) or -1)
                if arch is not None:
                    return arch
    return None


def run_prefix(path):
    """[] when the ELF program at path runs on this machine, else the qemu-user emulator to run it with (tests
    and media builders run the target's busybox and /init that way)."""
    from .runner import find_tool

    arch = of_elf(path)
    if arch is native():
        return []
    return [find_tool(arch.qemu_user, "qemu-user")]


def apt_name(package, arch):
    """How apt names `package` of `arch`: bare for this machine's own architecture, PACKAGE:<dpkg arch> for
    another (multiarch; apt must know that architecture: dpkg --add-architecture)."""
    arch = get(arch)
    return package if arch is native() else "%s:%s" % (package, arch.debian)


def fetch_deb(package, arch, cache):
    """Download `package` of `arch` (apt-get download from the archive this machine's apt is configured with: no
    root, nothing installed) and unpack it (dpkg-deb -x) into cache/root once; returns that directory. The one way
    the host tools fetch a Debian package: another architecture's busybox-static, the kernels of mpinit.kernel.
    The cache is reused while cache/fetched.json names the same package; a different one replaces it."""
    import json
    import shutil

    from .runner import ToolError, run

    arch = get(arch)
    cache = Path(cache)
    name = apt_name(package, arch)
    stamp = cache / "fetched.json"
    root = cache / "root"
    if stamp.exists() and root.is_dir():
        try:
            if json.loads(stamp.read_text()).get("package") == name:
                return root
        except (ValueError, AttributeError):
            pass   # a damaged stamp: fetch again
    cache.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    for old in cache.glob("*.deb"):
        old.unlink()
    proc = run(["apt-get", "download", name], cwd=cache, capture=True, check=False)
    if proc.returncode != 0:
        hint = ("" if name == package else " (apt must know the architecture: dpkg --add-architecture %s && "
                "apt-get update)" % arch.debian)
        raise ToolError("apt-get download %s failed%s: %s"
                        % (name, hint, proc.stderr.decode(errors="replace").strip()[-300:]))
    debs = sorted(cache.glob("%s_*_%s.deb" % (package, arch.debian)))
    if not debs:
        raise ToolError("apt-get download %s left no .deb in %s" % (name, cache))
    if root.exists():
        shutil.rmtree(root)
    run(["dpkg-deb", "-x", debs[-1], root])
    stamp.write_text(json.dumps({"package": name, "deb": debs[-1].name}))
    return root


def check_image(init, init_data, arch=None, module_dir=None, programs=(), host_only=False):
    """The architecture an initramfs is for, checked across what goes into it; ArchError naming the input that
    disagrees. arch: --arch (None: /init's). init_data: /init's bytes (not ELF, e.g. a script: no check).
    programs: host paths of --binary/--add files (ELF ones must match). Returns the Arch, or None when nothing
    tells (a non-ELF /init and no --arch)."""
    want = get(arch) if arch else None
    machine = elf_machine(init_data[:64])
    if machine is not None:
        got = by_elf_machine(machine)
        if got is None:
            raise ArchError("--init %s: ELF machine %d, not one of %s" % (init, machine, ", ".join(ARCHES)))
        if want is not None and got is not want:
            raise ArchError("--init %s is an %s program, but the image is for %s (--arch %s): build the runtime "
                            "with `python3 build.py runtime --arch %s`" % (init, got.name, want.name, want.name,
                                                                          want.name))
        want = got
    if want is None:
        return None
    if module_dir is not None:
        tree = of_module_tree(module_dir)
        if tree is not None and tree is not want:
            raise ArchError("--kernel-modules %s holds %s modules, but /init (%s) is %s" % (module_dir, tree.name,
                                                                                          init, want.name))
    for path in programs:
        path = Path(path)
        if not path.is_file():
            continue   # a directory or a missing file: the tree builder reports it
        try:
            with open(path, "rb") as f:
                head = f.read(64)
        except OSError:
            continue
        m = elf_machine(head)
        if m is not None and m != want.elf_machine:
            other = by_elf_machine(m)
            raise ArchError("%s is an %s program, but the image is for %s" % (path, other.name if other else
                                                                            "machine %d" % m, want.name))
    if host_only and want is not native():
        raise ArchError("--host-only: this machine is %s, the image is for %s (its devices tell nothing about "
                        "the target's)" % (native().name, want.name))
    return want
