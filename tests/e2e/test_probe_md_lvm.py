"""The agent's md RAID and LVM2 probes (mpinit_agent.probe_more) against members made by the real tools, judged by
util-linux: `mpinit probe` and `blkid -p -o export` on the same image files must print the same keys and values.

tests/test_probe_more.py builds those headers from the on-disk formats, because mdadm and pvcreate want a block
device and the shared host gets no loop or md devices. Here mdadm and lvm run in a QEMU guest on blank virtio
disks (mpinit.testing.maker, the storage media maker; cached under build/e2e/storage/probe-md-lvm/), and the
host reads the resulting image FILES with blkid and with our probe (no device involved).

The guest's disks, in order (/dev/vda, /dev/vdb, ...):

| disks | made with |
|---|---|
| vda, vdb | mdadm --create RAID1, --metadata=0.90 (superblock in the last 64 KiB-aligned 64 KiB), ext4 inside |
| vdc, vdd | --metadata=1.0 (superblock 8 KiB from the end), ext4 inside |
| vde, vdf | --metadata=1.1 (superblock at 0), ext4 inside |
| vdg, vdh | --metadata=1.2 (superblock at 4 KiB), ext4 inside |
| vdi | lvm pvcreate on the whole disk, then vgcreate (the label in sector 1, lvm's default) |
| vdj | lvm pvcreate --labelsector 3 |
| vdk | GPT with partition 1 (type Linux LVM) holding a PV: the `FILE:part1` block against blkid --offset |

Each member of each array is checked on its own (both carry the set's UUID, each its own UUID_SUB), and the
guest's own view (mdadm --examine --export, lvm pvs) is an independent second judge of the UUIDs and names.
An ext4 inside a 0.90 or 1.0 array is also visible at offset 0 of each member: blkid and the agent must still say
linux_raid_member, so such a member is never mounted on its own.
"""

import json
import shutil
import subprocess
import sys

import pytest

from conftest import require_tools
from mpinit.testing import maker
from mpinit.testing.maker import Disk, Partition, Recipe

# Fixed set UUIDs in mdadm's notation (what --uuid= takes), one per metadata version.
MD_ARRAYS = [  # (metadata, set uuid, name (1.x only), ext4 label inside, member disk indexes)
    ("0.90", "6d70696e:69745052:4f424d44:00000090", None, "MD090", (0, 1)),
    ("1.0", "6d70696e:69745052:4f424d44:00000100", "mp10", "MD10", (2, 3)),
    ("1.1", "6d70696e:69745052:4f424d44:00000110", "mp11", "MD11", (4, 5)),
    ("1.2", "6d70696e:69745052:4f424d44:00000120", "mp12", "MD12", (6, 7)),
]
HOMEHOST = "mpinit"
PV_WHOLE, PV_SECTOR3, PV_PART = 8, 9, 10
VG = "probevg"
DISK_MIB = 16
DEVICES = ["vd" + c for c in "abcdefghijk"]
# blkid's VERSION for a 0.90 member: major.minor.patch of the superblock (mdadm writes 0.90.0)
MD_VERSION = {"0.90": "0.90.0", "1.0": "1.0", "1.1": "1.1", "1.2": "1.2"}


