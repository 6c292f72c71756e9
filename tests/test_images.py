"""mpinit.testing.images: every synthetic image is checked by util-linux `blkid -p` (and partx for tables)."""

import shlex
import subprocess

import pytest

from conftest import require_tools
from mpinit.testing import images
from mpinit.testing.images import Partition, blkid_export, disk, filesystem

U1 = "11111111-2222-3333-4444-555555555555"

# (fstype, label, uuid, size, the blkid keys that must appear with these values)
CASES = [
    ("vfat", "BOOT", "1234-ABCD", 1 << 20, {"TYPE": "vfat", "LABEL": "BOOT", "UUID": "1234-ABCD", "VERSION": "FAT32"}),
    ("vfat", None, "00FF-0a0b", 1 << 20, {"TYPE": "vfat", "UUID": "00FF-0A0B"}),
    ("fat16", "F16", "DEAD-BEEF", 3 << 20, {"TYPE": "vfat", "LABEL": "F16", "UUID": "DEAD-BEEF", "VERSION": "FAT16"}),
    ("fat12", "F12", "0000-0001", 1 << 20, {"TYPE": "vfat", "LABEL": "F12", "UUID": "0000-0001", "VERSION": "FAT12"}),
    ("ext4", "root fs", U1, 1 << 20, {"TYPE": "ext4", "LABEL": r"root\ fs", "UUID": U1}),
    ("ext2", "e2", U1.upper(), 1 << 20, {"TYPE": "ext2", "LABEL": "e2", "UUID": U1}),
    ("iso9660", "ARCH_202401", "2024-01-02-03-04-05-06", 1 << 20,
     {"TYPE": "iso9660", "LABEL": "ARCH_202401", "UUID": "2024-01-02-03-04-05-06"}),
    ("iso9660", "Mixed case label", "2024-01-02-03-04-05-00", 1 << 20,
     {"TYPE": "iso9660", "LABEL": r"Mixed\ case\ label", "VERSION": r"Joliet\ Extension"}),
    ("squashfs", None, None, 1 << 20, {"TYPE": "squashfs", "VERSION": "4.0"}),
    ("exfat", "Ünï", "0123-4567", 4 << 20, {"TYPE": "exfat", "UUID": "0123-4567", "LABEL": "M-CM-^\\nM-CM-/"}),
    ("swap", "sw", U1, 1 << 20, {"TYPE": "swap", "LABEL": "sw", "UUID": U1, "VERSION": "1"}),
    ("btrfs", "data", U1, 2 << 20, {"TYPE": "btrfs", "LABEL": "data", "UUID": U1}),
    ("xfs", "xdata", U1, 2 << 20, {"TYPE": "xfs", "LABEL": "xdata", "UUID": U1}),
    ("crypto_LUKS", "vault", U1, 1 << 20, {"TYPE": "crypto_LUKS", "LABEL": "vault", "UUID": U1, "VERSION": "2"}),
    ("crypto_LUKS1", None, U1, 1 << 20, {"TYPE": "crypto_LUKS", "UUID": U1, "VERSION": "1"}),
]


@pytest.mark.parametrize("fstype,label,uuid,size,want", CASES, ids=[c[0] + "-" + str(i) for i, c in enumerate(CASES)])
def test_filesystem_is_what_blkid_sees(tmp_path, fstype, label, uuid, size, want):
    require_tools("blkid")
    data = filesystem(fstype, label=label, uuid=uuid, size=size)
    assert len(data) == size
    path = tmp_path / "fs.img"
    path.write_bytes(data)
    got = blkid_export(path)
    for key, value in want.items():
        assert got.get(key) == value, (key, got)
    if label is None:
        assert "LABEL" not in got


def test_random_uuids_differ_and_are_seen(tmp_path):
    require_tools("blkid")
    seen = set()
    for i in range(2):
        path = tmp_path / ("%d.img" % i)
        path.write_bytes(filesystem("ext4"))
        seen.add(blkid_export(path)["UUID"])
    assert len(seen) == 2


def test_fat_without_label_has_no_label_entry(tmp_path):
    require_tools("blkid")
    path = tmp_path / "f.img"
    path.write_bytes(filesystem("vfat", uuid="0001-0002"))
    got = blkid_export(path)
    assert "LABEL" not in got and "LABEL_FATBOOT" not in got  # boot sector holds "NO NAME"


