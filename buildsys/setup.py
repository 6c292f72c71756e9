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
    "e2fsprogs": "mkfs.ext4 -d for test media and persistence volumes; e2fsck (packed into the persistence e2e "
                 "initramfs, e2fsck -fn checks) and debugfs in the persistence tests",
    "dosfstools": "mkfs.vfat for test media",
    "mtools": "copying into FAT images without loop mounts",
    "exfatprogs": "mkfs.exfat for probe tests",
    "btrfs-progs": "mkfs.btrfs for probe tests",
    "xfsprogs": "mkfs.xfs for probe tests",
    "ntfs-3g": "mkntfs for NTFS probe tests; ntfscp: ISO files on the NTFS e2e medium (no mount)",
    "udftools": "mkudffs for UDF probe tests and the UDF e2e medium",
    "f2fs-tools": "mkfs.f2fs for probe tests",
    "erofs-utils": "mkfs.erofs: `mpinit squash --format erofs`, EROFS probe tests and e2e media; fsck.erofs --extract",
    "genisoimage": "genisoimage -udf: UDF bridge ISOs for the probe tests",
    "cryptsetup-bin": "cryptsetup: LUKS headers for probe tests; packed into the storage media maker and e2e images",
    "mdadm": "RAID1 test media made in a QEMU guest; packed into storage e2e images (installs no service: policy-rc.d)",
    "lvm2": "lvm: LVM test media made in a QEMU guest; packed into storage e2e images (no lvm.static in Debian)",
    "gdisk": "sgdisk: GPT test disks",
    "fdisk": "sfdisk: MBR test disks",
    "squashfs-tools": "mksquashfs: live images",
    "xorriso": "ISO images",
    "busybox-static": "the test live root and the benchmark's peer",
    "mmdebstrap": "the Debian root with systemd for the persistence e2e (mpinit.testing.systemd_root; run as root "
                  "in its unshare mode: a private mount namespace, no host mounts)",
    "syslinux": "BIOS boot loader for live media",
    "syslinux-common": "SYSLINUX modules and MBR code",
    "isolinux": "ISOLINUX for live ISOs",
    "qemu-system-x86": "boots real kernels in the end-to-end tests",
    "ipxe-qemu": "the NICs' PXE option ROMs (pxe-virtio.rom, efi-virtio.rom): the PXE e2e boots over TFTP",
    "pxelinux": "pxelinux.0 for `mpinit netboot-tree` (BIOS PXE; ldlinux.c32 comes from syslinux-common)",
    "nginx-light": "the network-boot e2e's web server (tests/e2e/webserver.py; installs no service: policy-rc.d)",
    "ovmf": "UEFI firmware for QEMU; its snakeoil-key firmware and key: the Secure Boot UKI e2e",
    "systemd-boot-efi": "systemd's EFI stub (linuxx64.efi.stub): `mpinit uki` builds Unified Kernel Images on it",
    "sbsigntool": "sbsign/sbverify: `mpinit uki --sign-key` signs UKIs for Secure Boot; the tests verify them",
    "openssl": "`mpinit uki` decrypts a signing key (password on stdin) and checks it against its certificate",
    "grub-efi-amd64-bin": "GRUB EFI modules + grub-mkimage (grub-common): the --uefi live image's BOOTX64.EFI",
    "kbd": "loadkeys -b: console keymaps converted for `mpinit pack --keymap`",
}


# What building and testing for another architecture adds (build.py runtime/demo --arch arm64, and build.py test
# on an x86_64 machine, which tests the arm64 runtime too). `name:arm64` packages need the architecture added to
# dpkg first (ensure_packages does that); the arm64 kernel and busybox are only downloaded (apt-get download).
ARCH_PACKAGES = {
    "arm64": {
        "gcc-aarch64-linux-gnu": "the cross compiler for the arm64 /init",
        "musl-dev:arm64": "musl's arm64 headers, libc.a and gcc specs: the static arm64 /init",
        "linux-libc-dev:arm64": "arm64 kernel headers (asm/) for the native module's constants",
        "qemu-user": "qemu-aarch64: the agent's MicroPython tests under the arm64 binary, the arm64 busybox",
        "qemu-system-arm": "qemu-system-aarch64: the arm64 end-to-end boots",
        "qemu-efi-aarch64": "AAVMF, UEFI firmware for the arm64 boots of live media",
        "grub-efi-arm64-bin:arm64": "GRUB's arm64 EFI modules (an arm64-only, Multi-Arch: foreign package)",
    },
}


def _wanted(foreign=None):
    wanted = dict(PACKAGES)
    if foreign:
        wanted.update(ARCH_PACKAGES[foreign])
    return wanted


def missing_packages(foreign=None):
    """Packages of PACKAGES (and ARCH_PACKAGES[foreign]) not installed. A name:arch is matched as dpkg names it
    (${binary:Package}); a plain name by ${Package} for this machine's architecture or arch all."""
    wanted = _wanted(foreign)
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${binary:Package} ${Package} ${Architecture} "
                           "${db:Status-Status}\n"] + list(wanted),
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    native = subprocess.run(["dpkg", "--print-architecture"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True).stdout.strip()
    installed = set()
    for line in proc.stdout.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[3] == "installed":
            installed.add(fields[0])
            if fields[2] in (native, "all"):
                installed.add(fields[1])
    return [p for p in wanted if p not in installed]


def _add_architectures(names):
    """dpkg --add-architecture for the `name:arch` packages' architectures dpkg does not know yet."""
    archs = sorted({n.partition(":")[2] for n in names if ":" in n})
    known = subprocess.run(["dpkg", "--print-foreign-architectures"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True).stdout.split()
    for a in archs:
        if a not in known:
            log("adding the %s architecture to dpkg (for %s)" % (a, ", ".join(n for n in names if n.endswith(":" + a))))
            run(["dpkg", "--add-architecture", a])


def ensure_packages(foreign=None):
    """foreign: "arm64" to add what building and testing for arm64 needs."""
    missing = missing_packages(foreign)
    if not missing:
        return
    if os.geteuid() != 0:
        archs = sorted({n.partition(":")[2] for n in missing if ":" in n})
        pre = "".join("sudo dpkg --add-architecture %s && " % a for a in archs)
        raise BuildError("missing Debian packages; install them with:\n  %s%ssudo apt-get install -y %s"
                         % (pre, "sudo apt-get update && " if pre else "", " ".join(missing)))
    log("installing %d Debian packages: %s" % (len(missing), " ".join(missing)))
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    _add_architectures(missing)
    run(["apt-get", "update", "-q"], env=env)
    with services_denied():
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends"] + missing, env=env)


POLICY_RC_D = "/usr/sbin/policy-rc.d"


class services_denied:
    """No service may start while packages install (mdadm's monitor, lvm2's dmeventd/lvmpolld, nginx): a
    policy-rc.d that exits 101 ("action forbidden", invoke-rc.d(8) and Debian's policy-rc.d interface, which
    deb-systemd-invoke honours too) for the install's duration. One already there is left alone; ours is
    removed afterwards."""

    def __enter__(self):
        self.created = False
        if not os.path.lexists(POLICY_RC_D):
            with open(POLICY_RC_D, "w") as f:
                f.write("#!/bin/sh\n# written by mpinit's buildsys/setup.py for one apt-get install\nexit 101\n")
            os.chmod(POLICY_RC_D, 0o755)
            self.created = True
        return self

    def __exit__(self, *exc):
        if self.created:
            os.unlink(POLICY_RC_D)
        return False


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


def ensure(foreign=None):
    ensure_packages(foreign)
    ensure_venv()
