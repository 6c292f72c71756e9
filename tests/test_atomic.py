"""Atomic output: complete file or none, previous output kept on failure."""

import os

import pytest

from mpinit import atomic


def test_write_and_mode(tmp_path):
    p = tmp_path / "out"
    assert atomic.write_bytes(p, [b"ab", b"c"], mode=0o600) == 3
    assert p.read_bytes() == b"abc" and os.stat(p).st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["out"]


def test_failure_leaves_nothing_and_keeps_old(tmp_path):
    p = tmp_path / "out"
    p.write_bytes(b"old")

    def chunks():
        yield b"new"
        raise RuntimeError("input went bad")

    with pytest.raises(RuntimeError):
        atomic.write_bytes(p, chunks())
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["out"]


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic.write_bytes(tmp_path / "no" / "out", b"x")


def test_check_output_refuses_a_directory_or_a_missing_directory(tmp_path):
    from mpinit.atomic import check_output

    class Bad(Exception):
        pass

    assert check_output(str(tmp_path / "out.img"), Bad) == tmp_path / "out.img"
    with pytest.raises(Bad, match=r"^-o %s: is a directory$" % tmp_path):
        check_output(tmp_path, Bad)
    with pytest.raises(Bad, match=r"^--svg %s/no/x.svg: directory %s/no does not exist$" % (tmp_path, tmp_path)):
        check_output(tmp_path / "no" / "x.svg", Bad, flag="--svg")
