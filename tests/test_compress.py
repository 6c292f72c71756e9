"""Compression: every method unpacked by the system tool, member boundaries found, kernel config checks."""

import os
import subprocess

import pytest

from conftest import require_tools
from mpinit import compress

DATA = b"".join(b"line %d of an initramfs\n" % i for i in range(20000)) + os.urandom(3000)

TOOLS = {"gzip": ["gzip", "-dc"], "xz": ["xz", "-dc"], "zstd": ["zstd", "-dcq"], "lz4": ["lz4", "-dcq"]}


@pytest.mark.parametrize("method", ["gzip", "xz", "zstd", "lz4"])
def test_system_tool_unpacks(method):
    require_tools(TOOLS[method][0])
    packed = compress.compress(DATA, method)
    assert len(packed) < len(DATA)
    out = subprocess.run(TOOLS[method], input=packed, stdout=subprocess.PIPE, check=True).stdout
    assert out == DATA


@pytest.mark.parametrize("method", ["gzip", "xz", "zstd", "lz4"])
def test_detect_and_decompress_finds_the_end(method):
    require_tools(TOOLS[method][0])
    packed = compress.compress(DATA, method)
    image = packed + b"\0" * 4 + b"070701 next member"
    assert compress.detect(image) == method
    got_method, payload, end = compress.decompress(image)
    assert (got_method, payload, end) == (method, DATA, len(packed))


def test_xz_uses_crc32_check():
    require_tools("xz")
    packed = compress.compress(b"abc", "xz")
    # stream flags (xz file format spec 2.1.1.2): second byte is the check type, 0x01 = CRC32
    assert packed[6:8] == b"\x00\x01"
    info = subprocess.run(["xz", "--robot", "--list", "-"], input=packed, stdout=subprocess.PIPE)
    if info.returncode == 0:  # older xz cannot --list stdin
        assert b"CRC32" in info.stdout


def test_xz_dictionary_capped_for_the_kernel():
    """The kernel vmallocs the header's dictionary size to unpack an xz initramfs: at most 1 MiB, whatever the
    level (preset 6 alone would ask 8 MiB). A decoder limited to 3 MiB of memory still unpacks it."""
    import lzma

    for level in (6, 9):
        packed = compress.compress(DATA, "xz", level)
        assert lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=3 << 20).decompress(packed) == DATA
    plain = lzma.compress(DATA, format=lzma.FORMAT_XZ, preset=6)
    with pytest.raises(lzma.LZMAError):  # the limit does bite on a default xz stream
        lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=3 << 20).decompress(plain)


def test_lz4_is_legacy_frame():
    require_tools("lz4")
    assert compress.compress(b"abc" * 100, "lz4")[:4] == b"\x02\x21\x4c\x18"


def test_gzip_is_deterministic_and_none_is_identity():
    assert compress.compress(DATA, "gzip") == compress.compress(DATA, "gzip")
    assert compress.compress(DATA, "none") == DATA


def test_parse_spec():
    assert compress.parse_spec("gzip") == ("gzip", 6)
    assert compress.parse_spec("zstd:19") == ("zstd", 19)
    with pytest.raises(compress.CompressError, match="unknown compression 'brotli'.*gzip, xz"):
        compress.parse_spec("brotli")
    with pytest.raises(compress.CompressError, match="level must be 1..19"):
        compress.parse_spec("zstd:22")
    with pytest.raises(compress.CompressError, match="level"):
        compress.parse_spec("gzip:fast")


def test_corrupt_stream_names_offset():
    packed = bytearray(compress.compress(DATA, "gzip"))
    packed[len(packed) // 2] ^= 0xFF
    with pytest.raises(compress.CompressError, match="offset 0: corrupt gzip"):
        compress.decompress(bytes(packed))
    with pytest.raises(compress.CompressError, match="truncated"):
        compress.decompress(compress.compress(DATA, "gzip")[:500])


def _config(tmp_path, lines):
    p = tmp_path / "config"
    p.write_text("# Linux/x86 6.1 Kernel Configuration\n" + "\n".join(lines) + "\n")
    return p


def test_kernel_config_refuses_missing_decompressor(tmp_path):
    cfg = _config(tmp_path, ["CONFIG_BLK_DEV_INITRD=y", "CONFIG_RD_GZIP=y", "# CONFIG_RD_ZSTD is not set"])
    compress.check_kernel_config(cfg, "gzip")
    compress.check_kernel_config(cfg, "none")
    with pytest.raises(compress.CompressError, match="CONFIG_RD_ZSTD is not set.*zstd"):
        compress.check_kernel_config(cfg, "zstd")
    with pytest.raises(compress.CompressError, match="CONFIG_RD_LZ4"):
        compress.check_kernel_config(cfg, "lz4")


def test_kernel_config_without_initrd_or_not_a_config(tmp_path):
    with pytest.raises(compress.CompressError, match="CONFIG_BLK_DEV_INITRD"):
        compress.check_kernel_config(_config(tmp_path, ["CONFIG_RD_GZIP=y"]), "gzip")
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    with pytest.raises(compress.CompressError, match="no CONFIG_ lines"):
        compress.check_kernel_config(bad, "gzip")
    with pytest.raises(compress.CompressError, match="missing"):
        compress.check_kernel_config(tmp_path / "missing", "gzip")


def test_debian_kernel_config_accepts_all(debian_kernel):
    for method in compress.METHODS:
        compress.check_kernel_config(debian_kernel.config, method)
