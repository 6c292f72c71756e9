"""Initramfs compression: gzip, xz, zstd, lz4 (legacy frame) and none, as the kernel's decompressors accept them.

Writing: gzip and xz use the standard library (deterministic: gzip's header mtime is 0). zstd and lz4 run the
Debian `zstd` and `lz4` tools: those are what every distribution's initramfs generator uses, they are already
build dependencies for the tests, and it avoids a compiled PyPI dependency for two formats.

Kernel constraints (lib/decompress_*.c, usr/Kconfig):
  - xz must use CRC32 or no integrity check: the kernel's xz_dec has no CRC64/SHA-256 (lib/xz/xz_dec_stream.c
    built without XZ_DEC_ANY_CHECK ignores them, so dracut and mkinitcpio pass --check=crc32);
  - lz4 must be the legacy frame (`lz4 -l`, magic 0x184C2102): lib/decompress_unlz4.c reads only that;
  - zstd frames with a window up to 2^27 (lib/decompress_unzstd.c); levels up to 19 without --long stay below.
Each method needs its CONFIG_RD_* option in the kernel (usr/Kconfig), checked by check_kernel_config().

Reading: detect() recognizes a compressed member by its magic, and decompress() returns the data and where the
compressed stream ends, so that a reader can go on to the next concatenated member as the kernel does.
"""

from __future__ import annotations

import struct

METHODS = ("gzip", "xz", "zstd", "lz4", "none")
DEFAULT = "gzip"

# Default levels: the tools' own defaults, which keep `mpinit pack` well under a second.
DEFAULT_LEVEL = {"gzip": 6, "xz": 6, "zstd": 3, "lz4": 1, "none": 0}
LEVELS = {"gzip": range(0, 10), "xz": range(0, 10), "zstd": range(1, 20), "lz4": range(1, 13), "none": range(0, 1)}

# usr/Kconfig: the option that builds each decompressor into the kernel.
KERNEL_OPTION = {"gzip": "CONFIG_RD_GZIP", "xz": "CONFIG_RD_XZ", "zstd": "CONFIG_RD_ZSTD", "lz4": "CONFIG_RD_LZ4",
                 "bzip2": "CONFIG_RD_BZIP2", "lzma": "CONFIG_RD_LZMA", "lzo": "CONFIG_RD_LZO"}

# Magic numbers, as lib/decompress.c's compressed_formats[] table lists them.
MAGICS = (
    (b"\x1f\x8b", "gzip"),
    (b"\x1f\x9e", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x02\x21\x4c\x18", "lz4"),
    (b"BZh", "bzip2"),
    (b"\x5d\x00\x00", "lzma"),
    (b"\x89LZO", "lzo"),
)

LZ4_LEGACY_MAGIC = 0x184C2102
XZ_DICT_MAX = 1 << 20  # see compress(): what the kernel allocates to unpack an xz initramfs


class CompressError(ValueError):
    """An unknown method or level, a kernel that cannot unpack the method, or a corrupt compressed member."""


def parse_spec(spec):
    """"METHOD" or "METHOD:LEVEL" -> (method, level); errors list the valid choices."""
    method, _, level = spec.partition(":")
    if method not in METHODS:
        raise CompressError("unknown compression %r (choose from %s)" % (spec, ", ".join(METHODS)))
    if not level:
        return method, DEFAULT_LEVEL[method]
    try:
        n = int(level)
    except ValueError:
        n = -1
    if n not in LEVELS[method]:
        r = LEVELS[method]
        raise CompressError("compression %r: level must be %d..%d for %s" % (spec, r.start, r.stop - 1, method))
    return method, n


def compress(data, method=DEFAULT, level=None):
    """Compress `data` (bytes) with `method`; the output is a complete stream the kernel can unpack."""
    if level is None:
        level = DEFAULT_LEVEL.get(method, 0)
    if method == "none":
        return bytes(data)
    if method == "gzip":
        import gzip

        return gzip.compress(data, compresslevel=level, mtime=0)
    if method == "xz":
        import lzma

        # The dictionary is capped at XZ_DICT_MAX: the kernel unpacks an initramfs in multi-call mode
        # (lib/decompress_unxz.c: xz_dec_init(XZ_DYNALLOC, ...) when a flush callback is given), which
        # vmallocs the full dictionary size named in the stream header, 8 MiB for preset 6. 1 MiB (what dracut
        # passes, --lzma2=dict=1MiB) costs about 1% in size on an initramfs and packs faster.
        # Preset dictionaries (xz(1), "Presets"): 256 KiB for -0, 1 MiB and up for -1..-9.
        lzma2 = {"id": lzma.FILTER_LZMA2, "preset": level, "dict_size": 256 << 10 if level == 0 else XZ_DICT_MAX}
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, filters=[lzma2])
    if method == "zstd":
        return _tool(["zstd", "-q", "-c", "-%d" % level, "-T1"], data, "zstd")
    if method == "lz4":
        return _tool(["lz4", "-q", "-l", "-c", "-%d" % level], data, "lz4")
    raise CompressError("unknown compression %r (choose from %s)" % (method, ", ".join(METHODS)))


def _tool(argv, data, package):
    from .runner import find_tool, run

    argv = [find_tool(argv[0], package)] + argv[1:]
    # Not echoed: pack prints one summary line; a failure still names the full command.
    return run(argv, echo=False, capture=True, input=bytes(data)).stdout


