"""The storage media maker (mpinit.testing.maker) without a guest: the cache key, the blank disks, the console
parsing, the cache's atomicity, and the host-made fsck media checked with e2fsck. The guest itself runs in
tests/e2e/test_storage.py."""

import json
import subprocess
from pathlib import Path

import pytest

from conftest import require_tools
from mpinit import qemu
from mpinit.testing import maker, storage_media
from mpinit.testing.maker import Disk, MakerError, Partition, Recipe


def _result(output, marker_line=None, timed_out=False):
    return qemu.BootResult(ok=marker_line is not None, output=output, elapsed_s=1.0, marker_line=marker_line,
                           timed_out=timed_out)


def test_parse_facts_takes_name_value_lines_anywhere_in_a_line():
    out = ("[ 1.0] noise\nMAKER-FACT md_uuid=aa:bb\n+ echo 'MAKER-FACT x=1'\n"
           "[ 2.0] k: MAKER-FACT lvs=root:40m,usr:8m,\nMAKER-FACT empty=\nMAKER-FACT novalue\nMAKER-FACT x=2\n")
    facts = maker.parse_facts(out)
    assert facts["md_uuid"] == "aa:bb"
    assert facts["lvs"] == "root:40m,usr:8m,"
    assert facts["empty"] == ""
    assert facts["x"] == "2"            # the last one wins
    assert "novalue" not in facts


@pytest.mark.parametrize("line, status", [
    ("MAKER-DONE status=0", 0), ("MAKER-DONE status=3", 3), ("MAKER-DONE status=x", None),
    ("MAKER-DONE", None), (None, None),
])
def test_done_status(line, status):
    assert maker.done_status(_result("...", line)) == status


def test_device_names_are_the_disks_and_their_partitions():
    r = Recipe("r", (Disk(8, (Partition("A"), Partition("B", 2))), Disk(8)), "true")
    assert maker._device_names(r) == ["/dev/vda", "/dev/vda1", "/dev/vda2", "/dev/vdb"]


@pytest.mark.parametrize("name", ["", "a/b", ".hidden", "sp ace", "x;y"])
def test_bad_names_are_refused(name):
    with pytest.raises(MakerError, match="use letters"):
        maker._check_name("recipe", name)


def _key(recipe, tmp_path, monkeypatch):
    # The tools' bytes are part of the key; stand in small files for them (the key must not need the real ones).
    tools = {}
    for dest in maker.TOOLS:
        p = tmp_path / ("tool-" + dest.rsplit("/", 1)[1])
        p.write_bytes(dest.encode())
        tools[dest] = p
    monkeypatch.setattr(maker, "tool_paths", lambda: tools)
    bb = tmp_path / "busybox"
    bb.write_bytes(b"bb")
    return maker.recipe_key(recipe, "6.1.0-test", bb)


def test_recipe_key_follows_every_input(tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "f").write_text("one")
    base = Recipe("r", (Disk(8),), "true", inputs={"k": b"1"}, trees={"root": tree})
    k0 = _key(base, tmp_path, monkeypatch)
    assert k0 == _key(base, tmp_path, monkeypatch)
    variants = [Recipe("r", (Disk(9),), "true", inputs={"k": b"1"}, trees={"root": tree}),
                Recipe("r", (Disk(8),), "false", inputs={"k": b"1"}, trees={"root": tree}),
                Recipe("r", (Disk(8),), "true", inputs={"k": b"2"}, trees={"root": tree}),
                Recipe("r", (Disk(8),), "true", inputs={"k": b"1"}, trees={"root": tree}, env={"A": "1"})]
    keys = {_key(v, tmp_path, monkeypatch) for v in variants}
    assert k0 not in keys and len(keys) == len(variants)
    (tree / "etc" / "f").write_text("two")
    k_content = _key(base, tmp_path, monkeypatch)
    (tree / "etc" / "link").symlink_to("f")
    k_link = _key(base, tmp_path, monkeypatch)
    assert len({k0, k_content, k_link}) == 3


