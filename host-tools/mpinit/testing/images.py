"""Synthetic block-device images: minimal superblocks and partition tables that util-linux `blkid -p` accepts.

The fake machine backs its disks with these bytes; tests of the agent's probes use them besides real mkfs output.
Only what blkid (and the kernel's own identification) reads is written: the superblock / volume descriptor with
its label and UUID, plus the few structures a prober follows (the FAT root directory holding the FAT label, the
exFAT FAT and its label entry, the ISO terminator and Joliet descriptor). No files are stored: the fake machine
keeps a mounted filesystem's files separately.

    filesystem(fstype, *, label=None, uuid=None, size=1 << 20) -> bytes
    Partition(data, *, partlabel=None, partuuid=None, type=None, bootable=False)
    disk(partitions, *, table="gpt", disk_uuid=None, signature=None, size=None) -> bytes

UUIDs are given in the form blkid prints for the type (None: a random one, as mkfs does):
ext2/ext4/btrfs/xfs/swap "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"; vfat/exfat "XXXX-XXXX" (the volume serial);
iso9660 "YYYY-MM-DD-HH-MM-SS-cc" (the volume creation/modification date); crypto_LUKS any string up to 39
characters (LUKS keeps it as text); squashfs has none. Every check tests/test_images.py makes is against blkid.
"""

import os
import struct
import uuid as _uuid
import zlib

SECTOR = 512
MiB = 1 << 20

FSTYPES = ("vfat", "fat32", "fat16", "fat12", "ext4", "ext2", "iso9660", "squashfs", "exfat", "swap", "btrfs",
           "xfs", "crypto_LUKS", "crypto_LUKS1")

# GPT partition type GUIDs (UEFI spec, appendix "GUID partition types"; systemd's Discoverable Partitions Spec).
GPT_TYPES = {
    "linux": "0fc63daf-8483-4772-8e79-3d69d8e47de4",
    "esp": "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
    "swap": "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f",
    "bios": "21686148-6449-6e6f-744e-656564454649",
    "basic": "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7",
}
# MBR partition type bytes.
MBR_TYPES = {"linux": 0x83, "esp": 0xEF, "swap": 0x82, "fat32": 0x0C, "fat16": 0x0E, "ntfs": 0x07,
             "exfat": 0x07}


# ---------------------------------------------------------------------------------------------- helpers


def _crc32c_table():
    poly = 0x82F63B78  # Castagnoli, reflected (RFC 3720 section 12.1)
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data, crc=0):
    """CRC-32C as btrfs and xfs store it (initial ~0, final xor ~0)."""
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _put(buf, off, data):
    buf[off:off + len(data)] = data


def _ascii(value, what, width, fstype):
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("%s %s %r: only ASCII is supported here" % (fstype, what, value))
    if len(raw) > width:
        raise ValueError("%s %s %r: longer than %d bytes" % (fstype, what, value, width))
    return raw


def _utf8(value, what, width, fstype):
    raw = value.encode("utf-8")
    if len(raw) > width:
        raise ValueError("%s %s %r: longer than %d bytes" % (fstype, what, value, width))
    return raw


def _std_uuid(value, fstype):
    """A standard UUID string (any case) -> its 16 bytes in textual order (as ext/btrfs/xfs/swap store it)."""
    if value is None:
        return os.urandom(16)
    try:
        return _uuid.UUID(value).bytes
    except (ValueError, AttributeError, TypeError):
        raise ValueError("%s uuid %r: want xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" % (fstype, value))


def _serial(value, fstype):
    """A FAT/exFAT serial "XXXX-XXXX" -> the 32-bit number blkid prints as "%04X-%04X" (high, low)."""
    if value is None:
        return struct.unpack("<I", os.urandom(4))[0]
    if (not isinstance(value, str) or len(value) != 9 or value[4] != "-"
            or not all(c in "0123456789abcdefABCDEF" for c in value[:4] + value[5:])):
        raise ValueError("%s uuid %r: want the volume serial as XXXX-XXXX (hex)" % (fstype, value))
    return int(value[:4] + value[5:], 16)


def _guid_bytes(value, what):
    """A GUID string -> its on-disk (mixed-endian, as GPT stores it) 16 bytes."""
    try:
        return _uuid.UUID(value).bytes_le
    except (ValueError, AttributeError, TypeError):
        raise ValueError("%s %r: want a GUID xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" % (what, value))


