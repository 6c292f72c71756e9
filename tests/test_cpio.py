"""cpio newc: byte identity with GNU cpio, round trips (also on random trees), independent readers."""

import os
import stat as st
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from conftest import require_tools
from mpinit import compress, cpio
from mpinit.cpio import Entry
from mpinit.tree import Tree

GNU = "cpio -o -H newc --reproducible --owner 0:0"


def gnu_cpio(root):
    """The reference: find . | LC_ALL=C sort | cpio -o -H newc --reproducible --owner 0:0."""
    env = dict(os.environ, LC_ALL="C")
    return subprocess.run("find . | LC_ALL=C sort | %s" % GNU, shell=True, cwd=root, env=env, check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout


def ours(root):
    t = Tree()
    t.add_directory(root, keep_mtime=True, include_root=True)
    return cpio.write_newc(t.sorted_entries())


def make_tree(root):
    """Every entry kind, hardlinks adjacent and not, names whose C-sort differs from a per-component sort."""
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "f").write_bytes(b"hello\n")
    os.link(root / "a" / "f", root / "a" / "g")
    (root / "a-b").write_bytes(b"x" * 1001)
    (root / "m").write_bytes(b"")
    (root / "solo").write_bytes(b"data")
    os.link(root / "solo", root / "zz-link")          # hardlink group with an entry in between
    os.symlink("f", root / "a" / "l")
    os.symlink("/nowhere/dangling", root / "dangling")
    os.mkfifo(root / "a" / "p")
    os.chmod(root / "m", 0o4711)
    if os.geteuid() == 0:
        os.mknod(root / "console", 0o600 | st.S_IFCHR, os.makedev(5, 1))
        os.mknod(root / "sda", 0o660 | st.S_IFBLK, os.makedev(8, 0))
    for i, p in enumerate(sorted(root.rglob("*"))):
        os.utime(p, (1000 + i, 1000 + i), follow_symlinks=False)
    os.utime(root, (7, 7))


def test_byte_identical_to_gnu_cpio(tmp_path):
    require_tools("cpio", "find", "sort")
    root = tmp_path / "t"
    root.mkdir()
    make_tree(root)
    reference = gnu_cpio(root)
    assert ours(root) == reference
    assert len(reference) % 512 == 0


def test_byte_identical_nested_and_empty_dirs(tmp_path):
    require_tools("cpio")
    root = tmp_path / "t"
    for d in ("x/y/z", "x/y2", "e", "x.d"):
        (root / d).mkdir(parents=True)
    (root / "x/y/z/file").write_bytes(bytes(range(256)) * 3)
    for p in [root] + sorted(root.rglob("*")):
        os.utime(p, (123456, 123456), follow_symlinks=False)
    assert ours(root) == gnu_cpio(root)


def test_header_layout_and_trailer():
    data = cpio.write_newc([Entry("init", st.S_IFREG | 0o755, b"abc", mtime=5)], block=0)
    assert data.startswith(b"070701")
    # 110-byte header + "init\0" = 115 -> padded to 116, then 3 bytes data padded to 4
    assert data[116:119] == b"abc" and data[119:120] == b"\0"
    entries, end = cpio.parse_newc(data)
    assert end == len(data)
    assert data[end - 124:].startswith(b"070701") and b"TRAILER!!!\0" in data[-16:]
    assert [(e.name, e.mode, e.data, e.mtime, e.nlink) for e in entries] == [("init", 0o100755, b"abc", 5, 1)]


def test_inodes_renumbered_and_hardlinks_deferred():
    key = ("k",)
    entries = [Entry("a", st.S_IFREG | 0o644, b"DATA", link=key), Entry("m", st.S_IFREG | 0o644, b"m"),
               Entry("z", st.S_IFREG | 0o644, b"DATA", link=key)]
    parsed, _ = cpio.parse_newc(cpio.write_newc(entries))
    # GNU cpio writes both links when the last is read: m first, then a (size 0), then z with the data
    assert [(e.name, e.ino, e.nlink) for e in parsed] == [("m", 1, 1), ("a", 0, 2), ("z", 0, 2)]
    assert parsed[1].data == parsed[2].data == b"DATA" and parsed[1].link == parsed[2].link


def test_field_overflow_is_an_error():
    with pytest.raises(cpio.FormatError, match="32 bits"):
        cpio.write_newc([Entry("big", st.S_IFREG | 0o644, mtime=1 << 33)])


def test_reader_errors_name_the_offset():
    data = cpio.write_newc([Entry("f", st.S_IFREG | 0o644, b"x" * 100)], block=0)
    with pytest.raises(cpio.FormatError, match="offset"):
        cpio.parse_newc(data[:150])
    with pytest.raises(cpio.FormatError, match="bad cpio magic"):
        cpio.parse_newc(b"070707" + data[6:])
    with pytest.raises(cpio.FormatError, match="offset 0"):
        cpio.read_image(b"garbage!" * 10)


