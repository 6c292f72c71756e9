"""Unified Kernel Images booted by the firmware: `mpinit live-image --uefi --uki` makes \\EFI\\BOOT\\BOOTX64.EFI a
UKI (systemd-boot-efi's stub + the Debian cloud kernel + an `mpinit pack` initramfs + root=live:LABEL=...), and
OVMF starts it with no boot loader in between.

Secure Boot: Debian's ovmf ships a firmware with a test key enrolled as PK, KEK and db (OVMF_CODE_4M.snakeoil.fd,
which needs SMM: q35 with smm=on and the flash marked secure, + OVMF_VARS_4M.snakeoil.fd, Secure Boot enabled) and
that key (PkKek-1-snakeoil.key/.pem, password "snakeoil", README.Debian). The UKI signed with it must boot to the
live root with the kernel locked down and the agent still loading (Debian-signed) modules; the same UKI unsigned
must be refused by the firmware.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_tools
from mpinit import liveimage, liveroot, qemu, squash, uki

pytestmark = pytest.mark.e2e

LABEL = "MPUKI"
SNAKEOIL_KEY = Path("/usr/share/ovmf/PkKek-1-snakeoil.key")
SNAKEOIL_CERT = Path("/usr/share/ovmf/PkKek-1-snakeoil.pem")
SNAKEOIL_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.snakeoil.fd")
SNAKEOIL_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd")


@pytest.fixture(scope="module")
def parts(runtime_binary, debian_kernel, tmp_path_factory):
    """(kernel, `mpinit pack` initramfs, live root squashfs)."""
    require_tools("qemu-system-x86_64", "mksquashfs", "mformat", "mcopy", "syslinux", "busybox")
    try:
        uki.find_stub()
    except uki.UkiError as e:
        pytest.skip(str(e))
    if not Path(qemu.OVMF_CODE).is_file():
        pytest.skip("%s missing (Debian package ovmf)" % qemu.OVMF_CODE)
    d = tmp_path_factory.mktemp("uki")
    liveroot.build_tree(d / "root")
    squash.build(d / "root", d / "filesystem.squashfs", all_root=True)
    initrd = d / "initrd.img"
    env = dict(os.environ, MPINIT_RUNTIME=str(runtime_binary))
    proc = subprocess.run([sys.executable, "-m", "mpinit", "pack", "-o", str(initrd), "--kernel-modules",
                           str(debian_kernel.modules_dir), "--modules", "generic-live"],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return debian_kernel.vmlinuz, initrd, d / "filesystem.squashfs"


def _image(parts, out, **uki_opts):
    kernel, initrd, sq = parts
    liveimage.build_disk_image(kernel, initrd, sq, out, label=LABEL, append="console=ttyS0", uefi=True,
                               uki=uki_opts)
    return out


def _secure_boot_argv(img, tmp_path):
    """OVMF with the snakeoil keys enrolled and Secure Boot on: the SMM build needs q35 with SMM and the code
    flash marked secure (only SMM code may then write the variable store: the firmware's own rule)."""
    for f in (SNAKEOIL_CODE, SNAKEOIL_VARS, SNAKEOIL_KEY, SNAKEOIL_CERT):
        if not f.exists():
            pytest.skip("%s missing (Debian package ovmf)" % f)
    vars_copy = tmp_path / "OVMF_VARS_4M.snakeoil.fd"   # the guest's own variable store, as README.Debian says
    shutil.copy(SNAKEOIL_VARS, vars_copy)
    return qemu.firmware_argv(disks=[img], uefi=True, memory_mb=512, ovmf_code=SNAKEOIL_CODE, ovmf_vars=vars_copy,
                              extra_args=["-machine", "q35,smm=on",
                                          "-global", "driver=cfi.pflash01,property=secure,value=on"])


def _check_live(r):
    assert r.ok, r.output[-5000:]
    facts = r.marker_fields()
    assert facts["rootfs"] == "overlay" and facts["rw"] == "yes", r.marker_line
    assert ("root=live:LABEL=%s" % LABEL) in facts["cmdline"]
    assert not r.timed_out


def test_uki_boots_under_ovmf(parts, tmp_path):
    """No GRUB on the medium: OVMF starts BOOTX64.EFI = the UKI, whose stub hands the kernel its baked-in
    command line and initramfs; the agent then finds the live medium and boots the live root."""
    img = _image(parts, tmp_path / "live.img")
    cmdline = uki.read_section(_extract_bootx64(img, tmp_path), ".cmdline")
    assert cmdline == ("root=live:LABEL=%s console=ttyS0" % LABEL).encode()
    r = qemu.boot(None, None, argv=qemu.firmware_argv(disks=[img], uefi=True, memory_mb=512), timeout_s=300,
                  log_path=tmp_path / "console.log")
    _check_live(r)
    assert "mpinit: medium:" in r.output


def _extract_bootx64(img, tmp_path):
    """\\EFI\\BOOT\\BOOTX64.EFI copied out of the image's FAT partition (mtools at the partition's offset)."""
    out = tmp_path / "BOOTX64.EFI"
    subprocess.run(["mcopy", "-n", "-i", "%s@@%d" % (img, liveimage.PART_START), "::/EFI/BOOT/BOOTX64.EFI",
                    str(out)], check=True)
    return out


def test_signed_uki_boots_with_secure_boot(parts, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("snakeoil\n")
    pw.chmod(0o600)
    img = _image(parts, tmp_path / "signed.img", sign_key=SNAKEOIL_KEY, sign_cert=SNAKEOIL_CERT, password_file=pw)
    r = qemu.boot(None, None, argv=_secure_boot_argv(img, tmp_path), timeout_s=420, log_path=tmp_path / "console.log")
    _check_live(r)
    # The kernel saw Secure Boot on (arch/x86/kernel/setup.c -> "secureboot: Secure boot enabled") and locked
    # itself down (security/lockdown: CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT, Debian's default) ...
    assert "Secure boot enabled" in r.output, r.output[-5000:]
    assert "Kernel is locked down from EFI Secure Boot" in r.output, r.output[-5000:]
    # ... and the agent's module loads still worked: Debian's modules carry Debian's signature, which the kernel's
    # built-in keyring accepts (the medium is a virtio disk: virtio_blk, a module in Debian's cloud kernel, had to
    # load for the medium to be found).
    m = re.search(r"mpinit: modules: (\d+) loaded .*, (\d+) failed", r.output)
    assert m and int(m.group(1)) > 0 and m.group(2) == "0", r.output[-5000:]
    assert "virtio_blk virtio0: [vda]" in r.output
    assert "Loading of unsigned module is rejected" not in r.output


def test_unsigned_uki_is_refused_with_secure_boot(parts, tmp_path):
    img = _image(parts, tmp_path / "unsigned.img")
    r = qemu.boot(None, None, argv=_secure_boot_argv(img, tmp_path), timeout_s=240, stop_on="Access Denied",
                  log_path=tmp_path / "console.log")
    assert "Linux version" not in r.output and "MPINIT-LIVE-OK" not in r.output, r.output[-3000:]
    # EDK2's BDS: "BdsDxe: failed to load Boot0001 ... : Access Denied" (LoadImage's EFI_ACCESS_DENIED from
    # DxeImageVerificationLib: the image is unsigned and its hash is in no db entry).
    # The disk (a virtio disk: "UEFI Misc Device") is what the firmware refused, not something else.
    assert re.search(r'failed to load Boot\d+ "UEFI Misc Device" .*: Access Denied', r.output), r.output[-3000:]
