"""mpinit live-image / live-iso: the MBR and partition (checked with sfdisk), the FAT contents (mtools), the boot
loader configs, the ISO (xorriso's own report), and bad inputs refused with nothing written. Booting the media is
tests/e2e/test_live_media.py."""

import hashlib
import json
import os
import struct
import subprocess

import pytest

from conftest import require_tools
from mpinit import cli, fat, liveimage

MIB = 1024 * 1024


def _kernel(path, size=2 * MIB):
    """Enough of a bzImage for our checks: the "HdrS" boot protocol magic at 0x202 (boot loaders never run it)."""
    data = bytearray(os.urandom(size))
    data[0x202:0x206] = b"HdrS"
    path.write_bytes(bytes(data))
    return path


def _squashfs(path, size=3 * MIB):
    path.write_bytes(b"hsqs" + os.urandom(size - 4))
    return path


@pytest.fixture
def parts(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    initrd = d / "initrd.img"
    initrd.write_bytes(os.urandom(MIB + 123))
    return _kernel(d / "vmlinuz"), initrd, _squashfs(d / "fs.squashfs")


def _sfdisk(image):
    out = subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["partitiontable"]


# --- pure pieces ---------------------------------------------------------------------------------------------

def test_chs_encoding():
    assert liveimage.chs(0) == bytes((0, 1, 0))             # C0 H0 S1
    assert liveimage.chs(2048) == bytes((32, 33, 0))        # 2048 = (0*255 + 32)*63 + 32
    assert liveimage.chs(255 * 63 * 300) == bytes((0, 1 | ((300 >> 2) & 0xC0), 300 & 0xFF))
    assert liveimage.chs(255 * 63 * 5000) == bytes((254, 0xFF, 0xFF))  # beyond CHS: 1023/254/63


def test_mbr_layout():
    code = bytes(range(200)) * 2 + b"x" * 40
    s = liveimage.mbr(code, 2048, 100000, 0x12345678)
    assert len(s) == 512 and s[:440] == code and s[510:] == b"\x55\xaa"
    assert struct.unpack("<I", s[440:444])[0] == 0x12345678
    e = s[446:462]
    assert e[0] == 0x80 and e[4] == 0x0C
    assert struct.unpack("<II", e[8:16]) == (2048, 100000)
    assert s[462:510] == bytes(48)  # the other three entries empty
    with pytest.raises(liveimage.LiveError, match="441 bytes"):
        liveimage.mbr(b"x" * 441, 2048, 1, 0)


def test_mbr_read_back_by_sfdisk(tmp_path):
    require_tools("sfdisk")
    img = tmp_path / "d.img"
    with open(img, "wb") as f:
        f.write(liveimage.mbr(b"", 2048, 65536, 0xCAFE0001))
        f.truncate((2048 + 65536) * 512)
    pt = _sfdisk(img)
    assert pt["label"] == "dos" and pt["id"] == "0xcafe0001"
    (p,) = pt["partitions"]
    assert (p["start"], p["size"], p["type"], p.get("bootable")) == (2048, 65536, "c", True)


def test_plan_disk_minimum_and_growth():
    small = liveimage.plan_disk([1000])
    assert small.part_start == MIB and small.part_size >= fat.MIN_FAT32_BYTES
    assert small.total_size == small.part_start + small.part_size and small.part_size % MIB == 0
    sizes = [900 * MIB, 10 * MIB, 40 * MIB]
    big = liveimage.plan_disk(sizes)
    assert big.part_size >= sum(sizes) * 1.05 and big.part_size < sum(sizes) * 1.2


def test_cmdline_rules():
    assert liveimage.cmdline("live:LABEL=X", " console=ttyS0  quiet ") == "root=live:LABEL=X console=ttyS0  quiet"
    assert liveimage.cmdline("live:LABEL=X") == "root=live:LABEL=X"
    with pytest.raises(liveimage.LiveError, match="root= of its own"):
        liveimage.cmdline("live:LABEL=X", "quiet root=/dev/sda1")
    with pytest.raises(liveimage.LiveError, match="one line"):
        liveimage.cmdline("live:LABEL=X", "a\nb")
    with pytest.raises(liveimage.LiveError, match="at most 2047"):
        liveimage.cmdline("live:LABEL=X", "x" * 2100)
    assert liveimage.cmdline("live:LABEL=X", "rootwait") == "root=live:LABEL=X rootwait"  # not a root=


def test_configs_hold_the_command_line():
    cfg = liveimage.syslinux_cfg("root=live:LABEL=A quiet")
    lines = [l.strip() for l in cfg.splitlines()]
    assert "DEFAULT live" in lines and "LABEL live" in lines and "TIMEOUT 0" in lines
    assert "KERNEL /vmlinuz" in lines and "INITRD /initrd.img" in lines
    assert "APPEND root=live:LABEL=A quiet" in lines
    g = [l.strip() for l in liveimage.grub_cfg("root=live:LABEL=A quiet").splitlines()]
    assert "linux /vmlinuz root=live:LABEL=A quiet" in g and "initrd /initrd.img" in g


@pytest.mark.parametrize("label", ["", "lower", "TWELVE_CHARS", "SP ACE", "É"])
def test_bad_fat_labels(label):
    with pytest.raises(fat.FatError, match="--label"):
        fat.check_label(label)


@pytest.mark.parametrize("label", ["", "lower", "A" * 33, "A.B"])
def test_bad_iso_labels(label):
    with pytest.raises(liveimage.LiveError, match="--label"):
        liveimage.check_iso_label(label)


def test_check_inputs(parts, tmp_path):
    kernel, initrd, sq = parts
    assert liveimage.check_inputs(kernel, initrd, sq).kernel == kernel
    with pytest.raises(liveimage.LiveError, match="--kernel .*nope: no such file"):
        liveimage.check_inputs(tmp_path / "nope", initrd, sq)
    with pytest.raises(liveimage.LiveError, match="--kernel .*: not an x86 bzImage"):
        liveimage.check_inputs(initrd, initrd, sq)
    with pytest.raises(liveimage.LiveError, match="--squashfs .*: not a squashfs image"):
        liveimage.check_inputs(kernel, initrd, initrd)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(liveimage.LiveError, match="--initrd .*empty: empty file"):
        liveimage.check_inputs(kernel, empty, sq)
    with pytest.raises(liveimage.LiveError, match="--initrd .*: not a regular file"):
        liveimage.check_inputs(kernel, tmp_path, sq)


# --- the disk image ------------------------------------------------------------------------------------------

def _need_disk_tools():
    require_tools("mformat", "mcopy", "mmd", "mdir", "syslinux", "sfdisk")


def test_disk_image_layout(parts, tmp_path):
    _need_disk_tools()
    kernel, initrd, sq = parts
    out = tmp_path / "live.img"
    plan = liveimage.build_disk_image(kernel, initrd, sq, out, label="MYLIVE", append="console=ttyS0 quiet")
    assert out.stat().st_size == plan.total_size
    raw = out.read_bytes()
    assert raw[:440] == liveimage.SYSLINUX_MBR.read_bytes()  # SYSLINUX's MBR code
    pt = _sfdisk(out)
    (p,) = pt["partitions"]
    assert (p["start"], p["type"], p.get("bootable")) == (2048, "c", True)
    assert p["size"] * 512 == plan.part_size
    off = p["start"] * 512
    # the FAT32 boot sector: "FAT32   " type string at 0x52, hidden sectors (= partition start) at 0x1c
    assert raw[off + 0x52:off + 0x5A] == b"FAT32   "
    assert struct.unpack("<I", raw[off + 0x1C:off + 0x20])[0] == 2048
    assert fat.volume_label(out, off) == "MYLIVE"
    names = fat.listing(out, off)
    for want in ("/vmlinuz", "/initrd.img", "/syslinux/syslinux.cfg", "/syslinux/ldlinux.sys",
                 "/syslinux/ldlinux.c32", "/live/filesystem.squashfs", "/live/filesystem.squashfs.sha256"):
        assert want in names
    assert not [n for n in names if n.startswith("/EFI")]
    assert fat.read_file(out, off, "/vmlinuz") == kernel.read_bytes()
    assert fat.read_file(out, off, "/initrd.img") == initrd.read_bytes()
    assert fat.read_file(out, off, "/live/filesystem.squashfs") == sq.read_bytes()
    digest = hashlib.sha256(sq.read_bytes()).hexdigest()
    assert fat.read_file(out, off, "/live/filesystem.squashfs.sha256") == \
        ("%s  filesystem.squashfs\n" % digest).encode()
    cfg = fat.read_file(out, off, "/syslinux/syslinux.cfg").decode()
    assert "  APPEND root=live:LABEL=MYLIVE console=ttyS0 quiet\n" in cfg
    # the boot sector now holds SYSLINUX's code (its "SYSLINUX" OEM name is not enough: check the signature)
    assert raw[off + 510:off + 512] == b"\x55\xaa" and raw[off + 3:off + 11] == b"SYSLINUX"
    assert sorted(os.listdir(tmp_path)) == ["in", "live.img"]  # no temporary left


def test_disk_image_blkid_label(parts, tmp_path):
    _need_disk_tools()
    require_tools("blkid")
    kernel, initrd, sq = parts
    out = tmp_path / "live.img"
    liveimage.build_disk_image(kernel, initrd, sq, out, label="BLKID_LBL")
    r = subprocess.run(["blkid", "-p", "-O", str(MIB), "-o", "export", str(out)], capture_output=True, text=True)
    facts = dict(l.split("=", 1) for l in r.stdout.split())
    assert facts["TYPE"] == "vfat" and facts["LABEL"] == "BLKID_LBL" and facts["VERSION"] == "FAT32"


def test_disk_image_has_room_to_spare(parts, tmp_path):
    _need_disk_tools()
    kernel, initrd, sq = parts
    out = tmp_path / "live.img"
    liveimage.build_disk_image(kernel, initrd, sq, out)
    r = subprocess.run(["mdir", "-i", "%s@@%d" % (out, MIB), "::/"], capture_output=True, text=True,
                       env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))
    last = r.stdout.strip().splitlines()[-1]  # "   19 175 936 bytes free"
    assert last.endswith("bytes free"), r.stdout
    assert int(last.split("bytes")[0].replace(" ", "")) > 10 * MIB, r.stdout


