"""Persistent live systems on the real kernel (issue 10): the Debian kernel, an initramfs from `mpinit pack` with
e2fsck packed, a live stick made by `mpinit live-image --persistence` (or with a file from `mpinit
persistence-file` on its FAT), booted twice or more from a WRITABLE copy of the disk under tmp_path (QEMU without
snapshot=on).

The live root's init (a busybox script, INIT below) reports whether the mark a previous session wrote is there,
writes a new one, syncs, remounts the root and the persistence filesystems read-only (what systemd's shutdown
does for the filesystems it cannot unmount) and powers off. After the boots, `e2fsck -fn` runs on the persistence
filesystem's bytes copied out of the disk image: a file, never a loop device.
"""

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

from e2e_support import log_path, qemu_kernel  # noqa: F401 (fixture)
from mpinit import fat, liveimage, liveroot, persistence, qemu

MIB = 1024 * 1024
LABEL = "MPLIVE"
LIVE = "root=live:LABEL=%s rootdelay=5" % LABEL   # a missing volume costs 5 s, not 30
MARKER = "PERSIST-REPORT"
STICK_MB = 32

INIT = r"""#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
[ -e /proc/self ] || mount -t proc proc /proc
[ -d /sys/kernel ] || mount -t sysfs sysfs /sys
[ -c /dev/console ] || mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
if [ -f /etc/persist-mark ]; then state=found; old=$(cat /etc/persist-mark); else state=new; old=-; fi
new=$(cat /proc/sys/kernel/random/uuid)
echo "$new" > /etc/persist-mark
sync
echo "PERSIST-REPORT state=$state old=$old new=$new"
echo "MPINIT-MOUNTS-BEGIN"
cat /proc/mounts
echo "MPINIT-MOUNTS-END"
mount -o remount,ro / || echo "PERSIST-SHUTDOWN remount ro / failed"
for m in /run/mpinit/persist /run/mpinit/persist-host /run/initramfs/live; do
  if grep -q " $m " /proc/mounts; then
    mount -o remount,ro "$m" || echo "PERSIST-SHUTDOWN remount ro $m failed"
  fi
done
sync
echo "PERSIST-SHUTDOWN done"
poweroff -f
"""


