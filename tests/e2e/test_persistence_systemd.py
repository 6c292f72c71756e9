"""Persistence with a REAL systemd live root, shut down the normal way (issue 10, item 3): the persistence
filesystem must be clean after systemd's `poweroff`, checked on the host with `e2fsck -fn` and `dumpe2fs -h`.

The root: Debian (essential + systemd, systemd-sysv, udev) made by mmdebstrap and cached
(mpinit.testing.systemd_root), squashed by `mpinit squash`; its mptest.service prints `MPTEST-REPORT count=<n>`
from /var/lib/mptest/count, increments it, syncs and runs `systemctl poweroff`. The stick: `mpinit live-image
--persistence 32M` (live-boot convention: label `persistence`, persistence.conf `/ union`), booted from a
WRITABLE copy under tmp_path with `persistence` on the command line, twice: count 0, then 1. systemd's shutdown
cannot unmount the overlay on / and so not the ext4 holding its upper layer; the agent leaves its exitrd at
/run/initramfs/shutdown, which systemd-shutdown runs at the very end (agent/mpinit_agent/shutdown.py) and which
unmounts the old root, the persistence filesystem with it. A third boot deletes the exitrd first
(`mptest.noexitrd`): the counter-proof that systemd alone leaves the filesystem not clean.

The persistence partition's bytes are copied out of the disk image into a file for e2fsck/dumpe2fs: no loop
device. Consoles are kept in build/e2e/logs/.
"""

import shutil
import subprocess
import sys

import pytest

from e2e_support import qemu_kernel  # noqa: F401 (fixture)
from mpinit import qemu
from mpinit.paths import build_dir
from test_persistence import partition2, persist_initrd  # noqa: F401 (fixture)

LABEL = "MPLIVE"
APPEND = "root=live:LABEL=%s rootdelay=10 persistence" % LABEL
EXITRD_LINE = "mpinit: shutdown: poweroff: unmounted"


@pytest.fixture(scope="module")
def systemd_squashfs():
    from mpinit.runner import ToolError
    from mpinit.testing import systemd_root

    if not shutil.which("mmdebstrap"):
        pytest.skip("mmdebstrap not installed (buildsys/setup.py PACKAGES)")
    try:
        return systemd_root.ensure()
    except systemd_root.RootError as e:
        pytest.skip(str(e))
    except ToolError as e:
        pytest.fail("building the systemd root failed: %s" % e)


