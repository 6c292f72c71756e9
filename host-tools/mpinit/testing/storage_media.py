"""The storage test media of the end-to-end boots: encrypted roots, the DIY-initramfs guide's RAID1 + LVM machine,
and ext4 roots with errors for fsck. Each function returns a maker.Made (disk image paths, in the order they are
attached as /dev/vda, /dev/vdb, ..., and facts such as UUIDs) and is cached (see maker.py).

The roots hold the test live root of mpinit.liveroot (static busybox; /sbin/init prints `MPINIT-LIVE-OK ...` and
/proc/mounts, then powers off), so the e2e tests read them as they read the live boots. Media needing dm/md
(LUKS, RAID, LVM) are made by the real tools in a QEMU guest (maker.make); the fsck media are plain ext4 image
files corrupted with debugfs on the host (maker.host_made).

All identifiers are fixed, so scenarios can name them on the kernel command line; the secrets are fixed test
data, not secrets.
"""

import hashlib
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .. import liveroot
from ..runner import find_tool, run
from . import maker
from .maker import Disk, Partition, Recipe

# LUKS2 root (typed passphrase)
LUKS2_UUID = "6d70696e-6974-4c55-4b53-000000000002"
LUKS2_ROOT_UUID = "6d70696e-6974-524f-4f54-000000000102"
LUKS2_PASSPHRASE = "mpinit luks2 test"         # a space in it: the prompt must take the whole line
WRONG_PASSPHRASE = "not the passphrase"
# LUKS1 root (key file on a second disk)
LUKS1_UUID = "6d70696e-6974-4c55-4b53-000000000001"
LUKS1_ROOT_UUID = "6d70696e-6974-524f-4f54-000000000101"
KEYS_LABEL = "MPKEYS"
KEYS_UUID = "6d70696e-6974-4b45-5953-000000000001"
KEY_PATH = "/keys/root.key"
# 64 bytes of fixed "random" key (any byte may occur, newlines included: a key file is used as it is)
LUKS1_KEY = hashlib.sha512(b"mpinit luks1 test key").digest()
# RAID1 (metadata 1.2) -> LVM vg0 -> root, usr
MD_UUID = "6d70696e:69744d44:52414944:00000001"   # mdadm's own notation, as rd.md.uuid= takes it
VG = "vg0"
LV_ROOT_UUID = "6d70696e-6974-4c56-524f-000000000001"
LV_USR_UUID = "6d70696e-6974-4c56-5553-000000000001"
USR_MARKER = "MPINIT-USR-OK"
USR_FILE = "/usr/share/mpinit/usr-ok"
# ext4 roots for fsck
FSCK_FIXABLE_UUID = "6d70696e-6974-4653-434b-000000000001"
FSCK_BROKEN_UUID = "6d70696e-6974-4653-434b-000000000002"
FSCK_FILE = "/etc/os-release"

# LUKS parameters cheap enough for TCG (cryptsetup(8)): no benchmark (--pbkdf-force-iterations), argon2id with
# 2 MiB and the minimum 4 passes (LUKS2), PBKDF2 with its minimum 1000 iterations (LUKS1). Measured unlock times
# (`cryptsetup open` in a TCG guest on a loaded host): LUKS1 0.6 s; LUKS2 with 16 MiB 3-4.5 s, hence 2 MiB.
LUKS2_FORMAT = ("--type luks2 --pbkdf argon2id --pbkdf-memory 2048 --pbkdf-parallel 1 "
                "--pbkdf-force-iterations 4")
LUKS1_FORMAT = "--type luks1 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --hash sha256"

# The usr check, put in the root's /sbin/init before its report: a file that only the /usr filesystem holds.
USR_CHECK = ('if [ -e %s ]; then echo "%s $(cat %s)"; else echo "MPINIT-USR-MISSING"; fi\n'
             % (USR_FILE, USR_MARKER, USR_FILE))


