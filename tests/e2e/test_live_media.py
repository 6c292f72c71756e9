"""The live media boot from the firmware alone, no -kernel: SeaBIOS -> SYSLINUX (disk) or ISOLINUX (CD, hybrid
disk), OVMF -> GRUB EFI (--uefi disk); then the kernel, an initramfs, and the live root's /sbin/init report.

Two initramfs: a throwaway busybox script made here (proves the media and their boot loaders independently of
the agent: it finds the medium by the label in root=live:..., checks the .sha256, loop-mounts
/live/filesystem.squashfs under a tmpfs overlay and switch_roots), and the real `mpinit pack` image with the
agent, which skips with the reason until the runtime and `mpinit.cmd_pack` exist.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bbinit
from conftest import require_tools
from mpinit import liveimage, liveroot, qemu, squash

MODULES = ["virtio_pci", "virtio_blk", "ata_piix", "sr_mod", "loop", "squashfs", "overlay", "vfat", "nls_cp437",
           "nls_ascii", "isofs"]

INIT = r"""#!/bin/sh
export PATH=/bin
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
fail() { echo "LIVETEST-FAIL $*"; ls /dev; poweroff -f; }
echo "LIVETEST-INITRD cmdline=$(cat /proc/cmdline)"
for m in $(cat /modules.order); do insmod /mods/$m.ko 2>/dev/null; done
spec=
for w in $(cat /proc/cmdline); do case "$w" in root=live:*) spec="${w#root=live:}";; esac; done
label="${spec#*=}"
[ -n "$label" ] || fail "no root=live:LABEL=/CDLABEL= on the command line"
i=0; dev=
while [ $i -lt 150 ]; do dev=$(findfs "LABEL=$label" 2>/dev/null) && break; sleep 0.1; i=$((i+1)); done
[ -n "$dev" ] || fail "no device with label $label"
mount -o ro "$dev" /m || fail "mount $dev"
echo "LIVETEST-MEDIUM $dev"
(cd /m/live && sha256sum -c filesystem.squashfs.sha256) || fail "checksum"
mount -t squashfs -o ro,loop /m/live/filesystem.squashfs /sq || fail "squashfs"
mount -t tmpfs tmpfs /cow && mkdir /cow/u /cow/w
mount -t overlay overlay -o lowerdir=/sq,upperdir=/cow/u,workdir=/cow/w /newroot || fail "overlay"
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /sbin/init
"""

LABEL = "MPTEST_LIVE"


def _make_initrd(out, modules_dir):
    root = out.parent / (out.name + ".d")
    for d in ("bin", "dev", "proc", "sys", "mods", "newroot", "cow", "m", "sq"):
        (root / d).mkdir(parents=True)
    shutil.copy(liveroot.busybox_path(), root / "bin" / "busybox")
    applets = subprocess.run([str(root / "bin" / "busybox"), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        if a != "busybox":
            (root / "bin" / a).symlink_to("busybox")
    order = bbinit.module_order(modules_dir, MODULES)
    for name, path in order:
        shutil.copy(path, root / "mods" / (name + ".ko"))
    (root / "modules.order").write_text("\n".join(n for n, _ in order) + "\n")
    (root / "init").write_text(INIT)
    (root / "init").chmod(0o755)
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    subprocess.run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet", "-O", str(out)], cwd=root,
                   input=("\n".join(names) + "\n").encode(), check=True)
    shutil.rmtree(root)
    return out


@pytest.fixture(scope="module")
def live_parts(debian_kernel, tmp_path_factory):
    """(kernel, throwaway initrd, squashfs of the test live root made by `mpinit squash`)."""
    require_tools("qemu-system-x86_64", "cpio", "busybox", "mksquashfs", "mformat", "mcopy", "syslinux",
                  "xorriso", "modinfo")
    d = tmp_path_factory.mktemp("live")
    liveroot.build_tree(d / "root")
    squash.build(d / "root", d / "filesystem.squashfs", all_root=True)
    initrd = _make_initrd(d / "initrd.cpio", debian_kernel.modules_dir)
    return debian_kernel.vmlinuz, initrd, d / "filesystem.squashfs"


def _check_live_root(r, spec):
    assert r.ok, r.output[-4000:]
    assert "LIVETEST-FAIL" not in r.output
    facts = r.marker_fields()
    assert facts["rootfs"] == "overlay" and facts["rw"] == "yes"
    assert ("root=live:%s" % spec) in facts["cmdline"]
    assert not r.timed_out  # the live root powered off by itself


def test_firmware_argv(tmp_path):
    """The command line the firmware boots use: no -kernel; OVMF's code read-only, its variables not written."""
    require_tools("qemu-system-x86_64")
    img = tmp_path / "a,b.img"
    img.write_bytes(b"")
    bios = qemu.firmware_argv(disks=[img])
    assert "-kernel" not in bios and "-append" not in bios and "if=pflash" not in " ".join(bios)
    assert "file=%s,if=virtio,format=raw,snapshot=on" % str(img).replace(",", ",,") in bios
    cd = qemu.firmware_argv(cdrom=img)
    assert cd[cd.index("-boot") + 1] == "order=dc"
    if Path(qemu.OVMF_CODE).is_file():
        uefi = " ".join(qemu.firmware_argv(disks=[img], uefi=True))
        assert "if=pflash,format=raw,unit=0,readonly=on,file=%s" % qemu.OVMF_CODE in uefi
        assert "if=pflash,format=raw,unit=1,snapshot=on,file=%s" % qemu.OVMF_VARS in uefi
    from mpinit.runner import ToolError

    with pytest.raises(ToolError, match="nope.img is not a file"):
        qemu.firmware_argv(disks=[tmp_path / "nope.img"])