def _recipe():
    lines = []
    for metadata, uuid, name, label, (a, b) in MD_ARRAYS:
        naming = "--name=%s --homehost=%s " % (name, HOMEHOST) if name else ""
        lines.append("mdadm --create /dev/md0 --run --assume-clean --metadata=%s --level=1 --raid-devices=2 "
                     "--uuid=%s %s/dev/%s /dev/%s" % (metadata, uuid, naming, DEVICES[a], DEVICES[b]))
        lines.append("mkfs.ext4 -q -F -L %s /dev/md0" % label)
        lines.append("mdadm --stop /dev/md0")
        for i in (a, b):
            # one fact per member: mdadm's own reading of its superblock, KEY=value words
            lines.append("fact %s \"$(mdadm --examine --export /dev/%s | tr '\\n' ' ')\"" % (DEVICES[i], DEVICES[i]))
    lines.append("lvm pvcreate -y /dev/%s" % DEVICES[PV_WHOLE])
    lines.append("lvm vgcreate %s /dev/%s" % (VG, DEVICES[PV_WHOLE]))
    lines.append("lvm pvcreate -y --labelsector 3 /dev/%s" % DEVICES[PV_SECTOR3])
    lines.append("lvm pvcreate -y /dev/%s1" % DEVICES[PV_PART])
    for dev in (DEVICES[PV_WHOLE], DEVICES[PV_SECTOR3], DEVICES[PV_PART] + "1"):
        lines.append("fact %s \"$(lvm pvs --noheadings -o pv_uuid /dev/%s | tr -d ' ')\"" % (dev, dev))
    disks = tuple(Disk(DISK_MIB) for _ in range(PV_PART)) + (
        Disk(DISK_MIB, (Partition("MPPV", type_code="8E00"),)),)
    return Recipe("probe-md-lvm", disks, "\n".join(lines) + "\n",
                  description="RAID1 pairs with md metadata 0.90, 1.0, 1.1, 1.2 (ext4 inside); LVM2 PVs: whole "
                              "disk (in a VG), label sector 3, on a GPT partition")


@pytest.fixture(scope="module")
def made(debian_kernel):
    require_tools("qemu-system-x86_64", "blkid", "mdadm", "lvm", "sgdisk", "mkfs.ext4", "busybox")
    try:
        maker.tool_paths()          # the tools packed into the guest; the error names the Debian package
    except maker.MakerError as e:
        pytest.skip(str(e))
    return maker.make(_recipe(), debian_kernel)


def _blocks(text):
    """`-o export` output -> {DEVNAME: {KEY: escaped value}} (blocks are separated by blank lines)."""
    out = {}
    for block in text.strip().split("\n\n"):
        kv = dict(line.split("=", 1) for line in block.strip().splitlines() if "=" in line)
        if "DEVNAME" in kv:
            out[kv.pop("DEVNAME")] = kv
    return out


def _blkid(path, offset=None, size=None):
    blkid = shutil.which("blkid") or shutil.which("blkid", path="/usr/sbin:/sbin")
    argv = [blkid, "-p", "-o", "export"]
    if offset is not None:
        argv += ["--offset", str(offset), "--size", str(size)]
    proc = subprocess.run(argv + [str(path)], capture_output=True, text=True, errors="surrogateescape")
    assert proc.returncode == 0, (argv, proc.returncode, proc.stderr)
    kv = _blocks(proc.stdout)
    assert len(kv) == 1, proc.stdout
    return next(iter(kv.values()))


@pytest.fixture(scope="module")
def ours(made):
    """`mpinit probe` on every disk image at once (the CLI itself), by DEVNAME."""
    proc = subprocess.run([sys.executable, "-m", "mpinit", "probe"] + [str(p) for p in made.disks],
                          capture_output=True, text=True, errors="surrogateescape")
    assert proc.returncode == 0, proc.stderr
    return _blocks(proc.stdout)


def _mdadm(facts, dev):
    return dict(w.split("=", 1) for w in facts[dev].split() if "=" in w)


def _dashed(md_uuid):
    """mdadm's aaaaaaaa:bbbbbbbb:cccccccc:dddddddd as blkid prints it (8-4-4-4-12)."""
    h = md_uuid.replace(":", "")
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


