"""`mpinit ls` and `mpinit extract`: concatenated compressed images, escapes refused before writing anything."""

import os
import stat as st
import subprocess

import pytest

from conftest import require_tools
from mpinit import cli, compress, cpio
from mpinit.cpio import Entry
from mpinit.tree import Tree


def image(tmp_path, members, name="img"):
    p = tmp_path / name
    p.write_bytes(b"".join(members))
    return p


def sample():
    t = Tree(mtime=1600000000)
    t.add_file("init", b"INIT", 0o755)
    t.add_symlink("bin", "usr/bin")
    t.add_file("usr/bin/sh", b"SH", 0o755)
    t.add_node("dev/console", "c", 5, 1, 0o600)
    t.add(Entry("a", st.S_IFREG | 0o644, b"same", mtime=t.mtime, link="l"))
    t.add(Entry("b", st.S_IFREG | 0o644, b"same", mtime=t.mtime, link="l"))
    return cpio.write_newc(t.sorted_entries())


def test_ls_lists_every_member(tmp_path, capsys):
    early = cpio.write_newc([Entry("kernel/x86/microcode/AuthenticAMD.bin", st.S_IFREG | 0o644, b"u")])
    p = image(tmp_path, [early, compress.compress(sample(), "xz")])
    assert cli.main(["ls", str(p)]) == 0
    out = capsys.readouterr().out.splitlines()
    unpadded = len(cpio.write_newc(cpio.parse_newc(early)[0], block=0))  # the NUL padding belongs to no member
    assert out[0] == "# member 1 at offset 0: none, 1 entries, %d bytes" % unpadded
    assert out[1] == "kernel/x86/microcode/AuthenticAMD.bin"
    assert out[2].startswith("# member 2 at offset %d: xz, " % len(early))
    assert "bin -> usr/bin" in out and "usr/bin/sh" in out


def test_ls_into_a_closed_pipe(tmp_path):
    """`mpinit ls IMG | head -1`: the reader going away is not an error and prints no traceback. The pipe's read
    end is closed before mpinit starts, so its first write fails (EPIPE) every time."""
    import sys

    p = image(tmp_path, [compress.compress(sample(), "gzip")])
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run([sys.executable, "-m", "mpinit", "ls", str(p)], stdout=w, stderr=subprocess.PIPE)
    finally:
        os.close(w)
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr


def test_ls_long(tmp_path, capsys):
    p = image(tmp_path, [compress.compress(sample(), "gzip")])
    assert cli.main(["ls", "-l", str(p)]) == 0
    out = capsys.readouterr().out
    assert "crw------- 0/0      5, 1 1600000000 dev/console" in out
    assert "-rwxr-xr-x 0/0         4 1600000000 init" in out


@pytest.mark.parametrize("method", ["gzip", "xz", "zstd", "lz4", "none"])
def test_extract_round_trip(tmp_path, method, capsys):
    if method in ("zstd", "lz4"):
        require_tools(method)
    p = image(tmp_path, [compress.compress(sample(), method)])
    dest = tmp_path / "out"
    assert cli.main(["extract", str(p), str(dest)]) == 0
    assert (dest / "init").read_bytes() == b"INIT" and st.S_IMODE((dest / "init").stat().st_mode) == 0o755
    assert os.readlink(dest / "bin") == "usr/bin" and (dest / "usr/bin/sh").read_bytes() == b"SH"
    assert (dest / "a").stat().st_ino == (dest / "b").stat().st_ino
    assert int((dest / "usr").stat().st_mtime) == 1600000000
    if os.geteuid() == 0:
        s = (dest / "dev/console").lstat()
        assert st.S_ISCHR(s.st_mode) and os.major(s.st_rdev) == 5 and st.S_IMODE(s.st_mode) == 0o600
    else:
        assert "dev/console: device node or fifo skipped" in capsys.readouterr().err


def test_extract_later_member_wins(tmp_path):
    first = cpio.write_newc([Entry("etc/x", st.S_IFREG | 0o644, b"old")])
    second = cpio.write_newc([Entry("etc/x", st.S_IFREG | 0o644, b"new")])
    p = image(tmp_path, [first, compress.compress(second, "gzip")])
    assert cli.main(["extract", str(p), str(tmp_path / "o")]) == 0
    assert (tmp_path / "o/etc/x").read_bytes() == b"new"