def _sized(fstype, size, minimum):
    if not isinstance(size, int) or size < minimum or size % SECTOR:
        raise ValueError("%s size %r: want a multiple of %d bytes, at least %d" % (fstype, size, SECTOR, minimum))
    return bytearray(size)


# ---------------------------------------------------------------------------------------------- filesystems


def _ext(fstype, label, uuid, size):
    buf = _sized(fstype, size, 64 * 1024)
    blocks = size // 1024
    sb = bytearray(1024)
    # struct ext2_super_block (linux/fs/ext4/ext4.h); 1 KiB blocks, one block group.
    inodes = 16
    struct.pack_into("<IIIIIIIIIII", sb, 0,
                     inodes,          # s_inodes_count
                     blocks,          # s_blocks_count_lo
                     0,               # s_r_blocks_count_lo
                     blocks - 64,     # s_free_blocks_count_lo
                     inodes - 11,     # s_free_inodes_count
                     1,               # s_first_data_block (1 KiB blocks)
                     0,               # s_log_block_size: 1024 << 0
                     0,               # s_log_cluster_size
                     8192,            # s_blocks_per_group
                     8192,            # s_clusters_per_group
                     inodes)          # s_inodes_per_group
    struct.pack_into("<HHHH", sb, 0x34, 0, 0xFFFF, 0xEF53, 1)   # s_mnt_count, s_max_mnt_count, s_magic, s_state
    struct.pack_into("<HH", sb, 0x3C, 1, 0)                     # s_errors, s_minor_rev_level
    struct.pack_into("<II", sb, 0x4C, 1, 0)                     # s_rev_level = EXT2_DYNAMIC_REV, s_def_resuid
    struct.pack_into("<IH", sb, 0x54, 11, 256)                  # s_first_ino, s_inode_size
    if fstype == "ext4":
        compat = 0x0004 | 0x0010 | 0x0020      # has_journal, resize_inode, dir_index
        incompat = 0x0002 | 0x0040 | 0x0200    # filetype, extents, flex_bg
        ro_compat = 0x0001 | 0x0002 | 0x0008   # sparse_super, large_file, huge_file (huge_file: ext3 lacks it)
    else:
        compat = 0x0010 | 0x0020
        incompat = 0x0002
        ro_compat = 0x0001 | 0x0002
    struct.pack_into("<III", sb, 0x5C, compat, incompat, ro_compat)
    _put(sb, 0x68, _std_uuid(uuid, fstype))                     # s_uuid
    if label is not None:
        _put(sb, 0x78, _utf8(label, "label", 16, fstype))       # s_volume_name
    _put(buf, 1024, sb)
    return buf