def test_recipe_key_of_a_missing_tree_names_it(tmp_path, monkeypatch):
    with pytest.raises(MakerError, match="not a directory"):
        _key(Recipe("r", (Disk(8),), "true", trees={"root": tmp_path / "nope"}), tmp_path, monkeypatch)


@pytest.mark.tools
def test_make_disk_writes_the_gpt_partitions(tmp_path):
    require_tools("sgdisk", "sfdisk")
    disk = Disk(16, (Partition("ONE", 4, "8309", partuuid="6d70696e-6974-5445-5354-000000000001"),
                     Partition("TWO", 0, "FD00")), disk_guid="6D70696E-6974-5445-5354-000000000000")
    path = maker.make_disk(tmp_path / "d.img", disk)
    assert path.stat().st_size == 16 * maker.MIB
    table = json.loads(subprocess.run(["sfdisk", "-J", str(path)], capture_output=True, check=True,
                                      text=True).stdout)["partitiontable"]
    assert table["label"] == "gpt" and table["id"] == "6D70696E-6974-5445-5354-000000000000"
    one, two = table["partitions"]
    assert (one["start"], one["size"], one["name"]) == (2048, 4 * 2048, "ONE")
    assert one["type"] == "CA7D7CCB-63ED-4C53-861C-1742536059CC"   # sgdisk 8309: Linux LUKS
    assert one["uuid"] == "6D70696E-6974-5445-5354-000000000001"
    assert two["start"] == 2048 + 4 * 2048 and two["name"] == "TWO"
    assert two["type"] == "A19D880F-05FC-4D3B-A006-743F0F84911E"   # sgdisk FD00: Linux RAID


def test_blank_disk_without_partitions_is_all_zeros(tmp_path):
    path = maker.make_disk(tmp_path / "d.img", Disk(2))
    assert path.read_bytes() == bytes(2 * maker.MIB)


class _Kernel:
    kver = "6.1.0-test"
    vmlinuz = Path("/nonexistent/vmlinuz")
    modules_dir = Path("/nonexistent/modules")


def _fake_guest(monkeypatch, tmp_path, output, marker_line):
    """make() up to the guest, with the initramfs and QEMU replaced: returns the argv QEMU would have run."""
    seen = {}
    monkeypatch.setattr(maker, "recipe_key", lambda recipe, kver, bb: "k" * 16)

    def fake_initrd(recipe, kernel, out, work):
        Path(out).write_bytes(b"initrd")
        return Path(out)

    def fake_boot(kernel, initrd, argv=None, log_path=None, **kw):
        seen["argv"] = argv
        Path(log_path).write_text(output)
        return _result(output, marker_line)

    monkeypatch.setattr(maker, "make_initrd", fake_initrd)
    monkeypatch.setattr(maker.qemu, "qemu_argv", lambda *a, **kw: ["qemu"])
    monkeypatch.setattr(maker.qemu, "boot", fake_boot)
    return seen


def test_make_caches_only_after_status_zero(monkeypatch, tmp_path):
    recipe = Recipe("ok-recipe", (Disk(1), Disk(1)), "true", facts={"given": "1"})
    seen = _fake_guest(monkeypatch, tmp_path, "MAKER-FACT made=2\nMAKER-DONE status=0\n", "MAKER-DONE status=0")
    m = maker.make(recipe, _Kernel, cache=tmp_path / "c")
    assert not m.cached
    assert [p.name for p in m.disks] == ["disk0.img", "disk1.img"] and all(p.is_file() for p in m.disks)
    assert m.facts == {"given": "1", "made": "2"}
    assert m.directory == tmp_path / "c" / "ok-recipe" / ("k" * 16)
    # the disks are attached writable (the guest's writes are the product), in order
    drives = [a for a in seen["argv"] if a.startswith("file=")]
    assert len(drives) == 2 and "snapshot" not in drives[0] and drives[0].endswith(",cache=unsafe")
    assert not (m.directory / "maker-initrd.img").exists()
    again = maker.make(recipe, _Kernel, cache=tmp_path / "c")
    assert again.cached and again.facts == m.facts
    assert [p.name for p in (tmp_path / "c" / "ok-recipe").iterdir()] == ["k" * 16]