def test_uefi_disk_image(parts, tmp_path):
    _need_disk_tools()
    require_tools("grub-mkimage")
    if not liveimage.GRUB_EFI_DIR.is_dir():
        pytest.skip("%s missing (grub-efi-amd64-bin)" % liveimage.GRUB_EFI_DIR)
    kernel, initrd, sq = parts
    out = tmp_path / "live.img"
    liveimage.build_disk_image(kernel, initrd, sq, out, label="UEFI", append="quiet", uefi=True)
    names = fat.listing(out, MIB)
    assert "/EFI/BOOT/BOOTX64.EFI" in names and "/EFI/BOOT/grub.cfg" in names
    assert "/syslinux/ldlinux.sys" in names  # still BIOS-bootable
    efi = fat.read_file(out, MIB, "/EFI/BOOT/BOOTX64.EFI")
    pe = struct.unpack("<I", efi[0x3C:0x40])[0]
    # a PE32+ image for x86-64: "MZ", "PE\0\0", machine 0x8664 (PE format spec, COFF file header)
    assert efi[:2] == b"MZ" and efi[pe:pe + 4] == b"PE\0\0" and efi[pe + 4:pe + 6] == b"\x64\x86"
    g = fat.read_file(out, MIB, "/EFI/BOOT/grub.cfg").decode()
    assert "linux /vmlinuz root=live:LABEL=UEFI quiet\n" in g


