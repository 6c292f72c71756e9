"""mpinit squash: init detection (symlinks inside the root), excludes, the mksquashfs command, real images read
back with unsquashfs, and bad roots refused with nothing left behind."""

import os
import subprocess

import pytest

from conftest import require_tools
from mpinit import cli, squash


def _root(tmp_path, name="root"):
    r = tmp_path / name
    for d in ("bin", "sbin", "etc", "proc", "sys", "dev", "run", "tmp", "usr/sbin", "usr/lib/systemd"):
        (r / d).mkdir(parents=True)
    return r


def _exe(path, text="#!/bin/sh\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


# --- find_init ------------------------------------------------------------------------------------------------

def test_find_init_prefers_sbin_init(tmp_path):
    r = _root(tmp_path)
    _exe(r / "sbin" / "init")
    _exe(r / "bin" / "sh")
    assert squash.find_init(r) == "/sbin/init"


def test_find_init_falls_back_in_the_kernels_order(tmp_path):
    r = _root(tmp_path)
    _exe(r / "bin" / "sh")
    assert squash.find_init(r) == "/bin/sh"
    _exe(r / "bin" / "init")
    assert squash.find_init(r) == "/bin/init"
    _exe(r / "etc" / "init")
    assert squash.find_init(r) == "/etc/init"


def test_absolute_symlink_is_resolved_inside_the_root(tmp_path):
    # Debian: /sbin/init -> /lib/systemd/systemd, with /lib -> usr/lib (merged /usr)
    r = _root(tmp_path)
    (r / "lib").symlink_to("usr/lib")
    _exe(r / "usr" / "lib" / "systemd" / "systemd")
    (r / "sbin" / "init").symlink_to("/lib/systemd/systemd")
    assert squash.find_init(r) == "/sbin/init"


def test_absolute_symlink_to_a_host_file_does_not_count(tmp_path):
    # /bin/sh exists on the host, not in the root: the link must not be followed out of the root
    r = _root(tmp_path)
    (r / "sbin" / "init").symlink_to("/bin/sh")
    with pytest.raises(squash.SquashError, match="/sbin/init: /bin/sh does not exist"):
        squash.find_init(r)


def test_dotdot_stops_at_the_root(tmp_path):
    r = _root(tmp_path)
    _exe(r / "busybox")
    (r / "sbin" / "init").symlink_to("../../../../busybox")
    assert squash.find_init(r) == "/sbin/init"


def test_symlink_loop_is_reported(tmp_path):
    r = _root(tmp_path)
    (r / "sbin" / "init").symlink_to("/sbin/init")
    with pytest.raises(squash.SquashError, match="too many symlinks"):
        squash.find_init(r)


def test_no_init_names_everything_looked_for(tmp_path):
    r = _root(tmp_path)
    (r / "sbin" / "init").write_text("not executable")
    (r / "bin" / "sh").mkdir()
    with pytest.raises(squash.SquashError) as e:
        squash.find_init(r)
    msg = str(e.value)
    for c in ("/sbin/init", "/etc/init", "/bin/init", "/bin/sh"):
        assert c in msg
    assert "/sbin/init: not executable" in msg
    assert "/bin/sh: not a regular file" in msg
    assert str(r) in msg


# --- excludes and the command line ---------------------------------------------------------------------------

def test_default_excludes_keep_the_directories_and_skip_the_output(tmp_path):
    r = _root(tmp_path)
    pats = squash.default_excludes(r, r / "out" / "img.sq")
    assert pats[:5] == ["proc/*", "sys/*", "dev/*", "run/*", "tmp/*"]
    assert "out/img.sq" in pats and "out/.img.sq.*.tmp" in pats
    assert squash.default_excludes(r, tmp_path / "img.sq") == pats[:5]


def test_exclude_file_strips_comments_and_leading_slash(tmp_path):
    f = tmp_path / "ex"
    f.write_text("# guide style\n/var/cache/apt/*\n\n  /home/*  \nboot\n")
    assert squash.read_exclude_file(f) == ["var/cache/apt/*", "home/*", "boot"]


@pytest.mark.parametrize("text, match", [("/\n", "whole root"), (b"\xff\xfe", "not a text file")])
def test_bad_exclude_file(tmp_path, text, match):
    f = tmp_path / "ex"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(squash.SquashError, match=match):
        squash.read_exclude_file(f)


def test_missing_exclude_file(tmp_path):
    with pytest.raises(squash.SquashError, match="--exclude-file .*nope: cannot read"):
        squash.read_exclude_file(tmp_path / "nope")


def test_mksquashfs_argv(tmp_path):
    require_tools("mksquashfs")
    a = squash.mksquashfs_argv("/r", "/o.tmp", "zstd", all_root=True, exclude_file="/ef")
    assert a[1:] == ["/r", "/o.tmp", "-noappend", "-comp", "zstd", "-all-root", "-no-progress", "-wildcards",
                     "-ef", "/ef"]
    a = squash.mksquashfs_argv("/r", "/o.tmp", "xz", progress=True)
    assert a[1:] == ["/r", "/o.tmp", "-noappend", "-comp", "xz", "-b", "1M"]
    with pytest.raises(squash.SquashError, match="--comp lzo"):
        squash.mksquashfs_argv("/r", "/o", "lzo")


# --- real images ---------------------------------------------------------------------------------------------

def _listing(image):
    """{path: "owner/group"} from `unsquashfs -lls` (an independent reader of the image)."""
    out = subprocess.run(["unsquashfs", "-lls", "-d", "", str(image)], capture_output=True, text=True, check=True)
    entries = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        # "drwxr-xr-x root/root 151 2026-11-22 02:49 /bin" (symlinks add "-> target")
        if len(parts) >= 6 and parts[5].startswith("/"):
            entries[parts[5]] = parts[1]
    return entries


def test_image_contents(tmp_path):
    require_tools("mksquashfs", "unsquashfs")
    r = _root(tmp_path)
    _exe(r / "sbin" / "init")
    (r / "tmp" / "junk").write_text("x")
    (r / "proc" / "1").mkdir()
    (r / "etc" / "hostname").write_text("live\n")
    (r / "var" / "cache").mkdir(parents=True)
    (r / "var" / "cache" / "big").write_bytes(b"0" * 100000)
    ex = tmp_path / "exclude"
    ex.write_text("/var/cache/*\n")
    out = r / "img.squashfs"  # inside the root: must not end up in itself
    size, data = squash.build(r, out, comp="gzip", all_root=True, exclude_file=ex)
    assert size == out.stat().st_size
    entries = _listing(out)
    assert "/sbin/init" in entries and "/etc/hostname" in entries
    for d in ("/proc", "/sys", "/dev", "/run", "/tmp", "/var/cache"):
        assert d in entries  # the mount point stays ...
    for gone in ("/tmp/junk", "/proc/1", "/var/cache/big", "/img.squashfs"):
        assert gone not in entries  # ... its contents do not
    assert set(entries.values()) == {"root/root"}  # --all-root
    assert not [p for p in os.listdir(r) if p.endswith(".tmp")]


def test_cli_squash_reports_the_ratio(tmp_path, capsys):
    require_tools("mksquashfs", "unsquashfs")
    r = _root(tmp_path)
    _exe(r / "sbin" / "init")
    (r / "etc" / "data").write_text("compressible " * 10000)
    out = tmp_path / "fs.sq"
    assert cli.main(["squash", str(r), "-o", str(out), "--comp", "xz"]) == 0
    text = capsys.readouterr().out
    assert "init /sbin/init" in text
    assert "wrote %s" % out in text and "% of" in text
    assert out.read_bytes()[:4] == b"hsqs"


def test_cli_squash_refuses_a_root_without_init_and_writes_nothing(tmp_path, capsys):
    r = _root(tmp_path)
    out = tmp_path / "fs.sq"
    assert cli.main(["squash", str(r), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no init in this root" in err and "/sbin/init" in err and "/bin/sh" in err
    assert sorted(os.listdir(tmp_path)) == ["root"]


def test_cli_squash_keeps_an_old_image_when_the_root_is_bad(tmp_path, capsys):
    out = tmp_path / "fs.sq"
    out.write_bytes(b"old image")
    assert cli.main(["squash", str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert "missing: not a directory" in capsys.readouterr().err
    assert out.read_bytes() == b"old image"


def test_mksquashfs_failure_leaves_no_file(tmp_path, monkeypatch):
    require_tools("mksquashfs")
    r = _root(tmp_path)
    _exe(r / "sbin" / "init")
    out = tmp_path / "fs.sq"
    # an unreadable exclude pattern file path makes mksquashfs itself fail after our temp file exists
    real = squash.mksquashfs_argv
    monkeypatch.setattr(squash, "mksquashfs_argv", lambda *a, **k: real(*a, **k) + ["-comp", "nonsense"])
    from mpinit.runner import ToolError

    with pytest.raises(ToolError):
        squash.build(r, out)
    assert sorted(os.listdir(tmp_path)) == ["root"]


# --- EROFS (--format erofs) -----------------------------------------------------------------------------------

def test_glob_to_ere():
    assert squash.glob_to_ere("proc/*") == "^proc/[^/]*$"
    assert squash.glob_to_ere("var/log/?.log") == "^var/log/[^/]\\.log$"
    assert squash.glob_to_ere("a[!b]c+(x)") == "^a[^b]c\\+\\(x\\)$"


def test_erofs_argv_defaults():
    argv = squash.mkfs_erofs_argv("/r", "/o.tmp", ["proc/*"], all_root=True, exclude_paths=["live/x.erofs"])
    assert argv[1:] == ["--quiet", "-zlz4hc,12", "-C65536", "-Eztailpacking", "--all-root",
                        "--exclude-path=live/x.erofs", "--exclude-regex=^proc/[^/]*$", "/o.tmp", "/r"]
    with pytest.raises(squash.SquashError, match="--comp xz: not one of lz4hc, lz4, none for EROFS"):
        squash.mkfs_erofs_argv("/r", "/o", [], comp="xz")


def test_erofs_image_of_a_real_root(tmp_path, capsys):
    """mkfs.erofs output read back with fsck.erofs --extract: the init is there, /proc's contents are not, the
    output inside the root is left out; the agent's probe and blkid call it erofs."""
    require_tools("mkfs.erofs", "fsck.erofs", "blkid")
    r = _root(tmp_path)
    _exe(r / "sbin" / "init")
    (r / "proc" / "1").mkdir()
    (r / "proc" / "1" / "status").write_text("stale")
    (r / "etc" / "hostname").write_text("live\n")
    out = r / "live" / "filesystem.erofs"
    out.parent.mkdir()
    assert cli.main(["squash", str(r), "-o", str(out), "--format", "erofs", "--all-root"]) == 0
    assert "erofs lz4hc" in capsys.readouterr().out
    from mpinit_agent import medium, probe

    assert probe.probe(str(out))["TYPE"] == "erofs" and medium.check_image(str(out)) == "erofs"
    ex = tmp_path / "x"
    subprocess.run(["fsck.erofs", "--extract=%s" % ex, str(out)], check=True, capture_output=True)
    assert (ex / "sbin" / "init").is_file() and (ex / "etc" / "hostname").read_text() == "live\n"
    assert (ex / "proc").is_dir() and not any((ex / "proc").iterdir())
    assert not (ex / "live" / "filesystem.erofs").exists()
    assert [p.name for p in out.parent.iterdir()] == ["filesystem.erofs"]   # no temporary file left


def test_erofs_refuses_a_root_without_init_and_leaves_nothing(tmp_path):
    r = _root(tmp_path)
    out = tmp_path / "x.erofs"
    with pytest.raises(squash.SquashError, match="no init in this root"):
        squash.build(r, out, fmt="erofs")
    assert not out.exists()
    with pytest.raises(squash.SquashError, match="--format ext4"):
        squash.build(r, out, fmt="ext4")