@pytest.fixture(scope="module")
def persist_initrd(qemu_kernel, runtime_binary, tmp_path_factory):
    """`mpinit pack --modules generic-live --binary e2fsck` for the Debian kernel."""
    if importlib.util.find_spec("mpinit_agent.persist") is None:
        pytest.skip("agent without persist.py")
    e2fsck = shutil.which("e2fsck") or shutil.which("e2fsck", path="/usr/sbin:/sbin")
    if not e2fsck:
        pytest.skip("e2fsck not installed")
    out = tmp_path_factory.mktemp("persist-initrd") / "initrd.img"
    env = dict(os.environ, MPINIT_RUNTIME=str(runtime_binary))
    proc = subprocess.run([sys.executable, "-m", "mpinit", "pack", "-o", str(out), "--init", str(runtime_binary),
                           "--kernel-modules", str(qemu_kernel.modules_dir), "--modules", "generic-live",
                           "--binary", e2fsck], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, "mpinit pack failed:\n%s\n%s" % (proc.stdout[-3000:], proc.stderr[-3000:])
    return out


@pytest.fixture(scope="module")
def squashfs(tmp_path_factory):
    d = tmp_path_factory.mktemp("persist-root")
    tree = liveroot.build_tree(d / "root")
    (tree / "sbin" / "init").write_text(INIT)
    (tree / "sbin" / "init").chmod(0o755)
    return liveroot.make_squashfs(tree, d / "root.squashfs")


@pytest.fixture(scope="module")
def sticks(qemu_kernel, persist_initrd, squashfs, tmp_path_factory):
    """sticks(label or None) -> a live-image template (FAT medium + persistence partition labelled label)."""
    d = tmp_path_factory.mktemp("persist-sticks")
    made = {}

    def get(label):
        if label not in made:
            out = d / ("stick-%s.img" % (label or "plain"))
            spec = persistence.Spec(STICK_MB * MIB, label) if label else None
            liveimage.build_disk_image(qemu_kernel.vmlinuz, persist_initrd, squashfs, out, label=LABEL,
                                       persistence=spec)
            made[label] = out
        return made[label]
    return get


@pytest.fixture
def boot(request, qemu_kernel, persist_initrd):
    count = [0]

    def run_boot(disk, append, busy_ok=()):
        count[0] += 1
        drive = "file=%s,if=virtio,format=raw" % str(disk).replace(",", ",,")   # writable: no snapshot=on
        r = qemu.boot(qemu_kernel.vmlinuz, persist_initrd, append=append, memory_mb=256, timeout_s=150,
                      marker=MARKER, extra_args=["-drive", drive], stop_on=">>> ",
                      log_path=log_path(request, "-%d" % count[0]))
        assert r.ok, r.output[-4000:]
        fields = dict(w.split("=", 1) for w in r.marker_line.split()[1:])
        assert "PERSIST-SHUTDOWN done" in r.output, r.output[-3000:]
        failed = [line for line in r.output.splitlines() if "PERSIST-SHUTDOWN remount" in line
                  and not any(b in line for b in busy_ok)]
        assert not failed, r.output[-3000:]
        return r, fields
    return run_boot


def copy(template, tmp_path):
    dst = tmp_path / "disk.img"
    shutil.copyfile(template, dst)
    return dst


def partition2(disk, tmp_path):
    """The second partition's bytes as a file (sfdisk reads the table; no loop device)."""
    import json

    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    p = table["partitions"][1]
    out = tmp_path / "part2.img"
    with open(disk, "rb") as f, open(out, "wb") as g:
        f.seek(p["start"] * 512)
        g.write(f.read(p["size"] * 512))
    return out


def fsck_clean(image):
    r = subprocess.run([shutil.which("e2fsck") or "/sbin/e2fsck", "-fn", str(image)], capture_output=True,
                       text=True)
    assert r.returncode == 0, "e2fsck -fn %s: exit %d\n%s%s" % (image, r.returncode, r.stdout, r.stderr)


def mounts(r):
    return {m[1]: (m[0], m[2], m[3]) for m in r.mounts()}


def persistence_lines(r):
    return "\n".join(r.lines("mpinit: persistence"))


# ---- one test per convention: boot, write, power off, boot again, find it --------------------------------------

@pytest.mark.e2e
@pytest.mark.parametrize("family, label, params, upper", [
    ("live-boot", "persistence", "persistence", "/run/mpinit/persist/rw"),
    ("casper", "writable", "boot=casper persistent", "/run/mpinit/persist/upper"),
    ("archiso", "persistence", "cow_label=persistence", "/run/mpinit/persist/persistent_MPLIVE/x86_64/upperdir"),
    ("dracut", "persistence", "rd.overlay=LABEL=persistence:/LiveOS/overlay", "/run/mpinit/persist/LiveOS/overlay"),
])
def test_changes_survive_a_reboot(boot, sticks, tmp_path, family, label, params, upper):
    disk = copy(sticks(label), tmp_path)
    r1, f1 = boot(disk, "%s %s" % (LIVE, params))
    assert f1["state"] == "new", persistence_lines(r1)
    m = mounts(r1)
    assert m["/run/mpinit/persist"][:2] == ("/dev/vda2", "ext4"), m
    assert "upperdir=%s" % upper in m["/"][2], m["/"]
    r2, f2 = boot(disk, "%s %s" % (LIVE, params))
    assert f2["state"] == "found" and f2["old"] == f1["new"], (f1, f2, persistence_lines(r2))
    assert "e2fsck" in r2.output or "fsck exit 0" in persistence_lines(r2)
    fsck_clean(partition2(disk, tmp_path))


@pytest.mark.e2e
def test_persistence_file_on_the_fat_medium(boot, sticks, tmp_path):
    disk = copy(sticks(None), tmp_path)
    image = tmp_path / "persistence"
    persistence.make_image(image, 16 * MIB)
    fat.copy_in(disk, liveimage.PART_START, image, "/persistence")
    # The FAT stays writable to the end: the loop device holds the file open for writing (as under systemd, which
    # unmounts the ext4 inside first); sync has written everything, and the ext4 inside is checked below.
    busy = ("/run/initramfs/live",)
    r1, f1 = boot(disk, "%s persistence" % LIVE, busy)
    assert f1["state"] == "new", persistence_lines(r1)
    m = mounts(r1)
    assert m["/run/initramfs/live"][1] == "vfat" and m["/run/initramfs/live"][2].startswith("rw")
    assert m["/run/mpinit/persist"][0].startswith("/dev/loop") and m["/run/mpinit/persist"][1] == "ext4"
    r2, f2 = boot(disk, "%s persistence" % LIVE, busy)
    assert f2["state"] == "found" and f2["old"] == f1["new"], persistence_lines(r2)
    out = tmp_path / "back"
    out.write_bytes(fat.read_file(disk, liveimage.PART_START, "/persistence"))
    fsck_clean(out)


@pytest.mark.e2e
def test_readonly_then_reset(boot, sticks, tmp_path):
    disk = copy(sticks("persistence"), tmp_path)
    rw = "%s rd.live.overlay=LABEL=persistence:/ov" % LIVE
    _, f1 = boot(disk, rw)
    r2, f2 = boot(disk, rw + " rd.overlay.readonly")           # sees the mark, its own change stays in RAM
    assert f2["state"] == "found" and f2["old"] == f1["new"]
    m = mounts(r2)
    assert "lowerdir=/run/mpinit/persist/ov:" in m["/"][2] and "upperdir=/run/mpinit/cow/upper" in m["/"][2]
    assert m["/run/mpinit/persist"][2].startswith("ro"), m["/run/mpinit/persist"]
    _, f3 = boot(disk, rw)
    assert f3["state"] == "found" and f3["old"] == f1["new"]    # not f2's: the read-only session kept nothing
    r4, f4 = boot(disk, rw + " rd.overlay.reset")
    assert f4["state"] == "new", persistence_lines(r4)
    fsck_clean(partition2(disk, tmp_path))


@pytest.mark.e2e
def test_filesystem_with_errors_is_not_used(boot, sticks, tmp_path):
    disk = copy(sticks("persistence"), tmp_path)
    part = partition2(disk, tmp_path)
    # lost+found made a regular file in a filesystem marked unclean: e2fsck -p stops with exit 4 ("UNEXPECTED
    # INCONSISTENCY; RUN fsck MANUALLY").
    debugfs = shutil.which("debugfs") or "/sbin/debugfs"
    for cmd in ("sif <11> mode 0100644", "ssv state 0"):
        subprocess.run([debugfs, "-w", "-R", cmd, str(part)], check=True, capture_output=True)
    table_start = subprocess.run(["sfdisk", "-d", str(disk)], capture_output=True, text=True, check=True).stdout
    start = int([line for line in table_start.splitlines() if line.startswith(str(disk) + "2")][0]
                .split("start=")[1].split(",")[0]) * 512
    with open(disk, "r+b") as f:
        f.seek(start)
        f.write(part.read_bytes())
    r, fields = boot(disk, "%s persistence" % LIVE)
    assert fields["state"] == "new"
    assert "NOT USED" in r.output and "errors left uncorrected" in r.output, persistence_lines(r)
    assert "LOST at power-off" in r.output
    m = mounts(r)
    assert "/run/mpinit/persist" not in m and "upperdir=/run/mpinit/cow/upper" in m["/"][2]


@pytest.mark.e2e
def test_missing_volume_boots_without_it(boot, sticks, tmp_path):
    disk = copy(sticks(None), tmp_path)
    r, fields = boot(disk, "%s persistence" % LIVE)
    assert fields["state"] == "new"
    assert "did not find live-boot persistence" in r.output
