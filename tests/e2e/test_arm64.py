"""arm64 end to end: Debian's cloud-arm64 kernel on `qemu-system-aarch64 -M virt -cpu max` (TCG), an initramfs
packed by `mpinit pack` around the arm64 runtime (build.py runtime --arch arm64), and media with an arm64 busybox
live root (mpinit.archmedia). A representative set of the x86_64 scenarios in test_boot.py, plus the arm64 live
media booted by the firmware alone (AAVMF -> GRUB's BOOTAA64.EFI -> the kernel), as a user's machine would.

Disks are virtio-blk (vda, ...); the CD-ROM is a SCSI CD on virtio-scsi (the board has no IDE). Each direct boot
takes about 4 s here, each firmware boot about 12 s. Consoles are kept in build/e2e-arm64/logs/<test>.log.
"""

import os
import subprocess
import sys

import pytest

from conftest import require_tools
from e2e_support import log_path
from mpinit import archmedia, liveimage, media, qemu
from mpinit_agent import contract

pytestmark = pytest.mark.e2e

REPL_PROMPT = ">>> "
MEMORY_MB = 256


@pytest.fixture(scope="session")
def arm64_kernel():
    """Debian's linux-image-cloud-arm64, downloaded and unpacked into build/kernel-arm64 (skips with the reason
    when apt cannot get it, e.g. without `dpkg --add-architecture arm64`)."""
    from mpinit import kernel
    from mpinit.runner import ToolError

    require_tools("qemu-system-aarch64", "qemu-aarch64", "apt-get", "dpkg-deb", "mksquashfs", "sgdisk",
                  "mkfs.vfat", "mcopy", "mkfs.ext4", "xorriso", "grub-mkimage")
    try:
        return kernel.ensure(arch="arm64")
    except ToolError as e:
        pytest.skip("Debian arm64 kernel unavailable: %s" % e)


@pytest.fixture(scope="session")
def arm64_initrd(arm64_kernel, arm64_runtime, tmp_path_factory):
    """`mpinit pack --modules generic-live` for the arm64 kernel and runtime, once per session."""
    _, runtime = arm64_runtime
    out = tmp_path_factory.mktemp("initrd-arm64") / "initrd.img"
    proc = subprocess.run([sys.executable, "-m", "mpinit", "pack", "-o", str(out), "--arch", "arm64",
                           "--init", str(runtime), "--kernel-modules", str(arm64_kernel.modules_dir),
                           "--modules", "generic-live"], env=dict(os.environ), capture_output=True, text=True)
    assert proc.returncode == 0, "mpinit pack failed:\n%s\n%s" % (proc.stdout[-3000:], proc.stderr[-3000:])
    return out


@pytest.fixture
def boot(request, arm64_kernel, arm64_initrd):
    """boot(["gpt-vfat", ...], "kernel params", ...) -> BootResult: direct kernel boot on the arm64 board."""
    def run_boot(disks, append, timeout_s=120, **kw):
        kw.setdefault("stop_on", None if kw.get("input_lines") else REPL_PROMPT)
        paths = [archmedia.ensure(d, "arm64").path for d in disks]
        return qemu.boot(arm64_kernel.vmlinuz, arm64_initrd, disks=paths, append=append, memory_mb=MEMORY_MB,
                         timeout_s=timeout_s, log_path=log_path(request, logs="e2e-arm64"), arch="arm64", **kw)
    return run_boot


def mount_table(r):
    return {m[1]: (m[0], m[2]) for m in r.mounts()}


def assert_live(r):
    assert r.ok, r.output[-4000:]
    facts = r.marker_fields()
    assert facts["rootfs"] == "overlay" and facts["rw"] == "yes", facts
    mounts = mount_table(r)
    assert mounts["/"][1] == "overlay"
    return facts, mounts


def test_the_guest_is_arm64(boot):
    # The board and the kernel really are arm64: the kernel names its machine in the boot log, and the agent
    # ran (its stage lines), so the arm64 /init executed.
    r = boot(["gpt-vfat"], "root=live:LABEL=%s" % media.VFAT_LABEL)
    assert "Machine model: linux,dummy-virt" in r.output, r.output[:3000]
    assert any("mpinit: early:" in line for line in r.lines("mpinit:")), r.output[-3000:]
    assert "console=ttyAMA0" in r.marker_fields().get("cmdline", ""), r.marker_line


