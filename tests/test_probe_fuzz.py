"""The probes never raise on garbage: hypothesis mutates and truncates real images (made by the real tools when
they are installed, else by mpinit.testing.images) and probe()/partitions() must return a dict/list every time.

CPython only (hypothesis); the probers are the same code the agent runs under MicroPython.
"""

import io
import shutil
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpinit.testing import images
from mpinit.testing.images import Partition
from mpinit_agent import probe

# How much of each image the fuzzer plays with: every probe reads within the first 2 MiB except md 0.90/1.0 and
# the GPT backup header at the end, which the truncation strategy reaches instead.
KEEP = 2 << 20


def _tool(name):
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _made(tmp, name, size, argv):
    path = tmp / name
    with open(path, "wb") as f:
        f.truncate(size)
    exe = _tool(argv[0])
    if not exe:
        return None
    proc = subprocess.run([exe] + argv[1:] + [str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return path.read_bytes()[:KEEP] if proc.returncode == 0 else None


def _md1(off):
    sb = bytearray(256)
    struct.pack_into("<II", sb, 0, 0xA92B4EFC, 1)
    sb[16:32] = bytes(range(1, 17))
    sb[32:41] = b"host:live"
    struct.pack_into("<Q", sb, 144, off >> 9)
    return bytes(sb)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corpus")
    out = {}
    for fstype, size in (("vfat", 1 << 20), ("fat16", 3 << 20), ("ext4", 1 << 20), ("iso9660", 1 << 20),
                         ("squashfs", 1 << 20), ("exfat", 4 << 20), ("swap", 1 << 20), ("btrfs", 2 << 20),
                         ("xfs", 2 << 20), ("crypto_LUKS", 1 << 20)):
        out[fstype] = images.filesystem(fstype, label=None if fstype == "squashfs" else "L", size=size)[:KEEP]
    out["gpt"] = images.disk([Partition(images.filesystem("ext4", label="p")), Partition(b"")])[:KEEP]
    out["dos"] = images.disk([Partition(images.filesystem("vfat", label="p"))], table="dos")[:KEEP]
    md = bytearray(2 << 20)   # above 1440 KiB: RAID is not looked for on floppy-sized devices
    md[0x1000:0x1100] = _md1(0x1000)
    out["md12"] = bytes(md)
    made = {
        "ntfs": ("ntfs.img", 8 << 20, ["mkntfs", "-q", "-Q", "-F", "-L", "fuzz"]),
        "udf": ("udf.img", 8 << 20, ["mkudffs", "--label=fuzz"]),
        "udf4k": ("udf4k.img", 8 << 20, ["mkudffs", "-b", "4096", "--label=fuzz"]),
        "f2fs": ("f2fs.img", 64 << 20, ["mkfs.f2fs", "-q", "-f", "-l", "fuzz"]),
        "swap": ("swap.img", 1 << 20, ["mkswap", "-L", "fuzz"]),
    }
    for key, (name, size, argv) in made.items():
        data = _made(tmp, name, size, argv)
        if data is not None:
            out[key] = data
    if _tool("mkfs.erofs"):
        root = tmp / "root"
        (root / "sbin").mkdir(parents=True)
        (root / "sbin" / "init").write_text("#!/bin/sh\n")
        path = tmp / "root.erofs"
        if subprocess.run([_tool("mkfs.erofs"), "--quiet", str(path), str(root)]).returncode == 0:
            out["erofs"] = path.read_bytes()
    if _tool("genisoimage"):
        path = tmp / "bridge.iso"
        if subprocess.run([_tool("genisoimage"), "-quiet", "-udf", "-J", "-V", "FUZZ", "-o", str(path),
                           str(tmp / "root")]).returncode == 0:
            out["udf-bridge"] = path.read_bytes()[:KEEP]
    return out


NAMES = ["vfat", "fat16", "ext4", "iso9660", "squashfs", "exfat", "swap", "btrfs", "xfs", "crypto_LUKS", "gpt",
         "dos", "md12", "ntfs", "udf", "udf4k", "f2fs", "erofs", "udf-bridge"]


def _check(data, sector):
    out = probe.probe(io.BytesIO(data), sector=sector)
    assert isinstance(out, dict)
    # The boot's windowed reads (a head and a tail read, the blank-head shortcut) see exactly what the exact reads
    # see: the same keys on every input.
    assert probe.probe(io.BytesIO(data), sector=sector, windows=True) == out
    for k, v in out.items():
        assert isinstance(k, str) and isinstance(v, str)
    # The medium's image check (two probers only) agrees with the full probe wherever that names an image type.
    t = probe.image_type(io.BytesIO(data))
    assert probe.image_type(io.BytesIO(data), windows=True) == t
    assert t in (None, "squashfs", "squashfs3", "erofs")
    if out.get("TYPE") in ("squashfs", "squashfs3", "erofs"):
        assert t == out["TYPE"]
    parts = probe.partitions(io.BytesIO(data), sector=sector)
    assert isinstance(parts, list)
    for p in parts:
        probe.probe_partition(io.BytesIO(data), p, sector=sector)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(name=st.sampled_from(NAMES),
       edits=st.lists(st.tuples(st.integers(0, 0x12000), st.binary(min_size=1, max_size=8)), max_size=24),
       cut=st.one_of(st.none(), st.integers(0, KEEP)),
       sector=st.sampled_from([512, 2048, 4096]))
def test_mutated_images_never_raise(corpus, name, edits, cut, sector):
    data = corpus.get(name)
    if data is None:
        return   # its tool is not installed here (test_probe_more says which package)
    buf = bytearray(data)
    for off, chunk in edits:
        # Most of a prober's fields sit in the first 72 KiB; aim there, and now and then at the metadata further on.
        if off < len(buf):
            buf[off:off + len(chunk)] = chunk
    if cut is not None:
        del buf[cut:]
    _check(bytes(buf), sector)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=80000))
def test_random_bytes_never_raise(data):
    _check(data, 512)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(NAMES), word=st.sampled_from([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF]),
       at=st.integers(0, 0x1100).map(lambda x: x * 4))
def test_extreme_field_values_never_raise(corpus, name, word, at):
    """Lengths, offsets and counts set to 0, 1 and the largest values (the usual overflow and loop bugs)."""
    data = corpus.get(name)
    if data is None:
        return
    buf = bytearray(data)
    for base in (0, 1024, 0x8000, 0x8800, 0x10000, 256 * 2048):
        if base + at + 4 <= len(buf):
            struct.pack_into("<I", buf, base + at, word)
    _check(bytes(buf), 2048 if name.startswith("udf") else 512)