@pytest.mark.e2e
def test_disk_image_boots_with_bios_syslinux(live_parts, tmp_path):
    kernel, initrd, sq = live_parts
    img = tmp_path / "live.img"
    liveimage.build_disk_image(kernel, initrd, sq, img, label=LABEL, append="console=ttyS0")
    r = qemu.boot(None, None, argv=qemu.firmware_argv(disks=[img], memory_mb=384), timeout_s=240)
    _check_live_root(r, "LABEL=" + LABEL)
    assert "LIVETEST-MEDIUM /dev/vda1" in r.output  # found by its FAT label, on the partition


@pytest.mark.e2e
def test_iso_boots_as_cdrom(live_parts, tmp_path):
    require_tools("xorriso")
    kernel, initrd, sq = live_parts
    iso = tmp_path / "live.iso"
    liveimage.build_iso(kernel, initrd, sq, iso, label=LABEL, append="console=ttyS0")
    r = qemu.boot(None, None, argv=qemu.firmware_argv(cdrom=iso, memory_mb=384), timeout_s=240)
    _check_live_root(r, "CDLABEL=" + LABEL)
    assert "LIVETEST-MEDIUM /dev/sr0" in r.output


@pytest.mark.e2e
def test_iso_boots_as_disk(live_parts, tmp_path):
    kernel, initrd, sq = live_parts
    iso = tmp_path / "live.iso"
    liveimage.build_iso(kernel, initrd, sq, iso, label=LABEL, append="console=ttyS0")
    r = qemu.boot(None, None, argv=qemu.firmware_argv(disks=[iso], memory_mb=384), timeout_s=240)
    _check_live_root(r, "CDLABEL=" + LABEL)
    assert "LIVETEST-MEDIUM /dev/vda" in r.output


@pytest.fixture(scope="module")
def uefi_iso(live_parts, tmp_path_factory):
    """`mpinit live-iso --uefi` of the throwaway initrd: ISOLINUX + an El Torito EFI image with GRUB."""
    _need_uefi()
    kernel, initrd, sq = live_parts
    iso = tmp_path_factory.mktemp("uefi-iso") / "live.iso"
    liveimage.build_iso(kernel, initrd, sq, iso, label=LABEL, append="console=ttyS0", uefi=True)
    return iso