def test_live_by_label_with_checksum(boot):
    r = boot(["gpt-vfat"], "root=live:LABEL=%s checksum=y" % media.VFAT_LABEL)
    facts, mounts = assert_live(r)
    assert mounts[contract.MEDIUM_MOUNT] == ("/dev/vda1", "vfat")
    assert mounts[contract.IMAGE_MOUNT][1] == "squashfs"
    assert any("sha256" in line for line in r.lines("mpinit:")), "\n".join(r.lines("mpinit:"))


def test_toram_unmounts_the_medium(boot):
    r = boot(["gpt-vfat"], "root=live:LABEL=%s rd.live.ram=1" % media.VFAT_LABEL)
    facts, mounts = assert_live(r)
    assert contract.MEDIUM_MOUNT not in mounts, "medium still mounted after toram: %s" % sorted(mounts)
    assert [line for line in r.lines("mpinit:") if line.startswith("mpinit: toram:") and "ms)" in line]


def test_iso_by_cdlabel(boot):
    r = boot(["iso"], "root=live:CDLABEL=%s" % media.ISO_LABEL)
    facts, mounts = assert_live(r)
    assert mounts[contract.MEDIUM_MOUNT] == ("/dev/vda", "iso9660")


def test_plain_root_by_uuid(boot):
    r = boot(["ext4-root"], "root=UUID=%s rw" % media.ROOT_UUID)
    assert r.ok, r.output[-4000:]
    facts = r.marker_fields()
    assert facts["rootfs"] == "ext4" and facts["rw"] == "yes", facts
    assert mount_table(r)["/"] == ("/dev/vda", "ext4")


def test_failure_lands_in_the_repl(boot):
    r = boot([], "root=LABEL=NOSUCHROOT rootdelay=1", input_lines=[(REPL_PROMPT, "print('arm64 says', 6 * 7)")],
             stop_on="arm64 says 42")
    assert not r.ok
    text = r.output
    at = text.find("boot failed in stage 'devices'")
    assert at >= 0, text[-4000:]
    assert "LABEL=NOSUCHROOT" in text[at:]
    assert "arm64 says 42" in text[at:], text[at:][-2000:]


# --- the live media through the firmware: AAVMF (UEFI) -> GRUB arm64 -> kernel --------------------------------

@pytest.fixture(scope="session")
def uefi_media(arm64_kernel, arm64_initrd, tmp_path_factory):
    """`mpinit live-image --uefi` and `mpinit live-iso --uefi` for arm64, from the same kernel, initramfs and
    live root as the direct boots."""
    require_tools("grub-mkimage", "mformat")
    work = tmp_path_factory.mktemp("uefi-arm64")
    squash = archmedia.squashfs("arm64")
    disk, iso = work / "live.img", work / "live.iso"
    try:
        liveimage.build_disk_image(arm64_kernel.vmlinuz, arm64_initrd, squash, disk, label="MPA64", uefi=True)
        liveimage.build_iso(arm64_kernel.vmlinuz, arm64_initrd, squash, iso, label="MPA64_ISO", uefi=True)
    except Exception as e:
        from mpinit.runner import ToolError

        if isinstance(e, ToolError):
            pytest.skip("arm64 UEFI media tools missing: %s" % e)
        raise
    return disk, iso


@pytest.mark.parametrize("kind", ["live-image", "live-iso"])
def test_uefi_firmware_boots_the_live_media(request, uefi_media, kind):
    disk, iso = uefi_media
    try:
        argv = qemu.firmware_argv(disks=[disk] if kind == "live-image" else [],
                                  cdrom=iso if kind == "live-iso" else None, uefi=True, memory_mb=MEMORY_MB,
                                  arch="arm64")
    except qemu.ToolError as e:
        pytest.skip(str(e))   # qemu-efi-aarch64 missing
    r = qemu.boot(None, None, argv=argv, timeout_s=240, log_path=log_path(request, logs="e2e-arm64"),
                  stop_on=REPL_PROMPT)
    facts, mounts = assert_live(r)
    spec = "root=live:LABEL=MPA64" if kind == "live-image" else "root=live:CDLABEL=MPA64_ISO"
    assert spec in facts["cmdline"], facts
    device, fstype = mounts[contract.MEDIUM_MOUNT]
    assert (device, fstype) == (("/dev/vda1", "vfat") if kind == "live-image" else ("/dev/sr0", "iso9660"))
