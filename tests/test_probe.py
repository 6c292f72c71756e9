"""mpinit_agent.probe against util-linux blkid on images made by the real tools (and by mpinit.testing.images).

The assertion is always the comparison: every key the agent prints equals blkid's (same escaping as
`blkid -p -o export`), and TYPE/UUID/LABEL/PTTYPE/PTUUID are present exactly when blkid prints them.
"""

import codecs
import io
import json
import shlex
import shutil
import struct
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from conftest import require_tools
from mpinit.cmd_probe import escape
from mpinit.testing import images
from mpinit.testing.images import Partition, blkid_export
from mpinit_agent import probe

MUST_AGREE = ("TYPE", "UUID", "LABEL", "PTTYPE", "PTUUID")
U1 = "0a1b2c3d-4e5f-4071-8293-a4b5c6d7e8f9"


def tool(name):
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def sh(*argv, **kw):
    return subprocess.run([str(a) for a in argv], check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          **kw)


def sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def assert_agrees(path, offset=0, size=None):
    """Our probe of path at offset against `blkid -p --offset`; returns our dict."""
    ours = probe.probe(str(path), offset, size)
    theirs = blkid_export(path, offset)
    printed = dict((k, escape(v)) for k, v in ours.items())
    for key in printed:
        assert key in theirs, "we print %s=%s, blkid does not (%r)" % (key, printed[key], theirs)
        assert printed[key] == theirs[key], (key, printed[key], theirs[key])
    for key in MUST_AGREE:
        assert (key in printed) == (key in theirs), (key, printed, theirs)
    return ours


# ---- real mkfs output -----------------------------------------------------------------------------------------

MKFS = {
    "ext4-label": ("mkfs.ext4", 4 << 20, ["-q", "-F", "-L", "root fs", "-U", U1]),
    "ext4-nolabel": ("mkfs.ext4", 4 << 20, ["-q", "-F"]),
    "ext4-4k-nojournal": ("mkfs.ext4", 16 << 20, ["-q", "-F", "-b", "4096", "-O", "^has_journal", "-L", "nj"]),
    "ext3": ("mkfs.ext3", 8 << 20, ["-q", "-F", "-L", "e3"]),
    "ext2": ("mkfs.ext2", 4 << 20, ["-q", "-F", "-L", "e2"]),
    "vfat32-label": ("mkfs.vfat", 40 << 20, ["-F", "32", "-n", "EFI BOOT", "-i", "1a2b3c4d"]),
    "vfat32-nolabel": ("mkfs.vfat", 40 << 20, ["-F", "32"]),
    "vfat16-label": ("mkfs.vfat", 16 << 20, ["-F", "16", "-n", "DATA16"]),
    "vfat16-nolabel": ("mkfs.vfat", 16 << 20, ["-F", "16"]),
    "vfat12-label": ("mkfs.vfat", 1 << 20, ["-F", "12", "-n", "small"]),
    "vfat12-nolabel": ("mkfs.vfat", 1 << 20, ["-F", "12"]),
    "exfat-label": ("mkfs.exfat", 8 << 20, ["-L", "Stick Ünï"]),
    "exfat-nolabel": ("mkfs.exfat", 8 << 20, []),
    "btrfs": ("mkfs.btrfs", 120 << 20, ["-q", "-L", "my data", "-U", U1]),
    "xfs": ("mkfs.xfs", 300 << 20, ["-q", "-L", "xlabel", "-m", "uuid=" + U1]),
    "xfs-nolabel": ("mkfs.xfs", 300 << 20, ["-q"]),
    "swap": ("mkswap", 1 << 20, ["-L", "swappy", "-U", U1]),
    "swap-nolabel": ("mkswap", 1 << 20, []),
}


@pytest.mark.parametrize("name", sorted(MKFS))
def test_mkfs_images_agree_with_blkid(tmp_path, name):
    cmd, size, opts = MKFS[name]
    require_tools("blkid", cmd)
    path = sparse(tmp_path / (name + ".img"), size)
    sh(tool(cmd), *(opts + [path]))
    ours = assert_agrees(path)
    assert ours["TYPE"] == {"mkfs.vfat": "vfat", "mkswap": "swap"}.get(cmd, cmd[5:])


