"""`mpinit probe`: the agent's probes printed like `blkid -p -o export`, checked against blkid itself."""

import subprocess

import pytest

from conftest import require_tools
from mpinit import cli
from mpinit.cmd_probe import escape, export_lines
from mpinit.testing import images
from mpinit.testing.images import Partition

U1 = "0a1b2c3d-4e5f-4071-8293-a4b5c6d7e8f9"


def run_probe(capsys, *argv):
    status = cli.main(["probe", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def blocks(text):
    return [b.split("\n") for b in text.strip("\n").split("\n\n")] if text.strip() else []


def blkid_lines(path, offset=0):
    argv = ["blkid", "-p", "-o", "export"] + (["--offset", str(offset)] if offset else []) + [str(path)]
    return subprocess.run(argv, stdout=subprocess.PIPE, text=True).stdout.strip("\n").split("\n")


@pytest.mark.parametrize("fstype,label,size", [
    ("vfat", "EFI BOOT", 1 << 20), ("ext4", "Ünï $x", 1 << 20), ("iso9660", "Live `cd`", 1 << 20),
    ("exfat", "ex<f>", 4 << 20), ("squashfs", None, 1 << 20), ("crypto_LUKS", "a'b\"c", 1 << 20),
])
def test_output_lines_are_blkids(tmp_path, capsys, fstype, label, size):
    require_tools("blkid")
    path = tmp_path / "fs.img"
    path.write_bytes(images.filesystem(fstype, label=label, size=size))
    status, out, err = run_probe(capsys, path)
    assert status == 0 and err == ""
    (ours,) = blocks(out)
    theirs = blkid_lines(path)
    assert ours[0] == theirs[0] == "DEVNAME=%s" % path
    assert set(ours) <= set(theirs), set(ours) - set(theirs)
    for key in ("TYPE", "LABEL", "UUID"):
        assert [l for l in ours if l.startswith(key + "=")] == [l for l in theirs if l.startswith(key + "=")]


def test_partitioned_disk_prints_each_partition(tmp_path, capsys):
    require_tools("blkid")
    esp = images.filesystem("vfat", label="ESP", uuid="1234-ABCD")
    root = images.filesystem("ext4", label="root", uuid=U1)
    path = tmp_path / "disk.img"
    path.write_bytes(images.disk([Partition(esp, partlabel="EFI system", type="esp",
                                            partuuid="aaaaaaaa-0000-4000-8000-000000000001"),
                                  Partition(root, partlabel="root")], disk_uuid=U1))
    status, out, err = run_probe(capsys, path)
    assert status == 0
    whole, p1, p2 = blocks(out)
    assert whole == ["DEVNAME=%s" % path, "PTUUID=%s" % U1, "PTTYPE=gpt"]
    assert set(whole) <= set(blkid_lines(path))
    assert p1[0] == "DEVNAME=%s:part1" % path and p2[0] == "DEVNAME=%s:part2" % path
    assert "PARTUUID=aaaaaaaa-0000-4000-8000-000000000001" in p1
    assert r"PARTLABEL=EFI\ system" in p1 and "PARTLABEL=root" in p2
    assert "PART_ENTRY_NUMBER=2" in p2 and "PART_ENTRY_OFFSET=4096" in p2
    # The filesystem keys of each block are blkid's at that partition's offset.
    for block, offset in ((p1, 2048 * 512), (p2, 4096 * 512)):
        fs_lines = [l for l in block[1:] if not l.startswith("PART")]
        assert fs_lines and set(fs_lines) <= set(blkid_lines(path, offset))


def test_mbr_disk_partuuid(tmp_path, capsys):
    path = tmp_path / "mbr.img"
    path.write_bytes(images.disk([Partition(images.filesystem("ext2", label="a"))], table="dos",
                                 signature=0x12AB34CD))
    status, out, _ = run_probe(capsys, path)
    whole, p1 = blocks(out)
    assert "PTUUID=12ab34cd" in whole and "PTTYPE=dos" in whole
    assert "PARTUUID=12ab34cd-01" in p1 and "TYPE=ext2" in p1 and "LABEL=a" in p1


def test_nothing_found_and_unreadable(tmp_path, capsys):
    empty = tmp_path / "zeros.img"
    empty.write_bytes(bytes(1 << 16))
    status, out, err = run_probe(capsys, empty)
    assert (status, out, err) == (1, "", "")
    good = tmp_path / "good.img"
    good.write_bytes(images.filesystem("swap", label="sw"))
    status, out, err = run_probe(capsys, tmp_path / "missing.img", good)
    assert status == 2
    assert "missing.img" in err and "No such file" in err
    assert "TYPE=swap" in out   # the readable file is still reported


def test_bad_sector_size_is_a_usage_error(tmp_path, capsys):
    status, out, err = run_probe(capsys, "--sector-size", "1000", tmp_path)
    assert status == 2 and "--sector-size 1000" in err


def test_escape_matches_blkid_safe_print():
    assert escape("a b") == r"a\ b"
    assert escape("$`\"'<>\\") == "\\$\\`\\\"\\'\\<\\>\\\\"
    assert escape("tab\there") == "tab^Ihere"
    assert escape("Ü") == "M-CM-^\\"
    assert escape("\x7f") == "^?"
    assert export_lines("x y", {"TYPE": "ext4", "LABEL": "l"}) == [r"DEVNAME=x\ y", "LABEL=l", "TYPE=ext4"]