def test_read_image_concatenated_members():
    early = cpio.write_newc([Entry("kernel/x86/microcode/GenuineIntel.bin", st.S_IFREG | 0o644, b"ucode")])
    main = cpio.write_newc([Entry("init", st.S_IFREG | 0o755, b"#!init"), Entry("kernel", st.S_IFDIR | 0o755)])
    second = cpio.write_newc([Entry("init", st.S_IFREG | 0o755, b"newer")])
    image = early + compress.compress(main, "gzip") + b"\0" * 8 + compress.compress(second, "xz")
    members = cpio.read_image(image)
    assert [(m.offset, m.compression) for m in members] == [(0, "none"), (len(early), "gzip"),
                                                            (members[2].offset, "xz")]
    assert members[2].offset == len(early) + len(compress.compress(main, "gzip")) + 8
    assert cpio.merged(members)["init"].data == b"newer"


def test_hardlinks_are_per_archive_and_per_device():
    """The same renumbered ino in two concatenated archives is two files (the kernel's link table is freed at
    each trailer); within one archive, equal ino on another dev is another file too (find_link() keys on both)."""
    def pair(a, b, data):
        return cpio.write_newc([Entry(a, st.S_IFREG | 0o644, data, link="k"),
                                Entry(b, st.S_IFREG | 0o644, data, link="k")])

    image = pair("a1", "a2", b"first") + compress.compress(pair("b1", "b2", b"second"), "gzip")
    first, second = cpio.read_image(image)
    assert {e.ino for e in first.entries} == {e.ino for e in second.entries} == {0}
    assert first.entries[0].link == first.entries[1].link != second.entries[0].link == second.entries[1].link
    tree = cpio.merged([first, second])
    assert tree["a1"].data == tree["a2"].data == b"first" and tree["b2"].data == b"second"
    # one archive, two files with ino 5 and nlink 2 on different devs: not one group
    head = cpio._header(5, st.S_IFREG | 0o644, 0, 0, 2, 0, 1, (0, 0), b"x")
    other = bytearray(cpio._header(5, st.S_IFREG | 0o644, 0, 0, 2, 0, 1, (0, 0), b"y"))
    other[62:70] = b"00000008"  # c_devmajor (the 8th field)
    data = head + b"X\0\0\0" + bytes(other) + b"Y\0\0\0" + cpio.write_newc([], block=0)
    x, y = cpio.parse_newc(data)[0]
    assert x.link is None and y.link is None and (x.data, y.data) == (b"X", b"Y")


def test_compressed_stream_inside_a_compressed_member_refused():
    a = cpio.write_newc([Entry("a", st.S_IFREG | 0o644, b"1")], block=0)
    image = a + compress.compress(a + compress.compress(a, "gzip"), "xz")
    with pytest.raises(cpio.FormatError, match="offset %d of the xz member at offset %d: junk within compressed"
                       % (len(a), len(a))):
        cpio.read_image(image)


def test_unaligned_archive_refused():
    a = cpio.write_newc([Entry("a", st.S_IFREG | 0o644, b"1")], block=0)
    with pytest.raises(cpio.FormatError, match="offset 1: cpio archive not 4-byte aligned"):
        cpio.read_image(b"\0" + a)


def test_gzip_member_holding_two_archives():
    a = cpio.write_newc([Entry("a", st.S_IFREG | 0o644, b"1")], block=0)
    b = cpio.write_newc([Entry("b", st.S_IFREG | 0o644, b"2")], block=0)
    (m,) = cpio.read_image(compress.compress(a + b, "gzip"))
    assert [e.name for e in m.entries] == ["a", "b"]


# ---- property tests: random trees -------------------------------------------------------------------------

_name = hs.text(alphabet="abcXYZ019._-", min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))


@hs.composite
def trees(draw):
    t = Tree(mtime=draw(hs.integers(0, 2 ** 32 - 1)))
    for _ in range(draw(hs.integers(1, 25))):
        path = "/".join(draw(hs.lists(_name, min_size=1, max_size=3)))
        kind = draw(hs.sampled_from(["file", "dir", "link", "node", "fifo", "hard"]))
        if path in t.entries or any(n.startswith(path + "/") for n in t.entries):
            continue
        try:
            if kind == "file":
                t.add_file(path, draw(hs.binary(max_size=300)), draw(hs.integers(0, 0o7777)),
                           uid=draw(hs.integers(0, 70000)), gid=draw(hs.integers(0, 70000)))
            elif kind == "dir":
                t.add_dir(path, draw(hs.integers(0, 0o7777)))
            elif kind == "link":
                t.add_symlink(path, draw(_name))
            elif kind == "node":
                t.add_node(path, draw(hs.sampled_from("cb")), draw(hs.integers(0, 4095)),
                           draw(hs.integers(0, 2 ** 20 - 1)))
            elif kind == "fifo":
                t.add_node(path, "p", 0, 0)
            else:
                other = path + "-h"
                data = draw(hs.binary(max_size=50))
                t.add(Entry(path, st.S_IFREG | 0o644, data, mtime=t.mtime, link=("h", path)))
                t.add(Entry(other, st.S_IFREG | 0o644, data, mtime=t.mtime, link=("h", path)))
        except Exception as e:  # a parent already taken by a non-directory: not a tree we can build
            from mpinit.tree import TreeError

            if not isinstance(e, TreeError):
                raise
    return t