@pytest.mark.parametrize("output, marker, says", [
    ("+ mdadm --create ...\nmdadm: boom\nMAKER-DONE status=1\n", "MAKER-DONE status=1", "exited with status 1"),
    ("Kernel panic\n", None, "without MAKER-DONE"),
])
def test_a_failed_make_leaves_nothing_cached(monkeypatch, tmp_path, output, marker, says):
    _fake_guest(monkeypatch, tmp_path, output, marker)
    with pytest.raises(MakerError, match=says) as e:
        maker.make(Recipe("bad-recipe", (Disk(1),), "false"), _Kernel, cache=tmp_path / "c")
    assert "bad-recipe" in str(e.value) and output.splitlines()[0] in str(e.value)
    base = tmp_path / "c" / "bad-recipe"
    assert sorted(p.name for p in base.iterdir()) == ["last-failure.log"]
    assert (base / "last-failure.log").read_text() == output


def test_host_made_is_atomic(tmp_path):
    def broken(work):
        (work / "disk0.img").write_bytes(b"half")
        raise RuntimeError("tool died")

    with pytest.raises(RuntimeError):
        maker.host_made("hm", ("a",), broken, cache=tmp_path)
    assert list((tmp_path / "hm").iterdir()) == []
    calls = []

    def good(work):
        calls.append(1)
        (work / "disk0.img").write_bytes(b"disk")
        return [work / "disk0.img"], {"f": "v"}

    m = maker.host_made("hm", ("a",), good, cache=tmp_path)
    assert m.disks[0].read_bytes() == b"disk" and m.facts == {"f": "v"} and not m.cached
    assert maker.host_made("hm", ("a",), good, cache=tmp_path).cached and calls == [1]
    maker.host_made("hm", ("b",), good, cache=tmp_path)    # another key: made again
    assert calls == [1, 1]


# --- the host-made fsck media, checked with e2fsck ------------------------------------------------------------

def _e2fsck(path, *flags):
    return subprocess.run(["e2fsck"] + list(flags) + [str(path)], capture_output=True, text=True)


@pytest.mark.tools
def test_fsck_fixable_medium_is_repaired_by_preen(tmp_path):
    require_tools("mkfs.ext4", "debugfs", "e2fsck", "busybox", "blkid")
    m = storage_media.fsck_fixable(cache=tmp_path)
    copy = tmp_path / "copy.img"
    copy.write_bytes(m.disks[0].read_bytes())
    first = _e2fsck(copy, "-a")
    assert first.returncode == 1, first.stdout + first.stderr     # fsck(8): 1 = errors corrected
    assert "FIXED" in first.stdout
    assert _e2fsck(copy, "-f", "-n").returncode == 0
    out = subprocess.run(["blkid", "-p", "-o", "value", "-s", "UUID", str(m.disks[0])], capture_output=True,
                         text=True).stdout.strip()
    assert out == storage_media.FSCK_FIXABLE_UUID


@pytest.mark.tools
def test_fsck_broken_medium_defeats_preen(tmp_path):
    require_tools("mkfs.ext4", "debugfs", "e2fsck", "busybox")
    m = storage_media.fsck_broken(cache=tmp_path)
    copy = tmp_path / "copy.img"
    copy.write_bytes(m.disks[0].read_bytes())
    r = _e2fsck(copy, "-a")
    assert r.returncode == 4, r.stdout + r.stderr                   # fsck(8): 4 = errors left uncorrected
    assert "UNEXPECTED INCONSISTENCY" in r.stdout + r.stderr