# --- the CLI and bad inputs ----------------------------------------------------------------------------------

def test_cli_live_image(parts, tmp_path, capsys):
    _need_disk_tools()
    kernel, initrd, sq = parts
    out = tmp_path / "live.img"
    rc = cli.main(["live-image", "--kernel", str(kernel), "--initrd", str(initrd), "--squashfs", str(sq),
                   "-o", str(out), "--append", "console=ttyS0"])
    assert rc == 0
    assert "wrote %s" % out in capsys.readouterr().out
    cfg = fat.read_file(out, MIB, "/syslinux/syslinux.cfg").decode()
    assert "APPEND root=live:LABEL=MPINIT_LIVE console=ttyS0" in cfg


@pytest.mark.parametrize("which", ["--kernel", "--initrd", "--squashfs"])
def test_cli_missing_input_writes_nothing(parts, tmp_path, capsys, which):
    kernel, initrd, sq = parts
    args = {"--kernel": str(kernel), "--initrd": str(initrd), "--squashfs": str(sq)}
    args[which] = str(tmp_path / "missing")
    out = tmp_path / "live.img"
    for cmd in ("live-image", "live-iso"):
        argv = [cmd] + [x for kv in args.items() for x in kv] + ["-o", str(out)]
        assert cli.main(argv) == 2
        assert "%s %s: no such file" % (which, tmp_path / "missing") in capsys.readouterr().err
        assert sorted(os.listdir(tmp_path)) == ["in"]