def test_extract_hardlinks_do_not_cross_members(tmp_path):
    """Each archive renumbers its inodes from 0: a later member's hardlink group is not linked to an earlier
    member's files with the same number."""
    def pair(a, b, data):
        return cpio.write_newc([Entry(a, st.S_IFREG | 0o644, data, link="k"),
                                Entry(b, st.S_IFREG | 0o644, data, link="k")])

    p = image(tmp_path, [pair("a1", "a2", b"first"), compress.compress(pair("b1", "b2", b"second"), "gzip")])
    out = tmp_path / "o"
    assert cli.main(["extract", str(p), str(out)]) == 0
    assert (out / "a1").stat().st_ino == (out / "a2").stat().st_ino != (out / "b1").stat().st_ino
    assert (out / "b1").stat().st_ino == (out / "b2").stat().st_ino
    assert (out / "a2").read_bytes() == b"first" and (out / "b2").read_bytes() == b"second"


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "/abs/evil"])
def test_extract_refuses_escapes_before_writing(tmp_path, capsys, name):
    data = cpio.write_newc([Entry("fine", st.S_IFREG | 0o644, b"x"), Entry(name, st.S_IFREG | 0o644, b"bad")])
    p = image(tmp_path, [data])
    dest = tmp_path / "d" / "out"
    assert cli.main(["extract", str(p), str(dest)]) == 2
    assert "would escape the destination" in capsys.readouterr().err
    assert not dest.exists() and not (tmp_path / "evil").exists() and not (tmp_path / "d/evil").exists()


def test_extract_refuses_write_through_symlink(tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    data = cpio.write_newc([Entry("lib", st.S_IFLNK | 0o777, str(outside).encode()),
                            Entry("lib/evil", st.S_IFREG | 0o644, b"bad")])
    p = image(tmp_path, [data])
    assert cli.main(["extract", str(p), str(tmp_path / "out")]) == 2
    assert "its directory lib is a symlink in the archive" in capsys.readouterr().err
    assert not (outside / "evil").exists() and not (tmp_path / "out").exists()


def test_extract_refuses_write_through_existing_symlink(tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    os.symlink(outside, dest / "lib")
    p = image(tmp_path, [cpio.write_newc([Entry("a-first", st.S_IFREG | 0o644, b"x"),
                                          Entry("lib/evil", st.S_IFREG | 0o644, b"bad")])])
    assert cli.main(["extract", str(p), str(dest)]) == 2
    assert "lib is a symlink; refusing" in capsys.readouterr().err and not (outside / "evil").exists()
    assert sorted(os.listdir(dest)) == ["lib"]  # refused before writing anything


def test_gnu_cpio_and_ours_agree(tmp_path, capsys):
    require_tools("cpio")
    data = sample()
    p = image(tmp_path, [data])
    assert cli.main(["ls", str(p)]) == 0
    ours = [line.split(" -> ")[0] for line in capsys.readouterr().out.splitlines()]
    theirs = subprocess.run(["cpio", "-t", "--quiet"], input=data, stdout=subprocess.PIPE, check=True).stdout
    assert sorted(ours) == sorted(theirs.decode().split())


def test_bad_images(tmp_path, capsys):
    assert cli.main(["ls", str(tmp_path / "missing")]) == 2
    assert "missing: No such file" in capsys.readouterr().err
    junk = image(tmp_path, [b"this is not an initramfs"], "junk")
    assert cli.main(["ls", str(junk)]) == 2
    assert "junk: offset 0: neither a cpio archive" in capsys.readouterr().err
    trunc = image(tmp_path, [compress.compress(sample(), "gzip")[:100]], "trunc")
    assert cli.main(["extract", str(trunc), str(tmp_path / "x")]) == 2
    assert "gzip" in capsys.readouterr().err and not (tmp_path / "x").exists()
    empty = image(tmp_path, [b"\0" * 512], "empty")
    assert cli.main(["ls", str(empty)]) == 2
    assert "empty image" in capsys.readouterr().err


def test_pack_then_ls_and_extract(tmp_path, capsys):
    init = tmp_path / "init.bin"
    init.write_bytes(b"RUNTIME")
    out = tmp_path / "i.img"
    assert cli.main(["pack", "-o", str(out), "--init", str(init), "--compress", "xz"]) == 0
    assert cli.main(["extract", str(out), str(tmp_path / "root")]) == 0
    assert (tmp_path / "root/init").read_bytes() == b"RUNTIME"
    assert (tmp_path / "root/etc/mpinit/config.json").is_file()
