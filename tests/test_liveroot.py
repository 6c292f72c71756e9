"""The test live root: its tree, its init script (run for real by busybox ash on the host), its squashfs."""

import os
import subprocess

import pytest

from conftest import require_tools
from mpinit import liveimage, liveroot


def test_tree_has_busybox_applets_and_the_init(tmp_path):
    require_tools("busybox")
    root = liveroot.build_tree(tmp_path / "root")
    assert os.access(root / "sbin" / "init", os.X_OK)
    assert (root / "sbin" / "init").read_text() == liveroot.INIT_SCRIPT
    assert os.readlink(root / "bin" / "sh") == "/bin/busybox"
    assert not (root / "sbin" / "init").is_symlink()  # busybox's own init applet is not linked over it
    for d in ("proc", "sys", "dev", "run", "tmp"):
        assert (root / d).is_dir()


def test_tree_without_init_has_no_shell_either(tmp_path):
    require_tools("busybox")
    root = liveroot.build_tree(tmp_path / "root", init=False, applets=False)
    assert not (root / "sbin" / "init").exists() and not (root / "bin" / "sh").exists()
    assert (root / "bin" / "busybox").is_file()


def test_init_script_report_format(tmp_path):
    """Run the report part of the script with busybox ash against a fake /proc (sed'ed paths)."""
    require_tools("busybox")
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "uptime").write_text("3.25 1.00\n")
    (proc / "cmdline").write_text("root=live:LABEL=MPLIVE quiet\n")
    (proc / "mounts").write_text("rootfs / rootfs rw 0 0\noverlay / overlay rw 0 0\nproc /proc proc rw 0 0\n")
    rootdir = tmp_path / "r"
    rootdir.mkdir()
    body = liveroot.INIT_SCRIPT.split("exec </dev/console >/dev/console 2>&1\n", 1)[1]
    body = body.replace("/proc/", str(proc) + "/").replace("/.mpinit-rw-probe", str(rootdir) + "/probe")
    body = body.replace("sync\npoweroff -f\n", "")
    out = subprocess.run(["busybox", "sh", "-c", body], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0] == ("MPINIT-LIVE-OK uptime=3.25 rootfs=overlay rw=yes "
                        "cmdline=root=live:LABEL=MPLIVE quiet")
    assert lines[1] == liveroot.MOUNTS_BEGIN and lines[-1] == liveroot.MOUNTS_END
    assert lines[2:-1] == (proc / "mounts").read_text().splitlines()


def test_squashfs_is_reproducible_and_readable(tmp_path):
    require_tools("busybox", "mksquashfs", "unsquashfs")
    root = liveroot.build_tree(tmp_path / "root")
    a = liveroot.make_squashfs(root, tmp_path / "a.sqfs")
    b = liveroot.make_squashfs(root, tmp_path / "b.sqfs")
    assert a.read_bytes() == b.read_bytes()
    listing = subprocess.run(["unsquashfs", "-lls", str(a)], capture_output=True, text=True, check=True).stdout
    assert "squashfs-root/sbin/init" in listing and "root/root" in listing
    assert liveimage.sha256_line(a, "x").endswith("  x\n")
    assert not list(tmp_path.glob(".*.tmp"))


def test_inputs_digest_changes_with_the_script(monkeypatch):
    require_tools("busybox")
    before = liveroot.inputs_digest()
    monkeypatch.setattr(liveroot, "INIT_SCRIPT", liveroot.INIT_SCRIPT + "# changed\n")
    assert liveroot.inputs_digest() != before


def test_dynamic_busybox_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "busybox"
    fake.write_bytes(b"\x7fELF....../lib64/ld-linux-x86-64.so.2")
    monkeypatch.setattr(liveroot, "find_tool", lambda *a: str(fake))
    with pytest.raises(liveroot.ToolError, match="busybox-static"):
        liveroot.busybox_path()