def _fat(fstype, label, uuid, size):
    bits = {"vfat": 32, "fat32": 32, "fat16": 16, "fat12": 12}[fstype]
    buf = _sized(fstype, size, 128 * 1024)
    sectors = size // SECTOR
    serial = _serial(uuid, fstype)
    name = b"NO NAME    " if label is None else _ascii(label, "label", 11, fstype).ljust(11, b" ")
    reserved = 32 if bits == 32 else 1
    fats = 2
    root_entries = 0 if bits == 32 else 512
    root_sectors = root_entries * 32 // SECTOR
    # FAT size: enough entries for every data sector (one sector per cluster), rounded up to whole sectors.
    fat_sectors = ((sectors + 2) * bits // 8 + SECTOR - 1) // SECTOR
    bs = bytearray(SECTOR)
    # BIOS parameter block (Microsoft "FAT: General Overview of On-Disk Format", section 3).
    _put(bs, 0, b"\xEB\x58\x90" if bits == 32 else b"\xEB\x3C\x90")
    _put(bs, 3, b"mkfs.fat")
    struct.pack_into("<HBHBHHBHHHI", bs, 11,
                     SECTOR,                                # BPB_BytsPerSec
                     1,                                     # BPB_SecPerClus
                     reserved,                              # BPB_RsvdSecCnt
                     fats,                                  # BPB_NumFATs
                     root_entries,                          # BPB_RootEntCnt
                     sectors if sectors < 0x10000 and bits != 32 else 0,  # BPB_TotSec16
                     0xF8,                                  # BPB_Media: fixed disk
                     0 if bits == 32 else fat_sectors,      # BPB_FATSz16
                     32,                                    # BPB_SecPerTrk
                     64,                                    # BPB_NumHeads
                     0)                                     # BPB_HiddSec
    struct.pack_into("<I", bs, 32, sectors if sectors >= 0x10000 or bits == 32 else 0)  # BPB_TotSec32
    if bits == 32:
        # BPB_FATSz32, BPB_ExtFlags, BPB_FSVer, BPB_RootClus, BPB_FSInfo, BPB_BkBootSec
        struct.pack_into("<IHHIHH", bs, 36, fat_sectors, 0, 0, 2, 1, 6)
        ext = 64
    else:
        ext = 36
    struct.pack_into("<BBBI", bs, ext, 0x80, 0, 0x29, serial)           # drive, reserved, BS_BootSig, BS_VolID
    _put(bs, ext + 7, name)                                             # BS_VolLab
    _put(bs, ext + 18, b"FAT32   " if bits == 32 else b"FAT%d   " % bits)  # BS_FilSysType
    bs[510:512] = b"\x55\xAA"
    _put(buf, 0, bs)
    fat_start = reserved * SECTOR
    if bits == 32:
        # FSInfo sector (lead/struct signatures) and the backup boot sector at 6.
        fsinfo = bytearray(SECTOR)
        _put(fsinfo, 0, b"RRaA")
        _put(fsinfo, 484, b"rrAa")
        struct.pack_into("<II", fsinfo, 488, 0xFFFFFFFF, 0xFFFFFFFF)
        fsinfo[510:512] = b"\x55\xAA"
        _put(buf, SECTOR, fsinfo)
        _put(buf, 6 * SECTOR, bs)
        first = struct.pack("<III", 0x0FFFFFF8, 0x0FFFFFFF, 0x0FFFFFFF)  # media, EOC, root dir cluster 2: EOC
    elif bits == 16:
        first = struct.pack("<HH", 0xFFF8, 0xFFFF)
    else:
        first = b"\xF8\xFF\xFF"
    for i in range(fats):
        _put(buf, fat_start + i * fat_sectors * SECTOR, first)
    # The FAT type follows from the cluster count alone (Microsoft FAT spec, section 3.5), and so does blkid's
    # VERSION: FAT12 below 4085 clusters, FAT16 below 65525 (libblkid already says FAT16 at 4084).
    clusters = sectors - reserved - fats * fat_sectors - root_sectors
    if bits == 16 and clusters < 4085 or bits == 12 and clusters >= 4084:
        raise ValueError("%s size %d: %d clusters of %d bytes; FAT12 has fewer than 4084 clusters, FAT16 at least "
                         "4085 (a %s image needs %s)" % (fstype, size, clusters, SECTOR, fstype,
                                                          "at least 2200 KiB" if bits == 16 else "at most 2 MiB"))
    root = fat_start + fats * fat_sectors * SECTOR       # FAT12/16 fixed root dir, or cluster 2 of FAT32
    if label is not None:
        # The volume label directory entry (attribute ATTR_VOLUME_ID) is where blkid takes LABEL from.
        entry = bytearray(32)
        _put(entry, 0, name)
        entry[11] = 0x08
        _put(buf, root, entry)
    if root + max(root_sectors, 1) * SECTOR > size:
        raise ValueError("%s size %d: too small for the FAT layout" % (fstype, size))
    return buf


def _iso_date(uuid):
    if uuid is None:
        import time
        t = time.gmtime()
        return b"%04d%02d%02d%02d%02d%02d00" % t[:6]
    parts = uuid.split("-") if isinstance(uuid, str) else []
    if len(parts) != 7 or [len(p) for p in parts] != [4, 2, 2, 2, 2, 2, 2] or not "".join(parts).isdigit():
        raise ValueError("iso9660 uuid %r: want the volume date as YYYY-MM-DD-HH-MM-SS-cc" % (uuid,))
    return "".join(parts).encode("ascii")


def _both16(v):
    return struct.pack("<H", v) + struct.pack(">H", v)


def _both32(v):
    return struct.pack("<I", v) + struct.pack(">I", v)


def _iso9660(fstype, label, uuid, size):
    buf = _sized(fstype, size, 64 * 1024)
    if size % 2048:
        raise ValueError("iso9660 size %d: want a multiple of 2048" % size)
    date = _iso_date(uuid) + b"\x00"          # 16 digits + offset from GMT in 15 min units
    label = "" if label is None else label
    if len(label) > 32:
        raise ValueError("iso9660 label %r: longer than 32 characters" % label)
    # The primary descriptor holds ASCII only: other characters become "_" there (as xorriso does) and the
    # Joliet descriptor, which blkid prefers when it differs, keeps the real label (16 characters at most).
    pvd_label = "".join(c if " " <= c < "\x7f" else "_" for c in label).encode("ascii").ljust(32, b" ")
    if len(label) > 16 and pvd_label.rstrip().decode("ascii") != label:
        raise ValueError("iso9660 label %r: a non-ASCII label fits Joliet's 16 characters only" % label)
    joliet_label = label[:16].encode("utf-16-be")
    joliet_label += " ".encode("utf-16-be") * ((32 - len(joliet_label)) // 2)
    blocks = size // 2048
    root_lba = 20
    # ECMA-119 section 8.4: the primary volume descriptor at logical sector 16.
    for sector, vd_type in ((16, 1), (17, 2), (18, 255)):
        vd = bytearray(2048)
        vd[0] = vd_type
        _put(vd, 1, b"CD001")
        vd[6] = 1
        if vd_type != 255:
            _put(vd, 8, b" " * 32 if vd_type == 1 else " ".encode("utf-16-be") * 16)   # system identifier
            _put(vd, 40, pvd_label if vd_type == 1 else joliet_label)                 # volume identifier
            _put(vd, 80, _both32(blocks))                                            # volume space size
            if vd_type == 2:
                _put(vd, 88, b"%/E")     # Joliet UCS-2 level 3 escape sequence (Joliet spec, section 3.1)
            _put(vd, 120, _both16(1))    # volume set size
            _put(vd, 124, _both16(1))    # volume sequence number
            _put(vd, 128, _both16(2048))  # logical block size
            _put(vd, 156, _root_dir_record(root_lba))
            for field, width in ((190, 128), (318, 128), (446, 128), (574, 128), (702, 37), (739, 37),
                                 (776, 37)):
                _put(vd, field, (b" " * width) if vd_type == 1 else " ".encode("utf-16-be") * (width // 2))
            _put(vd, 813, date)           # volume creation date
            _put(vd, 830, date)           # volume modification date (blkid's UUID when set)
            _put(vd, 847, b"0" * 16 + b"\x00")   # expiration: unset
            _put(vd, 864, b"0" * 16 + b"\x00")   # effective: unset
            vd[881] = 1                   # file structure version
        _put(buf, sector * 2048, vd)
    # The root directory itself: "." and "..".
    for i, ident in enumerate((0, 1)):
        _put(buf, root_lba * 2048 + i * 34, _root_dir_record(root_lba, ident))
    return buf


def _root_dir_record(root_lba, ident=0):
    """A directory record (ECMA-119 9.1) for the root directory, one sector at root_lba; ident 0 is "." (also
    the copy in the volume descriptor), 1 is ".."."""
    rec = bytearray(34)
    rec[0] = 34                     # record length
    _put(rec, 2, _both32(root_lba))  # extent location
    _put(rec, 10, _both32(2048))    # data length
    rec[25] = 0x02                  # file flags: directory
    _put(rec, 28, _both16(1))       # volume sequence number
    rec[32] = 1                     # length of the identifier
    rec[33] = ident
    return rec


def _squashfs(fstype, label, uuid, size):
    if label is not None or uuid is not None:
        raise ValueError("squashfs has no label or UUID (blkid reports neither)")
    buf = _sized(fstype, size, 4096)
    # struct squashfs_super_block (linux/fs/squashfs/squashfs_fs.h), version 4.0.
    struct.pack_into("<IIIIIHHHHHHQ", buf, 0,
                     0x73717368,     # s_magic "hsqs"
                     1,              # inodes
                     0,              # mkfs_time
                     131072,         # block_size
                     0,              # fragments
                     4,              # compression: 4 = XZ (squashfs_fs.h: ZLIB 1 ... ZSTD 6)
                     17,             # block_log
                     0x0001,         # flags
                     1,              # no_ids
                     4, 0,           # s_major, s_minor
                     0)              # root_inode
    struct.pack_into("<QQQQQQQ", buf, 40, 96, 0, 0, 0, 0, 0, 0)   # bytes_used, tables (no data)
    return buf


def _exfat(fstype, label, uuid, size):
    buf = _sized(fstype, size, 1 * MiB)
    serial = _serial(uuid, fstype)
    sectors = size // SECTOR
    spc_shift = 3                                   # 4 KiB clusters
    fat_offset = 128
    fat_length = 8
    heap = 256
    clusters = (sectors - heap) >> spc_shift
    if (clusters + 2) * 4 > fat_length * SECTOR:
        fat_length = ((clusters + 2) * 4 + SECTOR - 1) // SECTOR
        heap = (fat_offset + fat_length + 7) & ~7
        clusters = (sectors - heap) >> spc_shift
    root_cluster = 2
    bs = bytearray(SECTOR)
    # Main boot sector (Microsoft exFAT specification, section 3.1).
    _put(bs, 0, b"\xEB\x76\x90")
    _put(bs, 3, b"EXFAT   ")
    struct.pack_into("<QQIIIIIIHHBBBBB", bs, 64,
                     0,               # PartitionOffset
                     sectors,         # VolumeLength
                     fat_offset,      # FatOffset
                     fat_length,      # FatLength
                     heap,            # ClusterHeapOffset
                     clusters,        # ClusterCount
                     root_cluster,    # FirstClusterOfRootDirectory
                     serial,          # VolumeSerialNumber
                     0x0100,          # FileSystemRevision 1.00
                     0,               # VolumeFlags
                     9,               # BytesPerSectorShift
                     spc_shift,       # SectorsPerClusterShift
                     1,               # NumberOfFats
                     0x80,            # DriveSelect
                     0)               # PercentInUse
    bs[510:512] = b"\x55\xAA"
    region = bytearray(12 * SECTOR)
    _put(region, 0, bs)
    for i in range(1, 9):               # extended boot sectors: signature only
        region[i * SECTOR + 510:i * SECTOR + 512] = b"\x55\xAA"
    # Boot checksum (spec 3.4): over sectors 0..10, skipping VolumeFlags and PercentInUse.
    csum = 0
    for i in range(11 * SECTOR):
        if i in (106, 107, 112):
            continue
        csum = (((csum << 31) | (csum >> 1)) + region[i]) & 0xFFFFFFFF
    _put(region, 11 * SECTOR, struct.pack("<I", csum) * (SECTOR // 4))
    _put(buf, 0, region)
    _put(buf, 12 * SECTOR, region)      # backup boot region
    struct.pack_into("<III", buf, fat_offset * SECTOR, 0xFFFFFFF8, 0xFFFFFFFF, 0xFFFFFFFF)
    root = heap * SECTOR + (root_cluster - 2) * (SECTOR << spc_shift)
    if label is not None:
        if len(label) > 11:
            raise ValueError("exfat label %r: longer than 11 characters" % label)
        name = label.encode("utf-16-le")
        if len(name) > 22:
            raise ValueError("exfat label %r: longer than 11 UTF-16 units" % label)
        entry = bytearray(32)
        entry[0] = 0x83                 # volume label directory entry, in use (spec 7.3)
        entry[1] = len(name) // 2
        _put(entry, 2, name)
        _put(buf, root, entry)
    return buf


def _swap(fstype, label, uuid, size):
    buf = _sized(fstype, size, 40 * 1024)
    page = 4096
    # union swap_header (linux/include/linux/swap.h), version 1 ("SWAPSPACE2").
    struct.pack_into("<III", buf, 1024, 1, size // page - 1, 0)   # version, last_page, nr_badpages
    _put(buf, 1036, _std_uuid(uuid, fstype))
    if label is not None:
        _put(buf, 1052, _utf8(label, "label", 16, fstype))
    _put(buf, page - 10, b"SWAPSPACE2")
    return buf


def _btrfs(fstype, label, uuid, size):
    buf = _sized(fstype, size, 1 * MiB)
    fsid = _std_uuid(uuid, fstype)
    sb = bytearray(4096)
    # struct btrfs_super_block (linux/include/uapi/linux/btrfs_tree.h), at 64 KiB.
    _put(sb, 32, fsid)
    struct.pack_into("<QQ", sb, 48, 0x10000, 0)          # bytenr, flags
    _put(sb, 64, b"_BHRfS_M")
    struct.pack_into("<QQQQQQQQQ", sb, 72,
                     1,                # generation
                     0x400000,         # root
                     0x500000,         # chunk_root
                     0, 0,             # log_root, log_root_transid
                     size,             # total_bytes
                     0x40000,          # bytes_used
                     6,                # root_dir_objectid
                     1)                # num_devices
    # sectorsize, nodesize, leafsize, stripesize, sys_chunk_array_size
    struct.pack_into("<IIIII", sb, 144, 4096, 16384, 16384, 4096, 0)
    # chunk_root_generation, compat, compat_ro, incompat (mixed_backref, big_metadata, extended_iref,
    # skinny_metadata), csum_type 0 = crc32c
    struct.pack_into("<QQQQH", sb, 164, 1, 0, 0, 0x1 | 0x20 | 0x40 | 0x100, 0)
    # dev_item at 201: devid, total_bytes, bytes_used, io_align, io_width, sector_size, type, generation,
    # start_offset, dev_group, seek_speed, bandwidth, uuid[16], fsid[16].
    struct.pack_into("<QQQIIIQQQIBB", sb, 201, 1, size, 0x40000, 4096, 4096, 4096, 0, 0, 0, 0, 0, 0)
    _put(sb, 201 + 66, os.urandom(16))   # device UUID (blkid's UUID_SUB)
    _put(sb, 201 + 82, fsid)
    if label is not None:
        _put(sb, 299, _utf8(label, "label", 255, fstype))
    struct.pack_into("<I", sb, 0, crc32c(sb[32:]))
    _put(buf, 0x10000, sb)
    return buf


def _xfs(fstype, label, uuid, size):
    buf = _sized(fstype, size, 1 * MiB)
    blocksize = 4096
    dblocks = size // blocksize
    agblklog = max(1, (dblocks - 1).bit_length())
    sb = bytearray(512)
    # struct xfs_dsb (fs/xfs/libxfs/xfs_format.h); a version 4 superblock (no CRC), one allocation group.
    struct.pack_into(">4sIQQQ", sb, 0, b"XFSB", blocksize, dblocks, 0, 0)
    _put(sb, 32, _std_uuid(uuid, fstype))
    struct.pack_into(">QQQQIIIII", sb, 48,
                     dblocks // 2,     # logstart
                     128,              # rootino
                     129, 130,         # rbmino, rsumino
                     1,                # rextsize
                     dblocks,          # agblocks
                     1,                # agcount
                     0,                # rbmblocks
                     64)               # logblocks
    # sb_versionnum (version 4 with the usual feature bits), sectsize, inodesize, inopblock
    struct.pack_into(">HHHH", sb, 100, 0xB4A4, 512, 256, 16)
    if label is not None:
        _put(sb, 108, _utf8(label, "label", 12, fstype))
    struct.pack_into(">BBBBBBBB", sb, 120, 12, 9, 8, 4, agblklog, 0, 0, 25)  # blocklog..imax_pct
    struct.pack_into(">QQQ", sb, 128, 64, 61, dblocks - 100)  # icount, ifree, fdblocks
    _put(buf, 0, sb)
    return buf


def _luks(fstype, label, uuid, size):
    buf = _sized(fstype, size, 32 * 1024)
    version = 1 if fstype == "crypto_LUKS1" else 2
    text = str(_uuid.UUID(bytes=os.urandom(16), version=4)) if uuid is None else uuid
    if not isinstance(text, str) or len(text.encode("ascii", "replace")) > 39 or not text:
        raise ValueError("%s uuid %r: want text of 1 to 39 ASCII characters" % (fstype, uuid))
    hdr = bytearray(4096)
    _put(hdr, 0, b"LUKS\xba\xbe")
    struct.pack_into(">H", hdr, 6, version)
    if version == 1:
        if label is not None:
            raise ValueError("crypto_LUKS1 has no label (LUKS2 has)")
        # LUKS1 phdr (LUKS On-Disk Format Specification 1.2.3, section 2.4).
        _put(hdr, 8, b"aes")
        _put(hdr, 40, b"xts-plain64")
        _put(hdr, 72, b"sha256")
        struct.pack_into(">II", hdr, 104, 4096, 64)          # payload offset (sectors), key bytes
        _put(hdr, 168, _ascii(text, "uuid", 39, fstype))
    else:
        # LUKS2 binary header (LUKS2 On-Disk Format, section 2.1); blkid does not read the JSON area.
        struct.pack_into(">QQ", hdr, 8, 16384, 1)             # hdr_size, seqid
        if label is not None:
            _put(hdr, 24, _utf8(label, "label", 47, fstype))
        _put(hdr, 72, b"sha256")
        _put(hdr, 168, _ascii(text, "uuid", 39, fstype))
        struct.pack_into(">Q", hdr, 256, 0)                   # hdr_offset: this is the primary header
    _put(buf, 0, hdr)
    return buf


_MAKERS = {"vfat": _fat, "fat32": _fat, "fat16": _fat, "fat12": _fat, "ext4": _ext, "ext2": _ext,
           "iso9660": _iso9660, "squashfs": _squashfs, "exfat": _exfat, "swap": _swap, "btrfs": _btrfs,
           "xfs": _xfs, "crypto_LUKS": _luks, "crypto_LUKS1": _luks}


def filesystem(fstype, *, label=None, uuid=None, size=1 << 20):
    """A zero-padded image of `size` bytes whose superblock blkid identifies as fstype with that label/uuid.

    "vfat" is FAT32; "fat16"/"fat12" make those variants (blkid TYPE=vfat); "crypto_LUKS" is a LUKS2 header,
    "crypto_LUKS1" a LUKS1 one (TYPE=crypto_LUKS for both)."""
    maker = _MAKERS.get(fstype)
    if maker is None:
        raise ValueError("filesystem type %r: not one of %s" % (fstype, ", ".join(FSTYPES)))
    if label is not None and not isinstance(label, str):
        raise ValueError("%s label %r: want a str" % (fstype, label))
    return bytes(maker(fstype, label, uuid, size))


# ---------------------------------------------------------------------------------------------- partition tables


class Partition:
    """One partition of disk(): its contents and table entry.

    type: a GPT type GUID or a GPT_TYPES name (GPT); a byte or an MBR_TYPES name (MBR). Default: Linux data.
    partuuid/partlabel: GPT only (an MBR PARTUUID is derived from the disk signature)."""

    def __init__(self, data, *, partlabel=None, partuuid=None, type=None, bootable=False):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError("Partition data: want bytes, not %s" % data.__class__.__name__)
        self.data = bytes(data)
        self.partlabel = partlabel
        self.partuuid = partuuid
        self.type = type
        self.bootable = bootable

    def __repr__(self):
        return "Partition(<%d bytes>, partlabel=%r, partuuid=%r, type=%r, bootable=%r)" % (
            len(self.data), self.partlabel, self.partuuid, self.type, self.bootable)


def _layout(partitions, reserve_end):
    """Start sector and length in sectors of each partition: each starts on a 1 MiB boundary."""
    out = []
    pos = MiB // SECTOR
    for p in partitions:
        n = max(1, (len(p.data) + SECTOR - 1) // SECTOR)
        out.append((pos, n))
        pos += (n * SECTOR + MiB - 1) // MiB * (MiB // SECTOR)
    return out, pos * SECTOR + reserve_end


def disk(partitions, *, table="gpt", disk_uuid=None, signature=None, size=None):
    """A whole-disk image: a GPT (protective MBR, primary and backup header and entries, CRCs) or MBR table and
    each partition's data at its 1 MiB aligned start. size: the disk size (default: just enough)."""
    partitions = list(partitions)
    for i, p in enumerate(partitions):
        if not isinstance(p, Partition):
            raise ValueError("disk partition %d: want a Partition, not %r" % (i + 1, p))
    if table == "gpt":
        if signature is not None:
            raise ValueError("disk signature=%r: an MBR setting; a GPT disk has disk_uuid" % (signature,))
        if len(partitions) > 128:
            raise ValueError("disk: %d partitions; a GPT here holds 128" % len(partitions))
        layout, need = _layout(partitions, 33 * SECTOR)
    elif table in ("dos", "mbr"):
        if disk_uuid is not None:
            raise ValueError("disk disk_uuid=%r: a GPT setting; an MBR disk has signature" % (disk_uuid,))
        if len(partitions) > 4:
            raise ValueError("disk: %d partitions; an MBR holds 4 primary partitions" % len(partitions))
        layout, need = _layout(partitions, 0)
    else:
        raise ValueError("disk table %r: want \"gpt\" or \"dos\"" % (table,))
    if size is None:
        size = need
    if not isinstance(size, int) or size % SECTOR or size < need:
        raise ValueError("disk size %r: want a multiple of %d of at least %d bytes" % (size, SECTOR, need))
    buf = bytearray(size)
    for p, (start, _n) in zip(partitions, layout):
        _put(buf, start * SECTOR, p.data)
    if table == "gpt":
        _gpt(buf, partitions, layout, disk_uuid)
    else:
        _mbr(buf, partitions, layout, signature)
    return bytes(buf)


def _mbr_entry(boot, ptype, start, count):
    # CHS fields set to the "use LBA" maximum (0xFE 0xFF 0xFF), as tools do for large disks.
    return struct.pack("<B3sB3sII", 0x80 if boot else 0, b"\xFE\xFF\xFF", ptype, b"\xFE\xFF\xFF", start, count)


def _mbr(buf, partitions, layout, signature):
    if signature is None:
        sig = struct.unpack("<I", os.urandom(4))[0] or 1
    elif isinstance(signature, int) and 0 <= signature <= 0xFFFFFFFF:
        sig = signature
    elif isinstance(signature, str) and len(signature) == 8:
        try:
            sig = int(signature, 16)
        except ValueError:
            raise ValueError("disk signature %r: want 8 hex digits or an int" % signature)
    else:
        raise ValueError("disk signature %r: want 8 hex digits or an int" % (signature,))
    struct.pack_into("<I", buf, 440, sig)
    for i, (p, (start, n)) in enumerate(zip(partitions, layout)):
        if p.partlabel is not None or p.partuuid is not None:
            raise ValueError("partition %d: partlabel/partuuid are GPT settings (MBR PARTUUID is "
                             "<signature>-<NN>)" % (i + 1))
        ptype = MBR_TYPES["linux"] if p.type is None else MBR_TYPES.get(p.type, p.type)
        if not isinstance(ptype, int) or not 0 < ptype < 256:
            raise ValueError("partition %d type %r: want a byte or one of %s" % (i + 1, p.type, ", ".join(MBR_TYPES)))
        _put(buf, 446 + 16 * i, _mbr_entry(p.bootable, ptype, start, n))
    buf[510:512] = b"\x55\xAA"


def _gpt(buf, partitions, layout, disk_uuid):
    sectors = len(buf) // SECTOR
    last = sectors - 1
    entries = bytearray(128 * 128)
    for i, (p, (start, n)) in enumerate(zip(partitions, layout)):
        ptype = GPT_TYPES["linux"] if p.type is None else GPT_TYPES.get(p.type, p.type)
        what = "partition %d" % (i + 1)
        e = bytearray(128)
        _put(e, 0, _guid_bytes(ptype, what + " type"))
        _put(e, 16, _guid_bytes(p.partuuid, what + " partuuid") if p.partuuid is not None
             else _uuid.uuid4().bytes_le)
        struct.pack_into("<QQQ", e, 32, start, start + n - 1, 0x4 if p.bootable else 0)  # bit 2: legacy BIOS bootable
        if p.partlabel is not None:
            name = p.partlabel.encode("utf-16-le")
            if len(name) > 72:
                raise ValueError("%s partlabel %r: longer than 36 UTF-16 units" % (what, p.partlabel))
            _put(e, 56, name)
        _put(entries, 128 * i, e)
    guid = _guid_bytes(disk_uuid, "disk_uuid") if disk_uuid is not None else _uuid.uuid4().bytes_le
    entries_crc = zlib.crc32(entries)

    def header(current, backup, entries_lba):
        # UEFI spec 2.10, section 5.3.2 "GPT Header".
        h = bytearray(92)
        _put(h, 0, b"EFI PART")
        struct.pack_into("<IIII", h, 8, 0x00010000, 92, 0, 0)
        struct.pack_into("<QQQQ", h, 24, current, backup, 34, last - 33)
        _put(h, 56, guid)
        struct.pack_into("<QIII", h, 72, entries_lba, 128, 128, entries_crc)
        struct.pack_into("<I", h, 16, zlib.crc32(h))
        return h

    # Protective MBR (UEFI spec 5.2.3): one 0xEE partition covering the disk.
    _put(buf, 446, struct.pack("<B3sB3sII", 0, b"\x00\x02\x00", 0xEE, b"\xFF\xFF\xFF", 1,
                               min(sectors - 1, 0xFFFFFFFF)))
    buf[510:512] = b"\x55\xAA"
    _put(buf, SECTOR, header(1, last, 2))
    _put(buf, 2 * SECTOR, entries)
    _put(buf, (last - 32) * SECTOR, entries)
    _put(buf, last * SECTOR, header(last, 1, last - 32))


# ---------------------------------------------------------------------------------------------- the independent check


def blkid_export(path, offset=0):
    """util-linux `blkid -p -o export` of a file (at a byte offset) as a dict of its KEY=value lines, values
    exactly as blkid prints them (its escaping kept). {} when blkid finds nothing (exit status 2)."""
    from mpinit.runner import find_tool, run

    argv = [find_tool("blkid", "util-linux"), "-p", "-o", "export"]
    if offset:
        argv += ["--offset", str(offset)]
    proc = run(argv + [str(path)], echo=False, capture=True, check=False)
    if proc.returncode == 2:
        return {}
    if proc.returncode != 0:
        raise RuntimeError("blkid -p %s: exit status %d: %s" % (path, proc.returncode,
                                                               proc.stderr.decode(errors="replace").strip()))
    out = {}
    for line in proc.stdout.decode("latin-1").splitlines():
        key, sep, value = line.partition("=")
        if sep and key != "DEVNAME":
            out[key] = value
    return out
