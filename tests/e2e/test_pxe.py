"""The full network boot from the firmware alone (issue 11 part 2): no -kernel, no disk. The machine's firmware
(SeaBIOS running the NIC's iPXE option ROM, or OVMF's PXE client over that ROM's UEFI network driver; Debian's
ipxe-qemu) gets an address and the boot file from QEMU's built-in DHCP server and loads it from QEMU's TFTP
server, which serves the `mpinit netboot-tree` output:

    BIOS:  pxelinux.0 -> ldlinux.c32 -> pxelinux.cfg/default -> vmlinuz + initrd.img (TFTP)
    UEFI:  bootx64.efi (GRUB) -> grub/grub.cfg -> vmlinuz + initrd.img (TFTP)

then the kernel runs the initramfs's /init with `root=live:http://10.0.2.100/live/filesystem.squashfs ip=dhcp`.
The network is `-netdev user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:80-tcp:127.0.0.1:PORT,tftp=TREE,
bootfile=...` (mpinit.qemu.pxe_argv, nothing else), PORT the nginx test server (tests/e2e/webserver.py)
serving the same tree over HTTP.

Two initramfs: a throwaway busybox script that prints its command line and powers off (BIOS only: proves the
firmware, loader and TFTP chain and the config's command line independently of the agent), and the real `mpinit pack
--modules generic-live,generic-net` image, whose agent brings the NIC up with DHCP, fetches the squashfs over
HTTP from nginx, checks it against the digest pinned by `netboot-tree --pin-sha256` and boots the live root.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_tools
from e2e_support import log_path, net_initrd, qemu_kernel  # noqa: F401 (fixtures)
from mpinit import liveroot, media, netboot, qemu
from webserver import web_server  # noqa: F401 (fixture)

MEMORY_MB = 512
URL = "http://10.0.2.100/live/filesystem.squashfs"

BB_INIT = """#!/bin/sh
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
echo "MPINIT-LIVE-OK uptime=$(cut -d' ' -f1 /proc/uptime) rootfs=initramfs rw=yes cmdline=$(cat /proc/cmdline)"
poweroff -f
"""


def _need_pxe(uefi):
    require_tools("qemu-system-x86_64", "grub-mkimage", "nginx")
    if not netboot.PXELINUX_0.is_file():
        pytest.skip("%s missing (Debian package pxelinux)" % netboot.PXELINUX_0)
    if not Path("/usr/lib/ipxe/qemu/pxe-virtio.rom").is_file():
        pytest.skip("QEMU's NIC boot ROMs missing (Debian package ipxe-qemu)")
    if uefi and not Path(qemu.OVMF_CODE).is_file():
        pytest.skip("%s missing (Debian package ovmf)" % qemu.OVMF_CODE)


@pytest.fixture(scope="module")
def live_squashfs(qemu_kernel):  # noqa: F811
    """The e2e live root (liveroot: /sbin/init prints MPINIT-LIVE-OK with its mounts), as a squashfs."""
    return media.squashfs(media.cache_dir(), "root")


@pytest.fixture(scope="module")
def bb_initrd(tmp_path_factory):
    """A busybox initramfs whose /init reports the command line it was booted with and powers off."""
    require_tools("cpio")
    d = tmp_path_factory.mktemp("bbpxe")
    root = d / "root"
    (root / "bin").mkdir(parents=True)
    for sub in ("dev", "proc"):
        (root / sub).mkdir()
    shutil.copy(liveroot.busybox_path(), root / "bin" / "busybox")
    for applet in ("sh", "mount", "cat", "cut", "echo", "poweroff"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "init").write_text(BB_INIT.replace("#!/bin/sh\n", "#!/bin/sh\nexport PATH=/bin\n", 1))
    (root / "init").chmod(0o755)
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    out = d / "initrd.cpio"
    subprocess.run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet", "-O", str(out)], cwd=root,
                   input=("\n".join(names) + "\n").encode(), check=True)
    return out


def _tree(tmp_path, kernel, initrd, squashfs_path, uefi, pin=False):
    """The `mpinit netboot-tree` CLI's output, as a user would make it."""
    out = tmp_path / "tree"
    args = [sys.executable, "-m", "mpinit", "netboot-tree", "-o", str(out), "--kernel", str(kernel),
            "--initrd", str(initrd), "--squashfs", str(squashfs_path), "--append", "console=ttyS0"]
    if pin:
        args.append("--pin-sha256")
    if not uefi:
        args.append("--no-uefi")
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