def live_image(qemu_kernel, initrd, squashfs, out, *extra):
    subprocess.run([sys.executable, "-m", "mpinit", "live-image", "--kernel", str(qemu_kernel.vmlinuz),
                    "--initrd", str(initrd), "--squashfs", str(squashfs), "-o", str(out), "--label", LABEL]
                   + list(extra), check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def systemd_stick(qemu_kernel, persist_initrd, systemd_squashfs, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("systemd-stick") / "stick.img"
    return live_image(qemu_kernel, persist_initrd, systemd_squashfs, out, "--persistence", "32M")


def boot(kernel, initrd, disk, name, append=APPEND):
    logs = build_dir() / "e2e" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    drive = "file=%s,if=virtio,format=raw" % str(disk).replace(",", ",,")   # writable: no snapshot=on
    r = qemu.boot(kernel, initrd, append=append, memory_mb=512, timeout_s=240, marker="MPTEST-REPORT",
                  extra_args=["-drive", drive], log_path=logs / ("persistence-systemd-%s.log" % name))
    assert r.ok, r.output[-5000:]
    assert not r.timed_out, "no power-off within the deadline:\n" + r.output[-5000:]
    assert "reboot: Power down" in r.output, r.output[-3000:]
    return r


def superblock(part):
    """dumpe2fs -h's "Filesystem state:" and "Filesystem features:" (a list). A journalled ext4 keeps the state
    "clean" on disk while it is mounted (ext4_setup_super() clears EXT4_VALID_FS only without a journal): what
    says it was not unmounted is the journal's `needs_recovery` feature (EXT4_FEATURE_INCOMPAT_RECOVER)."""
    out = subprocess.run([shutil.which("dumpe2fs") or "/sbin/dumpe2fs", "-h", str(part)], capture_output=True,
                         text=True, check=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return fields["Filesystem state"].strip(), fields["Filesystem features"].split()


def fsck(part):
    r = subprocess.run([shutil.which("e2fsck") or "/sbin/e2fsck", "-fn", str(part)], capture_output=True,
                       text=True)
    return r.returncode, r.stdout + r.stderr


def partition(disk, index, out):
    """Partition `index` (1-based) of the disk image copied into the file `out` (sfdisk reads the table)."""
    import json

    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    p = table["partitions"][index - 1]
    with open(disk, "rb") as f, open(out, "wb") as g:
        f.seek(p["start"] * 512)
        g.write(f.read(p["size"] * 512))
    return out


def count(r):
    return int(r.marker_line.split("count=", 1)[1].split()[0])


@pytest.mark.e2e
def test_systemd_poweroff_leaves_the_persistence_filesystem_clean(qemu_kernel, persist_initrd,  # noqa: F811
                                                                   systemd_stick, tmp_path):
    disk = tmp_path / "disk.img"
    shutil.copyfile(systemd_stick, disk)
    for n in (0, 1):
        r = boot(qemu_kernel.vmlinuz, persist_initrd, disk, "boot%d" % (n + 1))
        assert count(r) == n, r.marker_line
        mounts = {m[1]: m for m in r.mounts()}
        assert mounts["/run/mpinit/persist"][:3] == ["/dev/vda2", "/run/mpinit/persist", "ext4"], mounts
        assert "upperdir=/run/mpinit/persist/rw" in mounts["/"][3], mounts["/"]
        assert "systemd" in r.output and "MPTEST-POWEROFF" in r.output
        # systemd-shutdown handed over to the exitrd, which unmounted everything below /oldroot: the overlay, with
        # it the persistence filesystem, then the medium
        assert EXITRD_LINE in r.output and "none left" in r.output, r.output[-4000:]
        assert "EXT4-fs (vda2): unmounting filesystem" in r.output
        part = partition2(disk, tmp_path)
        code, text = fsck(part)
        assert code == 0, "e2fsck -fn after boot %d: exit %d\n%s" % (n + 1, code, text)
        state, features = superblock(part)
        assert state == "clean" and "needs_recovery" not in features, (n + 1, state, features)


@pytest.mark.e2e
def test_without_the_exitrd_systemd_leaves_the_journal_open(qemu_kernel, persist_initrd, systemd_stick,  # noqa: F811
                                                            tmp_path):
    disk = tmp_path / "disk.img"
    shutil.copyfile(systemd_stick, disk)
    r = boot(qemu_kernel.vmlinuz, persist_initrd, disk, "noexitrd", APPEND + " mptest.noexitrd")
    assert "MPTEST-NOEXITRD" in r.output and EXITRD_LINE not in r.output
    assert "EXT4-fs (vda2): unmounting filesystem" not in r.output
    state, features = superblock(partition2(disk, tmp_path))
    assert "needs_recovery" in features, "systemd alone closed the journal: the exitrd would not be needed"


@pytest.mark.e2e
def test_a_persistence_file_on_the_fat_medium_and_the_fat_are_both_left_clean(qemu_kernel, persist_initrd,  # noqa: F811
                                                                               systemd_squashfs, tmp_path):
    # The FAT medium is remounted read-write to hold the file's loop device: Linux marks a FAT dirty while it is
    # mounted read-write (fs/fat/inode.c fat_set_state()), so it too must be unmounted, after the ext4 inside.
    from mpinit import fat, liveimage

    disk = live_image(qemu_kernel, persist_initrd, systemd_squashfs, tmp_path / "disk.img")
    image = tmp_path / "persistence"
    subprocess.run([sys.executable, "-m", "mpinit", "persistence-file", "-o", str(image), "--size", "16M"],
                   check=True, capture_output=True)
    fat.copy_in(disk, liveimage.PART_START, image, "/persistence")
    r = boot(qemu_kernel.vmlinuz, persist_initrd, disk, "fatfile")
    assert count(r) == 0, r.marker_line
    mounts = {m[1]: m for m in r.mounts()}
    assert mounts["/run/initramfs/live"][2] == "vfat" and mounts["/run/initramfs/live"][3].startswith("rw")
    assert mounts["/run/mpinit/persist"][0].startswith("/dev/loop"), mounts
    assert EXITRD_LINE in r.output and "none left" in r.output, r.output[-4000:]
    back = tmp_path / "back"
    back.write_bytes(fat.read_file(disk, liveimage.PART_START, "/persistence"))
    code, text = fsck(back)
    assert code == 0, text
    state, features = superblock(back)
    assert state == "clean" and "needs_recovery" not in features, (state, features)
    vfat = partition(disk, 1, tmp_path / "fat.img")
    check = subprocess.run([shutil.which("fsck.vfat") or "/sbin/fsck.vfat", "-n", str(vfat)], capture_output=True,
                           text=True)
    assert check.returncode == 0 and "dirty" not in (check.stdout + check.stderr).lower(), check.stdout + check.stderr