@pytest.mark.parametrize("opts,label", [
    (["-J", "-V", "ARCH_202401"], "ARCH_202401"),
    (["-J", "-V", "Mixed Case Live"], "Mixed Case Live"),
    (["-J", "-V", "A Label Longer Than Sixteen"], "A Label Longer Than Sixteen"),
    (["-V", "NOJOLIET"], "NOJOLIET"),
    (["-J", "-joliet-long", "-V", "Ünïcode"], None),
    ([], None),
])
def test_iso9660_agrees_with_blkid(tmp_path, opts, label):
    require_tools("blkid", "xorriso")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "hello.txt").write_text("hi")
    path = tmp_path / "cd.iso"
    sh("xorriso", "-as", "mkisofs", "-quiet", *opts, "-o", path, tmp_path / "root")
    ours = assert_agrees(path)
    assert ours["TYPE"] == "iso9660" and len(ours["UUID"]) == 22
    if label is not None:
        assert ours["LABEL"] == label


def test_squashfs_agrees_with_blkid(tmp_path):
    require_tools("blkid", "mksquashfs")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "f").write_text("x" * 1000)
    path = tmp_path / "fs.sqfs"
    sh("mksquashfs", tmp_path / "root", path, "-quiet", "-noappend")
    ours = assert_agrees(path)
    assert ours["TYPE"] == "squashfs" and "UUID" not in ours


