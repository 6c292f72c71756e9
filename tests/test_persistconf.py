"""persistence.conf (live-boot's format, persistence.conf(5)): the parser of an untrusted file on the stick."""

import pytest

from mpinit_agent import persistconf
from mpinit_agent.persistconf import ConfError

MICROPYTHON = True

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # MicroPython: the fuzz test is CPython-only
    given = None


def test_whole_root_union():
    assert persistconf.parse("/ union\n") == [("/", "union", ".")]
    assert persistconf.parse(b"/ union") == [("/", "union", ".")]
    assert persistconf.root_union(persistconf.parse("/ union"))


def test_comments_blank_lines_and_tabs():
    text = "# my stick\n\n  /home\tbind  \n/ union\n#/var union\n"
    assert persistconf.parse(text) == [("/", "union", "."), ("/home", "bind", "home")]


def test_default_kind_is_bind_and_source_defaults_to_the_mount_point():
    assert persistconf.parse("/var/lib/apt") == [("/var/lib/apt", "bind", "var/lib/apt")]


def test_source_option_and_path_cleanup():
    got = persistconf.parse("/home//user/ union,source=users//me/\n/etc bind,source=.")
    assert got == [("/etc", "bind", "."), ("/home/user", "union", "users/me")]


def test_parents_come_before_children():
    got = persistconf.parse("/home/user/docs bind\n/home bind\n/ union\n")
    assert [e[0] for e in got] == ["/", "/home", "/home/user/docs"]
    assert not persistconf.root_union(got[1:])


@pytest.mark.parametrize("text, words", [
    ("home bind", "start with /"),
    ("/home/../etc bind", "no . or .."),
    ("/home bind,source=/abs", "relative"),
    ("/home bind,source=a/../b", "no . or .."),
    ("/home bind,source=", "needs a directory"),
    ("/ bind", "/ can only be a union"),
    ("/ union,source=x", "no source="),
    ("/home union,bind", "both union and bind"),
    ("/home link", "link is not supported"),
    ("/home rw", "unknown option"),
    ("/home bind extra", "want MOUNT"),
    ("/home bind\n/home union", "listed twice"),
    ("/ho\x01me bind", "control characters"),
    ("/home\x00 bind", "NUL"),
])
def test_bad_lines_name_the_line_and_the_reason(text, words):
    with pytest.raises(ConfError, match=words):
        persistconf.parse(text)


def test_line_numbers_in_errors():
    with pytest.raises(ConfError, match="line 3"):
        persistconf.parse("# x\n/ union\n/home frob\n")


def test_bytes_that_are_not_utf8_or_too_big():
    with pytest.raises(ConfError, match="UTF-8"):
        persistconf.parse(b"/ union\n\xff\xfe")
    with pytest.raises(ConfError, match="too big"):
        persistconf.parse(b"#" * 70000)
    with pytest.raises(ConfError, match="not text"):
        persistconf.parse(None)


def test_empty_file_has_no_entries():
    assert persistconf.parse(b"") == []


if given is not None:
    @settings(max_examples=400, deadline=None)
    @given(st.one_of(st.binary(max_size=300),
                     st.lists(st.sampled_from(["/", "/home", " ", "\t", "union", "bind", "link", ",", "source=",
                                               ".", "..", "/x/", "#", "\n", "\x00", "é", "a"]),
                              max_size=30).map("".join)))
    def test_fuzz_parse_raises_only_conferror(data):
        try:
            entries = persistconf.parse(data)
        except ConfError:
            return
        seen = set()
        for mount, kind, source in entries:
            assert mount.startswith("/") and ".." not in mount.split("/") and kind in ("union", "bind")
            assert not source.startswith("/") and ".." not in source.split("/")
            assert mount not in seen
            seen.add(mount)