def detect(data, offset=0):
    """The compression of the member starting at `offset`, or None when it is not a known compressed stream."""
    head = bytes(data[offset:offset + 6])
    for magic, method in MAGICS:
        if head.startswith(magic):
            return method
    return None


def decompress(data, offset=0):
    """Decompress the stream at `offset`; returns (method, payload, end) with `end` the offset just past it."""
    import zlib

    from .runner import ToolError

    method = detect(data, offset)
    if method is None or method == "lzo":
        raise CompressError("offset %d: no supported compressed stream here (magic %s)"
                            % (offset, bytes(data[offset:offset + 6]).hex()))
    try:
        payload, size = _decompress(method, memoryview(data)[offset:])
    except CompressError as e:
        raise CompressError("offset %d: %s" % (offset, e))
    except (zlib.error, ToolError, EOFError, OSError, ValueError) as e:  # lzma.LZMAError is an Exception
        raise CompressError("offset %d: corrupt %s stream: %s" % (offset, method, e))
    except Exception as e:
        import lzma

        if isinstance(e, lzma.LZMAError):
            raise CompressError("offset %d: corrupt %s stream: %s" % (offset, method, e))
        raise
    return method, payload, offset + size


def _decompress(method, view):
    """(payload, compressed size) of the stream at the start of `view`."""
    if method == "gzip":
        import zlib

        d = zlib.decompressobj(wbits=31)
        out = d.decompress(view)
        if not d.eof:
            raise CompressError("gzip stream is truncated")
        return out, len(view) - len(d.unused_data)
    if method in ("xz", "lzma", "bzip2"):
        import bz2
        import lzma

        if method == "bzip2":
            d = bz2.BZ2Decompressor()
        else:
            d = lzma.LZMADecompressor(lzma.FORMAT_XZ if method == "xz" else lzma.FORMAT_ALONE)
        out = d.decompress(view)
        if not d.eof:
            raise CompressError("%s stream is truncated" % method)
        return out, len(view) - len(d.unused_data)
    if method == "zstd":
        size = _zstd_frames_size(view)
        return _tool(["zstd", "-q", "-d", "-c"], view[:size], "zstd"), size
    size = _lz4_legacy_size(view)
    return _tool(["lz4", "-q", "-d", "-c"], view[:size], "lz4"), size


def _zstd_frames_size(view):
    """Length of the consecutive zstd frames at the start of `view` (RFC 8878 section 3.1), skippable ones too."""
    pos = 0
    n = len(view)
    while pos + 4 <= n:
        magic = struct.unpack_from("<I", view, pos)[0]
        if 0x184D2A50 <= magic <= 0x184D2A5F:  # skippable frame: magic, 4-byte size, payload
            pos += 8 + struct.unpack_from("<I", view, pos + 4)[0]
            continue
        if magic != 0xFD2FB528:
            break
        fhd = view[pos + 4]
        single_segment = fhd >> 5 & 1
        checksum = fhd >> 2 & 1
        did_size = (0, 1, 2, 4)[fhd & 3]
        fcs_size = (1 if single_segment else 0, 2, 4, 8)[fhd >> 6]
        pos += 5 + (0 if single_segment else 1) + did_size + fcs_size
        while True:
            if pos + 3 > n:
                raise CompressError("zstd frame is truncated")
            bh = view[pos] | view[pos + 1] << 8 | view[pos + 2] << 16
            last, btype, bsize = bh & 1, bh >> 1 & 3, bh >> 3
            pos += 3 + (1 if btype == 1 else bsize)  # RLE blocks store one byte
            if btype == 3:
                raise CompressError("zstd frame has a reserved block type")
            if last:
                break
        pos += 4 if checksum else 0
    return min(pos, n)


def _lz4_legacy_size(view):
    """Length of the lz4 legacy stream at the start of `view`: magic, then blocks of (le32 size, data). The
    format has no end mark; like lib/decompress_unlz4.c a repeated magic continues the stream, and we stop at a
    zero size (padding) or at the end of the data."""
    pos = 4
    n = len(view)
    while pos + 4 <= n:
        size = struct.unpack_from("<I", view, pos)[0]
        if size == LZ4_LEGACY_MAGIC:
            pos += 4
            continue
        if size == 0 or pos + 4 + size > n:
            break
        pos += 4 + size
    return pos


def check_kernel_config(path, method):
    """Refuse `method` when the kernel config file at `path` cannot unpack it; the error names the option."""
    try:
        text = open(path, encoding="utf-8", errors="replace").read()
    except OSError as e:
        raise CompressError("--kernel-config %s: %s" % (path, e.strerror or e))
    options = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            options[key] = value
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            options[line[2:-len(" is not set")]] = "n"
    if not any(k.startswith("CONFIG_") for k in options):
        raise CompressError("--kernel-config %s: no CONFIG_ lines; is it a kernel .config?" % path)
    if options.get("CONFIG_BLK_DEV_INITRD") != "y":
        raise CompressError("kernel config %s: CONFIG_BLK_DEV_INITRD is not y: this kernel takes no initramfs"
                            % path)
    if method == "none":
        return
    option = KERNEL_OPTION[method]
    if options.get(option) != "y":
        raise CompressError("kernel config %s: %s is not set, so this kernel cannot unpack a %s initramfs "
                            "(choose another --compress)" % (path, option, method))