def _norm(entries):
    return sorted((e.name, e.mode, e.data, e.uid, e.gid, e.mtime, e.rdev, e.link is not None) for e in entries)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees())
def test_round_trip_random_trees(t):
    entries = t.sorted_entries()
    data = cpio.write_newc(entries)
    assert len(data) % 512 == 0
    parsed, _ = cpio.parse_newc(data)
    assert _norm(parsed) == _norm(entries)
    # writing what we read gives the same bytes (deterministic, hardlinks kept)
    again = sorted(parsed, key=lambda e: cpio.sort_key(e.name))
    assert cpio.write_newc(again) == data


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(trees())
def test_random_trees_gnu_cpio_lists_them(tmp_path_factory, t):
    require_tools("cpio")
    data = cpio.write_newc(t.sorted_entries())
    out = subprocess.run(["cpio", "-t", "--quiet"], input=data, stdout=subprocess.PIPE, check=True).stdout
    # archive order is sort order except deferred hardlinks, so compare as sets of names
    assert sorted(out.decode().split("\n")[:-1]) == sorted(e.name for e in t.sorted_entries())


# ---- independent readers extract our archives ------------------------------------------------------------

def _sample_archive():
    t = Tree(mtime=1700000000)
    t.add_file("bin/tool", b"\x7fELF fake" * 100, 0o755)
    t.add_file("etc/conf", b"k=v\n", 0o600)
    t.add_symlink("bin/alias", "tool")
    t.add_dir("var/empty", 0o700)
    t.add(Entry("h1", st.S_IFREG | 0o644, b"shared", mtime=t.mtime, link="g"))
    t.add(Entry("h2", st.S_IFREG | 0o644, b"shared", mtime=t.mtime, link="g"))
    t.add_node("fifo", "p", 0, 0, 0o644)
    return cpio.write_newc(t.sorted_entries())


def _check_extracted(root):
    assert (root / "bin/tool").read_bytes() == b"\x7fELF fake" * 100
    assert st.S_IMODE((root / "bin/tool").stat().st_mode) == 0o755
    assert (root / "etc/conf").read_bytes() == b"k=v\n"
    assert os.readlink(root / "bin/alias") == "tool"
    assert (root / "var/empty").is_dir()
    assert (root / "h1").stat().st_ino == (root / "h2").stat().st_ino
    assert (root / "h2").read_bytes() == b"shared"
    assert st.S_ISFIFO((root / "fifo").lstat().st_mode)
    assert int((root / "etc/conf").stat().st_mtime) == 1700000000


@pytest.mark.tools
def test_gnu_cpio_extracts_ours(tmp_path):
    require_tools("cpio")
    subprocess.run(["cpio", "-i", "-d", "-m", "--quiet", "--no-absolute-filenames"], input=_sample_archive(),
                   cwd=tmp_path, check=True)
    _check_extracted(tmp_path)


@pytest.mark.tools
def test_bsdcpio_extracts_ours(tmp_path):
    require_tools("bsdcpio")
    subprocess.run(["bsdcpio", "-i", "-d", "-m", "--quiet"], input=_sample_archive(), cwd=tmp_path, check=True,
                   stderr=subprocess.PIPE)
    _check_extracted(tmp_path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hs.lists(hs.tuples(trees(), hs.sampled_from(["none", "gzip", "xz"]), hs.integers(0, 3)), min_size=1,
                max_size=4))
def test_read_image_random_concatenations(parts):
    """Members of random trees, each uncompressed/gzip/xz, with NUL padding between: read back in order."""
    blob = b""
    offsets = []
    for t, method, pad in parts:
        offsets.append(len(blob))
        blob += compress.compress(cpio.write_newc(t.sorted_entries()), method) + b"\0" * (4 * pad)
        blob += b"\0" * (-len(blob) % 4)  # the kernel finds an uncompressed archive only at a 4-byte boundary
    members = cpio.read_image(blob)
    assert [m.offset for m in members] == offsets
    assert [m.compression for m in members] == [method for _, method, _ in parts]
    for m, (t, _, _) in zip(members, parts):
        assert _norm(m.entries) == _norm(t.sorted_entries())