def _pxe_boot(request, tree, server, uefi, timeout_s=240):
    argv = qemu.pxe_argv(tree, netboot.GRUB_EFI if uefi else "pxelinux.0", server.port, uefi=uefi,
                         memory_mb=MEMORY_MB)
    # stop_on: a failed agent boot ends at its rescue REPL prompt; no need to wait for the deadline.
    return qemu.boot(None, None, argv=argv, timeout_s=timeout_s, stop_on="\n>>> ", log_path=log_path(request))


@pytest.mark.e2e
def test_pxe_chain_runs_the_initramfs_with_the_trees_command_line(request, qemu_kernel, bb_initrd,  # noqa: F811
                                                                    live_squashfs, web_server,  # noqa: F811
                                                                    tmp_path):
    # BIOS only: the agent boots below cover both firmwares; this one keeps the loader chain checked when the
    # agent cannot boot (and costs a few seconds).
    uefi = False
    _need_pxe(uefi)
    tree = _tree(tmp_path, qemu_kernel.vmlinuz, bb_initrd, live_squashfs, uefi)
    server = web_server(tree)
    r = _pxe_boot(request, tree, server, uefi, timeout_s=180)
    assert r.ok, r.output[-4000:]
    cmdline = r.marker_fields()["cmdline"]
    assert ("root=live:%s ip=dhcp console=ttyS0" % URL) in cmdline, cmdline
    if uefi:
        assert "BOOT_IMAGE=/vmlinuz" in cmdline    # GRUB's linux command
    else:
        assert "initrd=/initrd.img" in cmdline     # PXELINUX's
    # PXELINUX's IPAPPEND 2, or grub.cfg's $bootif: the booted NIC's MAC, QEMU's default 52:54:00:12:34:56.
    assert "BOOTIF=01-52-54-00-12-34-56" in cmdline
    assert not r.timed_out and server.log() == ""  # the loaders used TFTP only; nothing fetched over HTTP


@pytest.mark.e2e
@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_pxe_boots_the_agent_to_the_live_root_over_http(request, firmware, qemu_kernel,  # noqa: F811
                                                        net_initrd, live_squashfs, web_server,  # noqa: F811
                                                        tmp_path):
    uefi = firmware == "uefi"
    _need_pxe(uefi)
    tree = _tree(tmp_path, qemu_kernel.vmlinuz, net_initrd, live_squashfs, uefi, pin=True)
    server = web_server(tree)
    r = _pxe_boot(request, tree, server, uefi)
    assert r.ok, "\n".join(r.lines("mpinit:")) + "\n" + r.output[-4000:]
    facts = r.marker_fields()
    assert facts["rootfs"] == "overlay" and facts["rw"] == "yes", facts
    assert "rd.live.sha256=" in facts["cmdline"]
    assert "BOOTIF=01-52-54-00-12-34-56" in facts["cmdline"]   # PXELINUX's IPAPPEND 2 / grub.cfg's $bootif
    assert ("BOOT_IMAGE=/vmlinuz" if uefi else "initrd=/initrd.img") in facts["cmdline"]  # which loader ran
    agent = "\n".join(r.lines("mpinit:"))
    assert "10.0.2.15" in agent, agent   # the address QEMU's DHCP server gave the agent
    assert "GET /live/filesystem.squashfs 200" in server.log(), server.log()
    assert not r.timed_out