# And the device-mapper names, so a test can tell which mapping /dev/dm-N in /proc/mounts is.
DM_MARKER = "MPINIT-DM"
DM_REPORT = ('for d in /sys/block/dm-*; do [ -e "$d/dm/name" ] && echo "%s ${d##*/}=$(cat "$d/dm/name")"; done\n'
             % DM_MARKER)


def dm_names(output):
    """{"dm-0": "vg0-root", ...} from a console that ran DM_REPORT."""
    out = {}
    for line in output.split("\n"):
        i = line.find(DM_MARKER + " ")
        if i >= 0:
            k, _, v = line[i + len(DM_MARKER) + 1:].strip().partition("=")
            out[k] = v
    return out


@contextmanager
def _scratch():
    d = Path(tempfile.mkdtemp(prefix="mpinit-storage-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _root_tree(dest, before_report=""):
    """The test root; its /sbin/init also prints DM_REPORT (and `before_report`) before the usual report."""
    root = liveroot.build_tree(dest)
    init = root / "sbin" / "init"
    init.write_text(liveroot.INIT_SCRIPT.replace("up=$(", before_report + DM_REPORT + "up=$(", 1))
    return root


def _mkfs_lines(device, uuid, label, tree):
    return ("mkfs.ext4 -q -F -L %s -U %s -E root_owner=0:0 -d \"$TREE/%s\" %s\n"
            "fact %s_uuid \"$(debugfs -R stats %s | sed -n 's/^Filesystem UUID:[[:space:]]*//p')\"\n"
            % (label, uuid, tree, device, label.lower(), device))


def luks2_root(kernel, cache=None):
    """One disk: GPT, partition 1 (PARTLABEL MPCRYPT2, type Linux LUKS) is LUKS2 (UUID LUKS2_UUID, passphrase
    LUKS2_PASSPHRASE) holding ext4 (UUID LUKS2_ROOT_UUID) with the test root."""
    with _scratch() as s:
        script = (
            "cryptsetup luksFormat --batch-mode %s --uuid %s --label MPCRYPT2 --key-file \"$IN/passphrase\" "
            "/dev/vda1\n"
            "cryptsetup open --key-file \"$IN/passphrase\" /dev/vda1 mkroot\n"
            % (LUKS2_FORMAT, LUKS2_UUID)
            + _mkfs_lines("/dev/mapper/mkroot", LUKS2_ROOT_UUID, "MPROOT2", "root")
            + "cryptsetup close mkroot\n"
            "fact luks_uuid \"$(cryptsetup luksUUID /dev/vda1)\"\n"
            "fact luks_version \"$(cryptsetup luksDump /dev/vda1 | sed -n 's/^Version:[[:space:]]*//p')\"\n"
            "fact pbkdf \"$(cryptsetup luksDump /dev/vda1 | sed -n 's/^[[:space:]]*PBKDF:[[:space:]]*//p' "
            "| head -n 1)\"\n")
        recipe = Recipe(
            "luks2-root", (Disk(64, (Partition("MPCRYPT2", type_code="8309"),)),), script,
            description="GPT disk, LUKS2 partition holding the ext4 test root",
            inputs={"passphrase": LUKS2_PASSPHRASE.encode()}, trees={"root": _root_tree(s / "root")},
            facts={"luks_uuid_given": LUKS2_UUID, "root_uuid": LUKS2_ROOT_UUID, "device": "/dev/vda1"})
        return maker.make(recipe, kernel, cache)


def luks1_keyfile(kernel, cache=None):
    """Two disks: vda is GPT with partition 1 LUKS1 (UUID LUKS1_UUID, unlocked by LUKS1_KEY only) holding ext4
    (UUID LUKS1_ROOT_UUID) with the test root; vdb is a "USB key": GPT, partition 1 ext4 (LABEL MPKEYS, UUID
    KEYS_UUID) holding KEY_PATH."""
    with _scratch() as s:
        keys = s / "keys"
        (keys / "keys").mkdir(parents=True)
        (keys / KEY_PATH.lstrip("/")).write_bytes(LUKS1_KEY)
        script = (
            "cryptsetup luksFormat --batch-mode %s --uuid %s --key-file \"$IN/root.key\" /dev/vda1\n"
            "cryptsetup open --key-file \"$IN/root.key\" /dev/vda1 mkroot\n"
            % (LUKS1_FORMAT, LUKS1_UUID)
            + _mkfs_lines("/dev/mapper/mkroot", LUKS1_ROOT_UUID, "MPROOT1", "root")
            + "cryptsetup close mkroot\n"
            + _mkfs_lines("/dev/vdb1", KEYS_UUID, KEYS_LABEL, "keys")
            + "fact luks_uuid \"$(cryptsetup luksUUID /dev/vda1)\"\n"
            "fact luks_version \"$(cryptsetup luksDump /dev/vda1 | sed -n 's/^Version:[[:space:]]*//p')\"\n")
        recipe = Recipe(
            "luks1-keyfile", (Disk(48, (Partition("MPCRYPT1", type_code="8309"),)),
                              Disk(16, (Partition("MPKEYS"),))), script,
            description="GPT disk with a LUKS1 partition (key file only) holding the ext4 test root; a second "
                        "disk with ext4 MPKEYS holding the key file",
            inputs={"root.key": LUKS1_KEY}, trees={"root": _root_tree(s / "root"), "keys": keys},
            facts={"root_uuid": LUKS1_ROOT_UUID, "keys_uuid": KEYS_UUID, "key_path": KEY_PATH,
                   "device": "/dev/vda1"})
        return maker.make(recipe, kernel, cache)


def _split_usr(root, usr):
    """Move root/usr's contents to the tree `usr` (the /usr filesystem); root keeps an empty /usr."""
    usr.mkdir(parents=True)
    for p in sorted((root / "usr").iterdir()):
        shutil.move(str(p), str(usr / p.name))
    (usr / USR_FILE[len("/usr/"):]).parent.mkdir(parents=True, exist_ok=True)
    (usr / USR_FILE[len("/usr/"):]).write_text("on the usr logical volume\n")


def raid_lvm(kernel, cache=None):
    """The DIY-initramfs guide's machine: two disks, each GPT with partition 1 of type Linux RAID; an mdadm RAID1
    (metadata 1.2, UUID MD_UUID) over vda1 + vdb1 holding LVM VG vg0 with LVs root (ext4, UUID LV_ROOT_UUID: the
    test root, whose /etc/fstab mounts /usr by UUID) and usr (ext4, UUID LV_USR_UUID: the root's /usr, with
    USR_FILE). The root's init prints `MPINIT-USR-OK ...` when /usr is mounted. Either disk alone is a degraded
    array that still holds everything."""
    with _scratch() as s:
        root = _root_tree(s / "root", USR_CHECK)
        _split_usr(root, s / "usr")
        (root / "etc" / "fstab").write_text(
            "# <file system> <mount point> <type> <options> <dump> <pass>\n"
            "/dev/mapper/vg0-root / ext4 defaults 0 1\n"
            "UUID=%s /usr ext4 defaults 0 2\n" % LV_USR_UUID)
        script = (
            # --assume-clean: the members are blank files, all zeros, so they already agree; no resync to wait for
            "mdadm --create /dev/md0 --run --assume-clean --metadata=1.2 --level=1 --raid-devices=2 "
            "--uuid=%s --name=mproot --homehost=mpinit /dev/vda1 /dev/vdb1\n"
            "lvm pvcreate -y /dev/md0\n"
            "lvm vgcreate %s /dev/md0\n"
            "lvm lvcreate -y -n root -L 40M %s\n"
            "lvm lvcreate -y -n usr -l 100%%FREE %s\n"
            % (MD_UUID, VG, VG, VG)
            + _mkfs_lines("/dev/mapper/vg0-root", LV_ROOT_UUID, "MPLVROOT", "root")
            + _mkfs_lines("/dev/mapper/vg0-usr", LV_USR_UUID, "MPLVUSR", "usr")
            + "fact lvs \"$(lvm lvs --noheadings -o lv_name,lv_size --separator : %s | tr -d ' ' | tr '\\n' ,)\"\n"
            "lvm vgchange -an %s\n"
            "fact md_uuid \"$(mdadm --detail --export /dev/md0 | sed -n 's/^MD_UUID=//p')\"\n"
            "fact md_level \"$(mdadm --detail --export /dev/md0 | sed -n 's/^MD_LEVEL=//p')\"\n"
            "fact md_metadata \"$(mdadm --detail --export /dev/md0 | sed -n 's/^MD_METADATA=//p')\"\n"
            "mdadm --stop /dev/md0\n" % (VG, VG))
        recipe = Recipe(
            "raid1-lvm", (Disk(128, (Partition("MPRAID0", type_code="FD00"),)),
                          Disk(128, (Partition("MPRAID1", type_code="FD00"),))), script,
            description="two disks, mdadm RAID1 (1.2) -> LVM vg0 -> LV root + LV usr (ext4 both); the root's "
                        "fstab mounts /usr",
            trees={"root": root, "usr": s / "usr"},
            facts={"md_uuid_given": MD_UUID, "vg": VG, "root_uuid": LV_ROOT_UUID, "usr_uuid": LV_USR_UUID})
        return maker.make(recipe, kernel, cache)


# --- ext4 roots with errors (host only: debugfs on an image file) -------------------------------------------

def _ext4_root_image(out, uuid, tree):
    with open(out, "wb") as f:
        f.truncate(32 * maker.MIB)
    run([find_tool("mkfs.ext4", "e2fsprogs"), "-q", "-F", "-L", "MPFSCK", "-U", uuid, "-E", "root_owner=0:0",
         "-d", tree, out], capture=True, echo=False)


def _debugfs(image, request):
    run([find_tool("debugfs", "e2fsprogs"), "-w", "-R", request, image], capture=True, echo=False)


def _fsck_medium(name, uuid, damage, description):
    def build(work):
        with _scratch() as s:
            tree = _root_tree(s / "root")
            disk = work / "disk0.img"
            _ext4_root_image(disk, uuid, tree)
        for request in damage:
            _debugfs(disk, request)
        # Marked not clean (as after a crash): `fsck -a` checks it instead of trusting the clean flag.
        _debugfs(disk, "ssv state 0")
        # What the damage is, checked now: e2fsck -n on a copy must see it (exit 4: errors left uncorrected).
        probe = work / "probe.img"
        shutil.copyfile(disk, probe)
        proc = run([find_tool("e2fsck", "e2fsprogs"), "-f", "-n", probe], capture=True, check=False, echo=False)
        probe.unlink()
        if proc.returncode != 4:
            raise maker.MakerError("%s: e2fsck -n should find errors in the damaged image, exit %d"
                                   % (name, proc.returncode))
        return [disk], {"root_uuid": uuid, "description": description}

    def medium(kernel=None, cache=None):   # kernel: unused (no guest), for the same call as the others
        return maker.host_made(name, (uuid, damage, liveroot.inputs_digest(), Path(__file__).read_bytes()), build,
                               cache)
    medium.__doc__ = "%s (%s): one whole-disk ext4 filesystem, UUID %s." % (name, description, uuid)
    return medium


# A wrong link count on a file is repaired by `e2fsck -a` (preen: PR_4_BAD_REF_COUNT is PR_PREEN_OK in
# e2fsck/problem.c): exit 1, "errors corrected", and the root boots.
fsck_fixable = _fsck_medium("ext4-fsck-fixable", FSCK_FIXABLE_UUID, ("sif %s links_count 3" % FSCK_FILE,),
                            "ext4 test root, not clean, a file's link count wrong (preen repairs it)")
# An invalid inode mode is not safe to repair unattended (PR_2_BAD_MODE has no PR_PREEN_OK): `e2fsck -a` stops
# with "UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY", exit 4.
fsck_broken = _fsck_medium("ext4-fsck-broken", FSCK_BROKEN_UUID, ("sif %s mode 0170644" % FSCK_FILE,),
                           "ext4 test root, not clean, a file with an invalid mode (preen cannot repair it)")
