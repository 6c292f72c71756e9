"""`mpinit persistence-file` and `mpinit live-image --persistence`: sizes, labels, the image read back with the
agent's own probe, e2fsck -fn and debugfs (independent tools, on the image FILE: no loop device), and bad input
refused with nothing written."""

import json
import os
import subprocess

import pytest

from conftest import require_tools
from mpinit import cli, fat, persistence
from mpinit.persistence import PersistenceError
from mpinit_agent import probe

MIB = 1024 * 1024


@pytest.mark.parametrize("text, size", [
    ("8M", 8 * MIB), ("512M", 512 * MIB), ("2G", 2 * 1024 * MIB), ("1GiB", 1024 * MIB), ("300MB", 300 * MIB),
    ("16384K", 16 * MIB), (str(10 * MIB + 5), 10 * MIB), ("1t", 1024 ** 4),
])
def test_sizes(text, size):
    assert persistence.parse_size(text) == size


@pytest.mark.parametrize("text, words", [
    ("", "want a size"), ("12X", "want a size"), ("-5M", "want a size"), ("1.5G", "want a size"),
    ("7M", "at least 8 MiB"), ("0", "at least"), ("17T", "at most 16 TiB"),
])
def test_bad_sizes(text, words):
    with pytest.raises(PersistenceError, match=words):
        persistence.parse_size(text)


def test_spec():
    assert persistence.parse_spec("64M") == persistence.Spec(64 * MIB, "persistence", "ext4")
    assert persistence.parse_spec("1G,label=writable,fs=ext3") == persistence.Spec(1024 * MIB, "writable", "ext3")
    for bad, words in (("64M,fs=vfat", "fs="), ("64M,label=a/b", "label="), ("64M,colour=red", "unknown item"),
                       ("64M,label=" + "x" * 17, "1 to 16 bytes"), ("big", "--persistence")):
        with pytest.raises(PersistenceError, match=words):
            persistence.parse_spec(bad)


def test_persistence_file_is_a_clean_ext4_with_the_conf(tmp_path, capsys):
    require_tools("mkfs.ext4", "e2fsck", "debugfs")
    out = tmp_path / "persistence"
    assert cli.main(["persistence-file", "-o", str(out), "--size", "16M"]) == 0
    assert "wrote %s" % out in capsys.readouterr().out
    assert out.stat().st_size == 16 * MIB
    info = probe.probe(str(out))
    assert info["TYPE"] == "ext4" and info["LABEL"] == "persistence"
    fsck = subprocess.run(["e2fsck", "-fn", str(out)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    conf = subprocess.run(["debugfs", "-R", "cat /persistence.conf", str(out)], capture_output=True, text=True)
    assert conf.stdout == "/ union\n"
    assert [p.name for p in tmp_path.iterdir()] == ["persistence"]    # no temporary left


def test_persistence_file_label_and_fs(tmp_path):
    require_tools("mkfs.ext3")
    out = tmp_path / "casper-rw"
    assert cli.main(["persistence-file", "-o", str(out), "--size", "10M", "--label", "casper-rw", "--fs", "ext3"]) == 0
    info = probe.probe(str(out))
    assert info["LABEL"] == "casper-rw" and info["TYPE"] == "ext3"


def test_existing_output_is_refused_and_kept(tmp_path, capsys):
    out = tmp_path / "persistence"
    out.write_bytes(b"my saved changes")
    assert cli.main(["persistence-file", "-o", str(out), "--size", "16M"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == b"my saved changes"


@pytest.mark.parametrize("args, words", [
    (["--size", "1M"], "--size '1M'"), (["--size", "big"], "--size 'big'"), (["--size", "16M", "--fs", "vfat"], "--fs"),
    (["--size", "16M", "--label", "has space"], "--label"),
])
def test_bad_input_writes_nothing(tmp_path, capsys, args, words):
    out = tmp_path / "p.img"
    assert cli.main(["persistence-file", "-o", str(out)] + args) == 2
    assert words in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_missing_directory(tmp_path, capsys):
    assert cli.main(["persistence-file", "-o", str(tmp_path / "no" / "p"), "--size", "16M"]) == 2
    assert "does not exist" in capsys.readouterr().err


def _kernel(path):
    data = bytearray(os.urandom(2 * MIB))
    data[0x202:0x206] = b"HdrS"
    path.write_bytes(bytes(data))
    return path


def test_live_image_with_a_persistence_partition(tmp_path, capsys):
    require_tools("mformat", "mcopy", "syslinux", "sfdisk", "mkfs.ext4", "e2fsck")
    kernel = _kernel(tmp_path / "vmlinuz")
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(os.urandom(MIB))
    sq = tmp_path / "fs.squashfs"
    sq.write_bytes(b"hsqs" + os.urandom(MIB))
    out = tmp_path / "live.img"
    assert cli.main(["live-image", "--kernel", str(kernel), "--initrd", str(initrd), "--squashfs", str(sq),
                     "-o", str(out), "--label", "MPLIVE", "--persistence", "24M,label=keep"]) == 0
    assert "persistence partition of 24 MiB labelled keep" in capsys.readouterr().out
    table = json.loads(subprocess.run(["sfdisk", "--json", str(out)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    p1, p2 = table["partitions"]
    assert p1["type"] == "c" and p2["type"] == "83" and not p2.get("bootable")
    assert p2["start"] % 2048 == 0 and p2["start"] >= p1["start"] + p1["size"] and p2["size"] * 512 == 24 * MIB
    assert out.stat().st_size == (p2["start"] + p2["size"]) * 512
    info = probe.probe(str(out), offset=p2["start"] * 512, size=p2["size"] * 512)
    assert info["TYPE"] == "ext4" and info["LABEL"] == "keep"
    part = tmp_path / "part.img"
    with open(out, "rb") as f:
        f.seek(p2["start"] * 512)
        part.write_bytes(f.read(p2["size"] * 512))
    assert subprocess.run(["e2fsck", "-fn", str(part)], capture_output=True).returncode == 0
    cfg = fat.read_file(out, MIB, "/syslinux/syslinux.cfg").decode()
    assert "root=live:LABEL=MPLIVE persistence" in cfg


def test_live_image_persistence_keeps_the_users_choice_and_refuses_bad_specs(tmp_path, capsys):
    require_tools("mformat", "mcopy", "syslinux", "sfdisk", "mkfs.ext4")
    kernel = _kernel(tmp_path / "vmlinuz")
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(os.urandom(MIB))
    sq = tmp_path / "fs.squashfs"
    sq.write_bytes(b"hsqs" + os.urandom(MIB))
    base = ["live-image", "--kernel", str(kernel), "--initrd", str(initrd), "--squashfs", str(sq)]
    out = tmp_path / "live.img"
    assert cli.main(base + ["-o", str(out), "--persistence", "16M", "--append", "persistent"]) == 0
    cfg = fat.read_file(out, MIB, "/syslinux/syslinux.cfg").decode()
    assert "persistent" in cfg and " persistence" not in cfg
    bad = tmp_path / "bad.img"
    assert cli.main(base + ["-o", str(bad), "--persistence", "4M"]) == 2
    assert "--persistence '4M'" in capsys.readouterr().err and not bad.exists()
