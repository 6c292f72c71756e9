"""The kernel hook's image boots an installed root: `mpinit install-hooks --root SCRATCH`, the Debian cloud kernel's
modules installed in SCRATCH/lib/modules/<version> (hard links into build/kernel), the installed
/etc/kernel/postinst.d/zz-mpinit run as the package manager runs it (<version> <image path>, with
MPINIT_HOOK_ROOT=SCRATCH), and the SCRATCH/boot/initrd.img-<version> it wrote booted in QEMU with
root=UUID=<ext4 partition's UUID> on an MBR disk.

Two installed roots: Debian with systemd as init (mpinit.testing.systemd_root: essential + systemd, made by
mmdebstrap; its mptest.service prints MPTEST-REPORT and the mounts, then `systemctl poweroff`), and the busybox
test root (mpinit.liveroot, whose /sbin/init prints MPINIT-LIVE-OK). The ext4 partition images are made from the
root trees with mkfs.ext4 -d (no mount) and cached under build/e2e/kernel-hooks/.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_tools
from mpinit import kernelhooks, liveroot, media, qemu
from mpinit.paths import build_dir

pytestmark = pytest.mark.e2e

ROOT_UUID = "6d70696e-6974-486f-6f6b-000000000001"   # "mpinit" "Hook"
ROOT_LABEL = "MPHOOKROOT"


@pytest.fixture(scope="module")
def hook_initrd(runtime_binary, debian_kernel, tmp_path_factory):
    """The image the installed postinst hook builds in a scratch root for the Debian cloud kernel."""
    require_tools("qemu-system-x86_64", "mkfs.ext4", "sfdisk", "unsquashfs", "busybox")
    mpinit = Path(sys.executable).parent / "mpinit"
    if not mpinit.exists():
        pytest.skip("no mpinit console script beside %s" % sys.executable)
    root = tmp_path_factory.mktemp("hooks") / "scratch"
    root.mkdir()
    subprocess.run([str(mpinit), "install-hooks", "--root", str(root)], check=True)
    kver = debian_kernel.kver
    shutil.copytree(debian_kernel.modules_dir, root / "lib" / "modules" / kver, copy_function=os.link)
    (root / "boot").mkdir()
    env = dict(os.environ, MPINIT_HOOK_ROOT=str(root), MPINIT_RUNTIME=str(runtime_binary))
    r = subprocess.run([str(root / kernelhooks.POSTINST), kver, "/boot/vmlinuz-" + kver], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    img = root / "boot" / ("initrd.img-" + kver)
    assert img.is_file()
    return debian_kernel.vmlinuz, img


def _cached_disk(name, key, make_tree):
    """build/e2e/kernel-hooks/<name>-<key>.img: an MBR disk, one ext4 partition (ROOT_UUID) of make_tree()'s tree."""
    d = build_dir() / "e2e" / "kernel-hooks"
    d.mkdir(parents=True, exist_ok=True)
    disk = d / ("%s-%s.img" % (name, key))
    if disk.exists():
        return disk
    work = d / (".%s.work" % name)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        tree = make_tree(work / "tree")
        size_mib = max(64, _du(tree) * 3 // 2 // media.MIB + 64)
        part = work / "part.img"
        media._ext4_image(part, tree, size_mib, ROOT_LABEL, ROOT_UUID)
        tmp = work / "disk.img"
        media._mbr_disk(tmp, part)
        os.replace(tmp, disk)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return disk


def _du(path):
    return sum(os.lstat(os.path.join(dp, f)).st_size for dp, _, fs in os.walk(path) for f in fs)


def _busybox_disk():
    key = hashlib.sha256((liveroot.inputs_digest() + ROOT_UUID).encode()).hexdigest()[:16]

    def tree(t):
        liveroot.build_tree(t)
        return t

    return _cached_disk("busybox", key, tree)


def _systemd_disk():
    from mpinit.testing import systemd_root

    try:
        squashfs = systemd_root.ensure()
    except (systemd_root.RootError, systemd_root.ToolError) as e:
        pytest.skip("no systemd root here: %s" % e)
    st = squashfs.stat()
    key = hashlib.sha256(("%s %d %d %s" % (squashfs, st.st_size, st.st_mtime_ns, ROOT_UUID)).encode()).hexdigest()[:16]

    def tree(t):
        subprocess.run(["unsquashfs", "-q", "-n", "-d", str(t), str(squashfs)], check=True)
        return t

    return _cached_disk("systemd", key, tree)


def test_hook_image_boots_busybox_root_by_uuid(hook_initrd, tmp_path):
    kernel, initrd = hook_initrd
    disk = _busybox_disk()
    r = qemu.boot(kernel, initrd, disks=[disk], append="root=UUID=%s rw" % ROOT_UUID, timeout_s=240,
                  log_path=tmp_path / "console.log")
    assert r.ok, r.output[-4000:]
    facts = r.marker_fields()
    assert facts["rootfs"] == "ext4" and facts["rw"] == "yes", r.marker_line
    mounts = r.mounts()
    assert ["/dev/vda1", "/", "ext4"] in [m[:3] for m in mounts], mounts


def test_hook_image_boots_debian_systemd_root_by_uuid(hook_initrd, tmp_path):
    """A real installed Debian with systemd as PID 1 after the handoff: its own mptest.service reports."""
    from mpinit.testing import systemd_root

    kernel, initrd = hook_initrd
    disk = _systemd_disk()
    r = qemu.boot(kernel, initrd, disks=[disk], append="root=UUID=%s rw" % ROOT_UUID, memory_mb=768,
                  timeout_s=420, marker=systemd_root.MARKER, log_path=tmp_path / "console.log")
    assert r.ok, r.output[-5000:]
    mounts = r.mounts()
    assert any(m[:3] == ["/dev/vda1", "/", "ext4"] and m[3].startswith("rw") for m in mounts), mounts
    assert "systemd[1]" in r.output or "Welcome to" in r.output, r.output[-3000:]
    assert not r.timed_out
