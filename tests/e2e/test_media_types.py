"""Issue 13 end to end: the real Debian kernel, the `mpinit pack --modules generic-live` initramfs with the agent,
and the media of mpinit.testing.media_types: EROFS live images (on FAT, as the whole disk, copied to RAM), ISO
files in a folder on exFAT and on NTFS, and a UDF disc holding the live squashfs.

The Debian cloud kernel the other e2e boots use is built without NTFS3 (CONFIG_NTFS3_FS is not set): the NTFS
boots run Debian's generic kernel for PCs (mpinit.kernel.ensure_generic, where ntfs3 is a module) with an initramfs
packed by `mpinit pack --modules generic-live` from that kernel's own module tree, as a user's machine would.
"""

import pytest

from e2e_support import log_path, qemu_kernel  # noqa: F401 (fixture)
from mpinit import qemu
from mpinit.testing import media_types as mt
from test_boot import agent_initrd  # noqa: F401 (fixture)
from test_boot import NO_SHELL, REPL_PROMPT, SHORT_WAIT, agent_lines, assert_failed, assert_live

MEMORY_MB = 256


@pytest.fixture
def boot_types(request, qemu_kernel, agent_initrd):  # noqa: F811 (agent_initrd is a fixture)
    def run_boot(disk, append, memory_mb=MEMORY_MB, timeout_s=90):
        return qemu.boot(qemu_kernel.vmlinuz, agent_initrd, disks=[mt.ensure(disk)], append=append,
                         memory_mb=memory_mb, timeout_s=timeout_s, log_path=log_path(request),
                         stop_on=REPL_PROMPT)
    return run_boot


def _mount_types(r):
    return {m[1]: m[2] for m in r.mounts()}


@pytest.mark.e2e
def test_erofs_image_on_fat(boot_types):
    r = boot_types("erofs-fat", "root=live:LABEL=%s checksum=y" % mt.EROFS_LABEL)
    assert_live(r, "/dev/vda1")
    assert agent_lines(r, "medium", "filesystem.erofs"), "\n".join(r.lines("mpinit:"))
    assert agent_lines(r, "sha256 ok"), "\n".join(r.lines("mpinit:"))
    assert _mount_types(r).get("/run/mpinit/rootfsbase") == "erofs", r.mounts()


@pytest.mark.e2e
def test_erofs_whole_disk(boot_types):
    r = boot_types("erofs-disk", "root=live:/dev/vda")
    assert_live(r)
    assert agent_lines(r, "medium", "/dev/vda"), "\n".join(r.lines("mpinit:"))
    mounts = {m[1]: (m[0], m[2]) for m in r.mounts()}
    assert mounts.get("/run/mpinit/rootfsbase") == ("/dev/vda", "erofs"), r.mounts()


@pytest.mark.e2e
def test_erofs_toram(boot_types):
    r = boot_types("erofs-fat", "root=live:LABEL=%s toram" % mt.EROFS_LABEL)
    assert_live(r, "/dev/vda1")
    assert agent_lines(r, "toram"), "\n".join(r.lines("mpinit:"))
    mounts = _mount_types(r)
    assert mounts.get("/run/mpinit/rootfsbase") == "erofs" and "/run/initramfs/live" not in mounts, r.mounts()


@pytest.mark.e2e
def test_iso_file_in_a_folder_on_exfat(boot_types):
    r = boot_types("isos-exfat", "iso-scan/filename=%s" % mt.EXFAT_ISO)
    assert_live(r, "/dev/vda1")
    mounts = _mount_types(r)
    assert mounts.get("/run/initramfs/live") == "exfat" and mounts.get("/run/mpinit/iso") == "iso9660", r.mounts()


@pytest.mark.e2e
def test_missing_iso_lists_the_iso_files_seen(boot_types):
    r = boot_types("isos-exfat", "iso-scan/filename=/isos/nope.iso %s %s" % (SHORT_WAIT, NO_SHELL))
    assert_failed(r, "medium", "no ISO file /isos/nope.iso", "/isos/live.iso", "/isos/%s" % mt.OTHER_ISO)