@pytest.mark.parametrize("fstype,kw,words", [
    ("ntfs", {}, "not one of"),
    ("ext4", {"uuid": "nope"}, "ext4 uuid 'nope'"),
    ("vfat", {"uuid": "12345678"}, "XXXX-XXXX"),
    ("vfat", {"label": "TWELVE CHARS"}, "longer than 11"),
    ("ext4", {"label": "x" * 17}, "longer than 16"),
    ("iso9660", {"uuid": "2024-01-02"}, "YYYY-MM-DD"),
    ("squashfs", {"label": "x"}, "no label"),
    ("fat16", {}, "FAT16 at least 4085"),
    ("crypto_LUKS1", {"label": "x"}, "no label"),
    ("ext4", {"size": 1000}, "multiple of 512"),
])
def test_bad_input_names_it(fstype, kw, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        filesystem(fstype, **kw)


def _partx(path):
    """partx's view of a disk image's table: one [NR, START, SECTORS, UUID, NAME, TYPE, FLAGS] per partition."""
    out = subprocess.run(["partx", "-P", "-o", "NR,START,SECTORS,UUID,NAME,TYPE,FLAGS", str(path)],
                         stdout=subprocess.PIPE, check=True, text=True).stdout
    return [[value.partition("=")[2] for value in shlex.split(line)] for line in out.splitlines()]


def test_gpt_disk(tmp_path):
    require_tools("blkid", "partx", "sgdisk")
    efi = filesystem("vfat", label="EFI", uuid="1234-ABCD")
    root = filesystem("ext4", label="root", uuid=U1, size=3 << 20)
    data = disk([Partition(efi, partlabel="EFI", type="esp", partuuid="AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE"),
                 Partition(root, partlabel="rootfs", partuuid="01234567-89ab-cdef-0123-456789abcdef")],
                disk_uuid="12345678-1234-1234-1234-123456789ABC")
    path = tmp_path / "g.img"
    path.write_bytes(data)
    assert blkid_export(path) == {"PTUUID": "12345678-1234-1234-1234-123456789abc", "PTTYPE": "gpt"}
    verify = subprocess.run(["sgdisk", "-v", str(path)], stdout=subprocess.PIPE, text=True)
    assert verify.returncode == 0 and "No problems found" in verify.stdout, verify.stdout
    rows = _partx(path)
    assert rows == [
        ["1", "2048", "2048", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "EFI", images.GPT_TYPES["esp"], "0x0"],
        ["2", "4096", "6144", "01234567-89ab-cdef-0123-456789abcdef", "rootfs", images.GPT_TYPES["linux"], "0x0"],
    ]
    assert blkid_export(path, offset=2048 * 512)["LABEL"] == "EFI"
    assert blkid_export(path, offset=4096 * 512)["UUID"] == U1
    # 1 MiB aligned, plus room for the backup table at the end.
    assert len(data) == (4096 + 6144 + 33) * 512


def test_mbr_disk(tmp_path):
    require_tools("blkid", "partx")
    boot = filesystem("vfat", label="BOOT")
    root = filesystem("ext2", label="r")
    path = tmp_path / "m.img"
    path.write_bytes(disk([Partition(boot, bootable=True, type="fat32"), Partition(root)], table="dos",
                          signature=0xDEADBEEF))
    assert blkid_export(path) == {"PTUUID": "deadbeef", "PTTYPE": "dos"}
    assert _partx(path) == [["1", "2048", "2048", "deadbeef-01", "", "0xc", "0x80"],
                            ["2", "4096", "2048", "deadbeef-02", "", "0x83", "0x0"]]
    assert blkid_export(path, offset=4096 * 512)["TYPE"] == "ext2"


def test_disk_size_and_bad_tables():
    part = Partition(b"x" * 100)
    data = disk([part], size=8 << 20)
    assert len(data) == 8 << 20 and data[1 << 20] == ord("x")
    with pytest.raises(ValueError, match="disk size"):
        disk([part], size=1 << 20)
    with pytest.raises(ValueError, match="want \"gpt\" or \"dos\""):
        disk([part], table="apm")
    with pytest.raises(ValueError, match="GPT settings"):
        disk([Partition(b"", partlabel="x")], table="dos")
    with pytest.raises(ValueError, match="4 primary"):
        disk([part] * 5, table="dos")
    with pytest.raises(ValueError, match="disk signature"):
        disk([part], table="dos", signature="xyz")
    with pytest.raises(ValueError, match="partition 1 partuuid"):
        disk([Partition(b"", partuuid="nope")])
    with pytest.raises(ValueError, match="want bytes"):
        Partition("text")