@pytest.mark.parametrize("luks", ["luks1", "luks2"])
def test_luks_agrees_with_blkid(tmp_path, luks):
    require_tools("blkid", "cryptsetup")
    path = sparse(tmp_path / "crypt.img", 20 << 20)
    key = tmp_path / "key"
    key.write_bytes(b"secret")
    extra = ["--label", "vault"] if luks == "luks2" else []
    proc = subprocess.run([tool("cryptsetup"), "luksFormat", "--batch-mode", "--type", luks, "--pbkdf", "pbkdf2",
                           "--pbkdf-force-iterations", "1000", "--key-file", str(key), "--uuid", U1, *extra,
                           str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        pytest.skip("cryptsetup luksFormat on a plain file failed here: %s" % proc.stderr.strip())
    ours = assert_agrees(path)
    assert ours["UUID"] == U1 and ours["VERSION"] == luks[-1]


# ---- partition tables made by sgdisk and sfdisk -----------------------------------------------------------------

def _partx(path):
    out = sh("partx", "-P", "-o", "NR,START,SECTORS,UUID,NAME,TYPE", path, text=True).stdout
    rows = []
    for line in out.splitlines():
        row = dict(kv.split("=", 1) for kv in shlex.split(line))
        # partx -P writes bytes outside ASCII as \xNN escapes of the UTF-8 name.
        row["NAME"] = codecs.decode(row["NAME"], "unicode_escape").encode("latin-1").decode("utf-8")
        rows.append(row)
    return rows


def _put(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _check_table(path):
    ours = probe.partitions(str(path))
    theirs = _partx(path)
    assert [p["PART_ENTRY_NUMBER"] for p in ours] == [int(r["NR"]) for r in theirs]
    for p, r in zip(ours, theirs):
        assert p["PART_ENTRY_OFFSET"] == int(r["START"]) and p["PART_ENTRY_SIZE"] == int(r["SECTORS"])
        assert p.get("PARTUUID", "") == r["UUID"]
        assert p.get("PARTLABEL", "") == r["NAME"]
        assert p["PART_ENTRY_TYPE"] == r["TYPE"]
        assert_agrees(path, p["PART_ENTRY_OFFSET"] * 512, p["PART_ENTRY_SIZE"] * 512)
    assert_agrees(path)
    return ours


def test_sgdisk_gpt(tmp_path):
    require_tools("blkid", "partx", "sgdisk")
    path = sparse(tmp_path / "gpt.img", 64 << 20)
    sh(tool("sgdisk"), "-o", "-U", "11223344-5566-7788-99AA-BBCCDDEEFF00",
       "-n", "1:2048:+16M", "-t", "1:ef00", "-c", "1:EFI system", "-u", "1:AAAAAAAA-0000-4000-8000-000000000001",
       "-n", "3:0:+20M", "-t", "3:8300", "-c", "3:Live Ünï", "-n", "2:0:0", "-c", "2:", path)
    _put(path, 2048 * 512, images.filesystem("vfat", label="EFI", uuid="ABCD-0123", size=16 << 20))
    parts = _check_table(path)
    assert parts[0]["PARTUUID"] == "aaaaaaaa-0000-4000-8000-000000000001"
    assert parts[0]["PARTLABEL"] == "EFI system"
    assert probe.probe(str(path))["PTUUID"] == "11223344-5566-7788-99aa-bbccddeeff00"


def test_gpt_backup_header_is_used_when_the_primary_is_damaged(tmp_path):
    require_tools("sgdisk")
    path = sparse(tmp_path / "gpt.img", 8 << 20)
    sh(tool("sgdisk"), "-o", "-n", "1:2048:+1M", "-c", "1:rescued", path)
    good = probe.partitions(str(path))
    _put(path, 512 + 16, b"\xff\xff\xff\xff")  # break the primary header's CRC
    assert probe.partitions(str(path)) == good and good[0]["PARTLABEL"] == "rescued"


def test_sfdisk_mbr_with_logical_partitions(tmp_path):
    require_tools("blkid", "partx", "sfdisk")
    path = sparse(tmp_path / "mbr.img", 64 << 20)
    layout = ("label: dos\nlabel-id: 0x1234abcd\n"
              "start=2048, size=8M, type=c, bootable\n"
              "size=8M, type=83\n"
              "size=4M, type=83\n"
              "size=30M, type=5\n"
              "size=8M, type=83\n"
              "size=8M, type=82\n")
    sh(tool("sfdisk"), "-q", path, input=layout.encode())
    ext = images.filesystem("ext4", label="logical", uuid=U1, size=4 << 20)
    parts = probe.partitions(str(path))
    by_n = dict((p["PART_ENTRY_NUMBER"], p) for p in parts)
    assert sorted(by_n) == [1, 2, 3, 4, 5, 6]
    _put(path, by_n[5]["PART_ENTRY_OFFSET"] * 512, ext)
    _put(path, by_n[1]["PART_ENTRY_OFFSET"] * 512, images.filesystem("vfat", label="BOOT", size=8 << 20))
    parts = _check_table(path)
    assert by_n[5]["PARTUUID"] == "1234abcd-05"
    assert probe.probe_partition(str(path), by_n[5])["LABEL"] == "logical"


# ---- synthetic images (the fake machine's disks) ----------------------------------------------------------------

SYNTH = [("vfat", "BOOT", "1234-ABCD", 1 << 20), ("vfat", None, None, 1 << 20), ("fat16", "F16", None, 3 << 20),
         ("fat12", "F12", None, 1 << 20), ("ext4", "r", U1, 1 << 20), ("ext2", None, None, 1 << 20),
         ("iso9660", "Live CD", "2024-05-06-07-08-09-10", 1 << 20), ("squashfs", None, None, 1 << 20),
         ("exfat", "Ex", "0123-4567", 4 << 20), ("swap", "s", U1, 1 << 20), ("btrfs", "b", U1, 2 << 20),
         ("xfs", "x", U1, 2 << 20), ("crypto_LUKS", "l", U1, 1 << 20), ("crypto_LUKS1", None, U1, 1 << 20)]


@pytest.mark.parametrize("fstype,label,uuid,size", SYNTH, ids=[s[0] + "-" + str(i) for i, s in enumerate(SYNTH)])
def test_synthetic_images_agree_with_blkid(tmp_path, fstype, label, uuid, size):
    require_tools("blkid")
    path = tmp_path / "s.img"
    path.write_bytes(images.filesystem(fstype, label=label, uuid=uuid, size=size))
    ours = assert_agrees(path)
    assert ours.get("LABEL") == label


def test_synthetic_disks(tmp_path):
    require_tools("blkid", "partx")
    for table, kw in (("gpt", {"disk_uuid": U1}), ("dos", {"signature": 0xCAFE})):
        parts = [Partition(images.filesystem("iso9660", label="CD", uuid="2024-01-01-00-00-00-00"),
                           **({"partlabel": "live"} if table == "gpt" else {})),
                 Partition(images.filesystem("ext4", label="persist"))]
        path = tmp_path / (table + ".img")
        path.write_bytes(images.disk(parts, table=table, **kw))
        got = _check_table(path)
        assert len(got) == 2
        assert got[1]["PARTUUID"] == ("0000cafe-02" if table == "dos" else got[1]["PARTUUID"])


# ---- plain behaviour ---------------------------------------------------------------------------------------------

def test_nothing_recognised_is_empty():
    assert probe.probe(io.BytesIO(bytes(70000))) == {}
    assert probe.probe(io.BytesIO(b"")) == {}
    assert probe.partitions(io.BytesIO(bytes(4096))) == []


def test_truncated_superblock_is_not_a_filesystem():
    data = images.filesystem("btrfs", label="b", size=2 << 20)
    assert probe.probe(io.BytesIO(data))["TYPE"] == "btrfs"
    assert probe.probe(io.BytesIO(data[:0x10000 + 100])) == {}


def test_open_file_is_left_open_and_offsets_work():
    disk = images.disk([Partition(images.filesystem("ext4", label="inner"), partlabel="p1")])
    f = io.BytesIO(disk)
    parts = probe.partitions(f)
    assert probe.probe(f, parts[0]["PART_ENTRY_OFFSET"] * 512)["LABEL"] == "inner"
    assert probe.probe_partition(f, parts[0])["PARTLABEL"] == "p1"
    assert not f.closed


def test_missing_file_raises_oserror_with_the_path(tmp_path):
    with pytest.raises(OSError) as e:
        probe.probe(str(tmp_path / "nope.img"))
    assert "nope.img" in str(e.value)


def test_utf16_surrogate_pairs():
    assert probe._utf16("a😀".encode("utf-16-le") + b"\x00\x00xx", False) == "a😀"
    assert probe._utf16("  ".encode("utf-16-be"), True) is None


def test_pure_crc32_matches_zlib():
    import zlib

    data = bytes(range(256)) * 70
    assert probe._crc32_py(data, 0) == zlib.crc32(data)
    assert probe._crc32_py(data[100:], probe._crc32_py(data[:100], 0)) == zlib.crc32(data)


@pytest.mark.runtime
def test_same_results_under_micropython(runtime_binary, tmp_path):
    """The frozen agent in the built /init gives the same dicts as CPython (MicroPython's struct, memoryview,
    readinto and the hand-written UTF-16/CRC-32 paths)."""
    paths = []
    extra = [("ext4", "Ünï €", None, 1 << 20), ("crypto_LUKS", "Ünï", None, 1 << 20)]
    for fstype, label, uuid, size in SYNTH + extra:
        path = tmp_path / ("%s-%d.img" % (fstype, len(paths)))
        path.write_bytes(images.filesystem(fstype, label=label, uuid=uuid, size=size))
        paths.append(path)
    disk = tmp_path / "disk.img"
    disk.write_bytes(images.disk([Partition(images.filesystem("exfat", label="Ünï €", size=4 << 20),
                                            partlabel="Ünï part"),
                                  Partition(images.filesystem("iso9660", label="Joliet ü"))]))
    paths.append(disk)
    assert_runtime_agrees(runtime_binary, tmp_path, paths)


def assert_runtime_agrees(runtime_binary, tmp_path, paths):
    """The frozen agent's probes on MicroPython print what they print on CPython, for each file: probe() and every
    partition's probe_partition()."""
    script = tmp_path / "probe_all.py"
    script.write_text(
        "import sys, json\n"
        "from mpinit_agent import probe\n"
        "for p in sys.argv[1:]:\n"
        "    print(json.dumps([probe.probe(p)] + [probe.probe_partition(p, x) for x in probe.partitions(p)]))\n")
    proc = subprocess.run([str(runtime_binary), str(script)] + [str(p) for p in paths], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert len(out) == len(paths)
    for path, line in zip(paths, out):
        want = [probe.probe(str(path))] + [probe.probe_partition(str(path), x) for x in probe.partitions(str(path))]
        assert json.loads(line) == want, path


ISOHYBRID_MBR = "/usr/lib/ISOLINUX/isohdpfx.bin"
ISOLINUX_BIN = "/usr/lib/ISOLINUX/isolinux.bin"


@pytest.mark.parametrize("kind", ["isohybrid", "isohybrid-efi", "appended"])
def test_hybrid_iso_live_media(tmp_path, kind):
    """The usual live USB image: an ISO that is also a partitioned disk (TYPE and PTTYPE both, like blkid)."""
    require_tools("blkid", "partx", "xorriso")
    import os

    if kind.startswith("isohybrid") and not (os.path.exists(ISOHYBRID_MBR) and os.path.exists(ISOLINUX_BIN)):
        pytest.skip("isolinux files missing (Debian package isolinux)")
    root = tmp_path / "root"
    (root / "live").mkdir(parents=True)
    (root / "live" / "filesystem.squashfs").write_bytes(images.filesystem("squashfs"))
    efi = tmp_path / "efi.img"
    efi.write_bytes(images.filesystem("vfat", label="EFIBOOT", size=2 << 20))
    argv = ["xorriso", "-as", "mkisofs", "-quiet", "-J", "-V", "LIVE_" + kind.upper().replace("-", "_")]
    if kind.startswith("isohybrid"):
        (root / "isolinux").mkdir()
        (root / "isolinux" / "isolinux.bin").write_bytes(open(ISOLINUX_BIN, "rb").read())
        argv += ["-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4",
                 "-boot-info-table", "-isohybrid-mbr", ISOHYBRID_MBR]
    if kind != "isohybrid":
        argv += ["-append_partition", "2", "0xef", str(efi)]
    path = tmp_path / "live.iso"
    sh(*argv, "-o", path, root)
    ours = assert_agrees(path)
    assert ours["TYPE"] == "iso9660" and ours["PTTYPE"] == "dos"
    parts = _check_table(path)
    assert parts[0]["PART_ENTRY_OFFSET"] == 0   # the ISO itself is partition 1


def _fat32_root(data):
    reserved, = struct.unpack_from("<H", data, 14)
    fats = data[16]
    fat32_len, = struct.unpack_from("<I", data, 36)
    return (reserved + fats * fat32_len) * 512


@pytest.mark.parametrize("root_label,boot_label", [
    (None, b"BOOTL      "),            # no root-dir entry: LABEL_FATBOOT only
    (b"BOOTL      ", b"NO NAME    "),  # root-dir entry only
    (b"NO NAME    ", b"BOOTL      "),  # blkid 2.38 reports a root-dir "NO NAME" as the LABEL
    (b"lower case ", b"Boot Lbl   "),  # both, different
])
def test_fat_label_sources(tmp_path, root_label, boot_label):
    require_tools("blkid")
    data = bytearray(images.filesystem("vfat", label="BOOTL", uuid="1111-2222"))
    root = _fat32_root(data)
    if root_label is None:
        data[root:root + 32] = bytes(32)
    else:
        data[root:root + 11] = root_label
    data[71:82] = boot_label
    path = tmp_path / "fat.img"
    path.write_bytes(bytes(data))
    assert_agrees(path)


@pytest.mark.parametrize("where, wipe", [(0x4000, 4096), (0x40000, 0x40000)])
def test_luks2_found_by_its_secondary_header(tmp_path, where, wipe):
    # 0x40000 with all before it wiped: past the head window, on a device whose head is blank (probe's fast path).
    require_tools("blkid")
    data = bytearray(images.filesystem("crypto_LUKS", label="vault", uuid=U1, size=1 << 21))
    second = bytearray(data[0:4096])
    second[0:6] = b"SKUL\xba\xbe"
    struct.pack_into(">Q", second, 256, where)
    data[where:where + 4096] = second
    data[0:wipe] = bytes(wipe)      # primary header wiped
    path = tmp_path / "luks.img"
    path.write_bytes(bytes(data))
    ours = assert_agrees(path)
    assert ours["UUID"] == U1 and ours["LABEL"] == "vault"


def test_iso_dates():
    assert probe._iso_date(b"2024010203040506\x00") == "2024-01-02-03-04-05-06"
    assert probe._iso_date(b"0000000000000000\x00") is None
    assert probe._iso_date(b"0000000000000000\x04") == "0000-00-00-00-00-00-00"
    assert probe._iso_date(b"2024\x00" + bytes(12)) == "2024-"
    assert probe._iso_date(bytes(17)) is None


class _CountingFile(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.reads = 0

    def readinto(self, b):
        self.reads += 1
        return super().readinto(b)


def test_reads_are_few_windows():
    # Issue 14: every prober looks into the head window (one read) instead of reading for itself: a blank 1 MiB
    # partition costs the head plus the LUKS2 secondary offsets past it (formerly 28 reads); a GPT disk's table,
    # checksums and entries come from the same head; a filesystem's probe stays within a handful of reads.
    blank = _CountingFile(bytes(1 << 20))
    assert probe.probe(blank, windows=True) == {} and blank.reads == 3
    disk = _CountingFile(images.disk([Partition(images.filesystem("ext4", label="root"))]))
    info = probe.probe(disk, windows=True)
    assert info["PTTYPE"] == "gpt" and disk.reads <= 10
    fs = _CountingFile(images.filesystem("vfat", label="BOOT", uuid="ABCD-1234"))
    info = probe.probe(fs, windows=True)
    assert info["LABEL"] == "BOOT" and fs.reads <= 10, fs.reads
    exact = _CountingFile(bytes(1 << 20))   # a caller's file object (capture.py): exactly the probers' reads
    assert probe.probe(exact) == {} and exact.reads > 20


@pytest.mark.parametrize("size", [1 << 20, 0x21000, 0x20001, 5000, 4096, 100])
def test_blank_head_sees_any_nonzero_byte(size):
    # The fast path for a blank device skips 14 of 16 probers: one non-zero byte anywhere in the head must not
    # look blank (the check compares doubling spans, so probe every span's edges).
    assert probe._Dev(io.BytesIO(bytes(size)), 0, size).blank()
    head = min(size, 0x21000)
    for pos in sorted({0, 1, 4095, 4096, 8191, 8192, 65535, 65536, 0x20000, head - 1}):
        if pos >= head:
            continue
        data = bytearray(size)
        data[pos] = 1
        assert not probe._Dev(io.BytesIO(bytes(data)), 0, size).blank(), pos


def test_image_type_reads_the_two_image_superblocks_only():
    from mpinit.testing import images

    sq = images.filesystem("squashfs", size=1 << 20)
    assert probe.image_type(io.BytesIO(sq)) == "squashfs" == probe.probe(io.BytesIO(sq))["TYPE"]
    assert probe.image_type(io.BytesIO(bytes(8192))) is None
    vfat = images.filesystem("vfat", label="L", size=1 << 20)
    assert probe.image_type(io.BytesIO(vfat)) is None
    old = bytearray(sq)
    struct.pack_into("<H", old, 28, 3)          # a squashfs 3.x superblock: not a live image the kernel mounts
    assert probe.image_type(io.BytesIO(bytes(old))) == "squashfs3"
    # a squashfs magic at 0 and an EROFS superblock at 1024, past floppy size (where the first result would win):
    # ambivalent for both
    both = bytearray(2 << 20)
    both[:4096] = sq[:4096]
    struct.pack_into("<IIIB", both, 1024, 0xE0F5E1E2, 0, 0, 12)
    assert probe.probe(io.BytesIO(bytes(both))) == {}
    assert probe.image_type(io.BytesIO(bytes(both))) is None


def test_image_type_opens_a_path(tmp_path):
    p = tmp_path / "x.squashfs"
    p.write_bytes(b"hsqs" + bytes(24) + struct.pack("<HH", 4, 0) + bytes(4064))
    assert probe.image_type(str(p)) == "squashfs"
    with pytest.raises(OSError):
        probe.image_type(str(tmp_path / "missing"))



def test_gpt_with_unused_entries_between_used_ones(tmp_path):
    # The entry walk stops at the first unused entry only when every entry after it is unused (probe._gpt): a table
    # with gaps (sgdisk -n 3 without a 2, and the last of 128 entries) still shows every partition.
    require_tools("partx", "sgdisk")
    path = sparse(tmp_path / "gaps.img", 16 << 20)
    sh(tool("sgdisk"), "-o", "-n", "1:2048:+1M", "-c", "1:one", "-n", "3:0:+1M", "-c", "3:three",
       "-n", "128:0:+1M", "-c", "128:last", path)
    parts = _check_table(path)
    assert [(p["PART_ENTRY_NUMBER"], p["PARTLABEL"]) for p in parts] == [(1, "one"), (3, "three"), (128, "last")]


class _ZeroDevice:
    """A blank device of `size` bytes that records where it is read."""

    def __init__(self, size):
        self.size = size
        self.pos = 0
        self.reads = []

    def seek(self, pos, whence=0):
        self.pos = pos if whence == 0 else self.size + pos if whence == 2 else self.pos + pos
        return self.pos

    def readinto(self, mv):
        n = max(0, min(len(mv), self.size - self.pos))
        if n:
            self.reads.append((self.pos, n))
            mv[:n] = bytes(n)
        self.pos += n
        return n


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.integers(0, 1 << 16).map(lambda n: n * 512), st.integers(0, 1 << 40)))
def test_reads_hold_every_read_of_a_blank_device_probe(size):
    # blockdev queues probe.reads() before a probe (read_ahead): on a blank device (what a search mostly meets) the
    # probe reads nothing outside them, so nothing it reads waits for the disk alone.
    dev = _ZeroDevice(size)
    assert probe.probe(dev, windows=True) == {}
    ranges = probe.reads(size)
    assert ranges[0][0] == 0 and all(0 <= off and n > 0 and off + n <= size for off, n in ranges) or size == 0
    for pos, n in dev.reads:
        assert any(off <= pos and pos + n <= off + length for off, length in ranges), (pos, n, ranges)
