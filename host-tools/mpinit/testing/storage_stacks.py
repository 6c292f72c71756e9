"""More storage test media, made by the real tools in the maker guest (maker.py) like storage_media's: the two
ways LUKS and LVM stack (LVM on LUKS, the common laptop layout; LUKS on LVM, an encrypted logical volume), and a
LUKS2 persistence volume for a live stick (live-boot's persistence-encryption=luks).

Each function returns a maker.Made, cached under build/e2e/storage/<name>/ (one guest run each, 10-60 s under
TCG). Identifiers and passphrases are fixed test data, so scenarios can name them on the kernel command line.
"""

from . import maker
from .maker import Disk, Partition, Recipe
from .storage_media import LUKS2_FORMAT, _mkfs_lines, _root_tree, _scratch

# LVM on LUKS: partition 1 is LUKS2 holding the PV of volume group VG_IN_LUKS with LV root.
LVM_ON_LUKS_UUID = "6d70696e-6974-4c55-4b53-000000000003"
VG_IN_LUKS = "vgcrypt"
LVM_ON_LUKS_ROOT_UUID = "6d70696e-6974-524f-4f54-000000000103"
# LUKS on LVM: partition 1 is the PV of volume group VG_UNDER_LUKS, whose LV "crypt" is LUKS2 holding the root.
LUKS_ON_LVM_UUID = "6d70696e-6974-4c55-4b53-000000000004"
VG_UNDER_LUKS = "vgplain"
LUKS_ON_LVM_ROOT_UUID = "6d70696e-6974-524f-4f54-000000000104"
STACK_PASSPHRASE = "mpinit stack test"
# The LUKS2 persistence volume: ext4 labelled "persistence" with persistence.conf "/ union" inside.
PERSIST_LUKS_UUID = "6d70696e-6974-4c55-4b53-000000000005"
PERSIST_FS_UUID = "6d70696e-6974-5045-5253-000000000105"
PERSIST_PASSPHRASE = "mpinit persistence"


def lvm_on_luks(kernel, cache=None):
    """One disk: GPT partition 1 (type Linux LUKS) is LUKS2 (UUID LVM_ON_LUKS_UUID, STACK_PASSPHRASE) holding an
    LVM PV of VG_IN_LUKS with LV root: ext4 (UUID LVM_ON_LUKS_ROOT_UUID) with the test root."""
    with _scratch() as s:
        script = (
            "cryptsetup luksFormat --batch-mode %s --uuid %s --key-file \"$IN/passphrase\" /dev/vda1\n"
            "cryptsetup open --key-file \"$IN/passphrase\" /dev/vda1 mkpv\n"
            "lvm pvcreate -y /dev/mapper/mkpv\n"
            "lvm vgcreate %s /dev/mapper/mkpv\n"
            "lvm lvcreate -y -n root -l 100%%FREE %s\n"
            % (LUKS2_FORMAT, LVM_ON_LUKS_UUID, VG_IN_LUKS, VG_IN_LUKS)
            + _mkfs_lines("/dev/mapper/%s-root" % VG_IN_LUKS, LVM_ON_LUKS_ROOT_UUID, "MPLVCRYPT", "root")
            + "lvm vgchange -an %s\n"
            "cryptsetup close mkpv\n"
            "fact luks_uuid \"$(cryptsetup luksUUID /dev/vda1)\"\n" % VG_IN_LUKS)
        recipe = Recipe(
            "lvm-on-luks", (Disk(64, (Partition("MPLVMLUKS", type_code="8309"),)),), script,
            description="GPT disk, LUKS2 partition holding LVM VG vgcrypt with LV root (ext4 test root)",
            inputs={"passphrase": STACK_PASSPHRASE.encode()}, trees={"root": _root_tree(s / "root")},
            facts={"root_uuid": LVM_ON_LUKS_ROOT_UUID, "vg": VG_IN_LUKS})
        return maker.make(recipe, kernel, cache)


def luks_on_lvm(kernel, cache=None):
    """One disk: GPT partition 1 (type Linux LVM) is the PV of VG_UNDER_LUKS with LV crypt: LUKS2 (UUID
    LUKS_ON_LVM_UUID, STACK_PASSPHRASE) holding ext4 (UUID LUKS_ON_LVM_ROOT_UUID) with the test root."""
    with _scratch() as s:
        script = (
            "lvm pvcreate -y /dev/vda1\n"
            "lvm vgcreate %s /dev/vda1\n"
            "lvm lvcreate -y -n crypt -l 100%%FREE %s\n"
            "cryptsetup luksFormat --batch-mode %s --uuid %s --key-file \"$IN/passphrase\" /dev/mapper/%s-crypt\n"
            "cryptsetup open --key-file \"$IN/passphrase\" /dev/mapper/%s-crypt mkroot\n"
            % (VG_UNDER_LUKS, VG_UNDER_LUKS, LUKS2_FORMAT, LUKS_ON_LVM_UUID, VG_UNDER_LUKS, VG_UNDER_LUKS)
            + _mkfs_lines("/dev/mapper/mkroot", LUKS_ON_LVM_ROOT_UUID, "MPCRYPTLV", "root")
            + "cryptsetup close mkroot\n"
            "fact luks_uuid \"$(cryptsetup luksUUID /dev/mapper/%s-crypt)\"\n"
            "lvm vgchange -an %s\n" % (VG_UNDER_LUKS, VG_UNDER_LUKS))
        recipe = Recipe(
            "luks-on-lvm", (Disk(64, (Partition("MPLUKSLVM", type_code="8E00"),)),), script,
            description="GPT disk, LVM VG vgplain with LV crypt: LUKS2 holding the ext4 test root",
            inputs={"passphrase": STACK_PASSPHRASE.encode()}, trees={"root": _root_tree(s / "root")},
            facts={"root_uuid": LUKS_ON_LVM_ROOT_UUID, "vg": VG_UNDER_LUKS})
        return maker.make(recipe, kernel, cache)


def luks2_persistence(kernel, cache=None):
    """One disk: GPT partition 1 (type Linux LUKS) is LUKS2 (UUID PERSIST_LUKS_UUID, PERSIST_PASSPHRASE) holding
    ext4 labelled "persistence" (UUID PERSIST_FS_UUID) whose persistence.conf says "/ union"."""
    with _scratch() as s:
        tree = s / "persistence"
        tree.mkdir()
        (tree / "persistence.conf").write_text("/ union\n")
        script = (
            "cryptsetup luksFormat --batch-mode %s --uuid %s --key-file \"$IN/passphrase\" /dev/vda1\n"
            "cryptsetup open --key-file \"$IN/passphrase\" /dev/vda1 mkpersist\n"
            % (LUKS2_FORMAT, PERSIST_LUKS_UUID)
            + _mkfs_lines("/dev/mapper/mkpersist", PERSIST_FS_UUID, "persistence", "persistence")
            + "cryptsetup close mkpersist\n"
            "fact luks_uuid \"$(cryptsetup luksUUID /dev/vda1)\"\n")
        recipe = Recipe(
            "luks2-persistence", (Disk(48, (Partition("MPPERSIST", type_code="8309"),)),), script,
            description="GPT disk, LUKS2 partition holding ext4 'persistence' with persistence.conf '/ union'",
            inputs={"passphrase": PERSIST_PASSPHRASE.encode()}, trees={"persistence": tree},
            facts={"fs_uuid": PERSIST_FS_UUID})
        return maker.make(recipe, kernel, cache)
