"""Set-up: the Debian packages mpinit builds and tests with, and a virtual environment with the host tools.

Installs with apt-get when running as root; otherwise prints the one command to run. Checking is cheap (one
dpkg-query), so every build.py command calls ensure() first.
"""

import os
import subprocess

from .common import ROOT, VENV, VENV_PYTHON, BuildError, log, run

# Debian package -> why mpinit needs it.
PACKAGES = {
    "build-essential": "gcc and make for MicroPython",
    "musl-tools": "musl-gcc: the static, small /init",
    "linux-libc-dev": "kernel headers for the native module's constants",
    "dpkg-dev": "apt-get source / dpkg-source for MicroPython's source",
    "cpio": "GNU cpio: checks our archives byte for byte",
    "libarchive-tools": "bsdcpio: a second independent archive reader",
    "kmod": "modinfo/modprobe/depmod: checks our module closure",
    "zstd": "zstd compression",
    "lz4": "lz4 compression",
    "xz-utils": "xz compression",
    "util-linux": "blkid, unshare, sfdisk",
    "e2fsprogs": "mkfs.ext4 -d for test media",
    "dosfstools": "mkfs.vfat for test media",
    "mtools": "copying into FAT images without loop mounts",
    "exfatprogs": "mkfs.exfat for probe tests",
    "btrfs-progs": "mkfs.btrfs for probe tests",
    "xfsprogs": "mkfs.xfs for probe tests",
    "cryptsetup-bin": "LUKS headers for probe tests",
    "gdisk": "sgdisk: GPT test disks",
    "fdisk": "sfdisk: MBR test disks",
    "squashfs-tools": "mksquashfs: live images",
    "xorriso": "ISO images",
    "busybox-static": "the test live root and the benchmark's peer",
    "syslinux": "BIOS boot loader for live media",
    "syslinux-common": "SYSLINUX modules and MBR code",
    "isolinux": "ISOLINUX for live ISOs",
    "qemu-system-x86": "boots real kernels in the end-to-end tests",
    "ovmf": "UEFI firmware for QEMU",
    "grub-efi-amd64-bin": "GRUB EFI modules + grub-mkimage (grub-common): the --uefi live image's BOOTX64.EFI",
    "kbd": "loadkeys -b: console keymaps converted for `mpinit pack --keymap`",
}


def missing_packages():
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n"] + list(PACKAGES),
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    installed = {line.split()[0] for line in proc.stdout.splitlines() if line.endswith(" installed")}
    return [p for p in PACKAGES if p not in installed]


def ensure_packages():
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise BuildError("missing Debian packages; install them with:\n  sudo apt-get install -y %s"
                         % " ".join(missing))
    log("installing %d Debian packages: %s" % (len(missing), " ".join(missing)))
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends"] + missing, env=env)


def ensure_venv():
    """build/venv with mpinit installed editable, plus the test extras. Re-installed when pyproject.toml changes."""
    stamp = VENV / ".pyproject-installed"
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    if VENV_PYTHON.exists() and stamp.exists() and stamp.read_bytes() == pyproject:
        return
    if not VENV_PYTHON.exists():
        log("creating %s" % VENV)
        run(["python3", "-m", "venv", VENV])
    run([VENV_PYTHON, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", "%s[test]" % ROOT])
    stamp.write_bytes(pyproject)


def ensure():
    ensure_packages()
    ensure_venv()
