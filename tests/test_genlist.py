"""gen_init_cpio lists: parsed into a tree, errors with file:line, and round trips through an archive."""

import stat as st
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from test_cpio import trees

from mpinit import cpio, genlist
from mpinit.tree import Tree

LIST = """\
# a list as in the kernel's usr/gen_init_cpio.c usage text
dir /dev 755 0 0
nod /dev/console 600 0 0 c 5 1
nod /dev/loop0 660 0 6 b 7 0
dir /root 700 0 0
dir /sbin 755 0 0
file /sbin/kinit ${KINIT_DIR}/kinit 755 0 0 /sbin/kinit2
slink /bin /sbin 777 0 0
pipe /run/fifo 644 0 0
sock /run/sock 600 1000 1000
"""


def test_parse_all_kinds(tmp_path, monkeypatch):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/kinit").write_bytes(b"KINIT")
    monkeypatch.setenv("KINIT_DIR", "bin")
    lst = tmp_path / "initramfs.list"
    lst.write_text(LIST)
    t = Tree(mtime=9)
    genlist.load(t, lst)
    e = t.entries
    assert e["dev/console"].mode == st.S_IFCHR | 0o600 and e["dev/console"].rdev == (5, 1)
    assert e["dev/loop0"].mode == st.S_IFBLK | 0o660 and e["dev/loop0"].gid == 6
    assert e["root"].mode == st.S_IFDIR | 0o700
    assert e["sbin/kinit"].data == b"KINIT" and e["sbin/kinit"].link == e["sbin/kinit2"].link is not None
    assert e["bin"].mode == st.S_IFLNK | 0o777 and e["bin"].data == b"/sbin"
    assert st.S_ISFIFO(e["run/fifo"].mode) and st.S_ISSOCK(e["run/sock"].mode)
    assert e["run/sock"].uid == 1000 and e["run"].isdir() and e["sbin"].mtime == 9


@pytest.mark.parametrize("line, match", [
    ("dir /x 755 0", "l:2: dir takes 4 fields"),
    ("nod /x 600 0 0 q 1 1", "l:2: device type 'q'"),
    ("dir /x 9z5 0 0", "l:2: mode '9z5' is not an octal"),
    ("file /x missing-file 644 0 0", "l:2: file .*missing-file"),
    ("link /x y", "l:2: unknown entry type 'link'"),
    ("dir /../x 755 0 0", "l:2: .*'..' is not allowed"),
    ("file /x ${NOPE_NOT_SET}/f 644 0 0", r"l:2: \$\{NOPE_NOT_SET\}"),
    ("dir /x 755 -1 0", "l:2: uid '-1'"),
])
def test_errors_name_file_and_line(tmp_path, line, match):
    lst = tmp_path / "l"
    lst.write_text("dir /ok 755 0 0\n" + line + "\n")
    with pytest.raises(genlist.ListError, match=match):
        genlist.load(Tree(), lst)


def test_dangling_symlink_location_named(tmp_path):
    import os

    os.symlink("/nonexistent/kinit", tmp_path / "kinit")
    lst = tmp_path / "l"
    lst.write_text("file /sbin/kinit kinit 755 0 0\n")
    with pytest.raises(genlist.ListError, match="l:1: file .*kinit: dangling symlink .to /nonexistent/kinit"):
        genlist.load(Tree(), lst)


def test_round_trip_through_archive(tmp_path, monkeypatch):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/kinit").write_bytes(b"KINIT" * 10)
    monkeypatch.setenv("KINIT_DIR", "bin")
    lst = tmp_path / "a.list"
    lst.write_text(LIST)
    t = Tree()
    genlist.load(t, lst)
    first = cpio.write_newc(t.sorted_entries())
    entries, _ = cpio.parse_newc(first)
    out = tmp_path / "dumped"
    text = genlist.dump(entries, out)
    (out / "b.list").write_text(text)
    t2 = Tree()
    genlist.load(t2, out / "b.list")
    assert cpio.write_newc(t2.sorted_entries()) == first


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees())
def test_round_trip_random_trees(t):
    """Any tree (every entry kind, hardlinks) -> archive -> list + files -> tree again: the same archive bytes."""
    import tempfile

    first = cpio.write_newc(t.sorted_entries())
    with tempfile.TemporaryDirectory() as d:
        files = Path(d)
        text = genlist.dump(cpio.parse_newc(first)[0], files)
        (files / "LIST~").write_text(text)  # "~" is in no generated name
        t2 = Tree(mtime=t.mtime)
        genlist.load(t2, files / "LIST~")
    assert cpio.write_newc(t2.sorted_entries()) == first
