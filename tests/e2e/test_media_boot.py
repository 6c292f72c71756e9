"""Our test media boot with the real kernel through a plain busybox-script initramfs (tests/e2e/bbinit.py):
this proves the media, the live root's report and the QEMU runner independently of the agent."""

import pytest

import bbinit
from e2e_support import medium, qemu_kernel  # noqa: F401 (fixtures)
from mpinit import qemu

SQ = "/live/filesystem.squashfs:squashfs"
CHAINS = {
    "gpt-vfat": "/dev/vda1:vfat," + SQ,
    "mbr-ext4": "/dev/vda1:ext4," + SQ,
    "iso": "/dev/vda:iso9660," + SQ,
    "squashfs-disk": "/dev/vda:squashfs",
    "iso-in-ext4": "/dev/vda1:ext4,/images/mplive.iso:iso9660," + SQ,
}


@pytest.fixture(scope="module")
def bb_initrd(qemu_kernel, tmp_path_factory):
    return bbinit.make_initrd(tmp_path_factory.mktemp("bbinit") / "initrd.cpio", qemu_kernel.modules_dir)


@pytest.mark.e2e
@pytest.mark.parametrize("name", sorted(CHAINS))
def test_live_medium_boots_to_overlay_root(name, qemu_kernel, bb_initrd, medium):
    m = medium(name)
    r = qemu.boot(qemu_kernel.vmlinuz, bb_initrd, disks=[m.path], append="bb.chain=" + CHAINS[name],
                  memory_mb=256, timeout_s=120)
    assert r.ok, r.output[-3000:]
    facts = r.marker_fields()
    assert facts["rootfs"] == "overlay" and facts["rw"] == "yes"
    assert float(facts["uptime"]) > 0
    assert "bb.chain=" + CHAINS[name] in facts["cmdline"]
    mounts = {m_[1]: m_[2] for m_ in r.mounts()}
    assert mounts["/"] == "overlay" and mounts["/proc"] == "proc"
    assert not r.timed_out  # the live root powered off by itself


@pytest.mark.e2e
def test_plain_ext4_root_boots_read_write(qemu_kernel, bb_initrd, medium):
    m = medium("ext4-root")
    r = qemu.boot(qemu_kernel.vmlinuz, bb_initrd, disks=[m.path], append="bb.chain=/dev/vda:ext4 bb.overlay=0",
                  memory_mb=256, timeout_s=120)
    assert r.ok, r.output[-3000:]
    facts = r.marker_fields()
    assert facts["rootfs"] == "ext4" and facts["rw"] == "yes"


@pytest.mark.e2e
def test_corrupt_squashfs_does_not_mount(qemu_kernel, bb_initrd, medium):
    m = medium("gpt-vfat-corrupt")
    r = qemu.boot(qemu_kernel.vmlinuz, bb_initrd, disks=[m.path], append="bb.chain=/dev/vda1:vfat," + SQ,
                  memory_mb=256, timeout_s=120)
    assert not r.ok
    assert "bbinit: mounted /dev/vda1 (vfat)" in r.output
    assert "bbinit: FAILED mount /m/0/live/filesystem.squashfs (squashfs)" in r.output
