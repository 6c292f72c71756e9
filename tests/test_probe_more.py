"""mpinit_agent.probe_more (NTFS, UDF, f2fs, EROFS, swsuspend, md RAID, LVM2, BitLocker) and the issue-13 label
rules of probe.py (FAT 0x05/0xE5 and code-page bytes, Joliet), against util-linux blkid 2.38.

Images come from the real tools at test time (a test skips naming the Debian package when its tool is missing).
md RAID members, LVM2 physical volumes and BitLocker volumes cannot be written to a plain file here (mdadm and
pvcreate want a block device, no md/dm/loop on a shared host, no Windows): those headers are built from the
on-disk formats below (md_p.h, lvm2's label.h, libbde's BDE format notes) and blkid is the judge.
"""

import io
import os
import shutil
import struct
import subprocess
import uuid as uuidlib
import zlib

import pytest

from test_probe import _fat32_root, assert_agrees, assert_runtime_agrees, sh, sparse
from mpinit.testing import images
from mpinit_agent import probe, probe_more

U1 = "0a1b2c3d-4e5f-4071-8293-a4b5c6d7e8f9"


def need(tool, package):
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if not path:
        pytest.skip("%s missing (Debian package %s)" % (tool, package))
    if not (shutil.which("blkid") or shutil.which("blkid", path="/usr/sbin:/sbin")):
        pytest.skip("blkid missing (Debian package util-linux)")
    return path


