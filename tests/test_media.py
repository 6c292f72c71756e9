"""The test media, checked with independent tools (blkid, sfdisk, mtools, debugfs, xorriso, unsquashfs): every
identifier a scenario names (Medium fields) is what blkid reports, and the live image is where it should be."""

import hashlib
import json
import os
import subprocess

import pytest

from conftest import require_tools
from mpinit import media

TOOLS = ("busybox", "mksquashfs", "unsquashfs", "sgdisk", "sfdisk", "mkfs.vfat", "mcopy", "mkfs.ext4", "xorriso",
         "blkid", "debugfs")


def sh(*argv, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, check=True, **kw).stdout


def blkid(path, offset=0):
    out = sh("blkid", "-p", "-o", "export", "-O", str(offset), path).decode()
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def partitions(path):
    return json.loads(sh("sfdisk", "-J", path))["partitiontable"]


@pytest.fixture(scope="module")
def built():
    require_tools(*TOOLS)
    return {name: media.ensure(name) for name in media.MEDIA}


@pytest.mark.tools
@pytest.mark.parametrize("name", sorted(media.MEDIA))
def test_identifiers_are_what_blkid_sees(built, name):
    m = built[name]
    offset = media.PART_START * media.SECTOR if m.device.endswith("1") else 0
    probe = blkid(m.path, offset)
    assert probe["TYPE"] == m.fstype
    if m.label:
        assert probe["LABEL"] == m.label
    if m.uuid:
        assert probe["UUID"] == m.uuid
    if m.partuuid:
        table = partitions(m.path)
        part = table["partitions"][0]
        assert part["start"] == media.PART_START
        if table["label"] == "gpt":
            assert part["uuid"].lower() == m.partuuid and part["name"] == m.partlabel
        else:
            assert "%s-01" % table["id"][2:] == m.partuuid


def _vfat_file(m, path):
    img = "%s@@%d" % (m.path, media.PART_START * media.SECTOR)
    return sh("mtype", "-i", img, "::" + path, env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))


def _squashfs_sha(d, which):
    return hashlib.sha256((d / (which + ".squashfs")).read_bytes()).hexdigest()


@pytest.mark.tools
def test_vfat_media_hold_the_image_and_its_checksum(built, tmp_path):
    d = media.cache_dir()
    good = _squashfs_sha(d, "root")
    img = _vfat_file(built["gpt-vfat"], "/live/filesystem.squashfs")
    assert hashlib.sha256(img).hexdigest() == good
    assert _vfat_file(built["gpt-vfat"], "/live/filesystem.squashfs.sha256").decode() == \
        "%s  filesystem.squashfs\n" % good
    assert not _vfat_file(built["gpt-vfat-badsum"], "/live/filesystem.squashfs.sha256").decode().startswith(good)
    corrupt = _vfat_file(built["gpt-vfat-corrupt"], "/live/filesystem.squashfs")
    assert hashlib.sha256(corrupt).hexdigest() != good
    assert _vfat_file(built["gpt-vfat-corrupt"], "/live/filesystem.squashfs.sha256").decode().startswith(good)
    (tmp_path / "c.sqfs").write_bytes(corrupt)
    assert subprocess.run(["unsquashfs", "-l", str(tmp_path / "c.sqfs")], capture_output=True).returncode != 0
    listing = sh("unsquashfs", "-l", d / "root-noinit.squashfs").decode()
    assert "squashfs-root/bin/busybox" in listing and "sbin/init" not in listing and "bin/sh" not in listing
    big = built["gpt-vfat-big"].path.stat().st_size
    assert big > media.BIG_FILE_MB * media.MIB


@pytest.mark.tools
def test_ext4_media_contents(built, tmp_path):
    part = tmp_path / "part.img"
    for name, inside in (("mbr-ext4", "/live/filesystem.squashfs.sha256"), ("iso-in-ext4", media.ISO_FILE)):
        with open(built[name].path, "rb") as f:
            f.seek(media.PART_START * media.SECTOR)
            part.write_bytes(f.read())
        data = sh("debugfs", "-R", "cat " + inside, part)
        if name == "mbr-ext4":
            assert data.decode().endswith("  filesystem.squashfs\n")
        else:
            (tmp_path / "inner.iso").write_bytes(data)
            assert blkid(tmp_path / "inner.iso")["LABEL"] == media.ISO_LABEL
            ls = sh("xorriso", "-indev", tmp_path / "inner.iso", "-ls", "/live")
            assert b"filesystem.squashfs" in ls
    stat = sh("debugfs", "-R", "stat /sbin/init", built["ext4-root"].path).decode()
    assert "Type: regular" in stat


@pytest.mark.tools
def test_cache_rebuilds_when_inputs_change(tmp_path, monkeypatch):
    require_tools(*TOOLS)
    first = media.ensure("squashfs-disk", cache=tmp_path)
    again = media.ensure("squashfs-disk", cache=tmp_path)
    assert again.path == first.path and again.path.stat().st_mtime_ns == first.path.stat().st_mtime_ns
    os.utime(first.path.parent, (0, 0))  # stale: not touched for long
    monkeypatch.setattr(media, "_digest", lambda: "0123456789abcdef")
    moved = media.ensure("squashfs-disk", cache=tmp_path)
    assert moved.path.parent.name == "0123456789abcdef"
    assert not first.path.parent.exists()  # the stale digest's directory was removed
    assert not list(moved.path.parent.glob(".*.tmp"))


def test_unknown_medium_is_named():
    with pytest.raises(media.ToolError, match="nope.*gpt-vfat"):
        media.ensure("nope")
