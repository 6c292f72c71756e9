"""mpinit.exfat: files and directories written into a mkfs.exfat image without a mount, checked by fsck.exfat
(exfatprogs) and read back through the structures the specification defines."""

import struct

import pytest

from conftest import require_tools
from mpinit import exfat


def _image(tmp_path, size=32 << 20):
    require_tools("mkfs.exfat", "fsck.exfat")
    import subprocess

    path = tmp_path / "ex.img"
    with open(path, "wb") as f:
        f.truncate(size)
    subprocess.run(["mkfs.exfat", "-L", "T", str(path)], check=True, capture_output=True)
    return path


def _read_file(path, dest):
    with open(path, "rb") as f:
        vol = exfat._Volume(f)
        cluster = vol.root
        parts = [p for p in dest.split("/") if p]
        for comp in parts[:-1]:
            cluster, is_dir = vol.find(cluster, comp)
            assert is_dir
        first, is_dir = vol.find(cluster, parts[-1])
        d = vol.entries(cluster)
        # the stream entry's DataLength of that name
        i = 0
        while True:
            if d[i] == 0x85 and struct.unpack_from("<I", d, i + 52)[0] == first:
                size, = struct.unpack_from("<Q", d, i + 56)
                break
            i += 32
        if not first:
            return b""
        f.seek(vol._offset(first))
        return f.read(size)


def test_files_and_directories_pass_fsck_and_read_back(tmp_path):
    import subprocess

    path = _image(tmp_path)
    big = tmp_path / "big.iso"
    big.write_bytes(bytes(range(256)) * 40000)
    exfat.add(path, {"/isos/live.iso": big, "/isos/b.iso": b"B" * 70000, "/empty": b"",
                     "/deep/er/a name longer than fifteen chars.txt": b"hello"})
    proc = subprocess.run(["fsck.exfat", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0 and "clean" in proc.stdout, proc.stdout + proc.stderr
    assert "files 4" in proc.stdout and "directories 4" in proc.stdout
    assert _read_file(path, "/isos/live.iso") == big.read_bytes()
    assert _read_file(path, "/isos/b.iso") == b"B" * 70000
    assert _read_file(path, "/deep/er/a name longer than fifteen chars.txt") == b"hello"
    assert _read_file(path, "/empty") == b""


def test_checksums_match_the_specification_examples():
    # Name hash of "A" and of "a" agree (the hash is over the up-cased name).
    assert exfat.name_hash("live.iso") == exfat.name_hash("LIVE.ISO")
    entry = bytearray(64)
    entry[0] = 0x85
    entry[2:4] = b"\xff\xff"          # ignored by the checksum
    c = exfat.set_checksum(entry)
    entry[2:4] = b"\x00\x00"
    assert exfat.set_checksum(entry) == c


def test_bad_input_is_refused_and_names_it(tmp_path):
    path = _image(tmp_path, 8 << 20)
    with pytest.raises(exfat.ExfatError, match="only printable ASCII"):
        exfat.add(path, {"/bad\x01name": b"x"})
    exfat.add(path, {"/a": b"x"})
    with pytest.raises(exfat.ExfatError, match="/a: exists already"):
        exfat.add(path, {"/a": b"y"})
    with pytest.raises(exfat.ExfatError, match="no room"):
        exfat.add(path, {"/huge": tmp_path / "huge"} if (tmp_path / "huge").write_bytes(b"\1" * (9 << 20)) else {})
    not_exfat = tmp_path / "zero.img"
    not_exfat.write_bytes(bytes(4096))
    with pytest.raises(exfat.ExfatError, match="not an exFAT filesystem"):
        exfat.add(not_exfat, {"/a": b"x"})
