"""The in-memory image tree: names, parents, replacement rules, host inputs, SOURCE_DATE_EPOCH."""

import os
import stat as st

import pytest

from mpinit.tree import Tree, TreeError, normalize, source_date_epoch


def test_normalize():
    assert normalize("/usr//bin/./x") == "usr/bin/x"
    for bad in ("../x", "/a/../../b", "a/.."):
        with pytest.raises(TreeError, match="'..' is not allowed"):
            normalize(bad)
    with pytest.raises(TreeError, match="image root"):
        normalize("/")


def test_parents_created_and_sorted_like_gnu_sort():
    t = Tree(mtime=3)
    t.add_file("a/b/c", b"x")
    t.add_file("a-b", b"y")
    assert [e.name for e in t.sorted_entries()] == ["a", "a-b", "a/b", "a/b/c"]
    assert t.entries["a/b"].mode == st.S_IFDIR | 0o755 and t.entries["a"].mtime == 3


def test_explicit_dir_replaces_implicit_parent_and_later_file_wins():
    t = Tree()
    t.add_file("d/f", b"1")
    t.add_dir("d", 0o700)
    assert t.entries["d"].mode == st.S_IFDIR | 0o700
    t.add_dir("d", 0o755)  # a second directory keeps the first explicit one
    assert t.entries["d"].mode == st.S_IFDIR | 0o700
    t.add_file("d/f", b"2")
    assert t.entries["d/f"].data == b"2"


def test_conflicts_named():
    t = Tree()
    t.add_file("x", b"", source="first")
    with pytest.raises(TreeError, match="parent x is already in the image as a non-directory \\(from first\\)"):
        t.add_file("x/y", b"")
    t.add_file("d/f", b"")
    with pytest.raises(TreeError, match="is a directory with contents"):
        t.add_file("d", b"")


def test_add_host_follows_named_symlink_and_keeps_inner_ones(tmp_path):
    (tmp_path / "real").write_bytes(b"R")
    os.symlink("real", tmp_path / "ln")
    (tmp_path / "dir").mkdir()
    os.symlink("../real", tmp_path / "dir" / "inner")
    os.symlink("/does/not/exist", tmp_path / "dir" / "dangling-inside")
    t = Tree()
    t.add_host(tmp_path / "ln", "/bin/x")
    t.add_host(tmp_path / "dir", "/opt/d")
    assert t.entries["bin/x"].data == b"R" and t.entries["bin/x"].isreg()
    assert t.entries["opt/d/inner"].islnk() and t.entries["opt/d/dangling-inside"].data == b"/does/not/exist"
    os.symlink("/does/not/exist", tmp_path / "dangling")
    with pytest.raises(TreeError, match="dangling symlink"):
        t.add_host(tmp_path / "dangling", "/y")


def test_source_date_epoch(monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert source_date_epoch() == 0
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234")
    assert source_date_epoch() == 1234
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "soon")
    with pytest.raises(TreeError, match="SOURCE_DATE_EPOCH"):
        source_date_epoch()


def test_lookup_follows_symlinks_in_the_image():
    t = Tree()
    t.add_file("usr/bin/busybox", b"BB", 0o755)
    t.add_symlink("bin", "usr/bin")
    t.add_symlink("usr/bin/sh", "busybox")
    t.add_symlink("sbin", "/bin")
    t.add_symlink("loop", "loop")
    t.add_symlink("dangling", "nowhere/x")
    assert t.lookup("/bin/sh").data == b"BB"
    assert t.lookup("/sbin/sh") is t.lookup("usr/bin/busybox")
    assert t.lookup("/usr/bin/../bin/./sh").data == b"BB"
    assert t.lookup("/bin").isdir()
    assert t.lookup("/loop") is None and t.lookup("/dangling") is None and t.lookup("/usr/nope") is None