def test_cli_bad_label_and_old_output_kept(parts, tmp_path, capsys):
    kernel, initrd, sq = parts
    out = tmp_path / "live.img"
    out.write_bytes(b"previous image")
    argv = ["live-image", "--kernel", str(kernel), "--initrd", str(initrd), "--squashfs", str(sq), "-o", str(out)]
    assert cli.main(argv + ["--label", "much_too_long_label"]) == 2
    assert "--label" in capsys.readouterr().err
    assert out.read_bytes() == b"previous image"


def test_tool_failure_leaves_no_temporary(parts, tmp_path, monkeypatch):
    _need_disk_tools()
    kernel, initrd, sq = parts
    out = tmp_path / "live.img"
    monkeypatch.setattr(liveimage, "SYSLINUX_MBR", tmp_path / "no-mbr.bin")
    from mpinit.runner import ToolError

    with pytest.raises(ToolError, match="no-mbr.bin: not found"):
        liveimage.build_disk_image(kernel, initrd, sq, out)
    monkeypatch.undo()
    # a partition too small for the files: mcopy fails mid-build, after the temporary image exists
    monkeypatch.setattr(liveimage, "plan_disk",
                        lambda sizes, extra=0: liveimage.DiskPlan(MIB, fat.MIN_FAT32_BYTES, MIB + fat.MIN_FAT32_BYTES))
    big = _squashfs(tmp_path / "in" / "big.squashfs", 40 * MIB)
    with pytest.raises(ToolError, match="mcopy"):
        liveimage.build_disk_image(kernel, initrd, big, out)
    assert sorted(os.listdir(tmp_path)) == ["in"]


# --- the ISO -------------------------------------------------------------------------------------------------

def test_iso_layout(parts, tmp_path):
    require_tools("xorriso", "sfdisk")
    kernel, initrd, sq = parts
    out = tmp_path / "live.iso"
    liveimage.build_iso(kernel, initrd, sq, out, label="MY_LIVE_CD", append="console=ttyS0")
    rep = subprocess.run(["xorriso", "-indev", str(out), "-report_el_torito", "plain", "-pvd_info",
                          "-find", "/", "-type", "f"], capture_output=True, text=True, check=True).stdout
    assert "Volume Id    : MY_LIVE_CD" in rep
    assert "El Torito img path :   1  /isolinux/isolinux.bin" in rep
    assert "boot-info-table" in rep and "isohybrid-suitable" in rep
    for f in ("/vmlinuz", "/initrd.img", "/isolinux/isolinux.cfg", "/isolinux/ldlinux.c32",
              "/live/filesystem.squashfs", "/live/filesystem.squashfs.sha256"):
        assert "'%s'" % f in rep
    raw = out.read_bytes()
    assert raw[:432] == liveimage.ISOHDPFX_BIN.read_bytes()[:432]  # the isohybrid MBR code
    (p,) = _sfdisk(out)["partitions"]
    assert p["start"] == 0 and p.get("bootable")
    cfg = subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(out), "-extract", "/isolinux/isolinux.cfg",
                          str(tmp_path / "isolinux.cfg")], capture_output=True)
    assert cfg.returncode == 0
    text = (tmp_path / "isolinux.cfg").read_text()
    assert "  APPEND root=live:CDLABEL=MY_LIVE_CD console=ttyS0\n" in text
    (tmp_path / "isolinux.cfg").unlink()
    assert sorted(os.listdir(tmp_path)) == ["in", "live.iso"]


