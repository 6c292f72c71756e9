"""mpinit_agent.crypttab: the /etc/crypttab parser (crypttab(5)): fields, key files, options, errors naming the line,
and (CPython, hypothesis) that arbitrary text never raises anything but CrypttabError."""

import pytest

from mpinit_agent import crypttab
from mpinit_agent.crypttab import CrypttabError, parse

MICROPYTHON = True


def test_fields_keyfile_and_options():
    text = ("# comment\n\n"
            "cryptroot UUID=6d70696e-6974-4c55-4b53-000000000002 none luks,discard\n"
            "\tdata   /dev/vdb1   /etc/keys/data.key   luks,keyfile-offset=16,keyfile-size=32,tries=5\n"
            "usb PARTLABEL=SECRET /k.bin:LABEL=MPKEYS\n"
            "swap /dev/vdc3\n")
    e = parse(text)
    assert [x.name for x in e] == ["cryptroot", "data", "usb", "swap"]
    assert e[0].device == "UUID=6d70696e-6974-4c55-4b53-000000000002" and e[0].keyfile is None
    assert e[0].options == ["luks", "discard"] and e[0].option("discard") is True and e[0].line == 3
    assert e[1].keyfile == "/etc/keys/data.key" and e[1].keydev is None
    assert e[1].option("keyfile-offset") == "16" and e[1].option("tries") == "5" and e[1].option("x", 7) == 7
    assert e[2].keyfile == "/k.bin" and e[2].keydev == "LABEL=MPKEYS" and e[2].options == []
    assert e[3].keyfile is None and e[3].options == []


def test_dash_and_none_mean_passphrase():
    assert parse("a /dev/x -\nb /dev/y none\n")[0].keyfile is None
    assert parse("b /dev/y none\n")[0].keyfile is None


def test_octal_escapes():
    e = parse("my\\040name LABEL=a\\040b\n")[0]
    assert e.name == "my name" and e.device == "LABEL=a b"


@pytest.mark.parametrize("text, words", [
    ("onlyname\n", "line 1: want <name> <device>"),
    ("a b c d e\n", "got 5 fields"),
    ("a/b /dev/x\n", "not a usable device-mapper name"),
    ("x /dev/a\nx /dev/b\n", "already used on line 1"),
    ("x /dev/a relative.key\n", "must be an absolute path"),
    ("x\\000 /dev/a\n", "bad escape"),
])
def test_errors_name_the_line(text, words):
    with pytest.raises(CrypttabError, match=words):
        parse(text)


def test_not_text():
    with pytest.raises(CrypttabError, match="want text"):
        parse(b"x /dev/a")


def test_unsupported_types_are_kept_for_the_unlocker_to_refuse():
    e = parse("s /dev/sda3 /dev/urandom swap,plain\n")[0]
    assert [o for o in e.options if o in crypttab.UNSUPPORTED] == ["swap", "plain"]


try:
    from hypothesis import given, strategies as st
except ImportError:  # MicroPython, or a CPython without the test extras
    given = None

if given is not None:
    @given(st.text(max_size=300))
    def test_property_any_text_parses_or_raises_crypttab_error(text):
        try:
            entries = parse(text)
        except CrypttabError:
            return
        for e in entries:
            assert e.name and "/" not in e.name and e.device
            assert e.keyfile is None or e.keyfile.startswith("/")

    _FIELD = st.text(alphabet="abcXYZ019/=:-_.\\", min_size=1, max_size=12)

    @given(st.lists(st.lists(_FIELD, min_size=1, max_size=5).map(" ".join), max_size=6).map("\n".join))
    def test_property_field_soup_parses_or_raises_crypttab_error(text):
        try:
            parse(text)
        except CrypttabError:
            pass
