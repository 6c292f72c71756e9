"""mpinit.textfile.read_text: the one reader of user-named text files (lists, --config, --hook, --os-release)."""

import pytest

from mpinit.textfile import read_text


class Bad(Exception):
    pass


def test_reads_utf8_text(tmp_path):
    f = tmp_path / "list"
    f.write_bytes("dir /caf\u00e9 755 0 0\n".encode())
    assert read_text(f, "list %s" % f, Bad) == "dir /caf\u00e9 755 0 0\n"


@pytest.mark.parametrize("make, why", [
    (lambda p: None, "No such file or directory"),
    (lambda p: p.mkdir(), "Is a directory"),
    (lambda p: p.write_bytes(b"\xff\xfe oops"), "not UTF-8 text"),
])
def test_each_failure_names_the_option_and_file_in_the_caller_s_error(tmp_path, make, why):
    f = tmp_path / "conf"
    make(f)
    with pytest.raises(Bad) as e:
        read_text(f, "--config %s" % f, Bad)
    assert str(e.value) == "--config %s: %s" % (f, why)
    assert e.value.__cause__ is None and e.value.__suppress_context__