def blkid_raw(path):
    """(exit status, stdout) of blkid -p -o export: 8 is its "ambivalent result"."""
    blkid = shutil.which("blkid") or shutil.which("blkid", path="/usr/sbin:/sbin")
    proc = subprocess.run([blkid, "-p", "-o", "export", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc.returncode, proc.stdout.decode("latin-1")


def put(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


# ---- NTFS (mkntfs from ntfs-3g) ------------------------------------------------------------------------------------

@pytest.mark.parametrize("opts", [
    ["-L", "Win Stick"], ["-L", "Ünïcode ISOs €"], [], ["-s", "4096", "-L", "4k"], ["-s", "1024", "-c", "8192"],
    ["-c", "65536", "-L", "big clusters"], ["-L", "A" * 32],
])
def test_ntfs(tmp_path, opts):
    mkntfs = need("mkntfs", "ntfs-3g")
    path = sparse(tmp_path / "ntfs.img", 16 << 20)
    sh(mkntfs, "-q", "-Q", "-F", *opts, path)
    ours = assert_agrees(path)
    assert ours["TYPE"] == "ntfs" and len(ours["UUID"]) == 16
    if "-L" in opts:
        assert ours["LABEL"] == opts[opts.index("-L") + 1]


# ---- UDF (mkudffs from udftools; a UDF bridge from genisoimage -udf) --------------------------------------------

UDF_CASES = [(rev, bs, "hd") for rev in ("1.01", "1.02", "1.50", "2.00", "2.01") for bs in (512, 1024, 2048, 4096)]
UDF_CASES += [(rev, 2048, media) for rev in ("2.50", "2.60") for media in ("dvdr", "cdr", "bdr")]
UDF_CASES += [("2.01", 2048, media) for media in ("cdrw", "dvdrw", "dvdram")]


@pytest.mark.parametrize("rev,bs,media", UDF_CASES)
def test_udf_revisions_and_block_sizes(tmp_path, rev, bs, media):
    mkudffs = need("mkudffs", "udftools")
    path = sparse(tmp_path / "udf.img", 64 << 20)
    proc = subprocess.run([mkudffs, "--utf8", "-m", media, "-r", rev, "-b", str(bs), "--label=Live Ünï " + rev,
                           str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        pytest.fail("mkudffs -r %s -b %d -m %s: %s" % (rev, bs, media, proc.stderr.strip()))
    ours = assert_agrees(path)
    assert ours["TYPE"] == "udf" and ours["VERSION"] == rev and ours["BLOCK_SIZE"] == str(bs)
    assert ours["LABEL"] == "Live Ünï " + rev


@pytest.mark.parametrize("opts", [
    ["--utf8", "--label=Ünï €"],                  # outside Latin-1: 16-bit characters (compression ID 16)
    ["--utf8", "--label=Ünï"],                    # Latin-1 fits: 8-bit characters (compression ID 8)
    ["--label=LINUXUDF", "--uuid=0123456789abcdef"],
    ["--fullvsid=deadbeefzzzzzzzzLinuxUDF"],      # 8 hex digits then others: hex of bytes 8..11
    ["--fullvsid=not hex at all"],                 # hex of the first 8 bytes
    ["--fullvsid=short"],                          # under 8 bytes: no UUID
    ["--label=  spaces  "],
])
def test_udf_labels_and_uuids(tmp_path, opts):
    mkudffs = need("mkudffs", "udftools")
    path = sparse(tmp_path / "udf.img", 16 << 20)
    proc = subprocess.run([mkudffs] + opts + [str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=dict(os.environ, LC_ALL="C.UTF-8"))
    if proc.returncode != 0:
        pytest.fail("mkudffs %s: %s" % (opts, proc.stderr.decode(errors="replace")))
    assert assert_agrees(path)["TYPE"] == "udf"


def test_udf_bridge_disc_is_udf(tmp_path):
    """genisoimage -udf writes ISO 9660 and UDF side by side; libblkid reports udf (it probes UDF first and both
    are tolerant of the other)."""
    genisoimage = need("genisoimage", "genisoimage")
    root = tmp_path / "root"
    (root / "live").mkdir(parents=True)
    (root / "live" / "filesystem.squashfs").write_bytes(images.filesystem("squashfs"))
    path = tmp_path / "bridge.iso"
    sh(genisoimage, "-quiet", "-udf", "-J", "-V", "BRIDGE_LIVE", "-o", path, root)
    ours = assert_agrees(path)
    assert ours["TYPE"] == "udf" and ours["LABEL"] == "BRIDGE_LIVE"
    # Without -udf it stays iso9660.
    plain = tmp_path / "plain.iso"
    sh(genisoimage, "-quiet", "-J", "-V", "PLAIN", "-o", plain, root)
    assert assert_agrees(plain)["TYPE"] == "iso9660"


@pytest.mark.parametrize("opts,label", [
    (["-J", "-V", "Short"], "Short"),
    (["-J", "-joliet-long", "-input-charset", "utf-8", "-V", "Ünïcode Live 2024"], None),
    (["-V", "NOJOLIET_LABEL"], "NOJOLIET_LABEL"),
])
def test_genisoimage_joliet_labels(tmp_path, opts, label):
    genisoimage = need("genisoimage", "genisoimage")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "f").write_text("x")
    path = tmp_path / "cd.iso"
    sh(genisoimage, "-quiet", *opts, "-o", path, tmp_path / "root")
    ours = assert_agrees(path)
    if label:
        assert ours["LABEL"] == label


# ---- f2fs and EROFS ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("opts", [["-l", "flash"], ["-l", "Flásh Ü"], [], ["-O", "extra_attr,inode_checksum"],
                                  ["-O", "sb_checksum", "-l", "csum"], ["-U", U1, "-l", "u"]])
def test_f2fs(tmp_path, opts):
    mkfs = need("mkfs.f2fs", "f2fs-tools")
    path = sparse(tmp_path / "f2fs.img", 64 << 20)
    proc = subprocess.run([mkfs, "-q", "-f"] + opts + [str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        pytest.skip("mkfs.f2fs %s not supported by this f2fs-tools: %s" % (opts, proc.stderr.decode().strip()))
    ours = assert_agrees(path)
    assert ours["TYPE"] == "f2fs"


def test_f2fs_superblock_checksum_is_verified(tmp_path):
    mkfs = need("mkfs.f2fs", "f2fs-tools")
    path = sparse(tmp_path / "f2fs.img", 64 << 20)
    proc = subprocess.run([mkfs, "-q", "-f", "-O", "sb_checksum", str(path)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    if proc.returncode != 0:
        pytest.skip("mkfs.f2fs -O sb_checksum not supported here")
    data = bytearray(path.read_bytes()[:1 << 20])
    csum_off, = struct.unpack_from("<I", data, 1024 + 0x20)
    assert csum_off, "sb_checksum gave no checksum offset"
    assert probe.probe(io.BytesIO(bytes(data)))["TYPE"] == "f2fs"
    data[1024 + 0x7C] ^= 0x20       # the label changes, the checksum does not: util-linux 2.39+ refuses it
    assert probe.probe(io.BytesIO(bytes(data))) == {}


def _erofs_root(tmp_path):
    root = tmp_path / "root"
    (root / "sbin").mkdir(parents=True)
    (root / "sbin" / "init").write_text("#!/bin/sh\n" + "x" * 5000)
    os.chmod(root / "sbin" / "init", 0o755)
    (root / "etc").mkdir()
    (root / "etc" / "os-release").write_text("NAME=test\n")
    return root


@pytest.mark.parametrize("opts", [[], ["-U", U1], ["-zlz4hc"], ["-zlz4", "-T", "0"], ["-x", "-1"]])
def test_erofs(tmp_path, opts):
    mkfs = need("mkfs.erofs", "erofs-utils")
    path = tmp_path / "root.erofs"
    proc = subprocess.run([mkfs, "--quiet"] + opts + [str(path), str(_erofs_root(tmp_path))],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        pytest.skip("mkfs.erofs %s not supported by this erofs-utils: %s" % (opts, proc.stderr.decode().strip()))
    ours = assert_agrees(path)
    assert ours["TYPE"] == "erofs" and ours["BLOCK_SIZE"] == "4096"
    if "-U" in opts:
        assert ours["UUID"] == U1


def _erofs_fix_csum(data):
    sb = bytearray(data[1024:4096])
    sb[4:8] = bytes(4)
    struct.pack_into("<I", data, 1028, probe_more._crc32c(sb, 0xFFFFFFFF))


def test_erofs_label_and_crc(tmp_path):
    """mkfs.erofs 1.5 has no label option: the volume name is written into a real image (CRC recomputed), and a
    wrong CRC is refused."""
    mkfs = need("mkfs.erofs", "erofs-utils")
    path = tmp_path / "root.erofs"
    sh(mkfs, "--quiet", path, _erofs_root(tmp_path))
    data = bytearray(path.read_bytes())
    compat, = struct.unpack_from("<I", data, 1024 + 8)
    assert compat & 1, "mkfs.erofs wrote no superblock checksum"
    data[1024 + 64:1024 + 80] = b"Fedora-Live\x00\x00\x00\x00\x00"
    _erofs_fix_csum(data)
    path.write_bytes(bytes(data))
    assert assert_agrees(path)["LABEL"] == "Fedora-Live"
    data[1024 + 70] ^= 1
    assert probe.probe(io.BytesIO(bytes(data))) == {}


def test_crc32c_known_answer():
    # RFC 3720 B.4: CRC-32C of 32 bytes of zeros is 0x8A9136AA (with the usual inversion before and after).
    assert probe_more._crc32c(bytes(32), 0xFFFFFFFF) ^ 0xFFFFFFFF == 0x8A9136AA


# ---- swap and hibernation ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [b"S1SUSPEND", b"S2SUSPEND", b"ULSUSPEND", b"LINHIB0001"])
@pytest.mark.parametrize("pagesize", [4096, 65536])
def test_swsuspend(tmp_path, sig, pagesize):
    """A hibernated swap: mkswap's area whose SWAPSPACE2 the kernel replaced with its own signature
    (kernel/power/swap.c mark_swapfiles: HIBERNATE_SIG "S1SUSPEND" at the end of the first page)."""
    mkswap = need("mkswap", "util-linux")
    path = sparse(tmp_path / "swap.img", 4 << 20)
    sh(mkswap, "-p", str(pagesize), "-L", "hiber", "-U", U1, path)
    put(path, pagesize - 10, sig + b"\x00" * (10 - len(sig)))
    ours = assert_agrees(path)
    assert ours["TYPE"] == "swsuspend" and ours["UUID"] == U1 and ours["LABEL"] == "hiber"


def test_swap_page_sizes_and_small_areas(tmp_path):
    mkswap = need("mkswap", "util-linux")
    for pagesize in (4096, 8192, 16384, 65536):
        path = sparse(tmp_path / ("swap%d.img" % pagesize), 2 << 20)
        sh(mkswap, "-p", str(pagesize), path)
        assert assert_agrees(path)["TYPE"] == "swap"
    small = sparse(tmp_path / "small.img", 9 * 4096)   # below libblkid's 10 pages: not a swap area
    data = bytearray(9 * 4096)
    data[4086:4096] = b"SWAPSPACE2"
    struct.pack_into("<II", data, 1024, 1, 8)
    small.write_bytes(bytes(data))
    assert probe.probe(str(small)) == {}


# ---- md RAID members (include/uapi/linux/raid/md_p.h), built from the format ---------------------------------

def md1_superblock(offset_sectors, name=b"host:live", set_uuid=None, dev_uuid=None):
    sb = bytearray(256)
    struct.pack_into("<IIII", sb, 0, 0xA92B4EFC, 1, 0, 0)
    sb[16:32] = set_uuid or uuidlib.UUID(U1).bytes
    sb[32:32 + len(name)] = name
    struct.pack_into("<QIIQIII", sb, 64, 1700000000, 1, 0, 2048, 128, 2, 0)
    struct.pack_into("<QQQQII", sb, 128, 0, 2048, offset_sectors, 0, 0, 0)
    sb[168:184] = dev_uuid or uuidlib.UUID("11111111-2222-4333-8444-555555555555").bytes
    return bytes(sb)


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_md_v1(tmp_path, version):
    need("blkid", "util-linux")
    size = 8 << 20
    off = {"1.0": (size & ~0xFFF) - 0x2000, "1.1": 0, "1.2": 0x1000}[version]
    path = sparse(tmp_path / "md.img", size)
    put(path, off, md1_superblock(off >> 9))
    ours = assert_agrees(path)
    assert ours["TYPE"] == "linux_raid_member" and ours["VERSION"] == version and ours["UUID"] == U1
    assert ours["LABEL"] == "host:live" and ours["UUID_SUB"] == "11111111-2222-4333-8444-555555555555"


@pytest.mark.parametrize("order", ["<", ">"])
def test_md_v090(tmp_path, order):
    need("blkid", "util-linux")
    size = 8 << 20
    off = (size & ~0xFFFF) - 0x10000
    sb = bytearray(4096)
    u = uuidlib.UUID(U1).bytes
    w = struct.unpack(">4I", u)
    struct.pack_into(order + "9I", sb, 0, 0xA92B4EFC, 0, 90, 3, 0, w[0], 1700000000, 1, 4096)
    struct.pack_into(order + "3I", sb, 52, w[1], w[2], w[3])
    path = sparse(tmp_path / "md.img", size)
    put(path, off, bytes(sb))
    ours = assert_agrees(path)
    assert ours["TYPE"] == "linux_raid_member" and ours["VERSION"] == "0.90.3" and ours["UUID"] == U1


def test_md_member_wins_over_its_filesystem(tmp_path):
    """md 1.0 keeps the superblock at the end, so a RAID1 member also shows the array's filesystem at offset 0:
    the member must be reported as linux_raid_member (never mounted on its own)."""
    need("mkfs.ext4", "e2fsprogs")
    size = 8 << 20
    path = sparse(tmp_path / "md.img", size)
    sh(shutil.which("mkfs.ext4") or "/usr/sbin/mkfs.ext4", "-q", "-F", "-L", "inside", path, "7000")
    off = (size & ~0xFFF) - 0x2000
    put(path, off, md1_superblock(off >> 9))
    assert assert_agrees(path)["TYPE"] == "linux_raid_member"


# ---- LVM2 physical volumes (lvm2 lib/label/label.h, lib/format_text/layout.h), built from the format --------------

def lvm_label(sector=1, pv_uuid=b"AbCdEf0123456789GhIjKlMnOpQrStUv", corrupt=False):
    lab = bytearray(512)
    lab[0:8] = b"LABELONE"
    struct.pack_into("<QII", lab, 8, sector, 0, 32)
    lab[24:32] = b"LVM2 001"
    lab[32:64] = pv_uuid
    struct.pack_into("<Q", lab, 64, 8 << 20)   # pv size
    crc = probe_more._lvm_crc(lab[20:512])
    struct.pack_into("<I", lab, 16, crc ^ (1 if corrupt else 0))
    return bytes(lab)


@pytest.mark.parametrize("sector", [0, 1, 2, 3])
def test_lvm2_member(tmp_path, sector):
    need("blkid", "util-linux")
    path = sparse(tmp_path / "pv.img", 8 << 20)
    put(path, sector * 512, lvm_label(sector))
    ours = assert_agrees(path)
    assert ours["TYPE"] == "LVM2_member" and ours["UUID"] == "AbCdEf-0123-4567-89Gh-IjKl-MnOp-QrStUv"


def test_lvm2_bad_crc_is_nothing(tmp_path):
    need("blkid", "util-linux")
    path = sparse(tmp_path / "pv.img", 8 << 20)
    put(path, 512, lvm_label(1, corrupt=True))
    assert assert_agrees(path) == {}


def test_lvm_crc_matches_the_nibble_table():
    # lvm2's calc_crc is the reflected CRC-32 (0xEDB88320) without inversions, seeded with 0xf597a6cf.
    data = bytes(range(200))
    crc = 0xF597A6CF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xEDB88320 if crc & 1 else crc >> 1
    assert probe_more._lvm_crc(data) == crc


# ---- BitLocker (libbde's format notes), built from the format ----------------------------------------------------

@pytest.mark.parametrize("kind", ["win7", "togo", "vista", "win7-serial"])
def test_bitlocker(tmp_path, kind):
    need("blkid", "util-linux")
    hdr = bytearray(512)
    hdr[510:512] = b"\x55\xaa"
    fve = 0x200000
    if kind.startswith("win7"):
        hdr[0:11] = b"\xeb\x58\x90-FVE-FS-"
        struct.pack_into("<Q", hdr, 176, fve)
        if kind == "win7-serial":
            struct.pack_into("<I", hdr, 67, 123456)
    elif kind == "togo":
        hdr[0:11] = b"\xeb\x58\x90MSWIN4.1"
        struct.pack_into("<Q", hdr, 440, fve)
    else:
        hdr[0:11] = b"\xeb\x52\x90-FVE-FS-"
    path = sparse(tmp_path / "bl.img", 8 << 20)
    put(path, 0, bytes(hdr))
    put(path, fve, b"-FVE-FS-" + struct.pack("<HH", 0x100, 2))
    ours = assert_agrees(path)
    assert ours["TYPE"] == "BitLocker" and ours["USAGE"] == "crypto"


# ---- FAT labels: 0x05 and code-page bytes (vfat.c search_fat_label) ----------------------------------------------

@pytest.mark.parametrize("label", [
    b"\x05TIQUETTE  ",      # 0x05 stands for a first byte 0xE5 (0xE5 itself marks a free entry)
    b"\xe5TIQUETTE  ",      # a free entry: not the label
    b"CAF\x90 \x80\xa5   ",  # code page 437/850 bytes: blkid passes them through raw
    b"\x82T\x82 LIVE   ",
])
def test_fat_label_first_byte_and_codepage(tmp_path, label):
    need("blkid", "util-linux")
    data = bytearray(images.filesystem("vfat", label="BOOTL", uuid="1111-2222"))
    root = _fat32_root(data)
    data[root:root + 11] = label
    path = tmp_path / "fat.img"
    path.write_bytes(bytes(data))
    assert_agrees(path)


# ---- safe probing: two filesystems on one device -----------------------------------------------------------------

def test_ambivalent_device_is_nothing(tmp_path):
    """An f2fs superblock (at 1 KiB) with a stale squashfs header at 0: blkid -p refuses to choose (exit 8), and so
    does the agent: such a device is never mounted as either."""
    mkfs = need("mkfs.f2fs", "f2fs-tools")
    path = sparse(tmp_path / "two.img", 64 << 20)
    sh(mkfs, "-q", "-f", path)
    sq = images.filesystem("squashfs")
    put(path, 0, sq[:96])
    rc, text = blkid_raw(path)
    assert rc == 8 and "TYPE=" not in text, (rc, text)
    assert probe.probe(str(path)) == {}


def test_zlib_crc_is_what_gpt_uses():
    assert probe._crc32_py(b"abc", 0) == zlib.crc32(b"abc")


@pytest.mark.runtime
def test_same_results_under_micropython(runtime_binary, tmp_path):
    """The frozen probe_more under the built /init gives the same dicts as CPython, on images from the real tools
    (those installed) and the format-built ones."""
    paths = []

    def made(name, size, argv):
        exe = shutil.which(argv[0]) or shutil.which(argv[0], path="/usr/sbin:/sbin")
        if exe:
            p = sparse(tmp_path / name, size)
            if subprocess.run([exe] + argv[1:] + [str(p)], capture_output=True).returncode == 0:
                paths.append(p)

    made("ntfs.img", 8 << 20, ["mkntfs", "-q", "-Q", "-F", "-L", "Ünï NTFS"])
    made("udf.img", 8 << 20, ["mkudffs", "--utf8", "--label=Ünï €"])
    made("udf4k.img", 8 << 20, ["mkudffs", "-b", "4096", "--label=four"])
    made("f2fs.img", 64 << 20, ["mkfs.f2fs", "-q", "-f", "-l", "Flásh"])
    made("swap.img", 1 << 20, ["mkswap", "-L", "hib"])
    if paths and paths[-1].name == "swap.img":
        put(paths[-1], 4086, b"S1SUSPEND\x00")
    md = sparse(tmp_path / "md.img", 8 << 20)
    put(md, 0x1000, md1_superblock(8))
    pv = sparse(tmp_path / "pv.img", 8 << 20)
    put(pv, 512, lvm_label(1))
    paths += [md, pv]
    erofs = shutil.which("mkfs.erofs")
    if erofs:
        e = tmp_path / "root.erofs"
        subprocess.run([erofs, "--quiet", str(e), str(_erofs_root(tmp_path))], check=True)
        paths.append(e)
    assert_runtime_agrees(runtime_binary, tmp_path, paths)