def test_same_inputs_same_identifiers(parts, tmp_path):
    _need_disk_tools()
    require_tools("blkid")
    kernel, initrd, sq = parts

    def ids(name, append=""):
        out = tmp_path / name
        liveimage.build_disk_image(kernel, initrd, sq, out, append=append)
        r = subprocess.run(["blkid", "-p", "-O", str(MIB), "-o", "export", str(out)], capture_output=True,
                           text=True)
        uuid = dict(l.split("=", 1) for l in r.stdout.split())["UUID"]
        return uuid, _sfdisk(out)["id"]

    a, b, c = ids("a.img"), ids("b.img"), ids("c.img", append="quiet")
    assert a == b and a[0] != c[0] and a[1] != c[1]


def test_file_too_big_for_fat32(parts, tmp_path):
    kernel, initrd, _ = parts
    big = tmp_path / "in" / "huge.squashfs"
    with open(big, "wb") as f:
        f.write(b"hsqs")
        f.truncate(4 * 1024 * MIB)  # sparse: 4 GiB, one byte over the FAT32 limit
    out = tmp_path / "live.img"
    with pytest.raises(liveimage.LiveError, match="huge.squashfs: 4294967296 bytes, more than a FAT32 file"):
        liveimage.build_disk_image(kernel, initrd, big, out)
    assert not out.exists()


def test_uefi_iso_layout(parts, tmp_path):
    require_tools("xorriso", "sfdisk", "grub-mkimage", "mformat")
    if not liveimage.GRUB_EFI_DIR.is_dir():
        pytest.skip("%s missing (grub-efi-amd64-bin)" % liveimage.GRUB_EFI_DIR)
    kernel, initrd, sq = parts
    out = tmp_path / "live.iso"
    liveimage.build_iso(kernel, initrd, sq, out, label="UEFI_CD", append="quiet", uefi=True)
    rep = subprocess.run(["xorriso", "-indev", str(out), "-report_el_torito", "plain"], capture_output=True,
                         text=True, check=True).stdout
    assert "El Torito img path :   1  /isolinux/isolinux.bin" in rep  # BIOS first
    assert "El Torito img path :   2  /isolinux/efiboot.img" in rep
    assert [l for l in rep.splitlines() if l.startswith("El Torito boot img :   2  UEFI")]
    parts_ = _sfdisk(out)["partitions"]
    assert [p["type"] for p in parts_] == ["0", "ef"]  # the hybrid MBR also points at the EFI image
    x = tmp_path / "x"
    x.mkdir()
    for f in ("/isolinux/efiboot.img", "/EFI/BOOT/grub.cfg"):
        subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(out), "-extract", f, str(x / f.split("/")[-1])],
                       capture_output=True, check=True)
    assert "BOOTX64.EFI" in " ".join(fat.listing(x / "efiboot.img", 0))
    efi = fat.read_file(x / "efiboot.img", 0, "/EFI/BOOT/BOOTX64.EFI")
    assert efi[:2] == b"MZ"
    # the early config embedded in the GRUB image finds the ISO by its label
    assert b"search --no-floppy --set=root --label UEFI_CD" in efi
    assert "linux /vmlinuz root=live:CDLABEL=UEFI_CD quiet\n" in (x / "grub.cfg").read_text()