@pytest.mark.e2e
@pytest.mark.parametrize("firmware", ["bios", "uefi"])
@pytest.mark.parametrize("how", ["cdrom", "disk"])
def test_uefi_iso_boots_every_way(uefi_iso, firmware, how):
    where = dict(cdrom=uefi_iso) if how == "cdrom" else dict(disks=[uefi_iso])
    argv = qemu.firmware_argv(uefi=firmware == "uefi", memory_mb=512, **where)
    r = qemu.boot(None, None, argv=argv, timeout_s=300)
    _check_live_root(r, "CDLABEL=" + LABEL)
    assert ("LIVETEST-MEDIUM /dev/sr0" if how == "cdrom" else "LIVETEST-MEDIUM /dev/vda") in r.output


def _need_uefi():
    if not Path(qemu.OVMF_CODE).is_file():
        pytest.skip("%s missing (Debian package ovmf)" % qemu.OVMF_CODE)
    if not liveimage.GRUB_EFI_DIR.is_dir():
        pytest.skip("%s missing (Debian package grub-efi-amd64-bin)" % liveimage.GRUB_EFI_DIR)


@pytest.mark.e2e
def test_uefi_disk_image_boots_under_ovmf(live_parts, tmp_path):
    _need_uefi()
    kernel, initrd, sq = live_parts
    img = tmp_path / "live.img"
    liveimage.build_disk_image(kernel, initrd, sq, img, label=LABEL, append="console=ttyS0", uefi=True)
    r = qemu.boot(None, None, argv=qemu.firmware_argv(disks=[img], uefi=True, memory_mb=512), timeout_s=300)
    _check_live_root(r, "LABEL=" + LABEL)
    assert "LIVETEST-MEDIUM /dev/vda1" in r.output


@pytest.fixture(scope="module")
def agent_initrd(runtime_binary, debian_kernel, tmp_path_factory):
    """`mpinit pack --modules generic-live` with the real agent (skips until the agent is built)."""
    for mod in ("mpinit.cmd_pack", "mpinit_agent.main"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip("agent not built: %s is missing" % mod)
    work = tmp_path_factory.mktemp("agent")
    # The runtime is a plain MicroPython under any name not ending in "init": check that the agent is frozen in.
    probe = work / "micropython"
    probe.symlink_to(Path(runtime_binary).resolve())
    check = subprocess.run([str(probe), "-c", "import mpinit_agent.main"], capture_output=True, text=True)
    if check.returncode != 0:
        pytest.skip("agent not built into %s: %s" % (runtime_binary, (check.stdout + check.stderr).strip()[-300:]))
    initrd = work / "mpinit.img"
    env = dict(os.environ, MPINIT_RUNTIME=str(runtime_binary))
    proc = subprocess.run([sys.executable, "-m", "mpinit", "pack", "-o", str(initrd), "--kernel-modules",
                           str(debian_kernel.modules_dir), "--modules", "generic-live"],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, "mpinit pack failed:\n%s\n%s" % (proc.stdout[-3000:], proc.stderr[-3000:])
    return initrd


@pytest.mark.e2e
@pytest.mark.parametrize("media", ["disk-image", "iso-cdrom", "uefi-iso-cdrom"])
def test_media_boot_the_agent(media, live_parts, agent_initrd, tmp_path):
    """The real thing: SYSLINUX/ISOLINUX -> `mpinit pack` initramfs -> the agent -> the live root."""
    kernel, _, sq = live_parts
    append = "console=ttyS0"
    if media == "disk-image":
        img = tmp_path / "live.img"
        liveimage.build_disk_image(kernel, agent_initrd, sq, img, label=LABEL, append=append)
        argv, spec = qemu.firmware_argv(disks=[img], memory_mb=512), "LABEL=" + LABEL
    else:
        uefi = media.startswith("uefi")
        if uefi:
            _need_uefi()
        iso = tmp_path / "live.iso"
        liveimage.build_iso(kernel, agent_initrd, sq, iso, label=LABEL, append=append, uefi=uefi)
        argv, spec = qemu.firmware_argv(cdrom=iso, uefi=uefi, memory_mb=512), "CDLABEL=" + LABEL
    # stop_on: a failed boot ends at the agent's rescue REPL prompt; no need to wait for the deadline.
    r = qemu.boot(None, None, argv=argv, timeout_s=300, stop_on="\n>>> ", log_path=tmp_path / "console.log")
    _check_live_root(r, spec)
    assert [line for line in r.lines() if "medium:" in line], r.output[-3000:]  # the agent did the boot
