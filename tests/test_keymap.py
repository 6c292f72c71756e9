"""Keymaps: busybox loadkmap binary format checks, conversion with loadkeys -b."""

import pytest

from conftest import require_tools
from mpinit import keymap


def binary(flags):
    data = bytearray(b"bkeymap" + bytes(256))
    for i in flags:
        data[7 + i] = 1
    for _ in flags:
        data += bytes(range(256))
    return bytes(data)


def test_check_binary_accepts_valid():
    assert keymap.check_binary(binary([0, 1, 4]), "x") == 3


@pytest.mark.parametrize("data, match", [
    (b"notkmap" + bytes(300), "no 'bkeymap' magic"),
    (b"bkeymap" + bytes(10), "truncated"),
    (binary([0])[:-1], "but 1 keymaps make"),
    (binary([0]) + b"\0", "but 1 keymaps make"),
    (b"bkeymap" + bytes(256), "holds no keymap"),
    (b"bkeymap" + b"\x02" + bytes(255), "flag 0 is 2"),
])
def test_check_binary_rejects(data, match):
    with pytest.raises(keymap.KeymapError, match=match):
        keymap.check_binary(data, "km")


def test_load_binary_file(tmp_path):
    p = tmp_path / "de.bmap"
    p.write_bytes(binary([0, 1]))
    assert keymap.load(str(p)) == binary([0, 1])
    p.write_bytes(binary([0, 1])[:-3])
    with pytest.raises(keymap.KeymapError, match=str(p)):
        keymap.load(str(p))


def test_load_converts_kbd_keymap(tmp_path):
    require_tools("loadkeys")
    p = tmp_path / "t.map"
    p.write_text("keymaps 0-1\nkeycode 30 = a A\nkeycode 16 = q Q\n")
    data = keymap.load(str(p))
    assert keymap.check_binary(data, "t") == 2
    # keymap 0 (plain) and 1 (shift), keycode 30 at byte 60: the key action K(KT_LATIN, 'a') as loadkeys
    # writes it, a native-endian u16 (little-endian on the x86 hosts we build on)
    table0 = data[7 + 256:7 + 256 + 256]
    table1 = data[7 + 256 + 256:]
    assert table0[60:62] == b"a\x00" and table1[60:62] == b"A\x00"
    assert data[7:9] == b"\x01\x01" and data[9:7 + 256] == bytes(254)


def test_load_errors(tmp_path):
    with pytest.raises(keymap.KeymapError, match="no such file"):
        keymap.load(str(tmp_path / "missing.map"))
    require_tools("loadkeys")
    bad = tmp_path / "bad.map"
    bad.write_text("this is not a keymap {{{\n")
    with pytest.raises(keymap.KeymapError, match="bad.map"):
        keymap.load(str(bad))
    with pytest.raises(keymap.KeymapError, match="no-such-layout-xyz"):
        keymap.load("no-such-layout-xyz")