@pytest.mark.e2e
@pytest.mark.parametrize("metadata", [a[0] for a in MD_ARRAYS])
def test_md_members_agree_with_blkid_and_mdadm(made, ours, metadata):
    _, uuid, name, _, members = next(a for a in MD_ARRAYS if a[0] == metadata)
    subs = set()
    for i in members:
        path = made.disks[i]
        theirs = _blkid(path)
        mine = ours[str(path)]
        assert mine == theirs, "%s (md %s member %s): mpinit probe %r, blkid %r" % (path, metadata, DEVICES[i],
                                                                                  mine, theirs)
        assert mine["TYPE"] == "linux_raid_member" and mine["USAGE"] == "raid", mine
        assert mine["VERSION"] == MD_VERSION[metadata], mine
        if metadata in ("0.90", "1.0"):
            # the superblock is at the end, so the array's ext4 (magic 0xEF53 at 1080) starts the member too:
            # the member-before-filesystem rule is exercised, not assumed
            with open(path, "rb") as f:
                assert f.read(1082)[1080:] == b"\x53\xef", "%s: no ext4 at offset 0" % path
        examined = _mdadm(made.facts, DEVICES[i])
        assert examined["MD_UUID"] == uuid and mine["UUID"] == _dashed(uuid), (examined, mine)
        if name:
            assert examined["MD_NAME"] == "%s:%s" % (HOMEHOST, name)
            assert mine["LABEL"] == "%s:%s" % (HOMEHOST, name), mine
            assert mine["UUID_SUB"] == _dashed(examined["MD_DEV_UUID"]), (examined, mine)
            subs.add(mine["UUID_SUB"])
    if name:
        assert len(subs) == 2, "the two members of md %s share a UUID_SUB: %s" % (metadata, subs)


@pytest.mark.e2e
@pytest.mark.parametrize("which", ["whole-disk-in-a-vg", "label-sector-3"])
def test_lvm_physical_volumes_agree_with_blkid_and_lvm(made, ours, which):
    i = PV_WHOLE if which == "whole-disk-in-a-vg" else PV_SECTOR3
    path = made.disks[i]
    with open(path, "rb") as f:     # lvm2 label.h: "LABELONE" starts the label's sector
        assert f.read(4 * 512)[(1 if i == PV_WHOLE else 3) * 512:][:8] == b"LABELONE", path
    theirs = _blkid(path)
    mine = ours[str(path)]
    assert mine == theirs, "%s: mpinit probe %r, blkid %r" % (path, mine, theirs)
    assert mine["TYPE"] == "LVM2_member" and mine["VERSION"] == r"LVM2\ 001", mine   # export escapes the space
    assert mine["UUID"] == made.facts[DEVICES[i]], (mine, made.facts[DEVICES[i]])


@pytest.mark.e2e
def test_lvm_physical_volume_on_a_gpt_partition(made, ours):
    path = made.disks[PV_PART]
    assert ours[str(path)] == _blkid(path)          # the disk's own block: PTTYPE, PTUUID
    part = ours["%s:part1" % path]
    start, size = int(part["PART_ENTRY_OFFSET"]) * 512, int(part["PART_ENTRY_SIZE"]) * 512
    theirs = _blkid(path, start, size)
    fs_keys = {k: v for k, v in part.items() if not k.startswith("PART")}
    assert fs_keys == theirs, (part, theirs)
    assert part["TYPE"] == "LVM2_member" and part["UUID"] == made.facts[DEVICES[PV_PART] + "1"], part
    assert part["PART_ENTRY_TYPE"] == "e6d6d379-f507-44c2-a23c-238f2a3df928", part   # sgdisk 8E00: Linux LVM


@pytest.mark.e2e
def test_micropython_probe_gives_the_same_answers(made, runtime_binary, tmp_path):
    """The probe frozen into /init (MicroPython) reads the members as the host's CPython does."""
    from mpinit_agent import probe

    script = tmp_path / "probe_all.py"
    script.write_text("import sys, json\nfrom mpinit_agent import probe\n"
                      "for p in sys.argv[1:]:\n    print(json.dumps(probe.probe(p)))\n")
    paths = [str(p) for p in made.disks]
    proc = subprocess.run([str(runtime_binary), str(script)] + paths, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert len(out) == len(paths), proc.stdout
    for path, line in zip(paths, out):
        assert json.loads(line) == probe.probe(path), path