# --- NTFS: Debian's generic kernel ------------------------------------------------------------------------------

GENERIC_INITRD_MAX = 8 << 20     # the generic-live closure of the PC kernel (USB, SATA, NVMe, ...) stays small


@pytest.fixture(scope="session")
def generic_initrd(debian_generic_kernel, runtime_binary, agent_initrd, tmp_path_factory):  # noqa: F811
    """`mpinit pack --modules generic-live` from the generic kernel's module tree (agent_initrd first: it checks
    that the runtime holds the agent). ntfs3 must come from the set, not from an extra --modules name."""
    import os
    import subprocess
    import sys

    from mpinit import cpio

    out = tmp_path_factory.mktemp("generic-initrd") / "initrd.img"
    proc = subprocess.run([sys.executable, "-m", "mpinit", "pack", "-o", str(out), "--init", str(runtime_binary),
                           "--kernel-modules", str(debian_generic_kernel.modules_dir), "--modules", "generic-live"],
                          env=dict(os.environ, MPINIT_RUNTIME=str(runtime_binary)), capture_output=True, text=True)
    assert proc.returncode == 0, "mpinit pack failed:\n%s\n%s" % (proc.stdout[-3000:], proc.stderr[-3000:])
    assert "ntfs3" not in proc.stderr, proc.stderr
    names = cpio.merged(cpio.read_image(out.read_bytes()))
    shipped = {n.rsplit("/", 1)[-1] for n in names if n.startswith("lib/modules/")}
    assert "ntfs3.ko" in shipped, sorted(shipped)
    assert out.stat().st_size <= GENERIC_INITRD_MAX, (out.stat().st_size, proc.stdout)
    return out


@pytest.fixture
def boot_generic(request, qemu_kernel, debian_generic_kernel, generic_initrd):
    def run_boot(disk, append, timeout_s=120):
        return qemu.boot(debian_generic_kernel.vmlinuz, generic_initrd, disks=[mt.ensure(disk)], append=append,
                         memory_mb=MEMORY_MB, timeout_s=timeout_s, log_path=log_path(request),
                         stop_on=REPL_PROMPT)
    return run_boot


@pytest.mark.e2e
@pytest.mark.parametrize("param", ["findiso", "iso-scan/filename"])
def test_iso_file_on_ntfs(boot_generic, param):
    r = boot_generic("isos-ntfs", "%s=%s" % (param, mt.NTFS_ISO))
    assert_live(r, "/dev/vda1")
    assert agent_lines(r, "loaded ntfs3"), "\n".join(r.lines("mpinit:"))
    mounts = {m[1]: (m[0], m[2]) for m in r.mounts()}
    assert mounts.get("/run/initramfs/live") == ("/dev/vda1", "ntfs3"), r.mounts()
    assert mounts.get("/run/mpinit/iso", ("", ""))[1] == "iso9660", r.mounts()
    assert mounts.get("/run/mpinit/rootfsbase", ("", ""))[1] == "squashfs", r.mounts()


@pytest.mark.e2e
def test_missing_iso_on_ntfs_lists_the_iso_files_seen(boot_generic):
    r = boot_generic("isos-ntfs", "findiso=/nope.iso %s %s" % (SHORT_WAIT, NO_SHELL))
    assert_failed(r, "medium", "no ISO file /nope.iso", mt.NTFS_ISO, "/" + mt.OTHER_ISO,
                  "parameter: iso-scan/filename=")


@pytest.mark.e2e
def test_udf_disc_holding_the_live_image(boot_types):
    r = boot_types("udf", "root=live:LABEL=%s" % mt.UDF_LABEL)
    assert_live(r, "/dev/vda")
    assert _mount_types(r).get("/run/initramfs/live") == "udf", r.mounts()
